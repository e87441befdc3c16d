//! Layer 3: `vrrp_sync_group` with `balancer run` against Debian's keepalived. Our router
//! (`v0`, priority 150) runs two instances in one sync group; only the first tracks an
//! interface (`trk`, a second veth pair). keepalived (`k0`, priority 100) runs the same two instances
//! without a group. When the tracked interface goes down, keepalived's group semantics move
//! *both* addresses to the peer, not only the tracking instance's; when it comes back, both
//! return. The group's notify script sees GROUP transitions, and the notify FIFO keepalived's
//! lines. Needs root.

use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _, time::Duration};

use balancer_tests::{
    daemon::Daemon,
    lab::TempDir,
    require_root, veth_pair,
    vrrp::{Lan, Side},
    wait_until,
};

const VIP_A: &str = "198.18.4.100";
const VIP_B: &str = "198.18.4.101";
/// A handover at 0.1 s adverts takes well under a second; process start comes on top.
const HANDOVER: Duration = Duration::from_secs(5);
/// Up to the VRRP instances' start.
const STARTUP: Duration = Duration::from_mins(1);

const OURS: &str = r"
global_defs {
    vrrp_version 3
    notify_fifo FIFO_PATH
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
    // Made here, so the daemon must leave it; read without blocking, all at the end.
    let fifo = dir.file("fifo");
    let fifo_c = std::ffi::CString::new(fifo.to_str().expect("utf-8 path")).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO");
    let conf = dir.file("keepalived.conf");
    let text = OURS
        .replace("NOTIFY_SCRIPT", &script)
        .replace("FIFO_PATH", fifo.to_str().expect("utf-8 path"));
    std::fs::write(&conf, text).expect("config");
    let ka = Daemon::keepalived(&lan.peer, PEER);
    let mut me = Daemon::balancer(
        &lan.ours,
        &["run", "--config", conf.to_str().expect("utf-8 path")],
    );
    // `balancer run` loads the XDP program first, which takes seconds on a busy machine.
    assert!(
        wait_until(STARTUP, || me.log().contains("VRRP instance starting")),
        "{}",
        me.log()
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
    // keepalived's FIFO lines: the group's, and each instance's with its priority.
    let mut lines = String::new();
    let _ = reader.read_to_string(&mut lines);
    for want in [
        "GROUP \"G\" FAULT 0",
        "INSTANCE \"VI_A\" FAULT 150",
        "INSTANCE \"VI_B\" FAULT 150",
        "INSTANCE \"VI_B\" MASTER 150",
        "GROUP \"G\" STOP 0",
    ] {
        assert!(lines.lines().any(|l| l == want), "{want} missing:\n{lines}");
    }
    assert!(fifo.exists(), "a FIFO the daemon did not create stays");
}
