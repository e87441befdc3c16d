//! Renders model services into the XDP program's maps: service keys, reals, scheduler tables.
//!
//! Identities are stable: a real keeps its index for as long as its service lists it, so its
//! connections in the flow table stay on it; removed indexes are reused oldest-first. A new
//! scheduler table is written to free slots before the service entry is switched to it (one
//! map update), and the old slots rest in quarantine before reuse, so a packet that read the
//! old entry still finds the old table.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    ops::Range,
    time::{Duration, Instant},
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues};
use balancer_common::maps::{
    FAMILY_V4, FAMILY_V6, MAX_LC_REALS, MAX_REALS, MAX_SCHED_SLOTS, MAX_SERVICES, OWNER_DRAINING,
    REAL_ACTIVE_MAP, REAL_STATS_MAP, REALS_MAP, RR_CURSOR_MAP, Real, SCHED_SLOTS_MAP,
    SERVICE_STATS_MAP, SERVICES_MAP, SVC_F_HASH_PORT, SVC_F_OPS, SVC_F_PERSIST, Service,
    ServiceKey, Stats, VIPS_MAP, method, sched,
};

use super::XdpProgram;
use crate::{
    dataplane::{
        Dataplane, DataplaneError,
        sched::{maglev_size, maglev_table, wrr_ring},
    },
    model::{Method, RealServer, Scheduler, VirtualService},
};

/// How long freed table slots wait before reuse: far longer than any packet's processing.
/// An XDP program run lasts microseconds; 50 ms is ample, and short enough that a service
/// changing its weights many times a second does not pin every slot in quarantine.
const QUARANTINE: Duration = Duration::from_millis(50);

#[derive(Clone)]
struct Installed {
    id: u32,
    model: VirtualService,
    keys: Vec<ServiceKey>,
    /// Real index per `model.reals` entry.
    reals: Vec<u32>,
    sorry: Option<u32>,
    table: Range<u32>,
    /// The scheduler table's content: positions into `model.reals` (for predictions).
    positions: Vec<u32>,
    /// The table is not the one `model`'s weights give (a weight changed by
    /// [`Dataplane::set_weight_fast`]); [`Dataplane::flush`] rebuilds it.
    stale: bool,
    /// Exact hash tables (mh/sh/dh) with the weights they were built for: the one `apply`
    /// built (every real as configured, the state a service returns to once its reals
    /// recover), then the two latest, the latest first. A real that fails and comes back
    /// returns to a table built before, which is then written rather than computed again.
    exact: Vec<(Vec<u32>, Vec<u32>)>,
}

fn weights(svc: &VirtualService) -> Vec<u32> {
    svc.reals.iter().map(|r| r.weight).collect()
}

fn hashed(svc: &VirtualService) -> bool {
    matches!(svc.scheduler, Scheduler::Sh | Scheduler::Dh | Scheduler::Mh)
}

/// One installed service as [`ServiceTable::installed`] lists it.
pub struct InstalledService<'a> {
    pub name: &'a str,
    pub id: u32,
    /// The model as last applied (weights as the checkers last set them).
    pub model: &'a VirtualService,
    /// The real index of each of `model.reals`.
    pub reals: &'a [u32],
    pub sorry: Option<u32>,
}

/// Allocation state of the maps; the maps themselves live in the loaded program.
#[derive(Default)]
pub struct ServiceTable {
    services: HashMap<String, Installed>,
    free_ids: Vec<u32>,
    next_id: u32,
    free_reals: VecDeque<u32>,
    next_real: u32,
    /// Free slot ranges, and ranges waiting out the quarantine.
    free_slots: Vec<Range<u32>>,
    quarantine: Vec<(Instant, Range<u32>)>,
    next_slot: u32,
    vip_refs: HashMap<ServiceKey, u32>,
    /// Service entries found in pinned maps at load, until a service claims them.
    adopted: HashMap<ServiceKey, Service>,
    /// Real entries found in pinned maps at load, by index, until a service claims them.
    adopted_reals: HashMap<u32, Real>,
    /// Removed reals whose index is kept while they still have connections.
    draining: Vec<Draining>,
}

/// A removed real that still serves its connections (IPVS keeps a removed destination until
/// its connections end): its entry stays, marked [`OWNER_DRAINING`], out of every scheduler
/// table, until a sweep finds no flow on it.
struct Draining {
    index: u32,
    /// The id of the service that listed it.
    service: u32,
    addr: IpAddr,
    port: u16,
    since: Instant,
}

/// The address `addr_words` stored.
#[must_use]
pub fn words_addr(words: [u32; 4], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from(words[0].to_ne_bytes())
    } else {
        let mut o = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::from(o)
    }
}

/// An address as the maps store it: network byte order words, IPv4 in the first.
#[must_use]
pub fn addr_words(addr: IpAddr) -> ([u32; 4], u8) {
    match addr {
        IpAddr::V4(a) => ([u32::from_ne_bytes(a.octets()), 0, 0, 0], FAMILY_V4),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], FAMILY_V6)
        }
    }
}

/// The scheduler slots map, mapped into this process (`BPF_F_MMAPABLE`): the memory the XDP
/// program reads. An array map's elements are 8 bytes apart whatever their size
/// (`round_up(value_size, 8)` in the kernel's arraymap.c), so slot `i` is the `u32` at `2 * i`.
pub struct MappedSlots {
    ptr: std::ptr::NonNull<u32>,
    /// Slots.
    len: usize,
}

/// `u32`s per array element in the mapping.
const SLOT_STRIDE: usize = 2;

// SAFETY: the mapping is plain shared memory owned by this value; writers hold `&mut`.
unsafe impl Send for MappedSlots {}

impl MappedSlots {
    /// Maps `entries` slots of the array map `map`; `None` when the map was not created
    /// mappable (one pinned by an older version) or the kernel refuses.
    pub fn new(map: &MapData, entries: u32) -> Option<Self> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let len = usize::try_from(entries).ok()?;
        let bytes = len * SLOT_STRIDE * size_of::<u32>();
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks size and flags.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(Self {
            ptr: std::ptr::NonNull::new(ptr.cast())?,
            len,
        })
    }

    /// Writes `values` to the slots from `start`.
    ///
    /// # Panics
    /// The range lies outside the map (the allocator hands out only ranges inside it).
    pub fn write(&mut self, start: u32, values: &[u32]) {
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        assert!(
            start.saturating_add(values.len()) <= self.len,
            "slots out of range"
        );
        for (i, &v) in values.iter().enumerate() {
            // SAFETY: in bounds (checked above) of a mapping of `len` elements that lives as
            // long as `self`; the XDP program only reads these slots. It reads a new range
            // only after the service entry naming it is written, a system call later; a
            // patch of a live range is one aligned 4-byte store per slot, so a reader sees
            // the old real or the new one, never a mix.
            unsafe {
                self.ptr
                    .as_ptr()
                    .add((start + i) * SLOT_STRIDE)
                    .write_volatile(v);
            };
        }
    }
}

impl Drop for MappedSlots {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe {
            libc::munmap(
                self.ptr.as_ptr().cast(),
                self.len * SLOT_STRIDE * size_of::<u32>(),
            );
        }
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

impl ServiceTable {
    /// Takes over what a previous daemon left in pinned maps: its service entries and reals,
    /// and the ids, real indexes and table slots they hold, so nothing in use is handed out
    /// again. Each service is claimed when `apply` names one of its keys.
    pub fn adopt(&mut self, services: Vec<(ServiceKey, Service)>, reals: Vec<(u32, Real)>) {
        let ids: std::collections::BTreeSet<u32> = services.iter().map(|(_, s)| s.id).collect();
        self.next_id = ids.last().map_or(0, |m| m + 1);
        self.free_ids = (0..self.next_id).filter(|i| !ids.contains(i)).collect();
        let used: std::collections::BTreeSet<u32> = reals.iter().map(|(i, _)| *i).collect();
        self.next_real = used.last().map_or(0, |m| m + 1);
        self.free_reals = (0..self.next_real).filter(|i| !used.contains(i)).collect();
        let mut ranges: Vec<Range<u32>> = services
            .iter()
            .map(|(_, s)| s.table_base..s.table_base + s.table_len)
            .filter(|r| !r.is_empty())
            .collect();
        ranges.sort_by_key(|r| r.start);
        ranges.dedup();
        let mut at = 0;
        for r in &ranges {
            if r.start > at {
                self.free_slots.push(at..r.start);
            }
            at = at.max(r.end);
        }
        self.next_slot = at;
        for (key, _) in &services {
            let vip = ServiceKey {
                addr: key.addr,
                port_be: 0,
                proto: 0,
                family: key.family,
            };
            *self.vip_refs.entry(vip).or_insert(0) += 1;
        }
        self.adopted = services.into_iter().collect();
        let (draining, reals): (Vec<_>, Vec<_>) = reals
            .into_iter()
            .partition(|(_, r)| r.owner & OWNER_DRAINING != 0);
        // Removed reals the previous daemon was draining go on draining.
        self.draining = draining
            .into_iter()
            .map(|(index, r)| Draining {
                index,
                service: (r.owner & !OWNER_DRAINING).saturating_sub(1),
                addr: words_addr(r.addr, r.family),
                port: u16::from_be(r.port_be),
                since: Instant::now(),
            })
            .collect();
        self.adopted_reals = reals.into_iter().collect();
    }

    /// Takes back the index of a real this service is draining, if it lists it again.
    fn undrain(&mut self, service: u32, addr: IpAddr, port: u16) -> Option<u32> {
        let at = self
            .draining
            .iter()
            .position(|d| d.service == service && d.addr == addr && d.port == port)?;
        Some(self.draining.remove(at).index)
    }

    /// The adopted service one of `keys` belongs to, as an installed service whose model
    /// lists only what matching needs (the reals' addresses and ports).
    fn claim_adopted(&mut self, keys: &[ServiceKey]) -> Option<Installed> {
        let service = keys.iter().find_map(|k| self.adopted.get(k).copied())?;
        let id = service.id;
        let old_keys: Vec<ServiceKey> = self
            .adopted
            .iter()
            .filter(|(_, s)| s.id == id)
            .map(|(k, _)| *k)
            .collect();
        for k in &old_keys {
            self.adopted.remove(k);
        }
        let sorry = service.sorry_real.checked_sub(1);
        let mut owned: Vec<(u32, Real)> = self
            .adopted_reals
            .iter()
            .filter(|(i, r)| r.owner == id + 1 && Some(**i) != sorry)
            .map(|(i, r)| (*i, *r))
            .collect();
        owned.sort_by_key(|(i, _)| *i);
        for (i, _) in &owned {
            self.adopted_reals.remove(i);
        }
        if let Some(i) = sorry {
            self.adopted_reals.remove(&i);
        }
        let model = VirtualService {
            vips: Vec::new(),
            port: 0,
            protocol: crate::model::Protocol::Tcp,
            scheduler: Scheduler::Rr,
            ops: false,
            hash_port: false,
            persistence: None,
            reals: owned
                .iter()
                .map(|(_, r)| RealServer {
                    addr: words_addr(r.addr, r.family),
                    port: u16::from_be(r.port_be),
                    weight: r.weight,
                    method: Method::Dr,
                    tunnel_source: None,
                    egress: None,
                })
                .collect(),
            sorry_server: None,
        };
        Some(Installed {
            id,
            model,
            keys: old_keys,
            reals: owned.iter().map(|(i, _)| *i).collect(),
            sorry,
            table: service.table_base..service.table_base + service.table_len,
            positions: Vec::new(),
            stale: false,
            exact: Vec::new(),
        })
    }

    /// Every installed service by name, in name order: its model (weights as last set), its
    /// id, the real index of each of `model.reals`, and the sorry server's index.
    pub fn installed(&self) -> Vec<InstalledService<'_>> {
        let mut out: Vec<_> = self
            .services
            .iter()
            .map(|(name, s)| InstalledService {
                name,
                id: s.id,
                model: &s.model,
                reals: &s.reals,
                sorry: s.sorry,
            })
            .collect();
        out.sort_by_key(|s| s.name);
        out
    }

    /// The model a service was last applied with (weights as the checkers last set them).
    pub fn model(&self, service: &str) -> Option<&VirtualService> {
        self.services.get(service).map(|s| &s.model)
    }

    /// The persistence granularity (prefix length) of every persistent service, by id.
    pub fn persistent(&self) -> HashMap<u32, u32> {
        self.services
            .values()
            .filter_map(|s| s.model.persistence.map(|p| (s.id, u32::from(p.prefix))))
            .collect()
    }

    /// Every real index in use, sorry servers included.
    pub fn real_indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.services
            .values()
            .flat_map(|s| s.reals.iter().copied().chain(s.sorry))
    }

    /// The real a new connection from `client`, `client_port` would be given by a source-hash
    /// scheduler (sh, mh), computed the way the XDP program does; `None` for other
    /// schedulers, an unknown service or an empty table. Tests and `balancer` tooling use it to
    /// say where a flow goes.
    pub fn predict(&self, service: &str, client: IpAddr, client_port: u16) -> Option<&RealServer> {
        let s = self.services.get(service)?;
        let len = u32::try_from(s.positions.len()).ok().filter(|&l| l > 0)?;
        let (src, _) = addr_words(client);
        let hash = match s.model.scheduler {
            Scheduler::Sh | Scheduler::Mh => {
                let port = if s.model.hash_port {
                    client_port.to_be()
                } else {
                    0
                };
                balancer_common::hash::addr_hash(&src, port)
            }
            _ => return None,
        };
        let position = s.positions[(hash % len) as usize];
        s.model.reals.get(position as usize)
    }

    /// The per-service index (stats, cursors) of a service.
    pub fn service_id(&self, service: &str) -> Option<u32> {
        self.services.get(service).map(|s| s.id)
    }

    /// The index of a service's real.
    pub fn real_index(&self, service: &str, addr: IpAddr, port: u16) -> Option<u32> {
        let s = self.services.get(service)?;
        let pos = s
            .model
            .reals
            .iter()
            .position(|r| r.addr == addr && r.port == port)?;
        s.reals.get(pos).copied()
    }

    fn alloc_id(&mut self) -> Result<u32, DataplaneError> {
        if let Some(id) = self.free_ids.pop() {
            return Ok(id);
        }
        if self.next_id >= MAX_SERVICES {
            return Err(DataplaneError::Full {
                what: "services",
                limit: MAX_SERVICES,
            });
        }
        self.next_id += 1;
        Ok(self.next_id - 1)
    }

    fn alloc_real(&mut self) -> Result<u32, DataplaneError> {
        if self.next_real < MAX_REALS {
            self.next_real += 1;
            return Ok(self.next_real - 1);
        }
        self.free_reals.pop_front().ok_or(DataplaneError::Full {
            what: "reals",
            limit: MAX_REALS,
        })
    }

    fn alloc_slots(&mut self, len: u32) -> Result<Range<u32>, DataplaneError> {
        match self.try_alloc_slots(len) {
            // Full while tables wait out their quarantine: wait for the oldest, once.
            Err(DataplaneError::Full { .. }) if !self.quarantine.is_empty() => {
                let oldest = self.quarantine.iter().map(|(at, _)| *at).min();
                if let Some(at) = oldest {
                    std::thread::sleep(QUARANTINE.saturating_sub(at.elapsed()));
                }
                self.try_alloc_slots(len)
            }
            other => other,
        }
    }

    fn try_alloc_slots(&mut self, len: u32) -> Result<Range<u32>, DataplaneError> {
        let now = Instant::now();
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .quarantine
            .drain(..)
            .partition(|(at, _)| now.duration_since(*at) >= QUARANTINE);
        self.quarantine = waiting;
        self.free_slots.extend(ready.into_iter().map(|(_, r)| r));
        // Neighbouring free ranges join, so tables of changing sizes do not fragment the
        // slots until nothing fits; a free range at the end gives its slots back.
        self.free_slots.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u32>> = Vec::with_capacity(self.free_slots.len());
        for r in self.free_slots.drain(..) {
            match merged.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => merged.push(r),
            }
        }
        if merged.last().is_some_and(|r| r.end == self.next_slot)
            && let Some(r) = merged.pop()
        {
            self.next_slot = r.start;
        }
        self.free_slots = merged;
        if len == 0 {
            return Ok(0..0);
        }
        if let Some(i) = self.free_slots.iter().position(|r| r.len() >= len as usize) {
            let r = self.free_slots.swap_remove(i);
            if r.end - r.start > len {
                self.free_slots.push(r.start + len..r.end);
            }
            return Ok(r.start..r.start + len);
        }
        if MAX_SCHED_SLOTS - self.next_slot < len {
            return Err(DataplaneError::Full {
                what: "scheduler table slots",
                limit: MAX_SCHED_SLOTS,
            });
        }
        self.next_slot += len;
        Ok(self.next_slot - len..self.next_slot)
    }

    fn release_slots(&mut self, r: Range<u32>) {
        if !r.is_empty() {
            self.quarantine.push((Instant::now(), r));
        }
    }
}

fn real_entry(r: &RealServer, service_id: u32) -> Real {
    let (addr, family) = addr_words(r.addr);
    let egress = r.egress.unwrap_or(crate::model::Egress {
        ifindex: 0,
        dmac: [0; 6],
        smac: [0; 6],
    });
    Real {
        addr,
        port_be: r.port.to_be(),
        method: match r.method {
            Method::Dr => method::DR,
            Method::Tun => method::TUN,
            Method::Nat => method::NAT,
        },
        family,
        weight: r.weight,
        ifindex: egress.ifindex,
        dmac: egress.dmac,
        smac: egress.smac,
        tun_src: r.tunnel_source.map_or([0; 4], |a| addr_words(a).0),
        owner: service_id + 1,
    }
}

/// The scheduler table of `svc` as positions into `svc.reals`.
fn table_positions(svc: &VirtualService) -> Vec<u32> {
    let weights = weights(svc);
    // Ring positions index `svc.reals`, whose length validate() bounded far below u32::MAX.
    let positions = |v: Vec<usize>| {
        v.into_iter()
            .map(|p| u32::try_from(p).unwrap_or(u32::MAX))
            .collect()
    };
    match svc.scheduler {
        Scheduler::Rr => positions(wrr_ring(
            &weights
                .iter()
                .map(|&w| u32::from(w > 0))
                .collect::<Vec<_>>(),
        )),
        Scheduler::Wrr => positions(wrr_ring(&weights)),
        Scheduler::Sh | Scheduler::Dh | Scheduler::Mh => {
            let ids: Vec<String> = svc
                .reals
                .iter()
                .map(|r| format!("{}:{}", r.addr, r.port))
                .collect();
            let reals: Vec<(&[u8], u32)> = ids
                .iter()
                .zip(&weights)
                .map(|(id, &w)| (id.as_bytes(), w))
                .collect();
            // Sized by the configured reals, not the live ones: a size change would reshuffle
            // every permutation and move nearly every flow when one real drains.
            maglev_table(&reals, maglev_size(svc.reals.len()))
        }
        Scheduler::Lc | Scheduler::Wlc | Scheduler::Sed | Scheduler::Nq => {
            if weights.iter().all(|&w| w == 0) {
                Vec::new()
            } else {
                (0..MAX_LC_REALS.min(u32::try_from(svc.reals.len()).unwrap_or(u32::MAX))).collect()
            }
        }
    }
}

/// The SERVICES entry of `svc` with its scheduler table in `table`.
fn service_entry(svc: &VirtualService, id: u32, table: &Range<u32>, sorry: Option<u32>) -> Service {
    let mut flags = 0;
    if svc.ops {
        flags |= SVC_F_OPS;
    }
    if svc.hash_port {
        flags |= SVC_F_HASH_PORT;
    }
    if svc.persistence.is_some() {
        flags |= SVC_F_PERSIST;
    }
    Service {
        id,
        sched: match svc.scheduler {
            Scheduler::Rr | Scheduler::Wrr => sched::RING,
            Scheduler::Sh | Scheduler::Mh => sched::SOURCE_HASH,
            Scheduler::Dh => sched::DEST_HASH,
            Scheduler::Lc => sched::LC,
            Scheduler::Wlc => sched::WLC,
            Scheduler::Sed => sched::SED,
            Scheduler::Nq => sched::NQ,
        },
        flags,
        table_base: table.start,
        table_len: table.end - table.start,
        sorry_real: sorry.map_or(0, |i| i + 1),
        persist_timeout_s: svc.persistence.map_or(0, |p| p.timeout_s),
        persist_prefix: svc.persistence.map_or(0, |p| u32::from(p.prefix)),
    }
}

fn validate(name: &str, svc: &VirtualService) -> Result<(), DataplaneError> {
    let invalid = |message: String| DataplaneError::Invalid {
        service: name.to_owned(),
        message,
    };
    if svc.vips.is_empty() {
        return Err(invalid("has no virtual address".into()));
    }
    let lc = matches!(
        svc.scheduler,
        Scheduler::Lc | Scheduler::Wlc | Scheduler::Sed | Scheduler::Nq
    );
    if lc && svc.reals.len() > MAX_LC_REALS as usize {
        return Err(invalid(format!(
            "{} reals, but lc/wlc/sed/nq compare at most {MAX_LC_REALS} per connection",
            svc.reals.len()
        )));
    }
    for r in svc.reals.iter().chain(&svc.sorry_server) {
        if r.method == Method::Tun {
            let Some(src) = r.tunnel_source else {
                return Err(invalid(format!(
                    "real {}: TUN needs a tunnel source",
                    r.addr
                )));
            };
            if src.is_ipv4() != r.addr.is_ipv4() {
                return Err(invalid(format!(
                    "real {}: tunnel source {src} is of another address family",
                    r.addr
                )));
            }
        }
    }
    Ok(())
}

impl XdpProgram {
    fn map_mut(&mut self, map: &'static str) -> Result<&mut aya::maps::Map, DataplaneError> {
        self.ebpf
            .map_mut(map)
            .ok_or(DataplaneError::MissingMap { map })
    }

    /// Marks a removed real as draining: its connections go on, nothing new reaches it. A
    /// sweep frees it once it has no flow ([`XdpProgram::release_drained`]).
    fn drain_real(
        &mut self,
        index: u32,
        service: u32,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), DataplaneError> {
        let mut reals: Array<&mut MapData, Real> =
            Array::try_from(self.map_mut(REALS_MAP)?).map_err(map_err(REALS_MAP))?;
        let mut entry = reals.get(&index, 0).map_err(map_err(REALS_MAP))?;
        entry.owner = (service + 1) | OWNER_DRAINING;
        entry.weight = 0;
        reals.set(index, entry, 0).map_err(map_err(REALS_MAP))?;
        self.table.draining.push(Draining {
            index,
            service,
            addr,
            port,
            since: Instant::now(),
        });
        Ok(())
    }

    /// Frees the draining reals that no flow uses any more (`live`: the real indexes of the
    /// live flows at a sweep) and that were removed long enough ago that no packet still
    /// holds a table that listed them. Returns how many were freed.
    ///
    /// # Errors
    /// A map write fails.
    pub fn release_drained(
        &mut self,
        live: &std::collections::HashSet<u32>,
    ) -> Result<usize, DataplaneError> {
        let (done, keep): (Vec<Draining>, Vec<Draining>) = std::mem::take(&mut self.table.draining)
            .into_iter()
            .partition(|d| !live.contains(&d.index) && d.since.elapsed() >= QUARANTINE);
        self.table.draining = keep;
        for d in &done {
            self.free_real(d.index)?;
            tracing::debug!(real = %d.addr, port = d.port, "removed real drained, index freed");
        }
        Ok(done.len())
    }

    /// How many removed reals still serve connections.
    #[must_use]
    pub fn draining(&self) -> usize {
        self.table.draining.len()
    }

    /// Clears a real's entry and hands its index back for reuse.
    fn free_real(&mut self, index: u32) -> Result<(), DataplaneError> {
        self.write_real(index, &Real::default())?;
        self.table.free_reals.push_back(index);
        Ok(())
    }

    fn write_real(&mut self, index: u32, real: &Real) -> Result<(), DataplaneError> {
        let mut reals: Array<&mut MapData, Real> =
            Array::try_from(self.map_mut(REALS_MAP)?).map_err(map_err(REALS_MAP))?;
        reals.set(index, real, 0).map_err(map_err(REALS_MAP))
    }
}

impl Dataplane for XdpProgram {
    fn apply(&mut self, name: &str, svc: &VirtualService) -> Result<(), DataplaneError> {
        validate(name, svc)?;
        let keys: Vec<ServiceKey> = svc
            .vips
            .iter()
            .map(|&vip| {
                let (addr, family) = addr_words(vip);
                ServiceKey {
                    addr,
                    port_be: svc.port.to_be(),
                    proto: svc.protocol.number(),
                    family,
                }
            })
            .collect();
        // A service this daemon installed, or one a previous daemon left in pinned maps.
        let old = match self.table.services.remove(name) {
            Some(o) => Some(o),
            None => self.table.claim_adopted(&keys),
        };
        // On failure the service stays known as it was, so a retry or a removal finds it.
        let result = self.apply_over(name, svc, keys, old.clone());
        if result.is_err()
            && let Some(o) = old
        {
            self.table.services.insert(name.to_owned(), o);
        }
        result
    }

    fn remove(&mut self, name: &str) -> Result<(), DataplaneError> {
        self.remove_installed(name)
    }

    fn set_weight_fast(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError> {
        self.set_real_weight_fast(name, addr, port, weight)
    }

    fn flush(&mut self) -> Result<(), DataplaneError> {
        let mut stale: Vec<String> = self
            .table
            .services
            .iter()
            .filter(|(_, s)| s.stale)
            .map(|(name, _)| name.clone())
            .collect();
        stale.sort();
        // One service that cannot be rebuilt does not hold back the others.
        let mut first_error = None;
        for name in stale {
            if let Err(e) = self.rebuild_table(&name) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl XdpProgram {
    /// `apply` once the previous installation (if any) is known: reals, table, service entry,
    /// then releases of what is no longer used.
    fn apply_over(
        &mut self,
        name: &str,
        svc: &VirtualService,
        keys: Vec<ServiceKey>,
        old: Option<Installed>,
    ) -> Result<(), DataplaneError> {
        let id = match &old {
            Some(o) => o.id,
            None => self.fresh_service_id()?,
        };
        // Reals that stay keep their index; new ones get a fresh one.
        let mut reals = Vec::with_capacity(svc.reals.len());
        for r in &svc.reals {
            let kept = old.as_ref().and_then(|o| {
                o.model
                    .reals
                    .iter()
                    .position(|x| x.addr == r.addr && x.port == r.port)
                    .map(|p| o.reals[p])
            });
            let index = match kept.or_else(|| self.table.undrain(id, r.addr, r.port)) {
                Some(i) => i,
                None => self.fresh_real_index()?,
            };
            self.write_real(index, &real_entry(r, id))?;
            reals.push(index);
        }
        let sorry = match &svc.sorry_server {
            Some(s) => {
                let index = match old.as_ref().and_then(|o| o.sorry) {
                    Some(i) => i,
                    None => self.fresh_real_index()?,
                };
                self.write_real(index, &real_entry(s, id))?;
                Some(index)
            }
            None => None,
        };

        let positions = table_positions(svc);
        let table: Vec<u32> = positions.iter().map(|&p| reals[p as usize]).collect();
        let range = self.write_table(&table)?;
        let exact = if hashed(svc) {
            vec![(weights(svc), positions.clone())]
        } else {
            Vec::new()
        };

        let value = service_entry(svc, id, &range, sorry);
        let dropped: Vec<ServiceKey> = old
            .iter()
            .flat_map(|o| &o.keys)
            .filter(|k| !keys.contains(k))
            .copied()
            .collect();
        if let Err(e) = self.write_service_entries(&keys, value, &dropped) {
            // No entry points at the new table after a failed write: its slots go back.
            self.table.release_slots(range);
            return Err(e);
        }
        let old_keys = old.as_ref().map(|o| o.keys.clone()).unwrap_or_default();
        self.vip_refs_update(&keys, &old_keys)?;

        if let Some(o) = old {
            self.table.release_slots(o.table);
            let gone: Vec<(u32, &RealServer)> = o
                .reals
                .iter()
                .copied()
                .zip(&o.model.reals)
                .filter(|(i, _)| !reals.contains(i) && Some(*i) != sorry)
                .collect();
            for (index, r) in gone {
                self.drain_real(index, o.id, r.addr, r.port)?;
            }
            if let (Some(index), None) = (o.sorry, sorry) {
                self.free_real(index)?;
            }
        }
        self.table.services.insert(
            name.to_owned(),
            Installed {
                id,
                model: svc.clone(),
                keys,
                reals,
                sorry,
                table: range,
                positions,
                stale: false,
                exact,
            },
        );
        Ok(())
    }

    fn remove_installed(&mut self, name: &str) -> Result<(), DataplaneError> {
        let Some(o) = self.table.services.remove(name) else {
            return Err(DataplaneError::UnknownService {
                service: name.to_owned(),
            });
        };
        {
            let mut services: BpfHashMap<&mut MapData, ServiceKey, Service> =
                BpfHashMap::try_from(self.map_mut(SERVICES_MAP)?).map_err(map_err(SERVICES_MAP))?;
            for key in &o.keys {
                services.remove(key).map_err(map_err(SERVICES_MAP))?;
            }
        }
        self.vip_refs_update(&[], &o.keys)?;
        for (&index, r) in o.reals.iter().zip(&o.model.reals) {
            self.drain_real(index, o.id, r.addr, r.port)?;
        }
        if let Some(index) = o.sorry {
            self.free_real(index)?;
        }
        self.table.release_slots(o.table);
        self.table.free_ids.push(o.id);
        Ok(())
    }

    /// [`Dataplane::set_weight_fast`]: the real's entry at once (lc/wlc read its weight
    /// there), and the scheduler table as far as it cannot wait. A ring (rr/wrr) is rebuilt
    /// at once, which is cheap. A hash table (mh/sh/dh) costs milliseconds to rebuild for a
    /// thousand reals, so a real set to 0 is first patched out of the live table in place
    /// (each of its entries takes the next live real's, a few hundred single writes) and the
    /// exact table waits for [`Dataplane::flush`], as does a real set above 0, which misses
    /// nothing meanwhile but new connections.
    fn set_real_weight_fast(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError> {
        let Some(installed) = self.table.services.get_mut(name) else {
            return Err(DataplaneError::UnknownService {
                service: name.to_owned(),
            });
        };
        let Some(position) = installed
            .model
            .reals
            .iter()
            .position(|r| r.addr == addr && r.port == port)
        else {
            return Err(DataplaneError::UnknownReal {
                service: name.to_owned(),
                addr,
                port,
            });
        };
        let previous = installed.model.reals[position].weight;
        if previous == weight {
            return Ok(());
        }
        let real = &mut installed.model.reals[position];
        real.weight = weight;
        let (index, entry) = (installed.reals[position], real_entry(real, installed.id));
        let model = &installed.model;
        let any_live = model.reals.iter().any(|r| r.weight > 0);
        let hashed = hashed(model);
        let mut rebuild_now = match model.scheduler {
            Scheduler::Rr | Scheduler::Wrr => true,
            // The table lists every real whatever its weight, and none while all are at 0.
            Scheduler::Lc | Scheduler::Wlc | Scheduler::Sed | Scheduler::Nq => {
                installed.positions.is_empty() == any_live
            }
            // The sorry server takes over at once when the last real goes; a table built
            // before is written at once.
            Scheduler::Sh | Scheduler::Dh | Scheduler::Mh => {
                let now = weights(model);
                !any_live || installed.exact.iter().any(|(w, _)| *w == now)
            }
        };
        let mut patch = Vec::new();
        if weight == 0 && hashed && !rebuild_now {
            match patch_out(&installed.positions, model, position) {
                Some(p) => patch = p,
                // No entry holds a live real (the live ones came up since the last rebuild).
                None => rebuild_now = true,
            }
        }
        let (table_start, reals) = (installed.table.start, installed.reals.clone());
        let written = (|| {
            self.write_real(index, &entry)?;
            for &(slot, replacement) in &patch {
                self.write_slots(table_start + slot, &[reals[replacement as usize]])?;
            }
            if rebuild_now {
                self.rebuild_table(name)?;
            }
            Ok(())
        })();
        let Some(installed) = self.table.services.get_mut(name) else {
            return written;
        };
        match written {
            Ok(()) => {
                for (slot, replacement) in patch {
                    installed.positions[slot as usize] = replacement;
                }
                installed.stale |= hashed && !rebuild_now;
            }
            Err(e) => {
                // The model says what the maps may not hold: a retry (the same decision
                // again) writes everything anew, and a flush rebuilds the table from the
                // model as it was.
                installed.model.reals[position].weight = previous;
                installed.stale |= hashed;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes the exact scheduler table of an installed service's model into fresh slots
    /// and points its SERVICES entries at them; the old slots are released.
    fn rebuild_table(&mut self, name: &str) -> Result<(), DataplaneError> {
        let Some(installed) = self.table.services.get(name) else {
            return Err(DataplaneError::UnknownService {
                service: name.to_owned(),
            });
        };
        let now = weights(&installed.model);
        let positions = match installed.exact.iter().find(|(w, _)| *w == now) {
            Some((_, p)) => p.clone(),
            None => table_positions(&installed.model),
        };
        let table: Vec<u32> = positions
            .iter()
            .map(|&p| installed.reals[p as usize])
            .collect();
        let (id, sorry, keys) = (installed.id, installed.sorry, installed.keys.clone());
        let range = self.write_table(&table)?;
        let value = {
            let model = &self.table.services[name].model;
            service_entry(model, id, &range, sorry)
        };
        let written = self.write_service_entries(&keys, value, &[]);
        if let Err(e) = written {
            self.table.release_slots(range);
            return Err(e);
        }
        let Some(installed) = self.table.services.get_mut(name) else {
            return Ok(());
        };
        let old = std::mem::replace(&mut installed.table, range);
        if hashed(&installed.model) {
            // The first entry, `apply`'s, stays; the others are the latest two.
            if installed.exact.first().is_none_or(|(w, _)| *w != now) {
                let keep = usize::from(!installed.exact.is_empty());
                installed.exact.retain(|(w, _)| *w != now);
                installed.exact.insert(keep, (now, positions.clone()));
                installed.exact.truncate(keep + 2);
            }
        }
        installed.positions = positions;
        installed.stale = false;
        self.table.release_slots(old);
        Ok(())
    }
}

/// Takes real `gone` (now at weight 0) out of a hash table in place: each of its entries
/// gets the real of the next entry (cyclically) that holds a live one. Returns the changed
/// entries and their new positions (`positions` itself is left for the caller to update
/// once the writes succeed); `None` when no entry holds a live real.
fn patch_out(positions: &[u32], model: &VirtualService, gone: usize) -> Option<Vec<(u32, u32)>> {
    let live = |p: u32| model.reals.get(p as usize).is_some_and(|r| r.weight > 0);
    let len = positions.len();
    // A plain comparison over the table first: the walks below are short, the table is not.
    let target = u32::try_from(gone).unwrap_or(u32::MAX);
    let entries: Vec<usize> = (0..len).filter(|&i| positions[i] == target).collect();
    let mut changed = Vec::with_capacity(entries.len());
    for i in entries {
        // `gone` is not live, so the entry found is one the patch leaves as it is.
        let next = (1..len)
            .map(|step| positions[(i + step) % len])
            .find(|&p| live(p))?;
        changed.push((u32::try_from(i).unwrap_or(u32::MAX), next));
    }
    Some(changed)
}

impl XdpProgram {
    /// A real index with its counters zeroed: a reused index must not inherit another real's
    /// statistics or active connections.
    fn fresh_real_index(&mut self) -> Result<u32, DataplaneError> {
        let index = self.table.alloc_real()?;
        self.zero_per_cpu::<Stats>(REAL_STATS_MAP, index)?;
        let mut active: Array<&mut MapData, u64> =
            Array::try_from(self.map_mut(REAL_ACTIVE_MAP)?).map_err(map_err(REAL_ACTIVE_MAP))?;
        active.set(index, 0, 0).map_err(map_err(REAL_ACTIVE_MAP))?;
        Ok(index)
    }

    /// The same for a service id: statistics and round-robin cursors.
    fn fresh_service_id(&mut self) -> Result<u32, DataplaneError> {
        let id = self.table.alloc_id()?;
        self.zero_per_cpu::<Stats>(SERVICE_STATS_MAP, id)?;
        self.zero_per_cpu::<u32>(RR_CURSOR_MAP, id)?;
        Ok(id)
    }

    fn zero_per_cpu<T: aya::Pod + Default + Clone>(
        &mut self,
        map: &'static str,
        index: u32,
    ) -> Result<(), DataplaneError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Map {
            map,
            source: aya::maps::MapError::IoError(e),
        })?;
        let mut array: PerCpuArray<&mut MapData, T> =
            PerCpuArray::try_from(self.map_mut(map)?).map_err(map_err(map))?;
        let zeros =
            PerCpuValues::try_from(vec![T::default(); cpus]).map_err(|e| DataplaneError::Map {
                map,
                source: aya::maps::MapError::IoError(e),
            })?;
        array.set(index, zeros, 0).map_err(map_err(map))
    }

    /// Removes the services adopted from pinned maps that no `apply` claimed since the load
    /// (they are gone from the configuration); returns how many.
    ///
    /// # Errors
    /// A map write fails.
    pub fn remove_unclaimed(&mut self) -> Result<usize, DataplaneError> {
        let mut removed = 0;
        while let Some(key) = self.table.adopted.keys().next().copied() {
            let Some(installed) = self.table.claim_adopted(&[key]) else {
                break;
            };
            let name = format!("adopted service {}", installed.id);
            self.table.services.insert(name.clone(), installed);
            self.remove(&name)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Points `keys` at `value` in SERVICES and removes `dropped`, all or nothing: when a
    /// write fails (the map is full), the entries already changed get back what they held, so
    /// no key is left pointing at a table the caller is about to release.
    fn write_service_entries(
        &mut self,
        keys: &[ServiceKey],
        value: Service,
        dropped: &[ServiceKey],
    ) -> Result<(), DataplaneError> {
        let mut services: BpfHashMap<&mut MapData, ServiceKey, Service> =
            BpfHashMap::try_from(self.map_mut(SERVICES_MAP)?).map_err(map_err(SERVICES_MAP))?;
        let mut undo: Vec<(ServiceKey, Option<Service>)> = Vec::new();
        let mut result = Ok(());
        let changes = keys
            .iter()
            .map(|k| (k, Some(value)))
            .chain(dropped.iter().map(|k| (k, None)));
        for (key, new) in changes {
            let before = services.get(key, 0).ok();
            let written = match new {
                Some(v) => services.insert(key, v, 0),
                None => services.remove(key),
            };
            if let Err(e) = written {
                result = Err(map_err(SERVICES_MAP)(e));
                break;
            }
            undo.push((*key, before));
        }
        if result.is_err() {
            for (key, before) in undo.into_iter().rev() {
                let restored = match before {
                    Some(v) => services.insert(key, v, 0),
                    None => services.remove(&key),
                };
                if let Err(e) = restored {
                    tracing::error!(?key, error = %e, "could not restore a service entry");
                }
            }
        }
        result
    }

    /// Writes a scheduler table into free slots and returns them.
    fn write_table(&mut self, table: &[u32]) -> Result<Range<u32>, DataplaneError> {
        let full = DataplaneError::Full {
            what: "scheduler table slots",
            limit: MAX_SCHED_SLOTS,
        };
        let len = u32::try_from(table.len()).map_err(|_| full)?;
        let range = self.table.alloc_slots(len)?;
        if let Err(e) = self.write_slots(range.start, table) {
            self.table.release_slots(range);
            return Err(e);
        }
        Ok(range)
    }

    /// Writes `values` to the scheduler slots from `start`.
    fn write_slots(&mut self, start: u32, values: &[u32]) -> Result<(), DataplaneError> {
        // The slots are mapped into our memory (a Maglev table of 1,000 reals has 131,071
        // slots); only a map pinned by a build without the mapping is written slot by slot.
        if let Some(slots) = &mut self.slots {
            slots.write(start, values);
            return Ok(());
        }
        let map = self.map_mut(SCHED_SLOTS_MAP)?;
        let mut slots: Array<&mut MapData, u32> =
            Array::try_from(map).map_err(map_err(SCHED_SLOTS_MAP))?;
        for (slot, real) in (start..).zip(values) {
            slots.set(slot, real, 0).map_err(map_err(SCHED_SLOTS_MAP))?;
        }
        Ok(())
    }

    /// Keeps the VIPS map (is this address a VIP at all?) in step with the service keys.
    fn vip_refs_update(
        &mut self,
        added: &[ServiceKey],
        removed: &[ServiceKey],
    ) -> Result<(), DataplaneError> {
        let vip = |k: &ServiceKey| ServiceKey {
            addr: k.addr,
            port_be: 0,
            proto: 0,
            family: k.family,
        };
        let map = self
            .ebpf
            .map_mut(VIPS_MAP)
            .ok_or(DataplaneError::MissingMap { map: VIPS_MAP })?;
        let mut vips: BpfHashMap<&mut MapData, ServiceKey, u32> =
            BpfHashMap::try_from(map).map_err(map_err(VIPS_MAP))?;
        for k in added {
            let n = self.table.vip_refs.entry(vip(k)).or_insert(0);
            *n += 1;
            vips.insert(vip(k), *n, 0).map_err(map_err(VIPS_MAP))?;
        }
        for k in removed {
            let v = vip(k);
            let n = self.table.vip_refs.entry(v).or_insert(1);
            *n -= 1;
            if *n == 0 {
                self.table.vip_refs.remove(&v);
                vips.remove(&v).map_err(map_err(VIPS_MAP))?;
            } else {
                vips.insert(v, *n, 0).map_err(map_err(VIPS_MAP))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceTable;

    #[test]
    fn free_slot_ranges_merge_and_return_to_the_end() {
        let mut t = ServiceTable {
            next_slot: 40,
            ..ServiceTable::default()
        };
        t.free_slots = vec![10..20, 0..10, 30..40];
        // A request that fits nowhere before the merge: 0..20 is one range after it.
        assert_eq!(t.alloc_slots(15).unwrap(), 0..15);
        assert_eq!(t.free_slots, vec![15..20]);
        assert_eq!(t.next_slot, 30, "the free range at the end went back");
    }

    /// A service rewriting its table many times a second must not find every slot in
    /// quarantine: allocation waits for the oldest table to come out instead of failing.
    #[test]
    fn a_full_table_space_waits_out_the_quarantine() {
        use balancer_common::maps::MAX_SCHED_SLOTS;
        let mut t = ServiceTable::default();
        let all = t.alloc_slots(MAX_SCHED_SLOTS).unwrap();
        assert!(t.alloc_slots(1).is_err(), "every slot in use");
        t.release_slots(all);
        assert_eq!(t.alloc_slots(1).unwrap(), 0..1, "after the quarantine");
    }
}
