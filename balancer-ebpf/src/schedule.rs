//! Choosing a real for a new connection, from the tables userspace builds.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use balancer_common::{
    Reason,
    hash::addr_hash,
    maps::{
        MAX_LC_REALS, Persist, PersistKey, SVC_F_HASH_PORT, SVC_F_PERSIST, Service, conn_count,
        persist_mask, sched,
    },
};

use crate::{maps, parse::Headers};

/// The real index for a new connection to `s`: the persistence template's real while it
/// lives, else the scheduler's choice, else the sorry server.
#[inline(always)]
pub fn new_connection(h: &Headers, s: &Service, now: u64) -> Result<u32, Reason> {
    if s.flags & SVC_F_PERSIST == 0 {
        return pick(h, s);
    }
    let key = PersistKey {
        client: persist_mask(&h.src, h.family, s.persist_prefix),
        service: s.id,
    };
    let timeout = u64::from(s.persist_timeout_s) * 1_000_000_000;
    if let Some(p) = maps::persist_mut(&key) {
        // SAFETY: from a successful lookup; a racing refresh only loses a timestamp.
        let p = unsafe { &mut *p };
        // IPVS keeps sending a live template's clients to a quiescent (weight 0) real; only a
        // removed real breaks the template.
        // A template to the sorry server lapses once a real is back (keepalived then removes
        // the sorry server); one to a reused index belongs to another service.
        let to_sorry = s.table_len > 0 && p.real + 1 == s.sorry_real;
        let alive = maps::real(p.real).is_some_and(|r| r.owner == s.id + 1);
        if now.saturating_sub(p.last_seen_ns) <= timeout && alive && !to_sorry {
            p.last_seen_ns = now;
            return Ok(p.real);
        }
    }
    let real = pick(h, s)?;
    maps::insert_persist(
        &key,
        &Persist {
            real,
            _pad: 0,
            last_seen_ns: now,
        },
    );
    Ok(real)
}

#[inline(always)]
fn pick(h: &Headers, s: &Service) -> Result<u32, Reason> {
    let len = s.table_len;
    if len == 0 {
        return if s.sorry_real != 0 {
            Ok(s.sorry_real - 1)
        } else {
            Err(Reason::DropNoReal)
        };
    }
    let index = match s.sched {
        sched::RING => {
            let cursor = maps::rr_cursor(s.id).ok_or(Reason::DropBadTable)?;
            // SAFETY: per-CPU slot; XDP programs do not nest.
            let c = unsafe { &mut *cursor };
            let i = *c % len;
            *c = i + 1;
            i
        }
        sched::SOURCE_HASH => {
            let port = if s.flags & SVC_F_HASH_PORT != 0 {
                h.sport
            } else {
                0
            };
            addr_hash(&h.src, port) % len
        }
        sched::DEST_HASH => addr_hash(&h.dst, 0) % len,
        _ => return least_connections(s),
    };
    maps::slot(s.table_base + index).ok_or(Reason::DropBadTable)
}

/// State of one least-connection scan, passed to the `bpf_loop` callback.
#[repr(C)]
struct LcScan {
    base: u32,
    sched: u32,
    /// Real index + 1 of the best so far; 0 = none yet.
    best: u32,
    _pad: u32,
    best_cost: u64,
    best_weight: u64,
}

/// lc, wlc, sed and nq over the reals listed in the service's table, with IPVS's formulas: lc
/// and wlc weigh active × 256 + inactive connections (`ip_vs_dest_conn_overhead`), sed and nq
/// active + 1, and nq takes an idle real at once. The scan runs under `bpf_loop`, so the
/// verifier checks its body once instead of once per real.
#[inline(always)]
fn least_connections(s: &Service) -> Result<u32, Reason> {
    let mut scan = LcScan {
        base: s.table_base,
        sched: s.sched,
        best: 0,
        _pad: 0,
        best_cost: 0,
        best_weight: 0,
    };
    let n = s.table_len.min(MAX_LC_REALS);
    // SAFETY: `lc_step` has the callback signature bpf_loop expects and only reads and writes
    // the `LcScan` it is given, which lives on this stack for the whole call.
    unsafe {
        bpf_loop(n, lc_step as *mut c_void, (&raw mut scan).cast(), 0);
    }
    if scan.best == 0 {
        Err(Reason::DropNoReal)
    } else {
        Ok(scan.best - 1)
    }
}

/// One real of a least-connection scan; returns 1 to stop early (nq found an idle real).
extern "C" fn lc_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `least_connections` gave it.
    let scan = unsafe { &mut *ctx.cast::<LcScan>() };
    let Some(index) = maps::slot(scan.base.wrapping_add(i as u32)) else {
        return 1;
    };
    let Some(real) = maps::real(index) else {
        return 0;
    };
    if real.weight == 0 {
        return 0;
    }
    let weight = u64::from(real.weight);
    let counts = maps::active(index);
    let active = conn_count::active(counts);
    // nq: a real without active connections wins at once.
    if scan.sched == sched::NQ && active == 0 {
        scan.best = index + 1;
        return 1;
    }
    let cost = if scan.sched == sched::SED || scan.sched == sched::NQ {
        active + 1
    } else {
        conn_count::overhead(counts)
    };
    let better = if scan.best == 0 {
        true
    } else if scan.sched == sched::LC {
        // lc ignores weights.
        cost < scan.best_cost
    } else {
        // cost / weight < best_cost / best_weight, without division.
        cost * scan.best_weight < scan.best_cost * weight
    };
    if better {
        scan.best = index + 1;
        scan.best_cost = cost;
        scan.best_weight = weight;
    }
    0
}
