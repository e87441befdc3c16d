//! `vrrp_script`, `vrrp_instance` and `vrrp_sync_group` rules.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::address::vip_line;
use crate::config::schema::{Config, VrrpInstance};
use crate::config::validate::Report;
use crate::model;
use crate::vrrp::auth::{Auth, Password};
use crate::vrrp::config::{Config as VrrpConfig, ConfigError, InitialState};
use crate::vrrp::net::route::VirtualRoute;
use crate::vrrp::net::rule::{FIRST_ASSIGNED_PRIORITY, VirtualRule};
use crate::vrrp::net::statics::Statics;
use crate::vrrp::net::vip::AddressOptions;
use crate::vrrp::net::{InstanceSpec, Vip};
use crate::vrrp::wire::{Addresses, Family, Version};

pub(super) fn instances(
    config: &Config,
    report: &mut Report<'_>,
) -> (Vec<model::VrrpInstance>, Statics) {
    globals_and_scripts(config, report);
    let processes = track_processes(config, report);
    let mut sync_of: BTreeMap<&str, &str> = BTreeMap::new();
    for (group, sync) in &config.vrrp_sync_group {
        // keepalived 2.2.7 (`vrrp_sync.c`) keeps such a group, trackers and all, and warns.
        if sync.group.len() == 1 {
            report.warn(
                &format!("vrrp_sync_group.{group}.group"),
                "only 1 virtual router".into(),
                "two or more: a group of one syncs nothing (kept, with its trackers, as \
                 keepalived keeps it; this probably isn't what you want)",
            );
        }
        for (i, member) in sync.group.iter().enumerate() {
            let key = format!("vrrp_sync_group.{group}.group[{i}]");
            if report.reference(&key, member, "vrrp_instance", config.vrrp_instance.keys())
                && let Some(previous) = sync_of.insert(member, group)
            {
                report.error(
                    &key,
                    format!("{member} is already in vrrp_sync_group {previous}"),
                    "each instance in one sync group at most",
                );
            }
        }
    }
    let mut by_interface: BTreeMap<(&str, bool, u8), &str> = BTreeMap::new();
    // keepalived's `next_rule_priority_ipv4` / `_ipv6`, static rules first.
    let mut next_rule_priority = [FIRST_ASSIGNED_PRIORITY; 2];
    let mut statics = statics(config, report);
    assign_rule_preferences(
        "static_rules",
        &mut statics.rules,
        &mut next_rule_priority,
        report,
    );
    let mut out = Vec::new();
    for (name, instance) in &config.vrrp_instance {
        let key = format!("vrrp_instance.{name}");
        let group = sync_of
            .get(name.as_str())
            .and_then(|g| Some((*g, config.vrrp_sync_group.get(*g)?)));
        let trackers = trackers(config, &processes, &key, instance, group, report);
        let Some(mut spec) = spec(config, &key, instance, report) else {
            continue;
        };
        assign_rule_preferences(
            &format!("{key}.virtual_rules"),
            &mut spec.rules,
            &mut next_rule_priority,
            report,
        );
        let slot = (
            instance.interface.as_str(),
            spec.config.family() == Family::V4,
            spec.config.vrid,
        );
        if let Some(other) = by_interface.insert(slot, name) {
            report.error(
                &format!("{key}.virtual_router_id"),
                format!(
                    "{} is already used by vrrp_instance {other} on {}",
                    spec.config.vrid, instance.interface
                ),
                "a virtual_router_id unique per interface and address family",
            );
        }
        out.push(model::VrrpInstance {
            name: name.clone(),
            spec,
            track_interfaces: trackers.0,
            track_scripts: trackers.1,
            track_files: trackers.2,
            track_processes: trackers.3,
            sync_group: sync_of.get(name.as_str()).map(|g| (*g).to_owned()),
        });
    }
    (out, statics)
}

/// A tracker line, `NAME [weight W]`, with W within `range`.
fn tracker_line(
    line: &str,
    range: std::ops::RangeInclusive<i32>,
) -> Result<(String, Option<i32>), String> {
    let syntax = format!(
        "NAME [weight W], W from {} to {}",
        range.start(),
        range.end()
    );
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [name] => Ok(((*name).to_owned(), None)),
        [name, "weight", w] => match w.parse::<i32>() {
            Ok(w) if range.contains(&w) => Ok(((*name).to_owned(), Some(w))),
            _ => Err(syntax),
        },
        [_, "weight", _, "reverse"] => Err(format!("{syntax} (`reverse` is not supported)")),
        _ => Err(syntax),
    }
}

/// One tracker line at `key`, checked (errors and warnings reported): name, weight (0 when
/// `unweighted`) and the key.
fn checked_tracker(
    report: &mut Report<'_>,
    key: &str,
    text: &str,
    range: std::ops::RangeInclusive<i32>,
    unweighted: bool,
) -> Option<(String, Option<i32>, String)> {
    match tracker_line(text, range) {
        Ok((name, weight)) => {
            if unweighted && weight.is_some() {
                report.warn(
                    key,
                    format!("{text:?}: the weight is ignored"),
                    "a sync group's trackers put every member in FAULT, weighted or not",
                );
            }
            Some((
                name,
                if unweighted { Some(0) } else { weight },
                key.to_owned(),
            ))
        }
        Err(expected) => {
            report.error(key, format!("{text:?}"), &expected);
            None
        }
    }
}

/// An instance's trackers, each line checked and each name resolved, with its sync
/// group's appended unweighted (keepalived's group trackers put every member in FAULT).
type Trackers = (
    Vec<crate::vrrp::track::TrackInterface>,
    Vec<(String, Option<i32>)>,
    Vec<crate::vrrp::track::TrackFile>,
    Vec<crate::vrrp::track::TrackProcess>,
);

/// Every `vrrp_track_process`, checked once, by name.
fn track_processes(
    config: &Config,
    report: &mut Report<'_>,
) -> BTreeMap<String, crate::vrrp::track::TrackProcess> {
    let mut out = BTreeMap::new();
    for (name, b) in &config.vrrp_track_process {
        let key = format!("vrrp_track_process.{name}");
        let before = report.errors.len();
        if b.process.is_empty() {
            report.error(&format!("{key}.process"), "\"\"".into(), "a process name");
        }
        if !(-254..=254).contains(&b.weight) {
            report.error(
                &format!("{key}.weight"),
                b.weight.to_string(),
                "-254 to 254",
            );
        }
        if !(1..=65_535).contains(&b.quorum) {
            report.error(&format!("{key}.quorum"), b.quorum.to_string(), "1 to 65535");
        }
        // keepalived: quorum_max 0 with the default quorum means none may run.
        let (quorum, quorum_max) = match b.quorum_max {
            Some(0) if b.quorum == 1 => (0, 0),
            Some(max) if max > 65_535 || max < b.quorum => {
                report.error(
                    &format!("{key}.quorum_max"),
                    max.to_string(),
                    &format!("{} (the quorum) to 65535, or 0 with no quorum", b.quorum),
                );
                (b.quorum, max)
            }
            Some(max) => (b.quorum, max),
            None => (b.quorum, u32::MAX),
        };
        let mut delay = |field: &str, v: Option<f64>| {
            let secs = v.unwrap_or(0.0);
            if v.is_some() && !(secs > 0.0 && secs <= 3600.0) {
                report.error(
                    &format!("{key}.{field}"),
                    secs.to_string(),
                    "seconds, 0.000001 to 3600",
                );
                return std::time::Duration::ZERO;
            }
            std::time::Duration::from_secs_f64(secs)
        };
        let fork_delay = delay("fork_delay", b.fork_delay);
        let terminate_delay = delay("terminate_delay", b.terminate_delay);
        if report.errors.len() > before {
            continue;
        }
        out.insert(
            name.clone(),
            crate::vrrp::track::TrackProcess {
                name: name.clone(),
                process: b.process.clone(),
                params: b.params.clone(),
                // Parameters given are matched exactly unless said otherwise.
                param_match: b.param_match.or_else(|| {
                    (!b.params.is_empty()).then_some(crate::vrrp::track::process::ParamMatch::Exact)
                }),
                full_command: b.full_command,
                weight: b.weight,
                reverse: b.reverse,
                quorum,
                quorum_max,
                fork_delay,
                terminate_delay,
            },
        );
    }
    out
}

/// A `track_process` line's name, and its weight with `reverse` or `noreverse` if given.
type ProcessLine = (String, Option<(i32, Option<bool>)>);

/// A `track_process` line: `NAME [weight W [reverse|noreverse]]`.
fn process_line(text: &str) -> Result<ProcessLine, String> {
    let syntax = "NAME [weight W [reverse|noreverse]], W from -254 to 254".to_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    let weight = |w: &str| w.parse::<i32>().ok().filter(|w| (-254..=254).contains(w));
    match words.as_slice() {
        [name] => Ok(((*name).to_owned(), None)),
        [name, "weight", w] => weight(w)
            .map(|w| ((*name).to_owned(), Some((w, None))))
            .ok_or(syntax),
        [name, "weight", w, r @ ("reverse" | "noreverse")] => weight(w)
            .map(|w| ((*name).to_owned(), Some((w, Some(*r == "reverse")))))
            .ok_or(syntax),
        _ => Err(syntax),
    }
}

fn trackers(
    config: &Config,
    processes: &BTreeMap<String, crate::vrrp::track::TrackProcess>,
    key: &str,
    instance: &VrrpInstance,
    group: Option<(&str, &crate::config::schema::SyncGroup)>,
    report: &mut Report<'_>,
) -> Trackers {
    use crate::vrrp::track::{TrackFile, TrackInterface};
    let mut out: Trackers = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let own = [(
        key.to_owned(),
        &instance.track_interface,
        &instance.track_script,
        (&instance.track_file, &instance.track_process),
        false,
    )];
    let grouped = group.map(|(name, g)| {
        (
            format!("vrrp_sync_group.{name}"),
            &g.track_interface,
            &g.track_script,
            (&g.track_file, &g.track_process),
            true,
        )
    });
    for (key, interfaces, scripts, (files, process_lines), unweighted) in
        own.into_iter().chain(grouped)
    {
        for (i, text) in process_lines.iter().enumerate() {
            let k = format!("{key}.track_process[{i}]");
            match process_line(text) {
                Err(expected) => report.error(&k, format!("{text:?}"), &expected),
                Ok((name, weight)) => {
                    if !report.reference(
                        &k,
                        &name,
                        "vrrp_track_process",
                        config.vrrp_track_process.keys(),
                    ) {
                        continue;
                    }
                    let Some(mut p) = processes.get(&name).cloned() else {
                        continue;
                    };
                    if let Some((w, reverse)) = weight {
                        p.weight = w;
                        p.reverse = reverse.unwrap_or(p.reverse);
                    }
                    if unweighted {
                        if weight.is_some() {
                            report.warn(
                                &k,
                                format!("{text:?}: the weight is ignored"),
                                "a sync group's trackers put every member in FAULT, weighted or not",
                            );
                        }
                        p.weight = 0;
                    }
                    out.3.push(p);
                }
            }
        }
        let line = |report: &mut Report<'_>, field: &str, i: usize, text: &str, range| {
            checked_tracker(
                report,
                &format!("{key}.{field}[{i}]"),
                text,
                range,
                unweighted,
            )
        };
        for (i, text) in interfaces.iter().enumerate() {
            if let Some((name, weight, _)) = line(report, "track_interface", i, text, -253..=253) {
                // A weight of 0 tracks unweighted, as keepalived reads it.
                out.0.push(TrackInterface {
                    name,
                    weight: weight.filter(|w| *w != 0),
                });
            }
        }
        for (i, text) in scripts.iter().enumerate() {
            if let Some((name, weight, k)) = line(report, "track_script", i, text, -253..=253)
                && report.reference(&k, &name, "vrrp_script", config.vrrp_script.keys())
            {
                out.1.push((name, weight));
            }
        }
        for (i, text) in files.iter().enumerate() {
            if let Some((name, weight, k)) = line(report, "track_file", i, text, -254..=254)
                && report.reference(&k, &name, "vrrp_track_file", config.vrrp_track_file.keys())
                && let Some(block) = config.vrrp_track_file.get(&name)
            {
                let mut file = TrackFile::new(block.file.clone());
                file.weight = weight.unwrap_or(block.weight);
                out.2.push(file);
            }
        }
    }
    out
}

/// `global_defs`' VRRP thread settings and every `vrrp_script`.
fn globals_and_scripts(config: &Config, report: &mut Report<'_>) {
    let g = &config.global_defs;
    if let Some(p) = g.vrrp_rt_priority.filter(|p| !(1..=99).contains(p)) {
        report.error(
            "global_defs.vrrp_rt_priority",
            p.to_string(),
            "1 to 99 (SCHED_RR priorities)",
        );
    }
    if let Some(n) = g.vrrp_priority.filter(|n| !(-20..=19).contains(n)) {
        report.error("global_defs.vrrp_priority", n.to_string(), "-20 to 19");
    }
    for (key, timeout) in [
        (
            "global_defs.startup_script_timeout",
            g.startup_script_timeout,
        ),
        (
            "global_defs.shutdown_script_timeout",
            g.shutdown_script_timeout,
        ),
    ] {
        if let Some(t) = timeout.filter(|t| !(1..=1000).contains(t)) {
            report.error(key, t.to_string(), "seconds, 1 to 1000");
        }
    }
    if let Some(d) = g
        .vrrp_startup_delay
        .filter(|d| !(0.001..=86_400.0).contains(d))
    {
        report.error(
            "global_defs.vrrp_startup_delay",
            d.to_string(),
            "seconds, 0.001 to 86400",
        );
    }
    for (name, script) in &config.vrrp_script {
        let key = format!("vrrp_script.{name}");
        if !(-253..=253).contains(&script.weight) {
            report.error(
                &format!("{key}.weight"),
                script.weight.to_string(),
                "-253 to 253",
            );
        }
        if script.interval.is_nan() || script.interval <= 0.0 {
            report.error(
                &format!("{key}.interval"),
                script.interval.to_string(),
                "seconds above 0",
            );
        }
        for (field, v) in [("rise", script.rise), ("fall", script.fall)] {
            if v == 0 {
                report.error(&format!("{key}.{field}"), "0".into(), "1 or more");
            }
        }
        if script.script.trim().is_empty() {
            report.error(
                &format!("{key}.script"),
                "an empty command".into(),
                "a command line",
            );
        }
    }
}

/// `static_ipaddress`, `static_routes` and `static_rules`, each line checked as its
/// instance counterpart is; a static address must say its `dev`.
fn statics(config: &Config, report: &mut Report<'_>) -> Statics {
    let mut statics = Statics::default();
    for (i, line) in config.static_ipaddress.iter().enumerate() {
        let key = format!("static_ipaddress[{i}]");
        match vip_line(line) {
            Ok(l) if l.options.dev.is_none() => report.error(
                &key,
                format!("{line:?} has no dev"),
                "ADDR[/PREFIX] dev IF ... (keepalived falls back to a default interface; we do not guess one)",
            ),
            Ok(l) => statics.addresses.push((l.vip, l.options)),
            Err(expected) => report.error(&key, format!("{line:?}"), &expected),
        }
    }
    for (i, line) in config.static_routes.iter().enumerate() {
        match VirtualRoute::parse(line) {
            Ok(r) => statics.routes.push(r),
            Err(expected) => {
                report.error(
                    &format!("static_routes[{i}]"),
                    format!("{line:?}"),
                    &expected,
                );
            }
        }
    }
    for (i, line) in config.static_rules.iter().enumerate() {
        match VirtualRule::parse(line) {
            Ok(r) => statics.rules.push(r),
            Err(expected) => {
                report.error(
                    &format!("static_rules[{i}]"),
                    format!("{line:?}"),
                    &expected,
                );
            }
        }
    }
    statics
}

/// keepalived's preference for a rule without one: counting down per family from
/// [`FIRST_ASSIGNED_PRIORITY`] across every instance, each with a warning.
fn assign_rule_preferences(
    key: &str,
    rules: &mut [VirtualRule],
    next_rule_priority: &mut [u32; 2],
    report: &mut Report<'_>,
) {
    for (i, rule) in rules.iter_mut().enumerate() {
        if rule.priority.is_none() {
            let next = &mut next_rule_priority[usize::from(rule.v6)];
            rule.priority = Some(*next);
            report.warn(
                &format!("{key}[{i}]"),
                format!(
                    "no preference: {next} assigned, as keepalived assigns one (counting down from {FIRST_ASSIGNED_PRIORITY})"
                ),
                "a preference on every rule, so that their order does not depend on which instance became master first",
            );
            *next = next.saturating_sub(1);
        }
    }
}

/// One instance's state-machine configuration, or `None` after reporting why not.
#[expect(
    clippy::too_many_lines,
    reason = "an instance's rules in the order an operator reads its keys"
)]
fn spec(
    config: &Config,
    key: &str,
    instance: &VrrpInstance,
    report: &mut Report<'_>,
) -> Option<InstanceSpec> {
    let errors_before = report.errors.len();
    let vrid = u8::try_from(instance.virtual_router_id)
        .ok()
        .filter(|v| *v != 0);
    if vrid.is_none() {
        report.error(
            &format!("{key}.virtual_router_id"),
            instance.virtual_router_id.to_string(),
            "1 to 255",
        );
    }
    let priority = u8::try_from(instance.priority).ok().filter(|p| *p != 0);
    if priority.is_none() {
        report.error(
            &format!("{key}.priority"),
            instance.priority.to_string(),
            "1 to 255 (255 only for the address owner)",
        );
    }
    let state = instance.state.as_deref().and_then(|s| {
        report
            .one_of(&format!("{key}.state"), s, &["MASTER", "BACKUP"])
            .map(|s| {
                if s == "MASTER" {
                    InitialState::Master
                } else {
                    InitialState::Backup
                }
            })
    });
    let mut vips: Vec<Vip> = Vec::new();
    let mut address_options = std::collections::BTreeMap::new();
    for (i, line) in instance.virtual_ipaddress.iter().enumerate() {
        let vkey = format!("{key}.virtual_ipaddress[{i}]");
        match vip_line(line) {
            Ok(l) => {
                if let Some(first) = vips.first()
                    && first.addr.is_ipv4() != l.vip.addr.is_ipv4()
                {
                    report.error(
                        &vkey,
                        format!("{line:?} mixes address families with {}", first.addr),
                        "addresses of one family per instance (a second instance for the other)",
                    );
                    continue;
                }
                if l.options != AddressOptions::default() {
                    address_options.insert(l.vip.addr, l.options);
                }
                vips.push(l.vip);
            }
            Err(expected) => report.error(&vkey, format!("{line:?}"), &expected),
        }
    }
    let mut excluded = Vec::new();
    for (i, line) in instance.virtual_ipaddress_excluded.iter().enumerate() {
        match vip_line(line) {
            Ok(l) => {
                if l.options != AddressOptions::default() {
                    address_options.insert(l.vip.addr, l.options);
                }
                excluded.push(l.vip);
            }
            Err(expected) => report.error(
                &format!("{key}.virtual_ipaddress_excluded[{i}]"),
                format!("{line:?}"),
                &expected,
            ),
        }
    }
    let mut routes = Vec::new();
    for (i, line) in instance.virtual_routes.iter().enumerate() {
        match VirtualRoute::parse(line) {
            Ok(r) => routes.push(r),
            Err(expected) => report.error(
                &format!("{key}.virtual_routes[{i}]"),
                format!("{line:?}"),
                &expected,
            ),
        }
    }
    let mut rules = Vec::new();
    for (i, line) in instance.virtual_rules.iter().enumerate() {
        match VirtualRule::parse(line) {
            Ok(r) => rules.push(r),
            Err(expected) => report.error(
                &format!("{key}.virtual_rules[{i}]"),
                format!("{line:?}"),
                &expected,
            ),
        }
    }
    let Some(first) = vips.first() else {
        if report.errors.len() == errors_before {
            report.error(
                &format!("{key}.virtual_ipaddress"),
                "no address".into(),
                "at least one ADDR[/PREFIX]",
            );
        }
        return None;
    };
    let family = Family::of(first.addr);
    for (i, peer) in instance.unicast_peer.iter().enumerate() {
        if Family::of(*peer) != family {
            report.error(
                &format!("{key}.unicast_peer[{i}]"),
                format!("{peer} is not of the virtual addresses' family"),
                "peers of the same family as virtual_ipaddress",
            );
        }
    }
    if let Some(src) = instance.unicast_src_ip
        && Family::of(src) != family
    {
        report.error(
            &format!("{key}.unicast_src_ip"),
            format!("{src} is not of the virtual addresses' family"),
            "an address of the same family as virtual_ipaddress",
        );
    }
    if priority == Some(255)
        && let Some(src) = instance.unicast_src_ip
        && !vips.iter().any(|v| v.addr == src)
    {
        report.error(
            &format!("{key}.priority"),
            format!("255 (the address owner), but unicast_src_ip {src} is not among the virtual addresses"),
            "1 to 254, or 255 on the node that owns the addresses",
        );
    }
    let version = match instance.version.unwrap_or(config.global_defs.vrrp_version) {
        // keepalived.conf(5): IPv6 is always VRRPv3.
        _ if family == Family::V6 && instance.version.is_none() => Version::V3,
        2 => Version::V2,
        3 => Version::V3,
        other => {
            report.error(&format!("{key}.version"), other.to_string(), "2 or 3");
            Version::V2
        }
    };
    let auth_key = format!("{key}.authentication.auth_type");
    let auth = instance.authentication.as_ref().and_then(|a| {
        let password = Password::new(&a.auth_pass);
        match report.one_of(&auth_key, &a.auth_type, &["PASS", "AH"])? {
            "AH" if family == Family::V6 => {
                report.error(
                    &auth_key,
                    "AH on an IPv6 instance".into(),
                    "PASS, or no authentication: AH authenticates IPv4 adverts only",
                );
                None
            }
            "AH" => Some(Auth::Ah(password)),
            _ => Some(Auth::Pass(password)),
        }
    });
    // keepalived: AH needs an advert's sequence number before taking over, so only the
    // address owner may start as master.
    let state = match (state, &auth, priority) {
        (Some(InitialState::Master), Some(Auth::Ah(_)), Some(p)) if p != 255 => {
            report.warn(
                &format!("{key}.state"),
                "MASTER with auth_type AH".into(),
                "BACKUP (as keepalived, the instance starts as backup: AH takes the sequence \
                 number from the master's adverts first)",
            );
            Some(InitialState::Backup)
        }
        _ => state,
    };
    if report.errors.len() != errors_before {
        return None;
    }
    let primary = instance.unicast_src_ip.unwrap_or(match family {
        Family::V4 => IpAddr::from([0u8; 4]),
        Family::V6 => IpAddr::from([0u16; 8]),
    });
    let addresses = match family {
        Family::V4 => Addresses::V4(Vec::new()),
        Family::V6 => Addresses::V6(Vec::new()),
    };
    let mut c = VrrpConfig::new(vrid?, version, primary, addresses);
    c.priority = priority?;
    c.initial_state = state;
    c.advert_interval = seconds(instance.advert_int);
    c.preempt = !instance.nopreempt;
    c.preempt_delay = seconds(instance.preempt_delay);
    c.accept = instance.accept.unwrap_or(!config.global_defs.vrrp_strict);
    c.auth = auth;
    c.unicast_peers.clone_from(&instance.unicast_peer);
    c.check_unicast_src = config.global_defs.vrrp_check_unicast_src;
    let g = &config.global_defs;
    c.garp.master_delay = Duration::from_secs(
        instance
            .garp_master_delay
            .unwrap_or(g.vrrp_garp_master_delay)
            .into(),
    );
    c.garp.master_repeat = instance
        .garp_master_repeat
        .unwrap_or(g.vrrp_garp_master_repeat);
    c.garp.master_refresh = Duration::from_secs(
        instance
            .garp_master_refresh
            .unwrap_or(g.vrrp_garp_master_refresh)
            .into(),
    );
    c.garp.master_refresh_repeat = g.vrrp_garp_master_refresh_repeat;
    c.garp.lower_prio_delay = Duration::from_secs(
        g.vrrp_garp_lower_prio_delay
            .unwrap_or(g.vrrp_garp_master_delay)
            .into(),
    );
    c.garp.lower_prio_repeat = g
        .vrrp_garp_lower_prio_repeat
        .unwrap_or(g.vrrp_garp_master_repeat);
    // The state machine's own rules, each reported against the key that breaks it.
    let mut check = c.clone();
    check.vips = match family {
        Family::V4 => Addresses::V4(
            vips.iter()
                .filter_map(|v| match v.addr {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                })
                .collect(),
        ),
        Family::V6 => Addresses::V6(
            vips.iter()
                .filter_map(|v| match v.addr {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                })
                .collect(),
        ),
    };
    if check.primary_address.is_unspecified() {
        // The interface's address is only known at run time; any address of the family
        // passes the family rule here.
        check.primary_address = first.addr;
    }
    if let Err(e) = check.validate() {
        let field = match e {
            ConfigError::Vrid => "virtual_router_id",
            ConfigError::Priority | ConfigError::NopreemptWithOwner => "priority",
            ConfigError::AdvertInterval { .. } => "advert_int",
            ConfigError::Families | ConfigError::TooManyVips { .. } => "virtual_ipaddress",
            ConfigError::V2OverIpv6 => "version",
            ConfigError::AuthNeedsV2 => "authentication",
            ConfigError::NopreemptWithStateMaster => "nopreempt",
            ConfigError::PreemptDelayWithStateMaster
            | ConfigError::PreemptDelayWithNopreempt
            | ConfigError::PreemptDelay { .. } => "preempt_delay",
        };
        report.error(
            &format!("{key}.{field}"),
            e.to_string(),
            "a combination keepalived's rules allow",
        );
        return None;
    }
    let vmac = instance.use_vmac.then(|| {
        instance
            .vmac_name
            .clone()
            .unwrap_or_else(|| crate::vrrp::net::vmac::default_name(c.vrid))
    });
    Some(InstanceSpec {
        interface: instance.interface.clone(),
        config: c,
        vips,
        group: match family {
            Family::V4 => Some(g.vrrp_mcast_group4).filter(|a| *a != IpAddr::from([224, 0, 0, 18])),
            Family::V6 => Some(g.vrrp_mcast_group6)
                .filter(|a| *a != IpAddr::from([0xff02, 0, 0, 0, 0, 0, 0, 0x12])),
        },
        // The model keeps the tracked names (`VrrpInstance`); the trackers themselves are
        // built when the daemon runs the instance.
        track: crate::vrrp::track::Track {
            dont_track_primary: instance.dont_track_primary,
            ..crate::vrrp::track::Track::default()
        },
        vmac,
        vmac_xmit_base: instance.vmac_xmit_base,
        excluded,
        routes,
        rules,
        address_options,
    })
}

/// Seconds as a duration; negative or non-finite values become zero, which the state
/// machine's rules then reject by name.
/// keepalived's timer resolution is a microsecond; rounding keeps `0.2` from becoming
/// 200000000.000000011 ns.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).map_or(Duration::ZERO, |d| {
        Duration::from_micros(u64::try_from(d.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX))
    })
}
