//! Layer 3: real TCP connections through the XDP program in NAT mode. The balancer sits
//! between a client network and a real network (forwarding on); the reals' replies come back
//! through it and leave with the VIP as their source. Needs root.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use balancer::{
    dataplane::{Dataplane, xdp::AttachMode},
    model::{Method, Protocol, RealServer, Scheduler, VirtualService},
};
use balancer_common::Reason;
use balancer_tests::{
    Netns, NsThread,
    lab::{connect_many, ethtool, identity_server, load_program, warm_neighbours},
    require_root, veth_pair,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const REALS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 2, 11),
    Ipv4Addr::new(198, 18, 2, 12),
    Ipv4Addr::new(198, 18, 2, 13),
];

/// Port 80 on the VIP, to port 8080 on three reals, round robin.
fn nat_service() -> VirtualService {
    VirtualService {
        vips: vec![IpAddr::V4(VIP)],
        port: 80,
        protocol: Protocol::Tcp,
        scheduler: Scheduler::Rr,
        ops: false,
        hash_port: false,
        persistence: None,
        reals: REALS
            .iter()
            .map(|&a| RealServer {
                addr: IpAddr::V4(a),
                port: 8080,
                weight: 1,
                method: Method::Nat,
                tunnel_source: None,
                egress: None,
            })
            .collect(),
        sorry_server: None,
    }
}

#[test]
fn nat_tcp_connections_reach_every_real_and_replies_come_from_the_vip() {
    const CONNECTIONS: usize = 60;
    require_root!();
    let client = Netns::new("nclient");
    let lb = Netns::new("nlb");
    let sw = Netns::new("nsw");
    for ns in [&client, &lb, &sw] {
        ns.disable_ipv6();
    }
    veth_pair(&client, "c0", &lb, "l0");
    client.ip(&["addr", "add", "198.18.0.1/24", "dev", "c0"]);
    client.ip(&["route", "add", "198.18.0.100/32", "via", "198.18.0.2"]);
    lb.ip(&["addr", "add", "198.18.0.2/24", "dev", "l0"]);
    lb.sysctl("net.ipv4.conf.all.forwarding", "1");
    sw.ip(&["link", "add", "br0", "type", "bridge"]);
    sw.ip(&["link", "set", "br0", "up"]);
    veth_pair(&lb, "l1", &sw, "p-l");
    sw.ip(&["link", "set", "p-l", "master", "br0"]);
    lb.ip(&["addr", "add", "198.18.2.1/24", "dev", "l1"]);
    // The program rewrites and forwards frames as they are: senders must fill in complete
    // checksums (veth would otherwise leave them to an offload that never happens).
    ethtool(&client, &["-K", "c0", "tx", "off"]);
    let mut reals = Vec::new();
    let mut servers: Vec<NsThread> = Vec::new();
    for (i, addr) in REALS.iter().enumerate() {
        let r = Netns::new(&format!("nreal{i}"));
        r.disable_ipv6();
        let port = format!("p-r{i}");
        veth_pair(&r, "e0", &sw, &port);
        sw.ip(&["link", "set", &port, "master", "br0"]);
        r.ip(&["addr", "add", &format!("{addr}/24"), "dev", "e0"]);
        r.ip(&["route", "add", "default", "via", "198.18.2.1"]);
        ethtool(&r, &["-K", "e0", "tx", "off"]);
        servers.push(identity_server(&r, 8080, IpAddr::V4(*addr)));
        reals.push(r);
    }

    let mut prog = load_program(4096);
    prog.apply("web", &nat_service()).unwrap();
    // Both sides: requests arrive on l0, replies on l1.
    lb.run(|| prog.attach("l0", AttachMode::Driver))
        .expect("attach l0");
    lb.run(|| prog.attach("l1", AttachMode::Driver))
        .expect("attach l1");
    // Redirected frames land on the veth peers, which take them only with an XDP program of
    // their own: one with no services passes everything on.
    let mut peers = load_program(16);
    sw.run(|| peers.attach("p-l", AttachMode::Driver))
        .expect("attach p-l");
    client
        .run(|| peers.attach("c0", AttachMode::Driver))
        .expect("attach c0");
    let real_addrs: Vec<IpAddr> = REALS.iter().map(|&a| IpAddr::V4(a)).collect();
    warm_neighbours(&lb, "198.18.2.1".parse().unwrap(), &real_addrs, "l1");
    warm_neighbours(
        &lb,
        "198.18.0.2".parse().unwrap(),
        &["198.18.0.1".parse().unwrap()],
        "l0",
    );

    let answers: Vec<String> = connect_many(&client, SocketAddr::from((VIP, 80)), CONNECTIONS, 6)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    drop(servers);

    assert_eq!(answers.len(), CONNECTIONS);
    for a in REALS {
        let n = answers.iter().filter(|x| **x == a.to_string()).count();
        assert!(
            n >= CONNECTIONS / 6,
            "{a} answered {n} of {CONNECTIONS}: {answers:?}"
        );
    }
    let reasons = prog.reasons().unwrap();
    // Requests go l0 -> l1 and replies l1 -> l0: every forwarded frame is a redirect.
    assert!(
        reasons.get(Reason::Redirect) >= CONNECTIONS as u64 * 6,
        "{reasons:?}"
    );
    for drop in [
        Reason::DropNoNeighbour,
        Reason::DropNoRoute,
        Reason::DropFwdDisabled,
    ] {
        assert_eq!(reasons.get(drop), 0, "{reasons:?}");
    }
}
