//! Layer 2: forwarding through `BPF_PROG_TEST_RUN` (root, no network namespace). Services are
//! installed through the `Dataplane` trait, so the userspace rendering is under test too; each
//! case checks the action, the exact output frame and the reason counters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun as _, TestRunOptions};
use balancer::{
    dataplane::{
        Dataplane,
        xdp::{LoadOptions, Reasons, XdpProgram},
    },
    model::{Egress, Method, Persistence, Protocol, RealServer, Scheduler, VirtualService},
};
use balancer_common::{ProtoCounter, Reason, maps::Globals};
use balancer_tests::{Netns, frame::*, require_root, veth_pair};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
/// BPF_PROG_TEST_RUN runs the program as if received on the loopback device.
const LO: u32 = 1;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
const OUR_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0xfe];

fn real_mac(i: u8) -> [u8; 6] {
    [0x02, 0xaa, 0, 0, 0, i]
}

fn real_addr(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 1, i))
}

fn dr_real(i: u8, weight: u32) -> RealServer {
    RealServer {
        addr: real_addr(i),
        port: 80,
        weight,
        method: Method::Dr,
        tunnel_source: None,
        egress: Some(Egress {
            ifindex: LO,
            dmac: real_mac(i),
            smac: OUR_MAC,
        }),
    }
}

fn service(scheduler: Scheduler, reals: Vec<RealServer>) -> VirtualService {
    VirtualService {
        vips: vec![IpAddr::V4(VIP)],
        port: 80,
        protocol: Protocol::Tcp,
        scheduler,
        ops: false,
        hash_port: false,
        persistence: None,
        reals,
        sorry_server: None,
    }
}

fn load() -> XdpProgram {
    XdpProgram::load_with(&LoadOptions {
        flows: 65_536,
        persist: 4096,
        timeouts: Globals::default(),
        pin_dir: None,
        ..LoadOptions::default()
    })
    .expect("load the XDP program")
}

struct Run {
    action: u32,
    out: Vec<u8>,
    reasons: Reasons,
}

fn run(prog: &mut XdpProgram, frame: &[u8]) -> Run {
    let before = prog.reasons().unwrap();
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .program()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(usize::try_from(r.data_size_out).unwrap());
    Run {
        action: r.return_value,
        out,
        reasons: prog.reasons().unwrap().since(&before),
    }
}

fn only_reason(r: &Reasons, want: Reason) {
    for (reason, n) in r.iter() {
        assert_eq!(n, u64::from(reason == want), "{}: {r:?}", reason.name());
    }
}

fn tcp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let t = tcp(sport, dport, flags, 5);
    concat(&[
        &eth(&[], ETH_P_IP),
        &ipv4(src, dst, IPPROTO_TCP, &[], 0, t.len()),
        &t,
    ])
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// The real a DR output frame was sent to, by its destination MAC.
fn dr_target(out: &[u8]) -> u8 {
    assert_eq!(
        out[..5],
        real_mac(0)[..5],
        "not sent to a real: {:02x?}",
        &out[..12]
    );
    out[5]
}

#[test]
fn dr_ipv4_rewrites_only_the_macs() {
    require_root!();
    let mut prog = load();
    prog.apply("web", &service(Scheduler::Rr, vec![dr_real(1, 1)]))
        .unwrap();
    let frame = tcp4(CLIENT, 40000, VIP, 80, SYN);
    let r = run(&mut prog, &frame);
    assert_eq!(r.action, XDP_TX);
    only_reason(&r.reasons, Reason::Tx);
    let mut want = frame.clone();
    want[..6].copy_from_slice(&real_mac(1));
    want[6..12].copy_from_slice(&OUR_MAC);
    assert_eq!(r.out, want);

    // TTL 1 is forwarded as is: DR does not route, the real sees the client's packet.
    let mut ttl1 = tcp4(CLIENT, 40001, VIP, 80, SYN);
    ttl1[22] = 1;
    let r = run(&mut prog, &ttl1);
    assert_eq!(r.action, XDP_TX);
    assert_eq!(r.out[14..], ttl1[14..]);
}

#[test]
fn dr_ipv6_udp_and_redirect_to_another_interface() {
    require_root!();
    let mut prog = load();
    let mut real = dr_real(2, 1);
    real.addr = IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2));
    real.egress = Some(Egress {
        ifindex: 7,
        dmac: real_mac(2),
        smac: OUR_MAC,
    });
    let mut svc = service(Scheduler::Wrr, vec![real]);
    svc.vips = vec![IpAddr::V6(VIP6)];
    svc.protocol = Protocol::Udp;
    svc.port = 53;
    prog.apply("dns6", &svc).unwrap();
    let u = udp(5353, 53, b"query");
    let frame = concat(&[
        &eth(&[], ETH_P_IPV6),
        &ipv6(CLIENT6, VIP6, IPPROTO_UDP, u.len()),
        &u,
    ]);
    let r = run(&mut prog, &frame);
    assert_eq!(r.action, XDP_REDIRECT);
    only_reason(&r.reasons, Reason::Redirect);
    assert_eq!(r.out[..6], real_mac(2));
    assert_eq!(r.out[12..], frame[12..]);
}

#[test]
fn what_is_not_a_service_passes_or_is_refused() {
    require_root!();
    let mut prog = load();
    prog.apply("web", &service(Scheduler::Rr, vec![dr_real(1, 1)]))
        .unwrap();
    let cases: Vec<(&str, Vec<u8>, u32, Reason)> = vec![
        (
            "other port",
            tcp4(CLIENT, 1, VIP, 81, SYN),
            XDP_PASS,
            Reason::PassNoService,
        ),
        (
            "other address",
            tcp4(CLIENT, 1, CLIENT, 80, SYN),
            XDP_PASS,
            Reason::PassNoService,
        ),
        (
            "udp to a tcp service",
            concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(CLIENT, VIP, IPPROTO_UDP, &[], 0, 8),
                &udp(1, 80, &[]),
            ]),
            XDP_PASS,
            Reason::PassNoService,
        ),
        (
            "icmp echo to the vip",
            concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(CLIENT, VIP, IPPROTO_ICMP, &[], 0, 8),
                &icmp_echo(8, 1, 1),
            ]),
            XDP_PASS,
            Reason::PassOtherProto,
        ),
        (
            "arp",
            concat(&[&eth(&[], ETH_P_ARP), &[0; 28]]),
            XDP_PASS,
            Reason::PassNotIp,
        ),
        (
            "truncated tcp to the vip",
            concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(CLIENT, VIP, IPPROTO_TCP, &[], 0, 20),
                &[0; 10],
            ]),
            XDP_PASS,
            Reason::PassMalformed,
        ),
        (
            "first fragment to the vip",
            concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(CLIENT, VIP, IPPROTO_TCP, &[], 0x2000, 20),
                &tcp(1, 80, SYN, 5),
            ]),
            XDP_DROP,
            Reason::DropFragment,
        ),
        (
            "later fragment to the vip",
            concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(CLIENT, VIP, IPPROTO_TCP, &[], 100, 8),
                &[0; 8],
            ]),
            XDP_DROP,
            Reason::DropFragment,
        ),
        (
            "later fragment elsewhere",
            concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(CLIENT, CLIENT, IPPROTO_TCP, &[], 100, 8),
                &[0; 8],
            ]),
            XDP_PASS,
            Reason::PassNoService,
        ),
    ];
    for (name, frame, action, reason) in cases {
        let r = run(&mut prog, &frame);
        assert_eq!(r.action, action, "{name}");
        only_reason(&r.reasons, reason);
        assert_eq!(r.out, frame, "{name}: the frame must be untouched");
    }
}

#[test]
fn all_port_service_matches_any_port_and_exact_wins() {
    require_root!();
    let mut prog = load();
    let mut any = service(Scheduler::Rr, vec![dr_real(1, 1)]);
    any.port = 0;
    prog.apply("any", &any).unwrap();
    prog.apply("web", &service(Scheduler::Rr, vec![dr_real(2, 1)]))
        .unwrap();
    assert_eq!(
        dr_target(&run(&mut prog, &tcp4(CLIENT, 1, VIP, 443, SYN)).out),
        1
    );
    assert_eq!(
        dr_target(&run(&mut prog, &tcp4(CLIENT, 2, VIP, 80, SYN)).out),
        2
    );
}

/// A change that does not fit (more VIPs than the service map holds) fails whole: the service
/// goes on as it was, none of the new VIPs is left balanced, and the table written for the
/// change is free again for the next service.
#[test]
fn a_change_that_overflows_the_service_map_leaves_the_service_as_it_was() {
    require_root!();
    let mut prog = load();
    prog.apply("web", &service(Scheduler::Mh, vec![dr_real(1, 1)]))
        .unwrap();
    let mut grown = service(Scheduler::Mh, vec![dr_real(2, 1)]);
    let extra = |i: u32| {
        let [_, _, c, d] = i.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(198, 19, c, d))
    };
    // The service map's capacity, plus the existing key.
    grown.vips.extend((0..65_536).map(extra));
    let e = prog.apply("web", &grown).unwrap_err().to_string();
    assert!(e.contains("SERVICES"), "{e}");
    assert_eq!(
        dr_target(&run(&mut prog, &tcp4(CLIENT, 7, VIP, 80, SYN)).out),
        1,
        "the service is as it was"
    );
    let IpAddr::V4(first_extra) = extra(0) else {
        unreachable!()
    };
    only_reason(
        &run(&mut prog, &tcp4(CLIENT, 8, first_extra, 80, SYN)).reasons,
        Reason::PassNoService,
    );
    // Another service now takes the freed slots; the first still schedules from its own.
    let mut other = service(Scheduler::Mh, vec![dr_real(3, 1)]);
    other.port = 81;
    prog.apply("other", &other).unwrap();
    for sport in 10..20 {
        assert_eq!(
            dr_target(&run(&mut prog, &tcp4(CLIENT, sport, VIP, 80, SYN)).out),
            1
        );
    }
}

#[test]
fn wrr_three_to_one_over_new_flows() {
    require_root!();
    let mut prog = load();
    prog.apply(
        "web",
        &service(Scheduler::Wrr, vec![dr_real(1, 3), dr_real(2, 1)]),
    )
    .unwrap();
    let mut hits = [0u32; 3];
    for port in 0..4000u16 {
        let r = run(&mut prog, &tcp4(CLIENT, 10_000 + port, VIP, 80, SYN));
        hits[usize::from(dr_target(&r.out))] += 1;
    }
    let ratio = f64::from(hits[1]) / f64::from(hits[2]);
    assert!((ratio - 3.0).abs() < 0.03, "3:1 within 1%: {hits:?}");
}

#[test]
fn an_established_flow_keeps_its_real_across_changes_and_drain() {
    require_root!();
    let mut prog = load();
    prog.apply(
        "web",
        &service(Scheduler::Rr, vec![dr_real(1, 1), dr_real(2, 1)]),
    )
    .unwrap();
    let first = dr_target(&run(&mut prog, &tcp4(CLIENT, 5000, VIP, 80, SYN)).out);
    // Table rebuilds: a real added, weights changed, then the flow's real drained.
    prog.apply(
        "web",
        &service(
            Scheduler::Rr,
            vec![dr_real(1, 5), dr_real(2, 5), dr_real(3, 1)],
        ),
    )
    .unwrap();
    for _ in 0..5 {
        assert_eq!(
            dr_target(&run(&mut prog, &tcp4(CLIENT, 5000, VIP, 80, ACK)).out),
            first
        );
    }
    prog.set_weight("web", real_addr(first), 80, 0).unwrap();
    assert_eq!(
        dr_target(&run(&mut prog, &tcp4(CLIENT, 5000, VIP, 80, ACK)).out),
        first
    );
    // Drained: no new flow goes there.
    for port in 0..30 {
        let to = dr_target(&run(&mut prog, &tcp4(CLIENT, 6000 + port, VIP, 80, SYN)).out);
        assert_ne!(to, first, "a drained real got a new flow");
    }
}

#[test]
fn sorry_server_then_drop_when_no_real_is_up() {
    require_root!();
    let mut prog = load();
    let mut svc = service(Scheduler::Wlc, vec![dr_real(1, 0), dr_real(2, 0)]);
    svc.sorry_server = Some(dr_real(9, 1));
    prog.apply("web", &svc).unwrap();
    let r = run(&mut prog, &tcp4(CLIENT, 1, VIP, 80, SYN));
    assert_eq!(dr_target(&r.out), 9);
    svc.sorry_server = None;
    prog.apply("web", &svc).unwrap();
    let r = run(&mut prog, &tcp4(CLIENT, 2, VIP, 80, SYN));
    assert_eq!(r.action, XDP_DROP);
    only_reason(&r.reasons, Reason::DropNoReal);
}

#[test]
fn hash_schedulers_are_sticky_and_consistent() {
    require_root!();
    for sched in [Scheduler::Sh, Scheduler::Mh] {
        let mut prog = load();
        let reals: Vec<_> = (1..=5).map(|i| dr_real(i, 1)).collect();
        prog.apply("web", &service(sched, reals.clone())).unwrap();
        let client = |i: u32| Ipv4Addr::from(0xc612_0000 + i);
        let mut before = Vec::new();
        for i in 0..500 {
            // Different source ports of one client land on the same real (no hash_port).
            let a = dr_target(&run(&mut prog, &tcp4(client(i), 1000, VIP, 80, SYN)).out);
            let b = dr_target(&run(&mut prog, &tcp4(client(i), 2000, VIP, 80, SYN)).out);
            assert_eq!(a, b, "{sched:?}");
            before.push(a);
        }
        // Remove real 3: only its clients (about a fifth) and few others move.
        prog.apply(
            "web",
            &service(
                sched,
                reals
                    .iter()
                    .filter(|r| r.addr != real_addr(3))
                    .cloned()
                    .collect(),
            ),
        )
        .unwrap();
        let mut moved_others = 0;
        for i in 0..500u32 {
            let now = dr_target(&run(&mut prog, &tcp4(client(i), 3000, VIP, 80, SYN)).out);
            let was = before[i as usize];
            assert_ne!(now, 3);
            if was != 3 && now != was {
                moved_others += 1;
            }
        }
        assert!(
            moved_others < 25,
            "{sched:?}: {moved_others} of 500 clients of surviving reals moved"
        );
    }
}

#[test]
fn persistence_keeps_a_client_on_its_real() {
    require_root!();
    let mut prog = load();
    let mut svc = service(Scheduler::Rr, (1..=3).map(|i| dr_real(i, 1)).collect());
    svc.persistence = Some(Persistence {
        timeout_s: 300,
        prefix: 24,
    });
    prog.apply("web", &svc).unwrap();
    let first = dr_target(&run(&mut prog, &tcp4(CLIENT, 1, VIP, 80, SYN)).out);
    for port in 2..20 {
        // Same client, and its /24 neighbour: persistence_granularity 255.255.255.0.
        assert_eq!(
            dr_target(&run(&mut prog, &tcp4(CLIENT, port, VIP, 80, SYN)).out),
            first
        );
        let neighbour = Ipv4Addr::new(198, 18, 0, 77);
        assert_eq!(
            dr_target(&run(&mut prog, &tcp4(neighbour, port, VIP, 80, SYN)).out),
            first
        );
    }
}

/// As IPVS holds a template while connections it placed live, a client whose connection
/// outlasts `persistence_timeout` keeps its real for new connections (the sweep moves the
/// template's clock with the flow's packets), even once the real is quiescent.
#[test]
fn a_live_connection_keeps_its_persistence_template() {
    require_root!();
    let mut prog = load();
    let mut svc = service(Scheduler::Rr, vec![dr_real(1, 1), dr_real(2, 1)]);
    svc.persistence = Some(Persistence {
        timeout_s: 1,
        prefix: 32,
    });
    prog.apply("web", &svc).unwrap();
    let first = dr_target(&run(&mut prog, &tcp4(CLIENT, 1, VIP, 80, SYN)).out);
    run(&mut prog, &tcp4(CLIENT, 1, VIP, 80, ACK));
    // Quiescent: only a live template still sends new connections to it.
    prog.set_weight("web", real_addr(first), 80, 0).unwrap();
    for _ in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(400));
        run(&mut prog, &tcp4(CLIENT, 1, VIP, 80, ACK));
        prog.sweep().unwrap();
    }
    // 1.6 s after the template was made, 0.4 s after the connection's last packet.
    let r = run(&mut prog, &tcp4(CLIENT, 2, VIP, 80, SYN));
    assert_eq!(
        dr_target(&r.out),
        first,
        "the template outlived its timeout"
    );
}

#[test]
fn ops_schedules_every_udp_datagram() {
    require_root!();
    let mut prog = load();
    let mut svc = service(Scheduler::Rr, vec![dr_real(1, 1), dr_real(2, 1)]);
    svc.protocol = Protocol::Udp;
    svc.ops = true;
    prog.apply("udp", &svc).unwrap();
    let u = udp(4000, 80, b"x");
    let frame = concat(&[
        &eth(&[], ETH_P_IP),
        &ipv4(CLIENT, VIP, IPPROTO_UDP, &[], 0, u.len()),
        &u,
    ]);
    let targets: Vec<u8> = (0..4)
        .map(|_| dr_target(&run(&mut prog, &frame).out))
        .collect();
    assert!(targets.contains(&1) && targets.contains(&2), "{targets:?}");
}

#[test]
fn least_connection_prefers_the_idle_real() {
    require_root!();
    let mut prog = load();
    prog.apply(
        "web",
        &service(Scheduler::Lc, vec![dr_real(1, 1), dr_real(2, 1)]),
    )
    .unwrap();
    let mut hits = [0; 3];
    for port in 0..10 {
        hits[usize::from(dr_target(
            &run(&mut prog, &tcp4(CLIENT, port, VIP, 80, SYN)).out,
        ))] += 1;
    }
    assert_eq!(
        hits[1], 5,
        "lc alternates between equally loaded reals: {hits:?}"
    );
    assert_eq!(hits[2], 5, "{hits:?}");
}

/// IPVS's lc weighs an established connection as 256 that have not completed their
/// handshake: a real with one established connection gets the next 256 SYNs' worth of
/// inactive ones elsewhere first.
#[test]
fn least_connection_weighs_established_as_ipvs_does() {
    require_root!();
    let mut prog = load();
    prog.apply(
        "web",
        &service(Scheduler::Lc, vec![dr_real(1, 1), dr_real(2, 1)]),
    )
    .unwrap();
    let busy = dr_target(&run(&mut prog, &tcp4(CLIENT, 100, VIP, 80, SYN)).out);
    run(&mut prog, &tcp4(CLIENT, 100, VIP, 80, ACK));
    let other = if busy == 1 { 2 } else { 1 };
    for port in 101..121 {
        let r = run(&mut prog, &tcp4(CLIENT, port, VIP, 80, SYN));
        assert_eq!(
            dr_target(&r.out),
            other,
            "20 handshakes weigh less than one established connection"
        );
    }
}

#[test]
fn tun_ipv4_encapsulates_in_ipip() {
    require_root!();
    let mut prog = load();
    let mut real = dr_real(4, 1);
    real.method = Method::Tun;
    real.tunnel_source = Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 254)));
    prog.apply("web", &service(Scheduler::Rr, vec![real]))
        .unwrap();
    let frame = tcp4(CLIENT, 1234, VIP, 80, SYN);
    let r = run(&mut prog, &frame);
    assert_eq!(r.action, XDP_TX, "{:?}", r.reasons);
    let inner = &frame[14..];
    let mut want = concat(&[&real_mac(4), &OUR_MAC, &0x0800u16.to_be_bytes()]);
    let mut outer = ipv4(
        Ipv4Addr::new(198, 18, 0, 254),
        Ipv4Addr::new(198, 18, 1, 4),
        4,
        &[],
        0,
        inner.len(),
    );
    // The builder writes identification 0x1234; the program leaves it 0.
    outer[4] = 0;
    outer[5] = 0;
    outer[10] = 0;
    outer[11] = 0;
    let sum = checksum(&outer);
    outer[10..12].copy_from_slice(&sum.to_be_bytes());
    want.extend_from_slice(&outer);
    want.extend_from_slice(inner);
    assert_eq!(r.out, want);
}

#[test]
fn tun_ipv6_encapsulates_in_ip6ip6() {
    require_root!();
    let mut prog = load();
    let mut real = dr_real(5, 1);
    real.addr = IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5));
    real.method = Method::Tun;
    real.tunnel_source = Some(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe)));
    let mut svc = service(Scheduler::Rr, vec![real]);
    svc.vips = vec![IpAddr::V6(VIP6)];
    prog.apply("web6", &svc).unwrap();
    let t = tcp(1234, 80, SYN, 5);
    let frame = concat(&[
        &eth(&[], ETH_P_IPV6),
        &ipv6(CLIENT6, VIP6, IPPROTO_TCP, t.len()),
        &t,
    ]);
    let r = run(&mut prog, &frame);
    assert_eq!(r.action, XDP_TX, "{:?}", r.reasons);
    let inner = &frame[14..];
    let mut outer = ipv6(
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe),
        Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5),
        41,
        inner.len(),
    );
    outer[7] = 64;
    let want = concat(&[
        &real_mac(5),
        &OUR_MAC,
        &0x86ddu16.to_be_bytes(),
        &outer,
        inner,
    ]);
    assert_eq!(r.out, want);
}

/// As IPVS keeps a removed destination's connections (`expire_nodest_conn` 0): the flow goes
/// on to its real, new connections do not reach it, a re-added real takes its index back, and
/// a sweep frees the index once its flows have ended.
#[test]
fn a_removed_real_keeps_its_connections_until_they_end() {
    require_root!();
    let mut prog = XdpProgram::load_with(&LoadOptions {
        flows: 4096,
        persist: 64,
        timeouts: Globals {
            tcp_timeout_ns: 300_000_000,
            tcpfin_timeout_ns: 300_000_000,
            udp_timeout_ns: 300_000_000,
        },
        pin_dir: None,
        ..LoadOptions::default()
    })
    .unwrap();
    let both = service(Scheduler::Rr, vec![dr_real(1, 1), dr_real(2, 1)]);
    prog.apply("web", &both).unwrap();
    let first = dr_target(&run(&mut prog, &tcp4(CLIENT, 7000, VIP, 80, SYN)).out);
    let other = if first == 1 { 2 } else { 1 };
    prog.apply("web", &service(Scheduler::Rr, vec![dr_real(other, 1)]))
        .unwrap();
    assert_eq!(prog.draining(), 1);
    let r = run(&mut prog, &tcp4(CLIENT, 7000, VIP, 80, ACK));
    assert_eq!(dr_target(&r.out), first, "the established flow goes on");
    only_reason(&r.reasons, Reason::Tx);
    for port in 7001..7005 {
        let r = run(&mut prog, &tcp4(CLIENT, port, VIP, 80, SYN));
        assert_eq!(dr_target(&r.out), other, "no new connection reaches it");
    }
    // Listed again: the same index, so the flow is its own again.
    prog.apply("web", &both).unwrap();
    assert_eq!(prog.draining(), 0);
    let r = run(&mut prog, &tcp4(CLIENT, 7000, VIP, 80, ACK));
    assert_eq!(dr_target(&r.out), first);

    // Removed again; once its flows have expired (and the table swap is long past), a sweep
    // frees the index.
    prog.apply("web", &service(Scheduler::Rr, vec![dr_real(other, 1)]))
        .unwrap();
    prog.sweep().unwrap();
    assert_eq!(prog.draining(), 1, "its flow is live");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    prog.sweep().unwrap();
    assert_eq!(prog.draining(), 0, "freed once no flow uses it");
    let misses = |p: &XdpProgram| {
        p.proto_counters()
            .unwrap()
            .get(ProtoCounter::FlowMissMidStream)
    };
    let before = misses(&prog);
    let r = run(&mut prog, &tcp4(CLIENT, 7000, VIP, 80, ACK));
    assert_eq!(
        dr_target(&r.out),
        other,
        "the expired flow is scheduled afresh"
    );
    assert_eq!(
        misses(&prog),
        before + 1,
        "and counted as a mid-stream miss"
    );
    run(&mut prog, &tcp4(CLIENT, 7000, VIP, 80, ACK));
    run(&mut prog, &tcp4(CLIENT, 7001, VIP, 80, SYN));
    assert_eq!(
        misses(&prog),
        before + 1,
        "a flow found, or a SYN, is no miss"
    );
}

/// An ICMP error from a router on the client's path, quoting a packet the real sent (VIP:80 ->
/// client:cport).
fn icmp_error_v4(ty: u8, code: u8, cport: u16) -> Vec<u8> {
    let quoted_tcp = tcp(80, cport, ACK, 5);
    let quoted = concat(&[
        &ipv4(VIP, CLIENT, IPPROTO_TCP, &[], 0, quoted_tcp.len()),
        &quoted_tcp[..8],
    ]);
    let mut icmp = vec![ty, code, 0, 0, 0, 0, 0x05, 0xdc];
    icmp.extend_from_slice(&quoted);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let router = Ipv4Addr::new(198, 18, 5, 5);
    concat(&[
        &eth(&[], ETH_P_IP),
        &ipv4(router, VIP, IPPROTO_ICMP, &[], 0, icmp.len()),
        &icmp,
    ])
}

#[test]
fn icmp_errors_about_a_flow_reach_its_real() {
    require_root!();
    let mut prog = load();
    prog.apply(
        "web",
        &service(Scheduler::Rr, (1..=3).map(|i| dr_real(i, 1)).collect()),
    )
    .unwrap();
    let real = dr_target(&run(&mut prog, &tcp4(CLIENT, 7100, VIP, 80, SYN)).out);
    // Fragmentation needed (3/4), as path MTU discovery sends it.
    let frame = icmp_error_v4(3, 4, 7100);
    let r = run(&mut prog, &frame);
    assert_eq!(r.action, XDP_TX);
    assert_eq!(dr_target(&r.out), real, "the real of the quoted flow");
    assert_eq!(
        r.out[12..],
        frame[12..],
        "forwarded unchanged but for the MACs"
    );
    // About a flow the balancer never saw, or not an error: the kernel's.
    for frame in [icmp_error_v4(3, 4, 7101), icmp_error_v4(8, 0, 7100)] {
        let r = run(&mut prog, &frame);
        assert_eq!(r.action, XDP_PASS);
        only_reason(&r.reasons, Reason::PassOtherProto);
    }
}

#[test]
fn sweep_expires_flows_and_recounts_active_connections() {
    require_root!();
    let mut prog = XdpProgram::load_with(&LoadOptions {
        flows: 4096,
        persist: 64,
        timeouts: Globals {
            tcp_timeout_ns: 60_000_000_000,
            tcpfin_timeout_ns: 60_000_000_000,
            udp_timeout_ns: 200_000_000,
        },
        pin_dir: None,
        ..LoadOptions::default()
    })
    .unwrap();
    // The packet path stamps flows from jiffies (calibrated at load), the sweep reads
    // CLOCK_MONOTONIC: the expiries below hold only if the two agree to well within 100 ms.
    let tick = prog.clock().unwrap().jiffy_ns;
    assert!(
        (1_000_000..=10_000_000).contains(&tick),
        "the clock was not calibrated to a kernel tick: {tick} ns"
    );
    let mut udp_svc = service(Scheduler::Rr, vec![dr_real(1, 1), dr_real(2, 1)]);
    udp_svc.protocol = Protocol::Udp;
    prog.apply("udp", &udp_svc).unwrap();
    let mut tcp_svc = service(Scheduler::Rr, vec![dr_real(3, 1)]);
    tcp_svc.port = 81;
    prog.apply("tcp", &tcp_svc).unwrap();
    for sport in 1..=4 {
        let u = udp(sport, 80, b"x");
        let f = concat(&[
            &eth(&[], ETH_P_IP),
            &ipv4(CLIENT, VIP, IPPROTO_UDP, &[], 0, u.len()),
            &u,
        ]);
        assert_eq!(run(&mut prog, &f).action, XDP_TX);
    }
    let active = |p: &XdpProgram, i: u8, svc: &str, port: u16| {
        p.active_connections(svc, real_addr(i), port)
            .unwrap()
            .unwrap()
    };
    let counts = |p: &XdpProgram, i: u8, svc: &str, port: u16| {
        p.connection_counts(svc, real_addr(i), port)
            .unwrap()
            .unwrap()
    };
    // As IPVS counts them: SYN_RECV is inactive, established active, closing inactive.
    run(&mut prog, &tcp4(CLIENT, 9000, VIP, 81, SYN));
    assert_eq!(
        counts(&prog, 3, "tcp", 80),
        (0, 1),
        "inactive until established"
    );
    run(&mut prog, &tcp4(CLIENT, 9000, VIP, 81, ACK));
    assert_eq!(active(&prog, 3, "tcp", 80), 1, "active once established");
    run(&mut prog, &tcp4(CLIENT, 9000, VIP, 81, 0x11)); // FIN|ACK: closing
    assert_eq!(
        (active(&prog, 1, "udp", 80), active(&prog, 2, "udp", 80)),
        (2, 2)
    );

    let s = prog.sweep().unwrap();
    assert_eq!((s.live, s.expired), (5, 0));
    assert_eq!(
        (counts(&prog, 1, "udp", 80), counts(&prog, 2, "udp", 80)),
        ((2, 0), (2, 0))
    );
    assert_eq!(
        counts(&prog, 3, "tcp", 80),
        (0, 1),
        "a closing connection is inactive"
    );

    std::thread::sleep(std::time::Duration::from_millis(300));
    let s = prog.sweep().unwrap();
    assert_eq!((s.live, s.expired), (1, 4), "the UDP flows timed out");
    assert_eq!(
        (active(&prog, 1, "udp", 80), active(&prog, 2, "udp", 80)),
        (0, 0)
    );
}

/// The sweep reads the table in batches of a few thousand: every one of 10,000 flows is seen
/// (several whole batches and a part), and a walk leaves the table as it was.
#[test]
fn sweep_reads_every_flow_of_a_large_table() {
    require_root!();
    let mut prog = load();
    prog.apply(
        "web",
        &service(Scheduler::Mh, vec![dr_real(1, 1), dr_real(2, 1)]),
    )
    .unwrap();
    let n: u16 = 10_000;
    for sport in 1..=n {
        assert_eq!(
            run(&mut prog, &tcp4(CLIENT, sport, VIP, 80, SYN)).action,
            XDP_TX
        );
    }
    let walked = prog.sweep_walk().unwrap().walk().unwrap();
    let s = prog.sweep_finish(&walked).unwrap();
    assert_eq!((s.live, s.expired), (u64::from(n), 0));
    let counts = |i: u8| {
        prog.connection_counts("web", real_addr(i), 80)
            .unwrap()
            .unwrap()
    };
    let (a, b) = (counts(1), counts(2));
    assert_eq!(a.0 + b.0, 0, "no handshake completed");
    assert_eq!(
        a.1 + b.1,
        u64::from(n),
        "every SYN_RECV counted as inactive"
    );
    assert_eq!(prog.sweep().unwrap().live, u64::from(n));
}

/// Whether the TCP/UDP checksum of an IPv4 frame (no VLAN, no options) verifies.
fn l4_checksum_ok_v4(frame: &[u8]) -> bool {
    let ip = &frame[14..34];
    let l4 = &frame[34..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, ip[9]]);
    pseudo.extend_from_slice(&u16::try_from(l4.len()).unwrap().to_be_bytes());
    pseudo.extend_from_slice(l4);
    checksum(&pseudo) == 0 && checksum(ip) == 0
}

fn with_tcp_checksum_v4(mut frame: Vec<u8>) -> Vec<u8> {
    let ip = frame[14..34].to_vec();
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, ip[9]]);
    pseudo.extend_from_slice(&u16::try_from(frame.len() - 34).unwrap().to_be_bytes());
    pseudo.extend_from_slice(&frame[34..]);
    let sum = checksum(&pseudo);
    frame[34 + 16..34 + 18].copy_from_slice(&sum.to_be_bytes());
    frame
}

fn nat_real(i: u8, port: u16) -> RealServer {
    RealServer {
        port,
        method: Method::Nat,
        ..dr_real(i, 1)
    }
}

#[test]
fn nat_ipv4_rewrites_the_destination_and_the_reply_source() {
    require_root!();
    let mut prog = load();
    prog.apply("web", &service(Scheduler::Rr, vec![nat_real(7, 8080)]))
        .unwrap();
    let syn = with_tcp_checksum_v4(tcp4(CLIENT, 7200, VIP, 80, SYN));
    assert!(l4_checksum_ok_v4(&syn));
    let r = run(&mut prog, &syn);
    assert_eq!(r.action, XDP_TX, "{:?}", r.reasons);
    assert_eq!(dr_target(&r.out), 7);
    assert_eq!(r.out[30..34], [198, 18, 1, 7], "destination is the real");
    assert_eq!(r.out[36..38], 8080u16.to_be_bytes(), "and its port");
    assert_eq!(r.out[26..30], frame_src(&syn), "source untouched");
    assert!(l4_checksum_ok_v4(&r.out), "checksums updated incrementally");

    // The reply leaves through the FIB's route to the client, inside a namespace that has one.
    let ns = Netns::new("nat");
    let peer = Netns::new("natpeer");
    veth_pair(&ns, "v0", &peer, "v1");
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "v0"]);
    ns.ip(&[
        "neigh",
        "add",
        "198.18.0.1",
        "lladdr",
        "02:00:00:00:00:01",
        "dev",
        "v0",
        "nud",
        "permanent",
    ]);
    ns.sysctl("net.ipv4.conf.all.forwarding", "1");
    let reply = with_tcp_checksum_v4(tcp4(
        Ipv4Addr::new(198, 18, 1, 7),
        8080,
        CLIENT,
        7200,
        SYN | ACK,
    ));
    let r = ns.run(|| run(&mut prog, &reply));
    assert_eq!(r.action, XDP_REDIRECT, "{:?}", r.reasons);
    only_reason(&r.reasons, Reason::Redirect);
    assert_eq!(r.out[..6], CLIENT_MAC);
    assert_eq!(r.out[26..30], VIP.octets(), "the reply comes from the VIP");
    assert_eq!(r.out[34..36], 80u16.to_be_bytes(), "and its port");
    assert!(l4_checksum_ok_v4(&r.out));

    // Not a reply to a NAT flow: the kernel's.
    let other = with_tcp_checksum_v4(tcp4(Ipv4Addr::new(198, 18, 1, 7), 8080, CLIENT, 7201, ACK));
    let r = ns.run(|| run(&mut prog, &other));
    assert_eq!(r.action, XDP_PASS);
    only_reason(&r.reasons, Reason::PassNoService);
}

fn frame_src(frame: &[u8]) -> [u8; 4] {
    frame[26..30].try_into().unwrap()
}

#[test]
fn nat_keeps_a_zero_udp_checksum() {
    require_root!();
    let mut prog = load();
    let mut svc = service(Scheduler::Rr, vec![nat_real(8, 5353)]);
    svc.protocol = Protocol::Udp;
    prog.apply("dns", &svc).unwrap();
    let u = udp(4000, 80, b"q");
    let f = concat(&[
        &eth(&[], ETH_P_IP),
        &ipv4(CLIENT, VIP, IPPROTO_UDP, &[], 0, u.len()),
        &u,
    ]);
    let r = run(&mut prog, &f);
    assert_eq!(r.action, XDP_TX);
    assert_eq!(r.out[36..38], 5353u16.to_be_bytes());
    assert_eq!(
        r.out[40..42],
        [0, 0],
        "no checksum stays no checksum (RFC 768)"
    );
    assert_eq!(checksum(&r.out[14..34]), 0, "IPv4 header checksum updated");
}

#[test]
fn nat_ipv6_rewrites_the_destination_with_a_valid_checksum() {
    require_root!();
    let v6_checksum = |frame: &[u8]| {
        let ip = &frame[14..54];
        let l4 = &frame[54..];
        let mut pseudo = ip[8..40].to_vec();
        pseudo.extend_from_slice(&u32::try_from(l4.len()).unwrap().to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, ip[6]]);
        pseudo.extend_from_slice(l4);
        checksum(&pseudo)
    };
    let mut prog = load();
    let real6 = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 9);
    let mut real = nat_real(9, 8443);
    real.addr = IpAddr::V6(real6);
    let mut svc = service(Scheduler::Rr, vec![real]);
    svc.vips = vec![IpAddr::V6(VIP6)];
    prog.apply("web6", &svc).unwrap();
    let t = tcp(7300, 80, SYN, 5);
    let mut frame = concat(&[
        &eth(&[], ETH_P_IPV6),
        &ipv6(CLIENT6, VIP6, IPPROTO_TCP, t.len()),
        &t,
    ]);
    let sum = v6_checksum(&frame);
    frame[54 + 16..54 + 18].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(v6_checksum(&frame), 0);
    let r = run(&mut prog, &frame);
    assert_eq!(r.action, XDP_TX, "{:?}", r.reasons);
    assert_eq!(r.out[38..54], real6.octets());
    assert_eq!(r.out[56..58], 8443u16.to_be_bytes());
    assert_eq!(
        v6_checksum(&r.out),
        0,
        "TCP checksum over the new pseudo-header"
    );
}

/// A TUN real whose egress is a veth with MTU 1500 in a namespace: the IPIP header takes 20.
fn mtu_lab(icmp_too_big: bool) -> (Netns, Netns, XdpProgram) {
    let ns = Netns::new("mtu");
    let peer = Netns::new("mtupeer");
    veth_pair(&ns, "t0", &peer, "t1");
    ns.ip(&["link", "set", "t0", "mtu", "1500"]);
    let ifindex = ns.run(|| {
        let name = std::ffi::CString::new("t0").unwrap();
        // SAFETY: a valid NUL-terminated name.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    });
    assert_ne!(ifindex, 0);
    let mut prog = XdpProgram::load_with(&LoadOptions {
        icmp_too_big,
        ..LoadOptions::default()
    })
    .expect("load");
    let mut real = dr_real(4, 1);
    real.method = Method::Tun;
    real.tunnel_source = Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 254)));
    real.egress = Some(Egress {
        ifindex,
        dmac: real_mac(4),
        smac: OUR_MAC,
    });
    prog.apply("web", &service(Scheduler::Rr, vec![real.clone()]))
        .unwrap();
    let mut svc6 = service(Scheduler::Rr, vec![real]);
    svc6.vips = vec![IpAddr::V6(VIP6)];
    prog.apply("web6", &svc6).unwrap();
    (ns, peer, prog)
}

fn big_v4(payload: usize) -> Vec<u8> {
    let mut t = tcp(1234, 80, ACK, 5);
    t.extend(std::iter::repeat_n(0xabu8, payload));
    concat(&[
        &eth(&[], ETH_P_IP),
        &ipv4(CLIENT, VIP, IPPROTO_TCP, &[], 0, t.len()),
        &t,
    ])
}

/// IPVS answers what its tunnel cannot carry with ICMP fragmentation needed (the client's
/// path MTU discovery then shrinks its packets); so do we, and the answer is exact: from the
/// VIP to the client, MTU 1500 - 20, the original header and data quoted, checksums right.
#[test]
fn tun_answers_what_would_exceed_the_egress_mtu_with_icmp() {
    require_root!();
    let (ns, _peer, mut prog) = mtu_lab(true);
    // 1480 bytes of IP fit in 1500 with the 20-byte outer header.
    let r = ns.run(|| run(&mut prog, &big_v4(1480 - 40)));
    assert_eq!(r.action, XDP_REDIRECT, "{:?}", r.reasons);
    let frame = big_v4(1481 - 40);
    let r = ns.run(|| run(&mut prog, &frame));
    assert_eq!(r.action, XDP_TX, "{:?}", r.reasons);
    only_reason(&r.reasons, Reason::TxIcmpTooBig);
    let out = &r.out;
    assert_eq!(out.len(), 14 + 20 + 8 + 56);
    assert_eq!(out[..6], frame[6..12], "back to the sender's MAC");
    assert_eq!(out[6..12], frame[..6]);
    let ip = &out[14..34];
    assert_eq!(checksum(ip), 0, "IPv4 header checksum");
    assert_eq!((ip[0], ip[9]), (0x45, 1), "ICMP");
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 20 + 8 + 56);
    assert_eq!(ip[12..16], VIP.octets(), "from the VIP");
    assert_eq!(ip[16..20], CLIENT.octets(), "to the client");
    let icmp = &out[34..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(
        u16::from_be_bytes([icmp[6], icmp[7]]),
        1480,
        "the tunnel's MTU"
    );
    assert_eq!(checksum(icmp), 0, "ICMP checksum");
    assert_eq!(icmp[8..], frame[14..14 + 56], "the original packet quoted");

    // IPv6 in the same tunnel: packet too big (RFC 4443 §3.2).
    let mut t = tcp(1234, 80, ACK, 5);
    t.extend(std::iter::repeat_n(0xcdu8, 1481 - 40 - 20));
    let frame6 = concat(&[
        &eth(&[], 0x86dd),
        &ipv6(CLIENT6, VIP6, IPPROTO_TCP, t.len()),
        &t,
    ]);
    let r = ns.run(|| run(&mut prog, &frame6));
    assert_eq!(r.action, XDP_TX, "{:?}", r.reasons);
    only_reason(&r.reasons, Reason::TxIcmpTooBig);
    let out = &r.out;
    assert_eq!(out.len(), 14 + 40 + 8 + 200);
    let ip = &out[14..54];
    assert_eq!((ip[0] >> 4, ip[6]), (6, 58), "ICMPv6");
    assert_eq!(ip[8..24], VIP6.octets());
    assert_eq!(ip[24..40], CLIENT6.octets());
    let icmp = &out[54..];
    assert_eq!(icmp[0], 2, "packet too big");
    assert_eq!(
        u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
        1480
    );
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[8..40]);
    pseudo.extend_from_slice(&u32::try_from(icmp.len()).unwrap().to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(icmp);
    assert_eq!(
        checksum(&pseudo),
        0,
        "ICMPv6 checksum with the pseudo-header"
    );
    assert_eq!(icmp[8..], frame6[14..14 + 200]);
}

/// A tagged client gets the answer on its VLAN: the same answer as untagged, with the tags it
/// sent between the addresses and the ethertype.
#[test]
fn tun_answers_a_tagged_frame_on_its_vlans() {
    require_root!();
    let (ns, _peer, mut prog) = mtu_lab(true);
    let untagged = big_v4(1481 - 40);
    let expected = ns.run(|| run(&mut prog, &untagged)).out;
    for tags in [
        vec![(0x8100, 100)],
        vec![(0x88a8, 0x2007), (0x8100, 0x6064)],
    ] {
        let l2 = eth(&tags, ETH_P_IP);
        let frame = concat(&[&l2, &untagged[14..]]);
        let r = ns.run(|| run(&mut prog, &frame));
        assert_eq!(r.action, XDP_TX, "{tags:?}: {:?}", r.reasons);
        only_reason(&r.reasons, Reason::TxIcmpTooBig);
        let mut want = expected[..12].to_vec();
        want.extend_from_slice(&l2[12..]);
        want.extend_from_slice(&expected[14..]);
        assert_eq!(r.out, want, "{tags:?}");
    }
    // IPv6 behind one tag: the answer's ICMPv6 after the tag.
    let mut t = tcp(1234, 80, ACK, 5);
    t.extend(std::iter::repeat_n(0xcdu8, 1481 - 40 - 20));
    let ip6 = concat(&[&ipv6(CLIENT6, VIP6, IPPROTO_TCP, t.len()), &t]);
    let expected = ns
        .run(|| run(&mut prog, &concat(&[&eth(&[], 0x86dd), &ip6])))
        .out;
    let l2 = eth(&[(0x8100, 7)], 0x86dd);
    let r = ns.run(|| run(&mut prog, &concat(&[&l2, &ip6])));
    only_reason(&r.reasons, Reason::TxIcmpTooBig);
    assert_eq!(r.out[12..18], l2[12..]);
    assert_eq!(r.out[18..], expected[14..]);
}

#[test]
fn tun_drops_and_counts_what_would_exceed_the_egress_mtu_when_told_to() {
    require_root!();
    let (ns, _peer, mut prog) = mtu_lab(false);
    let r = ns.run(|| run(&mut prog, &big_v4(1481 - 40)));
    assert_eq!(r.action, XDP_DROP);
    only_reason(&r.reasons, Reason::DropTooBig);
}

#[test]
fn per_service_and_per_real_counters() {
    require_root!();
    let mut prog = load();
    prog.apply(
        "web",
        &service(Scheduler::Rr, vec![dr_real(1, 1), dr_real(2, 1)]),
    )
    .unwrap();
    let syn = tcp4(CLIENT, 8000, VIP, 80, SYN);
    let ack = tcp4(CLIENT, 8000, VIP, 80, ACK);
    let first = dr_target(&run(&mut prog, &syn).out);
    run(&mut prog, &ack);
    run(&mut prog, &ack);
    let other = dr_target(&run(&mut prog, &tcp4(CLIENT, 8001, VIP, 80, SYN)).out);
    assert_ne!(first, other, "rr alternates");
    let len = syn.len() as u64;
    let svc = prog.service_stats("web").unwrap().unwrap();
    assert_eq!((svc.packets, svc.bytes, svc.conns), (4, 4 * len, 2));
    let real = prog
        .real_stats("web", real_addr(first), 80)
        .unwrap()
        .unwrap();
    assert_eq!((real.packets, real.bytes, real.conns), (3, 3 * len, 1));
    let real = prog
        .real_stats("web", real_addr(other), 80)
        .unwrap()
        .unwrap();
    assert_eq!((real.packets, real.conns), (1, 1));
    assert!(prog.service_stats("nope").unwrap().is_none());
}

#[test]
fn mh_flows_that_fall_out_of_a_full_table_keep_their_real() {
    require_root!();
    // A connection table far smaller than the flows: the LRU evicts, Maglev still agrees.
    let mut prog = XdpProgram::load_with(&LoadOptions {
        flows: 64,
        persist: 16,
        timeouts: Globals::default(),
        pin_dir: None,
        ..LoadOptions::default()
    })
    .unwrap();
    let mut svc = service(Scheduler::Mh, (1..=4).map(|i| dr_real(i, 1)).collect());
    svc.hash_port = true;
    prog.apply("web", &svc).unwrap();
    let first: Vec<u8> = (0..500u16)
        .map(|p| dr_target(&run(&mut prog, &tcp4(CLIENT, 20_000 + p, VIP, 80, SYN)).out))
        .collect();
    for p in 0..500u16 {
        let again = dr_target(&run(&mut prog, &tcp4(CLIENT, 20_000 + p, VIP, 80, ACK)).out);
        assert_eq!(again, first[usize::from(p)], "port {}", 20_000 + p);
        let predicted = prog.predict("web", IpAddr::V4(CLIENT), 20_000 + p).unwrap();
        assert_eq!(predicted, real_addr(again));
    }
}

#[test]
fn dr_keeps_the_vlan_tag_of_a_tagged_frame() {
    require_root!();
    let mut prog = load();
    prog.apply("web", &service(Scheduler::Rr, vec![dr_real(1, 1)]))
        .unwrap();
    let t = tcp(40000, 80, SYN, 5);
    let frame = concat(&[
        &eth(&[(ETH_P_8021Q, 42)], ETH_P_IP),
        &ipv4(CLIENT, VIP, IPPROTO_TCP, &[], 0, t.len()),
        &t,
    ]);
    let r = run(&mut prog, &frame);
    assert_eq!(r.action, XDP_TX);
    assert_eq!(r.out[..6], real_mac(1));
    assert_eq!(
        r.out[12..],
        frame[12..],
        "tag, headers and payload unchanged"
    );
}

#[test]
fn every_method_family_and_protocol_is_forwarded() {
    require_root!();
    let real6 = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5);
    let mut failures = Vec::new();
    // One program for all twelve: each combination replaces the service and uses its own
    // source port, so no flow of an earlier one is reused.
    let mut prog = load();
    let mut sport = 1000;
    for method in [Method::Dr, Method::Nat, Method::Tun] {
        for v6 in [false, true] {
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let name = format!("{method:?} {} {protocol:?}", if v6 { "v6" } else { "v4" });
                sport += 1;
                let mut real = dr_real(5, 1);
                real.method = method;
                if v6 {
                    real.addr = IpAddr::V6(real6);
                }
                if method == Method::Tun {
                    real.tunnel_source = Some(if v6 {
                        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 254))
                    });
                }
                let mut svc = service(Scheduler::Wrr, vec![real]);
                svc.protocol = protocol;
                if v6 {
                    svc.vips = vec![IpAddr::V6(VIP6)];
                }
                prog.apply("svc", &svc).unwrap();
                let l4 = match protocol {
                    Protocol::Tcp => tcp(sport, 80, SYN, 5),
                    Protocol::Udp => udp(sport, 80, b"x"),
                };
                let proto = if protocol == Protocol::Tcp {
                    IPPROTO_TCP
                } else {
                    IPPROTO_UDP
                };
                let frame = if v6 {
                    concat(&[
                        &eth(&[], ETH_P_IPV6),
                        &ipv6(CLIENT6, VIP6, proto, l4.len()),
                        &l4,
                    ])
                } else {
                    concat(&[
                        &eth(&[], ETH_P_IP),
                        &ipv4(CLIENT, VIP, proto, &[], 0, l4.len()),
                        &l4,
                    ])
                };
                let r = run(&mut prog, &frame);
                if r.action != XDP_TX || r.out[..6] != real_mac(5) {
                    failures.push(format!("{name}: action {} {:?}", r.action, r.reasons));
                    continue;
                }
                // Where the real's address must now stand, and the outer length.
                let (dst_at, want_len) = match (method, v6) {
                    (Method::Dr, _) => (None, frame.len()),
                    (Method::Nat, false) => (Some(30..34), frame.len()),
                    (Method::Nat, true) => (Some(38..54), frame.len()),
                    (Method::Tun, false) => (Some(30..34), frame.len() + 20),
                    (Method::Tun, true) => (Some(38..54), frame.len() + 40),
                };
                if r.out.len() != want_len {
                    failures.push(format!("{name}: length {} != {want_len}", r.out.len()));
                }
                if let Some(at) = dst_at {
                    let want: Vec<u8> = if v6 {
                        real6.octets().to_vec()
                    } else {
                        vec![198, 18, 1, 5]
                    };
                    if r.out[at.clone()] != want[..] {
                        failures.push(format!("{name}: destination {:?}", &r.out[at]));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn draining_one_mh_real_moves_only_its_clients() {
    require_root!();
    let mut prog = load();
    let reals: Vec<_> = (1..=3).map(|i| dr_real(i, 1)).collect();
    prog.apply("web", &service(Scheduler::Mh, reals)).unwrap();
    let client = |i: u32| IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i));
    let before: Vec<IpAddr> = (0..600)
        .map(|i| prog.predict("web", client(i), 0).unwrap())
        .collect();
    // Three live reals become two: the table size must not change with it, or nearly every
    // client would move. Maglev keeps the others in place but for a few (paper, §3.4).
    prog.set_weight("web", real_addr(2), 80, 0).unwrap();
    let (mut survivors, mut moved) = (0, 0);
    for i in 0..600u32 {
        let now = prog.predict("web", client(i), 0).unwrap();
        let was = before[i as usize];
        assert_ne!(now, real_addr(2));
        if was != real_addr(2) {
            survivors += 1;
            moved += usize::from(now != was);
        }
    }
    assert!(
        moved * 20 < survivors,
        "{moved} of {survivors} clients of surviving reals moved"
    );
}

#[test]
fn a_failed_mh_real_takes_no_new_flow_before_its_table_is_rebuilt() {
    require_root!();
    let mut prog = load();
    let reals: Vec<_> = (1..=5).map(|i| dr_real(i, 1)).collect();
    prog.apply("web", &service(Scheduler::Mh, reals.clone()))
        .unwrap();
    let client = |i: u32| Ipv4Addr::from(0xc612_4000 + i);
    // The exact table with real 3 gone, installed under another name to compare with.
    let mut without = service(Scheduler::Mh, reals);
    without.reals[2].weight = 0;
    without.vips = vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 101))];
    prog.apply("exact", &without).unwrap();
    let before: Vec<Option<IpAddr>> = (800..1200)
        .map(|i| prog.predict("web", IpAddr::V4(client(i)), 0))
        .collect();

    // The checker's decision, without the rebuild: real 3 is patched out of the live table.
    prog.set_weight_fast("web", real_addr(3), 80, 0).unwrap();
    let mut differ = 0;
    for i in 0..400 {
        let target = dr_target(&run(&mut prog, &tcp4(client(i), 1000, VIP, 80, SYN)).out);
        assert_ne!(target, 3, "client {i} was sent to the failed real");
        let predicted = prog.predict("web", IpAddr::V4(client(i)), 0).unwrap();
        assert_eq!(real_addr(target), predicted, "client {i}");
        differ += usize::from(Some(predicted) != prog.predict("exact", IpAddr::V4(client(i)), 0));
    }
    assert!(
        differ > 0,
        "the patch is not the exact table, or the test shows nothing"
    );

    // The flush brings the exact table, which new flows then follow.
    prog.flush().unwrap();
    for i in 400..800 {
        let exact = prog.predict("exact", IpAddr::V4(client(i)), 0).unwrap();
        assert_eq!(prog.predict("web", IpAddr::V4(client(i)), 0), Some(exact));
        let target = dr_target(&run(&mut prog, &tcp4(client(i), 1000, VIP, 80, SYN)).out);
        assert_eq!(real_addr(target), exact, "client {i}");
    }

    // Back up: the table it left is written again at once, without a flush.
    prog.set_weight_fast("web", real_addr(3), 80, 1).unwrap();
    for i in 800..1200 {
        let predicted = prog.predict("web", IpAddr::V4(client(i)), 0);
        assert_eq!(predicted, before[(i - 800) as usize], "client {i}");
        let target = dr_target(&run(&mut prog, &tcp4(client(i), 1000, VIP, 80, SYN)).out);
        assert_eq!(Some(real_addr(target)), predicted, "client {i}");
    }
    assert!(before.contains(&Some(real_addr(3))));
}

#[test]
fn mh_reals_recovering_after_several_failures_return_to_the_first_table_at_once() {
    require_root!();
    let mut prog = load();
    let reals: Vec<_> = (1..=5).map(|i| dr_real(i, 1)).collect();
    prog.apply("web", &service(Scheduler::Mh, reals)).unwrap();
    let client = |i: u32| IpAddr::V4(Ipv4Addr::from(0xc612_5000 + i));
    let before: Vec<_> = (0..300)
        .map(|i| prog.predict("web", client(i), 0))
        .collect();
    // Three failures, each flushed: more tables than the two latest are kept of.
    for i in [2, 3, 4] {
        prog.set_weight_fast("web", real_addr(i), 80, 0).unwrap();
        prog.flush().unwrap();
    }
    // Recovering without a flush: the table apply built is written back at once.
    for i in [2, 3, 4] {
        prog.set_weight_fast("web", real_addr(i), 80, 1).unwrap();
    }
    let after: Vec<_> = (0..300)
        .map(|i| prog.predict("web", client(i), 0))
        .collect();
    assert_eq!(after, before);
    for i in 0..300 {
        let IpAddr::V4(c) = client(i) else {
            unreachable!()
        };
        let target = dr_target(&run(&mut prog, &tcp4(c, 1000, VIP, 80, SYN)).out);
        assert_eq!(Some(real_addr(target)), before[i as usize], "client {i}");
    }
}

#[test]
fn the_last_mh_real_failing_hands_over_to_the_sorry_server_at_once() {
    require_root!();
    let mut prog = load();
    let mut svc = service(Scheduler::Mh, vec![dr_real(1, 1), dr_real(2, 1)]);
    svc.sorry_server = Some(dr_real(9, 1));
    prog.apply("web", &svc).unwrap();
    prog.set_weight_fast("web", real_addr(1), 80, 0).unwrap();
    prog.set_weight_fast("web", real_addr(2), 80, 0).unwrap();
    for port in 1..50 {
        let target = dr_target(&run(&mut prog, &tcp4(CLIENT, port, VIP, 80, SYN)).out);
        assert_eq!(target, 9, "without a flush");
    }
}

#[test]
fn persistence_to_the_sorry_server_lapses_when_a_real_returns() {
    require_root!();
    let mut prog = load();
    let mut svc = service(Scheduler::Rr, vec![dr_real(1, 0)]);
    svc.sorry_server = Some(dr_real(9, 1));
    svc.persistence = Some(Persistence {
        timeout_s: 300,
        prefix: 32,
    });
    prog.apply("web", &svc).unwrap();
    assert_eq!(
        dr_target(&run(&mut prog, &tcp4(CLIENT, 1, VIP, 80, SYN)).out),
        9
    );
    prog.set_weight("web", real_addr(1), 80, 1).unwrap();
    assert_eq!(
        dr_target(&run(&mut prog, &tcp4(CLIENT, 2, VIP, 80, SYN)).out),
        1,
        "back on the real, not held on the sorry server by the template"
    );
}

#[test]
fn icmp_errors_about_nat_flows_are_left_to_the_kernel() {
    require_root!();
    let mut prog = load();
    prog.apply("web", &service(Scheduler::Rr, vec![nat_real(7, 8080)]))
        .unwrap();
    run(
        &mut prog,
        &with_tcp_checksum_v4(tcp4(CLIENT, 7400, VIP, 80, SYN)),
    );
    let r = run(&mut prog, &icmp_error_v4(3, 4, 7400));
    assert_eq!(r.action, XDP_PASS, "not sent on untranslated");
    only_reason(&r.reasons, Reason::PassOtherProto);
}
