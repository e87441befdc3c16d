//! A test real's tunnel end: strips the outer IPv4 (IPIP) or IPv6 (IP6IP6, IPv4-in-IPv6)
//! header of a frame and passes the inner packet to the stack. This kernel has no ipip module,
//! so the TUN network tests run this on their reals.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_adjust_head, macros::xdp, programs::XdpContext,
};

const ETH_HLEN: usize = 14;

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the #[xdp] macro fixes the signature"
)]
pub fn decap(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + ETH_HLEN + 40 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the Ethernet header and 40 more bytes were bounds-checked above.
    let (eth, ethertype, proto_v4, next_v6) = unsafe {
        let p = start as *const u8;
        let eth = *p.cast::<[u8; 12]>();
        let ethertype = u16::from_be_bytes([*p.add(12), *p.add(13)]);
        (eth, ethertype, *p.add(ETH_HLEN + 9), *p.add(ETH_HLEN + 6))
    };
    let (outer, inner_type) = match (ethertype, proto_v4, next_v6) {
        (0x0800, 4, _) => (20, 0x0800u16),
        (0x86dd, _, 41) => (40, 0x86dd),
        (0x86dd, _, 4) => (40, 0x0800),
        _ => return xdp_action::XDP_PASS,
    };
    // SAFETY: the helper checks the frame length itself.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer) } != 0 {
        return xdp_action::XDP_PASS;
    }
    let start = ctx.data();
    if start + ETH_HLEN > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bounds-checked just above.
    unsafe {
        let p = start as *mut u8;
        *p.cast::<[u8; 12]>() = eth;
        let t = inner_type.to_be_bytes();
        *p.add(12) = t[0];
        *p.add(13) = t[1];
    }
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
