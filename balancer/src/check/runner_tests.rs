use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::check::notices::{Event, Notice};
use crate::check::recording::RecordingDataplane;
use crate::check::{Attempt, Verdict};
use crate::notify::ScriptUser;

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

/// A notify script named `name`; the runner only queues it, the lab reads the queue.
fn script(name: &str) -> Script {
    Script {
        command: name.into(),
        program: name.into(),
        args: Vec::new(),
        user: ScriptUser::current(),
        shell: false,
    }
}

const TIMING: Timing = Timing {
    delay_loop: Duration::from_secs(10),
    retry: 1,
    delay_before_retry: Duration::from_secs(1),
    warmup: Duration::ZERO,
    rise: 1,
};

struct Lab {
    t0: Instant,
    recorder: Arc<Mutex<RecordingDataplane>>,
    /// `probes[real][checker]`; real `i` is 198.18.0.(11 + i).
    probes: Vec<Vec<Arc<Scripted>>>,
    handle: CheckHandle,
    notices: tokio::sync::mpsc::UnboundedReceiver<Notice>,
    spec: ServiceChecks,
}

struct Setup {
    alpha: bool,
    /// Checkers per real, one entry per real.
    checkers: Vec<usize>,
    weight: u32,
    quorum: u32,
    hysteresis: u32,
    sorry_server: bool,
    omega: bool,
}

const ONE_REAL: Setup = Setup {
    alpha: false,
    checkers: Vec::new(),
    weight: 5,
    quorum: 1,
    hysteresis: 0,
    sorry_server: false,
    omega: false,
};

impl Lab {
    fn start(setup: Setup) -> Self {
        let t0 = Instant::now();
        let (recorder, dataplane) = RecordingDataplane::shared();
        let counts = if setup.checkers.is_empty() {
            vec![1]
        } else {
            setup.checkers
        };
        let probes: Vec<Vec<Arc<Scripted>>> = counts
            .iter()
            .map(|&n| (0..n).map(|_| Arc::new(Scripted::default())).collect())
            .collect();
        let reals = probes
            .iter()
            .zip(11u8..)
            .map(|(probes, last)| RealChecks {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, last)),
                port: 80,
                weight: setup.weight,
                alpha: setup.alpha,
                inhibit_on_failure: false,
                notify_up: Some(script("up")),
                notify_down: Some(script("down")),
                checkers: probes
                    .iter()
                    .map(|p| (p.clone() as Arc<dyn Probe>, TIMING))
                    .collect(),
            })
            .collect();
        let service = ServiceChecks {
            name: "web".into(),
            quorum: setup.quorum,
            hysteresis: setup.hysteresis,
            sorry_server: setup.sorry_server,
            omega: setup.omega,
            quorum_up: Some(script("quorum_up")),
            quorum_down: Some(script("quorum_down")),
            alerts: false,
            reals,
        };
        let (tx, notices) = tokio::sync::mpsc::unbounded_channel();
        let handle = spawn_notifying(vec![service.clone()], &dataplane, 4, &tx);
        Self {
            t0,
            recorder,
            probes,
            handle,
            notices,
            spec: service,
        }
    }

    fn calls(&self) -> Vec<(u8, u32, Duration)> {
        // Which real (last byte of its address), the weight, and the (paused) time since the
        // lab started.
        RecordingDataplane::lock(&self.recorder)
            .writes
            .iter()
            .map(|w| {
                let IpAddr::V4(v4) = w.addr else {
                    panic!("unexpected real {}", w.addr);
                };
                assert_eq!((w.service.as_str(), w.port), ("web", 80));
                (v4.octets()[3], w.weight, w.at - self.t0)
            })
            .collect()
    }

    /// The notify scripts queued since the last call: script and real (last byte of its
    /// address, 0 for the service's).
    fn notices(&mut self) -> Vec<(String, u8)> {
        let mut out = Vec::new();
        while let Ok(n) = self.notices.try_recv() {
            let real = n.real.map_or(0, |(addr, _)| match addr {
                IpAddr::V4(v4) => v4.octets()[3],
                IpAddr::V6(_) => panic!("unexpected real {addr}"),
            });
            let expected = match n.event {
                Event::RealUp => "up",
                Event::RealDown => "down",
                Event::QuorumUp => "quorum_up",
                Event::QuorumDown => "quorum_down",
            };
            assert_eq!(n.script.command, expected, "the event's own script");
            out.push((n.script.command, real));
        }
        out
    }

    fn set(&self, real: usize, checker: usize, answer: u32) {
        self.probes[real][checker]
            .answer
            .store(answer, Ordering::Relaxed);
    }

    fn attempts(&self, real: usize, checker: usize) -> u32 {
        self.probes[real][checker].attempts.load(Ordering::Relaxed)
    }

    /// Sleeps on the paused clock (tokio advances it) until `at` seconds after the start.
    async fn until(&self, at: u64) {
        tokio::time::sleep_until(self.t0 + secs(at)).await;
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_retried_then_drains_the_real_and_a_pass_restores_it() {
    let lab = Lab::start(ONE_REAL);
    // Attempts at 0, 10, 20...: all pass, nothing is written.
    lab.until(5).await;
    assert_eq!(lab.calls(), []);
    lab.set(0, 0, 1);
    // The attempt at 10 fails (retry 1 of 1), its retry at 11 fails: weight 0 at 11.
    lab.until(15).await;
    assert_eq!(lab.calls(), [(11, 0, secs(11))]);
    assert_eq!(lab.attempts(0, 0), 3);
    lab.set(0, 0, 0);
    // Down, so the next attempt waits a full loop: 21; it passes, weight 5 again.
    lab.until(25).await;
    assert_eq!(lab.calls(), [(11, 0, secs(11)), (11, 5, secs(21))]);
}

#[tokio::test(start_paused = true)]
async fn one_failure_within_the_retries_changes_nothing() {
    let lab = Lab::start(ONE_REAL);
    lab.until(5).await;
    lab.set(0, 0, 1);
    lab.until(10).await;
    tokio::task::yield_now().await;
    lab.set(0, 0, 0);
    lab.until(40).await;
    assert_eq!(lab.calls(), []);
    assert_eq!(lab.attempts(0, 0), 5, "0, 10, 11, 21, 31");
}

#[tokio::test(start_paused = true)]
async fn alpha_starts_at_weight_0_until_the_first_pass() {
    let lab = Lab::start(Setup {
        alpha: true,
        ..ONE_REAL
    });
    lab.set(0, 0, 1);
    lab.until(25).await;
    assert_eq!(lab.calls(), [(11, 0, secs(0))]);
    lab.set(0, 0, 0);
    lab.until(35).await;
    assert_eq!(lab.calls(), [(11, 0, secs(0)), (11, 5, secs(30))]);
}

#[tokio::test(start_paused = true)]
async fn the_real_is_up_only_while_every_checker_passes() {
    let lab = Lab::start(Setup {
        checkers: vec![2],
        ..ONE_REAL
    });
    lab.set(0, 0, 1);
    lab.set(0, 1, 1);
    lab.until(5).await;
    // Both fail their first attempt, which counts at once (keepalived starts a checker with
    // its retries spent): one write of 0.
    assert_eq!(lab.calls(), [(11, 0, secs(0))]);
    lab.set(0, 0, 0);
    lab.until(15).await;
    assert_eq!(lab.calls(), [(11, 0, secs(0))], "checker 1 still fails");
    lab.set(0, 1, 0);
    lab.until(25).await;
    assert_eq!(lab.calls(), [(11, 0, secs(0)), (11, 5, secs(20))]);
}

#[tokio::test(start_paused = true)]
async fn misc_dynamic_weights_replace_the_configured_one() {
    let lab = Lab::start(ONE_REAL);
    lab.set(0, 0, 2 + 40);
    lab.until(5).await;
    assert_eq!(lab.calls(), [(11, 40, secs(0))]);
    lab.set(0, 0, 0);
    lab.until(15).await;
    assert_eq!(lab.calls(), [(11, 40, secs(0)), (11, 5, secs(10))]);
}

#[tokio::test(start_paused = true)]
async fn a_lost_quorum_hands_the_service_to_the_sorry_server() {
    // Three reals of weight 2, quorum 5 with hysteresis 1: lost below 4, regained at 6.
    let lab = Lab::start(Setup {
        checkers: vec![1, 1, 1],
        weight: 2,
        quorum: 5,
        hysteresis: 1,
        sorry_server: true,
        ..ONE_REAL
    });
    lab.set(0, 0, 1);
    lab.until(5).await;
    // Live weight 4: still held.
    assert_eq!(lab.calls(), [(11, 0, secs(0))]);
    lab.set(1, 0, 1);
    lab.until(15).await;
    // Live weight 2: lost; the last live real is set to 0 too, for the sorry server.
    assert_eq!(
        lab.calls()[1..],
        [(12, 0, secs(11)), (13, 0, secs(11))],
        "{:?}",
        lab.calls()
    );
    lab.set(0, 0, 0);
    lab.until(25).await;
    // Live weight 4 < 6: still lost, nothing written.
    assert_eq!(lab.calls().len(), 3, "{:?}", lab.calls());
    lab.set(1, 0, 0);
    lab.until(35).await;
    assert_eq!(
        lab.calls()[3..],
        [(11, 2, secs(31)), (12, 2, secs(31)), (13, 2, secs(31))],
        "{:?}",
        lab.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_sorry_server_the_quorum_moves_no_weight() {
    let lab = Lab::start(Setup {
        checkers: vec![1, 1],
        quorum: 10,
        ..ONE_REAL
    });
    lab.set(0, 0, 1);
    lab.until(5).await;
    assert_eq!(lab.calls(), [(11, 0, secs(0))]);
}

#[tokio::test(start_paused = true)]
async fn stop_ends_every_task() {
    let lab = Lab::start(Setup {
        checkers: vec![3],
        ..ONE_REAL
    });
    assert_eq!(lab.handle.len(), 3);
    lab.handle.stop().await;
}

/// Counts attempts in flight; each takes a second of (paused) time.
#[derive(Default)]
struct Slow {
    in_flight: AtomicU32,
    most: AtomicU32,
    done: AtomicU32,
}

impl Probe for Slow {
    fn attempt(&self) -> Attempt<'_> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(secs(1)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.done.fetch_add(1, Ordering::SeqCst);
            Verdict::UP
        })
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

#[tokio::test(start_paused = true)]
async fn thousands_of_checkers_share_a_bounded_number_of_attempts() {
    let probe = Arc::new(Slow::default());
    let reals = (0..2000u16)
        .map(|i| {
            RealChecks::new(
                IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
                i,
                1,
                vec![(probe.clone() as Arc<dyn Probe>, TIMING)],
            )
        })
        .collect();
    let service = ServiceChecks::new("many", reals);
    let (_, dataplane) = RecordingDataplane::shared();
    let handle = spawn(vec![service], &dataplane, 100);
    assert_eq!(handle.len(), 2000);
    // 2000 one-second attempts, 100 at a time: the first round takes 20 s.
    tokio::time::sleep(Duration::from_millis(19_500)).await;
    assert!(probe.done.load(Ordering::SeqCst) < 2000);
    tokio::time::sleep(secs(1)).await;
    assert_eq!(probe.done.load(Ordering::SeqCst), 2000);
    assert_eq!(probe.most.load(Ordering::SeqCst), 100);
    handle.stop().await;
}

fn notice(script: &str, real: u8) -> (String, u8) {
    (script.to_owned(), real)
}

#[tokio::test(start_paused = true)]
async fn notify_down_and_up_follow_the_real_not_each_attempt() {
    let mut lab = Lab::start(Setup {
        checkers: vec![2],
        ..ONE_REAL
    });
    lab.until(5).await;
    assert_eq!(
        lab.notices(),
        [],
        "a first pass of a real that starts up notifies nothing"
    );
    lab.set(0, 0, 1);
    lab.set(0, 1, 1);
    lab.until(25).await;
    // Checker 0 fails at 10 and on retry at 11: down, notify_down and the lost quorum.
    // Checker 1 going down too changes nothing more.
    assert_eq!(
        lab.notices(),
        [notice("down", 11), notice("quorum_down", 0)]
    );
    lab.set(0, 0, 0);
    lab.until(35).await;
    assert_eq!(lab.notices(), [], "still down while checker 1 fails");
    lab.set(0, 1, 0);
    lab.until(45).await;
    let notices = lab.notices();
    assert_eq!(notices, [notice("up", 11), notice("quorum_up", 0)]);
}

#[tokio::test(start_paused = true)]
async fn an_alpha_real_failing_its_first_check_gets_notify_down() {
    let mut lab = Lab::start(Setup {
        alpha: true,
        ..ONE_REAL
    });
    lab.set(0, 0, 1);
    lab.until(5).await;
    // alpha: weight 0 from the start loses the quorum at once; the first failure notifies.
    assert_eq!(
        lab.notices(),
        [notice("quorum_down", 0), notice("down", 11)]
    );
    lab.until(15).await;
    assert_eq!(
        lab.notices(),
        [],
        "a later failure while down notifies nothing"
    );
    lab.set(0, 0, 0);
    lab.until(25).await;
    assert_eq!(lab.notices(), [notice("up", 11), notice("quorum_up", 0)]);
}

#[tokio::test(start_paused = true)]
async fn omega_runs_notify_down_and_quorum_down_at_shutdown() {
    for omega in [false, true] {
        let mut lab = Lab::start(Setup {
            checkers: vec![1, 1],
            omega,
            ..ONE_REAL
        });
        lab.set(1, 0, 1);
        lab.until(5).await;
        assert_eq!(lab.notices(), [notice("down", 12)]);
        let Lab {
            handle,
            notices: mut rx,
            ..
        } = lab;
        handle.stop().await;
        let mut at_stop = Vec::new();
        while let Some(n) = rx.recv().await {
            assert_eq!(n.timeout, crate::notify::STOP_TIMEOUT);
            at_stop.push((n.script.command, n.real.map(|(a, _)| a)));
        }
        let expected = if omega {
            vec![
                ("down".to_owned(), Some(IpAddr::from([198, 18, 0, 11]))),
                ("quorum_down".to_owned(), None),
            ]
        } else {
            Vec::new()
        };
        assert_eq!(at_stop, expected, "omega {omega}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_reload_carries_a_failed_real_down_with_its_last_result() {
    let mut lab = Lab::start(ONE_REAL);
    let real = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11));
    let status = lab.handle.status();
    assert_eq!(status.len(), 1);
    assert!(status[0].up);
    assert_eq!(status[0].last, "not run yet");
    lab.until(5).await;
    lab.set(0, 0, 1);
    lab.until(15).await;
    assert_eq!(lab.calls(), [(11, 0, secs(11))]);
    let status = lab.handle.status();
    assert!(!status[0].up);
    assert_eq!(status[0].last, "scripted failed: scripted failure");
    assert_eq!((status[0].service.as_str(), status[0].real), ("web", real));

    // The same real with the same checkers: it stays down, nothing is rewritten, and the
    // resumed checker brings it back on its next pass.
    lab.handle.replace(lab.spec.clone(), |_| true);
    assert_eq!(lab.handle.weights("web"), [(real, 80, 0)]);
    assert!(!lab.handle.status()[0].up);
    lab.until(30).await;
    assert_eq!(lab.calls().len(), 1);
    lab.set(0, 0, 0);
    lab.until(45).await;
    let calls = lab.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[1].0, calls[1].1), (11, 5));
    assert_eq!(lab.handle.weights("web"), [(real, 80, 5)]);

    // Not carried: the checker starts afresh (up, not yet run), as at daemon start.
    lab.set(0, 0, 1);
    lab.until(70).await;
    assert_eq!(lab.handle.weights("web"), [(real, 80, 0)]);
    lab.handle.replace(lab.spec.clone(), |_| false);
    assert_eq!(lab.handle.weights("web"), [(real, 80, 5)]);
    assert_eq!(lab.handle.status()[0].last, "not run yet");
    assert_eq!(lab.handle.len(), 1);
    lab.handle.remove("web");
    assert!(lab.handle.is_empty());
    assert!(lab.handle.status().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_drops_a_live_real_runs_its_notify_down() {
    let mut lab = Lab::start(Setup {
        checkers: vec![1, 1],
        ..ONE_REAL
    });
    lab.until(5).await;
    assert_eq!(lab.notices(), []);
    let mut spec = lab.spec.clone();
    spec.reals.remove(1);
    lab.handle.replace(spec.clone(), |_| true);
    assert_eq!(
        lab.notices(),
        [notice("down", 12)],
        "198.18.0.12 left the service"
    );
    lab.handle.replace(spec, |_| true);
    assert_eq!(lab.notices(), [], "nothing left the service");
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_deletes_the_service_runs_its_live_reals_notify_down() {
    let mut lab = Lab::start(Setup {
        checkers: vec![1, 1],
        ..ONE_REAL
    });
    lab.until(5).await;
    lab.set(1, 0, 1);
    lab.until(15).await;
    assert_eq!(lab.notices(), [notice("down", 12)]);
    lab.handle.delete("web");
    assert_eq!(
        lab.notices(),
        [notice("down", 11), notice("quorum_down", 0)],
        "only the real still alive is taken out, then the quorum is lost"
    );
    assert!(lab.handle.is_empty());
}

#[tokio::test(start_paused = true)]
async fn deleting_a_service_whose_quorum_is_lost_runs_no_quorum_down() {
    let mut lab = Lab::start(ONE_REAL);
    lab.until(5).await;
    lab.set(0, 0, 1);
    lab.until(15).await;
    assert_eq!(
        lab.notices(),
        [notice("down", 11), notice("quorum_down", 0)]
    );
    lab.handle.delete("web");
    assert_eq!(lab.notices(), [], "nothing was up to go down");
}

/// A checker whose attempts take three seconds (of the paused clock) and note when each
/// started; it passes until told to fail.
struct ThreeSeconds {
    t0: Instant,
    fail: std::sync::atomic::AtomicBool,
    starts: Mutex<Vec<Duration>>,
}

impl Probe for ThreeSeconds {
    fn attempt(&self) -> Attempt<'_> {
        self.starts.lock().unwrap().push(Instant::now() - self.t0);
        Box::pin(async move {
            tokio::time::sleep(secs(3)).await;
            if self.fail.load(Ordering::Relaxed) {
                Verdict::down("slow failure")
            } else {
                Verdict::UP
            }
        })
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

#[tokio::test(start_paused = true)]
async fn passing_checks_keep_their_cadence_and_a_retry_waits_after_the_failure() {
    let t0 = Instant::now();
    let probe = Arc::new(ThreeSeconds {
        t0,
        fail: std::sync::atomic::AtomicBool::new(false),
        starts: Mutex::new(Vec::new()),
    });
    let (recorder, dataplane) = RecordingDataplane::shared();
    let service = ServiceChecks::new(
        "web",
        vec![RealChecks::new(
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11)),
            80,
            5,
            vec![(probe.clone() as Arc<dyn Probe>, TIMING)],
        )],
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let _handle = spawn_notifying(vec![service], &dataplane, 4, &tx);
    // Passing attempts start every delay_loop (10 s), not 10 s after the previous ended.
    tokio::time::sleep_until(t0 + secs(25)).await;
    assert_eq!(*probe.starts.lock().unwrap(), [secs(0), secs(10), secs(20)]);
    probe.fail.store(true, Ordering::Relaxed);
    // The attempt at 30 fails at 33; its retry waits delay_before_retry from there (34),
    // fails at 37 and takes the real down; the next attempt is a delay_loop later (47).
    tokio::time::sleep_until(t0 + secs(48)).await;
    assert_eq!(
        *probe.starts.lock().unwrap(),
        [secs(0), secs(10), secs(20), secs(30), secs(34), secs(47)]
    );
    let recorder = RecordingDataplane::lock(&recorder);
    assert_eq!(
        recorder.writes.iter().map(|w| w.weight).collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(recorder.flushes, [1], "the write was flushed, once");
}
