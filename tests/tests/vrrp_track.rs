//! Layer 3: VRRP tracking and notify scripts with the `balancer vrrp` binary. Our router
//! (`v0`, priority 150) and a peer (`k0`, priority 100; Debian's keepalived or a second
//! `balancer vrrp`) share one link; a second veth pair (`t0` ours, `t1` the peer's) is the
//! tracked interface. Each test checks who holds the virtual address as trackers change, and
//! what notify scripts were given. Needs root.

use std::{os::unix::fs::PermissionsExt as _, time::Duration};

use balancer_tests::{
    daemon::Daemon,
    lab::TempDir,
    require_root, veth_pair,
    vrrp::{Lan, Side, ours_v3},
    wait_until,
};

const VIP: &str = "198.18.3.100";
/// A handover at a 0.2 s advert interval takes about 0.8 s; process start and script
/// intervals come on top.
const HANDOVER: Duration = Duration::from_secs(5);

fn lan() -> Lan {
    let lan = Lan::new("track", 3);
    veth_pair(&lan.ours, "t0", &lan.peer, "t1");
    lan
}

/// Waits until the VIP is on `side` only, then checks that it stays there for `hold`.
fn settle(lan: &Lan, side: Side, hold: Duration, daemons: &[&Daemon]) {
    lan.settle(&[VIP], side, HANDOVER, hold, daemons);
}

fn ours(lan: &Lan, extra: &[&str]) -> Daemon {
    let mut args = vec!["--vip", "198.18.3.100/24"];
    args.extend_from_slice(extra);
    ours_v3(lan, "61", "150", "0.2", &args)
}

/// (a) A failing `track_script` lowers our priority below keepalived's, which takes the VIP;
/// once the script succeeds again we preempt it.
#[test]
fn failing_track_script_hands_the_vip_to_keepalived_and_back() {
    require_root!();
    let lan = lan();
    let dir = TempDir::new("track-script");
    let flag = dir.file("fail");
    let conf = "global_defs {\n  router_id blt\n}\nvrrp_instance VI {\n  state BACKUP\n  \
                interface k0\n  priority 100\n  virtual_router_id 61\n  version 3\n  \
                advert_int 0.2\n  virtual_ipaddress {\n    198.18.3.100/24\n  }\n}\n";
    let ka = Daemon::keepalived(&lan.peer, conf);
    // No shell: the words go to test(1) as they are.
    let check = format!("/usr/bin/test ! -e '{}'", flag.display());
    let me = ours(
        &lan,
        &[
            "--track-script",
            &check,
            "--script-interval",
            "0.1",
            "--script-weight",
            "-100",
            "--script-fall",
            "2",
        ],
    );
    settle(&lan, Side::Ours, Duration::from_millis(600), &[&me, &ka]);

    std::fs::write(&flag, "").expect("flag");
    settle(&lan, Side::Peer, Duration::from_millis(600), &[&me, &ka]);
    std::fs::remove_file(&flag).expect("unflag");
    settle(&lan, Side::Ours, Duration::from_millis(400), &[&me, &ka]);
    let log = me.log();
    assert!(
        log.contains("ok=false") && log.contains("ok=true"),
        "script status changes not logged\n{log}"
    );
}

/// (b) Our tracked interface going down puts us in FAULT (priority 0 advert) and a second
/// `balancer vrrp` takes over; when it comes back up we preempt again.
#[test]
fn tracked_interface_down_is_fault_and_the_peer_takes_over() {
    require_root!();
    let lan = lan();
    let peer = Daemon::balancer(
        &lan.peer,
        &[
            "vrrp",
            "--interface",
            "k0",
            "--vrid",
            "61",
            "--priority",
            "100",
            "--version",
            "3",
            "--advert-int",
            "0.2",
            "--vip",
            "198.18.3.100/24",
        ],
    );
    let me = ours(&lan, &["--track-interface", "t0"]);
    settle(&lan, Side::Ours, Duration::from_millis(600), &[&me, &peer]);

    lan.ours.ip(&["link", "set", "t0", "down"]);
    // Priority 0 lets the peer take over after its skew time (under 0.2 s).
    settle(&lan, Side::Peer, Duration::from_millis(600), &[&me, &peer]);
    assert!(me.log().contains("state=\"FAULT\""), "{}", me.log());

    lan.ours.ip(&["link", "set", "t0", "up"]);
    settle(&lan, Side::Ours, Duration::from_millis(400), &[&me, &peer]);
}

/// (c) `notify_master`, `notify_backup`, `notify_fault` and `notify_stop` get no arguments; `notify` gets its configured words
/// and then INSTANCE, the name, the state and the priority, in the order states happen.
#[test]
fn notify_scripts_get_keepalived_arguments_in_order() {
    require_root!();
    let lan = lan();
    let dir = TempDir::new("notify");
    let trace = dir.file("trace");
    let record = |name: &str| {
        dir.script(
            &format!("{name}.sh"),
            &format!(
                "line='{name}'\nfor a in \"$@\"; do line=\"$line [$a]\"; done\necho \"$line\" >> '{}'",
                trace.display()
            ),
        )
    };
    let (master, backup, fault, stop) = (
        record("master"),
        record("backup"),
        record("fault"),
        record("stop"),
    );
    let generic = format!("{} 'first word'", record("notify"));
    let mut me = ours(
        &lan,
        &[
            "--name",
            "VI_track",
            "--track-interface",
            "t0",
            "--enable-script-security",
            "--script-user",
            "root",
            "--notify-master",
            &master,
            "--notify-backup",
            &backup,
            "--notify-fault",
            &fault,
            "--notify-stop",
            &stop,
            "--notify",
            &generic,
        ],
    );
    let lines = || {
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let notify = |state: &str| format!("notify [first word] [INSTANCE] [VI_track] [{state}] [150]");
    let mut expected = Vec::new();
    let mut expect = |states: &[&str], me: &Daemon| {
        for state in states {
            expected.push(state.to_lowercase());
            expected.push(notify(state));
        }
        assert!(
            wait_until(HANDOVER, || lines() == expected),
            "notify trace {:?}, expected {expected:?}\n{}",
            lines(),
            me.log()
        );
    };
    expect(&["BACKUP", "MASTER"], &me);
    lan.ours.ip(&["link", "set", "t0", "down"]);
    expect(&["FAULT"], &me);
    lan.ours.ip(&["link", "set", "t0", "up"]);
    expect(&["BACKUP", "MASTER"], &me);
    assert!(me.stop().success(), "{}", me.log());
    // The stop scripts ran before the process exited.
    expected.push("stop".to_owned());
    expected.push(notify("STOP"));
    assert_eq!(lines(), expected, "{}", me.log());
}

/// Scripts run as `--script-user`: an unweighted track script that succeeds only as
/// nobody:nogroup lets the instance out of FAULT and make itself master.
#[test]
fn track_scripts_run_as_the_script_user() {
    require_root!();
    let lan = lan();
    let check = "/usr/bin/sh -c 'test \"$(id -u):$(id -g)\" = 65534:65534'";
    let me = ours(
        &lan,
        &[
            "--script-user",
            "nobody:nogroup",
            "--track-script",
            check,
            "--script-interval",
            "0.2",
        ],
    );
    settle(&lan, Side::Ours, Duration::from_millis(400), &[&me]);
    assert!(!me.log().contains("state=\"FAULT\""), "{}", me.log());
}

/// With `--enable-script-security`, a script that would run as root from a directory anyone
/// can write to is refused at start, naming the directory.
#[test]
fn script_security_refuses_a_replaceable_root_script() {
    require_root!();
    let lan = lan();
    let dir = TempDir::new("insecure");
    let script = dir.script("up.sh", "exit 0");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut me = ours(
        &lan,
        &[
            "--enable-script-security",
            "--script-user",
            "root",
            "--notify-master",
            &script,
        ],
    );
    assert!(
        wait_until(HANDOVER, || me
            .log()
            .contains("can be changed by a user other than root")),
        "{}",
        me.log()
    );
    assert!(!me.stop().success(), "{}", me.log());
    assert!(
        me.log()
            .contains(&dir.path().to_string_lossy().into_owned()),
        "{}",
        me.log()
    );
    assert!(!lan.ours.has_addr(VIP));
}

/// `track_file` with weight 0: any value but 0 is FAULT (the VIP goes), 0 again recovers.
#[test]
fn track_file_with_weight_zero_faults_on_a_non_zero_value() {
    require_root!();
    let lan = lan();
    let dir = TempDir::new("track-file");
    let file = dir.file("status");
    std::fs::write(&file, "0\n").expect("status");
    let tracked = format!("{}:0", file.display());
    let me = ours(&lan, &["--track-file", &tracked]);
    settle(&lan, Side::Ours, Duration::from_millis(300), &[&me]);
    std::fs::write(&file, "1\n").expect("status");
    // Polled every second.
    assert!(
        wait_until(HANDOVER, || !lan.ours.has_addr(VIP)),
        "{}",
        me.log()
    );
    // The transition is logged as the addresses go, not necessarily before.
    assert!(
        wait_until(Duration::from_secs(2), || me
            .log()
            .contains("state=\"FAULT\"")),
        "{}",
        me.log()
    );
    std::fs::write(&file, "0\n").expect("status");
    settle(&lan, Side::Ours, Duration::ZERO, &[&me]);
}

/// `balancer run` in our namespace on `conf`, written as `keepalived.conf` in `dir`.
fn balancer_run(lan: &Lan, dir: &TempDir, conf: &str) -> Daemon {
    let path = dir.file("keepalived.conf");
    std::fs::write(&path, conf).expect("config");
    let path = path.to_str().unwrap();
    Daemon::balancer(&lan.ours, &["run", "--config", path, "--interval", "0.2"])
}

/// (e) Through `balancer run` and a configuration file: a weighted `track_interface` lowers
/// our priority (150 - 60 < 100) so that keepalived takes over without a FAULT (the group
/// keeps member weights: `sync_group_tracking_weight`), and a `track_file` of our sync
/// group (unweighted there) puts the whole group in FAULT.
#[test]
fn configured_tracker_weights_and_sync_group_trackers_reach_the_instance() {
    require_root!();
    let lan = lan();
    let dir = TempDir::new("track-config");
    let flag = dir.file("flag");
    let conf = "global_defs {\n  router_id blt\n}\nvrrp_instance VI {\n  state BACKUP\n  \
                interface k0\n  priority 100\n  virtual_router_id 62\n  version 3\n  \
                advert_int 0.2\n  virtual_ipaddress {\n    198.18.3.100/24\n  }\n}\n";
    let ka = Daemon::keepalived(&lan.peer, conf);
    let ours_conf = format!(
        "vrrp_track_file flag {{\n  file {}\n  init_file 0 overwrite\n}}\n\
         vrrp_sync_group G {{\n  group {{\n    VI\n    VI2\n  }}\n  sync_group_tracking_weight\n  track_file {{\n    flag weight 5\n  }}\n}}\n\
         vrrp_instance VI2 {{\n  interface v0\n  virtual_router_id 63\n  priority 150\n  \
         version 3\n  advert_int 0.2\n  virtual_ipaddress {{\n    198.18.3.101/24\n  }}\n}}\n\
         vrrp_instance VI {{\n  interface v0\n  virtual_router_id 62\n  priority 150\n  \
         version 3\n  advert_int 0.2\n  virtual_ipaddress {{\n    198.18.3.100/24\n  }}\n  \
         track_interface {{\n    t0 weight -60\n  }}\n}}\n",
        flag.display()
    );
    let me = balancer_run(&lan, &dir, &ours_conf);
    settle(&lan, Side::Ours, Duration::from_millis(600), &[&me, &ka]);
    assert_eq!(
        std::fs::read_to_string(&flag).unwrap().trim(),
        "0",
        "init_file"
    );

    lan.ours.ip(&["link", "set", "t0", "down"]);
    settle(&lan, Side::Peer, Duration::from_millis(600), &[&me, &ka]);
    assert!(
        !me.log().contains("state=\"FAULT\""),
        "a weighted tracker is no FAULT\n{}",
        me.log()
    );
    lan.ours.ip(&["link", "set", "t0", "up"]);
    settle(&lan, Side::Ours, Duration::from_millis(400), &[&me, &ka]);

    assert!(
        lan.ours.has_addr("198.18.3.101"),
        "VI2, the group's other member, is master"
    );
    std::fs::write(&flag, "1\n").expect("flag");
    settle(&lan, Side::Peer, Duration::from_millis(600), &[&me, &ka]);
    assert!(me.log().contains("state=\"FAULT\""), "{}", me.log());
    assert!(
        wait_until(HANDOVER, || !lan.ours.has_addr("198.18.3.101")),
        "the whole group is in FAULT\n{}",
        me.log()
    );
    std::fs::write(&flag, "0\n").expect("unflag");
    settle(&lan, Side::Ours, Duration::from_millis(400), &[&me, &ka]);
}

/// (f) `smtp_alert`: the instance's state changes and a real's failure (with the lost
/// quorum) are mailed to `notification_email` through `smtp_server`, with keepalived's
/// subjects.
#[test]
fn smtp_alerts_are_mailed_with_keepalived_subjects() {
    require_root!();
    let lan = lan();
    let (_sink, mails) = balancer_tests::lab::smtp_sink(&lan.ours, 2525);
    let dir = TempDir::new("smtp-alert");
    let conf = "global_defs {\n  router_id lb-test\n  notification_email {\n    ops@example.org\n  }\n  \
                notification_email_from lb@example.org\n  smtp_server 127.0.0.1 2525\n  \
                smtp_connect_timeout 5\n}\nvrrp_instance VI {\n  interface v0\n  \
                virtual_router_id 64\n  priority 150\n  version 3\n  advert_int 0.2\n  \
                smtp_alert\n  virtual_ipaddress {\n    198.18.3.100/24\n  }\n}\n\
                virtual_server 198.18.3.100 80 {\n  delay_loop 1\n  lb_algo rr\n  lb_kind DR\n  \
                protocol TCP\n  smtp_alert\n  real_server 198.18.3.2 80 {\n    TCP_CHECK {\n      \
                connect_timeout 1\n    }\n  }\n}\n";
    let mut me = balancer_run(&lan, &dir, conf);
    let subjects = || -> Vec<String> {
        mails
            .lock()
            .unwrap()
            .iter()
            .flat_map(|m| {
                m.lines()
                    .filter(|l| l.starts_with("Subject: "))
                    .map(str::to_owned)
            })
            .collect()
    };
    let wanted = [
        "Subject: [lb-test] VRRP Instance VI - Entering MASTER state",
        "Subject: [lb-test] Realserver 198.18.3.2:80 of virtual server",
        "Subject: [lb-test] Virtualserver ",
    ];
    let all_seen = || {
        wanted
            .iter()
            .all(|w| subjects().iter().any(|s| s.starts_with(w)))
    };
    assert!(
        wait_until(Duration::from_secs(10), all_seen),
        "{:#?}\n{}",
        subjects(),
        me.log()
    );
    let text = mails.lock().unwrap().join("\n");
    assert!(
        text.contains("From: lb@example.org") && text.contains("To: ops@example.org"),
        "{text}"
    );
    assert!(
        text.contains("=> VRRP Instance is now owning VRRP VIPs <="),
        "{text}"
    );
    assert!(
        subjects().iter().any(|s| s.ends_with(" - DOWN")),
        "{:#?}",
        subjects()
    );
    let status = me.stop();
    assert!(status.success(), "{status}");
    assert!(
        wait_until(Duration::from_secs(5), || subjects()
            .iter()
            .any(|s| s == "Subject: [lb-test] VRRP Instance VI - Stopping")),
        "{:#?}",
        subjects()
    );
}

/// A process started for a test, killed when dropped (on panic too).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (f) `track_process` with weight 0 (keepalived's default): FAULT while no process of the
/// name runs, up as soon as one starts, FAULT again when it exits. The process is a copy of
/// `sleep` under a name no other process has. The kernel's process events reach only the
/// initial network namespace, so here (in a test namespace) the tracker reads /proc each
/// second; the events themselves are tested in `vrrp::track::process`.
#[test]
fn track_process_faults_while_its_process_is_missing() {
    require_root!();
    let lan = lan();
    let dir = TempDir::new("track-process");
    let exe = dir.file("blt-trkproc");
    std::fs::copy("/bin/sleep", &exe).expect("copy sleep");
    let conf = "vrrp_track_process daemon {\n  process blt-trkproc\n  quorum 1\n}\n\
                vrrp_instance VI {\n  interface v0\n  virtual_router_id 62\n  priority 150\n  \
                version 3\n  advert_int 0.2\n  virtual_ipaddress {\n    198.18.3.100/24\n  }\n  \
                track_process {\n    daemon\n  }\n}\n";
    let me = balancer_run(&lan, &dir, conf);
    assert!(
        wait_until(HANDOVER, || me.log().contains("state=\"FAULT\"")),
        "{}",
        me.log()
    );
    assert!(!lan.ours.has_addr(VIP), "{}", me.log());

    let process = Running(
        std::process::Command::new(&exe)
            .arg("60")
            .spawn()
            .expect("start the tracked process"),
    );
    assert!(
        wait_until(HANDOVER, || lan.ours.has_addr(VIP)),
        "{}",
        me.log()
    );
    assert!(me.log().contains("quorum gained"), "{}", me.log());

    drop(process);
    assert!(
        wait_until(HANDOVER, || !lan.ours.has_addr(VIP)),
        "{}",
        me.log()
    );
    assert!(me.log().contains("quorum lost"), "{}", me.log());
}

/// (g) `vrrp_startup_delay`: the instance neither sends nor takes the VIP before the delay
/// has passed (a lower bound, which a slow machine only makes later), then starts as usual.
#[test]
fn vrrp_startup_delay_holds_the_instances_back() {
    require_root!();
    let lan = lan();
    let dir = TempDir::new("startup-delay");
    let conf = "global_defs {\n  vrrp_startup_delay 2.5\n}\n\
                vrrp_instance VI {\n  interface v0\n  virtual_router_id 62\n  priority 150\n  \
                version 3\n  advert_int 0.2\n  virtual_ipaddress {\n    198.18.3.100/24\n  }\n}\n";
    let started = std::time::Instant::now();
    let me = balancer_run(&lan, &dir, conf);
    assert!(
        wait_until(HANDOVER, || me.log().contains("delaying startup")),
        "{}",
        me.log()
    );
    while started.elapsed() < Duration::from_secs(2) {
        assert!(
            !lan.ours.has_addr(VIP),
            "VIP before the delay\n{}",
            me.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        wait_until(HANDOVER, || lan.ours.has_addr(VIP)),
        "{}",
        me.log()
    );
}
