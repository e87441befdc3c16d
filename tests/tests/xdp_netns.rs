//! Layer 3: the XDP program attached to a veth in one namespace sees the exact packets another
//! namespace sends it. Needs root.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use balancer::dataplane::xdp::{AttachMode, AttachedMode, XdpProgram};
use balancer_common::ProtoCounter::{self, *};
use balancer_tests::{Netns, frame, require_root, veth_pair};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const LB4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 1);
const LB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 2);

/// A client namespace and a balancer namespace joined by one veth pair.
struct Topology {
    client: Netns,
    lb: Netns,
}

fn topology(ipv6: bool) -> Topology {
    let client = Netns::new("client");
    let lb = Netns::new("lb");
    if !ipv6 {
        client.disable_ipv6();
        lb.disable_ipv6();
    }
    veth_pair(&client, "veth-c", &lb, "veth-lb");
    client.ip(&["addr", "add", "198.18.0.1/24", "dev", "veth-c"]);
    lb.ip(&["addr", "add", "198.18.0.2/24", "dev", "veth-lb"]);
    if ipv6 {
        client.ip(&["addr", "add", "fd00:18::1/64", "dev", "veth-c", "nodad"]);
        lb.ip(&["addr", "add", "fd00:18::2/64", "dev", "veth-lb", "nodad"]);
    }
    Topology { client, lb }
}

/// Sends `count` ICMP echo requests to `dst` from a raw socket (no ping binary needed).
fn send_icmp_echo(dst: Ipv4Addr, count: u16) {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).expect("raw socket");
    let to = SockAddr::from(SocketAddr::from((dst, 0)));
    for seq in 0..count {
        sock.send_to(&frame::icmp_echo(8, 0x4242, seq), &to)
            .expect("send echo");
    }
}

fn send_udp(from: SocketAddr, to: SocketAddr, count: u32) {
    let sock = UdpSocket::bind(from).expect("bind udp");
    for i in 0..count {
        sock.send_to(&i.to_be_bytes(), to).expect("send udp");
    }
}

/// Reads the counters until `done` holds or 2 s pass (veth delivery is asynchronous).
fn settle(
    prog: &XdpProgram,
    done: impl Fn(&balancer::dataplane::xdp::ProtoCounters) -> bool,
) -> balancer::dataplane::xdp::ProtoCounters {
    let mut c = prog.proto_counters().unwrap();
    for _ in 0..200 {
        if done(&c) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        c = prog.proto_counters().unwrap();
    }
    c
}

fn assert_only(c: &balancer::dataplane::xdp::ProtoCounters, allowed: &[ProtoCounter]) {
    for (counter, v) in c.iter() {
        if !allowed.contains(&counter) {
            assert_eq!(v, 0, "{} should not move: {c:?}", counter.name());
        }
    }
}

#[test]
fn counts_exactly_the_udp_and_icmp_packets_sent() {
    const UDP: u32 = 100;
    const ICMP: u16 = 25;
    require_root!();
    let t = topology(false);
    let mut prog = XdpProgram::load().expect("load the XDP program");
    let mode =
        t.lb.run(|| prog.attach("veth-lb", AttachMode::Auto))
            .expect("attach");
    assert_eq!(mode, AttachedMode::Driver, "veth supports native XDP");

    t.client.run(|| {
        send_udp((CLIENT4, 0).into(), (LB4, 9).into(), UDP);
        send_icmp_echo(LB4, ICMP);
    });
    let c = settle(&prog, |c| {
        c.get(Udp4) >= u64::from(UDP) && c.get(Icmp4) >= u64::from(ICMP)
    });

    assert_eq!(c.get(Udp4), u64::from(UDP), "{c:?}");
    assert_eq!(c.get(Icmp4), u64::from(ICMP), "{c:?}");
    assert_eq!(c.get(Ipv4), u64::from(UDP) + u64::from(ICMP), "{c:?}");
    // Before the first datagram the client resolved the balancer's address.
    assert!(c.get(Arp) >= 1, "{c:?}");
    assert_eq!(c.get(Frames), c.get(Ipv4) + c.get(Arp), "{c:?}");
    assert_only(&c, &[Frames, Arp, Ipv4, Udp4, Icmp4]);

    // Detaching stops the counting: nothing more arrives at the program.
    prog.detach_all().expect("detach");
    t.client
        .run(|| send_udp((CLIENT4, 0).into(), (LB4, 9).into(), 10));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(prog.proto_counters().unwrap().get(Udp4), u64::from(UDP));
}

#[test]
fn counts_ipv6_tcp_and_udp_in_generic_mode() {
    const UDP: u32 = 40;
    require_root!();
    let t = topology(true);
    let mut prog = XdpProgram::load().expect("load the XDP program");
    let mode =
        t.lb.run(|| prog.attach("veth-lb", AttachMode::Generic))
            .expect("attach");
    assert_eq!(mode, AttachedMode::Generic);
    let listener =
        t.lb.run(|| std::net::TcpListener::bind((LB6, 8080)))
            .expect("listen");

    t.client.run(|| {
        send_udp((CLIENT6, 0).into(), (LB6, 9).into(), UDP);
        let stream =
            std::net::TcpStream::connect_timeout(&(LB6, 8080).into(), Duration::from_secs(2))
                .expect("connect");
        drop(stream);
    });
    // SYN, ACK of the handshake, then FIN (and the ACK of the server's FIN, or a RST).
    let c = settle(&prog, |c| c.get(Udp6) >= u64::from(UDP) && c.get(Tcp6) >= 3);
    drop(listener);

    assert_eq!(c.get(Udp6), u64::from(UDP), "{c:?}");
    assert!(c.get(Tcp6) >= 3, "{c:?}");
    assert_eq!(c.get(Ipv4) + c.get(Udp4) + c.get(Tcp4), 0, "{c:?}");
    // Neighbour discovery and MLD arrive as ICMPv6; nothing is misclassified.
    assert_eq!(
        c.get(Frames),
        c.get(Tcp6) + c.get(Udp6) + c.get(Icmp6) + c.get(OtherL4v6) + c.get(Arp),
        "{c:?}"
    );
    assert_eq!(c.get(Truncated), 0, "{c:?}");
}

#[test]
fn attach_errors_are_explicit_and_leave_nothing_attached() {
    require_root!();
    let t = topology(false);
    let mut prog = XdpProgram::load().expect("load the XDP program");
    let err =
        t.lb.run(|| prog.attach("no-such-if", AttachMode::Auto))
            .unwrap_err();
    assert!(err.to_string().contains("no-such-if"), "{err}");
    t.lb.run(|| prog.attach("veth-lb", AttachMode::Driver))
        .expect("attach");
    let err =
        t.lb.run(|| prog.attach("veth-lb", AttachMode::Driver))
            .unwrap_err();
    assert!(err.to_string().contains("already attached"), "{err}");
    drop(prog);
    let link = t.lb.output("ip", &["-d", "link", "show", "veth-lb"]);
    let text = String::from_utf8_lossy(&link.stdout);
    assert!(
        !text.contains("prog/xdp"),
        "dropping the program detaches it: {text}"
    );
}
