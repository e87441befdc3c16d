//! `cargo xtask bench failover`: see [`failover`].
//!
//! `cargo xtask bench dataplane`: nanoseconds per packet through `BPF_PROG_TEST_RUN`, the
//! balancer beside the floor (a program that only swaps MACs and returns `XDP_TX`).
//!
//! Two methods, each stated beside its figure:
//! - `repeat`: one test run of N iterations, the kernel's mean. Valid only where every
//!   iteration takes the same path: on this kernel the frame is not restored between
//!   iterations, so only cases whose output takes the same path again are measured this way
//!   (MAC rewrites: the floor and DR on an established flow), and the reason counter must have
//!   risen by exactly N.
//! - `single`: many test runs of one iteration each, the median. Used for new flows (each run
//!   carries a fresh source port) and TUN (the frame grows); it includes the kernel's
//!   per-run timing overhead, so the floor is measured the same way for the ratios.

#[path = "bench/checkers.rs"]
mod checkers;
#[path = "bench/control.rs"]
mod control;
#[path = "bench/failover.rs"]
mod failover;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use aya::{
    Ebpf,
    programs::{ProgramError, TestRun as _, TestRunOptions, Xdp},
};
use balancer::{
    dataplane::{
        Dataplane,
        xdp::{FLOOR_OBJECT, LoadOptions, XdpProgram},
    },
    model::{Egress, Method, Protocol, RealServer, Scheduler, VirtualService},
};
use balancer_common::{Reason, maps::Globals};
use balancer_tests::frame::{
    ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, concat, eth, ipv4, ipv6, tcp, udp,
};

const REPEAT: u32 = 1_000_000;
const SINGLES: u16 = 20_000;
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
const XDP_TX: u32 = 3;

struct Row {
    name: String,
    method: &'static str,
    ns: f64,
}

fn test_run(prog: &Xdp, frame: &[u8], repeat: u32) -> Result<(u32, Duration), ProgramError> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        repeat,
        ..TestRunOptions::default()
    })?;
    Ok((r.return_value, r.duration))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
        port: 80,
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

/// Mean over one run of `REPEAT` iterations; checks the action and that `Tx` rose by exactly
/// `REPEAT` (so every iteration took the forwarding path).
fn repeat_balancer(prog: &mut XdpProgram, frame: &[u8]) -> f64 {
    // One packet first, so the flow exists and every measured iteration is established.
    let (action, _) = test_run(prog.program().unwrap(), frame, 1).unwrap();
    assert_eq!(action, XDP_TX, "the warm-up packet was not forwarded");
    let before = prog.reasons().unwrap();
    let (action, d) = test_run(prog.program().unwrap(), frame, REPEAT).unwrap();
    let tx = prog.reasons().unwrap().since(&before).get(Reason::Tx);
    assert_eq!(action, XDP_TX);
    assert_eq!(tx, u64::from(REPEAT), "not every iteration was forwarded");
    d.as_secs_f64() * 1e9
}

fn single_balancer(prog: &mut XdpProgram, frame_for: impl Fn(u16) -> Vec<u8>) -> f64 {
    let before = prog.reasons().unwrap();
    let samples = (0..SINGLES)
        .map(|i| {
            let (action, d) = test_run(prog.program().unwrap(), &frame_for(i), 1).unwrap();
            assert_eq!(action, XDP_TX);
            d.as_secs_f64() * 1e9
        })
        .collect();
    let tx = prog.reasons().unwrap().since(&before).get(Reason::Tx);
    assert_eq!(tx, u64::from(SINGLES), "not every run was forwarded");
    median(samples)
}

fn main() {
    let what = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "dataplane".into());
    assert!(
        ["dataplane", "checkers", "failover", "control"].contains(&what.as_str()),
        "unknown benchmark {what:?}; available: dataplane, checkers, failover, control"
    );
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the benchmarks need root (BPF, network namespaces)"
    );
    if what == "checkers" {
        checkers::run();
        return;
    }
    if what == "failover" {
        failover::run();
        return;
    }
    if what == "control" {
        control::run();
        return;
    }

    let filter = std::env::args().nth(2).unwrap_or_default();
    let (rows, floor_repeat, floor_single) = measure(&filter);
    report(&rows, floor_repeat, floor_single);
}

/// Every case, with the floor's figures for each method.
fn measure(filter: &str) -> (Vec<Row>, f64, f64) {
    let mut rows = Vec::new();
    let mut floor_obj = Ebpf::load(FLOOR_OBJECT).expect("load the floor program");
    let floor: &mut Xdp = floor_obj
        .program_mut("floor")
        .expect("floor program")
        .try_into()
        .expect("an XDP program");
    floor.load().expect("verify the floor program");
    let frame = tcp4(40000, 0x10);
    let (action, d) = test_run(floor, &frame, REPEAT).unwrap();
    assert_eq!(action, XDP_TX);
    let floor_repeat = d.as_secs_f64() * 1e9;
    rows.push(Row {
        name: "floor: MAC swap + XDP_TX".into(),
        method: "repeat",
        ns: floor_repeat,
    });
    let floor_single = median(
        (0..SINGLES)
            .map(|_| test_run(floor, &frame, 1).unwrap().1.as_secs_f64() * 1e9)
            .collect(),
    );
    rows.push(Row {
        name: "floor: MAC swap + XDP_TX".into(),
        method: "single",
        ns: floor_single,
    });

    let established = [
        (
            "DR v4 TCP ACK, established",
            Protocol::Tcp,
            false,
            tcp4(40000, 0x10),
        ),
        (
            "DR v6 TCP ACK, established",
            Protocol::Tcp,
            true,
            tcp6(40000, 0x10),
        ),
        ("DR v4 UDP, established", Protocol::Udp, false, udp4(40000)),
    ];
    for (name, proto, v6, frame) in established {
        if !name.contains(filter) {
            continue;
        }
        let mut prog = balancer(&service(Scheduler::Mh, proto, v6, Method::Dr));
        rows.push(Row {
            name: name.into(),
            method: "repeat",
            ns: repeat_balancer(&mut prog, &frame),
        });
        rows.push(Row {
            name: name.into(),
            method: "single",
            ns: single_balancer(&mut prog, |_| frame.clone()),
        });
    }
    for (sched, label) in [
        (Scheduler::Rr, "rr"),
        (Scheduler::Wrr, "wrr"),
        (Scheduler::Wlc, "wlc"),
        (Scheduler::Sh, "sh"),
        (Scheduler::Mh, "mh"),
    ] {
        if !format!("DR v4 TCP SYN, new flow, {label}").contains(filter) {
            continue;
        }
        let mut prog = balancer(&service(sched, Protocol::Tcp, false, Method::Dr));
        rows.push(Row {
            name: format!("DR v4 TCP SYN, new flow, {label}"),
            method: "single",
            ns: single_balancer(&mut prog, |i| tcp4(1024 + i, 0x02)),
        });
    }
    for (name, v6) in [
        ("TUN v4 (IPIP) TCP ACK, established", false),
        ("TUN v6 (IP6IP6) TCP ACK, established", true),
    ] {
        if !name.contains(filter) {
            continue;
        }
        let mut prog = balancer(&service(Scheduler::Mh, Protocol::Tcp, v6, Method::Tun));
        let frame = if v6 {
            tcp6(40000, 0x10)
        } else {
            tcp4(40000, 0x10)
        };
        rows.push(Row {
            name: name.into(),
            method: "single",
            ns: single_balancer(&mut prog, |_| frame.clone()),
        });
    }
    (rows, floor_repeat, floor_single)
}

/// Writes a benchmark's JSON to `target/bench/NAME.json` and returns the path.
fn save(name: &str, json: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, json).expect("write the JSON results");
    path
}

fn report(rows: &[Row], floor_repeat: f64, floor_single: f64) {
    use std::fmt::Write as _;
    println!(
        "{:<44} {:>7} {:>9} {:>9}",
        "case", "method", "ns/pkt", "x floor"
    );
    let mut json = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        let floor = if r.method == "repeat" {
            floor_repeat
        } else {
            floor_single
        };
        let ratio = r.ns / floor;
        println!(
            "{:<44} {:>7} {:>9.1} {:>9.2}",
            r.name, r.method, r.ns, ratio
        );
        let _ = writeln!(
            json,
            "  {{\"case\": \"{}\", \"method\": \"{}\", \"ns_per_packet\": {:.1}, \"ratio_to_floor\": {:.3}}}{}",
            r.name,
            r.method,
            r.ns,
            ratio,
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    json.push(']');
    let path = save("dataplane", &json);
    println!(
        "\nrepeat: one run of {REPEAT} iterations (kernel mean); single: median of {SINGLES} one-iteration runs"
    );
    println!("written to {}", path.display());
}
