//! From a parsed [`Config`] to the [`Model`] the daemon runs, reporting every problem at once,
//! each with its file, line, column and key, what was found and what would be valid.

mod lvs;

pub use lvs::DEFAULT_PERSISTENCE_S;
mod vrrp;

use crate::config::address::vip_line;
use crate::config::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::config::host::{Host, Network};
use crate::config::locate::Locate;
use crate::config::schema::{Config, DataplaneKind};
use crate::model::Model;

/// Which file format the configuration came from: some rules depend on what it can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    LbToml,
    /// keepalived.conf has no `[xdp]`: the importer fills it from the VRRP interfaces, and
    /// its absence is a warning rather than an error.
    Keepalived,
}

/// A valid configuration, with the things accepted but worth a look.
#[derive(Debug, Clone)]
pub struct Validated {
    pub model: Model,
    pub warnings: Vec<Diagnostic>,
}

/// Checks `config` and builds its model, without the rules that need the host it runs on.
///
/// # Errors
/// Every problem found, in the order of the file.
pub fn validate(
    config: &Config,
    locate: &dyn Locate,
    origin: Origin,
) -> Result<Validated, Diagnostics> {
    validate_on(config, locate, origin, &Host::default())
}

/// Checks `config` for `host` and builds its model.
///
/// # Errors
/// Every problem found, in the order of the file.
pub fn validate_on(
    config: &Config,
    locate: &dyn Locate,
    origin: Origin,
    host: &Host,
) -> Result<Validated, Diagnostics> {
    // The VIPs' networks are attached while the node is master.
    let attached = host.networks.clone().map(|mut networks| {
        let vips = config
            .vrrp_instance
            .values()
            .flat_map(|i| &i.virtual_ipaddress);
        networks.extend(vips.filter_map(|l| vip_line(l).ok()).map(|l| Network {
            addr: l.vip.addr,
            prefix: l.vip.prefix,
        }));
        networks
    });
    let mut report = Report {
        locate,
        dataplane: config.dataplane,
        attached,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    match config.dataplane {
        DataplaneKind::Xdp if config.xdp.interfaces.is_empty() => {
            let message = (
                "xdp.interfaces",
                "no interface".to_owned(),
                "at least one, e.g. [\"eth0\"]",
            );
            match origin {
                Origin::LbToml => report.error(message.0, message.1, message.2),
                Origin::Keepalived => report.warn(
                    message.0,
                    "keepalived.conf names no interface for the XDP program".into(),
                    "`balancer convert`, then list them under [xdp]",
                ),
            }
        }
        // keepalived.conf's interfaces are its VRRP instances': nothing was asked of XDP.
        DataplaneKind::Ipvs if origin == Origin::LbToml && !config.xdp.interfaces.is_empty() => report.warn(
            "xdp.interfaces",
            "ignored with dataplane = \"ipvs\": IPVS forwards from the kernel's netfilter hooks, on every interface".into(),
            "no [xdp] section",
        ),
        DataplaneKind::Xdp | DataplaneKind::Ipvs => {}
    }
    let c = &config.connections;
    for (field, value) in [
        ("table_size", c.table_size),
        ("tcp_timeout", c.tcp_timeout),
        ("tcpfin_timeout", c.tcpfin_timeout),
        ("udp_timeout", c.udp_timeout),
    ] {
        if value == 0 {
            report.error(&format!("connections.{field}"), "0".into(), "1 or more");
        }
    }
    mail(config, &mut report);
    sync_daemon(config, &mut report);
    let (vrrp, statics) = vrrp::instances(config, &mut report);
    let (services, fwmark_services) = lvs::services(config, &mut report);
    lvs::ssl(config, &mut report);
    let mut errors = report.errors;
    errors.sort_by(|a, b| {
        (&a.location.file, a.location.line, a.location.column).cmp(&(
            &b.location.file,
            b.location.line,
            b.location.column,
        ))
    });
    if errors.is_empty() {
        Ok(Validated {
            model: Model {
                services,
                fwmark_services,
                vrrp,
                statics,
            },
            warnings: report.warnings,
        })
    } else {
        Err(Diagnostics(errors, report.warnings))
    }
}

/// `lvs_sync_daemon`: IPVS's; its instance must exist. `lvs_flush` and
/// `lvs_flush_on_stop` are IPVS's too.
fn sync_daemon(config: &Config, report: &mut Report<'_>) {
    let g = &config.global_defs;
    if config.dataplane == DataplaneKind::Xdp {
        for (key, set) in [
            ("global_defs.lvs_flush", g.lvs_flush),
            (
                "global_defs.lvs_flush_on_stop",
                g.lvs_flush_on_stop.is_some(),
            ),
        ] {
            if set {
                report.warn(
                    key,
                    "ignored with the XDP data plane, which leaves IPVS alone".into(),
                    "dataplane = \"ipvs\" (or --dataplane ipvs)",
                );
            }
        }
    }
    let Some(sync) = &config.global_defs.lvs_sync_daemon else {
        return;
    };
    let key = "global_defs.lvs_sync_daemon";
    if config.dataplane == DataplaneKind::Xdp {
        report.warn(
            key,
            "ignored with the XDP data plane, which has no connection sync".into(),
            "dataplane = \"ipvs\" (or --dataplane ipvs); on XDP, lb_algo mh sends a connection that moves to another node to the same real",
        );
    }
    if sync.interface.is_empty() || sync.interface.len() > 15 {
        report.error(
            &format!("{key}.interface"),
            format!("{:?}", sync.interface),
            "an interface name of 1 to 15 bytes",
        );
    }
    if let Some(name) = &sync.instance
        && !config.vrrp_instance.contains_key(name)
    {
        let known: Vec<&str> = config.vrrp_instance.keys().map(String::as_str).collect();
        report.error(
            &format!("{key}.instance"),
            format!("{name:?}: no such vrrp_instance"),
            &format!("one of {known:?}"),
        );
    }
    if sync.group.is_some_and(|g| !g.is_multicast()) {
        report.error(
            &format!("{key}.group"),
            format!("{:?}", sync.group),
            "a multicast address",
        );
    }
}

/// `notification_email`, `notification_email_from` and `smtp_server` as the mailer reads
/// them; alerts asked for with nowhere to send them are said to go nowhere.
fn mail(config: &Config, report: &mut Report<'_>) {
    use crate::notify::mail::{MailError, Mailer};
    let g = &config.global_defs;
    match Mailer::from_config(g) {
        Err(MailError::Server(s)) => {
            report.error("global_defs.smtp_server", format!("{s:?}"), "ADDR [PORT]");
        }
        Err(MailError::Address { what, address }) => {
            report.error(
                &format!("global_defs.{what}"),
                format!("{address:?}"),
                "a mail address such as ops@example.org",
            );
        }
        Ok(m) if m.is_configured() => {}
        Ok(_) => {
            if !g.notification_email.is_empty() && g.smtp_server.is_none() {
                report.warn(
                    "global_defs.notification_email",
                    "no smtp_server: alerts are not mailed".into(),
                    "smtp_server ADDR [PORT]",
                );
            }
            let on = |v: Option<bool>| v == Some(true);
            let mut asked: Vec<String> = [
                ("global_defs.smtp_alert", g.smtp_alert),
                ("global_defs.smtp_alert_vrrp", g.smtp_alert_vrrp),
                ("global_defs.smtp_alert_checker", g.smtp_alert_checker),
            ]
            .into_iter()
            .filter(|(_, v)| on(*v))
            .map(|(k, _)| k.to_owned())
            .collect();
            asked.extend(
                (config.vrrp_instance.iter())
                    .filter(|(_, i)| on(i.smtp_alert))
                    .map(|(n, _)| format!("vrrp_instance.{n}.smtp_alert")),
            );
            asked.extend(
                (config.vrrp_sync_group.iter())
                    .filter(|(_, i)| on(i.smtp_alert))
                    .map(|(n, _)| format!("vrrp_sync_group.{n}.smtp_alert")),
            );
            asked.extend(
                (config.virtual_server.iter().enumerate())
                    .filter(|(_, v)| on(v.smtp_alert))
                    .map(|(i, _)| format!("virtual_server[{i}].smtp_alert")),
            );
            for key in asked {
                report.warn(
                    &key,
                    "smtp_alert is on, but without smtp_server and notification_email no mail is sent".into(),
                    "smtp_server ADDR [PORT] and a notification_email address",
                );
            }
        }
    }
}

/// Collects problems as the rules find them.
pub(crate) struct Report<'a> {
    locate: &'a dyn Locate,
    /// Some rules depend on what the data plane can see.
    dataplane: DataplaneKind,
    /// The networks directly attached to the host, when validating on the node.
    attached: Option<Vec<Network>>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Report<'_> {
    fn diagnostic(&self, key: &str, found: String, expected: &str) -> Diagnostic {
        Diagnostic {
            location: self.locate.locate(key),
            key: key.to_owned(),
            found,
            expected: expected.to_owned(),
        }
    }

    pub(crate) fn error(&mut self, key: &str, found: String, expected: &str) {
        let d = self.diagnostic(key, found, expected);
        self.errors.push(d);
    }

    pub(crate) fn warn(&mut self, key: &str, found: String, expected: &str) {
        let d = self.diagnostic(key, found, expected);
        self.warnings.push(d);
    }

    /// `value` must be one of `valid`; an error suggests the nearest.
    pub(crate) fn one_of<'v>(
        &mut self,
        key: &str,
        value: &str,
        valid: &[&'v str],
    ) -> Option<&'v str> {
        if let Some(v) = valid.iter().find(|v| v.eq_ignore_ascii_case(value)) {
            return Some(v);
        }
        let mut expected = valid.join(", ");
        if let Some(near) = did_you_mean(value, valid.iter().copied()) {
            expected = format!("one of {expected} (did you mean {near}?)");
        } else {
            expected = format!("one of {expected}");
        }
        self.error(key, format!("{value:?}"), &expected);
        None
    }

    /// A reference to a name defined elsewhere (`track_script`, sync group members).
    pub(crate) fn reference<'n>(
        &mut self,
        key: &str,
        name: &str,
        section: &str,
        defined: impl Iterator<Item = &'n String> + Clone,
    ) -> bool {
        if defined.clone().any(|d| d == name) {
            return true;
        }
        let near = did_you_mean(name, defined.clone().map(String::as_str));
        let names: Vec<&str> = defined.map(String::as_str).collect();
        let expected = match (near, names.is_empty()) {
            (Some(n), _) => format!("a {section} name (did you mean {n}?)"),
            (None, true) => format!("a {section} name; none is defined"),
            (None, false) => format!("a {section} name: {}", names.join(", ")),
        };
        self.error(key, format!("{name:?} names no {section}"), &expected);
        false
    }
}

#[cfg(test)]
mod tests;
