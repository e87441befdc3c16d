//! The tasks that run the checkers and set weights: one tokio task per checker (thousands of
//! reals are thousands of tasks, never threads), attempts bounded by one semaphore.
//!
//! A real is up while every one of its checkers is up, as keepalived counts
//! `num_failed_checkers` (`keepalived/check/ipwrapper.c` `update_svr_checker_state`). Its
//! weight is then the configured one, moved by `misc_dynamic` results as keepalived moves
//! `effective_weight` (configured + the sum of each dynamic checker's status - 2 - configured);
//! while down its weight is 0. Every change goes to [`Dataplane::set_weight`] as it happens,
//! with a log line naming the checker and what it saw.
//!
//! keepalived removes a failed real from IPVS unless `inhibit_on_failure` keeps it with
//! weight 0. In our data plane a real with weight 0 already takes no new connections while
//! its established ones continue, so both settings mean weight 0 here: the difference is
//! only that keepalived without `inhibit_on_failure` also cuts the real's established
//! connections (IPVS drops its connection entries with the real), which we do not.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::check::state::{Change, CheckerState};
use crate::check::{Probe, Timing};
use crate::dataplane::Dataplane;

/// The data plane the checkers write to, shared with whoever else programs it.
pub type SharedDataplane = Arc<Mutex<dyn Dataplane + Send>>;

/// How many attempts run at once by default: enough for thousands of reals at a
/// `delay_loop` of seconds, few enough that a burst does not exhaust file descriptors.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// One real and its checkers.
#[derive(Clone)]
pub struct RealChecks {
    /// The data plane's name of the service.
    pub service: String,
    pub addr: IpAddr,
    pub port: u16,
    /// The configured weight, given back when the checks pass.
    pub weight: u32,
    /// `alpha`: start down until the checks pass.
    pub alpha: bool,
    /// `inhibit_on_failure`: logged; see the module documentation for why it changes nothing.
    pub inhibit_on_failure: bool,
    pub checkers: Vec<(Arc<dyn Probe>, Timing)>,
}

/// The running checkers; dropping it (or [`CheckHandle::stop`]) stops them all.
pub struct CheckHandle {
    tasks: JoinSet<()>,
}

impl CheckHandle {
    /// How many checker tasks run.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every checker and waits until they are gone.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Starts the checkers of `reals` on the current tokio runtime, at most `concurrency`
/// attempts at a time. A real with `alpha` is set to weight 0 at once; the others keep the
/// weight the data plane was given until a checker fails.
#[must_use]
pub fn spawn(
    reals: Vec<RealChecks>,
    dataplane: &SharedDataplane,
    concurrency: usize,
) -> CheckHandle {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for real in reals {
        if real.checkers.is_empty() {
            continue;
        }
        let checkers = real.checkers.clone();
        let shared = Arc::new(RealState::new(real, dataplane));
        for (index, (probe, timing)) in checkers.into_iter().enumerate() {
            tasks.spawn(run_checker(
                probe,
                timing,
                index,
                shared.clone(),
                permits.clone(),
                dataplane.clone(),
            ));
        }
    }
    CheckHandle { tasks }
}

async fn run_checker(
    probe: Arc<dyn Probe>,
    timing: Timing,
    index: usize,
    real: Arc<RealState>,
    permits: Arc<Semaphore>,
    dataplane: SharedDataplane,
) {
    // keepalived's warmup: a random start, so that checks of one real do not coincide.
    tokio::time::sleep(timing.warmup.mul_f64(fastrand::f64())).await;
    let mut state = CheckerState::new(timing, real.spec.alpha);
    loop {
        let verdict = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            probe.attempt().await
        };
        let (change, delay) = state.observe(verdict);
        if let Some(change) = change {
            real.apply(index, &change, &probe.describe(), &dataplane);
        }
        tokio::time::sleep(delay).await;
    }
}

/// What the checkers of one real last said, and the weight the data plane holds.
struct RealState {
    spec: RealChecks,
    inner: Mutex<Verdicts>,
}

struct Verdicts {
    up: Vec<bool>,
    dynamic: Vec<Option<u32>>,
    /// The weight last written (or given to the data plane before the checkers started).
    applied: u32,
}

impl RealState {
    fn new(spec: RealChecks, dataplane: &SharedDataplane) -> Self {
        let n = spec.checkers.len();
        let state = Self {
            inner: Mutex::new(Verdicts {
                up: vec![!spec.alpha; n],
                dynamic: vec![None; n],
                applied: spec.weight,
            }),
            spec,
        };
        if state.spec.alpha {
            let mut inner = state.inner.lock().unwrap_or_else(PoisonError::into_inner);
            state.write(
                &mut inner,
                0,
                "alpha: down until the checks pass",
                dataplane,
            );
        }
        state
    }

    fn apply(&self, index: usize, change: &Change, checker: &str, dataplane: &SharedDataplane) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let reason = match change {
            Change::Up { weight } => {
                inner.up[index] = true;
                inner.dynamic[index] = *weight;
                match weight {
                    Some(w) => format!("{checker} passed, dynamic weight {w}"),
                    None => format!("{checker} passed"),
                }
            }
            Change::Down { reason } => {
                inner.up[index] = false;
                inner.dynamic[index] = None;
                format!("{checker} failed: {reason}")
            }
        };
        let weight = self.effective(&inner);
        if weight == inner.applied {
            tracing::debug!(
                service = self.spec.service,
                real = %self.spec.addr,
                port = self.spec.port,
                weight,
                reason,
                "checker state changed, real's weight did not"
            );
        } else {
            self.write(&mut inner, weight, &reason, dataplane);
        }
    }

    fn effective(&self, inner: &Verdicts) -> u32 {
        if inner.up.iter().any(|up| !up) {
            return 0;
        }
        let configured = i64::from(self.spec.weight);
        let moved = inner
            .dynamic
            .iter()
            .flatten()
            .map(|&w| i64::from(w) - configured)
            .sum::<i64>();
        u32::try_from((configured + moved).max(0)).unwrap_or(u32::MAX)
    }

    fn write(&self, inner: &mut Verdicts, weight: u32, reason: &str, dataplane: &SharedDataplane) {
        let spec = &self.spec;
        let result = dataplane
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_weight(&spec.service, spec.addr, spec.port, weight);
        match result {
            Ok(()) => {
                tracing::info!(
                    service = spec.service,
                    real = %spec.addr,
                    port = spec.port,
                    from = inner.applied,
                    weight,
                    inhibit_on_failure = spec.inhibit_on_failure,
                    reason,
                    "real's weight changed"
                );
                inner.applied = weight;
            }
            // `applied` stays as it was, so the next change tries again.
            Err(e) => tracing::warn!(
                service = spec.service,
                real = %spec.addr,
                port = spec.port,
                weight,
                reason,
                error = %e,
                "could not set the real's weight"
            ),
        }
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
