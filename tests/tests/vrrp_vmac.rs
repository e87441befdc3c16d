//! Layer 3: `use_vmac` with `balancer vrrp --vmac` against Debian's keepalived `use_vmac`. The
//! master holds the VIP on a macvlan carrying the virtual router MAC (RFC 5798 §7.3) and
//! sends its adverts from that MAC, the
//! peer's neighbour entry for the VIP is that MAC, and it stays the same MAC after keepalived
//! takes over; our macvlan is gone after we stop. Needs root.

use std::{net::UdpSocket, time::Duration};

use balancer_tests::{
    Netns,
    daemon::Daemon,
    require_root,
    vrrp::{Lan, Side, ours_v3},
    wait_until,
};

const VIP: &str = "198.18.7.100";
const VMAC: &str = "00:00:5e:00:01:3d";
const HANDOVER: Duration = Duration::from_secs(5);
const VIP6: &str = "fd00:8::100";
const VMAC6: &str = "00:00:5e:00:02:3e";

const PEER: &str = "global_defs {\n  router_id blt\n}\nvrrp_instance VI {\n  state BACKUP\n  \
                    interface k0\n  virtual_router_id 61\n  priority 100\n  version 3\n  \
                    advert_int 0.1\n  use_vmac\n  virtual_ipaddress {\n    198.18.7.100/24\n  }\n}\n";

fn link_shows(ns: &Netns, dev: &str) -> String {
    String::from_utf8_lossy(&ns.output("ip", &["-o", "link", "show", "dev", dev]).stdout)
        .into_owned()
}

fn addr_on(ns: &Netns, dev: &str, addr: &str) -> bool {
    String::from_utf8_lossy(&ns.output("ip", &["-o", "addr", "show", "dev", dev]).stdout)
        .contains(&format!(" {addr}/"))
}

/// Whether a frame is an IPv4 VRRP advert from `src`.
fn advert_from(src: [u8; 4]) -> impl Fn(&[u8]) -> bool {
    move |f| f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 112 && f[26..30] == src
}

/// The MAC `ns` resolves the VIP to: a datagram to it makes the kernel ask (ARP).
fn neighbour(ns: &Netns) -> String {
    ns.run(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("socket");
        let _ = socket.send_to(b"who has it", (VIP, 9));
    });
    let show =
        || String::from_utf8_lossy(&ns.output("ip", &["neigh", "show", VIP]).stdout).into_owned();
    wait_until(Duration::from_secs(2), || show().contains("lladdr"));
    show()
}

#[test]
fn vip_lives_on_the_virtual_mac_and_keeps_it_across_a_takeover() {
    require_root!();
    let lan = Lan::new("vmac", 7);
    let wire = balancer_tests::capture::Capture::start(&lan.peer, "k0");
    let ka = Daemon::keepalived(&lan.peer, PEER);
    let mut me = ours_v3(
        &lan,
        "61",
        "200",
        "0.1",
        &["--vmac", "vrrp.61", "--vip", "198.18.7.100/24"],
    );
    lan.settle(
        &[VIP],
        Side::Ours,
        HANDOVER,
        Duration::from_millis(500),
        &[&me, &ka],
    );
    assert!(
        link_shows(&lan.ours, "vrrp.61").contains(&format!("link/ether {VMAC}")),
        "{}\n{}",
        link_shows(&lan.ours, "vrrp.61"),
        me.log()
    );
    assert!(
        addr_on(&lan.ours, "vrrp.61", VIP),
        "the VIP is on the macvlan"
    );
    assert!(!addr_on(&lan.ours, "v0", VIP), "not on the base interface");
    // RFC 5798 §7.3 (keepalived's default): the master's adverts carry the virtual MAC.
    let our_advert = advert_from([198, 18, 7, 1]);
    assert!(
        wire.wait_for(Duration::from_secs(1), |f| our_advert(f)
            && f[6..12] == [0x00, 0x00, 0x5e, 0x00, 0x01, 0x3d]),
        "no advert of ours from the virtual MAC"
    );
    assert_eq!(
        wire.count(|f| our_advert(f) && f[6..12] != [0x00, 0x00, 0x5e, 0x00, 0x01, 0x3d]),
        0,
        "an advert of ours from another MAC"
    );
    // keepalived's own macvlan (vrrp.61 too) exists beside ours; the peer asks over k0.
    let seen = neighbour(&lan.peer);
    assert!(seen.contains(VMAC), "peer resolves the VIP to {seen:?}");

    assert!(me.stop().success(), "{}", me.log());
    lan.settle(&[VIP], Side::Peer, HANDOVER, Duration::ZERO, &[&me, &ka]);
    assert!(
        wait_until(HANDOVER, || link_shows(&lan.ours, "vrrp.61").is_empty()),
        "our macvlan outlived us"
    );
    // The client's view (ours, now) of the VIP's MAC is the same virtual MAC.
    let seen = neighbour(&lan.ours);
    assert!(
        seen.contains(VMAC),
        "after the takeover the VIP is at {seen:?}"
    );
}

/// The same over IPv6: the VIP lives on our macvlan with the IPv6 virtual MAC
/// (`00:00:5e:00:02:VRID`), keepalived (its own `use_vmac`) accepts our adverts and stays
/// backup, and after we stop it holds the VIP, which the peer's neighbour entry still
/// reaches at the same MAC.
#[test]
fn ipv6_vip_lives_on_the_ipv6_virtual_mac() {
    require_root!();
    let lan = Lan::new("vmac6", 8);
    let peer = "global_defs {\n  router_id blt\n}\nvrrp_instance VI {\n  state BACKUP\n  \
                interface k0\n  virtual_router_id 62\n  priority 100\n  version 3\n  \
                advert_int 0.1\n  use_vmac\n  virtual_ipaddress {\n    fd00:8::100/64\n  }\n}\n";
    let ka = Daemon::keepalived(&lan.peer, peer);
    let mut me = ours_v3(
        &lan,
        "62",
        "200",
        "0.1",
        &["--vmac", "vrrp.62", "--vip", "fd00:8::100/64"],
    );
    lan.settle(
        &[VIP6],
        Side::Ours,
        HANDOVER,
        Duration::from_millis(500),
        &[&me, &ka],
    );
    assert!(
        link_shows(&lan.ours, "vrrp.62").contains(&format!("link/ether {VMAC6}")),
        "{}\n{}",
        link_shows(&lan.ours, "vrrp.62"),
        me.log()
    );
    let on = |dev: &str| {
        String::from_utf8_lossy(
            &lan.ours
                .output("ip", &["-o", "addr", "show", "dev", dev])
                .stdout,
        )
        .contains(&format!(" {VIP6}/64 "))
    };
    assert!(on("vrrp.62") && !on("v0"), "the VIP is on the macvlan only");
    // The peer resolves the VIP (neighbour discovery) to the virtual MAC.
    let neigh = || {
        lan.peer.run(|| {
            let socket = UdpSocket::bind("[::]:0").expect("socket");
            let _ = socket.send_to(b"who has it", (VIP6, 9));
        });
        let show = || {
            String::from_utf8_lossy(&lan.peer.output("ip", &["-6", "neigh", "show", VIP6]).stdout)
                .into_owned()
        };
        wait_until(Duration::from_secs(2), || show().contains("lladdr"));
        show()
    };
    let seen = neigh();
    assert!(seen.contains(VMAC6), "peer resolves the VIP to {seen:?}");

    assert!(me.stop().success(), "{}", me.log());
    lan.settle(&[VIP6], Side::Peer, HANDOVER, Duration::ZERO, &[&me, &ka]);
    assert!(
        wait_until(HANDOVER, || link_shows(&lan.ours, "vrrp.62").is_empty()),
        "our macvlan outlived us"
    );
}

/// keepalived's `vmac_xmit_base`: the VIP still lives on the macvlan, but the adverts leave
/// from the base interface, with its own MAC.
#[test]
fn vmac_xmit_base_sends_adverts_from_the_base_interface() {
    require_root!();
    let lan = Lan::new("vmacb", 9);
    let wire = balancer_tests::capture::Capture::start(&lan.peer, "k0");
    let base_mac = lan.ours.mac("v0");
    let mut me = ours_v3(
        &lan,
        "63",
        "200",
        "0.1",
        &[
            "--vmac",
            "vrrp.63",
            "--vmac-xmit-base",
            "--vip",
            "198.18.9.100/24",
        ],
    );
    assert!(
        wait_until(HANDOVER, || addr_on(&lan.ours, "vrrp.63", "198.18.9.100")),
        "the VIP never reached the macvlan\n{}",
        me.log()
    );
    let our_advert = advert_from([198, 18, 9, 1]);
    assert!(
        wire.wait_for(Duration::from_secs(1), |f| our_advert(f)
            && f[6..12] == base_mac),
        "no advert of ours from the base interface's MAC\n{}",
        me.log()
    );
    assert_eq!(
        wire.count(|f| our_advert(f) && f[6..12] != base_mac),
        0,
        "an advert of ours from the virtual MAC"
    );
    assert!(me.stop().success(), "{}", me.log());
}
