use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::check::{Attempt, Verdict};
use crate::dataplane::DataplaneError;
use crate::model::VirtualService;

/// Records every `set_weight` with the (paused) time it came at.
#[derive(Default)]
struct Recorder {
    calls: Vec<(u32, Duration)>,
    start: Option<Instant>,
}

impl Dataplane for Recorder {
    fn apply(&mut self, _: &str, _: &VirtualService) -> Result<(), DataplaneError> {
        Ok(())
    }
    fn remove(&mut self, _: &str) -> Result<(), DataplaneError> {
        Ok(())
    }
    fn set_weight(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError> {
        assert_eq!((name, addr, port), ("web", REAL, 80));
        let start = *self.start.get_or_insert_with(Instant::now);
        self.calls.push((weight, start.elapsed()));
        Ok(())
    }
}

const REAL: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11));

/// A checker whose verdict the test sets: 0 passes, 1 fails, 2.. passes with weight n - 2.
#[derive(Default)]
struct Scripted {
    answer: AtomicU32,
    attempts: AtomicU32,
}

impl Probe for Scripted {
    fn attempt(&self) -> Attempt<'_> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let verdict = match self.answer.load(Ordering::Relaxed) {
            0 => Verdict::UP,
            1 => Verdict::down("scripted failure"),
            n => Verdict::Up {
                weight: Some(n - 2),
            },
        };
        Box::pin(async move { verdict })
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
}

const TIMING: Timing = Timing {
    delay_loop: Duration::from_secs(10),
    retry: 1,
    delay_before_retry: Duration::from_secs(1),
    warmup: Duration::ZERO,
};

struct Lab {
    recorder: Arc<Mutex<Recorder>>,
    probes: Vec<Arc<Scripted>>,
    handle: CheckHandle,
}

impl Lab {
    fn start(alpha: bool, checkers: usize) -> Self {
        let recorder = Arc::new(Mutex::new(Recorder {
            start: Some(Instant::now()),
            ..Recorder::default()
        }));
        let probes: Vec<_> = (0..checkers)
            .map(|_| Arc::new(Scripted::default()))
            .collect();
        let real = RealChecks {
            service: "web".into(),
            addr: REAL,
            port: 80,
            weight: 5,
            alpha,
            inhibit_on_failure: false,
            checkers: probes
                .iter()
                .map(|p| (p.clone() as Arc<dyn Probe>, TIMING))
                .collect(),
        };
        let dataplane: SharedDataplane = recorder.clone();
        let handle = spawn(vec![real], &dataplane, 4);
        Self {
            recorder,
            probes,
            handle,
        }
    }

    fn calls(&self) -> Vec<(u32, Duration)> {
        self.recorder.lock().unwrap().calls.clone()
    }

    fn set(&self, checker: usize, answer: u32) {
        self.probes[checker].answer.store(answer, Ordering::Relaxed);
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Sleeps on the paused clock until `at` seconds after the lab started (tokio advances it).
async fn until(lab_start: Instant, at: u64) {
    tokio::time::sleep_until(lab_start + secs(at)).await;
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_retried_then_drains_the_real_and_a_pass_restores_it() {
    let t0 = Instant::now();
    let lab = Lab::start(false, 1);
    // Attempts at 0, 10, 20...: all pass, nothing is written.
    until(t0, 5).await;
    assert_eq!(lab.calls(), []);
    lab.set(0, 1);
    // Attempt at 10 fails (retry 1 of 1), its retry at 11 fails: weight 0 at 11.
    until(t0, 15).await;
    assert_eq!(lab.calls(), [(0, secs(11))]);
    assert_eq!(lab.probes[0].attempts.load(Ordering::Relaxed), 3);
    lab.set(0, 0);
    // Down, so the next attempt waits a full loop: 21; it passes, weight 5 again.
    until(t0, 25).await;
    assert_eq!(lab.calls(), [(0, secs(11)), (5, secs(21))]);
}

#[tokio::test(start_paused = true)]
async fn one_failure_within_the_retries_changes_nothing() {
    let t0 = Instant::now();
    let lab = Lab::start(false, 1);
    until(t0, 5).await;
    lab.set(0, 1);
    until(t0, 10).await;
    tokio::task::yield_now().await;
    lab.set(0, 0);
    until(t0, 40).await;
    assert_eq!(lab.calls(), []);
    assert_eq!(
        lab.probes[0].attempts.load(Ordering::Relaxed),
        5,
        "0, 10, 11, 21, 31"
    );
}

#[tokio::test(start_paused = true)]
async fn alpha_starts_at_weight_0_until_the_first_pass() {
    let t0 = Instant::now();
    let lab = Lab::start(true, 1);
    lab.set(0, 1);
    until(t0, 25).await;
    assert_eq!(lab.calls(), [(0, secs(0))]);
    lab.set(0, 0);
    until(t0, 35).await;
    assert_eq!(lab.calls(), [(0, secs(0)), (5, secs(30))]);
}

#[tokio::test(start_paused = true)]
async fn the_real_is_up_only_while_every_checker_passes() {
    let t0 = Instant::now();
    let lab = Lab::start(false, 2);
    lab.set(0, 1);
    lab.set(1, 1);
    until(t0, 5).await;
    // Both fail their first attempt and its retry: one write of 0, at 1 s.
    assert_eq!(lab.calls(), [(0, secs(1))]);
    lab.set(0, 0);
    until(t0, 15).await;
    assert_eq!(lab.calls(), [(0, secs(1))], "checker 1 still fails");
    lab.set(1, 0);
    until(t0, 25).await;
    assert_eq!(lab.calls(), [(0, secs(1)), (5, secs(21))]);
}

#[tokio::test(start_paused = true)]
async fn misc_dynamic_weights_replace_the_configured_one() {
    let t0 = Instant::now();
    let lab = Lab::start(false, 1);
    lab.set(0, 2 + 40);
    until(t0, 5).await;
    assert_eq!(lab.calls(), [(40, secs(0))]);
    lab.set(0, 0);
    until(t0, 15).await;
    assert_eq!(lab.calls(), [(40, secs(0)), (5, secs(10))]);
}

#[tokio::test(start_paused = true)]
async fn stop_ends_every_task() {
    let lab = Lab::start(false, 3);
    assert_eq!(lab.handle.len(), 3);
    lab.handle.stop().await;
}
