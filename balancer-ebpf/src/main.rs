//! The balancer XDP program.
//!
//! For now it classifies every frame by protocol and counts it per CPU, then passes it to the
//! kernel. Each header is bounds-checked through [`ptr_at`] before it is read.
#![no_std]
#![no_main]
#![expect(
    clippy::inline_always,
    reason = "packet pointers must stay in one function for the verifier, and BPF calls cost"
)]

mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use balancer_common::ProtoCounter;

/// One `u64` per [`ProtoCounter`], per CPU.
#[map(name = "PROTO_COUNTERS")]
static PROTO_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ProtoCounter::COUNT, 0);

#[inline(always)]
fn count(counter: ProtoCounter) {
    if let Some(slot) = PROTO_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot is only written by this CPU, and XDP programs do not nest.
        unsafe { *slot += 1 };
    }
}

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn balancer(ctx: XdpContext) -> u32 {
    count(ProtoCounter::Frames);
    let class = parse::classify(&ctx, count);
    count(class);
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
