//! The benchmark floor: swap the Ethernet addresses and send the frame back (`XDP_TX`). Nothing
//! cheaper forwards a packet, so `cargo xtask bench dataplane` reports the balancer beside it.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn floor(ctx: XdpContext) -> u32 {
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
