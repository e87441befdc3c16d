//! The tasks that run the checkers and set weights: one tokio task per checker (thousands of
//! reals are thousands of tasks, never threads), attempts bounded by one semaphore.
//!
//! A real is up while every one of its checkers is up, as keepalived counts
//! `num_failed_checkers` (`keepalived/check/ipwrapper.c` `update_svr_checker_state`); a real
//! without checkers is always up. An up real's weight is the configured one, moved by
//! `misc_dynamic` results as keepalived moves `effective_weight` (configured + the sum of each
//! dynamic checker's status - 2 - configured); a down real's is 0. The service's [`Quorum`]
//! is judged on the sum of those weights after every change; while it is lost and the service
//! has a `sorry_server`, every real is set to 0 so that the data plane sends new connections
//! to the sorry server, as keepalived takes the live reals out of IPVS and adds the sorry
//! server (`update_quorum_state`). Every write goes to [`Dataplane::set_weight_fast`] as the
//! change happens, logged with the checker and what it saw; a flusher task then completes
//! the deferred work of every burst of writes ([`Dataplane::flush`]) once.
//!
//! keepalived removes a failed real from IPVS unless `inhibit_on_failure` keeps it with
//! weight 0. In our data plane a real with weight 0 already takes no new connections while
//! its established ones continue, so both settings mean weight 0 here: the difference is
//! only that keepalived without `inhibit_on_failure` also cuts the real's established
//! connections (IPVS drops its connection entries with the real), which we do not.
//! `sorry_server_inhibit` is the same choice for the sorry server and means nothing more here.
//!
//! Notify scripts (`notify_up`, `notify_down`, `quorum_up`, `quorum_down`, and `omega` at
//! shutdown) are queued as [`Notice`]s; see [`notices`](crate::check::notices).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::check::notices::{self, Event, Notice, NoticeSender};
use crate::check::quorum::Quorum;
use crate::check::state::{Change, CheckerState};
use crate::check::{Probe, Timing};
use crate::dataplane::Dataplane;
use crate::notify::mail::Mailer;
use crate::notify::{NOTIFY_TIMEOUT, STOP_TIMEOUT, Script};
use crate::status::{CheckerStatus, unix_now};

/// The data plane the checkers write to, shared with whoever else programs it.
pub type SharedDataplane = Arc<Mutex<dyn Dataplane + Send>>;

/// How many attempts run at once by default: enough for thousands of reals at a
/// `delay_loop` of seconds, few enough that a burst does not exhaust file descriptors.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// One virtual service's reals and what is judged over all of them.
#[derive(Clone)]
pub struct ServiceChecks {
    /// The data plane's name of the service.
    pub name: String,
    /// `quorum`: the live weight the service needs. keepalived's default is 1.
    pub quorum: u32,
    /// `hysteresis`.
    pub hysteresis: u32,
    /// Whether the service has a `sorry_server`, which takes over while the quorum is lost.
    pub sorry_server: bool,
    /// `omega`: run `notify_down` and `quorum_down` at shutdown too.
    pub omega: bool,
    /// `quorum_up`.
    pub quorum_up: Option<Script>,
    /// `quorum_down`.
    pub quorum_down: Option<Script>,
    /// `smtp_alert` (resolved against `global_defs`): real and quorum changes are mailed.
    pub alerts: bool,
    pub reals: Vec<RealChecks>,
}

impl ServiceChecks {
    /// A service of `reals` with keepalived's defaults: quorum 1, no hysteresis, no sorry
    /// server, no `omega`, no quorum scripts.
    #[must_use]
    pub fn new(name: &str, reals: Vec<RealChecks>) -> Self {
        Self {
            name: name.to_owned(),
            quorum: 1,
            hysteresis: 0,
            sorry_server: false,
            omega: false,
            quorum_up: None,
            quorum_down: None,
            alerts: false,
            reals,
        }
    }
}

impl RealChecks {
    /// A real of weight `weight` checked by `checkers`, with keepalived's defaults: no
    /// `alpha`, no `inhibit_on_failure`, no notify scripts.
    #[must_use]
    pub fn new(
        addr: IpAddr,
        port: u16,
        weight: u32,
        checkers: Vec<(Arc<dyn Probe>, Timing)>,
    ) -> Self {
        Self {
            addr,
            port,
            weight,
            alpha: false,
            inhibit_on_failure: false,
            notify_up: None,
            notify_down: None,
            checkers,
        }
    }
}

/// One real and its checkers.
#[derive(Clone)]
pub struct RealChecks {
    pub addr: IpAddr,
    pub port: u16,
    /// The configured weight, given back when the checks pass.
    pub weight: u32,
    /// `alpha`: start down until the checks pass.
    pub alpha: bool,
    /// `inhibit_on_failure`: logged; see the module documentation for why it changes nothing.
    pub inhibit_on_failure: bool,
    /// `notify_up`.
    pub notify_up: Option<Script>,
    /// `notify_down`.
    pub notify_down: Option<Script>,
    pub checkers: Vec<(Arc<dyn Probe>, Timing)>,
}

/// The running checkers, per service; dropping it (or [`CheckHandle::stop`]) stops them all.
pub struct CheckHandle {
    services: HashMap<String, Running>,
    permits: Arc<Semaphore>,
    dataplane: SharedDataplane,
    notices: NoticeSender,
    /// The task that runs notify scripts, when [`CheckHandle::new`] started it.
    notifier: Option<tokio::task::JoinHandle<()>>,
    /// Wakes the flusher after weight writes.
    flush: Arc<Notify>,
    flusher: tokio::task::JoinHandle<()>,
    /// Where the alerts of services with `smtp_alert` go.
    mailer: Option<Arc<Mailer>>,
}

impl Drop for CheckHandle {
    fn drop(&mut self) {
        self.flusher.abort();
    }
}

/// [`Dataplane::flush`] on a blocking thread: a table rebuild takes milliseconds.
async fn flush_blocking(
    dataplane: &SharedDataplane,
) -> Result<Result<(), crate::dataplane::DataplaneError>, tokio::task::JoinError> {
    let dataplane = dataplane.clone();
    tokio::task::spawn_blocking(move || {
        dataplane
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    })
    .await
}

/// Completes the weight writes' deferred work ([`Dataplane::flush`]: scheduler tables to
/// rebuild) once after every burst of them: writes made while a flush runs wake it again.
async fn flusher(dataplane: SharedDataplane, flush: Arc<Notify>) {
    loop {
        flush.notified().await;
        match flush_blocking(&dataplane).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not rebuild a scheduler table; retrying in a second");
                let flush = flush.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    flush.notify_one();
                });
            }
            // The runtime is shutting down.
            Err(e) if e.is_cancelled() => return,
            Err(e) => tracing::error!(error = %e, "a scheduler table rebuild panicked"),
        }
    }
}

struct Running {
    state: Arc<ServiceState>,
    tasks: JoinSet<()>,
}

impl CheckHandle {
    /// No checkers yet; [`CheckHandle::replace`] starts a service's. Their notify scripts
    /// run on a task started here (so this needs a tokio runtime).
    #[must_use]
    pub fn new(dataplane: &SharedDataplane, concurrency: usize) -> Self {
        let (notices, notifier) = notices::spawn();
        let mut handle = Self::notifying(dataplane, concurrency, &notices);
        handle.notifier = Some(notifier);
        handle
    }

    /// As [`CheckHandle::new`], with the notify scripts queued on `notices` instead of run:
    /// for a caller (a test) that wants to see them.
    #[must_use]
    pub fn notifying(
        dataplane: &SharedDataplane,
        concurrency: usize,
        notices: &NoticeSender,
    ) -> Self {
        let flush = Arc::new(Notify::new());
        Self {
            services: HashMap::new(),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dataplane: dataplane.clone(),
            notices: notices.clone(),
            notifier: None,
            flusher: tokio::spawn(flusher(dataplane.clone(), flush.clone())),
            flush,
            mailer: None,
        }
    }

    /// Where services with `smtp_alert` mail their changes, from their next start on.
    pub fn set_mailer(&mut self, mailer: Option<Arc<Mailer>>) {
        self.mailer = mailer;
    }

    /// How many checker tasks run.
    #[must_use]
    pub fn len(&self) -> usize {
        self.services.values().map(|r| r.tasks.len()).sum()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The services that have checkers.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// Starts the checkers of `spec`, stopping those the service had. A real for which
    /// `carry` says yes (the same real with the same checkers, across a reload) continues
    /// from its previous verdicts and weight instead of starting afresh, so a reload neither
    /// resets a failed real to up nor an `alpha` real to down. Starting weights are written
    /// at once where they differ from the ones the data plane holds: `alpha` reals at 0, and
    /// every real at 0 when the quorum is lost from the start and a sorry server waits.
    pub fn replace(&mut self, spec: ServiceChecks, carry: impl Fn(&RealChecks) -> bool) {
        let previous = self.services.remove(&spec.name);
        let carried: Vec<Option<Verdicts>> = spec
            .reals
            .iter()
            .map(|r| {
                let old = previous.as_ref()?;
                if !carry(r) {
                    return None;
                }
                let i = old
                    .state
                    .spec
                    .reals
                    .iter()
                    .position(|o| o.addr == r.addr && o.port == r.port)?;
                let inner = old
                    .state
                    .inner
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let v = &inner.reals[i];
                (v.up.len() == r.checkers.len()).then(|| v.clone())
            })
            .collect();
        if let Some(old) = &previous {
            old.state.retire(|r| {
                spec.reals
                    .iter()
                    .any(|n| n.addr == r.addr && n.port == r.port)
            });
        }
        // Dropping the old set aborts its tasks.
        drop(previous);
        let mail = self.mailer.clone().filter(|_| spec.alerts);
        let service = Arc::new(ServiceState::new(
            spec,
            carried.clone(),
            &self.dataplane,
            (self.notices.clone(), mail),
            self.flush.clone(),
        ));
        let mut tasks = JoinSet::new();
        for (real, spec) in service.spec.reals.iter().enumerate() {
            for (checker, (probe, timing)) in spec.checkers.iter().enumerate() {
                let state = match &carried[real] {
                    Some(v) => CheckerState::resume(*timing, v.up[checker], v.dynamic[checker]),
                    None => CheckerState::new(*timing, spec.alpha),
                };
                tasks.spawn(run_checker(
                    probe.clone(),
                    state,
                    Slot { real, checker },
                    service.clone(),
                    self.permits.clone(),
                    self.dataplane.clone(),
                    carried[real].is_some(),
                ));
            }
        }
        self.services.insert(
            service.spec.name.clone(),
            Running {
                state: service,
                tasks,
            },
        );
    }

    /// Stops a service's checkers (the service lost its checkers).
    pub fn remove(&mut self, service: &str) {
        self.services.remove(service);
    }

    /// Stops the checkers of a service a reload deleted: its live reals are taken out with
    /// their `notify_down`, and then, if the quorum was up, `quorum_down` runs, as
    /// keepalived's reload does (`clear_service_vs` -> `clear_service_rs_list`, whose
    /// `update_vs_notifies` finds no live weight left).
    pub fn delete(&mut self, service: &str) {
        if let Some(running) = self.services.remove(service) {
            running.state.retire(|_| false);
            running.state.lose_quorum();
        }
    }

    /// The weight last written for each real of `service` by its checkers, if it has any.
    #[must_use]
    pub fn weights(&self, service: &str) -> Vec<(IpAddr, u16, u32)> {
        let Some(running) = self.services.get(service) else {
            return Vec::new();
        };
        let inner = running
            .state
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        running
            .state
            .spec
            .reals
            .iter()
            .zip(&inner.reals)
            .map(|(r, v)| (r.addr, r.port, v.applied))
            .collect()
    }

    /// Every checker's state, last result and since when, by service name and real.
    #[must_use]
    pub fn status(&self) -> Vec<CheckerStatus> {
        let mut names: Vec<&String> = self.services.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let state = &self.services[name].state;
            let inner = state.inner.lock().unwrap_or_else(PoisonError::into_inner);
            for (real, v) in state.spec.reals.iter().zip(&inner.reals) {
                for (i, (probe, _)) in real.checkers.iter().enumerate() {
                    out.push(CheckerStatus {
                        service: name.clone(),
                        real: real.addr,
                        port: real.port,
                        checker: probe.describe(),
                        up: v.up[i],
                        last: v.last[i].0.clone(),
                        since: v.last[i].1,
                    });
                }
            }
        }
        out
    }

    /// Stops every checker, queues the `omega` scripts, and waits until the checkers are
    /// gone and every queued script has run.
    pub async fn stop(mut self) {
        for (_, mut running) in self.services.drain() {
            running.tasks.shutdown().await;
            running.state.shut_down();
        }
        // What the last decisions left to do, before the data plane outlives us.
        self.flusher.abort();
        if let Ok(Err(e)) = flush_blocking(&self.dataplane).await {
            tracing::warn!(error = %e, "could not rebuild a scheduler table at stop");
        }
        let notifier = self.notifier.take();
        // The handle and the services held the only senders: the notifier ends once the
        // queue is empty.
        drop(self);
        if let Some(notifier) = notifier {
            let _ = notifier.await;
        }
    }
}

/// Starts the checkers of `services` on the current tokio runtime, at most `concurrency`
/// attempts at a time (see [`CheckHandle::replace`]).
#[must_use]
pub fn spawn(
    services: Vec<ServiceChecks>,
    dataplane: &SharedDataplane,
    concurrency: usize,
) -> CheckHandle {
    let mut handle = CheckHandle::new(dataplane, concurrency);
    for spec in services {
        handle.replace(spec, |_| false);
    }
    handle
}

/// As [`spawn`], with the notify scripts queued on `notices` instead of run: for a caller
/// (a test) that wants to see them.
#[must_use]
pub fn spawn_notifying(
    services: Vec<ServiceChecks>,
    dataplane: &SharedDataplane,
    concurrency: usize,
    notices: &NoticeSender,
) -> CheckHandle {
    let mut handle = CheckHandle::notifying(dataplane, concurrency, notices);
    for spec in services {
        handle.replace(spec, |_| false);
    }
    handle
}

/// Which checker of which real a task runs.
#[derive(Clone, Copy)]
struct Slot {
    real: usize,
    checker: usize,
}

async fn run_checker(
    probe: Arc<dyn Probe>,
    mut state: CheckerState,
    slot: Slot,
    service: Arc<ServiceState>,
    permits: Arc<Semaphore>,
    dataplane: SharedDataplane,
    resumed: bool,
) {
    // keepalived's warmup: a random start, so that checks of one real do not coincide. A
    // checker resumed across a reload starts within its delay_loop, as it was running.
    let timing = service.spec.reals[slot.real].checkers[slot.checker].1;
    let spread = if resumed {
        timing.delay_loop
    } else {
        timing.warmup
    };
    tokio::time::sleep(spread.mul_f64(fastrand::f64())).await;
    // When the attempt about to run was due.
    let mut due = tokio::time::Instant::now();
    loop {
        let verdict = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            probe.attempt().await
        };
        let passed = matches!(verdict, crate::check::Verdict::Up { .. });
        let (change, delay) = state.observe(verdict);
        if let Some(change) = change {
            service.apply(slot, &change, &probe.describe(), &dataplane);
        }
        // A passing checker keeps its cadence: the next attempt is due `delay_loop` after
        // this one was, so checks neither drift later by their own duration nor bunch up
        // (one that ran late is not made up for). After a failure, or an attempt (with its
        // wait for a permit) that outlasted the interval, the wait runs from the end of the
        // attempt, as keepalived's (`tcp_epilog` re-arms its timer when the attempt ends),
        // so `delay_before_retry` is a real pause after a timeout and slow checks never run
        // back to back.
        let now = tokio::time::Instant::now();
        due = if passed && due + delay >= now {
            due + delay
        } else {
            now + delay
        };
        tokio::time::sleep_until(due).await;
    }
}

/// What the checkers of one service last said, and the weights the data plane holds.
struct ServiceState {
    spec: ServiceChecks,
    inner: Mutex<Inner>,
    notices: NoticeSender,
    /// Where real and quorum changes are mailed (`smtp_alert`).
    mail: Option<Arc<Mailer>>,
    /// Wakes the flusher after a weight write.
    flush: Arc<Notify>,
}

struct Inner {
    reals: Vec<Verdicts>,
    quorum: Quorum,
}

#[derive(Clone)]
struct Verdicts {
    up: Vec<bool>,
    /// Whether each checker has had a result.
    has_run: Vec<bool>,
    /// keepalived's `rs->alive`: every checker up, for `notify_up` / `notify_down`.
    alive: bool,
    dynamic: Vec<Option<u32>>,
    /// Each checker's last change in words, and when (Unix seconds).
    last: Vec<(String, u64)>,
    /// The weight last written (or given to the data plane before the checkers started).
    applied: u32,
}

impl ServiceState {
    /// `carried[i]` is real i's state from before a reload, if it continues.
    fn new(
        spec: ServiceChecks,
        carried: Vec<Option<Verdicts>>,
        dataplane: &SharedDataplane,
        (notices, mail): (NoticeSender, Option<Arc<Mailer>>),
        flush: Arc<Notify>,
    ) -> Self {
        let now = unix_now();
        let reals = spec
            .reals
            .iter()
            .zip(carried)
            .map(|(r, carried)| {
                carried.unwrap_or_else(|| Verdicts {
                    up: vec![!r.alpha; r.checkers.len()],
                    has_run: vec![false; r.checkers.len()],
                    alive: !r.alpha || r.checkers.is_empty(),
                    dynamic: vec![None; r.checkers.len()],
                    last: vec![
                        (
                            if r.alpha {
                                "alpha: down until the first pass"
                            } else {
                                "not run yet"
                            }
                            .to_owned(),
                            now,
                        );
                        r.checkers.len()
                    ],
                    applied: r.weight,
                })
            })
            .collect();
        let state = Self {
            inner: Mutex::new(Inner {
                reals,
                quorum: Quorum::new(spec.quorum, spec.hysteresis),
            }),
            spec,
            notices,
            mail,
            flush,
        };
        {
            let mut inner = state.inner.lock().unwrap_or_else(PoisonError::into_inner);
            state.settle(
                &mut inner,
                "checkers starting (alpha reals start down)",
                dataplane,
            );
        }
        state
    }

    fn apply(&self, slot: Slot, change: &Change, checker: &str, dataplane: &SharedDataplane) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let verdicts = &mut inner.reals[slot.real];
        let first = !std::mem::replace(&mut verdicts.has_run[slot.checker], true);
        let reason = match change {
            Change::Up { weight } => {
                verdicts.up[slot.checker] = true;
                verdicts.dynamic[slot.checker] = *weight;
                match weight {
                    Some(w) => format!("{checker} passed, dynamic weight {w}"),
                    None => format!("{checker} passed"),
                }
            }
            Change::Down { reason } => {
                verdicts.up[slot.checker] = false;
                verdicts.dynamic[slot.checker] = None;
                format!("{checker} failed: {reason}")
            }
        };
        // Every checker transition is logged, as keepalived logs each (`tcp_epilog` ...),
        // whether or not it moves the real's weight.
        verdicts.last[slot.checker] = (reason.clone(), unix_now());
        let real = &self.spec.reals[slot.real];
        tracing::info!(
            service = self.spec.name,
            real = %real.addr,
            port = real.port,
            reason,
            "checker state changed"
        );
        let alive = verdicts.up.iter().all(|&up| up);
        if alive != verdicts.alive {
            verdicts.alive = alive;
            self.notify_real(slot.real, alive, NOTIFY_TIMEOUT);
            if let Some(mailer) = &self.mail {
                // keepalived's SMTP_MSG_RS.
                mailer.send(
                    &format!(
                        "Realserver {} of virtual server {} - {}",
                        crate::status::endpoint(real.addr, real.port),
                        self.spec.name,
                        if alive { "UP" } else { "DOWN" }
                    ),
                    &format!("=> {reason} <="),
                );
            }
        } else if !alive && first && real.alpha {
            // keepalived's `update_svr_checker_state`: an alpha checker's first failure
            // notifies although the real was never up.
            self.notify_real(slot.real, false, NOTIFY_TIMEOUT);
        }
        self.settle(&mut inner, &reason, dataplane);
    }

    fn notify_real(&self, index: usize, up: bool, timeout: std::time::Duration) {
        let real = &self.spec.reals[index];
        let (script, event) = if up {
            (&real.notify_up, Event::RealUp)
        } else {
            (&real.notify_down, Event::RealDown)
        };
        self.notify(
            script.as_ref(),
            Some((real.addr, real.port)),
            event,
            timeout,
        );
    }

    fn notify(
        &self,
        script: Option<&Script>,
        real: Option<(IpAddr, u16)>,
        event: Event,
        timeout: std::time::Duration,
    ) {
        if let Some(script) = script {
            // The receiver is gone only once the handle stopped: nothing is left to tell.
            let _ = self.notices.send(Notice {
                service: self.spec.name.clone(),
                real,
                event,
                script: script.clone(),
                timeout,
            });
        }
    }

    /// keepalived's reload (`clear_diff_rs` -> `clear_service_rs`): a live real that the new
    /// configuration no longer has is taken out, with its `notify_down`.
    fn retire(&self, kept: impl Fn(&RealChecks) -> bool) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for (index, verdicts) in inner.reals.iter().enumerate() {
            if verdicts.alive && !kept(&self.spec.reals[index]) {
                self.notify_real(index, false, NOTIFY_TIMEOUT);
            }
        }
    }

    /// The service is going away with every real: `quorum_down`, if the quorum was up.
    fn lose_quorum(&self) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.quorum.is_up() {
            self.notify(
                self.spec.quorum_down.as_ref(),
                None,
                Event::QuorumDown,
                NOTIFY_TIMEOUT,
            );
        }
    }

    /// keepalived's shutdown with `omega` (`clear_service_rs`, `update_vs_notifies`): every
    /// live real's `notify_down`, then `quorum_down`, each with the stop timeout.
    fn shut_down(&self) {
        if !self.spec.omega {
            return;
        }
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for (index, verdicts) in inner.reals.iter().enumerate() {
            if verdicts.alive {
                self.notify_real(index, false, STOP_TIMEOUT);
            }
        }
        self.notify(
            self.spec.quorum_down.as_ref(),
            None,
            Event::QuorumDown,
            STOP_TIMEOUT,
        );
    }

    /// The weight real `index` has by its own checks.
    fn checked_weight(&self, index: usize, verdicts: &Verdicts) -> u32 {
        if verdicts.up.iter().any(|up| !up) {
            return 0;
        }
        let configured = i64::from(self.spec.reals[index].weight);
        let moved = verdicts
            .dynamic
            .iter()
            .flatten()
            .map(|&w| i64::from(w) - configured)
            .sum::<i64>();
        u32::try_from((configured + moved).max(0)).unwrap_or(u32::MAX)
    }

    /// Judges the quorum on the reals' checked weights and writes every weight that changed.
    fn settle(&self, inner: &mut Inner, reason: &str, dataplane: &SharedDataplane) {
        let checked: Vec<u32> = inner
            .reals
            .iter()
            .enumerate()
            .map(|(i, v)| self.checked_weight(i, v))
            .collect();
        let live = checked.iter().map(|&w| u64::from(w)).sum::<u64>();
        let threshold = inner.quorum.threshold();
        if let Some(up) = inner.quorum.update(live) {
            tracing::info!(
                service = self.spec.name,
                live_weight = live,
                threshold,
                sorry_server = self.spec.sorry_server,
                reason,
                "{}",
                if up { "quorum gained" } else { "quorum lost" }
            );
            let (script, event) = if up {
                (&self.spec.quorum_up, Event::QuorumUp)
            } else {
                (&self.spec.quorum_down, Event::QuorumDown)
            };
            self.notify(script.as_ref(), None, event, NOTIFY_TIMEOUT);
            if let Some(mailer) = &self.mail {
                // keepalived's SMTP_MSG_VS.
                mailer.send(
                    &format!(
                        "Virtualserver {} - {}",
                        self.spec.name,
                        if up { "UP" } else { "DOWN" }
                    ),
                    &format!(
                        "=> {} quorum: live weight {live}, threshold {threshold} <=",
                        if up { "Gained" } else { "Lost" }
                    ),
                );
            }
        }
        let sorry = self.spec.sorry_server && !inner.quorum.is_up();
        for (index, (verdicts, weight)) in inner.reals.iter_mut().zip(checked).enumerate() {
            let weight = if sorry { 0 } else { weight };
            if weight != verdicts.applied {
                self.write(index, verdicts, weight, reason, dataplane);
            }
        }
    }

    fn write(
        &self,
        index: usize,
        verdicts: &mut Verdicts,
        weight: u32,
        reason: &str,
        dataplane: &SharedDataplane,
    ) {
        let service = &self.spec.name;
        let real = &self.spec.reals[index];
        let result = dataplane
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_weight_fast(service, real.addr, real.port, weight);
        match result {
            Ok(()) => {
                self.flush.notify_one();
                tracing::info!(
                    service,
                    real = %real.addr,
                    port = real.port,
                    from = verdicts.applied,
                    weight,
                    inhibit_on_failure = real.inhibit_on_failure,
                    reason,
                    "real's weight changed"
                );
                verdicts.applied = weight;
            }
            // `applied` stays as it was, so the next change tries again; the flush rebuilds
            // the table the failed write may have left half done.
            Err(e) => {
                self.flush.notify_one();
                tracing::warn!(
                    service,
                    real = %real.addr,
                    port = real.port,
                    weight,
                    reason,
                    error = %e,
                    "could not set the real's weight"
                );
            }
        }
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
