//! The `balancer run` command end to end: a process started on an lb.toml in a balancer
//! namespace forwards real TCP connections in DR mode to the configured reals, and SIGTERM
//! detaches it cleanly. Needs root.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use balancer::dataplane::xdp::AttachMode;
use balancer_tests::{
    Netns, NsThread,
    daemon::Daemon,
    lab::{connect_many, ethtool, identity_server, load_program, warm_neighbours},
    require_root, veth_pair,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const REALS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 11), Ipv4Addr::new(198, 18, 0, 12)];

const LB_TOML: &str = r#"
[xdp]
interfaces = ["l0"]
mode = "driver"

[[virtual_server]]
ip = "198.18.0.100"
port = 80
lb_algo = "rr"
lb_kind = "DR"
protocol = "TCP"

[[virtual_server.real_server]]
ip = "198.18.0.11"
port = 80
weight = 1

[[virtual_server.real_server]]
ip = "198.18.0.12"
port = 80
weight = 1
"#;

fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    let out = ns.output("ip", &["-d", "link", "show", dev]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn balancer_run_forwards_the_configured_services_and_detaches_on_sigterm() {
    const CONNECTIONS: usize = 30;
    require_root!();
    let sw = Netns::new("rsw");
    sw.ip(&["link", "add", "br0", "type", "bridge"]);
    sw.ip(&["link", "set", "br0", "up"]);
    let join = |ns: &Netns, inner: &str, port: &str, addr: &str| {
        ns.disable_ipv6();
        veth_pair(ns, inner, &sw, port);
        sw.ip(&["link", "set", port, "master", "br0"]);
        ns.ip(&["addr", "add", addr, "dev", inner]);
    };
    let client = Netns::new("rclient");
    join(&client, "c0", "p-c", "198.18.0.1/24");
    client.ip(&["route", "add", "198.18.0.100/32", "via", "198.18.0.2"]);
    ethtool(&client, &["-K", "c0", "tx", "off"]);
    let lb = Netns::new("rlb");
    join(&lb, "l0", "p-l", "198.18.0.2/24");
    lb.sysctl("net.ipv4.conf.all.forwarding", "1");
    let mut reals = Vec::new();
    let mut servers: Vec<NsThread> = Vec::new();
    for (i, addr) in REALS.iter().enumerate() {
        let r = Netns::new(&format!("rreal{i}"));
        join(&r, "e0", &format!("p-r{i}"), &format!("{addr}/24"));
        r.ip(&["addr", "add", "198.18.0.100/32", "dev", "lo"]);
        r.sysctl("net.ipv4.conf.all.arp_ignore", "1");
        r.sysctl("net.ipv4.conf.all.arp_announce", "2");
        servers.push(identity_server(&r, 80, IpAddr::V4(*addr)));
        reals.push(r);
    }
    // XDP_TX on l0 needs an XDP program on its veth peer (see bridged_netns.rs).
    let mut peer = load_program(16);
    sw.run(|| peer.attach("p-l", AttachMode::Driver))
        .expect("attach to the veth peer");

    let dir = std::env::temp_dir().join(format!("blt-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("lb.toml");
    std::fs::write(&config, LB_TOML).unwrap();
    let mut daemon = Daemon::balancer(
        &lb,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--interval",
            "0.2",
        ],
    );
    for _ in 0..250 {
        if xdp_attached(&lb, "l0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(xdp_attached(&lb, "l0"), "not attached: {}", daemon.log());
    let targets: Vec<IpAddr> = REALS.iter().map(|&a| IpAddr::V4(a)).collect();
    warm_neighbours(&lb, "198.18.0.2".parse().unwrap(), &targets, "l0");

    let answers = connect_many(&client, SocketAddr::from((VIP, 80)), CONNECTIONS, 3);
    drop(servers);
    assert_eq!(answers.len(), CONNECTIONS);
    for a in REALS {
        let n = answers.iter().filter(|(_, x)| *x == a.to_string()).count();
        assert!(n > 0, "{a} answered none: {answers:?}\n{}", daemon.log());
    }

    let status = daemon.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{status}: {}", daemon.log());
    assert!(!xdp_attached(&lb, "l0"), "SIGTERM detaches");
    assert!(
        daemon.log().contains("service programmed"),
        "{}",
        daemon.log()
    );
}
