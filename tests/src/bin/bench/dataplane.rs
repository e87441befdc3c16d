//! `cargo xtask bench dataplane [FILTER]`: nanoseconds per packet through `BPF_PROG_TEST_RUN`,
//! the balancer beside the floor (a program that only swaps MACs and returns `XDP_TX`).
//!
//! Every figure is the median of five runs, each the kernel's mean over many iterations, in
//! one of two ways,
//! stated beside it:
//! - `repeat`: the frame as the previous iteration left it. Only for paths that send a packet
//!   the same way again: the floor and DR on an established flow (only the MACs change).
//! - `wrapped`: the `restore` program puts the original frame back before each iteration and
//!   tail-calls the program under test; `new` variants also give each frame a new source
//!   address and port, so every iteration schedules a new connection. The wrapper's own cost
//!   (measured by wrapping the floor) is taken off: `net` = wrapped − (wrapped floor − floor).
//!
//! Each run checks that every iteration took the intended path: the action, the `tx` reason
//! rising by exactly the iteration count, and for new flows the service's new connections too.
//! A FILTER (a substring of the case names) runs only the matching cases, beside the floors.
//!
//! Last, `sweep`: what the daemon's connection-table sweep costs at a million connections,
//! the walk (batched reads, without the data plane's lock) and the rest (under it).

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, ProgramArray},
    programs::{ProgramFd, TestRun as _, TestRunOptions, Xdp},
};
use balancer::{
    dataplane::{
        Dataplane,
        xdp::{BENCH_OBJECT, LoadOptions, XdpProgram},
    },
    model::{Egress, Method, Protocol, RealServer, Scheduler, VirtualService},
};
use balancer_common::{
    Reason,
    maps::{BenchFrame, Flow, FlowKey, Globals},
};
use balancer_tests::frame::{
    ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, concat, eth, ipv4, ipv6, tcp, udp,
};

const REPEAT: u32 = 1_000_000;
/// New flows per run: all the runs of a case stay within the connection table (2^20), so the
/// figure is scheduling and insertion, not eviction.
const NEW_FLOWS: u32 = 100_000;
/// Runs per case; the median is reported (this VM's figures vary by a fifth run to run).
const RUNS: u32 = 5;
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
const XDP_TX: u32 = 3;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// Where a frame's source port and the low half of its source address sit.
#[derive(Clone, Copy)]
enum Layout {
    V4,
    V6,
}

impl Layout {
    const fn offsets(self) -> (u32, u32) {
        match self {
            // Ethernet 14 + IPv4 20; source address at 14 + 12, low half 2 further.
            Self::V4 => (34, 28),
            // Ethernet 14 + IPv6 40; source address at 14 + 8, low half 14 further.
            Self::V6 => (54, 36),
        }
    }
}

struct Row {
    name: String,
    method: &'static str,
    ns: f64,
    /// With the wrapper's cost taken off (the same as `ns` for `repeat`).
    net: f64,
    /// `net` over the floor measured beside it.
    ratio: f64,
}

fn tcp4(sport: u16, flags: u8) -> Vec<u8> {
    let t = tcp(sport, 80, flags, 5);
    concat(&[
        &eth(&[], ETH_P_IP),
        &ipv4(CLIENT, VIP, IPPROTO_TCP, &[], 0, t.len()),
        &t,
    ])
}

fn tcp6(sport: u16, flags: u8) -> Vec<u8> {
    let t = tcp(sport, 80, flags, 5);
    concat(&[
        &eth(&[], ETH_P_IPV6),
        &ipv6(CLIENT6, VIP6, IPPROTO_TCP, t.len()),
        &t,
    ])
}

fn udp4(sport: u16) -> Vec<u8> {
    let u = udp(sport, 80, &[0; 32]);
    concat(&[
        &eth(&[], ETH_P_IP),
        &ipv4(CLIENT, VIP, IPPROTO_UDP, &[], 0, u.len()),
        &u,
    ])
}

fn real(i: u8, v6: bool, method: Method) -> RealServer {
    RealServer {
        addr: if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, u16::from(i)))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 18, 1, i))
        },
        port: if method == Method::Nat { 8080 } else { 80 },
        weight: 1,
        method,
        tunnel_source: (method == Method::Tun).then(|| {
            if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe))
            } else {
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 254))
            }
        }),
        // Loopback: BPF_PROG_TEST_RUN's ingress, so the action is XDP_TX.
        egress: Some(Egress {
            ifindex: 1,
            dmac: [2, 0xaa, 0, 0, 0, i],
            smac: [2, 0xbb, 0, 0, 0, 1],
        }),
    }
}

fn service(scheduler: Scheduler, protocol: Protocol, v6: bool, method: Method) -> VirtualService {
    VirtualService {
        vips: vec![if v6 {
            IpAddr::V6(VIP6)
        } else {
            IpAddr::V4(VIP)
        }],
        port: 80,
        protocol,
        scheduler,
        ops: false,
        hash_port: false,
        persistence: None,
        reals: (1..=10).map(|i| real(i, v6, method)).collect(),
        sorry_server: None,
    }
}

fn balancer(svc: &VirtualService) -> XdpProgram {
    let mut prog = XdpProgram::load_with(&LoadOptions {
        flows: 1 << 20,
        persist: 1024,
        timeouts: Globals::default(),
        pin_dir: None,
        ..LoadOptions::default()
    })
    .expect("load the balancer (needs root)");
    prog.apply("bench", svc).expect("install the service");
    prog
}

/// The benchmark programs: the floor, the floor with a flow lookup or insert, and the
/// `restore` wrapper.
struct Programs {
    ebpf: Ebpf,
    /// The balancer under test, while a `repeat` case runs it directly.
    balancer: Option<XdpProgram>,
}

impl Programs {
    fn load() -> Self {
        let mut ebpf = Ebpf::load(BENCH_OBJECT).expect("load the benchmark programs");
        for name in ["floor", "floor_lookup", "floor_insert", "restore"] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .expect("a benchmark program")
                .try_into()
                .expect("an XDP program");
            p.load().expect("verify a benchmark program");
        }
        Self {
            ebpf,
            balancer: None,
        }
    }

    fn target(&mut self, target: Target) -> &Xdp {
        match target {
            Target::Bench(name) => self.program(name),
            Target::Balancer => self
                .balancer
                .as_mut()
                .expect("a balancer under test")
                .program()
                .unwrap(),
        }
    }

    fn program(&self, name: &str) -> &Xdp {
        self.ebpf
            .program(name)
            .expect("a benchmark program")
            .try_into()
            .expect("an XDP program")
    }

    /// Median ns of `repeat` iterations of `name` on `frame`, which must all be `XDP_TX`.
    fn plain(&self, name: &str, frame: &[u8]) -> f64 {
        median(|| run(self.program(name), frame, REPEAT))
    }

    /// Mean ns of `restore` (varying the source when `layout` is given) tail-calling `target`.
    fn wrapped(&mut self, target: &ProgramFd, frame: &[u8], vary: Option<Layout>, n: u32) -> f64 {
        let mut calls: ProgramArray<_> =
            ProgramArray::try_from(self.ebpf.map_mut("BENCH_TARGET").unwrap()).unwrap();
        calls
            .set(0, target, 0)
            .expect("install the program under test");
        let (sport_offset, saddr_low_offset) = vary.map_or((0, 0), Layout::offsets);
        let mut bytes = [0u8; 128];
        bytes[..frame.len()].copy_from_slice(frame);
        let mut frames: Array<_, BenchFrame> =
            Array::try_from(self.ebpf.map_mut("BENCH_FRAME").unwrap()).unwrap();
        frames
            .set(
                0,
                BenchFrame {
                    len: u32::try_from(frame.len()).unwrap(),
                    vary: u32::from(vary.is_some()),
                    sport_offset,
                    saddr_low_offset,
                    bytes,
                },
                0,
            )
            .unwrap();
        run(self.program("restore"), frame, n)
    }

    /// Puts the flow of `frame` (IPv4) into `floor_lookup`'s table.
    fn add_flow(&mut self, frame: &[u8]) {
        let word = |o: usize| u32::from_ne_bytes(frame[o..o + 4].try_into().unwrap());
        let key = FlowKey {
            src: [word(26), 0, 0, 0],
            dst: [word(30), 0, 0, 0],
            sport_be: u16::from_ne_bytes([frame[34], frame[35]]),
            dport_be: u16::from_ne_bytes([frame[36], frame[37]]),
            proto: frame[23],
            family: 4,
            _pad: [0; 2],
        };
        let mut flows: HashMap<_, FlowKey, Flow> =
            HashMap::try_from(self.ebpf.map_mut("BENCH_FLOWS").unwrap()).unwrap();
        flows.insert(key, Flow::default(), 0).unwrap();
    }
}

fn fd(prog: &Xdp) -> ProgramFd {
    prog.fd().expect("a loaded program").try_clone().unwrap()
}

/// The median of `RUNS` measurements.
fn median(mut measure: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..RUNS).map(|_| measure()).collect();
    median_of(&mut v)
}

fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Mean ns per iteration of one run of `n`; every iteration must end in `XDP_TX`.
fn run(prog: &Xdp, frame: &[u8], n: u32) -> f64 {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: n,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, XDP_TX, "the last iteration was not sent");
    r.duration.as_secs_f64() * 1e9
}

/// How a case is run.
#[derive(Clone, Copy)]
enum Mode {
    /// `repeat`, no wrapper.
    Repeat,
    /// Through the wrapper, the same frame each time.
    Wrapped,
    /// Through the wrapper, a new source each time.
    New(Layout),
}

impl Mode {
    const fn label(self) -> &'static str {
        match self {
            Self::Repeat => "repeat",
            Self::Wrapped => "wrapped",
            Self::New(_) => "wrapped, new",
        }
    }

    const fn iterations(self) -> u32 {
        match self {
            Self::New(_) => NEW_FLOWS,
            _ => REPEAT,
        }
    }

    const fn vary(self) -> Option<Layout> {
        match self {
            Self::New(layout) => Some(layout),
            _ => None,
        }
    }
}

/// The program a case measures.
#[derive(Clone, Copy)]
enum Target {
    /// One of the benchmark's own programs.
    Bench(&'static str),
    /// `Programs::balancer`.
    Balancer,
}

/// `RUNS` rounds of (floor, wrapped floor, case), so that a slow spell of this VM weighs on
/// the floor and the case alike; each figure is the median over the rounds.
fn rounds(p: &mut Programs, name: &str, mode: Mode, target: Target, frame: &[u8]) -> Row {
    let floor_frame = tcp4(40000, ACK);
    let floor_fd = fd(p.program("floor"));
    let n = mode.iterations();
    let (mut ns, mut net, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let floor = run(p.program("floor"), &floor_frame, REPEAT);
        let wrapper = match mode {
            Mode::Repeat => 0.0,
            _ => p.wrapped(&floor_fd, &floor_frame, mode.vary(), n) - floor,
        };
        let case = if let Mode::Repeat = mode {
            run(p.target(target), frame, n)
        } else {
            let target = fd(p.target(target));
            p.wrapped(&target, frame, mode.vary(), n)
        };
        ns.push(case);
        net.push(case - wrapper);
        ratio.push((case - wrapper) / floor);
    }
    Row {
        name: name.into(),
        method: mode.label(),
        ns: median_of(&mut ns),
        net: median_of(&mut net),
        ratio: median_of(&mut ratio),
    }
}

/// The balancer's cases: name, service, how it is run, and the frame.
fn cases() -> Vec<(String, VirtualService, Mode, Vec<u8>)> {
    let dr = |proto, v6| service(Scheduler::Mh, proto, v6, Method::Dr);
    let mut cases: Vec<(String, VirtualService, Mode, Vec<u8>)> = vec![
        (
            "DR v4 TCP ACK, established".into(),
            dr(Protocol::Tcp, false),
            Mode::Repeat,
            tcp4(40000, ACK),
        ),
        (
            "DR v6 TCP ACK, established".into(),
            dr(Protocol::Tcp, true),
            Mode::Repeat,
            tcp6(40000, ACK),
        ),
        (
            "DR v4 UDP, established".into(),
            dr(Protocol::Udp, false),
            Mode::Repeat,
            udp4(40000),
        ),
    ];
    for (name, method, v6) in [
        ("TUN v4 (IPIP) TCP ACK, established", Method::Tun, false),
        ("TUN v6 (IP6IP6) TCP ACK, established", Method::Tun, true),
        ("NAT v4 TCP ACK, established", Method::Nat, false),
        ("NAT v6 TCP ACK, established", Method::Nat, true),
    ] {
        let frame = if v6 {
            tcp6(40000, ACK)
        } else {
            tcp4(40000, ACK)
        };
        cases.push((
            name.into(),
            service(Scheduler::Mh, Protocol::Tcp, v6, method),
            Mode::Wrapped,
            frame,
        ));
    }
    for (sched, label) in [
        (Scheduler::Rr, "rr"),
        (Scheduler::Wrr, "wrr"),
        (Scheduler::Lc, "lc"),
        (Scheduler::Wlc, "wlc"),
        (Scheduler::Sh, "sh"),
        (Scheduler::Dh, "dh"),
        (Scheduler::Mh, "mh"),
    ] {
        cases.push((
            format!("DR v4 TCP SYN, new flow, {label}"),
            service(sched, Protocol::Tcp, false, Method::Dr),
            Mode::New(Layout::V4),
            tcp4(1024, SYN),
        ));
    }
    cases.extend([
        (
            "DR v6 TCP SYN, new flow, mh".into(),
            dr(Protocol::Tcp, true),
            Mode::New(Layout::V6),
            tcp6(1024, SYN),
        ),
        (
            "DR v4 UDP, new flow, mh".into(),
            dr(Protocol::Udp, false),
            Mode::New(Layout::V4),
            udp4(1024),
        ),
        (
            "TUN v4 TCP SYN, new flow, mh".into(),
            service(Scheduler::Mh, Protocol::Tcp, false, Method::Tun),
            Mode::New(Layout::V4),
            tcp4(1024, SYN),
        ),
        (
            "NAT v4 TCP SYN, new flow, mh".into(),
            service(Scheduler::Mh, Protocol::Tcp, false, Method::Nat),
            Mode::New(Layout::V4),
            tcp4(1024, SYN),
        ),
    ]);
    cases
}

/// Measures a balancer case: checks that every iteration was sent, and, for new flows, that
/// each scheduled a new connection.
fn balancer_case(
    p: &mut Programs,
    name: &str,
    svc: &VirtualService,
    mode: Mode,
    frame: &[u8],
) -> Row {
    let mut prog = balancer(svc);
    if !matches!(mode, Mode::New(_)) {
        // One packet first, so every measured iteration finds the flow.
        run(prog.program().unwrap(), frame, 1);
    }
    let reasons = prog.reasons().unwrap();
    let conns = prog.service_stats("bench").unwrap().unwrap().conns;
    p.balancer = Some(prog);
    let row = rounds(p, name, mode, Target::Balancer, frame);
    let prog = p.balancer.take().unwrap();
    let n = u64::from(mode.iterations() * RUNS);
    let tx = prog.reasons().unwrap().since(&reasons).get(Reason::Tx);
    assert_eq!(tx, n, "{name}: not every iteration was forwarded");
    if matches!(mode, Mode::New(_)) {
        let scheduled = prog.service_stats("bench").unwrap().unwrap().conns - conns;
        assert_eq!(scheduled, n, "{name}: not every iteration was a new flow");
    }
    row
}

pub fn run_all(filter: &str) {
    let mut p = Programs::load();
    let frame = tcp4(40000, ACK);
    p.add_flow(&frame);
    let floor = p.plain("floor", &frame);
    let mut rows = vec![Row {
        name: "floor: MAC swap + XDP_TX".into(),
        method: "repeat",
        ns: floor,
        net: floor,
        ratio: 1.0,
    }];
    rows.push(rounds(
        &mut p,
        "floor + flow lookup (LRU, 40-byte key)",
        Mode::Repeat,
        Target::Bench("floor_lookup"),
        &frame,
    ));
    rows.push(rounds(
        &mut p,
        "floor + new flow (LRU lookup and insert)",
        Mode::New(Layout::V4),
        Target::Bench("floor_insert"),
        &tcp4(1024, SYN),
    ));

    for (name, svc, mode, frame) in cases() {
        if name.contains(filter) {
            rows.push(balancer_case(&mut p, &name, &svc, mode, &frame));
        }
    }
    let sweep = "sweep".contains(filter).then(|| sweep_case(&mut p));
    report(&rows, sweep);
}

/// Connections in the table for the sweep's figures.
const SWEEP_FLOWS: u32 = 1_000_000;

/// What the daemon's sweep costs at `SWEEP_FLOWS` connections, in ms (median of `RUNS`): the
/// walk (done without the data plane's lock) and the rest (under it).
fn sweep_case(p: &mut Programs) -> (f64, f64) {
    let mut prog = balancer(&service(Scheduler::Mh, Protocol::Tcp, false, Method::Dr));
    let target = fd(prog.program().unwrap());
    p.wrapped(&target, &tcp4(1024, SYN), Some(Layout::V4), SWEEP_FLOWS);
    let (mut walk, mut finish) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = std::time::Instant::now();
        let walked = prog.sweep_walk().unwrap().walk().unwrap();
        walk.push(t.elapsed().as_secs_f64() * 1e3);
        let t = std::time::Instant::now();
        let s = prog.sweep_finish(&walked).unwrap();
        finish.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(s.live, u64::from(SWEEP_FLOWS), "every connection seen");
    }
    (median_of(&mut walk), median_of(&mut finish))
}

fn report(rows: &[Row], sweep: Option<(f64, f64)>) {
    println!(
        "{:<44} {:>13} {:>8} {:>8} {:>8}",
        "case", "method", "ns/pkt", "net ns", "x floor"
    );
    let mut json = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        let ratio = r.ratio;
        println!(
            "{:<44} {:>13} {:>8.1} {:>8.1} {:>8.2}",
            r.name, r.method, r.ns, r.net, ratio
        );
        let _ = writeln!(
            json,
            "  {{\"case\": \"{}\", \"method\": \"{}\", \"ns_per_packet\": {:.1}, \"net_ns_per_packet\": {:.1}, \"ratio_to_floor\": {:.3}}}{}",
            r.name,
            r.method,
            r.ns,
            r.net,
            ratio,
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    json.push(']');
    let sweep_json = sweep.map_or("null".to_owned(), |(walk, finish)| {
        println!(
            "\nsweep of {SWEEP_FLOWS} connections: walk {walk:.1} ms (without the lock), the rest \
             {finish:.1} ms (under it)"
        );
        format!("{{\"flows\": {SWEEP_FLOWS}, \"walk_ms\": {walk:.1}, \"finish_ms\": {finish:.1}}}")
    });
    json = format!("{{\"packets\": {json},\n\"sweep\": {sweep_json}}}");
    let path = super::save("dataplane", &json);
    println!(
        "\nmedian of {RUNS} runs; repeat: a run of {REPEAT} iterations (kernel mean); wrapped: \
         the same through the restore wrapper, whose cost is taken off in `net`; new: runs of \
         {NEW_FLOWS} iterations, each a new flow"
    );
    println!("written to {}", path.display());
}
