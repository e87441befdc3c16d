//! The program's maps and the small accessors the forwarding path uses.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray},
};
use balancer_common::{
    ProtoCounter, Reason,
    maps::{
        BPF_F_MMAPABLE, Clock, DEFAULT_FLOWS, DEFAULT_PERSIST, Flow, FlowKey, Globals, MAX_REALS,
        MAX_SCHED_SLOTS, MAX_SERVICE_KEYS, MAX_SERVICES, NatKey, NatOrigin, Persist, PersistKey,
        Real, Service, ServiceKey, Stats, TAIL_TOO_BIG, conn_count,
    },
};

#[map(name = "PROTO_COUNTERS")]
static PROTO_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ProtoCounter::COUNT, 0);
#[map(name = "REASONS")]
static REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Reason::COUNT, 0);
#[map(name = "SERVICES")]
static SERVICES: HashMap<ServiceKey, Service> = HashMap::with_max_entries(MAX_SERVICE_KEYS, 0);
#[map(name = "VIPS")]
static VIPS: HashMap<ServiceKey, u32> = HashMap::with_max_entries(MAX_SERVICE_KEYS, 0);
#[map(name = "REALS")]
static REALS: Array<Real> = Array::with_max_entries(MAX_REALS, 0);
#[map(name = "SCHED_SLOTS")]
static SCHED_SLOTS: Array<u32> = Array::with_max_entries(MAX_SCHED_SLOTS, BPF_F_MMAPABLE);
#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(DEFAULT_FLOWS, 0);
#[map(name = "PERSIST")]
static PERSIST: LruHashMap<PersistKey, Persist> = LruHashMap::with_max_entries(DEFAULT_PERSIST, 0);
#[map(name = "NAT_REVERSE")]
static NAT_REVERSE: LruHashMap<NatKey, NatOrigin> = LruHashMap::with_max_entries(DEFAULT_FLOWS, 0);
#[map(name = "GLOBALS")]
static GLOBALS: Array<Globals> = Array::with_max_entries(1, 0);
/// The pinned maps' layout version (`balancer_common::maps::LAYOUT_VERSION`), for userspace.
#[map(name = "LAYOUT")]
static LAYOUT: Array<u32> = Array::with_max_entries(1, 0);
#[map(name = "CLOCK")]
static CLOCK: Array<Clock> = Array::with_max_entries(1, 0);
#[map(name = "SERVICE_STATS")]
static SERVICE_STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);
#[map(name = "REAL_STATS")]
static REAL_STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(MAX_REALS, 0);
#[map(name = "RR_CURSOR")]
static RR_CURSOR: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);
#[map(name = "REAL_ACTIVE")]
static REAL_ACTIVE: Array<u64> = Array::with_max_entries(MAX_REALS, 0);
#[map(name = "TAIL_CALLS")]
static TAIL_CALLS: ProgramArray = ProgramArray::with_max_entries(1, 0);
/// The MTU a too-big packet's ICMP answer carries, from the balancer program to `too_big`.
#[map(name = "TOO_BIG_MTU")]
static TOO_BIG_MTU: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Hands the frame to the `too_big` program with `mtu` for its answer; returns only when
/// that program is not loaded (answers off).
#[inline(always)]
pub fn answer_too_big<C: aya_ebpf::EbpfContext>(ctx: &C, mtu: u32) {
    if let Some(slot) = TOO_BIG_MTU.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, and the tail call runs on this CPU.
        unsafe { *slot = mtu };
    }
    // SAFETY: the context is the current program's; a failed call returns here.
    unsafe { TAIL_CALLS.tail_call(ctx, TAIL_TOO_BIG) };
}

/// The MTU `answer_too_big` left for the answer.
#[inline(always)]
pub fn too_big_mtu() -> u32 {
    TOO_BIG_MTU.get(0).copied().unwrap_or(0)
}

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = map.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot is only written by this CPU, and XDP programs do not nest.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn count_proto(counter: ProtoCounter) {
    bump(&PROTO_COUNTERS, counter as u32);
}

#[inline(always)]
pub fn count_reason(reason: Reason) {
    bump(&REASONS, reason as u32);
}

#[inline(always)]
pub fn service(key: &ServiceKey) -> Option<Service> {
    // SAFETY: copied out at once; services are replaced whole by userspace.
    unsafe { SERVICES.get(key).copied() }
}

#[inline(always)]
pub fn is_vip(addr: &[u32; 4], family: u8) -> bool {
    let key = ServiceKey {
        addr: *addr,
        port_be: 0,
        proto: 0,
        family,
    };
    VIPS.get_ptr(key).is_some()
}

#[inline(always)]
pub fn real(index: u32) -> Option<Real> {
    REALS.get(index).copied().filter(|r| r.family != 0)
}

#[inline(always)]
pub fn slot(index: u32) -> Option<u32> {
    SCHED_SLOTS.get(index).copied()
}

#[inline(always)]
pub fn globals() -> Globals {
    GLOBALS.get(0).copied().unwrap_or_default()
}

/// Now, in `CLOCK_MONOTONIC` nanoseconds: from jiffies once userspace has calibrated the
/// clock (see `Clock`), from the clocksource until then.
#[inline(always)]
pub fn now_ns() -> u64 {
    match CLOCK.get(0) {
        // SAFETY: plain helper calls.
        Some(c) if c.jiffy_ns != 0 => c.now_ns(unsafe { bpf_jiffies64() }),
        _ => unsafe { bpf_ktime_get_ns() },
    }
}

#[inline(always)]
pub fn flow_mut(key: &FlowKey) -> Option<*mut Flow> {
    FLOWS.get_ptr_mut(key)
}

#[inline(always)]
pub fn insert_flow(key: &FlowKey, flow: &Flow) {
    // An LRU map makes room by evicting the least recently used flow; failure is not possible
    // short of memory pressure, and then the next packet schedules again.
    let _ = FLOWS.insert(key, flow, 0);
}

#[inline(always)]
pub fn persist_mut(key: &PersistKey) -> Option<*mut Persist> {
    PERSIST.get_ptr_mut(key)
}

#[inline(always)]
pub fn insert_persist(key: &PersistKey, value: &Persist) {
    let _ = PERSIST.insert(key, value, 0);
}

#[inline(always)]
pub fn rr_cursor(service: u32) -> Option<*mut u32> {
    RR_CURSOR.get_ptr_mut(service)
}

#[inline(always)]
pub fn active(real: u32) -> u64 {
    REAL_ACTIVE.get(real).copied().unwrap_or(0)
}

/// Counts a new connection: per-service and per-real `conns`, and the real's connection
/// count (`established`: active, else inactive, as IPVS counts a connection in `SYN_RECV`).
#[inline(always)]
pub fn add_stats_conn(service: u32, real: u32, established: bool) {
    if let Some(s) = SERVICE_STATS.get_ptr_mut(service) {
        // SAFETY: per-CPU slot, see `bump`.
        unsafe { (*s).conns += 1 };
    }
    if let Some(s) = REAL_STATS.get_ptr_mut(real) {
        // SAFETY: per-CPU slot, see `bump`.
        unsafe { (*s).conns += 1 };
    }
    count_conn(
        real,
        if established {
            conn_count::ACTIVE
        } else {
            conn_count::INACTIVE
        },
    );
}

/// Adds `n` (see `conn_count`) to a real's connection counts.
#[inline(always)]
pub fn count_conn(real: u32, n: u64) {
    if let Some(a) = REAL_ACTIVE.get_ptr_mut(real) {
        // SAFETY: shared between CPUs, hence the atomic add (BPF_ATOMIC); userspace recounts
        // it from the connection table as flows establish, close and expire.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(a, n) };
    }
}

#[inline(always)]
pub fn add_stats(service: u32, real: u32, bytes: u64) {
    if let Some(s) = SERVICE_STATS.get_ptr_mut(service) {
        // SAFETY: per-CPU slot, see `bump`.
        unsafe {
            (*s).packets += 1;
            (*s).bytes += bytes;
        }
    }
    if let Some(s) = REAL_STATS.get_ptr_mut(real) {
        // SAFETY: per-CPU slot, see `bump`.
        unsafe {
            (*s).packets += 1;
            (*s).bytes += bytes;
        }
    }
}

#[inline(always)]
pub fn nat_origin(key: &NatKey) -> Option<NatOrigin> {
    // SAFETY: copied out at once.
    unsafe { NAT_REVERSE.get(key).copied() }
}

#[inline(always)]
pub fn remember_nat(key: &NatKey, origin: &NatOrigin) {
    // Already there and the same is the common case: a lookup is cheaper than a rewrite. A
    // different origin (the client reused its port towards another VIP) is replaced.
    // SAFETY: read at once.
    let known = unsafe { NAT_REVERSE.get(key) }
        .is_some_and(|o| o.vip == origin.vip && o.vport_be == origin.vport_be);
    if !known {
        let _ = NAT_REVERSE.insert(key, origin, 0);
    }
}
