//! Layer 3: real TCP connections through the XDP program in DR and TUN modes, IPv4 and IPv6.
//! A client, a balancer and three reals share one bridge (in its own namespace); the reals hold
//! the VIP on loopback and answer the client directly. TUN reals take the tunnel (IPIP,
//! IP6IP6) off with a small XDP program, since this kernel has no ipip module. Each connection
//! must land on the real Maglev's table names for its source port. Needs root.

use std::net::{IpAddr, SocketAddr};

use balancer::{
    dataplane::{Dataplane, xdp::AttachMode},
    model::{Method, Protocol, RealServer, Scheduler, VirtualService},
};
use balancer_common::Reason;
use balancer_tests::{
    Netns, NsThread, Switch,
    lab::{attach_decap, connect_many, ethtool, identity_server, load_program, warm_neighbours},
    require_root,
};

/// Client, balancer and reals on one bridge, in one address family.
struct Family {
    prefix: u8,
    client: &'static str,
    lb: &'static str,
    vip: &'static str,
    reals: [&'static str; 3],
}

const V4: Family = Family {
    prefix: 24,
    client: "198.18.0.1",
    lb: "198.18.0.2",
    vip: "198.18.0.100",
    reals: ["198.18.0.11", "198.18.0.12", "198.18.0.13"],
};

const V6: Family = Family {
    prefix: 64,
    client: "fd00:18::1",
    lb: "fd00:18::2",
    vip: "fd00:18::100",
    reals: ["fd00:18::11", "fd00:18::12", "fd00:18::13"],
};

fn connections_reach_the_predicted_real(f: &Family, method: Method) {
    const CONNECTIONS: usize = 60;
    let v6 = f.vip.contains(':');
    let with_prefix = |a: &str| format!("{a}/{}", f.prefix);
    let sw = Switch::new("tsw");
    let join = |ns: &Netns, inner: &str, port: &str, addr: &str| {
        sw.plug(ns, inner, port);
        let mut args = vec!["addr", "add", addr, "dev", inner];
        if v6 {
            args.push("nodad");
        }
        ns.ip(&args);
    };
    let client = Netns::new("tclient");
    join(&client, "c0", "p-c", &with_prefix(f.client));
    let vip_host = if v6 {
        format!("{}/128", f.vip)
    } else {
        format!("{}/32", f.vip)
    };
    client.ip(&["route", "add", &vip_host, "via", f.lb]);
    ethtool(&client, &["-K", "c0", "tx", "off"]);
    let lb = Netns::new("tlb");
    join(&lb, "l0", "p-l", &with_prefix(f.lb));
    lb.sysctl("net.ipv4.conf.all.forwarding", "1");
    lb.sysctl("net.ipv6.conf.all.forwarding", "1");
    let mut reals = Vec::new();
    let mut servers: Vec<NsThread> = Vec::new();
    let mut decaps = Vec::new();
    for (i, addr) in f.reals.iter().enumerate() {
        let r = Netns::new(&format!("treal{i}"));
        join(&r, "e0", &format!("p-r{i}"), &with_prefix(addr));
        r.ip(&["addr", "add", &vip_host, "dev", "lo"]);
        r.sysctl("net.ipv4.conf.all.arp_ignore", "1");
        r.sysctl("net.ipv4.conf.all.arp_announce", "2");
        if method == Method::Tun {
            decaps.push(attach_decap(&r, "e0"));
        }
        servers.push(identity_server(&r, 80, addr.parse().unwrap()));
        reals.push(r);
    }

    let mut prog = load_program(4096);
    prog.apply(
        "web",
        &VirtualService {
            vips: vec![f.vip.parse().unwrap()],
            port: 80,
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Mh,
            ops: false,
            hash_port: true,
            persistence: None,
            reals: f
                .reals
                .iter()
                .map(|a| RealServer {
                    addr: a.parse().unwrap(),
                    port: 80,
                    weight: 1,
                    method,
                    tunnel_source: (method == Method::Tun).then(|| f.lb.parse().unwrap()),
                    egress: None,
                })
                .collect(),
            sorry_server: None,
        },
    )
    .unwrap();
    lb.run(|| prog.attach("l0", AttachMode::Driver))
        .expect("attach");
    let mut peer = load_program(16);
    sw.ns()
        .run(|| peer.attach("p-l", AttachMode::Driver))
        .expect("attach the veth peer");
    let real_addrs: Vec<IpAddr> = f.reals.iter().map(|a| a.parse().unwrap()).collect();
    warm_neighbours(&lb, f.lb.parse().unwrap(), &real_addrs, "l0");

    let vip: IpAddr = f.vip.parse().unwrap();
    let answers = connect_many(&client, SocketAddr::from((vip, 80)), CONNECTIONS, 6);
    drop(servers);
    assert_eq!(answers.len(), CONNECTIONS);
    let client_addr: IpAddr = f.client.parse().unwrap();
    for (port, answer) in &answers {
        // Maglev over address and port: each connection is where the table says.
        let want = prog
            .predict("web", client_addr, *port)
            .expect("a prediction");
        assert_eq!(answer, &want.to_string(), "client port {port}");
    }
    for a in f.reals {
        let n = answers.iter().filter(|(_, x)| x.as_str() == a).count();
        assert!(n > 0, "{a} answered none of {CONNECTIONS}: {answers:?}");
    }
    let reasons = prog.reasons().unwrap();
    assert!(
        reasons.get(Reason::Tx) >= CONNECTIONS as u64 * 3,
        "{reasons:?}"
    );
    assert_eq!(reasons.get(Reason::DropTooBig), 0, "{reasons:?}");
}

#[test]
fn dr_ipv4() {
    require_root!();
    connections_reach_the_predicted_real(&V4, Method::Dr);
}

#[test]
fn dr_ipv6() {
    require_root!();
    connections_reach_the_predicted_real(&V6, Method::Dr);
}

#[test]
fn tun_ipv4_ipip() {
    require_root!();
    connections_reach_the_predicted_real(&V4, Method::Tun);
}

#[test]
fn tun_ipv6_ip6ip6() {
    require_root!();
    connections_reach_the_predicted_real(&V6, Method::Tun);
}
