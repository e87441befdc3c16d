//! Sending a packet to its real: DR (new MACs), NAT and TUN (IPIP / IP6IP6), out of the interface
//! it came in on (`XDP_TX`) or another one (redirect).

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_check_mtu_ret::BPF_MTU_CHK_RET_SUCCESS, bpf_fib_lookup as FibParams,
    },
    helpers::{bpf_check_mtu, bpf_fib_lookup, bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use balancer_common::{
    Reason,
    maps::{FAMILY_V4, FAMILY_V6, Real, method},
};

use crate::{
    maps, nat,
    parse::{Headers, ptr_at_mut},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const ETH_HLEN: usize = 14;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const TUN_TTL: u8 = 64;

/// Where a frame leaves: interface and the MACs to write.
struct Egress {
    ifindex: u32,
    dmac: [u8; 6],
    smac: [u8; 6],
}

/// Sends the packet to `real` by its method.
#[inline(always)]
pub fn forward(ctx: &XdpContext, h: &Headers, real: &Real) -> Reason {
    let egress = match egress(ctx, h, real) {
        Ok(e) => e,
        Err(reason) => return reason,
    };
    let written = match real.method {
        method::TUN => encapsulate(ctx, h, real, &egress),
        method::NAT => nat::to_real(ctx, h, real).and_then(|()| write_macs(ctx, &egress)),
        _ => write_macs(ctx, &egress),
    };
    if let Err(reason) = written {
        return reason;
    }
    send(ctx, &egress)
}

/// A reply from a NAT real, rewritten to come from the VIP and routed to the client.
#[inline(always)]
pub fn nat_reply(
    ctx: &XdpContext,
    h: &Headers,
    origin: &balancer_common::maps::NatOrigin,
) -> Reason {
    let q = FibQuery {
        family: h.family,
        dst: h.dst,
        src: origin.vip,
    };
    let egress = match fib(ctx, &q, h) {
        Ok(e) => e,
        Err(reason) => return reason,
    };
    if let Err(reason) = nat::from_real(ctx, h, origin).and_then(|()| write_macs(ctx, &egress)) {
        return reason;
    }
    send(ctx, &egress)
}

/// Out of the ingress interface, or redirected to the egress one.
#[inline(always)]
fn send(ctx: &XdpContext, egress: &Egress) -> Reason {
    // SAFETY: reading the context's ingress interface has no preconditions.
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    if egress.ifindex == ingress {
        Reason::Tx
    } else {
        // SAFETY: a plain helper call; it only records the target for XDP_REDIRECT.
        unsafe { bpf_redirect(egress.ifindex, 0) };
        Reason::Redirect
    }
}

/// The real's egress as userspace resolved it, or the kernel's FIB's answer when it did not.
///
/// The kernel answers FIB lookups only for interfaces with forwarding enabled (whatever the
/// flags); without it the packet is dropped as `drop_fwd_disabled`, and the cure is either
/// `net.ipv4.conf.IF.forwarding=1` or an egress resolved by userspace.
#[inline(always)]
fn egress(ctx: &XdpContext, h: &Headers, real: &Real) -> Result<Egress, Reason> {
    if real.ifindex != 0 {
        return Ok(Egress {
            ifindex: real.ifindex,
            dmac: real.dmac,
            smac: real.smac,
        });
    }
    let q = FibQuery {
        family: real.family,
        dst: real.addr,
        src: if real.method == method::TUN {
            real.tun_src
        } else {
            h.src
        },
    };
    fib(ctx, &q, h)
}

/// What to ask the FIB: the next hop from `src` to `dst`.
struct FibQuery {
    family: u8,
    dst: [u32; 4],
    src: [u32; 4],
}

/// The kernel FIB's next hop towards `dst`.
#[inline(always)]
fn fib(ctx: &XdpContext, q: &FibQuery, h: &Headers) -> Result<Egress, Reason> {
    // SAFETY: an all-zero bpf_fib_lookup is a valid (empty) request.
    let mut p: FibParams = unsafe { core::mem::zeroed() };
    // SAFETY: reading the context's ingress interface has no preconditions.
    p.ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    p.l4_protocol = h.proto;
    p.sport = h.sport;
    p.dport = h.dport;
    if q.family == FAMILY_V6 {
        p.family = AF_INET6;
        p.__bindgen_anon_4.ipv6_dst = q.dst;
        p.__bindgen_anon_3.ipv6_src = q.src;
    } else {
        p.family = AF_INET;
        p.__bindgen_anon_4.ipv4_dst = q.dst[0];
        p.__bindgen_anon_3.ipv4_src = q.src[0];
    }
    // SAFETY: `p` is a properly sized, initialised bpf_fib_lookup on this stack.
    let rc =
        unsafe { bpf_fib_lookup(ctx.ctx.cast(), &raw mut p, size_of::<FibParams>() as i32, 0) };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(Egress {
            ifindex: p.ifindex,
            dmac: p.dmac,
            smac: p.smac,
        }),
        BPF_FIB_LKUP_RET_NO_NEIGH => Err(Reason::DropNoNeighbour),
        BPF_FIB_LKUP_RET_FWD_DISABLED => Err(Reason::DropFwdDisabled),
        _ => Err(Reason::DropNoRoute),
    }
}

#[inline(always)]
fn write_macs(ctx: &XdpContext, e: &Egress) -> Result<(), Reason> {
    let eth = ptr_at_mut::<[u8; 12]>(ctx, 0).ok_or(Reason::PassMalformed)?;
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&e.dmac);
    macs[6..].copy_from_slice(&e.smac);
    // SAFETY: bounds-checked by ptr_at_mut.
    unsafe { *eth = macs };
    Ok(())
}

/// Wraps the IP packet in an outer IPv4 (IPIP) or IPv6 (IP6IP6) header to the real. VLAN tags
/// of the incoming frame are not carried over: the outer frame is plain Ethernet.
#[inline(always)]
fn encapsulate(ctx: &XdpContext, h: &Headers, real: &Real, e: &Egress) -> Result<(), Reason> {
    // The inner packet's own length (Ethernet padding after it stays outside the count), and
    // its DF bit, read before the headers move.
    let Some(ip) = crate::parse::ptr_at::<[u8; 8]>(ctx, h.l3).map(crate::parse::View) else {
        return Err(Reason::PassMalformed);
    };
    let (inner_len, df) = if h.family == FAMILY_V4 {
        (
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            ip[6] & 0x40 != 0,
        )
    } else {
        (
            usize::from(u16::from_be_bytes([ip[4], ip[5]])) + IPV6_HLEN,
            false,
        )
    };
    let outer_len = if real.family == FAMILY_V6 {
        IPV6_HLEN
    } else {
        IPV4_HLEN
    };
    let grow = (ETH_HLEN + outer_len) as i32 - h.l3 as i32;
    // Checked before the frame grows, so a packet that would not fit is still the client's as
    // it came: IPVS answers it with ICMP fragmentation needed / packet too big carrying the
    // tunnel's MTU (the egress MTU less the outer header), and so do we when the `too_big`
    // program is loaded; otherwise it is dropped and counted.
    let mut mtu_len = 0u32;
    // SAFETY: `mtu_len` is a valid out-pointer; the helper reads the frame length from ctx.
    let mtu = unsafe { bpf_check_mtu(ctx.ctx.cast(), e.ifindex, &raw mut mtu_len, grow, 0) };
    if mtu as u32 != BPF_MTU_CHK_RET_SUCCESS {
        maps::answer_too_big(ctx, mtu_len.saturating_sub(outer_len as u32));
        return Err(Reason::DropTooBig);
    }
    // SAFETY: the helper checks the headroom itself and fails rather than overrun.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return Err(Reason::DropAdjustHead);
    }
    let inner_proto = if h.family == FAMILY_V4 {
        IPPROTO_IPIP
    } else {
        IPPROTO_IPV6
    };
    if real.family == FAMILY_V6 {
        let hdr = ptr_at_mut::<[u8; ETH_HLEN + IPV6_HLEN]>(ctx, 0).ok_or(Reason::DropAdjustHead)?;
        let mut b = [0u8; ETH_HLEN + IPV6_HLEN];
        b[..6].copy_from_slice(&e.dmac);
        b[6..12].copy_from_slice(&e.smac);
        b[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        b[14] = 0x60;
        b[18..20].copy_from_slice(&(inner_len as u16).to_be_bytes());
        b[20] = inner_proto;
        b[21] = TUN_TTL;
        write_words(&mut b[22..38], &real.tun_src);
        write_words(&mut b[38..54], &real.addr);
        // SAFETY: bounds-checked by ptr_at_mut.
        unsafe { *hdr = b };
    } else {
        let hdr = ptr_at_mut::<[u8; ETH_HLEN + IPV4_HLEN]>(ctx, 0).ok_or(Reason::DropAdjustHead)?;
        let mut b = [0u8; ETH_HLEN + IPV4_HLEN];
        b[..6].copy_from_slice(&e.dmac);
        b[6..12].copy_from_slice(&e.smac);
        b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        b[14] = 0x45;
        b[16..18].copy_from_slice(&((IPV4_HLEN + inner_len) as u16).to_be_bytes());
        // The inner packet's DF carries over (as IPVS's tunnels do), so a hop that would have
        // to fragment answers the client's path MTU discovery instead.
        if df {
            b[20] = 0x40;
        }
        b[22] = TUN_TTL;
        b[23] = inner_proto;
        b[26..30].copy_from_slice(&real.tun_src[0].to_ne_bytes());
        b[30..34].copy_from_slice(&real.addr[0].to_ne_bytes());
        let sum = ipv4_checksum(&b[14..34]);
        b[24..26].copy_from_slice(&sum.to_be_bytes());
        // SAFETY: bounds-checked by ptr_at_mut.
        unsafe { *hdr = b };
    }
    Ok(())
}

#[inline(always)]
fn write_words(out: &mut [u8], words: &[u32; 4]) {
    for (i, w) in words.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
}

/// RFC 1071 checksum of a 20-byte IPv4 header whose checksum field is zero.
#[inline(always)]
pub fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < h.len() {
        sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
        i += 2;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
