//! `cargo xtask bench failover`: how long a VIP is unreachable when its master goes away, ours
//! beside Debian's keepalived in the same run.
//!
//! Topology: two routers (`a` priority 200 `state MASTER`, `b` priority 100) and a client on
//! one bridge. `b` runs a UDP echo server on the VIP; nothing else answers on that port. The
//! client sends a datagram to the VIP every millisecond (polling its socket between
//! high-resolution sleeps) and the figure is the time from the moment the master is killed to the first echo reply: the
//! backup has taken over *and* its gratuitous ARP has moved the client's neighbour entry
//! (resolved more than Linux's ARP `locktime` before, as a real client's would be).
//! - crash: SIGKILL (keepalived's VRRP child and parent). The dead master's addresses stay
//!   on its interface, as after a crash; they are removed before it is started again.
//! - graceful: SIGTERM; the master advertises priority 0 and lets the address go.
//!
//! The master is stopped right after the client sees one of its adverts, so every run
//! starts at the same point of the advert cycle and the figure is the backup's full
//! reaction, not the luck of the phase (a kill just before an advert would shorten it by up
//! to one interval).
//!
//! Both routers run the same implementation. The RFC bound is the backup's
//! `Master_Down_Interval` (3 x advert + `Skew_Time`, RFC 5798 §6.1 / RFC 3768 §6.1) for a
//! crash, and `Skew_Time` for a graceful stop (RFC 5798 §6.4.2, priority 0).
//!
//! Busy: with the fastest interval, CPU hogs (four spinning threads per core) run for a while
//! and every takeover by the backup while the master is alive is counted as spurious.

use std::{
    fmt::Write as _,
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use balancer_tests::{Netns, NsThread, Switch, daemon::Daemon, wait_until};

const VIP: &str = "198.18.6.100";
const ECHO_PORT: u16 = 7;
const VRID: &str = "60";
const PRIORITY_A: u8 = 200;
const PRIORITY_B: u8 = 100;
/// Between probes.
const PROBE_STEP: Duration = Duration::from_millis(1);
/// A little over Linux's default `net.ipv4.neigh.*.locktime` (1 s).
const NEIGH_LOCKTIME: Duration = Duration::from_millis(1100);
/// How long the hogs run in the busy measurement, per implementation.
const BUSY: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Ours,
    Keepalived,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Self::Ours => "balancer",
            Self::Keepalived => "keepalived",
        }
    }

    /// What a router logs each time it becomes master.
    fn master_marker(self) -> &'static str {
        match self {
            Self::Ours => "state=\"MASTER\"",
            Self::Keepalived => "Entering MASTER STATE",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    version: u8,
    advert: Duration,
    graceful: bool,
    runs: usize,
}

const CASES: [Case; 4] = [
    Case {
        name: "crash, v2, advert_int 1",
        version: 2,
        advert: Duration::from_secs(1),
        graceful: false,
        runs: 4,
    },
    Case {
        name: "crash, v3, advert_int 0.1",
        version: 3,
        advert: Duration::from_millis(100),
        graceful: false,
        runs: 8,
    },
    Case {
        name: "crash, v3, advert_int 0.05",
        version: 3,
        advert: Duration::from_millis(50),
        graceful: false,
        runs: 8,
    },
    Case {
        name: "graceful (priority 0), v3, advert_int 0.1",
        version: 3,
        advert: Duration::from_millis(100),
        graceful: true,
        runs: 8,
    },
];

impl Case {
    /// `Skew_Time` of the backup: (256 - priority) / 256 x the interval (RFC 5798 §6.1; for
    /// VRRPv2, RFC 3768 §6.1 counts seconds, which the 1 s interval makes the same).
    fn skew(&self) -> Duration {
        self.advert * (256 - u32::from(PRIORITY_B)) / 256
    }

    fn bound(&self) -> Duration {
        if self.graceful {
            self.skew()
        } else {
            3 * self.advert + self.skew()
        }
    }
}

/// Two routers and a client on one bridge, the echo server in `b`.
struct Lab {
    a: Netns,
    b: Netns,
    client: Netns,
    _echo: NsThread,
    _switch: Switch,
}

fn lab() -> Lab {
    let sw = Switch::new("fo-sw");
    let join = |role: &str, host: u8| {
        let ns = Netns::new(&format!("fo-{role}"));
        ns.disable_ipv6();
        sw.plug(&ns, "e0", &format!("p-{role}"));
        ns.ip(&["addr", "add", &format!("198.18.6.{host}/24"), "dev", "e0"]);
        ns
    };
    let a = join("a", 1);
    let b = join("b", 2);
    let client = join("c", 10);
    // Bound to the VIP before `b` holds it, so replies leave from the VIP (the client's
    // connected socket takes nothing else).
    b.sysctl("net.ipv4.ip_nonlocal_bind", "1");
    let echo = b.spawn_thread(|stop| {
        let socket = UdpSocket::bind((VIP, ECHO_PORT)).expect("bind the echo server");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        while !NsThread::stopping(stop) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        }
    });
    Lab {
        a,
        b,
        client,
        _echo: echo,
        _switch: sw,
    }
}

fn start(imp: Impl, ns: &Netns, master: bool, case: &Case) -> Daemon {
    let priority = if master { PRIORITY_A } else { PRIORITY_B };
    let advert = case.advert.as_secs_f64().to_string();
    let state = if master { "MASTER" } else { "BACKUP" };
    match imp {
        Impl::Ours => {
            let priority = priority.to_string();
            let version = case.version.to_string();
            Daemon::balancer(
                ns,
                &[
                    "vrrp",
                    "--interface",
                    "e0",
                    "--vrid",
                    VRID,
                    "--priority",
                    &priority,
                    "--version",
                    &version,
                    "--advert-int",
                    &advert,
                    "--state",
                    state,
                    "--vip",
                    &format!("{VIP}/24"),
                ],
            )
        }
        Impl::Keepalived => {
            let conf = format!(
                "global_defs {{\n  router_id fo\n}}\nvrrp_instance VI {{\n  state {state}\n  \
                 interface e0\n  virtual_router_id {VRID}\n  priority {priority}\n  \
                 version {}\n  advert_int {advert}\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n",
                case.version
            );
            Daemon::keepalived(ns, &conf)
        }
    }
}

/// VRRP adverts as the client sees them: a raw socket for protocol 112 in the group.
fn advert_listener() -> socket2::Socket {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).expect("raw VRRP socket");
    socket
        .join_multicast_v4(
            &std::net::Ipv4Addr::new(224, 0, 0, 18),
            &std::net::Ipv4Addr::new(198, 18, 6, 10),
        )
        .expect("join 224.0.0.18");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    socket
}

/// Waits (up to 3 s) for the next advert from `from`, having dropped those queued.
fn next_advert(adverts: &socket2::Socket, from: std::net::Ipv4Addr) -> bool {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 128];
    adverts.set_nonblocking(true).expect("non-blocking");
    while adverts.recv(&mut buf).is_ok() {}
    adverts.set_nonblocking(false).expect("blocking");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok((n, addr)) = adverts.recv_from(&mut buf)
            && n >= 20
            && addr.as_socket_ipv4().map(|a| *a.ip()) == Some(from)
        {
            return true;
        }
    }
    false
}

/// In the client's namespace: primes its neighbour entry for the VIP, waits for an advert
/// of the master (so that every run starts at the same point of the advert cycle: the
/// backup's `Master_Down_Interval` runs from that advert), runs `trigger` at once and
/// returns how long after it the first echo reply came, if one came within `limit`.
fn probe(trigger: impl FnOnce(), limit: Duration) -> Option<Duration> {
    let adverts = advert_listener();
    let socket = UdpSocket::bind("0.0.0.0:0").expect("client socket");
    socket.connect((VIP, ECHO_PORT)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    // The master answers port-unreachable: these only resolve the VIP's MAC to the master's.
    for _ in 0..3 {
        let _ = socket.send(b"warm");
        let _ = socket.recv(&mut buf);
    }
    // Linux ignores a gratuitous ARP for an entry updated less than `locktime` (1 s) ago, so
    // a client that resolved the VIP just now would not move; a real client resolved it
    // earlier.
    std::thread::sleep(NEIGH_LOCKTIME);
    // A receive timeout is rounded up to a jiffy (4 ms at HZ=250); polling without blocking
    // between high-resolution sleeps keeps the step near the millisecond.
    socket.set_nonblocking(true).expect("non-blocking");
    while socket.recv(&mut buf).is_ok() {}
    if !next_advert(&adverts, std::net::Ipv4Addr::new(198, 18, 6, 1)) {
        eprintln!("no advert from the master seen: the kill is not aligned to one");
    }
    let start = Instant::now();
    trigger();
    let mut seq = 0u64;
    while start.elapsed() < limit {
        seq += 1;
        let _ = socket.send(&seq.to_be_bytes());
        std::thread::sleep(PROBE_STEP);
        while let Ok(n) = socket.recv(&mut buf) {
            if n == 8 {
                return Some(start.elapsed());
            }
        }
    }
    None
}

fn logs(daemons: &[&Daemon]) -> String {
    daemons
        .iter()
        .map(|d| d.log())
        .collect::<Vec<_>>()
        .join("\n-----\n")
}

/// Waits until `a` alone holds the VIP, then a few intervals more so that `b` has heard it.
fn settled(lab: &Lab, case: &Case, a: &Daemon, b: &Daemon) {
    let ok = wait_until(Duration::from_secs(10), || {
        lab.a.has_addr(VIP) && !lab.b.has_addr(VIP)
    });
    assert!(ok, "the master did not take the VIP\n{}", logs(&[a, b]));
    std::thread::sleep((2 * case.advert).max(Duration::from_millis(200)));
}

struct Row {
    case: Case,
    imp: Impl,
    ms: Vec<f64>,
    /// Runs without any reply within the limit.
    lost: usize,
}

fn measure(lab: &Lab, imp: Impl, case: &Case) -> Row {
    let b = start(imp, &lab.b, false, case);
    let mut a = start(imp, &lab.a, true, case);
    let limit = case.bound() * 3 + Duration::from_secs(2);
    let mut ms = Vec::new();
    let mut lost = 0;
    for _ in 0..case.runs {
        settled(lab, case, &a, &b);
        let took = lab.client.run(|| {
            probe(
                || {
                    if case.graceful {
                        a.terminate();
                    } else {
                        a.kill();
                    }
                },
                limit,
            )
        });
        match took {
            Some(d) => ms.push(d.as_secs_f64() * 1e3),
            None => lost += 1,
        }
        if case.graceful {
            let status = a.stop();
            assert!(status.success(), "{status}\n{}", a.log());
        } else {
            // What the crash left behind.
            let _ = lab
                .a
                .output("ip", &["addr", "del", &format!("{VIP}/24"), "dev", "e0"]);
        }
        a = start(imp, &lab.a, true, case);
    }
    drop(a);
    drop(b);
    Row {
        case: *case,
        imp,
        ms,
        lost,
    }
}

struct Busy {
    imp: Impl,
    advert: Duration,
    hogs: usize,
    takeovers: usize,
}

/// Counts the backup's takeovers while CPU hogs run and the master is alive.
fn busy(lab: &Lab, imp: Impl, case: &Case) -> Busy {
    let b = start(imp, &lab.b, false, case);
    let a = start(imp, &lab.a, true, case);
    settled(lab, case, &a, &b);
    let before = b.log().matches(imp.master_marker()).count();
    let hogs = 4 * std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..hogs)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(
                        x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                    );
                }
            })
        })
        .collect();
    std::thread::sleep(BUSY);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // A takeover that started under load shows within one Master_Down_Interval.
    std::thread::sleep(case.bound());
    let takeovers = b.log().matches(imp.master_marker()).count() - before;
    Busy {
        imp,
        advert: case.advert,
        hogs,
        takeovers,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

pub fn run() {
    let started = Instant::now();
    let lab = lab();
    let mut rows = Vec::new();
    for case in &CASES {
        for imp in [Impl::Ours, Impl::Keepalived] {
            eprintln!("{}: {} x {}", imp.name(), case.name, case.runs);
            rows.push(measure(&lab, imp, case));
        }
    }
    let fastest = CASES[2];
    let busy: Vec<Busy> = [Impl::Ours, Impl::Keepalived]
        .into_iter()
        .map(|imp| {
            eprintln!("{}: busy, {:?} of CPU hogs", imp.name(), BUSY);
            busy(&lab, imp, &fastest)
        })
        .collect();
    report(&rows, &busy, started.elapsed());
}

fn report(rows: &[Row], busy: &[Busy], took: Duration) {
    println!(
        "{:<42} {:<11} {:>4} {:>9} {:>9} {:>9} {:>9}",
        "case", "impl", "runs", "median", "min", "max", "RFC bound"
    );
    let mut json = String::from("{\n  \"failover_ms\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let bound = r.case.bound().as_secs_f64() * 1e3;
        println!(
            "{:<42} {:<11} {:>4} {:>9.1} {:>9.1} {:>9.1} {:>9.1}{}",
            r.case.name,
            r.imp.name(),
            r.ms.len(),
            median(&r.ms),
            min(&r.ms),
            max(&r.ms),
            bound,
            if r.lost > 0 {
                format!("  ({} runs without a reply)", r.lost)
            } else {
                String::new()
            }
        );
        let runs: Vec<String> = r.ms.iter().map(|m| format!("{m:.2}")).collect();
        let _ = writeln!(
            json,
            "    {{\"case\": \"{}\", \"impl\": \"{}\", \"runs_ms\": [{}], \"lost\": {}, \
             \"median_ms\": {:.2}, \"min_ms\": {:.2}, \"max_ms\": {:.2}, \"rfc_bound_ms\": {:.2}}}{}",
            r.case.name,
            r.imp.name(),
            runs.join(", "),
            r.lost,
            median(&r.ms),
            min(&r.ms),
            max(&r.ms),
            bound,
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    json.push_str("  ],\n  \"busy\": [\n");
    println!();
    for (i, b) in busy.iter().enumerate() {
        println!(
            "busy: {:<11} advert_int {:.2} s, {} hog threads for {:?}: {} spurious takeover(s)",
            b.imp.name(),
            b.advert.as_secs_f64(),
            b.hogs,
            BUSY,
            b.takeovers
        );
        let _ = writeln!(
            json,
            "    {{\"impl\": \"{}\", \"advert_int_s\": {:.2}, \"hog_threads\": {}, \"seconds\": {}, \
             \"spurious_takeovers\": {}}}{}",
            b.imp.name(),
            b.advert.as_secs_f64(),
            b.hogs,
            BUSY.as_secs(),
            b.takeovers,
            if i + 1 < busy.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    let path = super::save("failover", &json);
    println!(
        "\nfailover: kill (or SIGTERM) of the master to the first UDP echo reply from the VIP at \
         the client (1 ms probes); bound: backup priority {PRIORITY_B}; took {took:.0?}"
    );
    println!("written to {}", path.display());
}
