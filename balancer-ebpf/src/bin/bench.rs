//! Programs for `cargo xtask bench dataplane`, beside the balancer:
//! - `floor`: swap the Ethernet addresses and send the frame back (`XDP_TX`). Nothing cheaper
//!   forwards a packet; the balancer is reported as a multiple of it.
//! - `floor_lookup`: the floor plus one connection-table lookup (an LRU hash with the balancer's
//!   40-byte key), the least any stateful balancer does per packet of an established flow;
//! - `floor_insert`: the floor plus a lookup that misses and an insert into that table, the
//!   least a stateful balancer does for a new flow.
//! - `restore`: a wrapper for `BPF_PROG_TEST_RUN` runs of many iterations. This kernel does not
//!   restore the frame between iterations, so a program that rewrites it (NAT, TUN) would see
//!   its own output again. `restore` puts the original frame back, optionally gives it a fresh
//!   source address and port (so every iteration is a new flow), and tail-calls the program
//!   under test. Its own cost is measured by tail-calling `floor`.
#![no_std]
#![no_main]
#![expect(
    clippy::inline_always,
    reason = "packet pointers must stay in one function for the verifier"
)]
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "frame lengths are below 64 KiB"
)]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_store_bytes},
    macros::{map, xdp},
    maps::{Array, LruHashMap, ProgramArray},
    programs::XdpContext,
};
use balancer_common::maps::{BenchFrame, Flow, FlowKey};

#[map(name = "BENCH_FRAME")]
static BENCH_FRAME: Array<BenchFrame> = Array::with_max_entries(1, 0);
#[map(name = "BENCH_TARGET")]
static BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);
/// Not per-CPU: a run that lands on another CPU than the previous one must not repeat its
/// sources.
#[map(name = "BENCH_SEQ")]
static BENCH_SEQ: Array<u32> = Array::with_max_entries(1, 0);
#[map(name = "BENCH_FLOWS")]
static BENCH_FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(1 << 20, 0);

const ETH_HLEN: usize = 14;

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn floor(ctx: XdpContext) -> u32 {
    swap_macs(&ctx)
}

#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> u32 {
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    let macs = start as *mut [u8; 12];
    // SAFETY: the 12 bytes were bounds-checked above.
    unsafe {
        let m = *macs;
        let mut swapped = [0u8; 12];
        swapped[..6].copy_from_slice(&m[6..]);
        swapped[6..].copy_from_slice(&m[..6]);
        *macs = swapped;
    }
    xdp_action::XDP_TX
}

/// The floor after looking up the IPv4 TCP/UDP flow of the frame (no VLAN, no IP options).
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn floor_lookup(ctx: XdpContext) -> u32 {
    match flow_key(&ctx) {
        Some(key) if BENCH_FLOWS.get_ptr_mut(key).is_some() => swap_macs(&ctx),
        _ => xdp_action::XDP_DROP,
    }
}

/// The floor after recording the frame's flow as new: a lookup that misses, then an insert.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn floor_insert(ctx: XdpContext) -> u32 {
    let Some(key) = flow_key(&ctx) else {
        return xdp_action::XDP_DROP;
    };
    if BENCH_FLOWS.get_ptr_mut(key).is_some()
        || BENCH_FLOWS.insert(key, Flow::default(), 0).is_err()
    {
        return xdp_action::XDP_DROP;
    }
    swap_macs(&ctx)
}

/// The balancer's flow key of an IPv4 TCP/UDP frame without VLAN tags or IP options.
#[inline(always)]
fn flow_key(ctx: &XdpContext) -> Option<FlowKey> {
    let start = ctx.data();
    if start + ETH_HLEN + 24 > ctx.data_end() {
        return None;
    }
    // SAFETY: the IPv4 header and the ports were bounds-checked above.
    let ip = unsafe { &*((start + ETH_HLEN) as *const [u8; 24]) };
    Some(FlowKey {
        src: [
            u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
            0,
            0,
            0,
        ],
        dst: [
            u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
            0,
            0,
            0,
        ],
        sport_be: u16::from_ne_bytes([ip[20], ip[21]]),
        dport_be: u16::from_ne_bytes([ip[22], ip[23]]),
        proto: ip[9],
        family: 4,
        _pad: [0; 2],
    })
}

/// Restores `BENCH_FRAME` (varying its source when asked) and tail-calls `BENCH_TARGET`.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn restore(ctx: XdpContext) -> u32 {
    let Some(frame) = BENCH_FRAME.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a map value, written by userspace before the run and only read here.
    let tmpl = unsafe { &mut *frame };
    let len = tmpl.len as usize;
    if len > tmpl.bytes.len() || len < ETH_HLEN {
        return xdp_action::XDP_ABORTED;
    }
    // What the previous iteration left: a tunnel grew the frame at its head.
    let grown = (ctx.data_end() - ctx.data()) as i64 - len as i64;
    // SAFETY: the helper checks the headroom itself and fails rather than overrun.
    if grown != 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, grown as i32) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    if tmpl.vary != 0
        && let Some(seq) = BENCH_SEQ.get_ptr_mut(0)
    {
        // SAFETY: test runs are the only users, one at a time.
        let next = unsafe {
            *seq = (*seq).wrapping_add(1);
            *seq
        };
        // Source port and the low half of the source address: 2^32 flows before one repeats.
        let [high0, high1, low0, low1] = next.to_be_bytes();
        let (port, addr) = (tmpl.sport_offset as usize, tmpl.saddr_low_offset as usize);
        if let Some(p) = pair(&mut tmpl.bytes, port) {
            *p = [low0, low1];
        }
        if let Some(p) = pair(&mut tmpl.bytes, addr) {
            *p = [high0, high1];
        }
    }
    // SAFETY: `len` is within the map value; the helper checks the frame's bounds.
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, tmpl.bytes.as_mut_ptr().cast(), len as u32) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: the context is this program's; a failed call falls through.
    unsafe { BENCH_TARGET.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// The two bytes at `at`, if they are inside `bytes` (no bounds-check panics in BPF).
#[inline(always)]
fn pair(bytes: &mut [u8; 128], at: usize) -> Option<&mut [u8; 2]> {
    bytes
        .get_mut(at..at.checked_add(2)?)
        .and_then(|s| <&mut [u8; 2]>::try_from(s).ok())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
