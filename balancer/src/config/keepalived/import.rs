//! keepalived.conf's keywords mapped onto `lb.toml`'s schema, section by section. Keywords
//! keepalived accepts that we do not implement are warnings naming file, line and keyword:
//! never silently dropped. Values that do not fit are errors, all reported at once.

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use crate::config::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::config::keepalived::import_lvs;
use crate::config::keepalived::tree::{Node, Tree};
use crate::config::locate::KeyLocations;
use crate::config::schema::{
    Authentication, Config, SyncGroup, TrackFileBlock, VrrpInstance, VrrpScript,
};

/// keepalived.conf as `lb.toml`, with where each key came from.
#[derive(Debug, Clone)]
pub struct Imported {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
    pub locations: KeyLocations,
}

/// Maps `tree` (read from `path`) onto the schema.
///
/// # Errors
/// Every value that does not fit its keyword.
pub fn import(path: &Path, tree: &Tree) -> Result<Imported, Diagnostics> {
    let mut cx = Cx::default();
    cx.locations.file = Some(Arc::from(path));
    let mut config = Config::default();
    for node in &tree.nodes {
        let name = || node.args.first().cloned().unwrap_or_default();
        match node.keyword.as_str() {
            "global_defs" => global_defs(&mut cx, node, &mut config),
            "vrrp_script" => {
                let key = format!("vrrp_script.{}", name());
                if let Some(s) = vrrp_script(&mut cx, &key, node) {
                    config.vrrp_script.insert(name(), s);
                }
            }
            "vrrp_instance" => {
                let key = format!("vrrp_instance.{}", name());
                if let Some(i) = vrrp_instance(&mut cx, &key, node) {
                    config.vrrp_instance.insert(name(), i);
                }
            }
            "vrrp_sync_group" => {
                let key = format!("vrrp_sync_group.{}", name());
                config
                    .vrrp_sync_group
                    .insert(name(), sync_group(&mut cx, &key, node));
            }
            "virtual_server_group" => {
                let key = format!("virtual_server_group.{}", name());
                let g = import_lvs::group(&mut cx, &key, node);
                config.virtual_server_group.insert(name(), g);
            }
            "virtual_server" => {
                let key = format!("virtual_server[{}]", config.virtual_server.len());
                let vs = import_lvs::virtual_server(&mut cx, &key, node);
                config.virtual_server.push(vs);
            }
            "SSL" => config.ssl = Some(import_lvs::ssl(&mut cx, node)),
            // `track_file NAME { }` is keepalived's current name, `vrrp_track_file` the old one.
            "vrrp_track_file" | "track_file" => {
                let key = format!("vrrp_track_file.{}", name());
                if let Some(f) = track_file(&mut cx, &key, node) {
                    config.vrrp_track_file.insert(name(), f);
                }
            }
            "vrrp_track_process" => {
                let key = format!("vrrp_track_process.{}", name());
                if let Some(p) = track_process(&mut cx, &key, node) {
                    config.vrrp_track_process.insert(name(), p);
                }
            }
            "static_ipaddress" => {
                let lines = cx.lines("static_ipaddress", node);
                config.static_ipaddress.extend(lines);
            }
            "static_routes" => {
                let lines = cx.lines("static_routes", node);
                config.static_routes.extend(lines);
            }
            "static_rules" => {
                let lines = cx.lines("static_rules", node);
                config.static_rules.extend(lines);
            }
            _ => cx.unknown("", node, &TOP),
        }
    }
    // keepalived.conf does not say where an XDP program attaches; the VRRP interfaces are
    // where the VIPs live, so they are where their traffic arrives.
    for i in config.vrrp_instance.values() {
        if !config.xdp.interfaces.contains(&i.interface) {
            config.xdp.interfaces.push(i.interface.clone());
        }
    }
    if cx.errors.is_empty() {
        Ok(Imported {
            config,
            warnings: cx.warnings,
            locations: cx.locations,
        })
    } else {
        Err(Diagnostics(cx.errors, cx.warnings))
    }
}

const TOP: [&str; 13] = [
    "global_defs",
    "vrrp_track_file",
    "vrrp_track_process",
    "track_file",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "vrrp_script",
    "vrrp_instance",
    "vrrp_sync_group",
    "virtual_server_group",
    "virtual_server",
    "SSL",
];

/// What the mapping has found so far.
#[derive(Default)]
pub(crate) struct Cx {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub locations: KeyLocations,
}

impl Cx {
    /// Remembers that `key` was written at `node`.
    pub fn at(&mut self, key: &str, node: &Node) {
        self.locations
            .keys
            .entry(key.to_owned())
            .or_insert_with(|| node.location());
    }

    pub fn error(&mut self, key: &str, node: &Node, found: String, expected: &str) {
        self.at(key, node);
        self.errors.push(Diagnostic {
            location: node.location(),
            key: key.to_owned(),
            found,
            expected: expected.to_owned(),
        });
    }

    /// Something keepalived accepts that we read past, said so with its line.
    pub fn ignored(&mut self, key: &str, node: &Node, found: String, expected: &str) {
        self.warnings.push(Diagnostic {
            location: node.location(),
            key: key.to_owned(),
            found,
            expected: expected.to_owned(),
        });
    }

    /// A keyword keepalived may accept that we do not implement.
    pub fn unknown(&mut self, prefix: &str, node: &Node, known: &[&str]) {
        let key = if prefix.is_empty() {
            node.keyword.clone()
        } else {
            format!("{prefix}.{}", node.keyword)
        };
        let expected = did_you_mean(&node.keyword, known.iter().copied())
            .map(|k| format!("did you mean {k}?"))
            .unwrap_or_default();
        self.warnings.push(Diagnostic {
            location: node.location(),
            key,
            found: format!("`{}` is not implemented; ignored", node.keyword),
            expected,
        });
    }

    /// The single argument of `node`, parsed.
    pub fn arg<T: FromStr>(&mut self, key: &str, node: &Node, expected: &str) -> Option<T> {
        self.at(key, node);
        match node.args.as_slice() {
            [one] => {
                if let Ok(v) = one.parse() {
                    return Some(v);
                }
                self.error(key, node, format!("{one:?}"), expected);
            }
            args => self.error(key, node, format!("{} arguments", args.len()), expected),
        }
        None
    }

    /// The arguments as one string (a script's command line).
    pub fn text(&mut self, key: &str, node: &Node) -> Option<String> {
        self.at(key, node);
        if node.args.is_empty() {
            self.error(key, node, "no value".into(), "a value");
            return None;
        }
        Some(node.args.join(" "))
    }

    /// A flag: present alone, or with keepalived's `<BOOL>`.
    pub fn flag(&mut self, key: &str, node: &Node) -> bool {
        self.at(key, node);
        match node.args.first().map(|a| a.to_ascii_lowercase()).as_deref() {
            None | Some("on" | "true" | "yes") => true,
            Some("off" | "false" | "no") => false,
            Some(other) => {
                let other = other.to_owned();
                self.error(
                    key,
                    node,
                    format!("{other:?}"),
                    "nothing, or on|off|true|false|yes|no",
                );
                false
            }
        }
    }

    /// The lines of a `{ }` block, each a keyword and its arguments.
    pub fn lines(&mut self, key: &str, node: &Node) -> Vec<String> {
        self.at(key, node);
        node.children
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.at(&format!("{key}[{i}]"), c);
                std::iter::once(c.keyword.as_str())
                    .chain(c.args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    /// `key` must be present.
    pub fn required<T>(
        &mut self,
        key: &str,
        node: &Node,
        value: Option<T>,
        field: &str,
    ) -> Option<T> {
        if value.is_none() {
            self.error(
                &format!("{key}.{field}"),
                node,
                format!("no {field}"),
                &format!("{field} in this block"),
            );
        }
        value
    }
}

const GLOBAL: [&str; 40] = [
    "router_id",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "no_email_faults",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "script_user",
    "enable_script_security",
    "vrrp_version",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_strict",
    "vrrp_check_unicast_src",
    "vrrp_skip_check_adv_addr",
    "vrrp_rt_priority",
    "vrrp_priority",
    "notify_fifo",
    "notify_fifo_script",
    "vrrp_notify_fifo",
    "vrrp_notify_fifo_script",
    "lvs_timeouts",
    "lvs_sync_daemon",
    "vrrp_startup_delay",
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_flush_onstop",
    "startup_script",
    "startup_script_timeout",
    "shutdown_script",
    "shutdown_script_timeout",
];

/// keepalived's `LVS_MAX_TIMEOUT`: 31 days.
const LVS_MAX_TIMEOUT: u32 = 86_400 * 31;

/// `lvs_timeouts [tcp N] [tcpfin N] [udp N]`: IPVS's connection timeouts in seconds, our
/// `[connections]` timeouts. 0 leaves one at its default, as keepalived leaves IPVS's.
fn lvs_timeouts(cx: &mut Cx, c: &Node, connections: &mut crate::config::schema::Connections) {
    let key = "global_defs.lvs_timeouts";
    let expected = "tcp N, tcpfin N and/or udp N, seconds up to 2678400 (31 days)";
    if c.args.is_empty() {
        cx.error(key, c, "no option".into(), expected);
    }
    let mut args = c.args.iter();
    while let Some(word) = args.next() {
        let (field, slot) = match word.as_str() {
            "tcp" => ("tcp_timeout", &mut connections.tcp_timeout),
            "tcpfin" => ("tcpfin_timeout", &mut connections.tcpfin_timeout),
            "udp" => ("udp_timeout", &mut connections.udp_timeout),
            other => {
                cx.error(key, c, format!("{other:?}"), expected);
                continue;
            }
        };
        match args.next().map(|v| (v, v.parse::<u32>())) {
            Some((_, Ok(0))) => {}
            Some((_, Ok(n))) if n <= LVS_MAX_TIMEOUT => {
                cx.at(&format!("connections.{field}"), c);
                *slot = n;
            }
            Some((v, _)) => cx.error(key, c, format!("{word} {v:?}"), expected),
            None => cx.error(key, c, format!("{word} without a value"), expected),
        }
    }
}

/// `lvs_sync_daemon INTERFACE [inst NAME] [id N] [maxlen N] [port N] [ttl N] [group ADDR]`,
/// or the older `lvs_sync_daemon INTERFACE [VRRP_INSTANCE [SYNC_ID]]`, as keepalived reads
/// both.
fn lvs_sync_daemon(cx: &mut Cx, c: &Node) -> Option<crate::config::schema::LvsSyncDaemon> {
    let key = "global_defs.lvs_sync_daemon";
    let expected = "INTERFACE [inst NAME] [id 0-255] [maxlen 1-65507] [port 1-65535] [ttl 1-255] [group MULTICAST]";
    cx.at(key, c);
    let Some(interface) = c.args.first() else {
        cx.error(key, c, "no interface".into(), expected);
        return None;
    };
    if interface.len() > 15 {
        cx.error(
            key,
            c,
            format!("interface {interface:?} (over 15 bytes)"),
            expected,
        );
    }
    let mut out = crate::config::schema::LvsSyncDaemon {
        interface: interface.clone(),
        instance: None,
        id: None,
        maxlen: None,
        port: None,
        ttl: None,
        group: None,
    };
    let bad = |cx: &mut Cx, found: String| cx.error(key, c, found, expected);
    let mut i = 1;
    while i < c.args.len() {
        let word = c.args[i].as_str();
        let value = c.args.get(i + 1);
        let number = |lo: u32, hi: u32| {
            value
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|n| (lo..=hi).contains(n))
        };
        match word {
            "inst" => out.instance = value.cloned(),
            "id" => out.id = number(0, 255).and_then(|n| u8::try_from(n).ok()),
            "maxlen" => out.maxlen = number(1, 65_535 - 20 - 8).and_then(|n| u16::try_from(n).ok()),
            "port" => out.port = number(1, 65_535).and_then(|n| u16::try_from(n).ok()),
            "ttl" => out.ttl = number(1, 255).and_then(|n| u8::try_from(n).ok()),
            "group" => {
                out.group = value
                    .and_then(|v| v.parse::<std::net::IpAddr>().ok())
                    .filter(std::net::IpAddr::is_multicast);
            }
            // The older form: the instance, then the sync ID, by position.
            legacy if i == 1 => {
                out.instance = Some(legacy.to_owned());
                i += 1;
                continue;
            }
            legacy if i == 2 && out.instance.is_some() => {
                match legacy.parse::<u8>() {
                    Ok(n) => out.id = Some(n),
                    Err(_) => bad(cx, format!("sync ID {legacy:?}")),
                }
                i += 1;
                continue;
            }
            other => {
                bad(cx, format!("{other:?}"));
                i += 1;
                continue;
            }
        }
        let taken = match word {
            "inst" => out.instance.is_some(),
            "id" => out.id.is_some(),
            "maxlen" => out.maxlen.is_some(),
            "port" => out.port.is_some(),
            "ttl" => out.ttl.is_some(),
            _ => out.group.is_some(),
        };
        if !taken {
            bad(cx, format!("{word} {:?}", value.map_or("", String::as_str)));
        }
        i += 2;
    }
    Some(out)
}

fn global_defs(cx: &mut Cx, node: &Node, config: &mut Config) {
    let g = &mut config.global_defs;
    for c in &node.children {
        let key = format!("global_defs.{}", c.keyword);
        let secs = "whole seconds";
        match c.keyword.as_str() {
            "router_id" => g.router_id = cx.text(&key, c),
            "vrrp_mcast_group4" => {
                g.vrrp_mcast_group4 = cx
                    .arg(&key, c, "an IPv4 multicast address")
                    .unwrap_or(g.vrrp_mcast_group4);
            }
            "vrrp_mcast_group6" => {
                g.vrrp_mcast_group6 = cx
                    .arg(&key, c, "an IPv6 multicast address")
                    .unwrap_or(g.vrrp_mcast_group6);
            }
            "script_user" => g.script_user = cx.text(&key, c),
            "enable_script_security" => g.enable_script_security = cx.flag(&key, c),
            "notify_fifo" => g.notify_fifo = cx.text(&key, c),
            "notify_fifo_script" => g.notify_fifo_script = cx.text(&key, c),
            "vrrp_notify_fifo" => g.vrrp_notify_fifo = cx.text(&key, c),
            "vrrp_notify_fifo_script" => g.vrrp_notify_fifo_script = cx.text(&key, c),
            "vrrp_version" => g.vrrp_version = cx.arg(&key, c, "2 or 3").unwrap_or(g.vrrp_version),
            "vrrp_garp_master_delay" => {
                g.vrrp_garp_master_delay =
                    cx.arg(&key, c, secs).unwrap_or(g.vrrp_garp_master_delay);
            }
            "vrrp_garp_master_repeat" => {
                g.vrrp_garp_master_repeat = cx
                    .arg(&key, c, "a count")
                    .unwrap_or(g.vrrp_garp_master_repeat);
            }
            "vrrp_garp_master_refresh" => {
                g.vrrp_garp_master_refresh = cx.arg(&key, c, secs).unwrap_or(0);
            }
            "vrrp_garp_master_refresh_repeat" => {
                g.vrrp_garp_master_refresh_repeat = cx.arg(&key, c, "a count").unwrap_or(1);
            }
            "vrrp_garp_lower_prio_delay" => g.vrrp_garp_lower_prio_delay = cx.arg(&key, c, secs),
            "vrrp_garp_lower_prio_repeat" => {
                g.vrrp_garp_lower_prio_repeat = cx.arg(&key, c, "a count");
            }
            "vrrp_strict" => g.vrrp_strict = cx.flag(&key, c),
            "vrrp_check_unicast_src" => g.vrrp_check_unicast_src = cx.flag(&key, c),
            "vrrp_skip_check_adv_addr" => g.vrrp_skip_check_adv_addr = cx.flag(&key, c),
            "vrrp_rt_priority" => g.vrrp_rt_priority = cx.arg(&key, c, "a priority 1 to 99"),
            "vrrp_priority" => g.vrrp_priority = cx.arg(&key, c, "a nice value -20 to 19"),
            "notification_email" => {
                g.notification_email = cx
                    .lines(&key, c)
                    .iter()
                    .flat_map(|l| l.split_whitespace().map(str::to_owned))
                    .collect();
            }
            "notification_email_from" => g.notification_email_from = cx.text(&key, c),
            "smtp_server" => g.smtp_server = cx.text(&key, c),
            "smtp_helo_name" => g.smtp_helo_name = cx.text(&key, c),
            "smtp_connect_timeout" => g.smtp_connect_timeout = cx.arg(&key, c, "seconds"),
            "smtp_alert" => g.smtp_alert = Some(cx.flag(&key, c)),
            "smtp_alert_vrrp" => g.smtp_alert_vrrp = Some(cx.flag(&key, c)),
            "smtp_alert_checker" => g.smtp_alert_checker = Some(cx.flag(&key, c)),
            "no_email_faults" => g.no_email_faults = cx.flag(&key, c),
            "lvs_timeouts" => lvs_timeouts(cx, c, &mut config.connections),
            "lvs_sync_daemon" => g.lvs_sync_daemon = lvs_sync_daemon(cx, c),
            "vrrp_startup_delay" => g.vrrp_startup_delay = cx.arg(&key, c, "seconds"),
            "lvs_flush" => g.lvs_flush = cx.flag(&key, c),
            "startup_script" => g.startup_script = cx.text(&key, c),
            "startup_script_timeout" => g.startup_script_timeout = cx.arg(&key, c, "1 to 1000"),
            "shutdown_script" => g.shutdown_script = cx.text(&key, c),
            "shutdown_script_timeout" => {
                g.shutdown_script_timeout = cx.arg(&key, c, "1 to 1000");
            }
            // `lvs_flush_onstop` is the name before keepalived 2.1.5.
            "lvs_flush_on_stop" | "lvs_flush_onstop" => {
                use crate::config::schema::LvsFlushOnStop;
                cx.at(&key, c);
                g.lvs_flush_on_stop = match c.args.first().map(String::as_str) {
                    None => Some(LvsFlushOnStop::Full),
                    Some("VS") => Some(LvsFlushOnStop::Vs),
                    Some(other) => {
                        cx.error(
                            &key,
                            c,
                            format!("{other:?}"),
                            "nothing (every service) or VS",
                        );
                        None
                    }
                };
            }
            _ => cx.unknown("global_defs", c, &GLOBAL),
        }
    }
}

const SCRIPT: [&str; 8] = [
    "script",
    "interval",
    "timeout",
    "weight",
    "rise",
    "fall",
    "user",
    "init_fail",
];

fn vrrp_script(cx: &mut Cx, key: &str, node: &Node) -> Option<VrrpScript> {
    cx.at(key, node);
    let mut script = None;
    let mut s = VrrpScript {
        script: String::new(),
        interval: 1.0,
        timeout: None,
        weight: 0,
        rise: 1,
        fall: 1,
        user: None,
        init_fail: false,
    };
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        match c.keyword.as_str() {
            "script" => script = cx.text(&k, c),
            "interval" => s.interval = cx.arg(&k, c, "seconds").unwrap_or(s.interval),
            "timeout" => s.timeout = cx.arg(&k, c, "seconds"),
            // keepalived's `weight N [reverse | noreverse]`.
            "weight" => {
                cx.at(&k, c);
                match c.args.first().map(|w| w.parse()) {
                    Some(Ok(w)) => s.weight = w,
                    _ => cx.error(&k, c, format!("{:?}", c.args.join(" ")), "-253 to 253"),
                }
                match c.args.get(1).map(String::as_str) {
                    None | Some("noreverse" | "no_reverse") => {}
                    // Dropping it would move the priority the other way: refused, not ignored.
                    Some("reverse") => cx.error(
                        &k,
                        c,
                        format!("{:?}: reverse is not supported", c.args.join(" ")),
                        "a weight without reverse (negate the weight and the script's exit \
                         status instead)",
                    ),
                    Some(_) => cx.unknown(key, c, &[]),
                }
            }
            "rise" => s.rise = cx.arg(&k, c, "a count").unwrap_or(1),
            "fall" => s.fall = cx.arg(&k, c, "a count").unwrap_or(1),
            "user" => s.user = cx.text(&k, c),
            "init_fail" => s.init_fail = cx.flag(&k, c),
            _ => cx.unknown(key, c, &SCRIPT),
        }
    }
    s.script = cx.required(key, node, script, "script")?;
    Some(s)
}

const INSTANCE: [&str; 36] = [
    "state",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "nopreempt",
    "preempt",
    "preempt_delay",
    "accept",
    "no_accept",
    "authentication",
    "unicast_src_ip",
    "mcast_src_ip",
    "unicast_peer",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "virtual_routes",
    "virtual_rules",
    "track_interface",
    "track_script",
    "track_file",
    "track_process",
    "dont_track_primary",
    "smtp_alert",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_master_refresh",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "notify_master_rx_lower_pri",
    "use_vmac",
    "vmac_xmit_base",
];

/// `unicast_peer { ADDR [min_ttl N] [max_ttl N] ... }`: the addresses; TTL bounds are warned.
fn unicast_peers(cx: &mut Cx, k: &str, c: &Node, peers: &mut Vec<IpAddr>) {
    for (n, line) in cx.lines(k, c).iter().enumerate() {
        let child = c.children.get(n).unwrap_or(c);
        let mut words = line.split_whitespace();
        let addr = words.next().unwrap_or_default();
        let Ok(a) = addr.parse() else {
            cx.error(
                &format!("{k}[{n}]"),
                child,
                format!("{line:?}"),
                "an address",
            );
            continue;
        };
        peers.push(a);
        let rest: Vec<&str> = words.collect();
        if !rest.is_empty() {
            cx.ignored(
                &format!("{k}[{n}]"),
                child,
                format!("`{}` is not implemented; ignored", rest.join(" ")),
                "adverts from the peer are taken whatever their TTL",
            );
        }
    }
}

/// `use_vmac [NAME]`: the macvlan's name. keepalived also takes a MAC; ours is always the
/// RFC 5798 virtual MAC, so one is refused rather than dropped.
fn vmac_name(cx: &mut Cx, k: &str, c: &Node) -> Option<String> {
    let is_mac = |a: &String| a.split(':').count() == 6;
    match c.args.as_slice() {
        [] => None,
        [name] if !is_mac(name) => Some(name.clone()),
        _ => {
            cx.error(
                k,
                c,
                format!("{:?}", c.args.join(" ")),
                "use_vmac [NAME]: the macvlan carries the RFC 5798 virtual MAC, another MAC is \
                 not supported",
            );
            None
        }
    }
}

fn vrrp_instance(cx: &mut Cx, key: &str, node: &Node) -> Option<VrrpInstance> {
    cx.at(key, node);
    let (mut interface, mut vrid) = (None, None);
    let mut i = VrrpInstance {
        state: None,
        interface: String::new(),
        dont_track_primary: false,
        virtual_router_id: 0,
        priority: 100,
        advert_int: 1.0,
        version: None,
        nopreempt: false,
        preempt_delay: 0.0,
        accept: None,
        authentication: None,
        unicast_src_ip: None,
        unicast_peer: Vec::new(),
        virtual_ipaddress: Vec::new(),
        virtual_ipaddress_excluded: Vec::new(),
        virtual_routes: Vec::new(),
        virtual_rules: Vec::new(),
        track_interface: Vec::new(),
        track_script: Vec::new(),
        track_file: Vec::new(),
        track_process: Vec::new(),
        smtp_alert: None,
        garp_master_delay: None,
        garp_master_repeat: None,
        garp_master_refresh: None,
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify_stop: None,
        notify: None,
        notify_master_rx_lower_pri: None,
        use_vmac: false,
        vmac_name: None,
        vmac_xmit_base: false,
    };
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        match c.keyword.as_str() {
            "state" => i.state = cx.arg(&k, c, "MASTER or BACKUP"),
            "interface" => interface = cx.arg::<String>(&k, c, "an interface name"),
            "virtual_router_id" => vrid = cx.arg(&k, c, "1 to 255"),
            "priority" => i.priority = cx.arg(&k, c, "1 to 255").unwrap_or(i.priority),
            "advert_int" => i.advert_int = cx.arg(&k, c, "seconds").unwrap_or(i.advert_int),
            "version" => i.version = cx.arg(&k, c, "2 or 3"),
            "nopreempt" => i.nopreempt = cx.flag(&k, c),
            "preempt" => i.nopreempt = !cx.flag(&format!("{key}.nopreempt"), c),
            "preempt_delay" => i.preempt_delay = cx.arg(&k, c, "seconds").unwrap_or(0.0),
            "accept" => i.accept = Some(cx.flag(&k, c)),
            "no_accept" => i.accept = Some(!cx.flag(&format!("{key}.accept"), c)),
            "authentication" => i.authentication = authentication(cx, &k, c),
            "unicast_src_ip" | "mcast_src_ip" => {
                i.unicast_src_ip = cx.arg(&format!("{key}.unicast_src_ip"), c, "an address");
            }
            "unicast_peer" => unicast_peers(cx, &k, c, &mut i.unicast_peer),
            "virtual_ipaddress" => i.virtual_ipaddress = cx.lines(&k, c),
            "virtual_ipaddress_excluded" => i.virtual_ipaddress_excluded = cx.lines(&k, c),
            "virtual_routes" => i.virtual_routes = cx.lines(&k, c),
            "virtual_rules" => i.virtual_rules = cx.lines(&k, c),
            "track_interface" => i.track_interface = cx.lines(&k, c),
            "track_script" => i.track_script = cx.lines(&k, c),
            "track_file" => i.track_file = cx.lines(&k, c),
            "track_process" => i.track_process = cx.lines(&k, c),
            "dont_track_primary" => i.dont_track_primary = cx.flag(&k, c),
            "smtp_alert" => i.smtp_alert = Some(cx.flag(&k, c)),
            "garp_master_delay" => i.garp_master_delay = cx.arg(&k, c, "whole seconds"),
            "garp_master_repeat" => i.garp_master_repeat = cx.arg(&k, c, "a count"),
            "garp_master_refresh" => i.garp_master_refresh = cx.arg(&k, c, "whole seconds"),
            "notify_master" => i.notify_master = cx.text(&k, c),
            "notify_backup" => i.notify_backup = cx.text(&k, c),
            "notify_fault" => i.notify_fault = cx.text(&k, c),
            "notify_stop" => i.notify_stop = cx.text(&k, c),
            "notify" => i.notify = cx.text(&k, c),
            "notify_master_rx_lower_pri" => i.notify_master_rx_lower_pri = cx.text(&k, c),
            "use_vmac" => {
                i.use_vmac = true;
                i.vmac_name = vmac_name(cx, &k, c);
            }
            "vmac_xmit_base" => i.vmac_xmit_base = cx.flag(&k, c),
            _ => cx.unknown(key, c, &INSTANCE),
        }
    }
    i.interface = cx.required(key, node, interface, "interface")?;
    i.virtual_router_id = cx.required(key, node, vrid, "virtual_router_id")?;
    Some(i)
}

/// `vrrp_track_process NAME { process NAME [PARAM ...]; param_match [initial|partial];
/// weight W [reverse]; quorum N; quorum_max N; delay S; fork_delay S; terminate_delay S;
/// full_command }`.
fn track_process(
    cx: &mut Cx,
    key: &str,
    node: &Node,
) -> Option<crate::config::schema::vrrp::TrackProcessBlock> {
    use crate::vrrp::track::process::ParamMatch;
    let mut process = None;
    let mut p = crate::config::schema::vrrp::TrackProcessBlock {
        process: String::new(),
        params: Vec::new(),
        param_match: None,
        full_command: false,
        weight: 0,
        reverse: false,
        quorum: 1,
        quorum_max: None,
        fork_delay: None,
        terminate_delay: None,
    };
    let secs = "seconds, 0.000001 to 3600";
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        match c.keyword.as_str() {
            "process" => {
                cx.at(&k, c);
                match c.args.split_first() {
                    Some((name, params)) => {
                        process = Some(name.clone());
                        p.params = params.to_vec();
                    }
                    None => cx.error(&k, c, "no process".into(), "NAME [PARAM ...]"),
                }
            }
            "param_match" => {
                cx.at(&k, c);
                p.param_match = match c.args.first().map(String::as_str) {
                    None => Some(ParamMatch::Exact),
                    Some("initial") => Some(ParamMatch::Initial),
                    Some("partial") => Some(ParamMatch::Partial),
                    Some(other) => {
                        cx.error(&k, c, format!("{other:?}"), "nothing, initial or partial");
                        None
                    }
                };
            }
            "weight" => {
                cx.at(&k, c);
                match c.args.as_slice() {
                    [w, rest @ ..] if rest.len() <= 1 => {
                        match w.parse::<i32>() {
                            Ok(w) => p.weight = w,
                            Err(_) => cx.error(&k, c, format!("{w:?}"), "-254 to 254"),
                        }
                        match rest.first().map(String::as_str) {
                            Some("reverse") => p.reverse = true,
                            None | Some("noreverse") => {}
                            Some(other) => cx.error(&k, c, format!("{other:?}"), "reverse"),
                        }
                    }
                    _ => cx.error(&k, c, c.args.join(" "), "W [reverse]"),
                }
            }
            "quorum" => p.quorum = cx.arg(&k, c, "1 to 65535").unwrap_or(1),
            "quorum_max" => p.quorum_max = cx.arg(&k, c, "0 to 65535"),
            "delay" => {
                p.fork_delay = cx.arg(&k, c, secs);
                p.terminate_delay = p.fork_delay;
            }
            "fork_delay" => p.fork_delay = cx.arg(&k, c, secs),
            "terminate_delay" => p.terminate_delay = cx.arg(&k, c, secs),
            "full_command" => p.full_command = cx.flag(&k, c),
            _ => cx.unknown(
                key,
                c,
                &[
                    "process",
                    "param_match",
                    "weight",
                    "quorum",
                    "quorum_max",
                    "delay",
                    "fork_delay",
                    "terminate_delay",
                    "full_command",
                ],
            ),
        }
    }
    p.process = cx.required(key, node, process, "process")?;
    Some(p)
}

/// `vrrp_track_file NAME { file PATH; weight W; init_file [VALUE] [overwrite] }`.
fn track_file(cx: &mut Cx, key: &str, node: &Node) -> Option<TrackFileBlock> {
    let mut file = None;
    let mut f = TrackFileBlock {
        file: std::path::PathBuf::new(),
        weight: 1,
        init_file: None,
        init_overwrite: false,
    };
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        match c.keyword.as_str() {
            "file" => file = cx.text(&k, c).map(std::path::PathBuf::from),
            "weight" => f.weight = cx.arg(&k, c, "-254 to 254").unwrap_or(1),
            "init_file" => {
                cx.at(&k, c);
                let mut value = 0;
                for a in &c.args {
                    if a == "overwrite" {
                        f.init_overwrite = true;
                    } else if let Ok(v) = a.parse() {
                        value = v;
                    } else {
                        cx.error(&k, c, format!("{a:?}"), "[VALUE] [overwrite]");
                    }
                }
                f.init_file = Some(value);
            }
            _ => cx.unknown(key, c, &["file", "weight", "init_file"]),
        }
    }
    f.file = cx.required(key, node, file, "file")?;
    Some(f)
}

fn authentication(cx: &mut Cx, key: &str, node: &Node) -> Option<Authentication> {
    cx.at(key, node);
    let (mut auth_type, mut auth_pass) = (None, None);
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        match c.keyword.as_str() {
            "auth_type" => auth_type = cx.arg(&k, c, "PASS"),
            "auth_pass" => auth_pass = cx.text(&k, c),
            _ => cx.unknown(key, c, &["auth_type", "auth_pass"]),
        }
    }
    Some(Authentication {
        auth_type: cx.required(key, node, auth_type, "auth_type")?,
        auth_pass: cx.required(key, node, auth_pass, "auth_pass")?,
    })
}

fn sync_group(cx: &mut Cx, key: &str, node: &Node) -> SyncGroup {
    cx.at(key, node);
    let mut g = SyncGroup {
        group: Vec::new(),
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify_stop: None,
        notify: None,
        sync_group_tracking_weight: false,
        track_interface: Vec::new(),
        track_script: Vec::new(),
        track_file: Vec::new(),
        track_process: Vec::new(),
        smtp_alert: None,
    };
    for c in &node.children {
        let k = format!("{key}.{}", c.keyword);
        match c.keyword.as_str() {
            "group" => {
                g.group = cx
                    .lines(&k, c)
                    .iter()
                    .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                    .collect();
            }
            "track_interface" => g.track_interface = cx.lines(&k, c),
            "track_script" => g.track_script = cx.lines(&k, c),
            "track_file" => g.track_file = cx.lines(&k, c),
            "track_process" => g.track_process = cx.lines(&k, c),
            "smtp_alert" => g.smtp_alert = Some(cx.flag(&k, c)),
            "notify_master" => g.notify_master = cx.text(&k, c),
            "notify_backup" => g.notify_backup = cx.text(&k, c),
            "notify_fault" => g.notify_fault = cx.text(&k, c),
            "notify_stop" => g.notify_stop = cx.text(&k, c),
            "notify" => g.notify = cx.text(&k, c),
            "sync_group_tracking_weight" => g.sync_group_tracking_weight = true,
            _ => cx.unknown(
                key,
                c,
                &[
                    "group",
                    "notify_master",
                    "notify_backup",
                    "notify_fault",
                    "notify_stop",
                    "notify",
                    "sync_group_tracking_weight",
                    "track_interface",
                    "track_script",
                    "track_file",
                    "track_process",
                    "smtp_alert",
                ],
            ),
        }
    }
    g
}
