//! The `balancer run` command end to end: a process started on an lb.toml in a balancer
//! namespace forwards real TCP connections in DR mode to the configured reals, and SIGTERM
//! detaches it cleanly. Needs root.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use balancer::{dataplane::xdp::AttachMode, status::Status};
use balancer_tests::{
    Netns, NsThread, Switch,
    daemon::Daemon,
    lab::{
        Bpffs, Held, TempDir, connect_many, echo_server, ethtool, identity_server, load_program,
        warm_neighbours,
    },
    require_root, wait_until,
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

[[virtual_server.real_server.TCP_CHECK]]
connect_timeout = 0.5
retry = 0
delay_loop = 0.2
warmup = 0.0

[[virtual_server.real_server]]
ip = "198.18.0.12"
port = 80
weight = 1

[[virtual_server.real_server.TCP_CHECK]]
connect_timeout = 0.5
retry = 0
delay_loop = 0.2
warmup = 0.0
"#;

/// The same services as keepalived.conf, with a VRRP instance owning the VIP on the
/// balancer's interface (VRRPv3 at 0.1 s adverts, so it becomes master within half a second),
/// a `track_script` that succeeds and a `notify` script (paths filled in by the test).
const KEEPALIVED_CONF: &str = r#"
global_defs {
    vrrp_version 3
    vrrp_rt_priority 10
    startup_script "NOTIFY_SCRIPT startup"
    shutdown_script "NOTIFY_SCRIPT shutdown"
    shutdown_script_timeout 5
}
static_ipaddress {
    198.18.6.2/24 dev l0 label l0:static
}
static_routes {
    198.18.9.0/24 via 198.18.0.1
}
static_rules {
    from 198.18.6.0/24 table 106 preference 1006
}
vrrp_script always_ok {
    script /usr/bin/true
    interval 0.2
}
vrrp_instance VI_1 {
    interface l0
    virtual_router_id 51
    priority 150
    advert_int 0.1
    virtual_ipaddress {
        198.18.0.100/24
    }
    virtual_routes {
        198.18.7.0/24 via 198.18.0.1
        198.18.8.0/24 via 198.18.0.1 or 198.18.0.11
    }
    track_script {
        always_ok
    }
    notify NOTIFY_SCRIPT
}
virtual_server 198.18.0.100 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 198.18.0.11 80 {
        weight 1
    }
    real_server 198.18.0.12 80 {
        weight 1
    }
}
"#;

/// A client, a balancer and two DR reals on one bridge, the reals serving their address.
struct Lab {
    client: Netns,
    lb: Netns,
    reals: Vec<Netns>,
    servers: Vec<NsThread>,
    _peer: balancer::dataplane::xdp::XdpProgram,
    _switch: Switch,
}

fn lab() -> Lab {
    let sw = Switch::new("rsw");
    let join = |ns: &Netns, inner: &str, port: &str, addr: &str| {
        ns.disable_ipv6();
        sw.plug(ns, inner, port);
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
    sw.ns()
        .run(|| peer.attach("p-l", AttachMode::Driver))
        .expect("attach to the veth peer");
    Lab {
        client,
        lb,
        reals,
        servers,
        _peer: peer,
        _switch: sw,
    }
}

/// Starts `balancer run` on `config` (written to a temporary file named `file`) in the
/// balancer namespace and waits until the XDP program is attached.
fn start(lab: &Lab, file: &str, config: &str) -> (Daemon, TempDir) {
    start_with(lab, file, config, &[])
}

fn start_with(lab: &Lab, file: &str, config: &str, extra: &[&str]) -> (Daemon, TempDir) {
    let dir = TempDir::new("run");
    let path = dir.path().join(file);
    std::fs::write(&path, config).unwrap();
    let mut args = vec![
        "run",
        "--config",
        path.to_str().unwrap(),
        "--interval",
        "0.2",
    ];
    args.extend(extra);
    let daemon = Daemon::balancer(&lab.lb, &args);
    assert!(
        wait_until(Duration::from_secs(5), || xdp_attached(&lab.lb, "l0")),
        "not attached: {}",
        daemon.log()
    );
    (daemon, dir)
}

/// Connections from the client reach both reals.
fn traffic_reaches_both_reals(lab: &Lab, daemon: &Daemon) {
    const CONNECTIONS: usize = 30;
    let targets: Vec<IpAddr> = REALS.iter().map(|&a| IpAddr::V4(a)).collect();
    warm_neighbours(&lab.lb, "198.18.0.2".parse().unwrap(), &targets, "l0");
    let answers = connect_many(&lab.client, SocketAddr::from((VIP, 80)), CONNECTIONS, 3);
    assert_eq!(answers.len(), CONNECTIONS);
    for a in REALS {
        let n = answers.iter().filter(|(_, x)| *x == a.to_string()).count();
        assert!(n > 0, "{a} answered none: {answers:?}\n{}", daemon.log());
    }
}

fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    let out = ns.output("ip", &["-d", "link", "show", dev]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn balancer_run_forwards_the_configured_services_and_detaches_on_sigterm() {
    require_root!();
    let mut lab = lab();
    // Checker notify scripts, run by the daemon: notify_down of the first real, and with
    // omega the second real's notify_down and quorum_down at shutdown.
    let scripts = TempDir::new("cknotify");
    let log = scripts.file("notify.log");
    let script = scripts.script("notify.sh", &format!("echo \"$*\" >> {}", log.display()));
    let config = LB_TOML
        .replacen(
            "protocol = \"TCP\"\n",
            &format!("protocol = \"TCP\"\nomega = true\nquorum_down = \"{script} quorum_down\"\n"),
            1,
        )
        .replace("port = 80\nweight = 1\n", "port = 80\nweight = 1\nNOTIFY\n")
        .replacen("NOTIFY", &format!("notify_down = \"{script} down 11\""), 1)
        .replacen("NOTIFY", &format!("notify_down = \"{script} down 12\""), 1);
    let (mut daemon, dir) = start(&lab, "lb.toml", &config);
    traffic_reaches_both_reals(&lab, &daemon);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();

    // The first real stops serving: its TCP_CHECK fails, its weight goes to 0, and new
    // connections all go to the other one.
    drop(lab.servers.remove(0));
    let only_second = || {
        connect_many(&lab.client, SocketAddr::from((VIP, 80)), 6, 2)
            .iter()
            .all(|(_, a)| *a == REALS[1].to_string())
    };
    let mut drained = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        // Connections to the stopped real would be refused: only try once it is drained.
        let drained_in_log = daemon
            .log()
            .lines()
            .any(|l| l.contains("real=198.18.0.11") && l.contains("weight=0"));
        if drained_in_log {
            drained = only_second();
            break;
        }
    }
    assert!(drained, "the failed real was not drained: {}", daemon.log());
    assert!(
        wait_until(Duration::from_secs(5), || logged() == "down 11\n"),
        "notify_down of the failed real: {:?}",
        logged()
    );
    let status = daemon.stop();
    assert_eq!(
        logged(),
        "down 11\ndown 12\nquorum_down\n",
        "omega: the live real's notify_down and quorum_down at shutdown"
    );
    drop(dir);
    assert!(status.success(), "{status}: {}", daemon.log());
    assert!(!xdp_attached(&lab.lb, "l0"), "SIGTERM detaches");
    assert!(
        daemon.log().contains("service programmed"),
        "{}",
        daemon.log()
    );
    drop(lab.servers);
}

#[test]
fn balancer_run_on_keepalived_conf_owns_the_vip_and_releases_it_on_sigterm() {
    require_root!();
    let lab = lab();
    let scripts = TempDir::new("notify");
    let trace = scripts.file("trace");
    let script = scripts.script("notify.sh", &format!("echo \"$@\" >> {}", trace.display()));
    let conf = KEEPALIVED_CONF.replace("NOTIFY_SCRIPT", &script);
    let (mut daemon, dir) = start(&lab, "keepalived.conf", &conf);
    assert!(
        wait_until(Duration::from_secs(3), || lab.lb.has_addr("198.18.0.100")),
        "the VRRP instance became master: {}",
        daemon.log()
    );
    traffic_reaches_both_reals(&lab, &daemon);
    let route = || {
        String::from_utf8_lossy(
            &lab.lb
                .output("ip", &["route", "show", "198.18.7.0/24"])
                .stdout,
        )
        .into_owned()
    };
    assert!(
        route().contains("via 198.18.0.1 dev l0"),
        "virtual_routes: the master holds the route: {:?}",
        route()
    );
    assert_eq!(
        thread_policy(daemon.pid(), "vrrp"),
        Some(libc::SCHED_RR),
        "vrrp_rt_priority: the VRRP thread runs under SCHED_RR"
    );
    // The static entries, held from the start.
    let statics = || statics_held(&lab.lb);
    assert_eq!(statics(), (true, true, true, false), "{}", daemon.log());

    // A reload that adds a notify FIFO rewires the instance: it restarts and its lines reach
    // the FIFO's reader script (keepalived's line format).
    let fifo_trace = scripts.file("fifo-trace");
    let reader = scripts.script(
        "fifo-reader.sh",
        &format!("exec cat \"$1\" >> {}", fifo_trace.display()),
    );
    // ... and the static route replaced by another.
    let with_fifo = conf
        .replace(
            "global_defs {\n",
            &format!(
                "global_defs {{\n    notify_fifo {}\n    notify_fifo_script {reader}\n",
                scripts.file("fifo").display()
            ),
        )
        .replace("198.18.9.0/24 via", "198.18.10.0/24 via");
    assert_ne!(with_fifo, conf);
    std::fs::write(dir.path().join("keepalived.conf"), &with_fifo).unwrap();
    let (ok, out) = daemon.client(&["reload"]);
    assert!(ok, "{out}\n{}", daemon.log());
    assert!(out.contains("every vrrp_instance restarted"), "{out}");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(
            &fifo_trace
        )
        .unwrap_or_default()
        .contains("INSTANCE \"VI_1\" MASTER 150")),
        "{:?}\n{}",
        std::fs::read_to_string(&fifo_trace),
        daemon.log()
    );
    assert!(
        wait_until(Duration::from_secs(3), || lab.lb.has_addr("198.18.0.100")),
        "master again after the restart"
    );
    assert!(
        out.contains("static addresses, routes or rules changed"),
        "{out}"
    );
    assert_eq!(statics(), (true, false, true, true), "{}", daemon.log());

    let status = daemon.stop();
    drop(dir);
    assert!(status.success(), "{status}: {}", daemon.log());
    assert!(!lab.lb.has_addr("198.18.0.100"), "SIGTERM releases the VIP");
    assert!(
        route().trim().is_empty(),
        "and the virtual route: {:?}",
        route()
    );
    assert!(!xdp_attached(&lab.lb, "l0"), "and detaches");
    assert_eq!(
        statics(),
        (false, false, false, false),
        "and the static entries"
    );
    let calls = std::fs::read_to_string(&trace).unwrap_or_default();
    // keepalived's convention: INSTANCE NAME STATE PRIORITY.
    assert!(
        calls.lines().any(|l| l == "INSTANCE VI_1 MASTER 150"),
        "{calls}"
    );
    assert!(
        calls.lines().any(|l| l == "INSTANCE VI_1 STOP 150"),
        "{calls}"
    );
    // startup_script before anything, shutdown_script after everything.
    assert_eq!(calls.lines().next(), Some("startup"), "{calls}");
    assert_eq!(calls.lines().last(), Some("shutdown"), "{calls}");
    drop(lab.servers);
}

/// Whether `ns` holds the test's static address (with its label), its first static
/// route, its static rule, and the route a reload puts in place of the first.
fn statics_held(ns: &Netns) -> (bool, bool, bool, bool) {
    let shown = |args: &[&str]| String::from_utf8_lossy(&ns.output("ip", args).stdout).into_owned();
    (
        shown(&["-o", "addr", "show", "dev", "l0"])
            .lines()
            .any(|l| l.contains("inet 198.18.6.2/24") && l.contains("l0:static")),
        shown(&["route", "show", "198.18.9.0/24"]).contains("via 198.18.0.1"),
        shown(&["rule", "show"]).contains("1006:\tfrom 198.18.6.0/24 lookup 106"),
        shown(&["route", "show", "198.18.10.0/24"]).contains("via 198.18.0.1"),
    )
}

/// The scheduling policy (`/proc/PID/task/TID/stat` field 41) of the process's thread
/// called `name`.
fn thread_policy(pid: u32, name: &str) -> Option<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        let (head, rest) = stat.rsplit_once(") ")?;
        if head.split_once(" (").map(|(_, comm)| comm) != Some(name) {
            continue;
        }
        // Fields from the third (state) on: the policy is the 41st field.
        return rest.split_whitespace().nth(41 - 3)?.parse().ok();
    }
    None
}

/// `balancer status --json`, parsed.
fn status(daemon: &Daemon) -> Status {
    let (ok, out) = daemon.client(&["status", "--json"]);
    assert!(ok, "status failed: {out}\n{}", daemon.log());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn weights(s: &Status) -> Vec<(String, u32)> {
    s.services
        .iter()
        .flat_map(|svc| svc.reals.iter().map(|r| (r.addr.to_string(), r.weight)))
        .collect()
}

/// What `balancer status` says matches what the data plane did, a reload applies only the
/// difference (a failed real stays drained, the scheduler changes), an invalid reload keeps
/// the old configuration, SIGHUP reloads, SIGUSR2 dumps, and metrics are served.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one daemon's life, step by step: each step builds on the one before"
)]
fn status_reload_dumps_and_metrics_of_a_running_daemon() {
    require_root!();
    let mut lab = lab();
    let metrics: SocketAddr = "127.0.0.1:9108".parse().unwrap();
    lab.lb.ip(&["link", "set", "lo", "up"]);
    // Metrics from the configuration's [metrics] table, served inside the namespace.
    let with_metrics = format!("{LB_TOML}\n[metrics]\nenabled = true\nlisten = \"{metrics}\"\n");
    let (mut daemon, dir) = start_with(&lab, "lb.toml", &with_metrics, &[]);
    let config = dir.path().join("lb.toml");
    traffic_reaches_both_reals(&lab, &daemon);
    // With the neighbours learnt, both reals are sent without a FIB lookup.
    assert!(
        wait_until(Duration::from_secs(5), || daemon
            .log()
            .lines()
            .any(|l| l.contains("resolved=2 reals=2"))),
        "{}",
        daemon.log()
    );

    // The list view, as ipvsadm -Ln lays it out, with every real's weight and connections.
    let (ok, text) = daemon.client(&["status"]);
    assert!(ok, "{text}");
    assert!(text.contains("TCP  198.18.0.100:80 rr\n"), "{text}");
    for real in REALS {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("  -> {real}:80 ")))
            .unwrap_or_else(|| panic!("{real} not listed: {text}"));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[2..4], ["Route", "1"], "{line}");
    }
    let s = status(&daemon);
    assert_eq!(s.generation, 1);
    let svc = &s.services[0];
    let conns: u64 = svc.reals.iter().map(|r| r.counters.conns).sum();
    assert_eq!(svc.counters.conns, conns);
    assert!(conns >= 30, "{svc:?}");
    assert!(
        s.checkers.iter().all(|c| c.up) && s.checkers.len() == 2,
        "{s:?}"
    );
    let (ok, text) = daemon.client(&["status", "--stats"]);
    assert!(ok && text.contains("Conns   InPkts"), "{text}");

    // The first real stops: its checker fails and status says so.
    drop(lab.servers.remove(0));
    assert!(
        wait_until(Duration::from_secs(5), || weights(&status(&daemon))
            == [("198.18.0.11".into(), 0), ("198.18.0.12".into(), 1)]),
        "{:?}\n{}",
        status(&daemon),
        daemon.log()
    );
    let s = status(&daemon);
    let down = s
        .checkers
        .iter()
        .find(|c| !c.up)
        .expect("a checker is down");
    assert_eq!(down.real.to_string(), "198.18.0.11");
    assert!(down.last.contains("TCP_CHECK"), "{down:?}");

    // A reload that changes the scheduler: the drained real stays drained (its checker state
    // carries over), and new connections still all go to the live one.
    std::fs::write(
        &config,
        LB_TOML.replace("lb_algo = \"rr\"", "lb_algo = \"wrr\""),
    )
    .unwrap();
    let (ok, out) = daemon.client(&["reload"]);
    assert!(ok, "{out}\n{}", daemon.log());
    assert!(out.contains("changed TCP 198.18.0.100:80"), "{out}");
    let s = status(&daemon);
    assert_eq!(s.generation, 2);
    assert_eq!(s.services[0].scheduler, balancer::model::Scheduler::Wrr);
    assert_eq!(
        weights(&s),
        [("198.18.0.11".into(), 0), ("198.18.0.12".into(), 1)]
    );
    let answers = connect_many(&lab.client, SocketAddr::from((VIP, 80)), 6, 2);
    assert!(
        answers.iter().all(|(_, a)| *a == REALS[1].to_string()),
        "{answers:?}"
    );

    // An unchanged reload changes nothing.
    let (ok, out) = daemon.client(&["reload"]);
    assert!(ok && out.contains("nothing changed"), "{out}");

    // An invalid configuration is refused with its line; the old one keeps running.
    std::fs::write(
        &config,
        LB_TOML.replace("lb_algo = \"rr\"", "lb_algo = \"fastest\""),
    )
    .unwrap();
    let (ok, out) = daemon.client(&["reload"]);
    assert!(!ok, "{out}");
    assert!(out.contains("lb_algo") && out.contains("lb.toml:"), "{out}");
    let s = status(&daemon);
    assert_eq!(s.generation, 3);
    assert!(
        s.last_reload
            .as_ref()
            .and_then(|r| r.error.as_ref())
            .is_some()
    );
    assert_eq!(s.services[0].scheduler, balancer::model::Scheduler::Wrr);
    let answers = connect_many(&lab.client, SocketAddr::from((VIP, 80)), 4, 2);
    assert_eq!(answers.len(), 4);

    // SIGHUP: the configuration without the failed real.
    let second_only = {
        let start = LB_TOML.find("[[virtual_server.real_server]]").unwrap();
        let second = LB_TOML.rfind("[[virtual_server.real_server]]").unwrap();
        format!("{}{}", &LB_TOML[..start], &LB_TOML[second..])
    };
    std::fs::write(&config, &second_only).unwrap();
    daemon.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || status(&daemon).generation == 4),
        "{}",
        daemon.log()
    );
    assert_eq!(weights(&status(&daemon)), [("198.18.0.12".into(), 1)]);
    assert_eq!(status(&daemon).checkers.len(), 1);

    // SIGUSR2: the stats dump, private to root.
    let dump = daemon.dir().join("default.stats.json");
    daemon.signal(libc::SIGUSR2);
    assert!(
        wait_until(Duration::from_secs(5), || dump.exists()),
        "{}",
        daemon.log()
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dump).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let dumped: Status = serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    assert_eq!(dumped.generation, 4);
    // SIGUSR1: the data dump, the running configuration beside the state.
    let data = daemon.dir().join("default.data.json");
    daemon.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(5), || data.exists()),
        "{}",
        daemon.log()
    );
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&data).unwrap()).unwrap();
    assert_eq!(data["config"]["virtual_server"][0]["ip"], "198.18.0.100");
    assert_eq!(data["status"]["generation"], 4);

    // Metrics, from inside the balancer's namespace where they are served.
    let body = lab.lb.run(|| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(&metrics, Duration::from_secs(2))
            .expect("connect to the metrics endpoint");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        let _ = stream.read_to_string(&mut body);
        body
    });
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(
            "balancer_real_weight{service=\"TCP 198.18.0.100:80\",real=\"198.18.0.12:80\"} 1"
        ),
        "{body}"
    );
    assert!(body.contains("balancer_config_generation 4"), "{body}");

    let exit = daemon.stop();
    assert!(exit.success(), "{exit}: {}", daemon.log());
    assert!(
        !daemon.dir().join("default.sock").exists(),
        "the socket is removed"
    );
    drop(dir);
    drop(lab.servers);
}

/// `--keep-state`: the stopped daemon leaves the program attached, so an established
/// connection and new ones are forwarded while no daemon runs; the next run adopts the
/// attached program (no gap) and the connection stays on its real throughout.
#[test]
fn a_restart_with_keep_state_never_stops_forwarding() {
    require_root!();
    let lab = lab();
    let _echo: Vec<_> = lab
        .reals
        .iter()
        .zip(REALS)
        .map(|(ns, addr)| echo_server(ns, 7, IpAddr::V4(addr)))
        .collect();
    // The control socket where the configuration puts it; clients are pointed at it.
    let sockets = TempDir::new("ctl");
    let socket = sockets.file("balancer.sock");
    let config = format!(
        "{LB_TOML}\n[control]\nsocket = \"{}\"\n\n[[virtual_server]]\nip = \"198.18.0.100\"\nport = 7\nlb_algo = \"rr\"\nlb_kind = \"DR\"\nprotocol = \"TCP\"\n\n[[virtual_server.real_server]]\nip = \"198.18.0.11\"\n\n[[virtual_server.real_server]]\nip = \"198.18.0.12\"\n",
        socket.display()
    );
    // Pins under the daemon's own /sys would die with its `ip netns exec` mount namespace: a
    // bpffs mounted here, outside, outlives it as /sys/fs/bpf outlives a daemon on a host.
    let bpffs = Bpffs::new();
    let root = bpffs.path().to_str().unwrap().to_owned();
    let (mut first, dir) = start_with(
        &lab,
        "lb.toml",
        &config,
        &["--keep-state", "--pin-root", &root],
    );
    traffic_reaches_both_reals(&lab, &first);
    let mut held = Held::open(&lab.client, SocketAddr::from((VIP, 7)));
    let real = held.ask("before");

    let exit = first.stop();
    assert!(exit.success(), "{exit}: {}", first.log());
    assert!(
        xdp_attached(&lab.lb, "l0"),
        "left attached: {}",
        first.log()
    );
    // No daemon runs: the pinned program forwards the held connection and new ones.
    assert_eq!(held.ask("between"), real);
    let answers = connect_many(&lab.client, SocketAddr::from((VIP, 80)), 4, 2);
    assert_eq!(answers.len(), 4);

    let path = dir.path().join("lb.toml");
    let mut second = Daemon::balancer(
        &lab.lb,
        &[
            "run",
            "--config",
            path.to_str().unwrap(),
            "--interval",
            "0.2",
            "--pin-root",
            &root,
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || second
            .log()
            .contains("adopted the attached XDP link")),
        "{}",
        second.log()
    );
    assert_eq!(held.ask("after"), real, "the connection stayed on its real");
    traffic_reaches_both_reals(&lab, &second);
    let (ok, out) = second.client(&["--socket", socket.to_str().unwrap(), "status"]);
    assert!(ok && out.contains("TCP  198.18.0.100:7 rr"), "{out}");
    let exit = second.stop();
    assert!(exit.success(), "{exit}: {}", second.log());
    assert!(!xdp_attached(&lab.lb, "l0"), "a plain stop detaches");
    assert!(
        !bpffs.path().join("balancer/default").exists(),
        "and removes its pins"
    );
    drop(held);
    drop(dir);
}
