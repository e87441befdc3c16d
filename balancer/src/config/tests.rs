use std::path::Path;

use super::*;
use crate::dataplane::xdp::AttachMode;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("lb.toml"), text)
}

#[test]
fn minimal_config_takes_defaults() {
    let c = parse("[xdp]\ninterfaces = [\"eth0\"]\n").unwrap();
    assert_eq!(c.dataplane, DataplaneKind::Xdp);
    assert_eq!(c.xdp.interfaces, ["eth0"]);
    assert_eq!(c.xdp.mode, AttachMode::Auto);
}

#[test]
fn mode_is_read() {
    let c = parse("[xdp]\ninterfaces = [\"a\", \"b\"]\nmode = \"generic\"\n").unwrap();
    assert_eq!(c.xdp.mode, AttachMode::Generic);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = parse("[xdp]\ninterfaces = [\"eth0\"]\nmod = \"driver\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("lb.toml:3:1: "), "{msg}");
    assert!(msg.contains("unknown field `mod`"), "{msg}");
    assert!(msg.contains("mode"), "valid keys should be listed: {msg}");
}

#[test]
fn bad_mode_lists_valid_values() {
    let err = parse("[xdp]\ninterfaces = [\"eth0\"]\nmode = \"native\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("lb.toml:3:8: "), "{msg}");
    assert!(
        msg.contains("auto") && msg.contains("driver") && msg.contains("generic"),
        "{msg}"
    );
}

#[test]
fn empty_interface_list_is_rejected() {
    let err = parse("[xdp]\ninterfaces = []\n").unwrap_err();
    assert!(err.to_string().contains("xdp.interfaces"), "{err}");
}

/// keepalived.conf(5)'s examples for the features we map, in one file.
const KEEPALIVED: &str = r#"! Configuration File for keepalived
global_defs {
   notification_email {
     acassen@firewall.loc
   }
   router_id LVS_DEVEL
   vrrp_garp_master_delay 10
}
vrrp_script chk_http {
    script "/usr/bin/curl -fs http://localhost/"
    interval 2
    weight -20
    fall 2
}
vrrp_sync_group VG_1 {
    group {
        VI_1
    }
}
vrrp_instance VI_1
{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        192.168.200.16/24 dev eth0
        192.168.200.17
    }
    track_script {
        chk_http
    }
    smtp_alert
}
virtual_server_group WEB {
    192.168.201.1-3 80
}
virtual_server 192.168.200.100 443 {
    delay_loop 6
    lb_algo rr
    lb_kind NAT
    persistence_timeout 50
    persistence_granularity 255.255.255.0
    protocol TCP
    sorry_server 192.168.200.200 1358
    real_server 192.168.201.100 443 {
        weight 1
        SSL_GET {
            url {
              path /
              digest ff20ad2481f97b1754ef3e12ecd3a9cc
            }
            connect_timeout 3
            retry 3
            delay_before_retry 3
        }
    }
}
virtual_server group WEB {
    lb_algo wrr
    lb_kind DR
    real_server 192.168.201.100 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 192.168.201.101 {
        MISC_CHECK {
            misc_path "/usr/local/bin/check 192.168.201.101"
        }
    }
}
"#;

fn from_keepalived_text(text: &str) -> Result<Loaded, ConfigError> {
    let tree = keepalived::parse(Path::new("keepalived.conf"), text)?;
    from_keepalived(Path::new("keepalived.conf"), &tree)
}

#[test]
fn keepalived_examples_convert_to_the_model() {
    use crate::model::{Method, Persistence, Protocol, Scheduler};

    let loaded = from_keepalived_text(KEEPALIVED).unwrap();
    let m = &loaded.validated.model;
    assert_eq!(m.vrrp.len(), 1);
    let vi = &m.vrrp[0];
    assert_eq!((vi.spec.config.vrid, vi.spec.config.priority), (51, 150));
    assert_eq!(vi.spec.vips.len(), 2);
    assert_eq!(vi.spec.vips[1].prefix, 32);
    assert!(vi.spec.config.auth.is_some());
    assert_eq!(vi.spec.config.garp.master_delay.as_secs(), 10);
    assert_eq!(vi.sync_group.as_deref(), Some("VG_1"));
    assert_eq!(vi.track_scripts, [("chk_http".to_owned(), None)]);
    assert_eq!(loaded.config.xdp.interfaces, ["eth0"]);

    assert_eq!(m.services.len(), 2);
    let https = &m.services[0];
    assert_eq!(
        (https.port, https.protocol, https.scheduler),
        (443, Protocol::Tcp, Scheduler::Rr)
    );
    assert_eq!(
        https.persistence,
        Some(Persistence {
            timeout_s: 50,
            prefix: 24
        })
    );
    assert_eq!(https.reals[0].method, Method::Nat);
    assert_eq!(https.sorry_server.as_ref().map(|s| s.port), Some(1358));
    let web = &m.services[1];
    assert_eq!(
        (web.vips.len(), web.port, web.scheduler),
        (3, 80, Scheduler::Wrr)
    );
    assert_eq!(web.reals[0].weight, 3);
    assert_eq!(
        web.reals[1].port, 80,
        "a real without port takes the virtual port"
    );
    assert_eq!(web.reals[1].method, Method::Dr);

    // Unimplemented keywords are warned with file, line and keyword, never dropped silently.
    let warnings = warning_lines(&loaded);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("keepalived.conf:3:4: global_defs.notification_email")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("keepalived.conf:38:5: vrrp_instance.VI_1.smtp_alert")),
        "{warnings:?}"
    );
}

#[test]
fn round_trip_through_lb_toml_gives_the_same_model() {
    let direct = from_keepalived_text(KEEPALIVED).unwrap();
    let text = direct.config.to_toml().unwrap();
    let via_toml = Config::load_text(Path::new("lb.toml"), &text).unwrap();
    assert_eq!(via_toml.config, direct.config);
    assert_eq!(via_toml.validated.model, direct.validated.model);
}

#[test]
fn keepalived_errors_name_the_keepalived_line() {
    let text = "vrrp_instance A {\n interface eth0\n virtual_router_id 300\n virtual_ipaddress {\n  198.18.0.1\n }\n}\n\
                vrrp_instance B {\n interface eth0\n virtual_router_id x\n}\n";
    let err = from_keepalived_text(text).unwrap_err().to_string();
    assert!(
        err.starts_with("keepalived.conf:10:2: vrrp_instance.B.virtual_router_id: \"x\""),
        "{err}"
    );
    let text = "vrrp_instance A {\n interface eth0\n virtual_router_id 300\n virtual_ipaddress {\n  198.18.0.1\n }\n}\n";
    let err = from_keepalived_text(text).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "keepalived.conf:3:2: vrrp_instance.A.virtual_router_id: 300; expected 1 to 255"
        ),
        "{err}"
    );
}

#[test]
fn format_is_detected_by_extension_then_content() {
    assert_eq!(
        detect(Path::new("a.toml"), "vrrp_instance x {"),
        Origin::LbToml
    );
    assert_eq!(detect(Path::new("keepalived.conf"), ""), Origin::Keepalived);
    assert_eq!(
        detect(Path::new("cfg"), "vrrp_instance VI_1 {\n}"),
        Origin::Keepalived
    );
    assert_eq!(
        detect(Path::new("cfg"), "[xdp]\ninterfaces = []"),
        Origin::LbToml
    );
}

#[test]
fn udp_check_and_ping_check_import_from_keepalived_and_round_trip() {
    let text = r"
virtual_server 198.18.0.100 53 {
    protocol UDP
    sorry_server_inhibit
    real_server 198.18.0.11 53 {
        notify_up /bin/true
        UDP_CHECK {
            payload 01 02 ab
            require_reply ca fx
            min_reply_length 2
            max_reply_length 4
            fwmark 7
        }
        PING_CHECK {
            connect_timeout 2
        }
    }
}
";
    let loaded = from_keepalived_text(text).unwrap();
    let vs = &loaded.config.virtual_server[0];
    assert!(vs.sorry_server_inhibit);
    let rs = &vs.real_server[0];
    let udp = &rs.udp_check[0];
    assert_eq!(udp.payload.as_deref(), Some("01 02 ab"));
    assert!(udp.require_reply);
    assert_eq!(udp.reply.as_deref(), Some("ca fx"));
    assert_eq!(
        (udp.min_reply_length, udp.max_reply_length),
        (Some(2), Some(4))
    );
    assert_eq!(udp.fwmark, Some(7));
    assert_eq!(rs.ping_check[0].connect_timeout, Some(2.0));
    let via_toml: Config = toml::from_str(&loaded.config.to_toml().unwrap()).unwrap();
    assert_eq!(via_toml, loaded.config);
}

#[test]
fn the_ssl_block_imports_and_a_key_or_password_needs_its_certificate() {
    let text = r"
SSL {
    certificate /etc/keepalived/client.pem
    key /etc/keepalived/client.key
    ca /etc/keepalived/ca.pem
}
";
    let tree = keepalived::parse(Path::new("keepalived.conf"), text).unwrap();
    let imported = keepalived::import(Path::new("keepalived.conf"), &tree);
    let config = imported.map(|i| i.config).unwrap();
    let ssl = config.ssl.clone().unwrap();
    assert_eq!(
        ssl.certificate.as_deref(),
        Some("/etc/keepalived/client.pem")
    );
    assert_eq!(ssl.key.as_deref(), Some("/etc/keepalived/client.key"));
    assert_eq!(ssl.ca.as_deref(), Some("/etc/keepalived/ca.pem"));
    let via_toml: Config = toml::from_str(&config.to_toml().unwrap()).unwrap();
    assert_eq!(via_toml, config);

    let text = "[xdp]\ninterfaces = [\"eth0\"]\n[SSL]\nkey = \"k.pem\"\npassword = \"x\"\n";
    let errors = match Config::load_text(Path::new("lb.toml"), text) {
        Err(ConfigError::Invalid { diagnostics }) => diagnostics
            .0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        other => panic!("expected errors, got {other:?}"),
    };
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("SSL.key: a key without a certificate"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("SSL.password: a password without a certificate"),
        "{errors:?}"
    );
}

/// keepalived's own examples (Debian's keepalived package, which `cargo xtask setup`
/// installs): each parses; those of supported features validate and round-trip through
/// lb.toml to the same model; the others fail for the documented reason only.
#[test]
fn keepalived_sample_configurations_convert_or_say_what_is_unsupported() {
    const SAMPLES: &str = "/usr/share/doc/keepalived/samples";
    // What we refuse on purpose, by sample.
    let unsupported = [
        (
            "conditional_conf",
            "vrrp_script.check_VI_0.script: no script",
        ),
        ("fwmark", "the XDP data plane runs before netfilter"),
        (
            "virtual_server_group",
            "the XDP data plane runs before netfilter",
        ),
        // The sample's second rules have malformed prefixes, which keepalived also skips.
        ("rules", "./24\": an address such as"),
    ];
    let mut paths: Vec<_> = std::fs::read_dir(SAMPLES)
        .unwrap_or_else(|e| panic!("{SAMPLES}: {e}: install keepalived (cargo xtask setup)"))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("keepalived.conf."))
        })
        .collect();
    paths.sort();
    let mut valid = 0;
    for path in &paths {
        let name = path.extension().and_then(|e| e.to_str()).unwrap();
        let tree = keepalived::read(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let loaded = from_keepalived(path, &tree);
        match unsupported.iter().find(|(n, _)| *n == name) {
            None => {
                assert!(loaded.is_ok(), "{name}: {loaded:?}");
                valid += 1;
                crate::config::fuzz::round_trip(loaded);
            }
            Some((_, why)) => {
                let err = loaded.unwrap_err().to_string();
                for line in err.lines() {
                    assert!(line.contains(why), "{name}: {line}");
                }
            }
        }
    }
    assert!(valid >= 19, "{valid} of {} samples valid", paths.len());
}

/// Every validation rule of the issue, written in keepalived.conf: each message names the
/// keepalived.conf line and column of the keyword, and the key.
#[test]
fn every_validation_rule_names_the_keepalived_line_and_key() {
    use crate::config::host::{Host, Network};

    let text = r"vrrp_script chk {
 script /bin/true
}
vrrp_instance A {
 interface eth0
 virtual_router_id 300
 priority 0
 virtual_ipaddress {
  198.18.0.10/24
  fd00::1/64
 }
 track_script {
  chk_missing
 }
}
vrrp_instance B {
 interface eth0
 virtual_router_id 51
 priority 255
 unicast_src_ip 198.18.0.2
 virtual_ipaddress {
  198.18.0.20/24
 }
}
vrrp_instance C {
 interface eth0
 virtual_router_id 52
 virtual_ipaddress {
  198.18.0.30/24
 }
}
vrrp_instance D {
 interface eth0
 virtual_router_id 52
 virtual_ipaddress {
  198.18.0.40/24
 }
}
vrrp_sync_group G {
 group {
  A
  Z
 }
}
virtual_server 198.18.0.100 80 {
 protocol TCP
 lb_kind DR
 real_server 198.18.0.11 80 {
  weight 70000
  HTTP_GET {
   connect_timeout 3
  }
 }
 real_server 198.18.5.1 80 {
  MISC_CHECK {
  }
 }
}
";
    let tree = keepalived::parse(Path::new("keepalived.conf"), text).unwrap();
    let host = Host {
        networks: Some(vec![Network {
            addr: "198.18.0.2".parse().unwrap(),
            prefix: 24,
        }]),
    };
    let err = from_keepalived_on(Path::new("keepalived.conf"), &tree, &|_| host.clone(), None)
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = err.lines().collect();
    let expected = [
        "keepalived.conf:6:2: vrrp_instance.A.virtual_router_id: 300; expected 1 to 255",
        "keepalived.conf:7:2: vrrp_instance.A.priority: 0; expected 1 to 255",
        "keepalived.conf:10:3: vrrp_instance.A.virtual_ipaddress[1]: \"fd00::1/64\" mixes address families",
        "keepalived.conf:13:3: vrrp_instance.A.track_script[0]: \"chk_missing\" names no vrrp_script",
        "keepalived.conf:19:2: vrrp_instance.B.priority: 255 (the address owner), but unicast_src_ip 198.18.0.2 is not among the virtual addresses",
        "keepalived.conf:34:2: vrrp_instance.D.virtual_router_id: 52 is already used by vrrp_instance C on eth0",
        "keepalived.conf:42:3: vrrp_sync_group.G.group[1]: \"Z\" names no vrrp_instance",
        "keepalived.conf:49:3: virtual_server[0].real_server[0].weight: 70000; expected 0 to 65535",
        "keepalived.conf:50:3: virtual_server[0].real_server[0].HTTP_GET[0]: a HTTP_GET without url",
        "keepalived.conf:54:2: virtual_server[0].real_server[1].ip: 198.18.5.1 is on no network directly attached to this host",
        "keepalived.conf:55:3: virtual_server[0].real_server[1].MISC_CHECK[0]: a MISC_CHECK without misc_path",
    ];
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.starts_with(want), "{line}\n  wanted {want}");
    }
}

/// The VRRP keywords of keepalived.conf(5) this work maps: sync group options, the notify
/// FIFO, `notify_master_rx_lower_pri`, `use_vmac` and `virtual_ipaddress_excluded`.
#[test]
fn keepalived_vrrp_extras_convert() {
    let text = r"
global_defs {
    notify_fifo /run/keepalived.fifo
    notify_fifo_script /usr/bin/true
    vrrp_notify_fifo /run/vrrp.fifo nobody nogroup
}
vrrp_sync_group G {
    group {
        A
        B
    }
    sync_group_tracking_weight
    notify_fault /usr/bin/true
}
vrrp_instance A {
    interface eth0
    virtual_router_id 1
    use_vmac
    vmac_xmit_base
    virtual_ipaddress {
        198.18.0.1/24
    }
    virtual_ipaddress_excluded {
        198.18.0.2/24
        fd00::2/64
    }
    notify_master_rx_lower_pri /usr/bin/true
}
vrrp_instance B {
    interface eth1
    virtual_router_id 2
    use_vmac vmac-b
    virtual_ipaddress {
        198.18.1.1/24
    }
}
";
    let loaded = from_keepalived_text(text).unwrap();
    let g = &loaded.config.global_defs;
    assert_eq!(g.notify_fifo.as_deref(), Some("/run/keepalived.fifo"));
    assert_eq!(g.notify_fifo_script.as_deref(), Some("/usr/bin/true"));
    assert_eq!(
        g.vrrp_notify_fifo.as_deref(),
        Some("/run/vrrp.fifo nobody nogroup"),
        "keepalived's owner words, kept for the daemon"
    );
    let group = &loaded.config.vrrp_sync_group["G"];
    assert!(group.sync_group_tracking_weight);
    assert_eq!(group.notify_fault.as_deref(), Some("/usr/bin/true"));
    let a = &loaded.config.vrrp_instance["A"];
    assert_eq!(
        a.notify_master_rx_lower_pri.as_deref(),
        Some("/usr/bin/true")
    );
    let m = &loaded.validated.model.vrrp;
    let (a, b) = (&m[0], &m[1]);
    assert_eq!(
        a.spec.vmac.as_deref(),
        Some("vrrp.1"),
        "keepalived's default name"
    );
    assert_eq!(b.spec.vmac.as_deref(), Some("vmac-b"));
    let excluded: Vec<String> = a.spec.excluded.iter().map(ToString::to_string).collect();
    assert_eq!(excluded, ["198.18.0.2/24", "fd00::2/64"]);
    assert_eq!(
        a.spec.vips.len(),
        1,
        "excluded addresses are not advertised"
    );
    assert_eq!(b.sync_group.as_deref(), Some("G"));
}

#[test]
fn ssl_verify_needs_a_ca() {
    let text = "[xdp]\ninterfaces = [\"eth0\"]\n[SSL]\nverify = true\n";
    let err = match Config::load_text(Path::new("lb.toml"), text) {
        Err(ConfigError::Invalid { diagnostics }) => diagnostics.to_string(),
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(err.contains("SSL.verify: true without a ca"), "{err}");
    let text = "[xdp]\ninterfaces = [\"eth0\"]\n[SSL]\nverify = true\nca = \"/etc/ca.pem\"\n";
    assert!(Config::load_text(Path::new("lb.toml"), text).is_ok());
}

#[test]
fn vrrp_scheduling_keywords_import_and_are_range_checked() {
    let text = "global_defs {\n    vrrp_rt_priority 50\n    vrrp_priority -10\n}\n";
    let tree = keepalived::parse(Path::new("keepalived.conf"), text).unwrap();
    let config = keepalived::import(Path::new("keepalived.conf"), &tree)
        .map(|i| i.config)
        .unwrap();
    assert_eq!(config.global_defs.vrrp_rt_priority, Some(50));
    assert_eq!(config.global_defs.vrrp_priority, Some(-10));
    let text =
        "[xdp]\ninterfaces = [\"eth0\"]\n[global_defs]\nvrrp_rt_priority = 0\nvrrp_priority = 30\n";
    let err = match Config::load_text(Path::new("lb.toml"), text) {
        Err(ConfigError::Invalid { diagnostics }) => diagnostics.to_string(),
        other => panic!("expected errors, got {other:?}"),
    };
    assert!(err.contains("global_defs.vrrp_rt_priority: 0"), "{err}");
    assert!(err.contains("global_defs.vrrp_priority: 30"), "{err}");
}

#[test]
fn fall_and_retry_together_and_zero_rise_are_refused() {
    let text = "[xdp]\ninterfaces = [\"eth0\"]\n[[virtual_server]]\nip = \"198.18.0.100\"\nport = 80\nprotocol = \"TCP\"\n[[virtual_server.real_server]]\nip = \"198.18.0.11\"\n[[virtual_server.real_server.TCP_CHECK]]\nfall = 2\nretry = 1\nrise = 0\n";
    let err = match Config::load_text(Path::new("lb.toml"), text) {
        Err(ConfigError::Invalid { diagnostics }) => diagnostics.to_string(),
        other => panic!("expected errors, got {other:?}"),
    };
    assert!(
        err.contains("TCP_CHECK[0].fall: both fall and retry"),
        "{err}"
    );
    assert!(err.contains("TCP_CHECK[0].rise: 0"), "{err}");
}

#[test]
fn virtual_rules_import_get_keepalived_preferences_and_a_bad_one_names_its_line() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    virtual_ipaddress {\n        198.18.0.100/24\n    }\n    virtual_rules {\n        from 198.18.0.0/24 table 1\n        to 198.18.2.0/24 table 1 no_track\n        inet6 from fd00::/8 table 2\n        from 198.18.3.0/24 preference 7 lookup 3\n    }\n}\n";
    let loaded = from_keepalived_text(text).unwrap();
    let rules = &loaded.validated.model.vrrp[0].spec.rules;
    let preferences: Vec<Option<u32>> = rules.iter().map(|r| r.priority).collect();
    // Counting down per family from 16384, as keepalived assigns them.
    assert_eq!(
        preferences,
        [Some(16384), Some(16383), Some(16384), Some(7)]
    );
    let warnings = warning_lines(&loaded);
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("no preference"))
            .count(),
        3,
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("keepalived.conf:9") && w.contains("virtual_rules[0]")),
        "{warnings:?}"
    );

    let bad = text.replace("lookup 3", "lookup 3 goto 9");
    let err = from_keepalived_text(&bad).unwrap_err().to_string();
    assert!(
        err.contains("keepalived.conf:12")
            && err.contains("virtual_rules[3]")
            && err.contains("one action"),
        "{err}"
    );
}

#[test]
fn static_entries_import_share_rule_preferences_and_need_a_dev() {
    let text = "static_ipaddress {\n    198.18.6.2/24 dev eth0\n}\nstatic_routes {\n    198.18.9.0/24 via 198.18.0.1\n}\nstatic_rules {\n    from 198.18.6.0/24 table 6\n}\nvrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    virtual_ipaddress {\n        198.18.0.100/24\n    }\n    virtual_rules {\n        from 198.18.0.0/24 table 1\n    }\n}\n";
    let loaded = from_keepalived_text(text).unwrap();
    let model = &loaded.validated.model;
    assert_eq!(model.statics.addresses.len(), 1);
    assert_eq!(model.statics.routes.len(), 1);
    // Static rules take their preferences first, as keepalived reads them first.
    assert_eq!(model.statics.rules[0].priority, Some(16384));
    assert_eq!(model.vrrp[0].spec.rules[0].priority, Some(16383));
    // Round trip through lb.toml.
    let again = Config::load_text(Path::new("lb.toml"), &loaded.config.to_toml().unwrap()).unwrap();
    assert_eq!(again.validated.model.statics, model.statics);

    let no_dev = text.replace("198.18.6.2/24 dev eth0", "198.18.6.2/24");
    let err = from_keepalived_text(&no_dev).unwrap_err().to_string();
    assert!(
        err.contains("keepalived.conf:2")
            && err.contains("static_ipaddress[0]")
            && err.contains("has no dev"),
        "{err}"
    );
}

#[test]
fn tracker_weights_track_files_and_sync_group_trackers_are_kept() {
    let text = "vrrp_script chk {\n    script /usr/bin/true\n    weight -20\n}\nvrrp_track_file flag {\n    file /run/flag\n    weight 3\n    init_file 5 overwrite\n}\nvrrp_sync_group G {\n    group {\n        VI_1\n        VI_2\n    }\n    track_interface {\n        eth9 weight 10\n    }\n    track_script {\n        chk\n    }\n}\nvrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    virtual_ipaddress {\n        198.18.0.100/24\n    }\n    track_interface {\n        eth1 weight -50\n        eth2\n    }\n    track_script {\n        chk weight 7\n    }\n    track_file {\n        flag weight -2\n    }\n}\nvrrp_instance VI_2 {\n    interface eth0\n    virtual_router_id 52\n    priority 100\n    virtual_ipaddress {\n        198.18.0.101/24\n    }\n}\n";
    let loaded = from_keepalived_text(text).unwrap();
    let vi = &loaded.validated.model.vrrp[0];
    let interfaces: Vec<(&str, Option<i32>)> = vi
        .track_interfaces
        .iter()
        .map(|t| (t.name.as_str(), t.weight))
        .collect();
    // The group's interface is tracked unweighted: its weight is ignored, and said so.
    assert_eq!(
        interfaces,
        [("eth1", Some(-50)), ("eth2", None), ("eth9", None)]
    );
    assert_eq!(
        vi.track_scripts,
        [("chk".to_owned(), Some(7)), ("chk".to_owned(), Some(0))]
    );
    assert_eq!(vi.track_files.len(), 1);
    assert_eq!(
        (vi.track_files[0].path.to_str(), vi.track_files[0].weight),
        (Some("/run/flag"), -2)
    );
    let block = &loaded.config.vrrp_track_file["flag"];
    assert_eq!(
        (block.weight, block.init_file, block.init_overwrite),
        (3, Some(5), true)
    );
    let warnings = warning_lines(&loaded);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("vrrp_sync_group.G.track_interface[0]")
                && w.contains("weight is ignored")),
        "{warnings:?}"
    );
    // Round trip through lb.toml.
    let again = Config::load_text(Path::new("lb.toml"), &loaded.config.to_toml().unwrap()).unwrap();
    assert_eq!(again.validated.model.vrrp, loaded.validated.model.vrrp);

    for (from, to, named) in [
        ("eth1 weight -50", "eth1 weight -300", "W from -253 to 253"),
        (
            "eth1 weight -50",
            "eth1 weight -50 reverse",
            "`reverse` is not supported",
        ),
        ("flag weight -2", "nofile", "vrrp_track_file"),
        ("chk weight 7", "chk weight", "NAME [weight W]"),
    ] {
        let bad = text.replace(from, to);
        let err = from_keepalived_text(&bad).unwrap_err().to_string();
        assert!(err.contains(named), "{to}: {err}");
    }
}

#[test]
fn virtual_routes_import_and_a_bad_one_names_its_line() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n    virtual_ipaddress {\n        198.18.0.100/24\n    }\n    virtual_routes {\n        src 198.18.0.100 to 198.18.9.0/24 via 198.18.0.1 dev eth0\n        198.18.10.0/24 or 198.18.0.2\n    }\n}\n";
    let tree = keepalived::parse(Path::new("keepalived.conf"), text).unwrap();
    let config = keepalived::import(Path::new("keepalived.conf"), &tree)
        .map(|i| i.config)
        .unwrap();
    assert_eq!(config.vrrp_instance["VI_1"].virtual_routes.len(), 2);
    let toml_text = config.to_toml().unwrap();
    let err = match Config::load_text(Path::new("lb.toml"), &toml_text) {
        Err(ConfigError::Invalid { diagnostics }) => diagnostics.to_string(),
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(
        err.contains("vrrp_instance.VI_1.virtual_routes[1]") && err.contains("\"or\""),
        "{err}"
    );
    assert!(!err.contains("virtual_routes[0]"), "{err}");
}

#[test]
fn per_address_options_reach_the_instance() {
    let text = "[xdp]\ninterfaces = [\"eth0\"]\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\nvirtual_ipaddress = [\"198.18.0.100/24 dev eth1 label eth1:a\", \"198.18.0.101/24\"]\n";
    let loaded = Config::load_text(Path::new("lb.toml"), text).unwrap();
    assert!(
        loaded.validated.warnings.is_empty(),
        "{:?}",
        loaded.validated.warnings
    );
    let spec = &loaded.validated.model.vrrp[0].spec;
    let options = &spec.address_options;
    assert_eq!(
        options.len(),
        1,
        "only the address with options: {options:?}"
    );
    let o = &options[&"198.18.0.100".parse::<std::net::IpAddr>().unwrap()];
    assert_eq!(
        (o.dev.as_deref(), o.label.as_deref()),
        (Some("eth1"), Some("eth1:a"))
    );
}

#[test]
fn a_bad_address_option_names_the_line_and_what_is_valid() {
    let text = "[xdp]\ninterfaces = [\"eth0\"]\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\nvirtual_ipaddress = [\"198.18.0.100/24\", \"198.18.0.101/24 scope far\"]\n";
    let err = match Config::load_text(Path::new("lb.toml"), text) {
        Err(ConfigError::Invalid { diagnostics }) => diagnostics.to_string(),
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(
        err.contains("lb.toml:7")
            && err.contains("vrrp_instance.VI_1.virtual_ipaddress[1]")
            && err.contains("global, site, link, host, nowhere"),
        "{err}"
    );
}

/// Every validation warning of `loaded`, as printed.
/// `auth_type AH` as keepalived takes it: IPv4 VRRPv2 only, and an instance that is not the
/// address owner starts as backup (it needs the master's sequence number first).
#[test]
fn auth_type_ah_is_ipv4_only_and_starts_as_backup() {
    use crate::vrrp::{auth::Auth, config::InitialState};

    let conf = |state: &str, vip: &str| {
        format!(
            "vrrp_instance VI_1 {{\n  state {state}\n  interface eth0\n  virtual_router_id 51\n  \
             priority 150\n  authentication {{\n    auth_type AH\n    auth_pass s3cret\n  }}\n  \
             virtual_ipaddress {{\n    {vip}\n  }}\n}}\n"
        )
    };
    let loaded = from_keepalived_text(&conf("MASTER", "198.18.0.10/24")).unwrap();
    let c = &loaded.validated.model.vrrp[0].spec.config;
    assert!(matches!(c.auth, Some(Auth::Ah(_))), "{:?}", c.auth);
    assert_eq!(c.initial_state, Some(InitialState::Backup));
    let warnings = warning_lines(&loaded);
    assert!(
        warnings.iter().any(
            |w| w.starts_with("keepalived.conf:2:3: vrrp_instance.VI_1.state")
                && w.contains("MASTER with auth_type AH")
        ),
        "{warnings:?}"
    );
    crate::config::fuzz::round_trip(Ok(loaded));

    let err = from_keepalived_text(&conf("BACKUP", "fd00::10/64"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keepalived.conf:7:5: vrrp_instance.VI_1.authentication.auth_type: AH on an IPv6 instance"),
        "{err}"
    );
}

/// `HTTP_GET`'s `regex` and its options import, round-trip, and a pattern or option that cannot
/// work is an error naming its line and key.
#[test]
fn http_regex_imports_and_a_bad_pattern_names_its_line() {
    let conf = |lines: &str| {
        format!(
            "virtual_server 198.18.0.100 80 {{\n  lb_kind DR\n  protocol TCP\n  \
             real_server 198.18.0.11 80 {{\n    HTTP_GET {{\n      url {{\n        \
             path /health\n{lines}      }}\n    }}\n  }}\n}}\n"
        )
    };
    let loaded = from_keepalived_text(&conf(
        "        regex \"^ready\"\n        regex_no_match\n        regex_options caseless multiline\n        regex_min_offset 2\n        regex_max_offset 40\n",
    ))
    .unwrap();
    let url = &loaded.config.virtual_server[0].real_server[0].http_get[0].url[0];
    assert_eq!(url.regex.as_deref(), Some("^ready"));
    assert!(url.regex_no_match);
    assert_eq!(url.regex_options, ["caseless", "multiline"]);
    assert_eq!(
        (url.regex_min_offset, url.regex_max_offset),
        (Some(2), Some(40))
    );
    crate::config::fuzz::round_trip(Ok(loaded));

    let err = from_keepalived_text(&conf("        regex \"ready(\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keepalived.conf:8:9: virtual_server[0].real_server[0].HTTP_GET[0].url[0].regex: \"ready(\""),
        "{err}"
    );
    let err = from_keepalived_text(&conf("        regex_no_match\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("regex_no_match without regex"), "{err}");
}

/// keepalived lines that used to lose a word silently: `track_file` blocks under their
/// current name are read, and `weight N reverse` and `TUN type gue` are refused by name.
#[test]
fn keepalived_words_that_change_behaviour_are_read_or_refused_never_dropped() {
    let ok = from_keepalived_text(
        "track_file flag {\n  file /tmp/blt-flag\n}\nvrrp_script chk {\n  script /bin/true\n  \
         weight 10 noreverse\n}\nvrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  \
         priority 100\n  virtual_ipaddress {\n    198.18.0.10/24\n  }\n  track_file {\n    flag\n  }\n  \
         track_script {\n    chk\n  }\n}\nvirtual_server 198.18.0.100 80 {\n  lb_kind TUN type ipip\n  \
         protocol TCP\n  real_server 198.18.0.11 80 {\n  }\n}\n",
    )
    .unwrap();
    assert!(ok.config.vrrp_track_file.contains_key("flag"));
    let err = from_keepalived_text(
        "vrrp_script chk {\n  script /bin/true\n  weight 10 reverse\n}\n\
         virtual_server 198.18.0.100 80 {\n  lb_kind TUN type gue\n  protocol TCP\n}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "keepalived.conf:3:3: vrrp_script.chk.weight: \"10 reverse\": reverse is not supported"
        ),
        "{err}"
    );
    assert!(
        err.contains("keepalived.conf:6:3: virtual_server[0].lb_kind: \"TUN type gue\""),
        "{err}"
    );
}

/// A `real_server`'s checker defaults import (they used to be warned about and ignored).
#[test]
fn real_server_checker_defaults_import_and_round_trip() {
    let loaded = from_keepalived_text(
        "virtual_server 198.18.0.100 80 {\n  lb_kind DR\n  protocol TCP\n  \
         real_server 198.18.0.11 80 {\n    delay_loop 2\n    alpha\n    connect_timeout 1\n    \
         nb_get_retry 5\n    delay_before_retry 1\n    warmup 0\n    TCP_CHECK {\n    }\n  }\n}\n",
    )
    .unwrap();
    let warnings = warning_lines(&loaded);
    assert!(
        !warnings.iter().any(|w| w.contains("real_server[0].")),
        "{warnings:?}"
    );
    let rs = &loaded.config.virtual_server[0].real_server[0];
    assert_eq!(
        (
            rs.delay_loop,
            rs.alpha,
            rs.connect_timeout,
            rs.retry,
            rs.delay_before_retry,
            rs.warmup
        ),
        (
            Some(2.0),
            Some(true),
            Some(1.0),
            Some(5),
            Some(1.0),
            Some(0.0)
        )
    );
    crate::config::fuzz::round_trip(Ok(loaded));
}

/// A peer's TTL bounds are said to be ignored; a MAC for `use_vmac` is refused.
#[test]
fn unicast_peer_ttls_are_warned_and_a_vmac_mac_is_refused() {
    let conf = |vmac: &str| {
        format!(
            "vrrp_instance VI_1 {{\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  \
             unicast_src_ip 198.18.0.1\n  unicast_peer {{\n    198.18.0.2 min_ttl 250 max_ttl 255\n  }}\n  \
             {vmac}\n  virtual_ipaddress {{\n    198.18.0.10/24\n  }}\n}}\n"
        )
    };
    let loaded = from_keepalived_text(&conf("use_vmac vrrp.51")).unwrap();
    let warnings = warning_lines(&loaded);
    assert!(
        warnings.iter().any(|w| w
            .starts_with("keepalived.conf:7:5: vrrp_instance.VI_1.unicast_peer[0]")
            && w.contains("`min_ttl 250 max_ttl 255` is not implemented")),
        "{warnings:?}"
    );
    assert_eq!(
        loaded.validated.model.vrrp[0].spec.vmac.as_deref(),
        Some("vrrp.51")
    );
    let err = from_keepalived_text(&conf("use_vmac vrrp.51 02:00:5e:00:01:33"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keepalived.conf:9:3: vrrp_instance.VI_1.use_vmac"),
        "{err}"
    );
    assert!(from_keepalived_text(&conf("use_vmac 02:00:5e:00:01:33")).is_err());
}

/// keepalived 2.2.7 keeps a sync group of one member, with its trackers, and warns.
#[test]
fn a_sync_group_of_one_keeps_its_trackers_and_is_warned_about() {
    let loaded = from_keepalived_text(
        "vrrp_sync_group G {\n  group {\n    VI_1\n  }\n  track_interface {\n    eth1\n  }\n}\n\
         vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  \
         virtual_ipaddress {\n    198.18.0.10/24\n  }\n}\n",
    )
    .unwrap();
    let vi = &loaded.validated.model.vrrp[0];
    assert_eq!(vi.sync_group.as_deref(), Some("G"));
    assert!(
        vi.track_interfaces.iter().any(|t| t.name == "eth1"),
        "{:?}",
        vi.track_interfaces
    );
    let warnings = warning_lines(&loaded);
    assert!(
        warnings.iter().any(
            |w| w.starts_with("keepalived.conf:2:3: vrrp_sync_group.G.group")
                && w.contains("only 1 virtual router")
        ),
        "{warnings:?}"
    );
}

fn warning_lines(loaded: &Loaded) -> Vec<String> {
    loaded
        .validated
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn lvs_timeouts_become_the_connection_timeouts_and_bad_ones_name_their_line() {
    let text = "global_defs {\n    lvs_timeouts tcp 7200 udp 0 tcpfin 60\n}\n";
    let tree = keepalived::parse(Path::new("keepalived.conf"), text).unwrap();
    let config = keepalived::import(Path::new("keepalived.conf"), &tree)
        .map(|i| i.config)
        .unwrap();
    let c = &config.connections;
    // udp 0 leaves the default, as keepalived leaves IPVS's.
    assert_eq!(
        (c.tcp_timeout, c.tcpfin_timeout, c.udp_timeout),
        (7200, 60, 300)
    );
    for (args, found) in [
        ("tcp 2678401", "tcp \"2678401\""),
        ("sctp 5", "\"sctp\""),
        ("udp", "udp without a value"),
        ("", "no option"),
    ] {
        let text = format!("global_defs {{\n    lvs_timeouts {args}\n}}\n");
        let tree = keepalived::parse(Path::new("keepalived.conf"), &text).unwrap();
        let err = match keepalived::import(Path::new("keepalived.conf"), &tree) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{args:?} accepted"),
        };
        assert!(
            err.contains(&format!(
                "keepalived.conf:2:5: global_defs.lvs_timeouts: {found}"
            )),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn dataplane_given_on_the_command_line_replaces_the_files() {
    use crate::config::{DataplaneKind, from_keepalived_on, host::Host};
    let text = "virtual_server fwmark 7 {\n    lb_kind DR\n    protocol TCP\n    real_server 198.18.1.2 {\n    }\n}\n";
    let tree = keepalived::parse(Path::new("keepalived.conf"), text).unwrap();
    let load = |d| from_keepalived_on(Path::new("keepalived.conf"), &tree, &|_| Host::default(), d);
    // As written (XDP, the default), a mark can never match.
    let err = load(None).expect_err("fwmark on XDP").to_string();
    assert!(
        err.contains("keepalived.conf:1:1: virtual_server[0].fwmark: fwmark 7: the XDP data plane"),
        "{err}"
    );
    // On IPVS, as keepalived runs it.
    let loaded = load(Some(DataplaneKind::Ipvs)).expect("fwmark on IPVS");
    assert_eq!(loaded.config.dataplane, DataplaneKind::Ipvs);
    assert_eq!(loaded.validated.model.fwmark_services[0].fwmark, 7);
    let toml = loaded.config.to_toml().unwrap();
    assert!(toml.starts_with("dataplane = \"ipvs\"\n"), "{toml}");
    let lb = Config::load_text_on(Path::new("lb.toml"), &toml, &|_| Host::default(), None)
        .expect("converted lb.toml");
    assert_eq!(lb.validated.model, loaded.validated.model);
    // And the other way: an lb.toml for IPVS checked for XDP.
    let err = Config::load_text_on(
        Path::new("lb.toml"),
        &toml,
        &|_| Host::default(),
        Some(DataplaneKind::Xdp),
    )
    .expect_err("fwmark on XDP")
    .to_string();
    assert!(
        err.contains("the XDP data plane runs before netfilter"),
        "{err}"
    );
}

#[test]
fn lvs_sync_daemon_imports_both_syntaxes_and_bad_values_name_their_line() {
    use crate::config::{DataplaneKind, from_keepalived_on, host::Host, schema::LvsSyncDaemon};
    let instance = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 7\n    priority 100\n    virtual_ipaddress {\n        198.18.0.1/24\n    }\n}\n";
    let load = |sync: &str, d| {
        let text = format!("global_defs {{\n    lvs_sync_daemon {sync}\n}}\n{instance}");
        let tree = keepalived::parse(Path::new("keepalived.conf"), &text).unwrap();
        from_keepalived_on(Path::new("keepalived.conf"), &tree, &|_| Host::default(), d)
    };
    let ipvs = Some(DataplaneKind::Ipvs);
    let got = |sync: &str| {
        load(sync, ipvs)
            .unwrap_or_else(|e| panic!("{sync}: {e}"))
            .config
            .global_defs
            .lvs_sync_daemon
            .unwrap()
    };
    assert_eq!(
        got("eth1 inst VI_1 id 5 maxlen 1400 port 8849 ttl 2 group 224.0.0.82"),
        LvsSyncDaemon {
            interface: "eth1".into(),
            instance: Some("VI_1".into()),
            id: Some(5),
            maxlen: Some(1400),
            port: Some(8849),
            ttl: Some(2),
            group: Some("224.0.0.82".parse().unwrap()),
        }
    );
    // keepalived's older form: INTERFACE VRRP_INSTANCE SYNC_ID.
    let old = got("eth1 VI_1 9");
    assert_eq!((old.instance.as_deref(), old.id), (Some("VI_1"), Some(9)));
    assert_eq!(got("eth1").instance, None);
    for (sync, found) in [
        ("", "no interface"),
        ("eth1 id 300", "id \"300\""),
        ("eth1 group 198.18.0.5", "group \"198.18.0.5\""),
        ("eth1 inst VI_1 speed 3", "\"speed\""),
    ] {
        let err = load(sync, ipvs).expect_err(sync).to_string();
        assert!(
            err.contains(&format!(
                "keepalived.conf:2:5: global_defs.lvs_sync_daemon: {found}"
            )),
            "{sync}: {err}"
        );
    }
    let err = load("eth1 inst VI_9", ipvs)
        .expect_err("no VI_9")
        .to_string();
    assert!(
        err.contains("global_defs.lvs_sync_daemon.instance: \"VI_9\": no such vrrp_instance; expected one of [\"VI_1\"]"),
        "{err}"
    );
    // XDP has no connection sync: said, not silently dropped.
    let xdp = load("eth1 inst VI_1", None).expect("valid on XDP");
    let warnings: Vec<String> = xdp
        .validated
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("global_defs.lvs_sync_daemon: ignored with the XDP data plane")),
        "{warnings:?}"
    );
}

#[test]
fn vrrp_track_process_imports_with_keepalived_defaults_and_its_lines_take_weights() {
    use crate::vrrp::track::process::ParamMatch;
    let text = "vrrp_track_process haproxy {\n    process haproxy -f /etc/haproxy.cfg\n    param_match partial\n    quorum 2\n    quorum_max 4\n    delay 0.5\n    terminate_delay 2\n}\n\
                vrrp_track_process none {\n    process forbidden\n    quorum_max 0\n}\n\
                vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 7\n    priority 100\n    virtual_ipaddress {\n        198.18.0.1/24\n    }\n    track_process {\n        haproxy weight 20 reverse\n        none\n    }\n}\n";
    let loaded = from_keepalived_text(text).expect("valid");
    let tracked = &loaded.validated.model.vrrp[0].track_processes;
    assert_eq!(tracked.len(), 2);
    let h = &tracked[0];
    assert_eq!(h.process, "haproxy");
    assert_eq!(h.params, ["-f", "/etc/haproxy.cfg"]);
    assert_eq!(h.param_match, Some(ParamMatch::Partial));
    assert_eq!((h.quorum, h.quorum_max), (2, 4));
    assert_eq!((h.weight, h.reverse), (20, true));
    assert_eq!(h.fork_delay, std::time::Duration::from_millis(500));
    assert_eq!(h.terminate_delay, std::time::Duration::from_secs(2));
    // keepalived: weight 0 by default; quorum_max 0 with no quorum: none may run.
    let n = &tracked[1];
    assert_eq!(
        (n.weight, n.quorum, n.quorum_max, n.param_match),
        (0, 0, 0, None)
    );
    // Through lb.toml the same.
    let toml = loaded.config.to_toml().unwrap();
    let again = Config::load_text(Path::new("lb.toml"), &toml).expect("lb.toml");
    assert_eq!(again.validated.model.vrrp, loaded.validated.model.vrrp);

    for (bad, found) in [
        (
            "track_process {\n        haproxy weight 300\n    }",
            "vrrp_instance.VI_1.track_process[0]: \"haproxy weight 300\"",
        ),
        (
            "track_process {\n        hapr0xy\n    }",
            "keepalived.conf:12:9: vrrp_instance.VI_1.track_process[0]: \"hapr0xy\" names no vrrp_track_process; expected a vrrp_track_process name (did you mean haproxy?)",
        ),
    ] {
        let text = format!(
            "vrrp_track_process haproxy {{\n    process haproxy\n}}\nvrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 7\n    priority 100\n    virtual_ipaddress {{\n        198.18.0.1/24\n    }}\n    {bad}\n}}\n"
        );
        let err = from_keepalived_text(&text).expect_err(bad).to_string();
        assert!(err.contains(found), "{bad}: {err}");
    }
    let err = from_keepalived_text(
        "vrrp_track_process p {\n    process x\n    quorum 3\n    quorum_max 2\n}\n",
    )
    .expect_err("quorum_max below quorum")
    .to_string();
    assert!(err.contains("keepalived.conf:4:5: vrrp_track_process.p.quorum_max: 2; expected 3 (the quorum) to 65535"), "{err}");
}

#[test]
fn dont_track_primary_reaches_the_instances_trackers() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    dont_track_primary\n    virtual_router_id 7\n    priority 100\n    virtual_ipaddress {\n        198.18.0.1/24\n    }\n}\n";
    let loaded = from_keepalived_text(text).expect("valid");
    assert!(
        loaded
            .validated
            .warnings
            .iter()
            .all(|w| !w.to_string().contains("dont_track_primary"))
    );
    assert!(loaded.validated.model.vrrp[0].spec.track.dont_track_primary);
    let without = from_keepalived_text(&text.replace("    dont_track_primary\n", "")).unwrap();
    assert!(
        !without.validated.model.vrrp[0]
            .spec
            .track
            .dont_track_primary
    );
}

#[test]
fn lvs_flush_keywords_import_and_are_warned_on_xdp() {
    use crate::config::{DataplaneKind, from_keepalived_on, host::Host, schema::LvsFlushOnStop};
    let load = |global: &str, d| {
        let text = format!("global_defs {{\n    {global}\n}}\n");
        let tree = keepalived::parse(Path::new("keepalived.conf"), &text).unwrap();
        from_keepalived_on(Path::new("keepalived.conf"), &tree, &|_| Host::default(), d)
    };
    let ipvs = Some(DataplaneKind::Ipvs);
    for (line, flush, on_stop) in [
        ("lvs_flush", true, None),
        ("lvs_flush_on_stop", false, Some(LvsFlushOnStop::Full)),
        ("lvs_flush_onstop VS", false, Some(LvsFlushOnStop::Vs)),
    ] {
        let g = load(line, ipvs).expect(line).config.global_defs;
        assert_eq!(
            (g.lvs_flush, g.lvs_flush_on_stop),
            (flush, on_stop),
            "{line}"
        );
    }
    let err = load("lvs_flush_on_stop ALL", ipvs)
        .expect_err("ALL")
        .to_string();
    assert!(
        err.contains("keepalived.conf:2:5: global_defs.lvs_flush_on_stop: \"ALL\""),
        "{err}"
    );
    let xdp = load("lvs_flush", None).expect("valid on XDP");
    assert!(
        xdp.validated.warnings.iter().any(|w| w
            .to_string()
            .contains("global_defs.lvs_flush: ignored with the XDP data plane")),
        "{:?}",
        xdp.validated.warnings
    );
}

#[test]
fn startup_and_shutdown_scripts_import_with_their_timeouts_checked() {
    let text = "global_defs {\n    startup_script \"/bin/true up\"\n    startup_script_timeout 3\n    shutdown_script /bin/true\n}\n";
    let g = from_keepalived_text(text)
        .expect("valid")
        .config
        .global_defs;
    assert_eq!(g.startup_script.as_deref(), Some("/bin/true up"));
    assert_eq!(
        (g.startup_script_timeout, g.shutdown_script_timeout),
        (Some(3), None)
    );
    assert_eq!(g.shutdown_script.as_deref(), Some("/bin/true"));
    let err = from_keepalived_text("global_defs {\n    shutdown_script_timeout 1001\n}\n")
        .expect_err("over 1000")
        .to_string();
    assert!(err.contains("keepalived.conf:2:5: global_defs.shutdown_script_timeout: 1001; expected seconds, 1 to 1000"), "{err}");
}
