//! The connection table and counters seen from userspace: expiry, the active-connection
//! counts that lc, wlc, sed and nq read, and per-service / per-real statistics.
//!
//! The XDP program adds one to a real's active count when it schedules a connection to it; it
//! cannot tell when an entry ends (timeouts are judged lazily, and the LRU evicts silently). So
//! the sweep walks the table, deletes expired entries and writes back the true counts. A count
//! can run ahead of the truth by the connections scheduled between two sweeps.

use std::{
    collections::HashMap,
    net::IpAddr,
    os::fd::{AsFd as _, OwnedFd},
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray};
use balancer_common::maps::{
    FLOWS_MAP, Flow, FlowKey, GLOBALS_MAP, Globals, PERSIST_MAP, Persist, PersistKey,
    REAL_ACTIVE_MAP, REAL_STATS_MAP, SERVICE_STATS_MAP, Stats, conn_count, flow_state,
    persist_mask,
};

use super::{XdpError, XdpProgram};

/// What one sweep found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Entries still live.
    pub live: u64,
    /// Entries deleted because they timed out.
    pub expired: u64,
}

/// A connection table to walk, with how to judge its entries (see
/// [`XdpProgram::sweep_walk`]).
pub struct SweepWalk {
    flows: OwnedFd,
    globals: Globals,
    /// Persistent services: id -> granularity prefix.
    persistent: HashMap<u32, u32>,
}

/// What one walk of the connection table found.
#[derive(Debug, Default)]
pub struct Walked {
    live: u64,
    expired: Vec<FlowKey>,
    /// Real index -> established connections.
    active: HashMap<u32, u64>,
    /// Real index -> connections not (or no longer) established.
    inactive: HashMap<u32, u64>,
    /// The templates live flows keep alive: (template, real) -> latest packet.
    templates: HashMap<(PersistKey, u32), u64>,
}

impl SweepWalk {
    /// Reads the whole table (in batches) and sorts its entries into live and expired.
    ///
    /// # Errors
    /// The table cannot be read.
    pub fn walk(self) -> Result<Walked, XdpError> {
        let now = monotonic_ns();
        let mut w = Walked::default();
        // An entry evicted while we walk is simply not seen.
        super::batch::for_each::<FlowKey, Flow>(self.flows.as_fd(), |key, flow| {
            if !live(key, flow, &self.globals, now) {
                w.expired.push(*key);
                return;
            }
            w.live += 1;
            // IPVS: only an established connection is active (UDP flows are established from
            // their first packet).
            let counts = if flow.state == flow_state::ESTABLISHED {
                &mut w.active
            } else {
                &mut w.inactive
            };
            *counts.entry(flow.real).or_default() += 1;
            if let Some(&prefix) = self.persistent.get(&flow.service) {
                let key = PersistKey {
                    client: persist_mask(&key.src, key.family, prefix),
                    service: flow.service,
                };
                let seen = w.templates.entry((key, flow.real)).or_default();
                *seen = (*seen).max(flow.last_seen_ns);
            }
        })
        .map_err(flows_syscall("bpf_map_lookup_batch"))?;
        Ok(w)
    }
}

/// Now on the packet path's clock (`CLOCK_MONOTONIC`, see `balancer_common::maps::Clock`).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Whether the XDP program would still use this flow at `now` (the same rule as its lookup).
fn live(key: &FlowKey, flow: &Flow, g: &Globals, now: u64) -> bool {
    g.flow_live(key.proto, flow.state, flow.last_seen_ns, now)
}

/// A failed system call on the connection table.
fn flows_syscall(call: &'static str) -> impl Fn(std::io::Error) -> XdpError {
    move |io_error| XdpError::Map {
        map: FLOWS_MAP,
        source: aya::maps::MapError::SyscallError(aya::sys::SyscallError { call, io_error }),
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> XdpError {
    move |source| XdpError::Map { map, source }
}

impl XdpProgram {
    fn globals(&self) -> Result<Globals, XdpError> {
        super::read_single(&self.ebpf, GLOBALS_MAP)
    }

    /// Deletes expired flows and rewrites every real's active-connection count from the live
    /// ones (connections not yet closing, as IPVS's `ActiveConn`): [`Self::sweep_walk`],
    /// [`SweepWalk::walk`] and [`Self::sweep_finish`] in one go.
    ///
    /// # Errors
    /// A map cannot be read or written.
    pub fn sweep(&mut self) -> Result<Sweep, XdpError> {
        let walked = self.sweep_walk()?.walk()?;
        self.sweep_finish(&walked)
    }

    /// What a sweep needs to walk the connection table without this program: the walk takes
    /// a third of a second at a million connections, and the checkers' weight changes must
    /// not wait behind it.
    ///
    /// # Errors
    /// A map cannot be read.
    pub fn sweep_walk(&self) -> Result<SweepWalk, XdpError> {
        let Some(aya::maps::Map::LruHashMap(map)) = self.ebpf.map(FLOWS_MAP) else {
            return Err(XdpError::Missing {
                what: "map",
                name: FLOWS_MAP,
            });
        };
        let flows = map
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(flows_syscall("dup"))?;
        Ok(SweepWalk {
            flows,
            globals: self.globals()?,
            persistent: self.table.persistent(),
        })
    }

    /// Deletes what `walked` found expired (unless a packet revived it since), refreshes the
    /// persistence templates its live flows hold, frees drained reals without flows, and
    /// rewrites the connection counts.
    ///
    /// # Errors
    /// A map cannot be read or written.
    pub fn sweep_finish(&mut self, walked: &Walked) -> Result<Sweep, XdpError> {
        let g = self.globals()?;
        let mut sweep = Sweep {
            live: walked.live,
            expired: 0,
        };
        let map = self.ebpf.map_mut(FLOWS_MAP).ok_or(XdpError::Missing {
            what: "map",
            name: FLOWS_MAP,
        })?;
        let mut flows: BpfHashMap<&mut MapData, FlowKey, Flow> =
            BpfHashMap::try_from(map).map_err(map_err(FLOWS_MAP))?;
        for key in &walked.expired {
            // Looked at again just before: the same client may have opened a new connection
            // on the same ports since the walk, and that one must stay. (A packet landing
            // between this read and the delete is scheduled afresh.) Gone already is fine.
            let still_expired = flows
                .get(key, 0)
                .is_ok_and(|flow| !live(key, &flow, &g, monotonic_ns()));
            if still_expired && flows.remove(key).is_ok() {
                sweep.expired += 1;
            }
        }
        self.refresh_templates(&walked.templates)?;
        let live: std::collections::HashSet<u32> = walked
            .active
            .keys()
            .chain(walked.inactive.keys())
            .copied()
            .collect();
        self.release_drained(&live)?;
        let reals: Vec<u32> = self.table.real_indexes().collect();
        let map = self
            .ebpf
            .map_mut(REAL_ACTIVE_MAP)
            .ok_or(XdpError::Missing {
                what: "map",
                name: REAL_ACTIVE_MAP,
            })?;
        let mut counts: Array<&mut MapData, u64> =
            Array::try_from(map).map_err(map_err(REAL_ACTIVE_MAP))?;
        for index in reals {
            let n = conn_count::pack(
                walked.active.get(&index).copied().unwrap_or(0),
                walked.inactive.get(&index).copied().unwrap_or(0),
            );
            counts.set(index, n, 0).map_err(map_err(REAL_ACTIVE_MAP))?;
        }
        Ok(sweep)
    }

    /// IPVS keeps a persistence template while connections it placed are alive (they hold
    /// it, `n_control`); here a live flow's last packet moves its template's clock forward,
    /// so a client whose connection outlasts `persistence_timeout` keeps its real.
    fn refresh_templates(
        &mut self,
        templates: &HashMap<(PersistKey, u32), u64>,
    ) -> Result<(), XdpError> {
        if templates.is_empty() {
            return Ok(());
        }
        let map = self.ebpf.map_mut(PERSIST_MAP).ok_or(XdpError::Missing {
            what: "map",
            name: PERSIST_MAP,
        })?;
        let mut persist: BpfHashMap<&mut MapData, PersistKey, Persist> =
            BpfHashMap::try_from(map).map_err(map_err(PERSIST_MAP))?;
        for ((key, real), &seen) in templates {
            // A template since replaced (another real) or gone is left alone.
            if let Ok(mut t) = persist.get(key, 0)
                && t.real == *real
                && t.last_seen_ns < seen
            {
                t.last_seen_ns = seen;
                persist.insert(key, t, 0).map_err(map_err(PERSIST_MAP))?;
            }
        }
        Ok(())
    }

    /// A service's counters (packets, bytes, new connections) summed over CPUs, or `None` for
    /// an unknown service.
    ///
    /// # Errors
    /// The map cannot be read.
    pub fn service_stats(&self, service: &str) -> Result<Option<Stats>, XdpError> {
        match self.table.service_id(service) {
            Some(id) => self.stats(SERVICE_STATS_MAP, id).map(Some),
            None => Ok(None),
        }
    }

    /// A real's counters (packets, bytes, new connections) summed over CPUs, or `None` when the
    /// service has no such real.
    ///
    /// # Errors
    /// The map cannot be read.
    pub fn real_stats(
        &self,
        service: &str,
        addr: IpAddr,
        port: u16,
    ) -> Result<Option<Stats>, XdpError> {
        match self.table.real_index(service, addr, port) {
            Some(index) => self.stats(REAL_STATS_MAP, index).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn stats(&self, map: &'static str, index: u32) -> Result<Stats, XdpError> {
        let m = self.ebpf.map(map).ok_or(XdpError::Missing {
            what: "map",
            name: map,
        })?;
        let array: PerCpuArray<&MapData, Stats> = PerCpuArray::try_from(m).map_err(map_err(map))?;
        let per_cpu = array.get(&index, 0).map_err(map_err(map))?;
        Ok(per_cpu.iter().fold(Stats::default(), |sum, s| Stats {
            packets: sum.packets + s.packets,
            bytes: sum.bytes + s.bytes,
            conns: sum.conns + s.conns,
        }))
    }

    /// A real's active connections as the schedulers see them (`ipvsadm -Ln`'s `ActiveConn`),
    /// or `None` when the service has no such real.
    ///
    /// # Errors
    /// The map cannot be read.
    pub fn active_connections(
        &self,
        service: &str,
        addr: IpAddr,
        port: u16,
    ) -> Result<Option<u64>, XdpError> {
        Ok(self
            .connection_counts(service, addr, port)?
            .map(|(active, _)| active))
    }

    /// A real's (active, inactive) connections as the schedulers see them (`ipvsadm -Ln`'s
    /// `ActiveConn` and `InActConn`), or `None` when the service has no such real.
    ///
    /// # Errors
    /// The map cannot be read.
    pub fn connection_counts(
        &self,
        service: &str,
        addr: IpAddr,
        port: u16,
    ) -> Result<Option<(u64, u64)>, XdpError> {
        let Some(index) = self.table.real_index(service, addr, port) else {
            return Ok(None);
        };
        let map = self.ebpf.map(REAL_ACTIVE_MAP).ok_or(XdpError::Missing {
            what: "map",
            name: REAL_ACTIVE_MAP,
        })?;
        let counts: Array<&MapData, u64> =
            Array::try_from(map).map_err(map_err(REAL_ACTIVE_MAP))?;
        counts
            .get(&index, 0)
            .map(|v| Some((conn_count::active(v), conn_count::inactive(v))))
            .map_err(map_err(REAL_ACTIVE_MAP))
    }
}
