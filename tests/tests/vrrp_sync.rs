//! Layer 3: `vrrp_sync_group` with `balancer run` against Debian's keepalived. Our router
//! (`v0`, priority 150) runs two instances in one sync group; only the first tracks an
//! interface (`trk`, a second veth pair). keepalived (`k0`, priority 100) runs the same two instances
//! without a group. When the tracked interface goes down, keepalived's group semantics move
//! *both* addresses to the peer, not only the tracking instance's; when it comes back, both
//! return. The group's notify script sees GROUP transitions. Needs root.

use std::time::Duration;

use balancer_tests::{
    daemon::Daemon,
    lab::TempDir,
    require_root, veth_pair,
    vrrp::{Lan, Side},
};

const VIP_A: &str = "198.18.4.100";
const VIP_B: &str = "198.18.4.101";
/// A handover at 0.1 s adverts takes well under a second; process start comes on top.
const HANDOVER: Duration = Duration::from_secs(5);

const OURS: &str = r"
global_defs {
    vrrp_version 3
}
vrrp_sync_group G {
    group {
        VI_A
        VI_B
    }
    notify NOTIFY_SCRIPT
}
vrrp_instance VI_A {
    interface v0
    virtual_router_id 71
    priority 150
    advert_int 0.1
    virtual_ipaddress {
        198.18.4.100/24
    }
    track_interface {
        trk
    }
}
vrrp_instance VI_B {
    interface v0
    virtual_router_id 72
    priority 150
    advert_int 0.1
    virtual_ipaddress {
        198.18.4.101/24
    }
}
";

const PEER: &str = r"
global_defs {
    router_id blt
    vrrp_version 3
}
vrrp_instance VI_A {
    state BACKUP
    interface k0
    virtual_router_id 71
    priority 100
    advert_int 0.1
    virtual_ipaddress {
        198.18.4.100/24
    }
}
vrrp_instance VI_B {
    state BACKUP
    interface k0
    virtual_router_id 72
    priority 100
    advert_int 0.1
    virtual_ipaddress {
        198.18.4.101/24
    }
}
";

#[test]
fn one_members_tracked_interface_down_moves_both_addresses() {
    require_root!();
    let lan = Lan::new("sync", 4);
    veth_pair(&lan.ours, "trk", &lan.peer, "trk-peer");
    let settle = |side, hold, daemons: &[&Daemon]| {
        lan.settle(&[VIP_A, VIP_B], side, HANDOVER, hold, daemons);
    };

    let dir = TempDir::new("sync");
    let trace = dir.file("trace");
    let script = dir.script("notify.sh", &format!("echo \"$@\" >> {}", trace.display()));
    let conf = dir.file("keepalived.conf");
    std::fs::write(&conf, OURS.replace("NOTIFY_SCRIPT", &script)).expect("config");
    let ka = Daemon::keepalived(&lan.peer, PEER);
    let mut me = Daemon::balancer(
        &lan.ours,
        &["run", "--config", conf.to_str().expect("utf-8 path")],
    );
    settle(Side::Ours, Duration::from_millis(500), &[&me, &ka]);

    // Only VI_A tracks trk; the group takes VI_B to FAULT with it.
    lan.ours.ip(&["link", "set", "trk", "down"]);
    settle(Side::Peer, Duration::from_millis(500), &[&me, &ka]);

    lan.ours.ip(&["link", "set", "trk", "up"]);
    settle(Side::Ours, Duration::from_millis(300), &[&me, &ka]);

    let status = me.stop();
    assert!(status.success(), "{status}: {}", me.log());
    let calls = std::fs::read_to_string(&trace).unwrap_or_default();
    let groups: Vec<&str> = calls.lines().filter(|l| l.starts_with("GROUP")).collect();
    // keepalived's convention for a group: GROUP NAME STATE 0, once per group transition.
    assert_eq!(
        groups,
        [
            "GROUP G BACKUP 0",
            "GROUP G MASTER 0",
            "GROUP G FAULT 0",
            "GROUP G BACKUP 0",
            "GROUP G MASTER 0",
            "GROUP G STOP 0"
        ],
        "{}",
        me.log()
    );
}
