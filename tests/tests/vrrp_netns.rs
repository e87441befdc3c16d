//! Layer 3: the VRRP I/O task in-process (the library API the daemon will use), alone on a
//! link: it elects itself, owns the address, reports each state on its channel, and on
//! shutdown says priority 0 and lets the address go. Needs root.

use std::{net::Ipv4Addr, process::Command, time::Duration};

use balancer::vrrp::{
    config::Config,
    fsm::{Instance, State},
    net::{InstanceSpec, Notification, rule::VirtualRule, run_instance},
    track::Track,
    wire::{Addresses, Version},
};
use balancer_tests::{
    Netns,
    capture::{Capture, is_gratuitous_arp, is_unsolicited_na},
    require_root, veth_pair,
    vrrp::Lan,
};
use tokio::time::timeout;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 100);

fn has_vip(ns: &Netns) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-o", "addr", "show", "dev", "v0"])
        .output()
        .expect("ip addr show");
    String::from_utf8_lossy(&out.stdout).contains(" 198.18.2.100/24 ")
}

/// VRRPv3 IPv4 adverts from 198.18.2.1 to the group, and their priority.
fn advert_priority(frame: &[u8]) -> Option<u8> {
    let is_advert = frame.len() >= 14 + 20 + 8
        && frame[12..14] == [0x08, 0x00]
        && frame[14 + 9] == 112
        && frame[14 + 12..14 + 16] == [198, 18, 2, 1]
        && frame[14 + 16..14 + 20] == [224, 0, 0, 18]
        && frame[14 + 8] == 255;
    is_advert.then(|| frame[14 + 20 + 2])
}

#[test]
fn run_instance_elects_itself_reports_states_and_steps_down() {
    require_root!();
    let lan = Lan::new("vrrp-solo", 2);
    let (ns, peer) = (&lan.ours, &lan.peer);
    let wire = Capture::start(peer, "k0");

    let spec = spec_on_v0(9, vec!["198.18.2.100/24".parse().unwrap()]);
    // Backup at once, master after Master_Down_Interval (0.3 s + skew); then a few adverts
    // go out at the 100 ms interval.
    let (vip_while_master, states, instance) =
        master_then_stop(ns, spec, Duration::from_millis(350), || has_vip(ns));
    let transitions = instance.transitions();
    assert_eq!(states, [State::Backup, State::Master, State::Init]);
    assert!(vip_while_master, "the VIP was not added while master");
    assert!(!has_vip(ns), "the VIP stayed after shutdown");
    assert_eq!(transitions.become_master, 1);
    assert_eq!(transitions.priority_zero_sent, 1);

    assert!(wire.wait_for(Duration::from_secs(1), |f| is_gratuitous_arp(f, VIP)));
    assert!(wire.count(|f| advert_priority(f) == Some(100)) >= 3);
    assert!(wire.wait_for(Duration::from_secs(1), |f| advert_priority(f) == Some(0)));
}

/// An address owner (RFC 5798 §3: priority 255, the VIP is the interface's own address)
/// becomes master at once (RFC 5798 §6.4.1) and never removes its own address, neither as
/// leftover at start nor when it stops.
#[test]
fn an_address_owner_keeps_its_own_address() {
    require_root!();
    let ns = Netns::new("vrrp-owner");
    let peer = Netns::new("vrrp-peer");
    veth_pair(&ns, "v0", &peer, "p0");
    ns.ip(&["addr", "add", "198.18.2.100/24", "dev", "v0"]);
    let wire = Capture::start(&peer, "p0");
    let mut me = balancer_tests::daemon::Daemon::balancer(
        &ns,
        &[
            "vrrp",
            "--interface",
            "v0",
            "--vrid",
            "9",
            "--priority",
            "255",
            "--version",
            "3",
            "--advert-int",
            "0.1",
            "--vip",
            "198.18.2.100/24",
        ],
    );
    let is_owner_advert = |f: &[u8]| {
        f.len() >= 14 + 20 + 8
            && f[12..14] == [0x08, 0x00]
            && f[14 + 9] == 112
            && f[14 + 12..14 + 16] == [198, 18, 2, 100]
            && f[14 + 20 + 2] == 255
    };
    assert!(
        wire.wait_for(Duration::from_secs(2), is_owner_advert),
        "no priority 255 advert\n{}",
        me.log()
    );
    assert!(has_vip(&ns), "the owner lost its address\n{}", me.log());
    assert!(me.stop().success(), "{}", me.log());
    assert!(
        has_vip(&ns),
        "the owner removed its own address\n{}",
        me.log()
    );
    assert!(me.log().contains("state=\"MASTER\""), "{}", me.log());
}

/// `ip -o addr show dev DEV` in `ns`, one line per address.
fn addr_lines(ns: &Netns, dev: &str) -> Vec<String> {
    ip_lines(ns, &["-o", "addr", "show", "dev", dev])
}

/// `ip FAMILY rule show` in `ns`, one line per rule.
fn rule_lines(ns: &Netns, family: &str) -> Vec<String> {
    ip_lines(ns, &[family, "rule", "show"])
}

/// What `ip ARGS` prints in `ns`, by line.
fn ip_lines(ns: &Netns, args: &[&str]) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns.name()])
        .args(args)
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A VRRPv3 instance on `v0` with a 100 ms advert interval, source address and
/// addresses to advertise taken from the interface and `vips`.
fn spec_on_v0(vrid: u8, vips: Vec<balancer::vrrp::net::Vip>) -> InstanceSpec {
    let mut config = Config::new(
        vrid,
        Version::V3,
        Ipv4Addr::UNSPECIFIED.into(),
        Addresses::V4(Vec::new()),
    );
    config.advert_interval = Duration::from_millis(100);
    InstanceSpec {
        interface: "v0".into(),
        config,
        vips,
        group: None,
        track: Track::default(),
        vmac: None,
        vmac_xmit_base: false,
        excluded: Vec::new(),
        routes: Vec::new(),
        rules: Vec::new(),
        address_options: std::collections::BTreeMap::default(),
    }
}

/// Runs `spec` in `ns` until it is master, waits `settle`, calls `observe`, stops the
/// instance and waits for it to end: what `observe` saw, every state it reported, and the
/// instance as it ended.
fn master_then_stop<T: Send>(
    ns: &Netns,
    spec: InstanceSpec,
    settle: Duration,
    observe: impl FnOnce() -> T + Send,
) -> (T, Vec<State>, Instance) {
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(run_instance(
                spec,
                async {
                    let _ = stop_rx.await;
                },
                Some(tx),
            ));
            let mut states = Vec::new();
            while states.last() != Some(&State::Master) {
                match timeout(Duration::from_secs(3), rx.recv()).await {
                    Ok(Some(Notification::State { state, .. })) => states.push(state),
                    Ok(Some(_)) => {}
                    other => panic!("expected a state, got {other:?} after {states:?}"),
                }
            }
            tokio::time::sleep(settle).await;
            let seen = observe();
            stop_tx.send(()).unwrap();
            let instance = timeout(Duration::from_secs(3), task)
                .await
                .expect("run_instance stops within 3 s")
                .expect("task")
                .expect("run_instance");
            while let Ok(n) = rx.try_recv() {
                if let Notification::State { state, .. } = n {
                    states.push(state);
                }
            }
            (seen, states, instance)
        })
    })
}

/// [`spec_on_v0`] with `virtual_ipaddress` lines (and whether each is excluded from
/// adverts), their options included.
fn spec_with_lines(vrid: u8, lines: &[(&str, bool)]) -> InstanceSpec {
    let mut spec = spec_on_v0(vrid, Vec::new());
    for &(line, excluded) in lines {
        let l = balancer::config::address::vip_line(line).unwrap();
        spec.address_options.insert(l.vip.addr, l.options);
        if excluded {
            spec.excluded.push(l.vip);
        } else {
            spec.vips.push(l.vip);
        }
    }
    spec
}

/// The link-local address of `dev` in `ns`.
fn link_local(ns: &Netns, dev: &str) -> std::net::Ipv6Addr {
    addr_lines(ns, dev)
        .iter()
        .find_map(|l| {
            let at = l.find("inet6 fe80::")? + "inet6 ".len();
            l[at..].split('/').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("{dev} has no link-local address"))
}

/// The options of `virtual_ipaddress` lines reach the kernel: another `dev` (with its
/// gratuitous ARP sent there), `brd`, `scope`, `label`, `noprefixroute`, `virtual_rules`, and keepalived's
/// default of a deprecated (`preferred_lft` 0) IPv6 /128, an address on a missing dev
/// skipped; all go when the instance stops.
#[test]
fn address_options_and_rules_reach_the_kernel_and_go_with_the_instance() {
    require_root!();
    let lan = Lan::new("vrrp-opts", 4);
    let ns = &lan.ours;
    let other = Netns::new("vrrp-opts-other");
    veth_pair(ns, "v1", &other, "o1");
    let wire = Capture::start(&other, "o1");

    let mut spec = spec_with_lines(
        19,
        &[
            ("198.18.4.100/24 brd + label v0:vip", false),
            ("198.18.5.100/24 dev v1 scope link noprefixroute", false),
            ("fd00:4::100", true),
            // A dev that does not exist: that address is skipped, not the instance.
            ("198.18.4.200/24 dev nosuch0", true),
            ("fd00:5::100/64 dev v1", true),
        ],
    );
    spec.rules = [
        "from 198.18.4.100 table 100 preference 1000",
        "inet6 not to fd00:4::/64 lookup 200 preference 1001 ipproto udp dport 53",
    ]
    .into_iter()
    .map(|line| VirtualRule::parse(line).unwrap())
    .collect();
    let lines = || {
        [
            addr_lines(ns, "v0"),
            addr_lines(ns, "v1"),
            rule_lines(ns, "-4"),
            rule_lines(ns, "-6"),
        ]
        .concat()
    };
    let (while_master, ..) = master_then_stop(ns, spec, Duration::ZERO, lines);
    let after = lines();
    let line = |addr: &str| {
        while_master
            .iter()
            .find(|l| l.contains(addr))
            .unwrap_or_else(|| panic!("{addr} not added: {while_master:#?}"))
            .clone()
    };
    let v4 = line("inet 198.18.4.100/24");
    assert!(
        v4.contains("brd 198.18.4.255") && v4.contains("v0:vip"),
        "{v4}"
    );
    let other_dev = line("inet 198.18.5.100/24");
    assert!(other_dev.contains(" v1 "), "on v1: {other_dev}");
    assert!(
        other_dev.contains("scope link") && other_dev.contains("noprefixroute"),
        "{other_dev}"
    );
    let v6 = line("inet6 fd00:4::100/128");
    assert!(v6.contains("preferred_lft 0sec"), "deprecated: {v6}");
    let rule4 = line("1000:\tfrom 198.18.4.100 lookup 100");
    assert!(
        rule4.contains("proto 18") || rule4.contains("proto keepalived"),
        "{rule4}"
    );
    let rule6 = line("1001:\tnot from all to fd00:4::/64");
    assert!(
        rule6.contains("ipproto udp") && rule6.contains("dport 53") && rule6.contains("lookup 200"),
        "{rule6}"
    );
    assert!(
        !while_master.iter().any(|l| l.contains("198.18.4.200")),
        "{while_master:#?}"
    );
    for gone in [
        "198.18.4.100",
        "198.18.5.100",
        "fd00:4::100",
        "fd00:5::100",
        "lookup 100",
        "lookup 200",
    ] {
        assert!(
            !after.iter().any(|l| l.contains(gone)),
            "{gone} stayed: {after:#?}"
        );
    }
    assert!(
        wire.wait_for(Duration::from_secs(1), |f| is_gratuitous_arp(
            f,
            Ipv4Addr::new(198, 18, 5, 100)
        )),
        "no gratuitous ARP on v1"
    );
    // The IPv6 address on v1 is announced from v1's own link-local address.
    let v1_link_local = link_local(ns, "v1");
    assert!(
        wire.wait_for(Duration::from_secs(1), |f| is_unsolicited_na(
            f,
            "fd00:5::100".parse().unwrap()
        ) && f[22..38]
            == v1_link_local.octets()),
        "no neighbour advertisement from v1's link-local address"
    );
}
