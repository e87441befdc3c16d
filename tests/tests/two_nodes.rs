//! Two balancer nodes, as an operator runs them: both daemons run VRRP for the VIP, program
//! the same services into their XDP programs and health-check three HTTP reals (DR, Maglev).
//! A client on the same segment sends requests without pause while the test reloads both
//! nodes (a real added, one removed), refuses an invalid reload, restarts the master with
//! `--keep-state`, and kills the master. Needs root.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use balancer::{dataplane::xdp::AttachMode, status::Status};
use balancer_tests::{
    Netns, NsThread, Switch,
    daemon::Daemon,
    lab::{Bpffs, Held, TempDir, echo_server, ethtool, http_get, http_server, load_program},
    require_root, wait_until,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const LBS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)];
const REALS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 0, 11),
    Ipv4Addr::new(198, 18, 0, 12),
    Ipv4Addr::new(198, 18, 0, 13),
];

/// keepalived.conf as an operator migrating would bring it: VRRPv3 at 0.1 s adverts, HTTP
/// checks, Maglev over source address and port (`mh-port`) so that both nodes send a flow to
/// the same real and one client's connections still spread, and an echo service for a
/// long-lived connection.
fn config(priority: u8, reals: &[Ipv4Addr]) -> String {
    let mut c = format!(
        "global_defs {{
    vrrp_version 3
}}
vrrp_instance VI_1 {{
    interface l0
    state BACKUP
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        198.18.0.100/24
    }}
}}
virtual_server 198.18.0.100 80 {{
    delay_loop 0.3
    lb_algo mh
    mh-port
    lb_kind DR
    protocol TCP
"
    );
    for r in reals {
        let _ = write!(
            c,
            "    real_server {r} 80 {{
        weight 1
        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout 0.5
            retry 0
        }}
    }}
"
        );
    }
    c.push_str(
        "}\nvirtual_server 198.18.0.100 7 {\n    lb_algo mh\n    mh-port\n    lb_kind DR\n    protocol TCP\n",
    );
    for r in reals {
        let _ = writeln!(c, "    real_server {r} 7 {{\n        weight 1\n    }}");
    }
    c.push_str("}\n");
    c
}

struct Lab {
    client: Netns,
    lbs: [Netns; 2],
    _reals: Vec<Netns>,
    _servers: Vec<NsThread>,
    _peers: Vec<balancer::dataplane::xdp::XdpProgram>,
    _switch: Switch,
}

fn lab() -> Lab {
    let sw = Switch::new("2sw");
    let join = |ns: &Netns, inner: &str, port: &str, addr: &str| {
        ns.disable_ipv6();
        sw.plug(ns, inner, port);
        ns.ip(&["addr", "add", addr, "dev", inner]);
    };
    let client = Netns::new("2client");
    join(&client, "c0", "p-c", "198.18.0.1/24");
    ethtool(&client, &["-K", "c0", "tx", "off"]);
    let mut peers = Vec::new();
    let lbs = [0, 1].map(|i| {
        let lb = Netns::new(&format!("2lb{i}"));
        join(&lb, "l0", &format!("p-l{i}"), &format!("{}/24", LBS[i]));
        lb.sysctl("net.ipv4.conf.all.forwarding", "1");
        lb.ip(&["link", "set", "lo", "up"]);
        // XDP_TX on l0 needs an XDP program on its veth peer (see bridged_netns.rs).
        let mut peer = load_program(16);
        sw.ns()
            .run(|| peer.attach(&format!("p-l{i}"), AttachMode::Driver))
            .expect("attach to the veth peer");
        peers.push(peer);
        lb
    });
    let mut reals = Vec::new();
    let mut servers = Vec::new();
    for (i, addr) in REALS.iter().enumerate() {
        let r = Netns::new(&format!("2real{i}"));
        join(&r, "e0", &format!("p-r{i}"), &format!("{addr}/24"));
        r.ip(&["addr", "add", "198.18.0.100/32", "dev", "lo"]);
        r.sysctl("net.ipv4.conf.all.arp_ignore", "1");
        r.sysctl("net.ipv4.conf.all.arp_announce", "2");
        servers.push(http_server(&r, 80, IpAddr::V4(*addr)));
        servers.push(echo_server(&r, 7, IpAddr::V4(*addr)));
        reals.push(r);
    }
    Lab {
        client,
        lbs,
        _reals: reals,
        _servers: servers,
        _peers: peers,
        _switch: sw,
    }
}

/// One node: its daemon, its configuration file and its bpf filesystem (mounted outside its
/// `ip netns exec` mount namespace, so `--keep-state` pins outlive the process).
struct Node {
    daemon: Daemon,
    dir: TempDir,
    bpffs: Bpffs,
}

impl Node {
    /// Every node runs with `--keep-state`, as `contrib/balancer.service` does.
    fn start(lab: &Lab, i: usize, config: &str) -> Self {
        let dir = TempDir::new("node");
        std::fs::write(dir.path().join("keepalived.conf"), config).unwrap();
        let bpffs = Bpffs::new();
        let daemon = Self::spawn(lab, i, &dir, &bpffs);
        Self { daemon, dir, bpffs }
    }

    fn spawn(lab: &Lab, i: usize, dir: &TempDir, bpffs: &Bpffs) -> Daemon {
        let conf = dir.path().join("keepalived.conf");
        let args = [
            "run",
            "--config",
            conf.to_str().unwrap(),
            "--interval",
            "0.2",
            "--pin-root",
            bpffs.path().to_str().unwrap(),
            "--keep-state",
        ];
        Daemon::balancer(&lab.lbs[i], &args)
    }

    fn status(&self) -> Status {
        let (ok, out) = self.daemon.client(&["status", "--json"]);
        assert!(ok, "status failed: {out}\n{}", self.daemon.log());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn state(&self) -> String {
        let (ok, out) = self.daemon.client(&["status", "--json"]);
        if !ok {
            return String::new();
        }
        serde_json::from_str::<Status>(&out)
            .ok()
            .and_then(|s| s.vrrp.first().map(|v| v.state.clone()))
            .unwrap_or_default()
    }

    fn reload(&self, config: &str) -> (bool, String) {
        std::fs::write(self.dir.path().join("keepalived.conf"), config).unwrap();
        self.daemon.client(&["reload"])
    }
}

/// Requests from the client without pause (10 ms apart), each recorded as the real that
/// answered or the error, until dropped.
struct Traffic {
    results: Arc<Mutex<Vec<Result<String, String>>>>,
    _thread: NsThread,
}

impl Traffic {
    fn start(lab: &Lab) -> Self {
        let results = Arc::new(Mutex::new(Vec::new()));
        let sink = results.clone();
        let thread = lab.client.spawn_thread(move |stop: &AtomicBool| {
            // Bounded: at most 10 minutes' worth of requests.
            for _ in 0..60_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = http_get(SocketAddr::from((VIP, 80)), Duration::from_secs(2));
                sink.lock().unwrap().push(r);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            results,
            _thread: thread,
        }
    }

    fn len(&self) -> usize {
        self.results.lock().unwrap().len()
    }

    /// The results since index `from`.
    fn since(&self, from: usize) -> Vec<Result<String, String>> {
        self.results.lock().unwrap()[from..].to_vec()
    }

    /// Waits until `n` more requests have completed.
    fn wait(&self, n: usize) {
        let target = self.len() + n;
        assert!(
            wait_until(Duration::from_secs(30), || self.len() >= target),
            "the client stalled"
        );
    }
}

fn failures(results: &[Result<String, String>]) -> Vec<&String> {
    results.iter().filter_map(|r| r.as_ref().err()).collect()
}

fn answered_by(results: &[Result<String, String>], real: Ipv4Addr) -> usize {
    let real = real.to_string();
    results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|a| *a == real))
        .count()
}

/// Connections the port-80 service got, as the node's data plane counts them.
fn service_conns(s: &Status) -> u64 {
    s.services
        .iter()
        .filter(|svc| svc.port == 80)
        .map(|svc| svc.counters.conns)
        .sum()
}

/// Connections each real of the port-80 service got, as the node's data plane counts them.
fn conns(s: &Status, real: Ipv4Addr) -> u64 {
    s.services
        .iter()
        .filter(|svc| svc.port == 80)
        .flat_map(|svc| &svc.reals)
        .filter(|r| r.addr == IpAddr::V4(real))
        .map(|r| r.counters.conns)
        .sum()
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one pair of nodes through reload, restart and failover, step by step"
)]
fn two_nodes_reload_restart_and_fail_over_under_traffic() {
    require_root!();
    let lab = lab();
    let first = config(150, &REALS[..2]);
    let mut nodes = [
        Node::start(&lab, 0, &first),
        Node::start(&lab, 1, &config(100, &REALS[..2])),
    ];
    // Loading and verifying the XDP program takes a while on a busy machine.
    assert!(
        wait_until(Duration::from_secs(30), || nodes[0].state() == "MASTER"
            && nodes[1].state() == "BACKUP"),
        "node 0 master, node 1 backup: {}\n{}",
        nodes[0].daemon.log(),
        nodes[1].daemon.log()
    );
    assert!(lab.lbs[0].has_addr("198.18.0.100") && !lab.lbs[1].has_addr("198.18.0.100"));
    assert!(
        wait_until(Duration::from_secs(2), || nodes[1].status().vrrp[0]
            .master
            .map(|(a, _)| a)
            == Some(IpAddr::V4(LBS[0]))),
        "the backup knows its master: {:?}",
        nodes[1].status()
    );

    // Traffic flows through the master, to both configured reals; what `status` says the
    // data plane counted is what the client saw, real by real.
    let traffic = Traffic::start(&lab);
    traffic.wait(5);
    let before = nodes[0].status();
    let mark = traffic.len();
    traffic.wait(40);
    let after = nodes[0].status();
    let seen = traffic.since(mark);
    assert!(failures(&seen).is_empty(), "{:?}", failures(&seen));
    for real in &REALS[..2] {
        assert!(answered_by(&seen, *real) > 0, "{real} answered none");
    }
    // Requests in flight at either reading blur the edges by at most one each.
    for real in &REALS[..2] {
        let counted = conns(&after, *real) - conns(&before, *real);
        let answered = answered_by(&seen, *real) as u64;
        assert!(
            counted.abs_diff(answered) <= 2,
            "{real}: data plane counted {counted}, client saw {answered}"
        );
    }
    assert_eq!(
        service_conns(&nodes[1].status()),
        0,
        "only the master forwards"
    );

    // A reload on both nodes adds the third real and removes the first, under traffic:
    // not one request fails, and new requests reach exactly the new set.
    let second = |p| config(p, &REALS[1..]);
    let mark = traffic.len();
    for (i, p) in [(1, 100), (0, 150)] {
        let (ok, out) = nodes[i].reload(&second(p));
        assert!(ok, "node {i}: {out}\n{}", nodes[i].daemon.log());
        assert!(out.contains("changed TCP 198.18.0.100:80"), "{out}");
        assert!(!out.contains("vrrp_instance"), "VRRP untouched: {out}");
    }
    traffic.wait(40);
    let during = traffic.since(mark);
    assert!(
        failures(&during).is_empty(),
        "failed during the reload: {:?}",
        failures(&during)
    );
    let mark = traffic.len();
    traffic.wait(30);
    let later = traffic.since(mark);
    assert_eq!(
        answered_by(&later, REALS[0]),
        0,
        "the removed real gets nothing new"
    );
    assert!(answered_by(&later, REALS[2]) > 0, "the added real is used");
    assert_eq!(nodes[0].state(), "MASTER", "no VRRP transition on reload");
    let s = nodes[0].status();
    let reals: Vec<(IpAddr, u32)> = s
        .services
        .iter()
        .find(|svc| svc.port == 80)
        .unwrap()
        .reals
        .iter()
        .map(|r| (r.addr, r.weight))
        .collect();
    assert_eq!(
        reals,
        [(IpAddr::V4(REALS[1]), 1), (IpAddr::V4(REALS[2]), 1)],
        "status shows what the data plane holds"
    );

    // An invalid reload is refused; the running configuration stays.
    let (ok, out) = nodes[0].reload(&second(150).replace("lb_algo mh", "lb_algo fastest"));
    assert!(!ok && out.contains("lb_algo"), "{out}");
    std::fs::write(nodes[0].dir.path().join("keepalived.conf"), second(150)).unwrap();
    let s = nodes[0].status();
    assert_eq!(s.generation, 2);
    assert!(s.last_reload.unwrap().error.is_some());

    // The master restarts with --keep-state: the backup takes over at its priority 0, the
    // new master process takes it back, and an established connection stays on its real
    // throughout; no request fails.
    let mut held = Held::open(&lab.client, SocketAddr::from((VIP, 7)));
    let real = held.ask("before");
    let mark = traffic.len();
    let exit = nodes[0].daemon.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit}");
    assert!(
        wait_until(Duration::from_secs(3), || nodes[1].state() == "MASTER"),
        "the backup took over: {}",
        nodes[1].daemon.log()
    );
    assert_eq!(held.ask("while the backup is master"), real);
    nodes[0].daemon = {
        let n = &nodes[0];
        Node::spawn(&lab, 0, &n.dir, &n.bpffs)
    };
    assert!(
        wait_until(Duration::from_secs(30), || nodes[0].state() == "MASTER"
            && nodes[1].state() == "BACKUP"),
        "the restarted node preempts: {}",
        nodes[0].daemon.log()
    );
    assert!(
        nodes[0]
            .daemon
            .log()
            .contains("adopted the attached XDP link"),
        "{}",
        nodes[0].daemon.log()
    );
    assert_eq!(held.ask("after the restart"), real);
    traffic.wait(20);
    let restart = traffic.since(mark);
    assert!(
        failures(&restart).is_empty(),
        "failed across the restart: {:?}",
        failures(&restart)
    );

    // The master is killed (no priority 0, nothing cleaned up): the backup takes over after
    // the master-down interval and new requests flow through it.
    let counted = service_conns(&nodes[1].status());
    nodes[0].daemon.stop_with(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(3), || nodes[1].state() == "MASTER"),
        "the backup took over: {}",
        nodes[1].daemon.log()
    );
    let mark = traffic.len();
    traffic.wait(30);
    let after_kill = traffic.since(mark);
    assert!(
        after_kill.iter().filter(|r| r.is_ok()).count() >= 25,
        "{after_kill:?}"
    );
    assert!(
        service_conns(&nodes[1].status()) > counted,
        "traffic moved to the new master"
    );
    drop(traffic);
    drop(held);
    for node in &mut nodes {
        let _ = node.daemon.stop_with(libc::SIGTERM);
    }
}
