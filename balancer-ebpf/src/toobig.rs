//! The answer to a packet the tunnel would make too big: ICMP "fragmentation needed" (IPv4,
//! RFC 792 / RFC 1191) or ICMPv6 "packet too big" (RFC 4443 §3.2) from the VIP back to the
//! client, carrying the tunnel's MTU, as IPVS's `ip_vs_tunnel_xmit` answers. A separate
//! program, tail-called by the balancer with the MTU in `TOO_BIG_MTU`, so that its stack and
//! verification do not add to the balancer's.
//!
//! The reply is built in place: the frame grows at the front by the new IP and ICMP headers,
//! the original IP packet stays where it is as the quote, and the tail is cut to a fixed size
//! (a too-big packet is always longer): 56 quoted bytes for IPv4 (the header and at least
//! 8 bytes beyond), 200 for IPv6 (Katran's sizes). Up to two VLAN tags (802.1Q, 802.1ad) are
//! taken off while the answer is built and put back on it, so it returns on the client's VLAN.

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use balancer_common::Reason;

use crate::{
    forward::ipv4_checksum,
    maps,
    parse::{ptr_at, ptr_at_mut},
};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const V4_QUOTE: usize = 56;
const V6_QUOTE: usize = 200;
/// IPv4 and ICMP headers put in front.
const V4_GROW: usize = 20 + 8;
/// IPv6 and ICMPv6 headers put in front.
const V6_GROW: usize = 40 + 8;
const REPLY_TTL: u8 = 64;

/// Builds and sends the answer; the reason it ends with.
#[inline(always)]
pub fn answer(ctx: &XdpContext) -> Reason {
    let mtu = maps::too_big_mtu();
    // The Ethernet header with room for two tags (a too-big frame is always longer).
    let Some(l2) = ptr_at::<[u8; ETH_HLEN + 2 * VLAN_HLEN]>(ctx, 0) else {
        return Reason::DropTooBig;
    };
    // SAFETY: bounds-checked by ptr_at.
    let l2 = unsafe { *l2 };
    let word = |at: usize| u16::from_be_bytes([l2[at], l2[at + 1]]);
    let vlan = |tpid: u16| tpid == ETH_P_8021Q || tpid == ETH_P_8021AD;
    let tags = match (vlan(word(12)), vlan(word(16))) {
        (false, _) => 0,
        (true, false) => VLAN_HLEN,
        (true, true) => 2 * VLAN_HLEN,
    };
    let ethertype = word(12 + tags);
    let mut eth = [0u8; ETH_HLEN];
    eth[..12].copy_from_slice(&l2[..12]);
    eth[12..].copy_from_slice(&ethertype.to_be_bytes());
    // The tags come off, so the IP header sits right after an untagged Ethernet header.
    // SAFETY: the helper checks the length itself.
    if tags != 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, tags as i32) } != 0 {
        return Reason::DropTooBig;
    }
    let result = match ethertype {
        ETH_P_IP => v4(ctx, &eth, mtu),
        ETH_P_IPV6 => v6(ctx, &eth, mtu),
        _ => None,
    };
    match (result, tags) {
        (Some(reason), 0) => reason,
        (Some(reason), VLAN_HLEN) => retag::<{ 12 + VLAN_HLEN }>(ctx, &l2).unwrap_or(reason),
        (Some(reason), _) => retag::<{ 12 + 2 * VLAN_HLEN }>(ctx, &l2).unwrap_or(reason),
        (None, _) => Reason::DropTooBig,
    }
}

/// Puts the received tags back on the answer, between its addresses and its ethertype: the
/// frame grows by the tags and gets the answer's addresses (the received ones swapped) and
/// the tags in front. `N` is 12 plus the tags' length; `None` when that went well.
#[inline(always)]
fn retag<const N: usize>(ctx: &XdpContext, l2: &[u8; ETH_HLEN + 2 * VLAN_HLEN]) -> Option<Reason> {
    // SAFETY: the helper checks the headroom itself.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -((N - 12) as i32)) } != 0 {
        return Some(Reason::DropTooBig);
    }
    let Some(out) = ptr_at_mut::<[u8; N]>(ctx, 0) else {
        return Some(Reason::DropTooBig);
    };
    let mut h = [0u8; N];
    h[..6].copy_from_slice(&l2[6..12]);
    h[6..12].copy_from_slice(&l2[..6]);
    h[12..].copy_from_slice(&l2[12..N]);
    // SAFETY: bounds-checked by ptr_at_mut.
    unsafe { *out = h };
    None
}

/// The frame's length now.
#[inline(always)]
fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// Grows the frame by `grow` at the front and cuts it to `total`.
#[inline(always)]
fn reshape(ctx: &XdpContext, grow: usize, total: usize) -> Option<()> {
    let before = frame_len(ctx);
    // Only ever shrinks at the tail: the quote must be there already.
    if before + grow < total {
        return None;
    }
    // SAFETY: the helpers check headroom and length themselves and fail rather than overrun.
    unsafe {
        if bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) != 0 {
            return None;
        }
        let cut = (before + grow) as i32 - total as i32;
        if bpf_xdp_adjust_tail(ctx.ctx, -cut) != 0 {
            return None;
        }
    }
    Some(())
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[inline(always)]
fn add_words(sum: &mut u32, bytes: &[u8]) {
    let mut i = 0;
    while i + 1 < bytes.len() {
        *sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
}

/// [`add_words`] over `N` bytes of the frame, read in place (the IPv6 quote would not fit on
/// the stack beside the headers).
#[inline(always)]
fn add_frame_words<const N: usize>(sum: &mut u32, p: *const [u8; N]) {
    let mut i = 0;
    while i + 1 < N {
        // SAFETY: `p` came from ptr_at, which checked all N bytes lie inside the frame.
        let (hi, lo) = unsafe { ((*p)[i], (*p)[i + 1]) };
        *sum += u32::from(u16::from_be_bytes([hi, lo]));
        i += 2;
    }
}

/// Ethernet back where the frame came from: the sender's MAC becomes the destination.
#[inline(always)]
fn reply_eth(out: &mut [u8], eth: &[u8; ETH_HLEN]) {
    out[..6].copy_from_slice(&eth[6..12]);
    out[6..12].copy_from_slice(&eth[..6]);
    out[12..14].copy_from_slice(&eth[12..14]);
}

// Not inlined: each family's answer gets its own stack frame (the IPv6 one alone is ~300
// bytes), and only ctx crosses the call.
#[inline(never)]
fn v4(ctx: &XdpContext, eth: &[u8; ETH_HLEN], mtu: u32) -> Option<Reason> {
    // The original addresses, read before the headers move.
    let ip = ptr_at::<[u8; 20]>(ctx, ETH_HLEN)?;
    // SAFETY: bounds-checked by ptr_at.
    let ip = unsafe { *ip };
    reshape(ctx, V4_GROW, ETH_HLEN + V4_GROW + V4_QUOTE)?;
    let mut h = [0u8; ETH_HLEN + V4_GROW];
    reply_eth(&mut h, eth);
    h[14] = 0x45;
    h[16..18].copy_from_slice(&((V4_GROW + V4_QUOTE) as u16).to_be_bytes());
    h[22] = REPLY_TTL;
    h[23] = 1; // ICMP
    h[26..30].copy_from_slice(&ip[16..20]); // from the VIP
    h[30..34].copy_from_slice(&ip[12..16]); // to the client
    let sum = ipv4_checksum(&h[14..34]);
    h[24..26].copy_from_slice(&sum.to_be_bytes());
    h[34] = 3; // destination unreachable
    h[35] = 4; // fragmentation needed and DF set
    h[40..42].copy_from_slice(&(mtu.min(0xffff) as u16).to_be_bytes());
    let quote = ptr_at::<[u8; V4_QUOTE]>(ctx, ETH_HLEN + V4_GROW)?;
    let mut sum = 0u32;
    add_words(&mut sum, &h[34..42]);
    add_frame_words(&mut sum, quote);
    h[36..38].copy_from_slice(&fold(sum).to_be_bytes());
    let out = ptr_at_mut::<[u8; ETH_HLEN + V4_GROW]>(ctx, 0)?;
    // SAFETY: bounds-checked by ptr_at_mut.
    unsafe { *out = h };
    Some(Reason::TxIcmpTooBig)
}

#[inline(never)]
fn v6(ctx: &XdpContext, eth: &[u8; ETH_HLEN], mtu: u32) -> Option<Reason> {
    let ip = ptr_at::<[u8; 40]>(ctx, ETH_HLEN)?;
    // SAFETY: bounds-checked by ptr_at.
    let ip = unsafe { *ip };
    reshape(ctx, V6_GROW, ETH_HLEN + V6_GROW + V6_QUOTE)?;
    let mut h = [0u8; ETH_HLEN + V6_GROW];
    reply_eth(&mut h, eth);
    let len = (8 + V6_QUOTE) as u16;
    h[14] = 0x60;
    h[18..20].copy_from_slice(&len.to_be_bytes());
    h[20] = 58; // ICMPv6
    h[21] = REPLY_TTL;
    h[22..38].copy_from_slice(&ip[24..40]); // from the VIP
    h[38..54].copy_from_slice(&ip[8..24]); // to the client
    h[54] = 2; // packet too big
    // RFC 8200 §5: no IPv6 link has an MTU below 1280.
    h[58..62].copy_from_slice(&mtu.max(1280).to_be_bytes());
    let quote = ptr_at::<[u8; V6_QUOTE]>(ctx, ETH_HLEN + V6_GROW)?;
    // RFC 4443 §2.3: the checksum covers the pseudo-header too.
    let mut sum = u32::from(len) + 58;
    add_words(&mut sum, &h[22..54]);
    add_words(&mut sum, &h[54..62]);
    add_frame_words(&mut sum, quote);
    h[56..58].copy_from_slice(&fold(sum).to_be_bytes());
    let out = ptr_at_mut::<[u8; ETH_HLEN + V6_GROW]>(ctx, 0)?;
    // SAFETY: bounds-checked by ptr_at_mut.
    unsafe { *out = h };
    Some(Reason::TxIcmpTooBig)
}
