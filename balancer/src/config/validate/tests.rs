//! Each rule names the right line and key.

use std::path::Path;

use crate::config::{Config, ConfigError};

const HEAD: &str = "[xdp]\ninterfaces = [\"eth0\"]\n";

fn errors(body: &str) -> Vec<String> {
    errors_in(&format!("{HEAD}{body}"))
}

/// The validation errors of the whole lb.toml `text`.
fn errors_in(text: &str) -> Vec<String> {
    match Config::load_text(Path::new("lb.toml"), text) {
        Err(ConfigError::Invalid { diagnostics }) => {
            diagnostics.0.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected validation errors, got {other:?}"),
    }
}

fn instance(name: &str, extra: &str) -> String {
    format!(
        "[vrrp_instance.{name}]\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"198.18.0.10/24\"]\n{extra}"
    )
}

#[test]
fn vrid_out_of_range() {
    let e = errors(
        "[vrrp_instance.A]\ninterface = \"eth0\"\nvirtual_router_id = 256\nvirtual_ipaddress = [\"198.18.0.10/24\"]\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("lb.toml:5:21: vrrp_instance.A.virtual_router_id: 256; expected 1 to 255"),
        "{e:?}"
    );
}

#[test]
fn priority_out_of_range_and_every_problem_at_once() {
    let e = errors(&format!(
        "{}{}",
        instance("A", "priority = 0\n"),
        "[[virtual_server]]\nip = \"198.18.0.10\"\nport = 80\nlb_algo = \"rrr\"\n"
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("lb.toml:7:12: vrrp_instance.A.priority: 0; expected 1 to 255"),
        "{e:?}"
    );
    assert!(
        e[1].contains(":11:11: virtual_server[0].lb_algo: \"rrr\""),
        "{e:?}"
    );
    assert!(e[1].contains("did you mean rr?"), "{e:?}");
}

#[test]
fn priority_255_is_for_the_address_owner() {
    let e = errors(&instance(
        "A",
        "priority = 255\nunicast_src_ip = \"198.18.0.1\"\n",
    ));
    assert!(
        e[0].contains("vrrp_instance.A.priority: 255 (the address owner)"),
        "{e:?}"
    );
    let ok = Config::load_text(
        Path::new("lb.toml"),
        &format!(
            "{HEAD}{}",
            instance("A", "priority = 255\nunicast_src_ip = \"198.18.0.10\"\n")
        ),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn duplicate_vrid_on_one_interface() {
    let e = errors(&format!("{}{}", instance("A", ""), instance("B", "")));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("lb.toml:9:21: vrrp_instance.B.virtual_router_id: 51 is already used by vrrp_instance A on eth0"), "{e:?}");
}

#[test]
fn mixed_families_in_one_instance() {
    let e = errors(
        "[vrrp_instance.A]\ninterface = \"eth0\"\nvirtual_router_id = 5\nvirtual_ipaddress = [\"198.18.0.10/24\", \"fd00::1/64\"]\n",
    );
    assert!(
        e[0].contains(
            "vrrp_instance.A.virtual_ipaddress[1]: \"fd00::1/64\" mixes address families"
        ),
        "{e:?}"
    );
    assert!(e[0].starts_with("lb.toml:6:40:"), "{e:?}");
}

#[test]
fn track_script_and_sync_group_references() {
    let e = errors(&format!(
        "[vrrp_script.chk_http]\nscript = \"/bin/true\"\n{}[vrrp_sync_group.G]\ngroup = [\"A\", \"Z\"]\n",
        instance("A", "track_script = [\"chk_htp\"]\n")
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].contains("vrrp_instance.A.track_script[0]: \"chk_htp\" names no vrrp_script; expected a vrrp_script name (did you mean chk_http?)"), "{e:?}");
    assert!(e[0].starts_with("lb.toml:9:17:"), "{e:?}");
    assert!(
        e[1].contains("vrrp_sync_group.G.group[1]: \"Z\" names no vrrp_instance"),
        "{e:?}"
    );
    assert!(e[1].starts_with("lb.toml:11:15:"), "{e:?}");
}

#[test]
fn weights_and_checkers() {
    let e = errors(
        "[[virtual_server]]\nip = \"198.18.0.10\"\nport = 80\n\
         [[virtual_server.real_server]]\nip = \"198.18.1.1\"\nweight = 70000\n\
         [[virtual_server.real_server.HTTP_GET]]\nconnect_timeout = 3.0\n\
         [[virtual_server.real_server.MISC_CHECK]]\nmisc_timeout = 5\n\
         [[virtual_server.real_server.TCP_CHECK]]\nmisc_path = \"/bin/x\"\n",
    );
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(
        e[0].starts_with(
            "lb.toml:8:10: virtual_server[0].real_server[0].weight: 70000; expected 0 to 65535"
        ),
        "{e:?}"
    );
    assert!(
        e[1].contains("real_server[0].HTTP_GET[0]: a HTTP_GET without url"),
        "{e:?}"
    );
    assert!(
        e[2].contains("real_server[0].MISC_CHECK[0]: a MISC_CHECK without misc_path"),
        "{e:?}"
    );
    assert!(
        e[3].contains("TCP_CHECK[0].misc_path: misc_path (a MISC_CHECK key) in a TCP_CHECK"),
        "{e:?}"
    );
}

#[test]
fn udp_check_octets_and_lengths_and_ping_check_keys() {
    let e = errors(
        "[[virtual_server]]\nip = \"198.18.0.10\"\nport = 53\nprotocol = \"UDP\"\n\
         [[virtual_server.real_server]]\nip = \"198.18.1.1\"\n\
         [[virtual_server.real_server.UDP_CHECK]]\npayload = \"0x\"\nreply = \"zz\"\n\
         min_reply_length = 5\nmax_reply_length = 2\n\
         [[virtual_server.real_server.PING_CHECK]]\npayload = \"01\"\n",
    );
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(e[0].contains("UDP_CHECK[0].payload: \"0x\""), "{e:?}");
    assert!(e[1].contains("UDP_CHECK[0].reply: \"zz\""), "{e:?}");
    assert!(
        e[2].contains("UDP_CHECK[0].min_reply_length: 5 > max_reply_length 2"),
        "{e:?}"
    );
    assert!(
        e[3].contains("PING_CHECK[0].payload: payload (a UDP_CHECK key) in a PING_CHECK"),
        "{e:?}"
    );
}

#[test]
fn ports_in_a_ping_check_are_warned_and_ignored() {
    let l = loaded(
        "[[virtual_server]]\nip = \"198.18.0.10\"\nport = 80\nprotocol = \"TCP\"\n\
         [[virtual_server.real_server]]\nip = \"198.18.1.1\"\n\
         [[virtual_server.real_server.PING_CHECK]]\nconnect_port = 80\n",
    );
    let warning = l
        .validated
        .warnings
        .iter()
        .map(ToString::to_string)
        .find(|w| w.contains("PING_CHECK[0].connect_port"));
    assert!(
        warning.is_some_and(|w| w.contains("connect_port in a PING_CHECK: ICMP has no ports")),
        "{:?}",
        l.validated.warnings
    );
}

#[test]
fn misspelt_keys_get_a_suggestion() {
    let err = Config::load_text(
        Path::new("lb.toml"),
        &format!("{HEAD}{}", instance("A", "priorty = 5\n")),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("lb.toml:7:1: unknown field `priorty`"),
        "{err}"
    );
    assert!(err.contains("priority"), "{err}");
}

/// A valid configuration's warnings and its services.
fn loaded(body: &str) -> crate::config::Loaded {
    Config::load_text(Path::new("lb.toml"), &format!("{HEAD}{body}")).expect("valid")
}

#[test]
fn keepalived_defaults_for_a_missing_protocol_and_a_missing_port() {
    // keepalived's check_data.c: no protocol means UDP; no port means persistent (360 s).
    let l = loaded(
        "[[virtual_server]]\nip = \"198.18.0.10\"\n\n[[virtual_server.real_server]]\nip = \"198.18.0.11\"\n",
    );
    let svc = &l.validated.model.services[0];
    assert_eq!(svc.protocol, crate::model::Protocol::Udp);
    assert_eq!(svc.persistence.map(|p| p.timeout_s), Some(360));
    let warnings: Vec<String> = l
        .validated
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("virtual_server[0].protocol") && w.contains("UDP")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("virtual_server[0].port") && w.contains("360")),
        "{warnings:?}"
    );
}

#[test]
fn fwmark_services_are_refused_by_the_xdp_data_plane_with_the_alternatives() {
    let e = errors(
        "[virtual_server_group.G]\nfwmark = [1, 2]\n\
         [[virtual_server]]\nfwmark = 7\nprotocol = \"TCP\"\n\
         [[virtual_server.real_server]]\nip = \"198.18.1.1\"\n",
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("lb.toml:4:11: virtual_server_group.G.fwmark[0]: fwmark 1: the XDP data plane runs before netfilter sets marks"),
        "{e:?}"
    );
    assert!(
        e[1].contains("virtual_server_group.G.fwmark[1]: fwmark 2"),
        "{e:?}"
    );
    assert!(
        e[2].starts_with("lb.toml:6:10: virtual_server[0].fwmark: fwmark 7:"),
        "{e:?}"
    );
    for message in &e {
        assert!(
            message.contains("as a virtual_server_group")
                && message.contains("all-port service (port 0 with persistence_timeout)"),
            "{message}"
        );
    }
}

#[test]
fn fwmark_services_are_carried_into_the_model() {
    use crate::config::locate::TomlLocator;
    use crate::config::schema::DataplaneKind;
    use crate::model::{Method, Protocol, Scheduler};

    let text = format!(
        "{HEAD}[virtual_server_group.G]\nfwmark = [3]\naddress = [\"198.18.0.1 80\"]\n\
         [[virtual_server]]\nfwmark = 7\nprotocol = \"TCP\"\nlb_algo = \"sh\"\nlb_kind = \"DR\"\npersistence_timeout = 60\n\
         [[virtual_server.real_server]]\nip = \"fd00::1\"\nport = 443\nweight = 2\n\
         [[virtual_server]]\ngroup = \"G\"\nprotocol = \"UDP\"\n\
         [[virtual_server.real_server]]\nip = \"198.18.1.1\"\n"
    );
    let mut config: Config = toml::from_str(&text).unwrap();
    // A data plane behind netfilter (IPVS) sees marks: the model has the services for it.
    config.dataplane = DataplaneKind::Ipvs;
    let locator = TomlLocator {
        file: std::sync::Arc::from(Path::new("lb.toml")),
        text,
    };
    let mut report = super::Report {
        locate: &locator,
        dataplane: config.dataplane,
        attached: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let (by_addr, by_mark) = super::lvs::services(&config, &mut report);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(by_addr.len(), 1);
    assert_eq!(by_addr[0].vips, [std::net::IpAddr::from([198, 18, 0, 1])]);
    let marks: Vec<u32> = by_mark.iter().map(|m| m.fwmark).collect();
    assert_eq!(marks, [7, 3]);
    let seven = &by_mark[0].service;
    assert!(seven.vips.is_empty());
    assert_eq!(
        (seven.port, seven.protocol, seven.scheduler),
        (0, Protocol::Tcp, Scheduler::Sh)
    );
    // The family comes from the reals: an IPv6 client mask.
    assert_eq!(
        seven.persistence.map(|p| (p.timeout_s, p.prefix)),
        Some((60, 128))
    );
    assert_eq!(
        (
            seven.reals[0].port,
            seven.reals[0].weight,
            seven.reals[0].method
        ),
        (443, 2, Method::Dr)
    );
    assert_eq!(by_mark[1].service.protocol, Protocol::Udp);
}

#[test]
fn connection_limits_are_checked_and_ipvs_needs_no_interfaces() {
    let text = "[xdp]\ninterfaces = [\"eth0\"]\n[connections]\ntable_size = 0\nudp_timeout = 0\n";
    let e = errors_in(text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("lb.toml:4:14: connections.table_size: 0; expected 1 or more"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("lb.toml:5:15: connections.udp_timeout: 0"),
        "{e:?}"
    );
    // XDP needs an interface; IPVS forwards from netfilter and needs none.
    let e = errors_in("dataplane = \"xdp\"\n");
    assert!(e[0].contains("xdp.interfaces: no interface"), "{e:?}");
    let ipvs = Config::load_text(Path::new("lb.toml"), "dataplane = \"ipvs\"\n").expect("valid");
    assert!(
        ipvs.validated.warnings.is_empty(),
        "{:?}",
        ipvs.validated.warnings
    );
    // Interfaces given to IPVS are said to be ignored.
    let ipvs = Config::load_text(
        Path::new("lb.toml"),
        "dataplane = \"ipvs\"\n[xdp]\ninterfaces = [\"eth0\"]\n",
    )
    .expect("valid");
    let w: Vec<String> = ipvs
        .validated
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        w.len() == 1
            && w[0].contains("xdp.interfaces")
            && w[0].contains("ignored with dataplane = \"ipvs\""),
        "{w:?}"
    );
}

#[test]
fn a_dr_real_must_be_on_a_directly_attached_network() {
    use crate::config::host::{Host, Network};

    let host = Host {
        networks: Some(vec![Network {
            addr: "198.18.0.2".parse().unwrap(),
            prefix: 24,
        }]),
    };
    let text = format!(
        "{HEAD}{}[[virtual_server]]\nip = \"198.18.0.100\"\nport = 80\nprotocol = \"TCP\"\nlb_kind = \"DR\"\n\
         [[virtual_server.real_server]]\nip = \"198.18.0.11\"\n\
         [[virtual_server.real_server]]\nip = \"198.18.7.1\"\n\
         [[virtual_server.real_server]]\nip = \"198.18.5.1\"\n\
         [[virtual_server.real_server]]\nip = \"198.18.9.9\"\nlb_kind = \"TUN\"\n",
        // A VIP's network is attached too, while the node is master.
        instance("A", "").replace("198.18.0.10/24", "198.18.7.10/24"),
    );
    let e: Vec<String> =
        match Config::load_text_on(Path::new("lb.toml"), &text, &|_| host.clone(), None) {
            Err(ConfigError::Invalid { diagnostics }) => {
                diagnostics.0.iter().map(ToString::to_string).collect()
            }
            other => panic!("{other:?}"),
        };
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("lb.toml:17:6: virtual_server[0].real_server[2].ip: 198.18.5.1 is on no network directly attached to this host, and DR only rewrites the MAC address; expected a real on one of this host's networks (198.18.0.2/24, 198.18.7.10/24), or lb_kind TUN or NAT"),
        "{e:?}"
    );
    // Away from the node (its interfaces absent) the rule cannot be checked.
    assert!(Config::load_text(Path::new("lb.toml"), &text).is_ok());
}

#[test]
fn script_weights_and_urls_without_path() {
    let e = errors(
        "[vrrp_script.chk]\nscript = \"/bin/true\"\nweight = 254\n\
         [[virtual_server]]\nip = \"198.18.0.10\"\nport = 80\nprotocol = \"TCP\"\n\
         [[virtual_server.real_server]]\nip = \"198.18.1.1\"\n\
         [[virtual_server.real_server.HTTP_GET]]\nurl = [{ digest = \"ff20ad2481f97b1754ef3e12ecd3a9cc\" }]\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("lb.toml:5:10: vrrp_script.chk.weight: 254; expected -253 to 253"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with(
            "lb.toml:13:8: virtual_server[0].real_server[0].HTTP_GET[0].url[0]: a url without path"
        ),
        "{e:?}"
    );
}
