//! Layer 3: real TCP connections through the XDP program in NAT mode, IPv4 and IPv6. The
//! balancer sits between a client network and a real network (forwarding on); the reals'
//! replies come back through it and leave with the VIP as their source. Needs root.

use std::net::{IpAddr, SocketAddr};

use balancer::{
    dataplane::{Dataplane, xdp::AttachMode},
    model::{Method, Protocol, RealServer, Scheduler, VirtualService},
};
use balancer_common::Reason;
use balancer_tests::{
    Netns, NsThread, Switch,
    lab::{connect_many, ethtool, identity_server, load_program, warm_neighbours},
    require_root, veth_pair,
};

/// Addresses of one family: the client network and the real network behind the balancer.
struct Family {
    prefix: u8,
    client: &'static str,
    lb_client_side: &'static str,
    lb_real_side: &'static str,
    vip: &'static str,
    reals: [&'static str; 3],
}

const V4: Family = Family {
    prefix: 24,
    client: "198.18.0.1",
    lb_client_side: "198.18.0.2",
    lb_real_side: "198.18.2.1",
    vip: "198.18.0.100",
    reals: ["198.18.2.11", "198.18.2.12", "198.18.2.13"],
};

const V6: Family = Family {
    prefix: 64,
    client: "fd00:18::1",
    lb_client_side: "fd00:18::2",
    lb_real_side: "fd00:18:2::1",
    vip: "fd00:18::100",
    reals: ["fd00:18:2::11", "fd00:18:2::12", "fd00:18:2::13"],
};

/// Port 80 on the VIP, to port 8080 on three reals, round robin.
fn nat_service(f: &Family) -> VirtualService {
    VirtualService {
        vips: vec![f.vip.parse().unwrap()],
        port: 80,
        protocol: Protocol::Tcp,
        scheduler: Scheduler::Rr,
        ops: false,
        hash_port: false,
        persistence: None,
        reals: f
            .reals
            .iter()
            .map(|a| RealServer {
                addr: a.parse().unwrap(),
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

fn nat_connections(f: &Family) {
    const CONNECTIONS: usize = 60;
    let v6 = f.vip.contains(':');
    let addr = |ns: &Netns, a: &str, dev: &str| {
        let with_prefix = format!("{a}/{}", f.prefix);
        let mut args = vec!["addr", "add", with_prefix.as_str(), "dev", dev];
        if v6 {
            args.push("nodad");
        }
        ns.ip(&args);
    };
    let client = Netns::new("nclient");
    let lb = Netns::new("nlb");
    let sw = Switch::new("nsw");
    veth_pair(&client, "c0", &lb, "l0");
    addr(&client, f.client, "c0");
    let vip_host = if v6 {
        format!("{}/128", f.vip)
    } else {
        format!("{}/32", f.vip)
    };
    client.ip(&["route", "add", &vip_host, "via", f.lb_client_side]);
    addr(&lb, f.lb_client_side, "l0");
    lb.sysctl("net.ipv4.conf.all.forwarding", "1");
    lb.sysctl("net.ipv6.conf.all.forwarding", "1");
    sw.plug(&lb, "l1", "p-l");
    addr(&lb, f.lb_real_side, "l1");
    // The program rewrites and forwards frames as they are: senders must fill in complete
    // checksums (veth would otherwise leave them to an offload that never happens).
    ethtool(&client, &["-K", "c0", "tx", "off"]);
    let mut reals = Vec::new();
    let mut servers: Vec<NsThread> = Vec::new();
    for (i, a) in f.reals.iter().enumerate() {
        let r = Netns::new(&format!("nreal{i}"));
        let port = format!("p-r{i}");
        sw.plug(&r, "e0", &port);
        addr(&r, a, "e0");
        r.ip(&["route", "add", "default", "via", f.lb_real_side]);
        ethtool(&r, &["-K", "e0", "tx", "off"]);
        servers.push(identity_server(&r, 8080, a.parse().unwrap()));
        reals.push(r);
    }

    let mut prog = load_program(4096);
    prog.apply("web", &nat_service(f)).unwrap();
    // Both sides: requests arrive on l0, replies on l1.
    lb.run(|| prog.attach("l0", AttachMode::Driver))
        .expect("attach l0");
    lb.run(|| prog.attach("l1", AttachMode::Driver))
        .expect("attach l1");
    // Redirected frames land on the veth peers, which take them only with an XDP program of
    // their own: one with no services passes everything on.
    let mut peers = load_program(16);
    sw.ns()
        .run(|| peers.attach("p-l", AttachMode::Driver))
        .expect("attach p-l");
    client
        .run(|| peers.attach("c0", AttachMode::Driver))
        .expect("attach c0");
    let real_addrs: Vec<IpAddr> = f.reals.iter().map(|a| a.parse().unwrap()).collect();
    warm_neighbours(&lb, f.lb_real_side.parse().unwrap(), &real_addrs, "l1");
    warm_neighbours(
        &lb,
        f.lb_client_side.parse().unwrap(),
        &[f.client.parse().unwrap()],
        "l0",
    );

    let vip: IpAddr = f.vip.parse().unwrap();
    let answers = connect_many(&client, SocketAddr::from((vip, 80)), CONNECTIONS, 6);
    drop(servers);

    assert_eq!(answers.len(), CONNECTIONS);
    for a in f.reals {
        let n = answers.iter().filter(|(_, x)| x.as_str() == a).count();
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

#[test]
fn nat_ipv4() {
    require_root!();
    nat_connections(&V4);
}

#[test]
fn nat_ipv6() {
    require_root!();
    nat_connections(&V6);
}
