//! The kernel's IPVS as a data plane (`dataplane = "ipvs"`), driven over generic netlink as
//! keepalived's checker drives it.
//!
//! A service with several VIPs (a `virtual_server_group`) becomes one IPVS service per VIP,
//! each with the same destinations, as keepalived programs a group. A real whose weight is 0
//! stays a destination with weight 0 (quiescent: IPVS schedules nothing new to it and its
//! connections go on), which is keepalived's `inhibit_on_failure` and the [`Dataplane`]
//! contract. IPVS has no sorry server; as keepalived does, it is added as a destination
//! while no real has a weight above 0, and removed when one has again.
//!
//! Services in IPVS that the configuration does not name are left alone (another tool may
//! own them), as keepalived leaves them.

pub mod netlink;
pub mod sync;

use std::{
    collections::{BTreeMap, HashMap},
    io,
    net::IpAddr,
};

use balancer_common::maps::Globals;
use netlink::{Attr, Attrs, Genl, af, attr, cmd, dest, flags, fwd, stats, svc};

use super::{Dataplane, DataplaneError};
use crate::{
    model::{Method, RealServer, Scheduler, VirtualService},
    status::{Counters, Rates, RealStatus, ServiceStatus, scheduler_name},
};

/// One IPVS service as the kernel keys it: by protocol, address and port, or by firewall
/// mark (then `protocol` and `port` are 0 and `addr` is the family's unspecified address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub protocol: u8,
    pub addr: IpAddr,
    pub port: u16,
    pub fwmark: u32,
}

impl ServiceKey {
    fn attrs(self) -> Vec<Attr> {
        if self.fwmark != 0 {
            return vec![
                Attr::U16(svc::AF, af(self.addr)),
                Attr::U32(svc::FWMARK, self.fwmark),
            ];
        }
        vec![
            Attr::U16(svc::AF, af(self.addr)),
            Attr::U16(svc::PROTOCOL, u16::from(self.protocol)),
            Attr::addr(svc::ADDR, self.addr),
            Attr::Be16(svc::PORT, self.port),
        ]
    }

    fn fwmark(fwmark: u32, family: u16) -> Self {
        Self {
            protocol: 0,
            addr: if family == netlink::AF_INET6 {
                IpAddr::from([0u8; 16])
            } else {
                IpAddr::from([0u8; 4])
            },
            port: 0,
            fwmark,
        }
    }
}

/// A service as applied: the model, weights as last set, and its mark if IPVS selects it
/// by one.
struct Installed {
    fwmark: Option<u32>,
    service: VirtualService,
}

impl Installed {
    fn keys(&self) -> Vec<ServiceKey> {
        keys(self.fwmark, &self.service)
    }
}

/// A destination as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Destination {
    pub addr: IpAddr,
    pub port: u16,
    /// `IP_VS_CONN_F_*` forwarding method.
    pub method: u32,
    pub weight: u32,
    pub active: u32,
    pub inactive: u32,
    pub counters: Counters,
    /// The kernel's rate estimators (`ipvsadm --rate`).
    pub rates: Rates,
}

/// A service as the kernel reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelService {
    pub key: ServiceKey,
    pub scheduler: String,
    pub flags: u32,
    pub timeout: u32,
    pub netmask: u32,
    pub counters: Counters,
    /// The kernel's rate estimators (`ipvsadm --rate`).
    pub rates: Rates,
}

/// IPVS through generic netlink.
pub struct IpvsDataplane {
    genl: Genl,
    /// What each named service was last applied with.
    installed: BTreeMap<String, Installed>,
    /// The kernel services the change under way created (not found there), which are all a
    /// failed first install may take away: one adopted from a previous run, or made by
    /// another tool, keeps forwarding.
    created: Vec<ServiceKey>,
}

fn error(op: &str, what: impl std::fmt::Display, source: io::Error) -> DataplaneError {
    DataplaneError::Ipvs {
        op: format!("{op} {what}"),
        source,
    }
}

const fn method_code(m: Method) -> u32 {
    match m {
        Method::Dr => fwd::DROUTE,
        Method::Tun => fwd::TUNNEL,
        Method::Nat => fwd::MASQ,
    }
}

/// The persistence netmask as IPVS takes it: a mask in network order for IPv4, a prefix
/// length for IPv6.
fn netmask(addr: IpAddr, prefix: u8) -> u32 {
    match addr {
        IpAddr::V4(_) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from_ne_bytes(mask.to_be_bytes())
        }
        IpAddr::V6(_) => u32::from(prefix.clamp(1, 128)),
    }
}

/// The service's IPVS definition for one of its VIPs: key, scheduler, flags, persistence.
fn service_attrs(s: &VirtualService, key: ServiceKey) -> Vec<Attr> {
    let mut f = 0;
    if s.persistence.is_some() {
        f |= flags::PERSISTENT;
    }
    if s.ops {
        f |= flags::ONEPACKET;
    }
    if s.hash_port && matches!(s.scheduler, Scheduler::Sh | Scheduler::Mh) {
        f |= flags::SCHED_PORT;
    }
    let (timeout, prefix) = s.persistence.map_or((0, 128), |p| (p.timeout_s, p.prefix));
    let mut attrs = key.attrs();
    attrs.extend([
        Attr::Str(svc::SCHED_NAME, scheduler_name(s.scheduler).to_owned()),
        Attr::Bytes(
            svc::FLAGS,
            [f.to_ne_bytes(), u32::MAX.to_ne_bytes()].concat(),
        ),
        Attr::U32(svc::TIMEOUT, timeout),
        Attr::U32(svc::NETMASK, netmask(key.addr, prefix)),
    ]);
    attrs
}

fn dest_attrs(r: &RealServer, weight: u32) -> Vec<Attr> {
    vec![
        Attr::addr(dest::ADDR, r.addr),
        Attr::Be16(dest::PORT, r.port),
        Attr::U16(dest::ADDR_FAMILY, af(r.addr)),
        Attr::U32(dest::FWD_METHOD, method_code(r.method)),
        Attr::U32(dest::WEIGHT, weight),
        Attr::U32(dest::U_THRESH, 0),
        Attr::U32(dest::L_THRESH, 0),
        // IPIP; the tunnel port and flags only mean something for GUE and GRE.
        Attr::U8(dest::TUN_TYPE, 0),
    ]
}

/// The IPVS services of a service: one per VIP, or the one of its mark (of its reals'
/// family, as `ipvsadm -A -f` takes it).
fn keys(fwmark: Option<u32>, s: &VirtualService) -> Vec<ServiceKey> {
    if let Some(mark) = fwmark {
        let family = s
            .reals
            .iter()
            .chain(s.sorry_server.as_ref())
            .next()
            .map_or(netlink::AF_INET, |r| af(r.addr));
        return vec![ServiceKey::fwmark(mark, family)];
    }
    s.vips
        .iter()
        .map(|&addr| ServiceKey {
            protocol: s.protocol.number(),
            addr,
            port: s.port,
            fwmark: 0,
        })
        .collect()
}

/// The destinations a service should have now: its reals, and its sorry server while no
/// real has a weight above 0.
fn wanted(s: &VirtualService) -> Vec<(RealServer, u32)> {
    let mut out: Vec<(RealServer, u32)> = s.reals.iter().map(|r| (r.clone(), r.weight)).collect();
    if let Some(sorry) = sorry_active(s) {
        out.push((sorry.clone(), sorry.weight.max(1)));
    }
    out
}

fn sorry_active(s: &VirtualService) -> Option<&RealServer> {
    let sorry = s.sorry_server.as_ref()?;
    let shadowed = s
        .reals
        .iter()
        .any(|r| r.weight > 0 || (r.addr == sorry.addr && r.port == sorry.port));
    (!shadowed).then_some(sorry)
}

/// Totals and the kernel's rates (its estimators, over about two seconds, as `ipvsadm
/// --rate` shows them), inbound.
fn stats64(raw: Option<&[u8]>) -> io::Result<(Counters, Rates)> {
    let Some(raw) = raw else {
        return Ok((Counters::default(), Rates::default()));
    };
    let a = Attrs::parse(raw)?;
    #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = |kind| a.u64(kind).unwrap_or(0) as f64;
    Ok((
        Counters {
            conns: a.u64(stats::CONNS).unwrap_or(0),
            packets: a.u64(stats::INPKTS).unwrap_or(0),
            bytes: a.u64(stats::INBYTES).unwrap_or(0),
        },
        Rates {
            cps: rate(stats::CPS),
            pps: rate(stats::INPPS),
            bps: rate(stats::INBPS),
        },
    ))
}

impl IpvsDataplane {
    /// Connects to the kernel's IPVS.
    ///
    /// # Errors
    /// The kernel has no IPVS, or netlink fails.
    pub fn connect() -> Result<Self, DataplaneError> {
        Ok(Self {
            genl: Genl::connect().map_err(|e| error("connecting to", "IPVS", e))?,
            installed: BTreeMap::new(),
            created: Vec::new(),
        })
    }

    /// Sets IPVS's connection timeouts (`ipvsadm --set tcp tcpfin udp`), in whole seconds;
    /// 0 leaves one as it is, as IPVS reads it.
    ///
    /// # Errors
    /// The kernel refuses them.
    pub fn set_timeouts(&mut self, timeouts: Globals) -> Result<(), DataplaneError> {
        let seconds = |ns: u64| u32::try_from(ns / 1_000_000_000).unwrap_or(u32::MAX);
        self.genl
            .request(
                cmd::SET_CONFIG,
                vec![
                    Attr::U32(attr::TIMEOUT_TCP, seconds(timeouts.tcp_timeout_ns)),
                    Attr::U32(attr::TIMEOUT_TCP_FIN, seconds(timeouts.tcpfin_timeout_ns)),
                    Attr::U32(attr::TIMEOUT_UDP, seconds(timeouts.udp_timeout_ns)),
                ],
            )
            .map_err(|e| error("setting", "the connection timeouts", e))
    }

    /// Every service the kernel holds (ours and others').
    ///
    /// # Errors
    /// Netlink fails.
    pub fn kernel_services(&mut self) -> Result<Vec<KernelService>, DataplaneError> {
        self.dump_nested(
            cmd::GET_SERVICE,
            Vec::new(),
            attr::SERVICE,
            "services",
            |a| {
                let family = a.u16(svc::AF).unwrap_or(netlink::AF_INET);
                let key = match a.u32(svc::FWMARK).unwrap_or(0) {
                    0 => {
                        let Some(addr) = a.addr(svc::ADDR, family) else {
                            return Ok(None);
                        };
                        ServiceKey {
                            protocol: u8::try_from(a.u16(svc::PROTOCOL).unwrap_or(0)).unwrap_or(0),
                            addr,
                            port: a.be16(svc::PORT).unwrap_or(0),
                            fwmark: 0,
                        }
                    }
                    mark => ServiceKey::fwmark(mark, family),
                };
                let (counters, rates) = stats64(a.get(svc::STATS64))?;
                let f = a
                    .get(svc::FLAGS)
                    .and_then(|v| v.get(..4))
                    .map_or(0, |v| u32::from_ne_bytes(v.try_into().unwrap_or_default()));
                Ok(Some(KernelService {
                    key,
                    scheduler: a.string(svc::SCHED_NAME).unwrap_or_default(),
                    flags: f,
                    timeout: a.u32(svc::TIMEOUT).unwrap_or(0),
                    netmask: a.u32(svc::NETMASK).unwrap_or(0),
                    counters,
                    rates,
                }))
            },
        )
    }

    /// Dumps `command` and reads the nested attribute `top` of each answer with `read`;
    /// answers without it, or that `read` passes over (`None`), are left out.
    pub(crate) fn dump_nested<T>(
        &mut self,
        command: u8,
        attrs: Vec<Attr>,
        top: u16,
        what: &str,
        read: impl Fn(&Attrs<'_>) -> io::Result<Option<T>>,
    ) -> Result<Vec<T>, DataplaneError> {
        let replies = self
            .genl
            .dump(command, attrs)
            .map_err(|e| error("listing", what, e))?;
        let mut out = Vec::new();
        for raw in replies {
            let parsed = Attrs::parse(&raw).and_then(|a| match a.get(top) {
                Some(inner) => read(&Attrs::parse(inner)?),
                None => Ok(None),
            });
            if let Some(item) = parsed.map_err(|e| error("reading", what, e))? {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// The destinations of one kernel service.
    ///
    /// # Errors
    /// No such service, or netlink fails.
    pub fn destinations(&mut self, key: ServiceKey) -> Result<Vec<Destination>, DataplaneError> {
        let what = format!("the destinations of {}", describe(key));
        self.dump_nested(
            cmd::GET_DEST,
            vec![Attr::Nested(attr::SERVICE, key.attrs())],
            attr::DEST,
            &what,
            |a| {
                let family = a.u16(dest::ADDR_FAMILY).unwrap_or_else(|| af(key.addr));
                let Some(addr) = a.addr(dest::ADDR, family) else {
                    return Ok(None);
                };
                let (counters, rates) = stats64(a.get(dest::STATS64))?;
                Ok(Some(Destination {
                    addr,
                    port: a.be16(dest::PORT).unwrap_or(0),
                    method: a.u32(dest::FWD_METHOD).unwrap_or(0),
                    weight: a.u32(dest::WEIGHT).unwrap_or(0),
                    active: a.u32(dest::ACTIVE_CONNS).unwrap_or(0),
                    inactive: a.u32(dest::INACT_CONNS).unwrap_or(0),
                    counters,
                    rates,
                }))
            },
        )
    }

    fn dest_cmd(&mut self, command: u8, key: ServiceKey, dest: Vec<Attr>) -> io::Result<()> {
        self.genl.request(
            command,
            vec![
                Attr::Nested(attr::SERVICE, key.attrs()),
                Attr::Nested(attr::DEST, dest),
            ],
        )
    }

    /// Makes the kernel's service `key` what `s` says: created or changed, its destinations
    /// added, changed and removed to match.
    fn converge(&mut self, s: &VirtualService, key: ServiceKey) -> Result<(), DataplaneError> {
        let attrs = service_attrs(s, key);
        match self.genl.request(
            cmd::NEW_SERVICE,
            vec![Attr::Nested(attr::SERVICE, attrs.clone())],
        ) {
            Ok(()) => self.created.push(key),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self
                .genl
                .request(cmd::SET_SERVICE, vec![Attr::Nested(attr::SERVICE, attrs)])
                .map_err(|e| error("changing", describe(key), e))?,
            Err(e) => return Err(error("adding", describe(key), e)),
        }
        let present: HashMap<(IpAddr, u16), Destination> = self
            .destinations(key)?
            .into_iter()
            .map(|d| ((d.addr, d.port), d))
            .collect();
        let wanted = wanted(s);
        for (r, weight) in &wanted {
            let what = || {
                format!(
                    "real {} of {}",
                    describe_real(r.addr, r.port),
                    describe(key)
                )
            };
            match present.get(&(r.addr, r.port)) {
                Some(d) if d.weight == *weight && d.method & fwd::MASK == method_code(r.method) => {
                }
                Some(_) => self
                    .dest_cmd(cmd::SET_DEST, key, dest_attrs(r, *weight))
                    .map_err(|e| error("changing", what(), e))?,
                None => self
                    .dest_cmd(cmd::NEW_DEST, key, dest_attrs(r, *weight))
                    .map_err(|e| error("adding", what(), e))?,
            }
        }
        for d in present.values() {
            if !wanted
                .iter()
                .any(|(r, _)| r.addr == d.addr && r.port == d.port)
            {
                self.dest_cmd(
                    cmd::DEL_DEST,
                    key,
                    vec![
                        Attr::addr(dest::ADDR, d.addr),
                        Attr::Be16(dest::PORT, d.port),
                    ],
                )
                .map_err(|e| {
                    error(
                        "removing",
                        format!(
                            "real {} of {}",
                            describe_real(d.addr, d.port),
                            describe(key)
                        ),
                        e,
                    )
                })?;
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: ServiceKey) -> Result<(), DataplaneError> {
        match self.genl.request(
            cmd::DEL_SERVICE,
            vec![Attr::Nested(attr::SERVICE, key.attrs())],
        ) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
                Err(error("removing", describe(key), e))
            }
            _ => Ok(()),
        }
    }

    fn apply_all(
        &mut self,
        fwmark: Option<u32>,
        s: &VirtualService,
        old: Option<&Installed>,
    ) -> Result<(), DataplaneError> {
        let new_keys = keys(fwmark, s);
        for &key in &new_keys {
            self.converge(s, key)?;
        }
        for key in old.map(Installed::keys).unwrap_or_default() {
            if !new_keys.contains(&key) {
                self.delete(key)?;
            }
        }
        Ok(())
    }

    /// The model `service` was last applied with, weights as last set.
    #[must_use]
    pub fn installed_model(&self, service: &str) -> Option<VirtualService> {
        self.installed.get(service).map(|i| i.service.clone())
    }

    /// Installs a service that IPVS selects by firewall mark (`virtual_server fwmark N`), or
    /// changes it, as [`Dataplane::apply`] does for one selected by address.
    ///
    /// # Errors
    /// As [`Dataplane::apply`].
    pub fn apply_fwmark(
        &mut self,
        name: &str,
        fwmark: u32,
        service: &VirtualService,
    ) -> Result<(), DataplaneError> {
        self.install(name, Some(fwmark), service)
    }

    fn install(
        &mut self,
        name: &str,
        fwmark: Option<u32>,
        service: &VirtualService,
    ) -> Result<(), DataplaneError> {
        if fwmark.is_none() && service.vips.is_empty() {
            return Err(DataplaneError::Invalid {
                service: name.to_owned(),
                message: "no virtual address".into(),
            });
        }
        let old = self.installed.remove(name);
        self.created.clear();
        if let Err(e) = self.apply_all(fwmark, service, old.as_ref()) {
            // IPVS has no transactions: put back what was there, so the service is never
            // left half changed (best effort; the first error is the one reported).
            let undo = Installed {
                fwmark,
                service: service.clone(),
            };
            let _ = match &old {
                Some(o) => self.apply_all(o.fwmark, &o.service, Some(&undo)),
                None => std::mem::take(&mut self.created)
                    .into_iter()
                    .try_for_each(|k| self.delete(k)),
            };
            if let Some(old) = old {
                self.installed.insert(name.to_owned(), old);
            }
            return Err(e);
        }
        self.installed.insert(
            name.to_owned(),
            Installed {
                fwmark,
                service: service.clone(),
            },
        );
        Ok(())
    }

    /// Services in the kernel that no configured service claims (left alone).
    ///
    /// # Errors
    /// Netlink fails.
    pub fn unclaimed(&mut self) -> Result<Vec<ServiceKey>, DataplaneError> {
        let ours: Vec<ServiceKey> = self.installed.values().flat_map(Installed::keys).collect();
        Ok(self
            .kernel_services()?
            .into_iter()
            .map(|s| s.key)
            .filter(|k| !ours.contains(k))
            .collect())
    }

    /// Empties IPVS of every service, ours and others' (`ipvsadm -C`; keepalived's
    /// `lvs_flush`, and `lvs_flush_on_stop` with no argument).
    ///
    /// # Errors
    /// The kernel refuses it.
    pub fn flush_all(&mut self) -> Result<(), DataplaneError> {
        self.genl
            .request(cmd::FLUSH, Vec::new())
            .map_err(|e| error("flushing", "every service", e))?;
        self.installed.clear();
        Ok(())
    }

    /// Removes every service this data plane installed (keepalived's behaviour on stop).
    ///
    /// # Errors
    /// The first removal that fails; the others are still tried.
    pub fn remove_all(&mut self) -> Result<(), DataplaneError> {
        let names: Vec<String> = self.installed.keys().cloned().collect();
        let mut first = None;
        for name in names {
            if let Err(e) = self.remove(&name) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Every installed service as `balancer status` shows it, with the kernel's counters
    /// (summed over a group's VIPs).
    ///
    /// # Errors
    /// Netlink fails.
    pub fn service_status(&mut self) -> Result<Vec<ServiceStatus>, DataplaneError> {
        let kernel: HashMap<ServiceKey, KernelService> = self
            .kernel_services()?
            .into_iter()
            .map(|s| (s.key, s))
            .collect();
        let installed: Vec<(String, Vec<ServiceKey>, VirtualService)> = self
            .installed
            .iter()
            .map(|(n, i)| (n.clone(), i.keys(), i.service.clone()))
            .collect();
        let mut out = Vec::new();
        for (name, keys, s) in installed {
            let (mut counters, mut rates) = (Counters::default(), Rates::default());
            let mut dests: HashMap<(IpAddr, u16), (u64, u64, Counters, Rates)> = HashMap::new();
            for key in keys {
                let Some(k) = kernel.get(&key) else { continue };
                add(&mut counters, &mut rates, k.counters, k.rates);
                for d in self.destinations(key)? {
                    let e = dests.entry((d.addr, d.port)).or_default();
                    e.0 += u64::from(d.active);
                    e.1 += u64::from(d.inactive);
                    add(&mut e.2, &mut e.3, d.counters, d.rates);
                }
            }
            let real = |r: &RealServer| {
                let (active, inactive, counters, rates) =
                    dests.get(&(r.addr, r.port)).copied().unwrap_or_default();
                RealStatus {
                    addr: r.addr,
                    port: r.port,
                    method: r.method,
                    weight: r.weight,
                    active,
                    inactive,
                    counters,
                    rates,
                }
            };
            out.push(ServiceStatus {
                name,
                protocol: s.protocol,
                vips: s.vips.clone(),
                port: s.port,
                scheduler: s.scheduler,
                persistence: s.persistence.map(|p| (p.timeout_s, p.prefix)),
                ops: s.ops,
                counters,
                rates,
                reals: s.reals.iter().map(real).collect(),
                sorry_server: s.sorry_server.as_ref().map(real),
            });
        }
        Ok(out)
    }
}

fn add(total: &mut Counters, total_rates: &mut Rates, c: Counters, r: Rates) {
    total.conns += c.conns;
    total.packets += c.packets;
    total.bytes += c.bytes;
    total_rates.cps += r.cps;
    total_rates.pps += r.pps;
    total_rates.bps += r.bps;
}

/// A service as `ipvsadm -Ln` names it.
#[must_use]
pub fn describe(key: ServiceKey) -> String {
    if key.fwmark != 0 {
        return format!("FWM {}", key.fwmark);
    }
    let proto = match key.protocol {
        6 => "TCP",
        17 => "UDP",
        _ => "?",
    };
    format!("{proto} {}", describe_real(key.addr, key.port))
}

fn describe_real(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V6(a) => format!("[{a}]:{port}"),
        IpAddr::V4(a) => format!("{a}:{port}"),
    }
}

impl Dataplane for IpvsDataplane {
    /// Installs or changes a service selected by address; one installed by mark keeps its
    /// mark.
    fn apply(&mut self, name: &str, service: &VirtualService) -> Result<(), DataplaneError> {
        let fwmark = self.installed.get(name).and_then(|i| i.fwmark);
        self.install(name, fwmark, service)
    }

    fn remove(&mut self, name: &str) -> Result<(), DataplaneError> {
        let keys = self
            .installed
            .get(name)
            .map(Installed::keys)
            .ok_or_else(|| DataplaneError::UnknownService {
                service: name.to_owned(),
            })?;
        for key in keys {
            self.delete(key)?;
        }
        self.installed.remove(name);
        Ok(())
    }

    fn set_weight_fast(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError> {
        let installed = self
            .installed
            .get(name)
            .ok_or_else(|| DataplaneError::UnknownService {
                service: name.to_owned(),
            })?;
        let fwmark = installed.fwmark;
        let mut s = installed.service.clone();
        let before = sorry_active(&s).cloned();
        let real = s
            .reals
            .iter_mut()
            .find(|r| r.addr == addr && r.port == port)
            .ok_or(DataplaneError::UnknownReal {
                service: name.to_owned(),
                addr,
                port,
            })?;
        real.weight = weight;
        let real = real.clone();
        let after = sorry_active(&s).cloned();
        let what = || format!("the weight of real {}", describe_real(addr, port));
        for key in keys(fwmark, &s) {
            // The sorry server comes in before the last real leaves, and goes after the
            // first one is back, so no new connection finds nothing.
            if let (None, Some(sorry)) = (&before, &after) {
                self.dest_cmd(cmd::NEW_DEST, key, dest_attrs(sorry, sorry.weight.max(1)))
                    .map_err(|e| error("adding", "the sorry server", e))?;
            }
            self.dest_cmd(cmd::SET_DEST, key, dest_attrs(&real, weight))
                .map_err(|e| error("setting", what(), e))?;
            if let (Some(sorry), None) = (&before, &after) {
                self.dest_cmd(
                    cmd::DEL_DEST,
                    key,
                    vec![
                        Attr::addr(dest::ADDR, sorry.addr),
                        Attr::Be16(dest::PORT, sorry.port),
                    ],
                )
                .map_err(|e| error("removing", "the sorry server", e))?;
            }
        }
        self.installed
            .insert(name.to_owned(), Installed { fwmark, service: s });
        Ok(())
    }
}
