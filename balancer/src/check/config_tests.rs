use super::*;

fn parse(toml: &str) -> VirtualServer {
    toml::from_str(toml).unwrap()
}

fn policy() -> Globals {
    Globals {
        scripts: ScriptPolicy {
            user: ScriptUser::current(),
            security: false,
        },
        tls_client: None,
        tls_roots: None,
    }
}

#[test]
fn keepalived_defaults_and_virtual_server_values_apply() {
    let vs = parse(
        r#"
        ip = "198.18.0.100"
        port = 80
        delay_loop = 6
        delay_before_retry = 2
        alpha = true
        [[real_server]]
        ip = "198.18.0.11"
        [[real_server.TCP_CHECK]]
        connect_port = 8080
        [[real_server.HTTP_GET]]
        retry = 4
        url = [{ path = "/h", status_code = ["200-204"] }]
        [[real_server.MISC_CHECK]]
        misc_path = "/usr/bin/true"
        misc_dynamic = true
        "#,
    );
    let checks = checks_for(&vs, &vs.real_server[0], &policy()).unwrap();
    assert_eq!((checks.port, checks.weight, checks.alpha), (80, 1, true));
    let timings: Vec<Timing> = checks.checkers.iter().map(|(_, t)| *t).collect();
    let six = Duration::from_secs(6);
    let two = Duration::from_secs(2);
    assert_eq!(
        timings[0],
        Timing {
            delay_loop: six,
            retry: 1,
            delay_before_retry: two,
            warmup: six,
            rise: 1
        }
    );
    assert_eq!(timings[1].retry, 4);
    assert_eq!(timings[2].retry, 0, "MISC_CHECK retries nothing by default");
    let names: Vec<String> = checks.checkers.iter().map(|(p, _)| p.describe()).collect();
    assert_eq!(names[0], "TCP_CHECK 198.18.0.11:8080");
    assert_eq!(names[1], "HTTP_GET 198.18.0.11:80");
}

#[test]
fn a_service_carries_its_quorum_and_sorry_server() {
    let vs = parse(
        r#"
        ip = "198.18.0.100"
        port = 80
        quorum = 3
        hysteresis = 1
        sorry_server = { ip = "198.18.0.50" }
        [[real_server]]
        ip = "198.18.0.11"
        weight = 2
        inhibit_on_failure = true
        [[real_server]]
        ip = "198.18.0.12"
        port = 8080
        "#,
    );
    let s = service_checks("web", &vs, &policy()).unwrap();
    assert_eq!(
        (s.name.as_str(), s.quorum, s.hysteresis, s.sorry_server),
        ("web", 3, 1, true)
    );
    let reals: Vec<_> = s
        .reals
        .iter()
        .map(|r| (r.port, r.weight, r.inhibit_on_failure))
        .collect();
    assert_eq!(reals, [(80, 2, true), (8080, 1, false)]);
}

/// The error and its sources, as the log shows them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[test]
fn bad_values_are_errors() {
    let vs = parse(
        r#"
        ip = "198.18.0.100"
        port = 443
        [[real_server]]
        ip = "198.18.0.11"
        [[real_server.DNS_CHECK]]
        type = "PTR"
        [[real_server]]
        ip = "198.18.0.12"
        [[real_server.TCP_CHECK]]
        connect_timeout = -1
        [[real_server]]
        ip = "198.18.0.13"
        [[real_server.HTTP_GET]]
        url = [{ path = "/", status_code = ["2xx"] }]
        [[real_server]]
        ip = "198.18.0.14"
        [[real_server.TCP_CHECK]]
        delay_loop = 0
        "#,
    );
    let errors: Vec<String> = vs
        .real_server
        .iter()
        .map(|rs| chain(&checks_for(&vs, rs, &policy()).err().unwrap()))
        .collect();
    assert!(
        errors[0].contains("DNS_CHECK") && errors[0].contains("PTR"),
        "{}",
        errors[0]
    );
    assert!(errors[1].contains("connect_timeout = -1"), "{}", errors[1]);
    assert!(errors[2].contains("url 0"), "{}", errors[2]);
    assert!(errors[3].contains("delay_loop 0"), "{}", errors[3]);
}

#[test]
fn ssl_get_takes_http_get_defaults_and_enable_sni() {
    let vs = parse(
        r#"
        ip = "198.18.0.100"
        port = 443
        delay_loop = 10
        virtualhost = "www.example"
        [[real_server]]
        ip = "198.18.0.11"
        [[real_server.SSL_GET]]
        enable_sni = true
        http_protocol = "1.1"
        url = [{ path = "/h", digest = "5d41402abc4b2a76b9719d911017c592" }]
        "#,
    );
    let rs = &vs.real_server[0];
    let checks = checks_for(&vs, rs, &policy()).unwrap();
    let (probe, timing) = &checks.checkers[0];
    assert_eq!(probe.describe(), "SSL_GET 198.18.0.11:443");
    assert_eq!(timing.retry, 1);
    assert_eq!(timing.delay_before_retry, Duration::from_secs(3));
    let check = http(
        &vs,
        &rs.ssl_get[0],
        "198.18.0.11:443".parse().unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(check.protocol, HttpProtocol::Http11);
    assert_eq!(check.urls[0].virtualhost.as_deref(), Some("www.example"));
    assert_eq!(check.connect.timeout, Duration::from_secs(5));
}

#[test]
fn with_enable_sni_a_virtual_host_must_be_a_server_name() {
    let toml = |sni| {
        format!(
            r#"
            ip = "198.18.0.100"
            port = 443
            [[real_server]]
            ip = "198.18.0.11"
            [[real_server.SSL_GET]]
            enable_sni = {sni}
            url = [{{ path = "/", virtualhost = "not a name" }}]
            "#
        )
    };
    let vs = parse(&toml(true));
    let error = checks_for(&vs, &vs.real_server[0], &policy())
        .err()
        .unwrap();
    assert!(error.to_string().contains("url 0: virtualhost"), "{error}");
    let vs = parse(&toml(false));
    assert!(checks_for(&vs, &vs.real_server[0], &policy()).is_ok());
}

#[test]
fn smtp_check_takes_its_helo_name_or_keepaliveds() {
    let vs = parse(
        r#"
        ip = "198.18.0.100"
        port = 25
        connect_timeout = 3
        [[real_server]]
        ip = "198.18.0.11"
        [[real_server.SMTP_CHECK]]
        [[real_server.SMTP_CHECK]]
        helo_name = "lb1.example"
        connect_port = 587
        "#,
    );
    let checks = checks_for(&vs, &vs.real_server[0], &policy()).unwrap();
    let names: Vec<String> = checks.checkers.iter().map(|(p, _)| p.describe()).collect();
    assert_eq!(
        names,
        ["SMTP_CHECK 198.18.0.11:25", "SMTP_CHECK 198.18.0.11:587"]
    );
    let (_, timing) = &checks.checkers[0];
    assert_eq!(
        (timing.retry, timing.delay_before_retry),
        (1, Duration::from_secs(1))
    );
    let real = "198.18.0.11:25".parse().unwrap();
    let rs = &vs.real_server[0];
    let default = smtp(&vs, &rs.smtp_check[0], real).unwrap();
    assert_eq!(default.helo_name, "smtpchecker.keepalived.org");
    assert_eq!(default.connect.timeout, Duration::from_secs(3));
    assert_eq!(
        smtp(&vs, &rs.smtp_check[1], real).unwrap().helo_name,
        "lb1.example"
    );
}

#[test]
fn dns_check_retries_three_times_a_loop_apart_and_asks_soa_for_the_root() {
    let vs = parse(
        r#"
        ip = "198.18.0.100"
        port = 53
        protocol = "UDP"
        delay_loop = 7
        [[real_server]]
        ip = "198.18.0.11"
        [[real_server.DNS_CHECK]]
        [[real_server.DNS_CHECK]]
        type = "aaaa"
        name = "www.example"
        delay_before_retry = 2
        "#,
    );
    let rs = &vs.real_server[0];
    let checks = checks_for(&vs, rs, &policy()).unwrap();
    let (probe, timing) = &checks.checkers[0];
    assert_eq!(probe.describe(), "DNS_CHECK 198.18.0.11:53");
    assert_eq!(
        (timing.retry, timing.delay_before_retry),
        (3, Duration::from_secs(7))
    );
    assert_eq!(
        checks.checkers[1].1.delay_before_retry,
        Duration::from_secs(2)
    );
    let real = "198.18.0.11:53".parse().unwrap();
    let default = dns(&vs, &rs.dns_check[0], real).unwrap();
    assert_eq!(default.query_type, dns::DEFAULT_TYPE);
    assert!(default.name.is_root());
    let named = dns(&vs, &rs.dns_check[1], real).unwrap();
    assert_eq!(named.name.to_string(), "www.example.");
    assert_eq!(named.query_type.to_string(), "AAAA");
}

#[test]
fn udp_check_and_ping_check_take_their_keys() {
    let vs = parse(
        r#"
        ip = "198.18.0.100"
        port = 53
        protocol = "UDP"
        [[real_server]]
        ip = "198.18.0.11"
        [[real_server.UDP_CHECK]]
        payload = "01 02"
        reply = "ca fx"
        max_reply_length = 4
        [[real_server.UDP_CHECK]]
        [[real_server.PING_CHECK]]
        connect_ip = "198.18.0.12"
        "#,
    );
    let checks = checks_for(&vs, &vs.real_server[0], &policy()).unwrap();
    let names: Vec<String> = checks.checkers.iter().map(|(p, _)| p.describe()).collect();
    assert_eq!(
        names,
        [
            "UDP_CHECK 198.18.0.11:53",
            "UDP_CHECK 198.18.0.11:53",
            "PING_CHECK 198.18.0.12"
        ]
    );
    let mut bad = vs.clone();
    bad.real_server[0].udp_check[0].min_reply_length = Some(9);
    let Err(e) = checks_for(&bad, &bad.real_server[0], &policy()) else {
        panic!("min_reply_length > max_reply_length accepted");
    };
    assert!(
        chain(&e).contains("min_reply_length 9 > max_reply_length 4"),
        "{}",
        chain(&e)
    );
}

#[test]
fn notify_scripts_are_prepared_with_the_script_policy() {
    let vs = parse(
        r#"
        ip = "198.18.0.100"
        port = 80
        omega = true
        quorum_up = "/usr/bin/true up"
        quorum_down = "/usr/bin/true down"
        [[real_server]]
        ip = "198.18.0.11"
        notify_up = "/usr/bin/echo real up"
        notify_down = "/no/such/script"
        "#,
    );
    let Err(e) = service_checks("web", &vs, &policy()) else {
        panic!("a missing notify_down script accepted");
    };
    assert!(
        chain(&e).starts_with("real server 198.18.0.11:80: notify_down"),
        "{}",
        chain(&e)
    );
    let mut good = vs.clone();
    good.real_server[0].notify_down = None;
    let s = service_checks("web", &good, &policy()).unwrap();
    assert!(s.omega);
    assert_eq!(s.quorum_up.map(|q| q.args), Some(vec!["up".into()]));
    assert_eq!(
        s.quorum_down.map(|q| q.command),
        Some("/usr/bin/true down".into())
    );
    let r = &s.reals[0];
    assert_eq!(r.notify_up.as_ref().map(|n| n.args.len()), Some(2));
    assert!(r.notify_down.is_none());
}

#[test]
fn fall_is_retry_plus_one_and_rise_defaults_to_keepalivedss_one() {
    let text = r#"
[xdp]
interfaces = ["eth0"]

[[virtual_server]]
ip = "198.18.0.100"
port = 80
protocol = "TCP"

[[virtual_server.real_server]]
ip = "198.18.0.11"

[[virtual_server.real_server.TCP_CHECK]]
fall = 3
rise = 2

[[virtual_server.real_server.TCP_CHECK]]
"#;
    let config: crate::config::Config = toml::from_str(text).unwrap();
    let vs = &config.virtual_server[0];
    let checks = checks_for(vs, &vs.real_server[0], &policy()).unwrap();
    assert_eq!(
        (checks.checkers[0].1.retry, checks.checkers[0].1.rise),
        (2, 2)
    );
    assert_eq!(
        (checks.checkers[1].1.retry, checks.checkers[1].1.rise),
        (1, 1)
    );
}

/// keepalived lets a `real_server` set defaults for its own checkers: a checker's value wins,
/// then the real's, then the virtual server's.
#[test]
fn a_real_server_s_values_are_defaults_for_its_checkers() {
    let vs = parse(
        r#"
        ip = "198.18.0.100"
        port = 80
        delay_loop = 6
        connect_timeout = 9
        [[real_server]]
        ip = "198.18.0.11"
        delay_loop = 2
        alpha = true
        connect_timeout = 1.5
        retry = 5
        delay_before_retry = 0.5
        warmup = 0
        [[real_server.TCP_CHECK]]
        [[real_server.TCP_CHECK]]
        delay_loop = 4
        retry = 1
        [[real_server]]
        ip = "198.18.0.12"
        [[real_server.TCP_CHECK]]
        "#,
    );
    let checks = checks_for(&vs, &vs.real_server[0], &policy()).unwrap();
    assert!(checks.alpha);
    let timings: Vec<Timing> = checks.checkers.iter().map(|(_, t)| *t).collect();
    assert_eq!(
        timings[0],
        Timing {
            delay_loop: Duration::from_secs(2),
            retry: 5,
            delay_before_retry: Duration::from_millis(500),
            warmup: Duration::ZERO,
            rise: 1
        }
    );
    assert_eq!(
        (timings[1].delay_loop, timings[1].retry),
        (Duration::from_secs(4), 1)
    );
    let other = checks_for(&vs, &vs.real_server[1], &policy()).unwrap();
    assert!(!other.alpha);
    assert_eq!(other.checkers[0].1.delay_loop, Duration::from_secs(6));
    assert_eq!(other.checkers[0].1.retry, 1);
}
