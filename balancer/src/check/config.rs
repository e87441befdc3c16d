//! From `lb.toml`'s checker blocks to running checkers, with keepalived's defaults and the
//! virtual server's values where a checker leaves a keyword out (`keepalived/check/check_api.c`
//! `queue_checker`, `check_data.c` `check_check_daemon_data`, and the handlers of each kind):
//! `connect_timeout` 5 s, `retry` 1 (`MISC_CHECK` 0), `delay_before_retry` 1 s (`HTTP_GET`
//! 3 s), `delay_loop` the virtual server's, `warmup` the `delay_loop` (so that by default the
//! first checks spread over one loop), `misc_timeout` the virtual server's `delay_loop`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::check::dns::{self, DnsCheck, DnsError};
use crate::check::http::{BodyMatch, HttpCheck, HttpProtocol, UrlCheck, UrlError};
use crate::check::misc::MiscCheck;
use crate::check::ping::PingCheck;
use crate::check::smtp::{DEFAULT_HELO, SmtpCheck};
use crate::check::tcp::{Connect, TcpCheck};
use crate::check::tls::{ClientIdentity, Tls, TlsError};
use crate::check::udp::{HexError, Pattern, UdpCheck};
use crate::check::{Probe, RealChecks, ServiceChecks, Timing};
use crate::config::schema::lvs::{Checker, RealServer, Ssl, VirtualServer};
use crate::notify::{Script, ScriptError, ScriptUser, SecurityError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("real server {real}: {key} = {value}: expected a non-negative number of seconds")]
    Seconds {
        real: SocketAddr,
        key: &'static str,
        value: f64,
    },
    #[error("real server {real}: delay_loop 0: checks would run back to back; expected > 0")]
    ZeroDelayLoop { real: SocketAddr },
    #[error("real server {real}: weight {weight}: expected 0..=65535")]
    Weight { real: SocketAddr, weight: i64 },
    #[error("real server {real}: url {index}: no path")]
    NoPath { real: SocketAddr, index: usize },
    #[error("real server {real}: url {index}")]
    Url {
        real: SocketAddr,
        index: usize,
        source: UrlError,
    },
    #[error("real server {real}: http_protocol {value:?}: expected 1.0, 1.0C or 1.1")]
    HttpProtocol { real: SocketAddr, value: String },
    #[error("real server {real}: SSL_GET url {index}: {reason}")]
    Sni {
        real: SocketAddr,
        index: usize,
        reason: String,
    },
    #[error("SSL block")]
    Ssl { source: TlsError },
    #[error("real server {real}: SSL_GET")]
    Tls { real: SocketAddr, source: TlsError },
    #[error("real server {real}: DNS_CHECK")]
    Dns { real: SocketAddr, source: DnsError },
    #[error("real server {real}: UDP_CHECK {key}")]
    Udp {
        real: SocketAddr,
        key: &'static str,
        source: HexError,
    },
    #[error("real server {real}: MISC_CHECK without misc_path")]
    NoMiscPath { real: SocketAddr },
    #[error("real server {real}: MISC_CHECK user")]
    User {
        real: SocketAddr,
        source: SecurityError,
    },
    #[error("{owner}: {key}")]
    Notify {
        owner: String,
        key: &'static str,
        source: ScriptError,
    },
    #[error("real server {real}: MISC_CHECK")]
    Script {
        real: SocketAddr,
        source: ScriptError,
    },
}

/// Where scripts run: `global_defs`' `script_user` and `enable_script_security`.
#[derive(Clone, Debug)]
pub struct ScriptPolicy {
    pub user: ScriptUser,
    pub security: bool,
}

/// What every checker shares: the script policy and keepalived's `SSL` block.
#[derive(Clone, Debug)]
pub struct Globals {
    pub scripts: ScriptPolicy,
    /// The `SSL` block's client certificate, read.
    pub tls_client: Option<Arc<ClientIdentity>>,
    /// With `SSL { verify }`: the certificates reals' certificates must chain to.
    pub tls_roots: Option<Arc<rustls::RootCertStore>>,
}

impl Globals {
    /// `scripts`, and the client certificate of `ssl` read from its files.
    ///
    /// # Errors
    /// A file of the `SSL` block cannot be read as PEM.
    pub fn new(scripts: ScriptPolicy, ssl: Option<&Ssl>) -> Result<Self, ConfigError> {
        let tls_client = ssl
            .and_then(|s| {
                let certificate = s.certificate.as_deref()?;
                Some((certificate, s.key.as_deref(), s.password.as_deref()))
            })
            .map(|(certificate, key, password)| {
                ClientIdentity::load(Path::new(certificate), key.map(Path::new), password)
                    .map(Arc::new)
                    .map_err(|source| ConfigError::Ssl { source })
            })
            .transpose()?;
        let tls_roots = ssl
            .filter(|s| s.verify)
            .and_then(|s| s.ca.as_deref())
            .map(|ca| {
                crate::check::tls::roots(Path::new(ca))
                    .map(Arc::new)
                    .map_err(|source| ConfigError::Ssl { source })
            })
            .transpose()?;
        Ok(Self {
            scripts,
            tls_client,
            tls_roots,
        })
    }
}

/// The checkers of every real of `vs`, named `name` in the data plane, with its quorum.
///
/// # Errors
/// As [`checks_for`], for the first real that fails.
pub fn service_checks(
    name: &str,
    vs: &VirtualServer,
    globals: &Globals,
) -> Result<ServiceChecks, ConfigError> {
    let scripts = &globals.scripts;
    let owner = || format!("virtual server {name}");
    Ok(ServiceChecks {
        name: name.to_owned(),
        quorum: vs.quorum,
        hysteresis: vs.hysteresis,
        sorry_server: vs.sorry_server.is_some(),
        omega: vs.omega,
        quorum_up: notify_script(vs.quorum_up.as_deref(), scripts, owner, "quorum_up")?,
        quorum_down: notify_script(vs.quorum_down.as_deref(), scripts, owner, "quorum_down")?,
        alerts: false,
        reals: vs
            .real_server
            .iter()
            .map(|rs| checks_for(vs, rs, globals))
            .collect::<Result<_, _>>()?,
    })
}

/// Whether the real at `addr`:`port` has the same checkers in `old` as in `new`: its
/// `real_server` block is the same but for its weight, and so is every `virtual_server` key
/// that [`checks_for`] reads. A reload then carries the real's checker state over.
#[must_use]
pub fn same_checks(old: &VirtualServer, new: &VirtualServer, addr: IpAddr, port: u16) -> bool {
    let find = |vs: &VirtualServer| {
        vs.real_server
            .iter()
            .find(|rs| rs.ip == addr && rs.port.or(vs.port).unwrap_or(0) == port)
            .map(|rs| RealServer {
                weight: 0,
                ..rs.clone()
            })
    };
    let service_keys = |vs: &VirtualServer| {
        (
            vs.port,
            vs.alpha,
            vs.inhibit_on_failure,
            vs.delay_loop,
            vs.retry,
            vs.delay_before_retry,
            vs.warmup,
            vs.connect_timeout,
            vs.virtualhost.clone(),
        )
    };
    let (Some(o), Some(n)) = (find(old), find(new)) else {
        return false;
    };
    o == n && service_keys(old) == service_keys(new)
}

/// The checkers of `rs` in `vs`.
///
/// # Errors
/// A value that validation should have refused.
pub fn checks_for(
    vs: &VirtualServer,
    rs: &RealServer,
    globals: &Globals,
) -> Result<RealChecks, ConfigError> {
    let scripts = &globals.scripts;
    let port = rs.port.or(vs.port).unwrap_or(0);
    let real = SocketAddr::new(rs.ip, port);
    let weight = u32::try_from(rs.weight)
        .ok()
        .filter(|w| *w <= 65535)
        .ok_or(ConfigError::Weight {
            real,
            weight: rs.weight,
        })?;
    let mut checkers: Vec<(Arc<dyn Probe>, Timing)> = Vec::new();
    for c in &rs.tcp_check {
        let c = &with_real_defaults(c, rs);
        let timing = timing(vs, c, real, Defaults::OTHER)?;
        let connect = connect(vs, c, real)?;
        checkers.push((Arc::new(TcpCheck { connect }), timing));
    }
    for c in &rs.http_get {
        let c = &with_real_defaults(c, rs);
        let timing = timing(vs, c, real, Defaults::HTTP)?;
        checkers.push((Arc::new(http(vs, c, real, None)?), timing));
    }
    for c in &rs.ssl_get {
        let c = &with_real_defaults(c, rs);
        let timing = timing(vs, c, real, Defaults::HTTP)?;
        let tls = Tls::new(
            c.enable_sni,
            globals.tls_client.as_deref(),
            globals.tls_roots.clone(),
        )
        .map_err(|source| ConfigError::Tls { real, source })?;
        let check = http(vs, c, real, Some(tls.clone()))?;
        // A virtual host that cannot be a server name is a configuration error, found here
        // rather than as a real that never comes up.
        for (index, url) in check.urls.iter().enumerate() {
            tls.server_name(url.virtualhost.as_deref(), check.connect.to.ip())
                .map_err(|reason| ConfigError::Sni {
                    real,
                    index,
                    reason,
                })?;
        }
        checkers.push((Arc::new(check), timing));
    }
    for c in &rs.smtp_check {
        let c = &with_real_defaults(c, rs);
        let timing = timing(vs, c, real, Defaults::OTHER)?;
        checkers.push((Arc::new(smtp(vs, c, real)?), timing));
    }
    for c in &rs.dns_check {
        let c = &with_real_defaults(c, rs);
        let timing = timing(vs, c, real, Defaults::DNS)?;
        checkers.push((Arc::new(dns(vs, c, real)?), timing));
    }
    for c in &rs.udp_check {
        let c = &with_real_defaults(c, rs);
        let timing = timing(vs, c, real, Defaults::OTHER)?;
        checkers.push((Arc::new(udp(vs, c, real)?), timing));
    }
    for c in &rs.ping_check {
        let c = &with_real_defaults(c, rs);
        let timing = timing(vs, c, real, Defaults::OTHER)?;
        checkers.push((Arc::new(PingCheck::new(connect(vs, c, real)?)), timing));
    }
    for c in &rs.misc_check {
        let c = &with_real_defaults(c, rs);
        let timing = timing(vs, c, real, Defaults::MISC)?;
        checkers.push((Arc::new(misc(vs, c, real, scripts)?), timing));
    }
    let owner = || format!("real server {real}");
    Ok(RealChecks {
        addr: rs.ip,
        port,
        weight,
        alpha: rs.alpha.unwrap_or(vs.alpha),
        inhibit_on_failure: rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure),
        notify_up: notify_script(rs.notify_up.as_deref(), scripts, owner, "notify_up")?,
        notify_down: notify_script(rs.notify_down.as_deref(), scripts, owner, "notify_down")?,
        checkers,
    })
}

/// A notify script, prepared for `global_defs`' `script_user` and script security as
/// keepalived runs every checker notify script.
fn notify_script(
    command: Option<&str>,
    scripts: &ScriptPolicy,
    owner: impl Fn() -> String,
    key: &'static str,
) -> Result<Option<Script>, ConfigError> {
    command
        .map(|c| {
            Script::prepare(c, scripts.user.clone(), scripts.security).map_err(|source| {
                ConfigError::Notify {
                    owner: owner(),
                    key,
                    source,
                }
            })
        })
        .transpose()
}

/// The defaults that differ between kinds.
#[derive(Clone, Copy)]
struct Defaults {
    retry: u32,
    /// Seconds; `None` is the checker's `delay_loop`.
    delay_before_retry: Option<f64>,
}

impl Defaults {
    const OTHER: Self = Self {
        retry: 1,
        delay_before_retry: Some(1.0),
    };
    const HTTP: Self = Self {
        retry: 1,
        delay_before_retry: Some(3.0),
    };
    const MISC: Self = Self {
        retry: 0,
        delay_before_retry: Some(1.0),
    };
    /// `check_dns.c` `dns_check_handler`: `DNS_DEFAULT_RETRY`, and a retry a loop later.
    const DNS: Self = Self {
        retry: 3,
        delay_before_retry: None,
    };
}

fn seconds(real: SocketAddr, key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).map_err(|_| ConfigError::Seconds { real, key, value })
}

/// `c` with what it leaves unset taken from its `real_server` block, which keepalived lets
/// set defaults for its checkers; the virtual server's come after those.
fn with_real_defaults(c: &Checker, rs: &RealServer) -> Checker {
    Checker {
        delay_loop: c.delay_loop.or(rs.delay_loop),
        retry: c.retry.or(rs.retry),
        delay_before_retry: c.delay_before_retry.or(rs.delay_before_retry),
        warmup: c.warmup.or(rs.warmup),
        connect_timeout: c.connect_timeout.or(rs.connect_timeout),
        ..c.clone()
    }
}

fn timing(
    vs: &VirtualServer,
    c: &Checker,
    real: SocketAddr,
    defaults: Defaults,
) -> Result<Timing, ConfigError> {
    let delay_loop = c.delay_loop.unwrap_or(vs.delay_loop);
    let loop_duration = seconds(real, "delay_loop", delay_loop)?;
    if loop_duration.is_zero() {
        return Err(ConfigError::ZeroDelayLoop { real });
    }
    Ok(Timing {
        delay_loop: loop_duration,
        retry: c
            .fall
            .map(|f| f.saturating_sub(1))
            .or(c.retry)
            .or(vs.retry)
            .unwrap_or(defaults.retry),
        delay_before_retry: seconds(
            real,
            "delay_before_retry",
            c.delay_before_retry
                .or(vs.delay_before_retry)
                .or(defaults.delay_before_retry)
                .unwrap_or(delay_loop),
        )?,
        warmup: seconds(real, "warmup", c.warmup.or(vs.warmup).unwrap_or(delay_loop))?,
        rise: c.rise.unwrap_or(1).max(1),
    })
}

fn connect(vs: &VirtualServer, c: &Checker, real: SocketAddr) -> Result<Connect, ConfigError> {
    Ok(Connect {
        to: SocketAddr::new(
            c.connect_ip.unwrap_or(real.ip()),
            c.connect_port.unwrap_or(real.port()),
        ),
        bind_ip: c.bindto,
        bind_port: c.bind_port,
        fwmark: c.fwmark,
        timeout: seconds(
            real,
            "connect_timeout",
            c.connect_timeout.or(vs.connect_timeout).unwrap_or(5.0),
        )?,
    })
}

/// `HTTP_GET`, or `SSL_GET` with `tls`: keepalived parses both with the same keywords and
/// defaults (`check_http.c` `install_http_ssl_check_keyword`).
fn http(
    vs: &VirtualServer,
    c: &Checker,
    real: SocketAddr,
    tls: Option<Tls>,
) -> Result<HttpCheck, ConfigError> {
    let protocol = match c.http_protocol.as_deref() {
        None | Some("1.0") => HttpProtocol::Http10,
        Some("1.0C" | "1.0c") => HttpProtocol::Http10Close,
        Some("1.1") => HttpProtocol::Http11,
        Some(other) => {
            return Err(ConfigError::HttpProtocol {
                real,
                value: other.to_owned(),
            });
        }
    };
    let urls = c
        .url
        .iter()
        .enumerate()
        .map(|(index, u)| {
            let path = u.path.clone().ok_or(ConfigError::NoPath { real, index })?;
            let body = u
                .regex
                .as_deref()
                .map(|pattern| {
                    BodyMatch::new(
                        pattern,
                        &u.regex_options,
                        u.regex_no_match,
                        u.regex_min_offset,
                        u.regex_max_offset,
                    )
                })
                .transpose();
            body.and_then(|body| {
                UrlCheck::new(
                    path,
                    &u.status_code,
                    u.digest.as_deref(),
                    u.virtualhost.clone().or_else(|| vs.virtualhost.clone()),
                )
                .map(|url| url.with_body_match(body))
            })
            .map_err(|source| ConfigError::Url {
                real,
                index,
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(HttpCheck {
        connect: connect(vs, c, real)?,
        urls,
        protocol,
        tls,
    })
}

fn dns(vs: &VirtualServer, c: &Checker, real: SocketAddr) -> Result<DnsCheck, ConfigError> {
    let invalid = |source| ConfigError::Dns { real, source };
    Ok(DnsCheck {
        connect: connect(vs, c, real)?,
        query_type: c
            .query_type
            .as_deref()
            .map_or(Ok(dns::DEFAULT_TYPE), dns::query_type)
            .map_err(invalid)?,
        name: dns::query_name(c.name.as_deref().unwrap_or("")).map_err(invalid)?,
    })
}

fn udp(vs: &VirtualServer, c: &Checker, real: SocketAddr) -> Result<UdpCheck, ConfigError> {
    let hex = |key, value: &str, wildcards| {
        Pattern::parse(value, wildcards).map_err(|source| ConfigError::Udp { real, key, source })
    };
    let mut check = UdpCheck::new(connect(vs, c, real)?);
    if let Some(p) = &c.payload {
        check.payload = hex("payload", p, false)?.octets;
    }
    check.reply = c
        .reply
        .as_deref()
        .map(|r| hex("reply", r, true))
        .transpose()?;
    check.require_reply = c.require_reply || check.reply.is_some();
    let min = c.min_reply_length.unwrap_or(*check.reply_len.start());
    let max = c.max_reply_length.unwrap_or(*check.reply_len.end());
    if min > max {
        return Err(ConfigError::Udp {
            real,
            key: "min_reply_length",
            source: HexError::Lengths { min, max },
        });
    }
    check.reply_len = min..=max;
    Ok(check)
}

fn smtp(vs: &VirtualServer, c: &Checker, real: SocketAddr) -> Result<SmtpCheck, ConfigError> {
    Ok(SmtpCheck {
        connect: connect(vs, c, real)?,
        helo_name: c
            .helo_name
            .clone()
            .unwrap_or_else(|| DEFAULT_HELO.to_owned()),
    })
}

fn misc(
    vs: &VirtualServer,
    c: &Checker,
    real: SocketAddr,
    scripts: &ScriptPolicy,
) -> Result<MiscCheck, ConfigError> {
    let path = c
        .misc_path
        .as_deref()
        .ok_or(ConfigError::NoMiscPath { real })?;
    let user = match &c.user {
        Some(name) => {
            let (user, group) = match name.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (name.as_str(), None),
            };
            ScriptUser::named(user, group).map_err(|source| ConfigError::User { real, source })?
        }
        None => scripts.user.clone(),
    };
    let script = Script::prepare(path, user, scripts.security)
        .map_err(|source| ConfigError::Script { real, source })?;
    Ok(MiscCheck {
        script,
        timeout: match c.misc_timeout {
            Some(s) => Duration::from_secs(s.into()),
            None => seconds(real, "delay_loop", vs.delay_loop)?,
        },
        dynamic: c.misc_dynamic,
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
