//! `cargo xtask bench checkers`: 10,000 reals, each a TCP listener (4 namespaces x 50
//! addresses x 50 ports), each with a `TCP_CHECK` at `delay_loop` 1 s and keepalived's
//! default warmup (one loop), run by the checker runner in a checker namespace on a tokio
//! runtime of two workers with `DEFAULT_CONCURRENCY`, as `balancer run` runs them.
//!
//! Figures, over a window that starts once every checker has run (after the warmup):
//! - checks per second: attempts that ended within the window, divided by its length;
//! - drift: how late each attempt started against its schedule: the runner's, where a
//!   passing check is due `delay_loop` after the previous one was due (or at once, if that
//!   has passed when the previous one ends): median, p99 and max;
//! - CPU: user and system time of the checker runtime's worker threads (from
//!   `/proc/self/task/*/stat`) over the window, as a share of one core; and of the whole bench
//!   process beside it (`getrusage`), which also holds the listeners' accept loops. The
//!   system time includes the kernel's work for both ends of each handshake: over veth, the
//!   real's side runs in the sender's context.
//!
//! Nothing is asserted on these figures; the bench fails only if a check fails (a real that
//! goes down means the setup, not the runner, is what was measured).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use balancer::check::{
    self, Attempt, Probe, RealChecks, ServiceChecks, Timing, Verdict,
    recording::RecordingDataplane,
    runner::DEFAULT_CONCURRENCY,
    tcp::{Connect, TcpCheck},
};
use balancer_tests::{Netns, NsThread, veth_pair};

const NAMESPACES: u8 = 4;
const ADDRESSES: u8 = 50;
const PORTS: u16 = 50;
const FIRST_PORT: u16 = 10_000;
const DELAY_LOOP: Duration = Duration::from_secs(1);
/// From the start until every checker has run at least twice: warmup plus a loop.
const SETTLE: Duration = Duration::from_secs(3);
const WINDOW: Duration = Duration::from_secs(10);

/// What every timed probe reports into.
#[derive(Default)]
struct Tally {
    recording: AtomicBool,
    completed: AtomicU64,
    failed: AtomicU64,
    /// Microseconds late, for attempts started while recording.
    drifts: Mutex<Vec<i64>>,
}

/// A `TCP_CHECK` that notes when each attempt starts and ends.
struct Timed {
    inner: TcpCheck,
    /// When the next attempt is due, by the runner's rule, once one has run.
    due: Mutex<Option<Instant>>,
    tally: Arc<Tally>,
}

impl Probe for Timed {
    fn attempt(&self) -> Attempt<'_> {
        let start = Instant::now();
        let scheduled = *self.due.lock().unwrap();
        Box::pin(async move {
            let verdict = self.inner.attempt().await;
            let end = Instant::now();
            // The first attempt's schedule (a random warmup) is unknown: it counts as due
            // when it started.
            *self.due.lock().unwrap() = Some((scheduled.unwrap_or(start) + DELAY_LOOP).max(end));
            if self.tally.recording.load(Ordering::Relaxed) {
                self.tally.completed.fetch_add(1, Ordering::Relaxed);
                if verdict != Verdict::UP {
                    self.tally.failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(scheduled) = scheduled {
                    let late = if start >= scheduled {
                        i64::try_from((start - scheduled).as_micros()).unwrap_or(i64::MAX)
                    } else {
                        -i64::try_from((scheduled - start).as_micros()).unwrap_or(i64::MAX)
                    };
                    self.tally.drifts.lock().unwrap().push(late);
                }
            }
            verdict
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn real_addr(ns: u8, i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, ns, 10 + i)
}

/// The namespaces: the checker's, joined to each real namespace by a veth pair, every real
/// namespace with its addresses and listeners (accepting and closing on a runtime of their
/// own). Returns the guards; dropping them removes everything.
fn topology() -> (Netns, Vec<(Netns, NsThread)>) {
    let lb = Netns::new("bcklb");
    lb.disable_ipv6();
    let mut reals = Vec::new();
    let bound = Arc::new(AtomicU64::new(0));
    for n in 0..NAMESPACES {
        let ns = Netns::new(&format!("bckr{n}"));
        ns.disable_ipv6();
        let (lb_if, real_if) = (format!("c{n}"), format!("r{n}"));
        veth_pair(&lb, &lb_if, &ns, &real_if);
        lb.ip(&["addr", "add", &format!("198.18.{n}.1/24"), "dev", &lb_if]);
        for i in 0..ADDRESSES {
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/24", real_addr(n, i)),
                "dev",
                &real_if,
            ]);
        }
        let count = bound.clone();
        let listeners = ns.spawn_thread(move |stop: &AtomicBool| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for i in 0..ADDRESSES {
                    for port in FIRST_PORT..FIRST_PORT + PORTS {
                        let listener = tokio::net::TcpListener::bind((real_addr(n, i), port))
                            .await
                            .expect("listen");
                        count.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move { while listener.accept().await.is_ok() {} });
                    }
                }
                while !NsThread::stopping(stop) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        });
        reals.push((ns, listeners));
    }
    let all = u64::from(NAMESPACES) * u64::from(ADDRESSES) * u64::from(PORTS);
    let ready = balancer_tests::wait_until(Duration::from_mins(1), || {
        bound.load(Ordering::Relaxed) == all
    });
    assert!(ready, "the listeners did not all bind");
    (lb, reals)
}

fn services(tally: &Arc<Tally>) -> Vec<ServiceChecks> {
    let timing = Timing {
        delay_loop: DELAY_LOOP,
        retry: 1,
        delay_before_retry: Duration::from_secs(1),
        warmup: DELAY_LOOP,
        rise: 1,
    };
    (0..NAMESPACES)
        .map(|n| {
            let reals = (0..ADDRESSES)
                .flat_map(|i| (FIRST_PORT..FIRST_PORT + PORTS).map(move |p| (i, p)))
                .map(|(i, port)| {
                    let to = SocketAddr::new(IpAddr::V4(real_addr(n, i)), port);
                    let probe = Timed {
                        inner: TcpCheck {
                            connect: Connect {
                                to,
                                bind_ip: None,
                                bind_port: None,
                                timeout: Duration::from_secs(5),
                                fwmark: None,
                            },
                        },
                        due: Mutex::new(None),
                        tally: tally.clone(),
                    };
                    RealChecks::new(
                        to.ip(),
                        port,
                        1,
                        vec![(Arc::new(probe) as Arc<dyn Probe>, timing)],
                    )
                })
                .collect();
            ServiceChecks::new(&format!("bench{n}"), reals)
        })
        .collect()
}

/// User and system CPU of `who` (`RUSAGE_SELF`).
fn cpu(who: i32) -> [Duration; 2] {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid starting value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    let rc = unsafe { libc::getrusage(who, &raw mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    [tv(usage.ru_utime), tv(usage.ru_stime)]
}

/// The checker runtime's worker threads are named so that their CPU can be told apart.
const WORKER: &str = "bench-checker";

/// User and system CPU of this process's threads named [`WORKER`].
fn workers_cpu() -> [Duration; 2] {
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let mut total = [0u64; 2];
    for task in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != WORKER {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // proc(5): after "(comm)", utime and stime are the 12th and 13th fields.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        for (i, n) in [11, 12].into_iter().enumerate() {
            total[i] += fields
                .get(n)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total.map(|ticks| Duration::from_secs(ticks) / u32::try_from(hz).unwrap_or(100))
}

/// CPU used since `before` (as `now` reads it now), per second of `wall`: user, system.
fn share(now: [Duration; 2], before: [Duration; 2], wall: f64) -> [f64; 2] {
    [0, 1].map(|i| now[i].saturating_sub(before[i]).as_secs_f64() / wall)
}

/// The figures of one run.
struct Figures {
    reals: usize,
    checks_per_s: f64,
    failed: u64,
    drift_ms: [f64; 3],
    /// User, system.
    checker_cpu: [f64; 2],
    process_cpu: [f64; 2],
    weight_writes: usize,
}

fn measure(lb: &Netns) -> Figures {
    let tally = Arc::new(Tally::default());
    let services = services(&tally);
    let reals = services.iter().map(|s| s.reals.len()).sum();
    let (recorder, dataplane) = RecordingDataplane::shared();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = tally.clone();
    let _checker = lb.spawn_thread(move |_: &AtomicBool| {
        // `balancer run`'s runtime: two workers (they inherit this thread's namespace).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(WORKER)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Spawned, so that the checkers' tasks start on the workers.
            let handle =
                tokio::spawn(
                    async move { check::spawn(services, &dataplane, DEFAULT_CONCURRENCY) },
                )
                .await
                .unwrap();
            tokio::time::sleep(SETTLE).await;
            let (thread0, process0, wall0) =
                (workers_cpu(), cpu(libc::RUSAGE_SELF), Instant::now());
            t.recording.store(true, Ordering::Relaxed);
            tokio::time::sleep(WINDOW).await;
            t.recording.store(false, Ordering::Relaxed);
            let wall = wall0.elapsed().as_secs_f64();
            let thread = share(workers_cpu(), thread0, wall);
            let process = share(cpu(libc::RUSAGE_SELF), process0, wall);
            handle.stop().await;
            let _ = tx.send((wall, thread, process));
        });
    });
    let (wall, checker_cpu, process_cpu) = rx
        .recv_timeout(SETTLE + WINDOW + Duration::from_mins(1))
        .expect("the checker thread reports");
    let mut drifts = std::mem::take(&mut *tally.drifts.lock().unwrap());
    drifts.sort_unstable();
    let at = |q: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a non-empty list"
        )]
        let i = ((drifts.len() - 1) as f64 * q).round() as usize;
        #[expect(clippy::cast_precision_loss, reason = "microseconds to milliseconds")]
        let ms = drifts[i] as f64 / 1000.0;
        ms
    };
    assert!(!drifts.is_empty(), "no attempt was timed");
    #[expect(clippy::cast_precision_loss, reason = "a count of checks")]
    let checks_per_s = tally.completed.load(Ordering::Relaxed) as f64 / wall;
    Figures {
        reals,
        checks_per_s,
        failed: tally.failed.load(Ordering::Relaxed),
        drift_ms: [at(0.5), at(0.99), at(1.0)],
        checker_cpu,
        process_cpu,
        weight_writes: RecordingDataplane::lock(&recorder).writes.len(),
    }
}

/// The same connections without the runner, for comparison: one thread in the checker
/// namespace connects to every real once per `DELAY_LOOP` (blocking connect, closed with a
/// reset as `TCP_CHECK` closes) for `BARE_WINDOW`. Returns connects per second and the
/// thread's CPU (user, system) as a share of one core: most of it is the kernel's TCP work
/// for both ends of each handshake, which any checker on this host pays.
fn bare_connects(lb: &Netns) -> (f64, [f64; 2]) {
    const BARE_WINDOW: Duration = Duration::from_secs(5);
    let targets: Vec<SocketAddr> = (0..NAMESPACES)
        .flat_map(|n| {
            (0..ADDRESSES).flat_map(move |i| {
                (FIRST_PORT..FIRST_PORT + PORTS)
                    .map(move |p| SocketAddr::new(IpAddr::V4(real_addr(n, i)), p))
            })
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let _bare = lb.spawn_thread(move |_: &AtomicBool| {
        let (before, start) = (cpu(libc::RUSAGE_THREAD), Instant::now());
        let per = DELAY_LOOP / u32::try_from(targets.len()).unwrap_or(u32::MAX);
        let mut done = 0u32;
        while start.elapsed() < BARE_WINDOW {
            let to = targets[done as usize % targets.len()];
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            if socket
                .connect_timeout(&to.into(), Duration::from_secs(1))
                .is_ok()
            {
                let _ = socket.set_linger(Some(Duration::ZERO));
            }
            drop(socket);
            done += 1;
            // Paced to the checkers' rate, not faster.
            if let Some(ahead) = (per * done).checked_sub(start.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        let wall = start.elapsed().as_secs_f64();
        let _ = tx.send((
            f64::from(done) / wall,
            share(cpu(libc::RUSAGE_THREAD), before, wall),
        ));
    });
    rx.recv_timeout(BARE_WINDOW + Duration::from_secs(30))
        .expect("the bare loop reports")
}

/// Raises the open-file limit to its hard limit: 10,000 listeners and the checks' sockets.
fn raise_nofile() {
    // SAFETY: getrlimit / setrlimit with a valid struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit), 0);
    }
}

pub fn run() {
    raise_nofile();
    let (lb, reals) = topology();
    let f = measure(&lb);
    let (bare_rate, bare_cpu) = bare_connects(&lb);
    drop(reals);
    drop(lb);
    println!(
        "{} reals, TCP_CHECK, delay_loop {DELAY_LOOP:?}, concurrency {DEFAULT_CONCURRENCY}, window {WINDOW:?}",
        f.reals
    );
    println!("checks per second        {:>10.0}", f.checks_per_s);
    println!(
        "drift ms (median/p99/max) {:>9.2} {:>8.2} {:>8.2}",
        f.drift_ms[0], f.drift_ms[1], f.drift_ms[2]
    );
    println!(
        "checker workers CPU      {:>9.1} % of one core ({:.1} user, {:.1} system)",
        (f.checker_cpu[0] + f.checker_cpu[1]) * 100.0,
        f.checker_cpu[0] * 100.0,
        f.checker_cpu[1] * 100.0
    );
    println!(
        "whole process CPU        {:>9.1} % of one core (listeners included)",
        (f.process_cpu[0] + f.process_cpu[1]) * 100.0
    );
    println!(
        "bare connect loop CPU    {:>9.1} % of one core ({:.1} user, {:.1} system) at {bare_rate:.0} connects/s: \
         the same handshakes without the runner",
        (bare_cpu[0] + bare_cpu[1]) * 100.0,
        bare_cpu[0] * 100.0,
        bare_cpu[1] * 100.0
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average during the run: {}", load.trim());
    let json = format!(
        "{{\"reals\": {}, \"delay_loop_s\": {}, \"concurrency\": {DEFAULT_CONCURRENCY}, \"window_s\": {}, \"checks_per_s\": {:.1}, \"drift_ms\": {{\"median\": {:.3}, \"p99\": {:.3}, \"max\": {:.3}}}, \"checker_workers_cpu_cores\": {{\"user\": {:.4}, \"system\": {:.4}}}, \"process_cpu_cores\": {:.4}, \"bare_connects_per_s\": {bare_rate:.1}, \"bare_cpu_cores\": {{\"user\": {:.4}, \"system\": {:.4}}}, \"loadavg\": \"{}\"}}\n",
        f.reals,
        DELAY_LOOP.as_secs_f64(),
        WINDOW.as_secs_f64(),
        f.checks_per_s,
        f.drift_ms[0],
        f.drift_ms[1],
        f.drift_ms[2],
        f.checker_cpu[0],
        f.checker_cpu[1],
        f.process_cpu[0] + f.process_cpu[1],
        bare_cpu[0],
        bare_cpu[1],
        load.trim()
    );
    let path = super::save("checkers", &json);
    println!("written to {}", path.display());
    assert_eq!(
        f.failed, 0,
        "checks failed: the setup, not the runner, was measured"
    );
    assert_eq!(f.weight_writes, 0, "a real's weight moved");
}
