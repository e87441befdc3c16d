//! keepalived.conf's `virtual_server_group` and `virtual_server` sections.

use crate::config::keepalived::import::Cx;
use crate::config::keepalived::tree::Node;
use crate::config::schema::{
    Checker, Endpoint, RealServer, Ssl, Url, VirtualServer, VirtualServerGroup,
};
use crate::config::validate::DEFAULT_PERSISTENCE_S;

pub(crate) fn group(cx: &mut Cx, key: &str, node: &Node) -> VirtualServerGroup {
    cx.at(key, node);
    let mut g = VirtualServerGroup::default();
    for c in &node.children {
        if c.keyword == "fwmark" {
            let k = format!("{key}.fwmark[{}]", g.fwmark.len());
            cx.at(&k, c);
            match c.args.first().map(|a| a.parse()) {
                Some(Ok(m)) => g.fwmark.push(m),
                _ => cx.error(
                    &k,
                    c,
                    format!("{:?}", c.args.join(" ")),
                    "fwmark INTEGER [inet|inet6]",
                ),
            }
        } else {
            let k = format!("{key}.address[{}]", g.address.len());
            cx.at(&k, c);
            let mut line = c.keyword.clone();
            for a in &c.args {
                line.push(' ');
                line.push_str(a);
            }
            g.address.push(line);
        }
    }
    g
}

const VS: [&str; 30] = [
    "delay_loop",
    "lb_algo",
    "lvs_sched",
    "lb_kind",
    "lvs_method",
    "persistence_timeout",
    "persistence_granularity",
    "protocol",
    "ops",
    "sh-port",
    "mh-port",
    "sorry_server",
    "quorum",
    "hysteresis",
    "alpha",
    "omega",
    "quorum_up",
    "quorum_down",
    "virtualhost",
    "inhibit_on_failure",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "real_server",
    "ha_suspend",
    "smtp_alert",
    "snmp_name",
    "ip_family",
    "sorry_server_inhibit",
];

#[expect(
    clippy::too_many_lines,
    reason = "one arm per keepalived keyword: the mapping reads as a table"
)]
pub(crate) fn virtual_server(cx: &mut Cx, key: &str, node: &Node) -> VirtualServer {
    cx.at(key, node);
    let mut vs = VirtualServer {
        ip: None,
        port: None,
        fwmark: None,
        group: None,
        delay_loop: 60.0,
        lb_algo: "wlc".into(),
        lb_kind: "NAT".into(),
        persistence_timeout: None,
        persistence_granularity: None,
        protocol: None,
        ops: false,
        sh_port: false,
        mh_port: false,
        sorry_server: None,
        quorum: 1,
        hysteresis: 0,
        alpha: false,
        omega: false,
        quorum_up: None,
        quorum_down: None,
        smtp_alert: None,
        virtualhost: None,
        sorry_server_inhibit: false,
        inhibit_on_failure: false,
        connect_timeout: None,
        retry: None,
        delay_before_retry: None,
        warmup: None,
        real_server: Vec::new(),
    };
    match node.args.as_slice() {
        [kind, mark] if kind == "fwmark" => match mark.parse() {
            Ok(m) => vs.fwmark = Some(m),
            Err(_) => cx.error(
                &format!("{key}.fwmark"),
                node,
                format!("{mark:?}"),
                "an integer",
            ),
        },
        [kind, name] if kind == "group" => vs.group = Some(name.clone()),
        [ip, rest @ ..] if rest.len() <= 1 => {
            cx.at(&format!("{key}.ip"), node);
            cx.at(&format!("{key}.port"), node);
            let port = rest.first().map(|p| p.parse::<u16>());
            match (ip.parse(), port) {
                (Ok(ip), None) => vs.ip = Some(ip),
                (Ok(ip), Some(Ok(port))) => (vs.ip, vs.port) = (Some(ip), Some(port)),
                _ => cx.error(
                    key,
                    node,
                    format!("{:?}", node.args.join(" ")),
                    "IPADDR [PORT], fwmark INTEGER or group NAME",
                ),
            }
        }
        args => cx.error(
            key,
            node,
            format!("{:?}", args.join(" ")),
            "IPADDR [PORT], fwmark INTEGER or group NAME",
        ),
    }
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        match c.keyword.as_str() {
            "delay_loop" => vs.delay_loop = cx.arg(&k, c, "seconds").unwrap_or(vs.delay_loop),
            "lb_algo" | "lvs_sched" => {
                vs.lb_algo = cx
                    .arg(&format!("{key}.lb_algo"), c, "a scheduler")
                    .unwrap_or_default();
            }
            "lb_kind" | "lvs_method" => vs.lb_kind = lb_kind(cx, &format!("{key}.lb_kind"), c),
            "persistence_timeout" => {
                // keepalived.conf(5): "default 6 minutes" when the keyword stands alone.
                vs.persistence_timeout = if c.args.is_empty() {
                    cx.at(&k, c);
                    Some(DEFAULT_PERSISTENCE_S)
                } else {
                    cx.arg(&k, c, "seconds")
                };
            }
            "persistence_granularity" => vs.persistence_granularity = cx.arg(&k, c, "a netmask"),
            "protocol" => vs.protocol = cx.arg(&k, c, "TCP or UDP"),
            "ops" => vs.ops = cx.flag(&k, c),
            "sh-port" => vs.sh_port = cx.flag(&k, c),
            "mh-port" => vs.mh_port = cx.flag(&k, c),
            "sorry_server" => vs.sorry_server = endpoint(cx, &k, c),
            "quorum" => vs.quorum = cx.arg(&k, c, "a weight").unwrap_or(1),
            "hysteresis" => vs.hysteresis = cx.arg(&k, c, "a weight").unwrap_or(0),
            "alpha" => vs.alpha = cx.flag(&k, c),
            "omega" => vs.omega = cx.flag(&k, c),
            "quorum_up" => vs.quorum_up = cx.text(&k, c),
            "quorum_down" => vs.quorum_down = cx.text(&k, c),
            "smtp_alert" => vs.smtp_alert = Some(cx.flag(&k, c)),
            "virtualhost" => vs.virtualhost = cx.text(&k, c),
            "inhibit_on_failure" => vs.inhibit_on_failure = cx.flag(&k, c),
            "sorry_server_inhibit" => vs.sorry_server_inhibit = cx.flag(&k, c),
            "connect_timeout" => vs.connect_timeout = cx.arg(&k, c, "seconds"),
            "retry" => vs.retry = cx.arg(&k, c, "a count"),
            "delay_before_retry" => vs.delay_before_retry = cx.arg(&k, c, "seconds"),
            "warmup" => vs.warmup = cx.arg(&k, c, "seconds"),
            "real_server" => {
                let rk = format!("{key}.real_server[{}]", vs.real_server.len());
                if let Some(r) = real_server(cx, &rk, c) {
                    vs.real_server.push(r);
                }
            }
            _ => cx.unknown(key, c, &VS),
        }
    }
    vs
}

/// `lb_kind` / `lvs_method`: the method only; a TUN `type` is not ours yet.
fn lb_kind(cx: &mut Cx, key: &str, node: &Node) -> String {
    cx.at(key, node);
    match node.args.as_slice() {
        [_] | [] => {}
        // `TUN type ipip` is what we send; GUE and GRE reals could not read it.
        [kind, ty, tunnel, ..] if kind.eq_ignore_ascii_case("TUN") && ty == "type" => {
            if !tunnel.eq_ignore_ascii_case("ipip") || node.args.len() > 3 {
                cx.error(
                    key,
                    node,
                    format!("{:?}", node.args.join(" ")),
                    "TUN or TUN type ipip: the XDP data plane encapsulates in IPIP / IP6IP6 only",
                );
            }
        }
        _ => cx.unknown(key, node, &[]),
    }
    node.args.first().cloned().unwrap_or_default()
}

fn endpoint(cx: &mut Cx, key: &str, node: &Node) -> Option<Endpoint> {
    cx.at(key, node);
    match node.args.as_slice() {
        [ip] => ip.parse().ok().map(|ip| Endpoint { ip, port: None }),
        [ip, port] => match (ip.parse(), port.parse()) {
            (Ok(ip), Ok(port)) => Some(Endpoint {
                ip,
                port: Some(port),
            }),
            _ => None,
        },
        _ => None,
    }
    .or_else(|| {
        cx.error(
            key,
            node,
            format!("{:?}", node.args.join(" ")),
            "IPADDR [PORT]",
        );
        None
    })
}

const REAL: [&str; 22] = [
    "weight",
    "delay_loop",
    "alpha",
    "connect_timeout",
    "retry",
    "nb_get_retry",
    "delay_before_retry",
    "warmup",
    "lb_kind",
    "lvs_method",
    "inhibit_on_failure",
    "notify_up",
    "notify_down",
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "uthreshold",
];

fn real_server(cx: &mut Cx, key: &str, node: &Node) -> Option<RealServer> {
    let at = endpoint(cx, key, node)?;
    cx.at(&format!("{key}.ip"), node);
    let mut r = RealServer {
        ip: at.ip,
        port: at.port,
        weight: 1,
        lb_kind: None,
        inhibit_on_failure: None,
        notify_up: None,
        notify_down: None,
        delay_loop: None,
        alpha: None,
        connect_timeout: None,
        retry: None,
        delay_before_retry: None,
        warmup: None,
        tcp_check: Vec::new(),
        http_get: Vec::new(),
        ssl_get: Vec::new(),
        misc_check: Vec::new(),
        smtp_check: Vec::new(),
        dns_check: Vec::new(),
        udp_check: Vec::new(),
        ping_check: Vec::new(),
    };
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        let list = match c.keyword.as_str() {
            "weight" => {
                r.weight = cx.arg(&k, c, "0 to 65535").unwrap_or(1);
                continue;
            }
            "lb_kind" | "lvs_method" => {
                r.lb_kind = Some(lb_kind(cx, &format!("{key}.lb_kind"), c));
                continue;
            }
            "inhibit_on_failure" => {
                r.inhibit_on_failure = Some(cx.flag(&k, c));
                continue;
            }
            "notify_up" => {
                r.notify_up = cx.text(&k, c);
                continue;
            }
            "notify_down" => {
                r.notify_down = cx.text(&k, c);
                continue;
            }
            // Defaults for this real's checkers, as keepalived takes them here.
            "delay_loop" => {
                r.delay_loop = cx.arg(&k, c, "seconds");
                continue;
            }
            "alpha" => {
                r.alpha = Some(cx.flag(&k, c));
                continue;
            }
            "connect_timeout" => {
                r.connect_timeout = cx.arg(&k, c, "seconds");
                continue;
            }
            "retry" | "nb_get_retry" => {
                r.retry = cx.arg(&format!("{key}.retry"), c, "a count");
                continue;
            }
            "delay_before_retry" => {
                r.delay_before_retry = cx.arg(&k, c, "seconds");
                continue;
            }
            "warmup" => {
                r.warmup = cx.arg(&k, c, "seconds");
                continue;
            }
            "TCP_CHECK" => &mut r.tcp_check,
            "HTTP_GET" => &mut r.http_get,
            "SSL_GET" => &mut r.ssl_get,
            "MISC_CHECK" => &mut r.misc_check,
            "SMTP_CHECK" => &mut r.smtp_check,
            "DNS_CHECK" => &mut r.dns_check,
            "UDP_CHECK" => &mut r.udp_check,
            "PING_CHECK" => &mut r.ping_check,
            _ => {
                cx.unknown(key, c, &REAL);
                continue;
            }
        };
        let ck = format!("{k}[{}]", list.len());
        list.push(checker(cx, &ck, c));
    }
    Some(r)
}

const CHECK: [&str; 25] = [
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_port",
    "connect_timeout",
    "retry",
    "nb_get_retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "fwmark",
    "url",
    "http_protocol",
    "enable_sni",
    "helo_name",
    "type",
    "name",
    "misc_path",
    "misc_timeout",
    "misc_dynamic",
    "payload",
    "require_reply",
    "min_reply_length",
    "max_reply_length",
    "user",
];

fn checker(cx: &mut Cx, key: &str, node: &Node) -> Checker {
    cx.at(key, node);
    let mut ch = Checker::default();
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        match c.keyword.as_str() {
            "connect_ip" => ch.connect_ip = cx.arg(&k, c, "an address"),
            "connect_port" => ch.connect_port = cx.arg(&k, c, "a port"),
            "bindto" => ch.bindto = cx.arg(&k, c, "an address"),
            "bind_port" => ch.bind_port = cx.arg(&k, c, "a port"),
            "connect_timeout" => ch.connect_timeout = cx.arg(&k, c, "seconds"),
            "retry" | "nb_get_retry" => ch.retry = cx.arg(&format!("{key}.retry"), c, "a count"),
            "delay_before_retry" => ch.delay_before_retry = cx.arg(&k, c, "seconds"),
            "warmup" => ch.warmup = cx.arg(&k, c, "seconds"),
            "delay_loop" => ch.delay_loop = cx.arg(&k, c, "seconds"),
            "fwmark" => ch.fwmark = cx.arg(&k, c, "an integer"),
            "url" => {
                let uk = format!("{k}[{}]", ch.url.len());
                ch.url.push(url(cx, &uk, c));
            }
            "http_protocol" => ch.http_protocol = cx.text(&k, c),
            "enable_sni" => ch.enable_sni = cx.flag(&k, c),
            "helo_name" => ch.helo_name = cx.text(&k, c),
            "type" => ch.query_type = cx.text(&k, c),
            "name" => ch.name = cx.text(&k, c),
            "misc_path" => ch.misc_path = cx.text(&k, c),
            "misc_timeout" => ch.misc_timeout = cx.arg(&k, c, "seconds"),
            "misc_dynamic" => ch.misc_dynamic = cx.flag(&k, c),
            "user" => ch.user = cx.text(&k, c),
            "payload" => ch.payload = cx.text(&k, c),
            "require_reply" => {
                // A flag, or the octets the answer must start with.
                cx.at(&k, c);
                ch.require_reply = true;
                if !c.args.is_empty() {
                    ch.reply = Some(c.args.join(" "));
                }
            }
            "min_reply_length" => ch.min_reply_length = cx.arg(&k, c, "0 to 65535"),
            "max_reply_length" => ch.max_reply_length = cx.arg(&k, c, "0 to 65535"),
            _ => cx.unknown(key, c, &CHECK),
        }
    }
    ch
}

/// The top-level `SSL { }` block.
pub(crate) fn ssl(cx: &mut Cx, node: &Node) -> Ssl {
    cx.at("SSL", node);
    let mut ssl = Ssl::default();
    for c in &node.children {
        let k = format!("SSL.{}", c.keyword);
        match c.keyword.as_str() {
            "password" => ssl.password = cx.text(&k, c),
            "ca" => ssl.ca = cx.text(&k, c),
            "certificate" => ssl.certificate = cx.text(&k, c),
            "key" => ssl.key = cx.text(&k, c),
            _ => cx.unknown("SSL", c, &["password", "ca", "certificate", "key"]),
        }
    }
    ssl
}

fn url(cx: &mut Cx, key: &str, node: &Node) -> Url {
    cx.at(key, node);
    let mut u = Url::default();
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        match c.keyword.as_str() {
            "path" => u.path = cx.text(&k, c),
            "digest" => u.digest = cx.text(&k, c),
            "status_code" => {
                cx.at(&k, c);
                for (i, _) in c.args.iter().enumerate() {
                    cx.at(&format!("{k}[{i}]"), c);
                }
                u.status_code.clone_from(&c.args);
            }
            "virtualhost" => u.virtualhost = cx.text(&k, c),
            "regex" => u.regex = cx.text(&k, c),
            "regex_no_match" => u.regex_no_match = cx.flag(&k, c),
            "regex_options" => {
                cx.at(&k, c);
                u.regex_options.clone_from(&c.args);
            }
            "regex_min_offset" => u.regex_min_offset = cx.arg(&k, c, "an offset in bytes"),
            "regex_max_offset" => u.regex_max_offset = cx.arg(&k, c, "an offset in bytes"),
            // The PCRE2 JIT's stack: the regex engine here needs none.
            "regex_stack" => cx.unknown(key, c, &[]),
            _ => cx.unknown(
                key,
                c,
                &[
                    "path",
                    "digest",
                    "status_code",
                    "virtualhost",
                    "regex",
                    "regex_no_match",
                    "regex_options",
                    "regex_min_offset",
                    "regex_max_offset",
                ],
            ),
        }
    }
    u
}
