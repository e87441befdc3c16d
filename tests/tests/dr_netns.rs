//! Layer 3: real TCP connections through the XDP program in DR mode. A client, a balancer and
//! three reals share one bridge (in its own namespace); the reals hold the VIP on loopback and
//! answer the client directly. Needs root.

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
const LB: &str = "198.18.0.2";
const REALS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 0, 11),
    Ipv4Addr::new(198, 18, 0, 12),
    Ipv4Addr::new(198, 18, 0, 13),
];

struct Lab {
    client: Netns,
    lb: Netns,
    reals: Vec<Netns>,
    switch: Netns,
}

fn lab() -> Lab {
    let sw = Netns::new("sw");
    sw.ip(&["link", "add", "br0", "type", "bridge"]);
    sw.ip(&["link", "set", "br0", "up"]);
    let join = |ns: &Netns, inner: &str, port: &str, addr: &str| {
        ns.disable_ipv6();
        veth_pair(ns, inner, &sw, port);
        sw.ip(&["link", "set", port, "master", "br0"]);
        ns.ip(&["addr", "add", addr, "dev", inner]);
    };
    let client = Netns::new("client");
    join(&client, "c0", "p-c", "198.18.0.1/24");
    client.ip(&["route", "add", "198.18.0.100/32", "via", LB]);
    // The XDP program forwards frames as they are: the client must send complete checksums
    // (veth would otherwise leave them to an offload that never happens after XDP_TX).
    ethtool(&client, &["-K", "c0", "tx", "off"]);
    let lb = Netns::new("lb");
    join(&lb, "l0", "p-l", "198.18.0.2/24");
    // The kernel's FIB answers XDP lookups only where forwarding is on.
    lb.sysctl("net.ipv4.conf.all.forwarding", "1");
    let mut reals = Vec::new();
    for (i, addr) in REALS.iter().enumerate() {
        let r = Netns::new(&format!("real{i}"));
        join(&r, "e0", &format!("p-r{i}"), &format!("{addr}/24"));
        r.ip(&["addr", "add", "198.18.0.100/32", "dev", "lo"]);
        // The classic DR real: never answer ARP for the VIP it holds on loopback.
        r.sysctl("net.ipv4.conf.all.arp_ignore", "1");
        r.sysctl("net.ipv4.conf.all.arp_announce", "2");
        reals.push(r);
    }
    Lab {
        client,
        lb,
        reals,
        switch: sw,
    }
}

#[test]
fn dr_tcp_connections_reach_every_real_and_answers_come_back() {
    const CONNECTIONS: usize = 60;
    require_root!();
    let lab = lab();
    let servers: Vec<NsThread> = lab
        .reals
        .iter()
        .zip(REALS)
        .map(|(ns, a)| identity_server(ns, 80, IpAddr::V4(a)))
        .collect();

    let mut prog = load_program(4096);
    let reals = REALS
        .iter()
        .map(|&a| RealServer {
            addr: IpAddr::V4(a),
            port: 80,
            weight: 1,
            method: Method::Dr,
            tunnel_source: None,
            // Left to the kernel's FIB and neighbour table, as the daemon does by default.
            egress: None,
        })
        .collect();
    prog.apply(
        "web",
        &VirtualService {
            vips: vec![IpAddr::V4(VIP)],
            port: 80,
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Rr,
            ops: false,
            hash_port: false,
            persistence: None,
            reals,
            sorry_server: None,
        },
    )
    .unwrap();
    lab.lb
        .run(|| prog.attach("l0", AttachMode::Driver))
        .expect("attach");
    // XDP_TX on l0 hands frames straight to its veth peer, which takes them only with an XDP
    // program of its own (GRO alone did not do it on this kernel): one with no services, which
    // passes everything. A physical NIC needs nothing of the kind.
    let mut peer = load_program(16);
    lab.switch
        .run(|| peer.attach("p-l", AttachMode::Driver))
        .expect("attach to the veth peer");
    let targets: Vec<IpAddr> = REALS.iter().map(|&a| IpAddr::V4(a)).collect();
    warm_neighbours(&lab.lb, "198.18.0.2".parse().unwrap(), &targets, "l0");
    let answers: Vec<String> =
        connect_many(&lab.client, SocketAddr::from((VIP, 80)), CONNECTIONS, 6)
            .into_iter()
            .map(|(_, a)| a)
            .collect();
    drop(servers);

    assert_eq!(answers.len(), CONNECTIONS);
    for a in REALS {
        let n = answers.iter().filter(|x| **x == a.to_string()).count();
        // rr over three reals, with a cursor per CPU: every real takes a fair share.
        assert!(
            n >= CONNECTIONS / 6,
            "{a} answered {n} of {CONNECTIONS}: {answers:?}"
        );
    }
    let reasons = prog.reasons().unwrap();
    assert!(
        reasons.get(Reason::Tx) >= CONNECTIONS as u64 * 3,
        "{reasons:?}"
    );
    assert_eq!(reasons.get(Reason::DropNoNeighbour), 0, "{reasons:?}");
    assert_eq!(reasons.get(Reason::DropNoRoute), 0, "{reasons:?}");
    assert_eq!(reasons.get(Reason::DropFwdDisabled), 0, "{reasons:?}");
}
