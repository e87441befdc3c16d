//! The IPVS data plane (`dataplane = "ipvs"`), in a guest whose kernel has IPVS (this
//! host's has none): see `balancer_tests::vm` for the guest and `src/bin/ipvs_guest.rs` for
//! what runs inside it. Each test boots one guest under qemu (TCG), a few seconds.

use std::{path::Path, time::Duration};

use balancer_tests::{daemon::balancer_binary, vm::Guest};

/// A guest with IPVS and its schedulers, veth, ipvsadm and iproute2, and our binaries.
/// `None` (the test says SKIPPED) when the guest kernel is missing and this is not root:
/// `cargo xtask setup` unpacks it, and CI, as root, always has it.
fn guest() -> Option<Guest> {
    if !balancer_tests::vm::kernel_root().join("boot").exists() && !balancer_tests::is_root() {
        eprintln!("SKIPPED: no guest kernel (run `sudo cargo xtask setup`)");
        return None;
    }
    let mut g = Guest::new();
    g.modules(&[
        "ip_vs",
        "ip_vs_rr",
        "ip_vs_wrr",
        "ip_vs_lc",
        "ip_vs_wlc",
        "ip_vs_sed",
        "ip_vs_nq",
        "ip_vs_sh",
        "ip_vs_dh",
        "ip_vs_mh",
        "veth",
    ]);
    g.program(
        Path::new(env!("CARGO_BIN_EXE_ipvs_guest")),
        Path::new("/opt/balancer/ipvs_guest"),
    );
    g.program(&balancer_binary(), Path::new("/opt/balancer/balancer"));
    for tool in ["/usr/sbin/ipvsadm", "/usr/bin/ip"] {
        g.program(Path::new(tool), Path::new(tool));
    }
    Some(g)
}

fn run(scenario: &str, expect: &[&str]) {
    let Some(guest) = guest() else { return };
    let out = guest.run(
        &["/opt/balancer/ipvs_guest", scenario],
        Duration::from_mins(4),
    );
    // Shown with --nocapture, and by cargo when the test fails.
    println!("{}", out.console);
    assert_eq!(out.status, Some(0), "guest console:\n{}", out.console);
    let lines = out.lines();
    let done = format!("ok {scenario}");
    assert!(
        lines.contains(&done.as_str()),
        "{done:?} missing; guest console:\n{}",
        out.console
    );
    for start in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(start)),
            "{start:?} missing; guest console:\n{}",
            out.console
        );
    }
}

#[test]
fn ipvs_backend_programs_the_kernel_as_ipvsadm_reads_it() {
    run(
        "dataplane",
        &[
            "ok apply",
            "ok weights",
            "ok change",
            "ok families",
            "ok refused",
            "ok timeouts",
            "ok remove",
        ],
    );
}

#[test]
fn the_daemon_on_ipvs_forwards_and_follows_its_checkers() {
    run(
        "daemon",
        &[
            "ok daemon: programmed",
            "ok daemon: a failed check drains",
            "ok daemon: the real is back",
            "ok daemon: a reload changes the scheduler",
            "ok daemon: stopping removes",
            "ok daemon: --keep-state leaves the services",
        ],
    );
}

#[test]
fn lvs_sync_daemon_follows_vrrp_and_carries_connections_to_the_backup() {
    run(
        "sync",
        &[
            "ok sync: the MASTER runs the master daemon",
            "ok sync: a connection through the master",
            "ok sync: lvs_flush and lvs_flush_on_stop",
            "ok sync: after a failover",
            "ok sync: a reload restarts",
        ],
    );
}
