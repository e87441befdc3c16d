//! Layer 3: real TCP connections through the XDP program in DR mode. A client, a balancer and
//! three reals share one bridge (in its own namespace); the reals hold the VIP on loopback and
//! answer the client directly. Needs root.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::atomic::AtomicBool,
    time::Duration,
};

use balancer::{
    dataplane::{
        Dataplane,
        xdp::{AttachMode, LoadOptions, XdpProgram},
    },
    model::{Method, Protocol, RealServer, Scheduler, VirtualService},
};
use balancer_common::{Reason, maps::Globals};
use balancer_tests::{Netns, NsThread, require_root, veth_pair};

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

fn ethtool(ns: &Netns, args: &[&str]) {
    let out = ns.output("ethtool", args);
    assert!(
        out.status.success(),
        "ethtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

fn load(flows: u32) -> XdpProgram {
    XdpProgram::load_with(&LoadOptions {
        flows,
        persist: 1024,
        timeouts: Globals::default(),
    })
    .expect("load the XDP program")
}

/// A TCP server on port 80 that answers every connection with its own address.
fn serve(ns: &Netns, me: Ipv4Addr) -> NsThread {
    ns.spawn_thread(move |stop: &AtomicBool| {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80)).expect("listen");
        listener.set_nonblocking(true).unwrap();
        while !NsThread::stopping(stop) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(me.to_string().as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    })
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
        .map(|(ns, a)| serve(ns, a))
        .collect();

    let mut prog = load(4096);
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
    let mut peer = load(16);
    lab.switch
        .run(|| peer.attach("p-l", AttachMode::Driver))
        .expect("attach to the veth peer");
    // Resolve the reals' MACs on the balancer, as the daemon keeps them resolved.
    lab.lb.run(|| {
        let s = UdpSocket::bind("198.18.0.2:0").unwrap();
        for a in REALS {
            s.send_to(b"hello", (a, 9)).unwrap();
        }
    });
    for _ in 0..200 {
        let neigh = lab.lb.output("ip", &["neigh", "show", "dev", "l0"]);
        let text = String::from_utf8_lossy(&neigh.stdout).into_owned();
        if REALS.iter().all(|a| text.contains(&format!("{a} lladdr"))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let answers: Vec<String> = lab.client.run(|| {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| {
                        (0..CONNECTIONS / 6)
                            .map(|_| {
                                let to = SocketAddr::from((VIP, 80));
                                let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                                    .expect("connect through the balancer");
                                c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                                let mut answer = String::new();
                                c.read_to_string(&mut answer).expect("answer");
                                answer
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        })
    });
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
