//! Runs inside the IPVS test guest (`tests/ipvs_vm.rs` boots it): this host's kernel has no
//! IPVS, the guest's has. Each scenario panics on the first thing that is not as expected
//! (the exit status tells the host) and prints `ok SCENARIO` when all was.
//!
//! `ipvsadm -Ln`, a reader that is not ours, is the witness of what the kernel holds.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use balancer::{
    dataplane::{
        Dataplane,
        ipvs::{IpvsDataplane, sync::SyncRole},
    },
    model::{Method, Persistence, Protocol, RealServer, Scheduler, VirtualService},
};
use balancer_common::maps::Globals;
use balancer_tests::{Netns, daemon::Daemon, veth_pair, wait_until};

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "dataplane" => dataplane(),
        "daemon" => daemon(),
        "sync" => sync(),
        other => panic!("unknown scenario {other:?}: dataplane, daemon or sync"),
    }
    println!("ok {scenario}");
}

/// `ipvsadm ARGS` (in `ns`, if given), its output with runs of spaces made one.
fn ipvsadm(ns: Option<&Netns>, args: &[&str]) -> Vec<String> {
    let out = match ns {
        Some(ns) => ns.output("ipvsadm", args),
        None => Command::new("ipvsadm")
            .args(args)
            .output()
            .expect("ipvsadm"),
    };
    assert!(out.status.success(), "ipvsadm {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The service lines of `ipvsadm -Ln`, each followed by its destinations, services sorted
/// (the kernel lists them in hash order).
fn table(ns: Option<&Netns>) -> Vec<String> {
    let lines = ipvsadm(ns, &["-Ln"]);
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for l in lines.into_iter().skip(3) {
        if l.starts_with("->") {
            if let Some(b) = blocks.last_mut() {
                b.push(l);
            }
        } else {
            blocks.push(vec![l]);
        }
    }
    for b in &mut blocks {
        b[1..].sort();
    }
    blocks.sort();
    blocks.concat()
}

fn real(addr: &str, port: u16, weight: u32, method: Method) -> RealServer {
    RealServer {
        addr: addr.parse().unwrap(),
        port,
        weight,
        method,
        tunnel_source: None,
        egress: None,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn expect(ns: Option<&Netns>, want: &[&str]) {
    let got = table(ns);
    assert_eq!(got, want, "ipvsadm -Ln (services sorted)");
}

/// The data plane alone: what each call leaves in the kernel, as `ipvsadm -Ln` shows it.
fn dataplane() {
    let mut ipvs = IpvsDataplane::connect().expect("IPVS");
    // A service that is not ours, made by ipvsadm: never touched.
    ipvsadm(None, &["-A", "-t", "198.18.5.5:22", "-s", "rr"]);
    group_and_weights(&mut ipvs);
    families_and_refusal(&mut ipvs);
    timeouts_status_removal(&mut ipvs);
}

/// A group with a sorry server: applied, drained, changed in place.
fn group_and_weights(ipvs: &mut IpvsDataplane) {
    let mut web = VirtualService {
        vips: vec![ip("198.18.0.10"), ip("198.18.0.11")],
        port: 80,
        protocol: Protocol::Tcp,
        scheduler: Scheduler::Wrr,
        ops: false,
        hash_port: false,
        persistence: Some(Persistence {
            timeout_s: 300,
            prefix: 24,
        }),
        reals: vec![
            real("198.18.1.1", 80, 3, Method::Dr),
            real("198.18.1.2", 8080, 1, Method::Nat),
        ],
        sorry_server: Some(real("198.18.9.9", 80, 1, Method::Dr)),
    };
    ipvs.apply("web", &web).expect("apply web");
    expect(
        None,
        &[
            "TCP 198.18.0.10:80 wrr persistent 300 mask 255.255.255.0",
            "-> 198.18.1.1:80 Route 3 0 0",
            "-> 198.18.1.2:8080 Masq 1 0 0",
            "TCP 198.18.0.11:80 wrr persistent 300 mask 255.255.255.0",
            "-> 198.18.1.1:80 Route 3 0 0",
            "-> 198.18.1.2:8080 Masq 1 0 0",
            "TCP 198.18.5.5:22 rr",
        ],
    );
    println!("ok apply: a group is one IPVS service per VIP, persistence and methods as given");

    // Drain one real: weight 0, still a destination (its connections go on).
    ipvs.set_weight("web", ip("198.18.1.1"), 80, 0)
        .expect("weight 0");
    let t = table(None);
    assert!(
        t.contains(&"-> 198.18.1.1:80 Route 0 0 0".to_owned()),
        "{t:#?}"
    );
    assert!(!t.iter().any(|l| l.contains("198.18.9.9")), "{t:#?}");
    // The last real goes: the sorry server comes in, on every VIP.
    ipvs.set_weight("web", ip("198.18.1.2"), 8080, 0)
        .expect("weight 0");
    let t = table(None);
    assert_eq!(
        t.iter()
            .filter(|l| *l == "-> 198.18.9.9:80 Route 1 0 0")
            .count(),
        2,
        "{t:#?}"
    );
    // A real is back: the sorry server leaves.
    ipvs.set_weight("web", ip("198.18.1.2"), 8080, 2)
        .expect("weight 2");
    let t = table(None);
    assert!(!t.iter().any(|l| l.contains("198.18.9.9")), "{t:#?}");
    assert!(
        t.contains(&"-> 198.18.1.2:8080 Masq 2 0 0".to_owned()),
        "{t:#?}"
    );
    println!("ok weights: 0 drains, the sorry server stands in while no real has weight");

    // A changed service: another scheduler, one VIP fewer, one real replaced by a tunnel
    // real. Weights come from the model given, as a reload gives them.
    web.vips.pop();
    web.scheduler = Scheduler::Sh;
    web.hash_port = true;
    web.persistence = None;
    web.reals = vec![
        real("198.18.1.1", 80, 1, Method::Dr),
        real("198.18.1.3", 80, 5, Method::Tun),
    ];
    ipvs.apply("web", &web).expect("change web");
    expect(
        None,
        &[
            "TCP 198.18.0.10:80 sh (sh-port)",
            "-> 198.18.1.1:80 Route 1 0 0",
            "-> 198.18.1.3:80 Tunnel 5 0 0",
            "TCP 198.18.5.5:22 rr",
        ],
    );
    println!("ok change: scheduler, VIPs and reals converge in place");
}

/// IPv6, UDP, one-packet scheduling, a service selected by mark, and a change the kernel
/// refuses.
fn families_and_refusal(ipvs: &mut IpvsDataplane) {
    // IPv6, UDP, one-packet scheduling; and a service selected by mark.
    let dns = VirtualService {
        vips: vec![ip("fd00::10")],
        port: 53,
        protocol: Protocol::Udp,
        scheduler: Scheduler::Rr,
        ops: true,
        hash_port: false,
        persistence: None,
        reals: vec![real("fd00::1:1", 5353, 1, Method::Nat)],
        sorry_server: None,
    };
    ipvs.apply("dns", &dns).expect("apply dns");
    let marked = VirtualService {
        vips: Vec::new(),
        port: 0,
        protocol: Protocol::Tcp,
        scheduler: Scheduler::Wlc,
        ops: false,
        hash_port: false,
        persistence: Some(Persistence {
            timeout_s: 60,
            prefix: 32,
        }),
        reals: vec![real("198.18.1.4", 0, 1, Method::Dr)],
        sorry_server: None,
    };
    ipvs.apply_fwmark("FWM 7", 7, &marked)
        .expect("apply fwmark");
    let t = table(None);
    for want in [
        "UDP [fd00::10]:53 rr ops",
        "-> [fd00::1:1]:5353 Masq 1 0 0",
        "FWM 7 wlc persistent 60",
        "-> 198.18.1.4:0 Route 1 0 0",
    ] {
        assert!(t.contains(&want.to_owned()), "{want:?} not in {t:#?}");
    }
    println!("ok families: IPv6 UDP with ops, and fwmark");

    // A change the kernel refuses (an IPv4 real behind an IPv6 VIP, by DR) leaves the
    // service as it was.
    let mut bad = dns.clone();
    bad.reals.push(real("198.18.1.5", 53, 1, Method::Dr));
    let before = table(None);
    let e = ipvs.apply("dns", &bad).expect_err("mixed families by DR");
    println!("refused as expected: {e}");
    assert_eq!(
        table(None),
        before,
        "a refused change left something behind"
    );
    // A first install over a service already in the kernel (adopted from a previous run,
    // or another tool's) that fails takes nothing away: the service keeps forwarding.
    ipvsadm(None, &["-A", "-u", "198.18.7.7:53", "-s", "rr"]);
    ipvsadm(
        None,
        &["-a", "-u", "198.18.7.7:53", "-r", "198.18.1.6:53", "-m"],
    );
    let mut over = dns.clone();
    over.vips = vec![ip("198.18.7.7")];
    over.reals = vec![real("fd00::1:6", 53, 1, Method::Dr)];
    ipvs.apply("over", &over)
        .expect_err("an IPv6 DR real behind an IPv4 VIP");
    let t = table(None);
    assert!(
        t.contains(&"-> 198.18.1.6:53 Masq 1 0 0".to_owned()),
        "{t:#?}"
    );
    ipvsadm(None, &["-D", "-u", "198.18.7.7:53"]);
    println!("ok refused: nothing half applied");
}

fn timeouts_status_removal(ipvs: &mut IpvsDataplane) {
    ipvs.set_timeouts(Globals {
        tcp_timeout_ns: 901_000_000_000,
        tcpfin_timeout_ns: 121_000_000_000,
        udp_timeout_ns: 301_000_000_000,
    })
    .expect("timeouts");
    let got = ipvsadm(None, &["-L", "--timeout"]);
    assert_eq!(got, ["Timeout (tcp tcpfin udp): 901 121 301"]);
    println!("ok timeouts: as ipvsadm --set");

    let status = ipvs.service_status().expect("status");
    let names: Vec<&str> = status.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["FWM 7", "dns", "web"]);
    let foreign = ipvs.unclaimed().expect("unclaimed");
    assert_eq!(foreign.len(), 1, "{foreign:?}");

    ipvs.remove("dns").expect("remove dns");
    ipvs.remove_all().expect("remove all");
    expect(None, &["TCP 198.18.5.5:22 rr"]);
    println!("ok remove: ours gone, the foreign service left");
}

/// A listener in `ns` that answers every connection with `name`, until the guard drops.
fn responder(ns: &Netns, addr: &str, name: &'static str) -> balancer_tests::NsThread {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.spawn_thread(move |stop| {
        let listener = TcpListener::bind(addr).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        while !balancer_tests::NsThread::stopping(stop) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(name.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

/// Who answers a connection to `vip` from `client`.
fn ask(client: &Netns, vip: &str) -> String {
    let vip: SocketAddr = vip.parse().unwrap();
    client.run(move || {
        let Ok(mut s) = TcpStream::connect_timeout(&vip, Duration::from_secs(2)) else {
            return "refused".to_owned();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
}

/// The director, a client and two NAT reals, each on its own veth and /24.
fn lab() -> [Netns; 4] {
    let director = Netns::new("dir");
    let client = Netns::new("cli");
    let real1 = Netns::new("r1");
    let real2 = Netns::new("r2");
    veth_pair(&client, "c", &director, "dc");
    veth_pair(&real1, "r", &director, "d1");
    veth_pair(&real2, "r", &director, "d2");
    director.sysctl("net.ipv4.ip_forward", "1");
    director.ip(&["addr", "add", "198.18.0.1/24", "dev", "dc"]);
    director.ip(&["addr", "add", "198.18.0.10/32", "dev", "lo"]);
    director.ip(&["addr", "add", "198.18.1.1/24", "dev", "d1"]);
    director.ip(&["addr", "add", "198.18.2.1/24", "dev", "d2"]);
    client.ip(&["addr", "add", "198.18.0.2/24", "dev", "c"]);
    client.ip(&["route", "add", "default", "via", "198.18.0.1"]);
    real1.ip(&["addr", "add", "198.18.1.2/24", "dev", "r"]);
    real1.ip(&["route", "add", "default", "via", "198.18.1.1"]);
    real2.ip(&["addr", "add", "198.18.2.2/24", "dev", "r"]);
    real2.ip(&["route", "add", "default", "via", "198.18.2.1"]);
    [director, client, real1, real2]
}

/// A keepalived.conf as keepalived would run it on IPVS (`balancer run --dataplane ipvs`).
const DAEMON_CONFIG: &str = r"
global_defs {
    lvs_timeouts tcp 905
}

virtual_server 198.18.0.10 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 198.18.1.2 8080 {
        TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 0.2
        }
    }
    real_server 198.18.2.2 8080 {
        TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 0.2
        }
    }
}

virtual_server fwmark 7 {
    lb_algo wlc
    lb_kind DR
    protocol TCP
    persistence_timeout 60
    real_server 198.18.1.2 {
    }
}
";

/// `balancer run --dataplane ipvs` on a keepalived.conf: a NAT service, TCP checks that take
/// a broken real out and put it back, connections through the kernel's IPVS, and an fwmark
/// service.
fn daemon() {
    let [director, client, real1, real2] = lab();
    let r1 = responder(&real1, "198.18.1.2:8080", "real1");
    let mut r2 = Some(responder(&real2, "198.18.2.2:8080", "real2"));

    let dir = std::env::temp_dir().join("ipvs-daemon");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("keepalived.conf");
    std::fs::write(&config, DAEMON_CONFIG).unwrap();
    let daemon = Daemon::balancer(
        &director,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--dataplane",
            "ipvs",
        ],
    );
    let want = [
        "FWM 7 wlc persistent 60",
        "-> 198.18.1.2:0 Route 1 0 0",
        "TCP 198.18.0.10:80 rr",
        "-> 198.18.1.2:8080 Masq 1 0 0",
        "-> 198.18.2.2:8080 Masq 1 0 0",
    ];
    let programmed = wait_until(Duration::from_secs(20), || table(Some(&director)) == want);
    assert!(
        programmed,
        "not programmed: {:#?}\n{}",
        table(Some(&director)),
        daemon.log()
    );
    let timeouts = ipvsadm(Some(&director), &["-L", "--timeout"]);
    assert_eq!(timeouts, ["Timeout (tcp tcpfin udp): 905 120 300"]);

    let answers: Vec<String> = (0..6).map(|_| ask(&client, "198.18.0.10:80")).collect();
    for name in ["real1", "real2"] {
        assert_eq!(
            answers.iter().filter(|a| *a == name).count(),
            3,
            "rr over two reals: {answers:?}\n{}",
            daemon.log()
        );
    }
    println!("ok daemon: programmed, and connections through IPVS alternate: {answers:?}");

    // real2 stops listening: its checker takes it out (weight 0), every connection goes to
    // real1.
    r2.take();
    let drained = wait_until(Duration::from_secs(20), || {
        table(Some(&director)).contains(&"-> 198.18.2.2:8080 Masq 0 0 0".to_owned())
            || table(Some(&director))
                .iter()
                .any(|l| l.starts_with("-> 198.18.2.2:8080 Masq 0 "))
    });
    assert!(drained, "{:#?}\n{}", table(Some(&director)), daemon.log());
    let answers: Vec<String> = (0..4).map(|_| ask(&client, "198.18.0.10:80")).collect();
    assert!(answers.iter().all(|a| a == "real1"), "{answers:?}");
    let (ok, status) = daemon.client(&["status"]);
    assert!(ok, "{status}");
    assert!(status.contains("balancer on the kernel's IPVS"), "{status}");
    // The connections just made are still in IPVS's table (closing, for tcpfin's 2 min).
    assert!(
        status.contains("connections=") && !status.contains("connections=0)"),
        "{status}"
    );
    assert!(status.contains("198.18.2.2:8080"), "{status}");
    println!("ok daemon: a failed check drains the real in IPVS");

    // Back: the checker restores its weight.
    let _r2 = responder(&real2, "198.18.2.2:8080", "real2");
    let restored = wait_until(Duration::from_secs(20), || {
        table(Some(&director))
            .iter()
            .any(|l| l.starts_with("-> 198.18.2.2:8080 Masq 1 "))
    });
    assert!(restored, "{:#?}\n{}", table(Some(&director)), daemon.log());
    println!("ok daemon: the real is back when its check passes");

    reload_and_keep_state(&director, &client, &config, daemon);
    drop(r1);
}

/// A reload changes the service in place; `--keep-state` leaves the services for the next
/// run, which adopts them.
fn reload_and_keep_state(
    director: &Netns,
    client: &Netns,
    config: &std::path::Path,
    mut daemon: Daemon,
) {
    // A reload: another scheduler, the fwmark service gone.
    let changed = DAEMON_CONFIG
        .replace("lb_algo rr", "lb_algo wlc")
        .split("virtual_server fwmark")
        .next()
        .unwrap_or_default()
        .to_owned();
    std::fs::write(config, &changed).unwrap();
    let (ok, message) = daemon.client(&["reload"]);
    assert!(ok, "{message}\n{}", daemon.log());
    let services = |t: Vec<String>| -> Vec<String> {
        t.into_iter().filter(|l| !l.starts_with("->")).collect()
    };
    assert_eq!(services(table(Some(director))), ["TCP 198.18.0.10:80 wlc"]);
    println!("ok daemon: a reload changes the scheduler and removes a service in place");

    // --keep-state: a stop leaves the services forwarding, the next run adopts them.
    let status = daemon.stop();
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert_eq!(
        table(Some(director)),
        Vec::<String>::new(),
        "services left after stop"
    );
    println!("ok daemon: stopping removes the services");
    let run = |keep: bool| {
        let mut args = vec![
            "run",
            "--config",
            config.to_str().unwrap(),
            "--dataplane",
            "ipvs",
        ];
        if keep {
            args.push("--keep-state");
        }
        Daemon::balancer(director, &args)
    };
    let mut kept = run(true);
    let up = || {
        wait_until(Duration::from_secs(20), || {
            table(Some(director))
                .iter()
                .filter(|l| l.contains(" Masq 1 "))
                .count()
                == 2
        })
    };
    assert!(up(), "{:#?}\n{}", table(Some(director)), kept.log());
    let status = kept.stop();
    assert!(status.success(), "{status:?}\n{}", kept.log());
    assert_eq!(services(table(Some(director))), ["TCP 198.18.0.10:80 wlc"]);
    let between = ask(client, "198.18.0.10:80");
    assert!(
        between == "real1" || between == "real2",
        "between runs: {between:?}"
    );
    let mut next = run(false);
    let adopted = wait_until(Duration::from_secs(20), || {
        next.log().contains("service programmed")
    });
    assert!(adopted, "{}", next.log());
    assert!(up(), "{:#?}\n{}", table(Some(director)), next.log());
    let log = next.log();
    assert!(!log.contains("ERROR"), "{log}");
    let status = next.stop();
    assert!(status.success(), "{status:?}\n{}", next.log());
    assert_eq!(table(Some(director)), Vec::<String>::new());
    println!("ok daemon: --keep-state leaves the services, the next run adopts them");
}

/// A node of the `sync` scenario: a VRRP instance on the sync link that the sync daemon
/// follows, and one NAT service.
fn sync_config(priority: u8, global: &str) -> String {
    format!(
        r"
global_defs {{
    lvs_sync_daemon s inst VI_1 id 51
    {global}
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface s
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        198.18.9.100/24
    }}
}}
virtual_server 198.18.0.10 80 {{
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 198.18.1.2 8080 {{
    }}
}}
"
    )
}

/// `lvs_sync_daemon` following a VRRP instance on two directors: the master's daemon sends
/// the connections through it, the backup's installs them, and a failover swaps the
/// daemons.
fn sync() {
    let [director, client, real1, _real2] = lab();
    let peer = Netns::new("peer");
    veth_pair(&director, "s", &peer, "s");
    director.ip(&["addr", "add", "198.18.9.1/24", "dev", "s"]);
    peer.ip(&["addr", "add", "198.18.9.2/24", "dev", "s"]);
    let _r1 = responder(&real1, "198.18.1.2:8080", "real1");
    let dir = std::env::temp_dir().join("ipvs-sync");
    std::fs::create_dir_all(&dir).unwrap();
    let start = |ns: &Netns, name: &str, priority: u8, global: &str| {
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, sync_config(priority, global)).unwrap();
        let path = path.to_str().unwrap().to_owned();
        Daemon::balancer(ns, &["run", "--config", &path, "--dataplane", "ipvs"])
    };
    // Node a empties IPVS as it starts and as it stops: a service another tool made goes.
    ipvsadm(Some(&director), &["-A", "-t", "198.18.5.5:22", "-s", "rr"]);
    let mut a = start(&director, "a", 150, "lvs_flush\n    lvs_flush_on_stop");
    let b = start(&peer, "b", 100, "");
    // "master sync daemon (mcast=s, syncid=51, maxlen=1472, group=224.0.0.81, port=8848,
    // ttl=1)": the role, the interface and the ID (the VRID by default) are ours.
    let daemons = |ns: &Netns| -> Vec<String> {
        ipvsadm(Some(ns), &["-L", "--daemon"])
            .into_iter()
            .map(|l| l.split(", maxlen").next().unwrap_or_default().to_owned())
            .collect()
    };
    let master = "master sync daemon (mcast=s, syncid=51".to_owned();
    let backup = "backup sync daemon (mcast=s, syncid=51".to_owned();
    let elected = wait_until(Duration::from_secs(20), || {
        daemons(&director) == [master.clone()] && daemons(&peer) == [backup.clone()]
    });
    assert!(
        elected,
        "{:?} {:?}\n{}\n{}",
        daemons(&director),
        daemons(&peer),
        a.log(),
        b.log()
    );
    // Our reader sees what ipvsadm sees.
    let ours = |ns: &Netns| {
        ns.run(|| {
            IpvsDataplane::connect()
                .and_then(|mut i| i.sync_daemons())
                .expect("sync daemons")
        })
    };
    let read = ours(&director);
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(
        (read[0].role, read[0].interface.as_str(), read[0].sync_id),
        (SyncRole::Master, "s", 51)
    );
    assert_eq!(ours(&peer)[0].role, SyncRole::Backup);
    println!("ok sync: the MASTER runs the master daemon, the BACKUP the backup daemon");
    assert_eq!(
        table(Some(&director)),
        ["TCP 198.18.0.10:80 rr", "-> 198.18.1.2:8080 Masq 1 0 0"],
        "lvs_flush left a service"
    );

    assert_eq!(ask(&client, "198.18.0.10:80"), "real1");
    let synced = wait_until(Duration::from_secs(10), || {
        ipvsadm(Some(&peer), &["-Lnc"])
            .iter()
            .any(|l| l.contains("198.18.0.2:") && l.contains("198.18.0.10:80 198.18.1.2:8080"))
    });
    assert!(synced, "{:#?}", ipvsadm(Some(&peer), &["-Lnc"]));
    println!("ok sync: a connection through the master is in the backup's table");

    // The master stops (priority 0): the peer takes over and swaps its daemons.
    ipvsadm(Some(&director), &["-A", "-t", "198.18.5.6:22", "-s", "rr"]);
    let status = a.stop();
    assert!(status.success(), "{status:?}\n{}", a.log());
    assert_eq!(
        daemons(&director),
        Vec::<String>::new(),
        "daemons left after stop"
    );
    assert_eq!(
        table(Some(&director)),
        Vec::<String>::new(),
        "lvs_flush_on_stop left a service"
    );
    println!("ok sync: lvs_flush and lvs_flush_on_stop empty IPVS at start and stop");
    let took_over = wait_until(Duration::from_secs(10), || {
        daemons(&peer) == [master.clone()]
    });
    assert!(took_over, "{:?}\n{}", daemons(&peer), b.log());
    println!("ok sync: after a failover the new MASTER runs the master daemon alone");

    // A reload with another sync ID restarts the daemon in the state the instance is in.
    let path = dir.join("b.conf");
    std::fs::write(&path, sync_config(100, "").replace("id 51", "id 52")).unwrap();
    let (ok, message) = b.client(&["reload"]);
    assert!(
        ok && message.contains("lvs_sync_daemon restarted"),
        "{message}"
    );
    let restarted = wait_until(Duration::from_secs(10), || {
        daemons(&peer) == ["master sync daemon (mcast=s, syncid=52"]
    });
    assert!(restarted, "{:?}\n{}", daemons(&peer), b.log());
    println!("ok sync: a reload restarts the daemon with its new settings");
}
