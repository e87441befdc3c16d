use super::*;

fn real(addr: &str, port: u16, method: Method, weight: u32) -> RealStatus {
    RealStatus {
        addr: addr.parse().unwrap(),
        port,
        method,
        weight,
        active: 3,
        inactive: 1,
        counters: Counters {
            conns: 12,
            packets: 340,
            bytes: 123_456_789_012,
        },
        rates: Rates {
            cps: 2.4,
            pps: 100.0,
            bps: 8000.0,
        },
    }
}

fn status() -> Status {
    Status {
        instance: "default".into(),
        config: "/etc/lb.toml".into(),
        generation: 1,
        flows: 4,
        flow_capacity: 65536,
        services: vec![
            ServiceStatus {
                name: "TCP 198.18.0.10:80".into(),
                protocol: Protocol::Tcp,
                vips: vec!["198.18.0.10".parse().unwrap()],
                port: 80,
                scheduler: Scheduler::Wlc,
                persistence: Some((300, 24)),
                ops: false,
                counters: Counters {
                    conns: 24,
                    packets: 680,
                    bytes: 5000,
                },
                rates: Rates::default(),
                reals: vec![
                    real("198.18.1.2", 80, Method::Dr, 1),
                    real("198.18.1.3", 8080, Method::Nat, 0),
                ],
                sorry_server: None,
            },
            ServiceStatus {
                name: "UDP [fd00::10]:53".into(),
                protocol: Protocol::Udp,
                vips: vec!["fd00::10".parse().unwrap()],
                port: 53,
                scheduler: Scheduler::Mh,
                persistence: None,
                ops: true,
                counters: Counters::default(),
                rates: Rates::default(),
                reals: vec![real("fd00::1:2", 53, Method::Tun, 100)],
                sorry_server: None,
            },
        ],
        ..Status::default()
    }
}

#[test]
fn the_list_view_is_laid_out_as_ipvsadm_ln() {
    let text = render_services(&status(), View::List);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], "Prot LocalAddress:Port Scheduler Flags");
    assert_eq!(
        lines[2],
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
    );
    assert_eq!(
        lines[3],
        "TCP  198.18.0.10:80 wlc persistent 300 mask 255.255.255.0"
    );
    assert_eq!(
        lines[4],
        "  -> 198.18.1.2:80                Route   1      3          1         "
    );
    assert_eq!(
        lines[5],
        "  -> 198.18.1.3:8080              Masq    0      3          1         "
    );
    // Each column starts under its heading, as in ipvsadm's output.
    for (heading, value) in [("Forward", "Route"), ("Weight", "1 "), ("ActiveConn", "3 ")] {
        assert_eq!(lines[2].find(heading), lines[4].find(value), "{heading}");
    }
    assert_eq!(lines[6], "UDP  [fd00::10]:53 mh ops");
    assert!(lines[7].starts_with("  -> [fd00::1:2]:53               Tunnel  100"));
    assert_eq!(lines.len(), 8);
}

#[test]
fn the_stats_and_rate_views_have_ipvsadms_columns() {
    let text = render_services(&status(), View::Stats);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    );
    assert_eq!(
        lines[3],
        "TCP  198.18.0.10:80                     24      680        0     5000        0"
    );
    // Past eight digits numbers are scaled, as ipvsadm's print_largenum does.
    assert_eq!(
        lines[4],
        "  -> 198.18.1.2:80                      12      340        0  123456M        0"
    );
    // Numbers end under the end of their heading.
    let end = |line: &str, word: &str| line.find(word).map(|i| i + word.len());
    assert_eq!(end(lines[1], "Conns"), end(lines[3], "24"));
    assert_eq!(end(lines[1], "InPkts"), end(lines[4], "340"));
    let text = render_services(&status(), View::Rate);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].ends_with("CPS    InPPS   OutPPS    InBPS   OutBPS"));
    assert_eq!(
        lines[4],
        "  -> 198.18.1.2:80                       2      100        0     8000        0"
    );
    assert_eq!(end(lines[1], "InBPS"), end(lines[4], "8000"));
}

#[test]
fn a_group_shows_one_block_per_vip() {
    let mut s = status();
    s.services[0].vips.push("198.18.0.11".parse().unwrap());
    let text = render_services(&s, View::List);
    assert!(text.contains("TCP  198.18.0.11:80 wlc"));
    assert_eq!(text.matches("198.18.1.3:8080").count(), 2);
    assert!(!text.contains("share"));
    let text = render_services(&s, View::Stats);
    assert!(text.contains("show the service's counters"));
}

#[test]
fn rates_come_from_two_readings() {
    let a = Counters {
        conns: 10,
        packets: 100,
        bytes: 1000,
    };
    let b = Counters {
        conns: 30,
        packets: 300,
        bytes: 3000,
    };
    let r = Rates::between(a, b, 2.0);
    assert!((r.cps - 10.0).abs() < 1e-9);
    assert!((r.pps - 100.0).abs() < 1e-9);
    assert!((r.bps - 8000.0).abs() < 1e-9);
    // A reused index starts from zero: no negative rates.
    assert!(Rates::between(b, a, 2.0).pps.abs() < f64::EPSILON);
    assert_eq!(Rates::between(a, b, 0.0), Rates::default());
}

#[test]
fn rates_are_matched_by_service_and_real() {
    let earlier = status();
    let mut now = status();
    now.services[0].counters.packets += 2000;
    now.services[0].reals[1].counters.conns += 50;
    now.rates_since(&earlier.services, 10.0);
    assert!((now.services[0].rates.pps - 200.0).abs() < 1e-9);
    assert!((now.services[0].reals[1].rates.cps - 5.0).abs() < 1e-9);
    assert_eq!(now.services[0].reals[0].rates, Rates::default());
    // A service that was not there before has no rate yet.
    now.services[1].name = "UDP [fd00::11]:53".into();
    now.services[1].counters.packets += 10;
    now.rates_since(&earlier.services, 10.0);
    assert_eq!(now.services[1].rates, Rates::default());
}

#[test]
fn vrrp_and_checkers_are_listed_with_reasons() {
    let mut s = status();
    s.vrrp.push(VrrpStatus {
        name: "VI_1".into(),
        interface: "eth0".into(),
        vrid: 51,
        version: 2,
        state: "BACKUP".into(),
        priority: 90,
        configured_priority: 100,
        master: Some(("198.18.0.1".parse().unwrap(), 150)),
        since: 1_795_000_000,
        why: "advert from 198.18.0.1 priority 150".into(),
        become_master: 1,
        release_master: 1,
    });
    s.checkers.push(CheckerStatus {
        service: "TCP 198.18.0.10:80".into(),
        real: "198.18.1.2".parse().unwrap(),
        port: 80,
        checker: "TCP_CHECK 198.18.1.2:80".into(),
        up: false,
        last: "connection refused".into(),
        since: 0,
    });
    let text = render_rest(&s);
    let vrrp = text.lines().find(|l| l.starts_with("VI_1")).unwrap();
    assert!(vrrp.contains("BACKUP"), "{vrrp}");
    assert!(vrrp.contains("90/100"), "{vrrp}");
    assert!(vrrp.contains("198.18.0.1 (150)"), "{vrrp}");
    assert!(
        vrrp.ends_with("advert from 198.18.0.1 priority 150"),
        "{vrrp}"
    );
    let check = text.lines().find(|l| l.starts_with("TCP_CHECK")).unwrap();
    assert!(check.contains("DOWN") && check.contains("1970-01-01T00:00:00Z"));
    assert!(check.ends_with("connection refused"));
}

#[test]
fn timestamps_are_utc_civil_dates() {
    assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(timestamp(1_795_314_645), "2026-11-22T02:30:45Z");
}

#[test]
fn status_round_trips_through_json() {
    let s = status();
    let json = serde_json::to_string(&s).unwrap();
    let back: Status = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}
