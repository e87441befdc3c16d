//! Layer 3: the VRRP I/O task in-process (the library API the daemon will use), alone on a
//! link: it elects itself, owns the address, reports each state on its channel, and on
//! shutdown says priority 0 and lets the address go. Needs root.

use std::{net::Ipv4Addr, process::Command, time::Duration};

use balancer::vrrp::{
    config::Config,
    fsm::State,
    net::{InstanceSpec, Notification, run_instance},
    track::Track,
    wire::{Addresses, Version},
};
use balancer_tests::{
    Netns,
    capture::{Capture, is_gratuitous_arp},
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

    let mut config = Config::new(
        9,
        Version::V3,
        Ipv4Addr::UNSPECIFIED.into(),
        Addresses::V4(Vec::new()),
    );
    config.advert_interval = Duration::from_millis(100);
    let spec = InstanceSpec {
        interface: "v0".into(),
        config,
        vips: vec!["198.18.2.100/24".parse().unwrap()],
        group: None,
        track: Track::default(),
        vmac: None,
        excluded: Vec::new(),
        routes: Vec::new(),
    };
    let (states, vip_while_master, transitions) = ns.run(|| {
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
            // Backup at once, master after Master_Down_Interval (0.3 s + skew).
            while states.len() < 2 {
                match timeout(Duration::from_secs(3), rx.recv()).await {
                    Ok(Some(Notification::State { state, .. })) => states.push(state),
                    other => panic!("expected a state, got {other:?} after {states:?}"),
                }
            }
            // Let a few adverts go out at the 100 ms interval.
            tokio::time::sleep(Duration::from_millis(350)).await;
            let vip_while_master = has_vip(ns);
            stop_tx.send(()).unwrap();
            let instance = timeout(Duration::from_secs(3), task)
                .await
                .expect("run_instance stops within 3 s")
                .expect("task")
                .expect("run_instance");
            while let Ok(Notification::State { state, .. }) = rx.try_recv() {
                states.push(state);
            }
            (states, vip_while_master, instance.transitions())
        })
    });
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
