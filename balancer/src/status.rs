//! What a running daemon reports about itself: services and reals as the data plane holds
//! them, VRRP instances and checkers. The daemon fills a [`Status`]; the control socket sends
//! it as JSON; `balancer status` prints it in the layout of `ipvsadm -Ln` (and of its
//! `--stats` and `--rate` views), followed by the VRRP instances and the checkers.

use std::{fmt::Write as _, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::model::{Method, Protocol, Scheduler};

/// Everything `balancer status` shows, as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's `--instance`.
    pub instance: String,
    /// The configuration file it runs.
    pub config: String,
    /// The data plane forwarding: the XDP program, or the kernel's IPVS.
    #[serde(default)]
    pub dataplane: crate::config::schema::DataplaneKind,
    /// Configurations applied so far (1 at start, one more per successful reload).
    pub generation: u64,
    /// The last reload, if any: when (Unix seconds), and the error that kept the old
    /// configuration, or `None` when it was applied.
    pub last_reload: Option<Reload>,
    /// Live entries in the connection table at the last sweep (IPVS: the reals' active and
    /// inactive connections).
    pub flows: u64,
    /// The connection table's size (0 for IPVS, whose table has no fixed size).
    pub flow_capacity: u32,
    /// TCP segments other than SYNs that found no flow (evicted from a full table, expired,
    /// or opened through another node), since load.
    pub flow_misses: u64,
    pub services: Vec<ServiceStatus>,
    pub vrrp: Vec<VrrpStatus>,
    pub checkers: Vec<CheckerStatus>,
    /// Frames by what the XDP program did with them and why, totals since load.
    pub reasons: Vec<(String, u64)>,
}

impl Status {
    /// Fills every service's and real's rates from an earlier status taken `secs` before
    /// (matched by service name and real address and port; new ones stay at zero).
    pub fn rates_since(&mut self, earlier: &[ServiceStatus], secs: f64) {
        self.set_rates(earlier, |e, _, now| Rates::between(e, now, secs));
    }

    /// Copies the rates of `from` (an earlier, rated reading) onto the matching services and
    /// reals of this one.
    pub fn copy_rates(&mut self, from: &[ServiceStatus]) {
        self.set_rates(from, |_, rates, _| rates);
    }

    /// Sets each service's and real's rates to `rate(other's counters, other's rates, own
    /// counters)` where `other` has the same service (by name) and real (by address and port).
    fn set_rates(
        &mut self,
        other: &[ServiceStatus],
        rate: impl Fn(Counters, Rates, Counters) -> Rates,
    ) {
        for s in &mut self.services {
            let Some(o) = other.iter().find(|o| o.name == s.name) else {
                continue;
            };
            s.rates = rate(o.counters, o.rates, s.counters);
            for r in s.reals.iter_mut().chain(&mut s.sorry_server) {
                if let Some(or) = o
                    .reals
                    .iter()
                    .chain(&o.sorry_server)
                    .find(|or| or.addr == r.addr && or.port == r.port)
                {
                    r.rates = rate(or.counters, or.rates, r.counters);
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reload {
    pub at: u64,
    pub error: Option<String>,
}

/// Packets, bytes and connections towards a service or a real (the direction the data plane
/// sees: replies of DR and TUN reals never pass through it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub conns: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// Per-second rates over the last sampling interval, as `ipvsadm --rate` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: f64,
    pub pps: f64,
    pub bps: f64,
}

impl Rates {
    /// The rates between two readings `secs` apart; a counter that went backwards (a real
    /// index reused) reads as zero.
    #[must_use]
    pub fn between(earlier: Counters, later: Counters, secs: f64) -> Self {
        if secs <= 0.0 {
            return Self::default();
        }
        #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
        let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        Self {
            cps: per_sec(earlier.conns, later.conns),
            pps: per_sec(earlier.packets, later.packets),
            bps: per_sec(earlier.bytes, later.bytes) * 8.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The data plane's name of the service (`TCP 198.18.0.10:80`).
    pub name: String,
    pub protocol: Protocol,
    pub vips: Vec<IpAddr>,
    pub port: u16,
    pub scheduler: Scheduler,
    /// `persistence_timeout` in seconds and the granularity as a prefix length.
    pub persistence: Option<(u32, u8)>,
    pub ops: bool,
    pub counters: Counters,
    pub rates: Rates,
    pub reals: Vec<RealStatus>,
    pub sorry_server: Option<RealStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealStatus {
    pub addr: IpAddr,
    pub port: u16,
    pub method: Method,
    /// The weight the data plane holds now (checkers set it; 0 drains).
    pub weight: u32,
    /// Connections not closing, as the schedulers count them (`ActiveConn`).
    pub active: u64,
    /// Live connections that are closing (`InActConn`).
    pub inactive: u64,
    pub counters: Counters,
    pub rates: Rates,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    /// `INIT`, `BACKUP`, `MASTER` or `FAULT`.
    pub state: String,
    /// The effective priority (configured plus tracker weights) and the configured one.
    pub priority: u8,
    pub configured_priority: u8,
    /// The master as last heard while backup (address, priority); ourselves while master.
    pub master: Option<(IpAddr, u8)>,
    /// When the state last changed (Unix seconds), and why.
    pub since: u64,
    pub why: String,
    pub become_master: u64,
    pub release_master: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckerStatus {
    /// The service's data-plane name.
    pub service: String,
    pub real: IpAddr,
    pub port: u16,
    /// How the checker describes itself (`TCP_CHECK 198.18.0.2:80`).
    pub checker: String,
    pub up: bool,
    /// The last change's reason (`connection refused`, `status 500`...).
    pub last: String,
    /// When the checker last changed (Unix seconds).
    pub since: u64,
}

/// Which `ipvsadm -L` view to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// `ipvsadm -Ln`: scheduler, flags, forwarding, weights and connection counts.
    #[default]
    List,
    /// `--stats`: totals.
    Stats,
    /// `--rate`: rates over the last sampling interval.
    Rate,
}

/// The scheduler as `ipvsadm` names it.
#[must_use]
pub fn scheduler_name(s: Scheduler) -> &'static str {
    match s {
        Scheduler::Rr => "rr",
        Scheduler::Wrr => "wrr",
        Scheduler::Lc => "lc",
        Scheduler::Wlc => "wlc",
        Scheduler::Sed => "sed",
        Scheduler::Nq => "nq",
        Scheduler::Sh => "sh",
        Scheduler::Dh => "dh",
        Scheduler::Mh => "mh",
    }
}

/// The forwarding method as `ipvsadm -Ln` names it.
#[must_use]
pub fn method_name(m: Method) -> &'static str {
    match m {
        Method::Dr => "Route",
        Method::Tun => "Tunnel",
        Method::Nat => "Masq",
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// `ADDR:PORT`, with IPv6 in brackets, as ipvsadm writes a service or a real.
#[must_use]
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// A netmask for IPv4 prefixes, as `ipvsadm` prints persistence granularity; IPv6 prefixes
/// stay a length.
fn mask(addr: IpAddr, prefix: u8) -> String {
    match addr {
        IpAddr::V4(_) => {
            let bits = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            std::net::Ipv4Addr::from(bits).to_string()
        }
        IpAddr::V6(_) => prefix.to_string(),
    }
}

/// `ipvsadm`'s large numbers: exact up to eight digits, then K, M, G, T.
fn large(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 100_000_000 {
        return n.to_string();
    }
    let mut v = n;
    for unit in UNITS {
        v /= 1000;
        if v < 100_000_000 {
            return format!("{v}{unit}");
        }
    }
    format!("{v}T")
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a non-negative rate rounded for display"
)]
fn rate(v: f64) -> String {
    large(v.round().max(0.0) as u64)
}

/// The services part of `balancer status`, laid out as `ipvsadm -Ln` lays out IPVS's table.
/// A service with several VIPs (a `virtual_server_group`) shows one block per VIP, as IPVS
/// lists a group's services; those blocks share the service's counters.
#[must_use]
pub fn render_services(status: &Status, view: View) -> String {
    let mut out = match status.dataplane {
        crate::config::schema::DataplaneKind::Xdp => format!(
            "balancer XDP data plane (connection table size={}, live={}, mid-stream misses={})\n",
            status.flow_capacity, status.flows, status.flow_misses
        ),
        crate::config::schema::DataplaneKind::Ipvs => format!(
            "balancer on the kernel's IPVS (connections={})\n",
            status.flows
        ),
    };
    out.push_str(match view {
        View::List => {
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        }
        View::Stats => {
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\n"
        }
        View::Rate => {
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\n"
        }
    });
    let mut shared = false;
    for s in &status.services {
        shared |= s.vips.len() > 1;
        for vip in &s.vips {
            let head = format!("{}  {}", protocol_name(s.protocol), endpoint(*vip, s.port));
            match view {
                View::List => {
                    let mut flags = String::new();
                    if let Some((timeout, prefix)) = s.persistence {
                        let _ = write!(flags, " persistent {timeout}");
                        let full = if vip.is_ipv4() { 32 } else { 128 };
                        if prefix < full {
                            let _ = write!(flags, " mask {}", mask(*vip, prefix));
                        }
                    }
                    if s.ops {
                        flags.push_str(" ops");
                    }
                    let _ = writeln!(out, "{head} {}{flags}", scheduler_name(s.scheduler));
                }
                View::Stats => {
                    let _ = writeln!(out, "{head:<33} {}", stats_columns(s.counters));
                }
                View::Rate => {
                    let _ = writeln!(out, "{head:<33} {}", rate_columns(s.rates));
                }
            }
            for r in s.reals.iter().chain(&s.sorry_server) {
                let dest = endpoint(r.addr, r.port);
                let _ = match view {
                    View::List => writeln!(
                        out,
                        "  -> {dest:<28} {:<7} {:<6} {:<10} {:<10}",
                        method_name(r.method),
                        r.weight,
                        r.active,
                        r.inactive
                    ),
                    View::Stats => writeln!(out, "  -> {dest:<28} {}", stats_columns(r.counters)),
                    View::Rate => writeln!(out, "  -> {dest:<28} {}", rate_columns(r.rates)),
                };
            }
        }
    }
    if shared && view != View::List {
        out.push_str("(blocks of one service with several VIPs show the service's counters)\n");
    }
    out
}

/// `OutPkts` and `OutBytes` are 0: the XDP program counts what it forwards towards reals.
fn stats_columns(c: Counters) -> String {
    format!(
        "{:>8} {:>8} {:>8} {:>8} {:>8}",
        large(c.conns),
        large(c.packets),
        0,
        large(c.bytes),
        0
    )
}

fn rate_columns(r: Rates) -> String {
    format!(
        "{:>8} {:>8} {:>8} {:>8} {:>8}",
        rate(r.cps),
        rate(r.pps),
        0,
        rate(r.bps),
        0
    )
}

/// The VRRP and checker parts of `balancer status`.
#[must_use]
pub fn render_rest(status: &Status) -> String {
    let mut out = String::new();
    if !status.vrrp.is_empty() {
        out.push_str(
            "\nVRRP instance        Interface        VRID State  Prio Master                         Since                Why\n",
        );
        for v in &status.vrrp {
            let master = match v.master {
                Some((addr, prio)) => format!("{addr} ({prio})"),
                None => "-".to_owned(),
            };
            let prio = if v.priority == v.configured_priority {
                v.priority.to_string()
            } else {
                format!("{}/{}", v.priority, v.configured_priority)
            };
            let _ = writeln!(
                out,
                "{:<20} {:<16} {:<4} {:<6} {:<4} {:<30} {:<20} {}",
                v.name,
                v.interface,
                v.vrid,
                v.state,
                prio,
                master,
                timestamp(v.since),
                v.why
            );
        }
    }
    if !status.checkers.is_empty() {
        out.push_str(
            "\nChecker                        Service                    Real                         State Since                Last result\n",
        );
        for c in &status.checkers {
            let _ = writeln!(
                out,
                "{:<30} {:<26} {:<28} {:<5} {:<20} {}",
                c.checker,
                c.service,
                endpoint(c.real, c.port),
                if c.up { "UP" } else { "DOWN" },
                timestamp(c.since),
                c.last
            );
        }
    }
    if let Some(r) = &status.last_reload {
        match &r.error {
            None => {
                let _ = writeln!(
                    out,
                    "\nconfiguration {} (generation {}) applied at {}",
                    status.config,
                    status.generation,
                    timestamp(r.at)
                );
            }
            Some(e) => {
                let _ = writeln!(
                    out,
                    "\nreload at {} refused, generation {} still runs: {e}",
                    timestamp(r.at),
                    status.generation
                );
            }
        }
    }
    out
}

/// Unix seconds as UTC `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
#[must_use]
pub fn timestamp(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Now, in Unix seconds.
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
