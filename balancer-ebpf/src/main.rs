//! The balancer XDP program.
//!
//! `XDP hook -> parse -> connection table (established: forward) -> service lookup -> scheduler
//! -> forward -> stats`.
//! Every frame ends in exactly one [`Reason`], which also decides the XDP action, so each
//! early exit is counted.
#![no_std]
#![no_main]
// The BPF target's core has no AtomicU64::fetch_add; the intrinsic lowers to BPF_ATOMIC add.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "atomic_xadd, see above")]
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "lengths and offsets are bounded by the frame (< 64 KiB), helper returns are small"
)]
#![expect(
    clippy::inline_always,
    reason = "packet pointers must stay in one function for the verifier, and BPF calls cost"
)]

mod forward;
mod maps;
mod nat;
mod parse;
mod schedule;
mod toobig;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    macros::xdp,
    programs::XdpContext,
};
use balancer_common::{
    ProtoCounter, Reason,
    maps::{
        FAMILY_V4, FAMILY_V6, Flow, FlowKey, Globals, OWNER_DRAINING, Real, SVC_F_OPS, Service,
        ServiceKey, conn_count, flow_state, method,
    },
};
use parse::{Headers, IPPROTO_TCP, IPPROTO_UDP, NOT_FRAGMENT};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn balancer(ctx: XdpContext) -> u32 {
    maps::count_proto(ProtoCounter::Frames);
    let reason = process(&ctx);
    maps::count_reason(reason);
    match reason {
        Reason::PassNotIp
        | Reason::PassMalformed
        | Reason::PassNoService
        | Reason::PassOtherProto => xdp_action::XDP_PASS,
        Reason::Tx => xdp_action::XDP_TX,
        Reason::Redirect => xdp_action::XDP_REDIRECT,
        _ => xdp_action::XDP_DROP,
    }
}

/// Answers a packet the tunnel would make too big (tail-called by `balancer`).
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn too_big(ctx: XdpContext) -> u32 {
    let reason = toobig::answer(&ctx);
    maps::count_reason(reason);
    if reason == Reason::TxIcmpTooBig {
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_DROP
    }
}

/// Calibrates the packet path's clock: run by userspace through `BPF_PROG_TEST_RUN` on a
/// 16-byte frame, it writes the jiffies count and `CLOCK_MONOTONIC` nanoseconds into it.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn clock(ctx: XdpContext) -> u32 {
    let Some(out) = parse::ptr_at_mut::<[u64; 2]>(&ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: plain helper calls; `out` was bounds-checked (the frame is not 8-byte aligned
    // for the verifier's sake, so it is written unaligned).
    unsafe { out.write_unaligned([bpf_jiffies64(), bpf_ktime_get_ns()]) };
    xdp_action::XDP_PASS
}

#[inline(always)]
fn process(ctx: &XdpContext) -> Reason {
    let mut h = Headers::new(ProtoCounter::Truncated);
    parse::parse(ctx, &mut h, maps::count_proto);
    maps::count_proto(h.class);
    if h.class == ProtoCounter::Truncated {
        return Reason::PassMalformed;
    }
    if h.family == 0 {
        return Reason::PassNotIp;
    }
    if h.fragment != NOT_FRAGMENT {
        // Later fragments carry no ports: a TCP or UDP fragment to a VIP is refused, not
        // half-balanced. Other protocols' fragments are the kernel's, as their whole packets.
        let balanced = h.proto == IPPROTO_TCP || h.proto == IPPROTO_UDP;
        return if balanced && maps::is_vip(&h.dst, h.family) {
            Reason::DropFragment
        } else if balanced {
            Reason::PassNoService
        } else {
            Reason::PassOtherProto
        };
    }
    if h.proto != IPPROTO_TCP && h.proto != IPPROTO_UDP {
        return icmp_error(ctx, &h);
    }
    let now = maps::now_ns();
    let globals = maps::globals();
    let key = FlowKey {
        src: h.src,
        dst: h.dst,
        sport_be: h.sport,
        dport_be: h.dport,
        proto: h.proto,
        family: h.family,
        _pad: [0; 2],
    };
    // An established flow first: its real and service are in the entry, so the common case
    // costs one hash lookup, not two.
    if let Some((index, real, service_id)) = existing_flow(&key, &h, now, &globals) {
        return send_to_real(ctx, &h, service_id, index, &real);
    }
    let Some(service) = lookup_service(&h) else {
        // Not to a service: perhaps a reply from a NAT real on its way back to a client.
        return match nat::reply_origin(&h) {
            Some(origin) => forward::nat_reply(ctx, &h, &origin),
            None => Reason::PassNoService,
        };
    };
    match new_flow(&key, &h, &service, now) {
        Ok((index, real)) => send_to_real(ctx, &h, service.id, index, &real),
        Err(reason) => reason,
    }
}

/// Forwards to the real and counts the packet as its traffic when it actually left.
#[inline(always)]
fn send_to_real(ctx: &XdpContext, h: &Headers, service: u32, index: u32, real: &Real) -> Reason {
    // Measured before forwarding, which may grow the frame.
    let len = (ctx.data_end() - ctx.data()) as u64;
    let reason = forward::forward(ctx, h, real);
    if reason == Reason::Tx || reason == Reason::Redirect {
        maps::add_stats(service, index, len);
    }
    reason
}

/// An ICMP error about a balanced flow goes to the flow's real, which sent the quoted packet
/// (path MTU discovery depends on it); everything else is the kernel's.
#[inline(always)]
fn icmp_error(ctx: &XdpContext, h: &Headers) -> Reason {
    let is_icmp = (h.family == FAMILY_V4 && h.class == ProtoCounter::Icmp4)
        || (h.family == FAMILY_V6 && h.class == ProtoCounter::Icmp6);
    if !is_icmp {
        return Reason::PassOtherProto;
    }
    let Some(q) = parse::icmp_quoted(ctx, h) else {
        return Reason::PassOtherProto;
    };
    let key = FlowKey {
        src: q.src,
        dst: q.dst,
        sport_be: q.sport,
        dport_be: q.dport,
        proto: q.proto,
        family: h.family,
        _pad: [0; 2],
    };
    let Some(flow) = maps::flow_mut(&key) else {
        return Reason::PassOtherProto;
    };
    // SAFETY: from a successful lookup; only read.
    let index = unsafe { (*flow).real };
    // A NAT real would need the quoted packet translated too (as IPVS does); until then the
    // error is the kernel's rather than sent on corrupted.
    let Some(real) = maps::real(index).filter(|r| r.method != method::NAT) else {
        return Reason::PassOtherProto;
    };
    let reason = forward::forward(ctx, h, &real);
    if reason == Reason::Tx || reason == Reason::Redirect {
        maps::count_proto(ProtoCounter::IcmpErrorToReal);
    }
    reason
}

/// The service for this destination: exact (VIP, port, protocol), then the all-port service.
#[inline(always)]
fn lookup_service(h: &Headers) -> Option<Service> {
    let mut key = ServiceKey {
        addr: h.dst,
        port_be: h.dport,
        proto: h.proto,
        family: h.family,
    };
    if let Some(s) = maps::service(&key) {
        return Some(s);
    }
    key.port_be = 0;
    maps::service(&key)
}

/// Schedules a new connection and records it in the flow table (unless one-packet scheduling).
#[inline(always)]
fn new_flow(
    key: &FlowKey,
    h: &Headers,
    service: &Service,
    now: u64,
) -> Result<(u32, Real), Reason> {
    // A mid-stream segment with no flow: evicted from a full table, expired, or opened through
    // another node. Scheduled afresh all the same (sloppy TCP), but counted.
    if h.proto == IPPROTO_TCP && h.tcp_flags & TCP_SYN == 0 {
        maps::count_proto(ProtoCounter::FlowMissMidStream);
    }
    let index = schedule::new_connection(h, service, now)?;
    let real = maps::real(index).ok_or(Reason::DropBadTable)?;
    let state = next_state(flow_state::NEW, h);
    // One-packet scheduling (ops) keeps no state for UDP.
    if service.flags & SVC_F_OPS == 0 || h.proto != IPPROTO_UDP {
        let flow = Flow {
            real: index,
            service: service.id,
            last_seen_ns: now,
            state,
            _pad: 0,
        };
        maps::insert_flow(key, &flow);
    }
    maps::add_stats_conn(service.id, index, state == flow_state::ESTABLISHED);
    Ok((index, real))
}

/// The real of a live flow, refreshing it; `None` when there is none, it has timed out, or its
/// real's index now belongs to another service (the flow is scheduled afresh). A removed real
/// keeps serving its flows while it drains, as IPVS keeps a removed destination's.
#[inline(always)]
fn existing_flow(key: &FlowKey, h: &Headers, now: u64, g: &Globals) -> Option<(u32, Real, u32)> {
    let flow = maps::flow_mut(key)?;
    // SAFETY: the pointer comes from a successful map lookup; a concurrent update of the same
    // flow on another CPU can at worst lose one timestamp or state refresh.
    let f = unsafe { &mut *flow };
    if !g.flow_live(h.proto, f.state, f.last_seen_ns, now) {
        return None;
    }
    // A SYN on a closing flow is a new connection on a reused port: schedule it afresh.
    if f.state == flow_state::CLOSING && h.tcp_flags & TCP_SYN != 0 && h.tcp_flags & TCP_ACK == 0 {
        return None;
    }
    // The index may have been freed and handed to another service's real since. A removed
    // real keeps its index (marked draining) while it has connections, so they go on.
    let real = maps::real(f.real).filter(|r| r.owner & !OWNER_DRAINING == f.service + 1)?;
    f.last_seen_ns = now;
    let state = next_state(f.state, h);
    // The handshake completed: IPVS moves the connection from inactive to active. Only the
    // active count is raised; the sweep takes the stale inactive one back.
    if f.state == flow_state::NEW && state == flow_state::ESTABLISHED {
        maps::count_conn(f.real, conn_count::ACTIVE);
    }
    f.state = state;
    Some((f.real, real, f.service))
}

/// TCP state as far as a one-way (DR, TUN) observer can tell it.
#[inline(always)]
fn next_state(state: u32, h: &Headers) -> u32 {
    if h.proto != IPPROTO_TCP {
        return flow_state::ESTABLISHED;
    }
    if h.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        flow_state::CLOSING
    } else if state == flow_state::NEW && h.tcp_flags & TCP_ACK != 0 && h.tcp_flags & TCP_SYN == 0 {
        flow_state::ESTABLISHED
    } else {
        state
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
