//! `virtual_server_group` and `virtual_server` rules, and the data plane's services.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::address::{group_line, netmask_prefix};
use crate::config::schema::{Checker, Config, DataplaneKind, RealServer, VirtualServer};
use crate::config::validate::Report;
use crate::model::{
    FwmarkService, Method, Persistence, Protocol, RealServer as Real, Scheduler, VirtualService,
};

/// keepalived's `persistence_timeout` when only a granularity is given.
pub const DEFAULT_PERSISTENCE_S: u32 = 360;
/// ipvsadm(8): "valid values of weight are 0 through to 65535".
const MAX_WEIGHT: i64 = 65_535;

const SCHEDULERS: [&str; 9] = ["rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh"];
/// IPVS schedulers keepalived accepts that the XDP data plane does not implement.
const UNSUPPORTED_SCHEDULERS: [&str; 5] = ["lblc", "lblcr", "fo", "ovf", "twos"];

/// The services by address, and those by firewall mark.
pub(super) fn services(
    config: &Config,
    report: &mut Report<'_>,
) -> (Vec<VirtualService>, Vec<FwmarkService>) {
    let groups = groups(config, report);
    let mut by_addr = Vec::new();
    let mut by_mark = Vec::new();
    for (i, vs) in config.virtual_server.iter().enumerate() {
        let key = format!("virtual_server[{i}]");
        let (addr, mark) = service(&groups, &key, vs, report);
        by_addr.extend(addr);
        by_mark.extend(mark);
    }
    (by_addr, by_mark)
}

/// A group's addresses by port, and its `fwmark` entries.
#[derive(Default)]
struct Group {
    by_port: BTreeMap<u16, Vec<IpAddr>>,
    fwmarks: Vec<u32>,
}

fn groups(config: &Config, report: &mut Report<'_>) -> BTreeMap<String, Group> {
    let mut out = BTreeMap::new();
    for (name, group) in &config.virtual_server_group {
        let mut g = Group::default();
        for (i, line) in group.address.iter().enumerate() {
            let key = format!("virtual_server_group.{name}.address[{i}]");
            match group_line(line) {
                Ok((addrs, port)) => g.by_port.entry(port).or_default().extend(addrs),
                Err(expected) => report.error(&key, format!("{line:?}"), &expected),
            }
        }
        for (i, mark) in group.fwmark.iter().enumerate() {
            fwmark_needs_netfilter(
                &format!("virtual_server_group.{name}.fwmark[{i}]"),
                *mark,
                report,
            );
        }
        g.fwmarks.clone_from(&group.fwmark);
        out.insert(name.clone(), g);
    }
    out
}

/// Marks are set by netfilter (iptables / nftables `mark`), which runs after XDP: no packet
/// the XDP program sees carries one yet, so an fwmark service would never match. Refused
/// rather than accepted and silently never forwarded.
fn fwmark_needs_netfilter(key: &str, mark: u32, report: &mut Report<'_>) {
    if report.dataplane == DataplaneKind::Xdp {
        report.error(
            key,
            format!(
                "fwmark {mark}: the XDP data plane runs before netfilter sets marks, so it can never match one"
            ),
            "the addresses (and ports) the mark selected, as a virtual_server_group, or an all-port service (port 0 with persistence_timeout) for persistence across ports",
        );
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "a service's rules in the order an operator reads its keys"
)]
fn service(
    groups: &BTreeMap<String, Group>,
    key: &str,
    vs: &VirtualServer,
    report: &mut Report<'_>,
) -> (Vec<VirtualService>, Vec<FwmarkService>) {
    let before = report.errors.len();
    let scheduler = scheduler(&format!("{key}.lb_algo"), &vs.lb_algo, report);
    let method = method(&format!("{key}.lb_kind"), &vs.lb_kind, report);
    // keepalived's check_data.c: "no protocol set - defaulting to UDP".
    let protocol_text = vs.protocol.clone().unwrap_or_else(|| {
        report.warn(
            &format!("{key}.protocol"),
            "no protocol set: UDP, as keepalived defaults".into(),
            "protocol = \"TCP\" for a TCP service",
        );
        "UDP".to_owned()
    });
    let protocol = report
        .one_of(&format!("{key}.protocol"), &protocol_text, &["TCP", "UDP"])
        .map(|p| {
            if p == "TCP" {
                Protocol::Tcp
            } else {
                Protocol::Udp
            }
        });
    if vs.ops && protocol == Some(Protocol::Tcp) {
        report.error(
            &format!("{key}.ops"),
            "ops with protocol TCP".into(),
            "ops only with protocol UDP",
        );
    }
    // VIPs by port and marks, from whichever of ip / group / fwmark names them.
    let mut vips: Vec<(u16, Vec<IpAddr>)> = Vec::new();
    let mut marks: Vec<u32> = Vec::new();
    match (vs.ip, &vs.group, vs.fwmark) {
        (Some(ip), None, None) => vips.push((vs.port.unwrap_or(0), vec![ip])),
        (None, Some(group), None) => {
            if report.reference(
                &format!("{key}.group"),
                group,
                "virtual_server_group",
                groups.keys(),
            ) && let Some(g) = groups.get(group)
            {
                vips.extend(g.by_port.iter().map(|(p, a)| (*p, a.clone())));
                marks.extend(&g.fwmarks);
            }
        }
        (None, None, Some(mark)) => {
            fwmark_needs_netfilter(&format!("{key}.fwmark"), mark, report);
            marks.push(mark);
        }
        _ => report.error(
            key,
            "not exactly one of ip, group and fwmark".into(),
            "ip (with port), group or fwmark: one of them",
        ),
    }
    let mut persistent = vs.persistence_timeout.is_some() || vs.persistence_granularity.is_some();
    if vs.ip.is_some() && vs.port.unwrap_or(0) == 0 && !persistent {
        // keepalived's check_data.c: "zero port only valid for persistent services - setting".
        report.warn(
            &format!("{key}.port"),
            format!("no port on a service without persistence: persistent for {DEFAULT_PERSISTENCE_S} s, as keepalived makes it"),
            "a port, or persistence_timeout for an all-port service",
        );
        persistent = true;
    }
    // An fwmark service has no address: its reals say which family it is (IPVS's too).
    let family_v4 = vips
        .iter()
        .flat_map(|(_, a)| a)
        .next()
        .or_else(|| vs.real_server.first().map(|r| &r.ip))
        .map(IpAddr::is_ipv4);
    let persistence = persistent.then(|| {
        let width = if family_v4 == Some(false) { 128 } else { 32 };
        let prefix = match vs.persistence_granularity {
            None => Some(width),
            Some(mask) => netmask_prefix(mask)
                .filter(|_| Some(mask.is_ipv4()) == family_v4.or(Some(mask.is_ipv4()))),
        };
        if prefix.is_none() {
            report.error(
                &format!("{key}.persistence_granularity"),
                format!(
                    "{:?}",
                    vs.persistence_granularity
                        .map(|m| m.to_string())
                        .unwrap_or_default()
                ),
                "a contiguous netmask of the service's family, e.g. 255.255.255.0",
            );
        }
        Persistence {
            timeout_s: vs.persistence_timeout.unwrap_or(DEFAULT_PERSISTENCE_S),
            prefix: prefix.unwrap_or(width),
        }
    });
    let mut reals = Vec::new();
    for (j, rs) in vs.real_server.iter().enumerate() {
        let rkey = format!("{key}.real_server[{j}]");
        if let Some(r) = real(&rkey, rs, method, family_v4, report) {
            reals.push(r);
        }
        checkers(&rkey, rs, report);
    }
    if let (Some(quorum), total) = (
        Some(vs.quorum),
        vs.real_server.iter().map(|r| r.weight.max(0)).sum::<i64>(),
    ) && i64::from(quorum) > total
        && !vs.real_server.is_empty()
    {
        report.warn(
            &format!("{key}.quorum"),
            format!("{quorum} is above the total weight {total} of the reals: the service can never be up"),
            "",
        );
    }
    let sorry = vs.sorry_server.map(|s| Real {
        addr: s.ip,
        port: s.port.or(vs.port).unwrap_or(0),
        weight: 1,
        method: method.unwrap_or(Method::Nat),
        tunnel_source: None,
        egress: None,
    });
    if report.errors.len() != before {
        return (Vec::new(), Vec::new());
    }
    let (Some(scheduler), Some(protocol)) = (scheduler, protocol) else {
        return (Vec::new(), Vec::new());
    };
    let by_addr = vips.into_iter().map(|v| (None, v));
    let by_mark = marks.into_iter().map(|m| (Some(m), (0, Vec::new())));
    let mut addressed = Vec::new();
    let mut marked = Vec::new();
    for (fwmark, (port, vips)) in by_addr.chain(by_mark) {
        let service = VirtualService {
            vips,
            port,
            protocol,
            scheduler,
            ops: vs.ops,
            hash_port: (scheduler == Scheduler::Sh && vs.sh_port)
                || (scheduler == Scheduler::Mh && vs.mh_port),
            persistence,
            reals: reals
                .iter()
                .map(|r: &Real| Real {
                    port: if r.port == 0 { port } else { r.port },
                    ..r.clone()
                })
                .collect(),
            sorry_server: sorry.clone().map(|s| Real {
                port: if s.port == 0 { port } else { s.port },
                ..s
            }),
        };
        match fwmark {
            Some(fwmark) => marked.push(FwmarkService { fwmark, service }),
            None => addressed.push(service),
        }
    }
    (addressed, marked)
}

fn scheduler(key: &str, name: &str, report: &mut Report<'_>) -> Option<Scheduler> {
    if UNSUPPORTED_SCHEDULERS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
    {
        report.error(
            key,
            format!("{name:?} is an IPVS scheduler the XDP data plane does not implement"),
            &format!("one of {}", SCHEDULERS.join(", ")),
        );
        return None;
    }
    let s = report.one_of(key, name, &SCHEDULERS)?;
    Some(match s {
        "rr" => Scheduler::Rr,
        "wrr" => Scheduler::Wrr,
        "lc" => Scheduler::Lc,
        "wlc" => Scheduler::Wlc,
        "sed" => Scheduler::Sed,
        "nq" => Scheduler::Nq,
        "sh" => Scheduler::Sh,
        "dh" => Scheduler::Dh,
        _ => Scheduler::Mh,
    })
}

fn method(key: &str, name: &str, report: &mut Report<'_>) -> Option<Method> {
    report
        .one_of(key, name, &["DR", "NAT", "TUN"])
        .map(|m| match m {
            "DR" => Method::Dr,
            "TUN" => Method::Tun,
            _ => Method::Nat,
        })
}

fn real(
    key: &str,
    rs: &RealServer,
    vs_method: Option<Method>,
    family_v4: Option<bool>,
    report: &mut Report<'_>,
) -> Option<Real> {
    let weight = u32::try_from(rs.weight)
        .ok()
        .filter(|w| i64::from(*w) <= MAX_WEIGHT);
    if weight.is_none() {
        report.error(
            &format!("{key}.weight"),
            rs.weight.to_string(),
            "0 to 65535 (0 drains)",
        );
    }
    let method = match &rs.lb_kind {
        Some(kind) => method(&format!("{key}.lb_kind"), kind, report),
        None => vs_method,
    };
    if method == Some(Method::Dr)
        && let Some(attached) = &report.attached
        && !attached.iter().any(|n| n.contains(rs.ip))
    {
        let mut on: Vec<String> = attached
            .iter()
            .filter(|n| n.addr.is_ipv4() == rs.ip.is_ipv4())
            .map(ToString::to_string)
            .collect();
        on.dedup();
        report.error(
            &format!("{key}.ip"),
            format!(
                "{} is on no network directly attached to this host, and DR only rewrites the MAC address",
                rs.ip
            ),
            &format!(
                "a real on one of this host's networks ({}), or lb_kind TUN or NAT to reach it through a router",
                if on.is_empty() { "none".into() } else { on.join(", ") }
            ),
        );
    }
    if family_v4.is_some_and(|v4| v4 != rs.ip.is_ipv4()) {
        report.error(
            &format!("{key}.ip"),
            format!("{} is not of the virtual server's address family", rs.ip),
            "a real of the same family as the VIP",
        );
    }
    Some(Real {
        addr: rs.ip,
        port: rs.port.unwrap_or(0),
        weight: weight?,
        method: method?,
        tunnel_source: None,
        egress: None,
    })
}

/// The `SSL` block: a key and a password need their certificate.
pub(crate) fn ssl(config: &Config, report: &mut Report<'_>) {
    let Some(ssl) = &config.ssl else { return };
    if ssl.password.is_some() && ssl.certificate.is_none() {
        report.error(
            "SSL.password",
            "a password without a certificate and key".into(),
            "certificate (and key), the encrypted key the password opens",
        );
    }
    if ssl.key.is_some() && ssl.certificate.is_none() {
        report.error(
            "SSL.key",
            "a key without a certificate".into(),
            "certificate, the PEM file the key belongs to",
        );
    }
    if ssl.verify && ssl.ca.is_none() {
        report.error(
            "SSL.verify",
            "true without a ca".into(),
            "ca, the PEM file of the certificates the reals' must chain to",
        );
    }
}

/// The fields each checker kind accepts besides the common connection options.
const KIND_FIELDS: [(&str, &[&str]); 8] = [
    ("TCP_CHECK", &[]),
    ("HTTP_GET", &["url", "http_protocol"]),
    ("SSL_GET", &["url", "http_protocol", "enable_sni"]),
    ("SMTP_CHECK", &["helo_name"]),
    ("DNS_CHECK", &["type", "name"]),
    (
        "MISC_CHECK",
        &["misc_path", "misc_timeout", "misc_dynamic", "user"],
    ),
    (
        "UDP_CHECK",
        &[
            "payload",
            "require_reply",
            "reply",
            "min_reply_length",
            "max_reply_length",
        ],
    ),
    ("PING_CHECK", &[]),
];

fn checkers(key: &str, rs: &RealServer, report: &mut Report<'_>) {
    let lists: [(&str, &Vec<Checker>); 8] = [
        ("TCP_CHECK", &rs.tcp_check),
        ("HTTP_GET", &rs.http_get),
        ("SSL_GET", &rs.ssl_get),
        ("SMTP_CHECK", &rs.smtp_check),
        ("DNS_CHECK", &rs.dns_check),
        ("MISC_CHECK", &rs.misc_check),
        ("UDP_CHECK", &rs.udp_check),
        ("PING_CHECK", &rs.ping_check),
    ];
    for ((kind, list), (_, allowed)) in lists.into_iter().zip(KIND_FIELDS) {
        for (i, c) in list.iter().enumerate() {
            let ckey = format!("{key}.{kind}[{i}]");
            rise_fall(&ckey, c, report);
            foreign_fields(&ckey, kind, c, allowed, report);
            match kind {
                "HTTP_GET" | "SSL_GET" => {
                    if c.url.is_empty() {
                        report.error(
                            &ckey,
                            format!("a {kind} without url"),
                            "at least one url { path = \"/...\" }",
                        );
                    }
                    for (u, url) in c.url.iter().enumerate() {
                        let ukey = format!("{ckey}.url[{u}]");
                        if url.path.is_none() {
                            report.error(
                                &ukey,
                                "a url without path".into(),
                                "path, e.g. \"/health\"",
                            );
                        }
                        for (s, code) in url.status_code.iter().enumerate() {
                            if !status_range(code) {
                                report.error(
                                    &format!("{ukey}.status_code[{s}]"),
                                    format!("{code:?}"),
                                    "a code 100-599 or a range such as 200-299",
                                );
                            }
                        }
                        body_match(&ukey, url, report);
                    }
                    if let Some(p) = &c.http_protocol {
                        report.one_of(&format!("{ckey}.http_protocol"), p, &["1.0", "1.0C", "1.1"]);
                    }
                }
                "MISC_CHECK" if c.misc_path.as_deref().is_none_or(|p| p.trim().is_empty()) => {
                    report.error(
                        &ckey,
                        "a MISC_CHECK without misc_path".into(),
                        "misc_path, the command to run",
                    );
                }
                "UDP_CHECK" => udp_check(&ckey, c, report),
                "PING_CHECK" => {
                    // ICMP echo has no ports (`check_ping.c` uses only the addresses).
                    for (field, set) in [
                        ("connect_port", c.connect_port.is_some()),
                        ("bind_port", c.bind_port.is_some()),
                    ] {
                        if set {
                            report.warn(
                                &format!("{ckey}.{field}"),
                                format!("{field} in a PING_CHECK: ICMP has no ports; ignored"),
                                "connect_ip and bindto only",
                            );
                        }
                    }
                }
                "DNS_CHECK" => {
                    if let Some(t) = &c.query_type {
                        report.one_of(
                            &format!("{ckey}.type"),
                            t,
                            &["A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"],
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// The kind-specific fields a checker table sets.
/// Keys of another checker kind in this one.
fn foreign_fields(ckey: &str, kind: &str, c: &Checker, allowed: &[&str], report: &mut Report<'_>) {
    for field in specific_fields(c) {
        if !allowed.contains(&field) {
            let owner = KIND_FIELDS
                .iter()
                .find(|(_, f)| f.contains(&field))
                .map_or("", |(k, _)| *k);
            report.error(
                &format!("{ckey}.{field}"),
                format!("{field} (a {owner} key) in a {kind}"),
                &format!(
                    "the connection options or {}",
                    if allowed.is_empty() {
                        "nothing else".into()
                    } else {
                        allowed.join(", ")
                    }
                ),
            );
        }
    }
}

/// Our `rise` and `fall`: at least 1, and `fall` not beside keepalived's `retry`.
fn rise_fall(ckey: &str, c: &Checker, report: &mut Report<'_>) {
    if c.fall.is_some() && c.retry.is_some() {
        report.error(
            &format!("{ckey}.fall"),
            "both fall and retry".into(),
            "one of them: fall = retry + 1",
        );
    }
    for (field, value) in [("fall", c.fall), ("rise", c.rise)] {
        if value == Some(0) {
            report.error(&format!("{ckey}.{field}"), "0".into(), "1 or more");
        }
    }
}

fn specific_fields(c: &Checker) -> Vec<&'static str> {
    let set = [
        ("url", !c.url.is_empty()),
        ("http_protocol", c.http_protocol.is_some()),
        ("enable_sni", c.enable_sni),
        ("helo_name", c.helo_name.is_some()),
        ("type", c.query_type.is_some()),
        ("name", c.name.is_some()),
        ("misc_path", c.misc_path.is_some()),
        ("misc_timeout", c.misc_timeout.is_some()),
        ("misc_dynamic", c.misc_dynamic),
        ("user", c.user.is_some()),
        ("payload", c.payload.is_some()),
        ("require_reply", c.require_reply),
        ("reply", c.reply.is_some()),
        ("min_reply_length", c.min_reply_length.is_some()),
        ("max_reply_length", c.max_reply_length.is_some()),
    ];
    set.into_iter()
        .filter(|(_, on)| *on)
        .map(|(f, _)| f)
        .collect()
}

/// `UDP_CHECK`'s octet strings and reply lengths, as keepalived's `check_udp.c` handlers
/// refuse them.
fn udp_check(key: &str, c: &Checker, report: &mut Report<'_>) {
    use crate::check::udp::Pattern;
    for (field, value, wildcards) in [("payload", &c.payload, false), ("reply", &c.reply, true)] {
        if let Some(v) = value
            && Pattern::parse(v, wildcards).is_err()
        {
            report.error(
                &format!("{key}.{field}"),
                format!("{v:?}"),
                if wildcards {
                    "hexadecimal octets, x for any nibble, e.g. \"01 ax\""
                } else {
                    "hexadecimal octets, e.g. \"01 02 ff\""
                },
            );
        }
    }
    let (min, max) = (
        c.min_reply_length.unwrap_or(0),
        c.max_reply_length.unwrap_or(255),
    );
    if min > max {
        report.error(
            &format!("{key}.min_reply_length"),
            format!("{min} > max_reply_length {max}: every answer would fail"),
            "min_reply_length <= max_reply_length (default 255)",
        );
    }
}

/// `regex` and its options compile, and its offsets are in order.
fn body_match(ukey: &str, url: &crate::config::schema::Url, report: &mut Report<'_>) {
    use crate::check::http::{BodyMatch, REGEX_OPTIONS, UrlError};
    let Some(pattern) = &url.regex else {
        for (set, field) in [
            (url.regex_no_match, "regex_no_match"),
            (!url.regex_options.is_empty(), "regex_options"),
            (url.regex_min_offset.is_some(), "regex_min_offset"),
            (url.regex_max_offset.is_some(), "regex_max_offset"),
        ] {
            if set {
                report.error(
                    &format!("{ukey}.{field}"),
                    format!("{field} without regex"),
                    "a regex for it to apply to",
                );
            }
        }
        return;
    };
    if let (Some(min), Some(max)) = (url.regex_min_offset, url.regex_max_offset)
        && min > max
    {
        report.error(
            &format!("{ukey}.regex_max_offset"),
            format!("{max}, below regex_min_offset {min}"),
            "an offset at or after regex_min_offset",
        );
    }
    match BodyMatch::new(pattern, &url.regex_options, url.regex_no_match, None, None) {
        Ok(_) => {}
        Err(UrlError::RegexOption { value }) => report.error(
            &format!("{ukey}.regex_options"),
            format!("{value:?}"),
            REGEX_OPTIONS,
        ),
        Err(e) => report.error(
            &format!("{ukey}.regex"),
            format!("{pattern:?}: {e}"),
            "a regular expression in Rust regex syntax (PCRE2's, less backreferences and \
             lookaround)",
        ),
    }
}

fn status_range(code: &str) -> bool {
    let ok = |s: &str| s.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
    match code.split_once('-') {
        Some((a, b)) => ok(a) && ok(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok(),
        None => ok(code),
    }
}
