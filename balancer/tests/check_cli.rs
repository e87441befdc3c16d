//! `balancer check`, our `keepalived -t`, as an operator runs it: exit status, the verdict,
//! and every warning beside the errors.

use std::{path::PathBuf, process::Command};

/// A keepalived.conf written for one test, removed when dropped.
struct Conf(PathBuf);

impl Conf {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("blt-{}-{name}.conf", std::process::id()));
        std::fs::write(&path, text).expect("write the configuration");
        Self(path)
    }
}

impl Drop for Conf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn check(conf: &Conf, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .arg("check")
        .arg("--config")
        .arg(&conf.0)
        .args(extra)
        .output()
        .expect("balancer check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const INSTANCE: &str = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 7\n    priority 100\n    virtual_ipaddress {\n        198.18.0.1/24\n    }\n}\n";

#[test]
fn a_valid_file_passes_with_its_warnings() {
    let conf = Conf::new(
        "valid",
        &format!("global_defs {{\n    snmp_socket tcp:localhost:705\n}}\n{INSTANCE}"),
    );
    let (ok, out, err) = check(&conf, &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(": valid"), "{out}");
    assert!(
        err.contains("warning:") && err.contains("snmp_socket"),
        "{err}"
    );
}

#[test]
fn an_invalid_file_fails_and_still_shows_its_warnings() {
    let conf = Conf::new(
        "invalid",
        &format!(
            "global_defs {{\n    snmp_socket tcp:localhost:705\n}}\n{}",
            INSTANCE.replace("priority 100", "priority 300")
        ),
    );
    let (ok, out, err) = check(&conf, &[]);
    assert!(!ok, "{out}{err}");
    assert!(!out.contains("valid"), "{out}");
    assert!(
        err.contains("warning:") && err.contains("snmp_socket"),
        "{err}"
    );
    assert!(err.contains("priority"), "{err}");
    // Validation's own warnings too: lvs_sync_daemon ignored on XDP, beside the error.
    let conf = Conf::new(
        "invalid-validation",
        &format!(
            "global_defs {{\n    lvs_sync_daemon eth0 inst VI_1\n}}\n{}",
            INSTANCE.replace("priority 100", "priority 300")
        ),
    );
    let (ok, _, err) = check(&conf, &[]);
    assert!(!ok);
    assert!(
        err.contains("warning:") && err.contains("lvs_sync_daemon"),
        "{err}"
    );
    // And --dataplane decides what is valid: fwmark is not on XDP, is on IPVS.
    let conf = Conf::new(
        "fwmark",
        "virtual_server fwmark 7 {\n    lb_kind DR\n    protocol TCP\n    real_server 198.18.1.2 {\n    }\n}\n",
    );
    assert!(!check(&conf, &[]).0);
    let (ok, out, err) = check(&conf, &["--dataplane", "ipvs"]);
    assert!(ok, "{out}{err}");
}
