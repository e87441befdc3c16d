//! Layer 3: our VRRP (`balancer vrrp`) against Debian's keepalived on one link between two
//! namespaces ([`Lan`]). Each test checks that exactly one side holds the virtual address at every
//! steady state, that a stopping master hands it over (priority 0, RFC 5798 §6.4.3), and that
//! the new master announces it (gratuitous ARP or unsolicited NA, RFC 5798 §6.4.2). Needs root.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use balancer_tests::{
    capture::{Capture, is_gratuitous_arp, is_unsolicited_na},
    daemon::Daemon,
    require_root,
    vrrp::{Lan, Side},
};

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x100);
/// Long enough for a handover: a backup's `Master_Down_Interval` at the 1 s VRRPv2 interval is
/// 3.6 s, plus process start.
const HANDOVER: Duration = Duration::from_secs(6);

fn keepalived_conf(priority: u8, body: &str) -> String {
    format!(
        "global_defs {{\n  router_id blt\n}}\n\
         vrrp_instance VI {{\n  state BACKUP\n  interface k0\n  priority {priority}\n{body}\n}}\n"
    )
}

fn ours(lan: &Lan, priority: u8, extra: &[&str]) -> Daemon {
    let priority = priority.to_string();
    let mut args = vec!["vrrp", "--interface", "v0", "--priority", &priority];
    args.extend_from_slice(extra);
    Daemon::balancer(&lan.ours, &args)
}

const V3_BODY: &str = "  virtual_router_id 51\n  version 3\n  advert_int 0.2\n  \
                       virtual_ipaddress {\n    198.18.1.100/24\n  }";
const V3_ARGS: &[&str] = &[
    "--vrid",
    "51",
    "--version",
    "3",
    "--advert-int",
    "0.2",
    "--vip",
    "198.18.1.100/24",
];

#[test]
fn v3_ipv4_multicast_ours_master_then_keepalived_takes_over() {
    require_root!();
    let lan = Lan::new("vrrp", 1);
    let ka = Daemon::keepalived(&lan.peer, &keepalived_conf(100, V3_BODY));
    let mut me = ours(&lan, 200, V3_ARGS);
    lan.settle(
        &["198.18.1.100"],
        Side::Ours,
        HANDOVER,
        Duration::from_millis(800),
        &[&me, &ka],
    );

    let wire = Capture::start(&lan.ours, "v0");
    let ka_mac = lan.peer.mac("k0");
    let status = me.stop();
    assert!(status.success(), "balancer exit {status}\n{}", me.log());
    // Priority 0 lets keepalived take over after its Skew_Time, not Master_Down_Interval.
    lan.settle(
        &["198.18.1.100"],
        Side::Peer,
        HANDOVER,
        Duration::from_millis(400),
        &[&me, &ka],
    );
    assert!(
        wire.wait_for(Duration::from_secs(2), |f| f[6..12] == ka_mac
            && is_gratuitous_arp(f, VIP4)),
        "no gratuitous ARP from keepalived\n{}",
        ka.log()
    );
    let log = me.log();
    assert!(
        log.contains("state=\"MASTER\"") && log.contains("priority_zero_sent=1"),
        "{log}"
    );
}

#[test]
fn v3_ipv4_multicast_keepalived_master_then_we_take_over_leftover_vip_removed() {
    require_root!();
    let lan = Lan::new("vrrp", 1);
    // What a crashed run of ours would leave behind: removed before we elect.
    lan.ours
        .ip(&["addr", "add", "198.18.1.100/24", "dev", "v0"]);
    let mut ka = Daemon::keepalived(&lan.peer, &keepalived_conf(200, V3_BODY));
    let me = ours(&lan, 100, V3_ARGS);
    lan.settle(
        &["198.18.1.100"],
        Side::Peer,
        HANDOVER,
        Duration::from_millis(800),
        &[&me, &ka],
    );

    let wire = Capture::start(&lan.peer, "k0");
    let our_mac = lan.ours.mac("v0");
    let status = ka.stop();
    assert!(status.success(), "keepalived exit {status}\n{}", ka.log());
    lan.settle(
        &["198.18.1.100"],
        Side::Ours,
        HANDOVER,
        Duration::from_millis(400),
        &[&me, &ka],
    );
    assert!(
        wire.wait_for(Duration::from_secs(2), |f| f[6..12] == our_mac
            && is_gratuitous_arp(f, VIP4)),
        "no gratuitous ARP from us\n{}",
        me.log()
    );
}

#[test]
fn v2_auth_pass_elects_and_hands_over() {
    require_root!();
    let lan = Lan::new("vrrp", 1);
    let body = "  virtual_router_id 52\n  version 2\n  advert_int 1\n  \
                authentication {\n    auth_type PASS\n    auth_pass s3cret\n  }\n  \
                virtual_ipaddress {\n    198.18.1.100/24\n  }";
    let ka = Daemon::keepalived(&lan.peer, &keepalived_conf(100, body));
    let args = [
        "--vrid",
        "52",
        "--version",
        "2",
        "--auth-pass",
        "s3cret",
        "--vip",
        "198.18.1.100/24",
    ];
    let mut me = ours(&lan, 200, &args);
    // keepalived's Master_Down_Interval here is 3.6 s: holding beyond it shows that it hears
    // (and authenticates) our adverts.
    lan.settle(
        &["198.18.1.100"],
        Side::Ours,
        HANDOVER,
        Duration::from_secs(4),
        &[&me, &ka],
    );
    assert!(me.stop().success(), "{}", me.log());
    lan.settle(
        &["198.18.1.100"],
        Side::Peer,
        HANDOVER,
        Duration::ZERO,
        &[&me, &ka],
    );
}

/// keepalived's `auth_type AH`: each side holds backup past its `Master_Down_Interval` only
/// if it authenticates the master's adverts (HMAC-MD5-96, SPI, rising sequence numbers);
/// a restarted node picks the sequence up from the adverts it hears and takes over again.
#[test]
fn v2_auth_ah_elects_hands_over_and_a_restart_resyncs_the_sequence() {
    require_root!();
    let lan = Lan::new("vrrp", 1);
    let body = "  virtual_router_id 53\n  version 2\n  advert_int 1\n  \
                authentication {\n    auth_type AH\n    auth_pass s3cret\n  }\n  \
                virtual_ipaddress {\n    198.18.1.100/24\n  }";
    let ka = Daemon::keepalived(&lan.peer, &keepalived_conf(100, body));
    let args = [
        "--vrid",
        "53",
        "--version",
        "2",
        "--auth-pass",
        "s3cret",
        "--auth-type",
        "AH",
        "--vip",
        "198.18.1.100/24",
    ];
    let mut me = ours(&lan, 200, &args);
    let hold = Duration::from_secs(4);
    // keepalived stays backup beyond its 3.6 s Master_Down_Interval: it accepts our AH.
    lan.settle(&["198.18.1.100"], Side::Ours, HANDOVER, hold, &[&me, &ka]);
    let wire = Capture::start(&lan.ours, "v0");
    assert!(
        wire.wait_for(Duration::from_secs(3), |f| f.len() > 23 + 20
            && f[12..14] == [8, 0]
            && f[23] == 51
            && f[34] == 112),
        "no AH advert (IP protocol 51 carrying VRRP) on the wire"
    );
    assert!(me.stop().success(), "{}", me.log());
    // Our priority-0 advert is authenticated too: keepalived takes over at once.
    lan.settle(&["198.18.1.100"], Side::Peer, HANDOVER, hold, &[&me, &ka]);
    // Restarted, ours starts from sequence 0, below keepalived's: it must take the sequence
    // from keepalived's adverts, then preempt with numbers keepalived accepts.
    let mut me = ours(&lan, 200, &args);
    lan.settle(
        &["198.18.1.100"],
        Side::Ours,
        HANDOVER * 2,
        hold,
        &[&me, &ka],
    );
    assert!(me.stop().success(), "{}", me.log());
}

#[test]
fn v3_ipv6_keepalived_hands_over_and_our_na_is_seen() {
    require_root!();
    let lan = Lan::new("vrrp", 1);
    let body = "  virtual_router_id 53\n  version 3\n  advert_int 0.2\n  \
                virtual_ipaddress {\n    fd00:1::100/64\n  }";
    let mut ka = Daemon::keepalived(&lan.peer, &keepalived_conf(200, body));
    let args = [
        "--vrid",
        "53",
        "--advert-int",
        "0.2",
        "--vip",
        "fd00:1::100/64",
    ];
    let mut me = ours(&lan, 100, &args);
    lan.settle(
        &["fd00:1::100"],
        Side::Peer,
        HANDOVER,
        Duration::from_millis(800),
        &[&me, &ka],
    );

    let wire = Capture::start(&lan.peer, "k0");
    let our_mac = lan.ours.mac("v0");
    assert!(ka.stop().success(), "{}", ka.log());
    lan.settle(
        &["fd00:1::100"],
        Side::Ours,
        HANDOVER,
        Duration::ZERO,
        &[&me, &ka],
    );
    assert!(
        wire.wait_for(Duration::from_secs(2), |f| f[6..12] == our_mac
            && is_unsolicited_na(f, VIP6)),
        "no unsolicited neighbour advertisement from us\n{}",
        me.log()
    );
    // A lower-priority keepalived that starts now must hear our IPv6 adverts and stay backup
    // past its `Master_Down_Interval` (0.6 s + skew).
    let ka2 = Daemon::keepalived(&lan.peer, &keepalived_conf(50, body));
    lan.settle(
        &["fd00:1::100"],
        Side::Ours,
        HANDOVER,
        Duration::from_millis(1500),
        &[&me, &ka2],
    );
    assert!(me.stop().success(), "{}", me.log());
    lan.settle(
        &["fd00:1::100"],
        Side::Peer,
        HANDOVER,
        Duration::ZERO,
        &[&me, &ka2],
    );
}

#[test]
fn v3_unicast_peers_elect_without_multicast() {
    require_root!();
    let lan = Lan::new("vrrp", 1);
    let body = "  virtual_router_id 54\n  version 3\n  advert_int 0.2\n  \
                unicast_src_ip 198.18.1.2\n  unicast_peer {\n    198.18.1.1\n  }\n  \
                virtual_ipaddress {\n    198.18.1.100/24\n  }";
    let wire = Capture::start(&lan.ours, "v0");
    let ka = Daemon::keepalived(&lan.peer, &keepalived_conf(100, body));
    let mut args = V3_ARGS.to_vec();
    args.extend(["--unicast-peer", "198.18.1.2"]);
    args[1] = "54";
    let mut me = ours(&lan, 200, &args);
    lan.settle(
        &["198.18.1.100"],
        Side::Ours,
        HANDOVER,
        Duration::from_secs(1),
        &[&me, &ka],
    );
    assert!(me.stop().success(), "{}", me.log());
    lan.settle(
        &["198.18.1.100"],
        Side::Peer,
        HANDOVER,
        Duration::from_millis(400),
        &[&me, &ka],
    );

    let vrrp_to = |f: &[u8], dst: [u8; 4]| {
        f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 112 && f[30..34] == dst
    };
    assert!(
        wire.count(|f| vrrp_to(f, [198, 18, 1, 2])) > 0,
        "no unicast adverts from us"
    );
    assert!(
        wire.count(|f| vrrp_to(f, [198, 18, 1, 1])) > 0,
        "no unicast adverts from keepalived"
    );
    assert_eq!(
        wire.count(|f| vrrp_to(f, [224, 0, 0, 18])),
        0,
        "multicast adverts seen"
    );
}

/// Ours at priority 200 with `args`, keepalived at 100 with [`V3_BODY`]: once ours holds
/// `vips` alone (checked for a second, past keepalived's `Master_Down_Interval`), the LAN and
/// both daemons.
fn ours_master_over_keepalived(args: &[&str], vips: &[&str]) -> (Lan, Daemon, Daemon) {
    let lan = Lan::new("vrrp", 1);
    let ka = Daemon::keepalived(&lan.peer, &keepalived_conf(100, V3_BODY));
    let me = ours(&lan, 200, args);
    lan.settle(
        vips,
        Side::Ours,
        HANDOVER,
        Duration::from_secs(1),
        &[&me, &ka],
    );
    (lan, ka, me)
}

/// A flapping link (ours, then the shared link seen from both sides) puts the instances in
/// FAULT and back, again and again; once it is steady, exactly one router holds the VIP (the
/// higher priority, ours) and keeps it.
#[test]
fn link_flaps_leave_exactly_one_master() {
    require_root!();
    let (lan, ka, me) = ours_master_over_keepalived(V3_ARGS, &["198.18.1.100"]);
    for (ns, dev) in [(&lan.ours, "v0"), (&lan.peer, "k0"), (&lan.ours, "v0")] {
        for pause in [50, 150, 300] {
            ns.ip(&["link", "set", dev, "down"]);
            std::thread::sleep(Duration::from_millis(pause));
            ns.ip(&["link", "set", dev, "up"]);
            std::thread::sleep(Duration::from_millis(pause));
        }
    }
    // Past keepalived's Master_Down_Interval (0.6 s + skew) several times over.
    lan.settle(
        &["198.18.1.100"],
        Side::Ours,
        HANDOVER,
        Duration::from_secs(2),
        &[&me, &ka],
    );
    let log = me.log();
    assert!(
        log.contains("state=\"FAULT\""),
        "the flaps were seen\n{log}"
    );
}

/// `virtual_ipaddress_excluded`: the master owns the excluded addresses (here of both
/// families) with the VIP, yet its adverts list the VIP only: keepalived, which checks the
/// address list, stays backup and takes the VIP alone when we stop.
#[test]
fn excluded_addresses_follow_the_vip_but_stay_out_of_adverts() {
    require_root!();
    let mut args = V3_ARGS.to_vec();
    args.extend([
        "--vip-excluded",
        "198.18.1.101/24",
        "--vip-excluded",
        "fd00:1::101/64",
    ]);
    let (lan, ka, mut me) =
        ours_master_over_keepalived(&args, &["198.18.1.100", "198.18.1.101", "fd00:1::101"]);
    assert!(me.stop().success(), "{}", me.log());
    lan.settle(
        &["198.18.1.100"],
        Side::Peer,
        HANDOVER,
        Duration::ZERO,
        &[&me, &ka],
    );
    for gone in ["198.18.1.101", "fd00:1::101"] {
        assert_eq!(lan.holders(gone), (false, false), "{gone} after our stop");
    }
    // Our adverts matched keepalived's address list: it never logged a mismatch.
    let log = ka.log();
    assert!(
        !log.contains("not present in") && !log.contains("bogus"),
        "{log}"
    );
}
