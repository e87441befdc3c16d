//! NAT: the destination rewrite towards the real and the source rewrite of its replies, with
//! checksums updated incrementally (RFC 1624) rather than recomputed.

use aya_ebpf::programs::XdpContext;
use balancer_common::{
    Reason,
    maps::{FAMILY_V4, NatKey, NatOrigin, Real},
};

use crate::{
    maps,
    parse::{Headers, IPPROTO_TCP, IPPROTO_UDP, ptr_at_mut},
};

/// Folds `sum` (a one's complement sum in 32 bits) to 16 bits.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit word.
#[inline(always)]
fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// The same for a run of 16-bit words given as network-order u32s (addresses).
#[inline(always)]
fn update_words(mut check: u16, old: &[u32; 4], new: &[u32; 4], words: usize) -> u16 {
    for i in 0..4 {
        if i >= words {
            break;
        }
        let o = old[i].to_ne_bytes();
        let n = new[i].to_ne_bytes();
        check = update16(
            check,
            u16::from_be_bytes([o[0], o[1]]),
            u16::from_be_bytes([n[0], n[1]]),
        );
        check = update16(
            check,
            u16::from_be_bytes([o[2], o[3]]),
            u16::from_be_bytes([n[2], n[3]]),
        );
    }
    check
}

/// Rewrites one address (source or destination) and port of the packet, fixing the IPv4
/// header checksum and the TCP/UDP checksum (which covers both through the pseudo-header).
#[inline(always)]
fn rewrite(
    ctx: &XdpContext,
    h: &Headers,
    source: bool,
    new_addr: &[u32; 4],
    new_port: u16,
) -> Result<(), Reason> {
    let v4 = h.family == FAMILY_V4;
    let (old_addr, old_port) = if source {
        (&h.src, h.sport)
    } else {
        (&h.dst, h.dport)
    };
    let words = if v4 { 1 } else { 4 };
    // The address in the IP header.
    let addr_off = h.l3
        + if v4 { 12 } else { 8 }
        + if source {
            0
        } else if v4 {
            4
        } else {
            16
        };
    if v4 {
        let a = ptr_at_mut::<[u8; 4]>(ctx, addr_off).ok_or(Reason::PassMalformed)?;
        let c = ptr_at_mut::<[u8; 2]>(ctx, h.l3 + 10).ok_or(Reason::PassMalformed)?;
        // SAFETY: both bounds-checked by ptr_at_mut.
        unsafe {
            *a = new_addr[0].to_ne_bytes();
            let check = update_words(u16::from_be_bytes(*c), old_addr, new_addr, 1);
            *c = check.to_be_bytes();
        }
    } else {
        let a = ptr_at_mut::<[u8; 16]>(ctx, addr_off).ok_or(Reason::PassMalformed)?;
        let mut b = [0u8; 16];
        for i in 0..4 {
            b[i * 4..i * 4 + 4].copy_from_slice(&new_addr[i].to_ne_bytes());
        }
        // SAFETY: bounds-checked by ptr_at_mut.
        unsafe { *a = b };
    }
    // The port, and the L4 checksum over pseudo-header and port.
    let port_off = h.l4 + if source { 0 } else { 2 };
    let check_off = h.l4 + if h.proto == IPPROTO_TCP { 16 } else { 6 };
    let p = ptr_at_mut::<[u8; 2]>(ctx, port_off).ok_or(Reason::PassMalformed)?;
    let c = ptr_at_mut::<[u8; 2]>(ctx, check_off).ok_or(Reason::PassMalformed)?;
    // SAFETY: both bounds-checked by ptr_at_mut.
    unsafe {
        *p = new_port.to_ne_bytes();
        let old_check = u16::from_be_bytes(*c);
        // A UDP/IPv4 checksum of 0 means "none" and stays so (RFC 768).
        if !(h.proto == IPPROTO_UDP && v4 && old_check == 0) {
            let mut check = update_words(old_check, old_addr, new_addr, words);
            check = update16(
                check,
                u16::from_be_bytes(old_port.to_ne_bytes()),
                u16::from_be_bytes(new_port.to_ne_bytes()),
            );
            // UDP sends a computed 0 as 0xffff (RFC 768).
            if h.proto == IPPROTO_UDP && check == 0 {
                check = 0xffff;
            }
            *c = check.to_be_bytes();
        }
    }
    Ok(())
}

/// Client -> VIP becomes client -> real (address and, when the real has one, port), and the
/// way back is remembered for the replies.
#[inline(always)]
pub fn to_real(ctx: &XdpContext, h: &Headers, real: &Real) -> Result<(), Reason> {
    let port = if real.port_be == 0 {
        h.dport
    } else {
        real.port_be
    };
    maps::remember_nat(
        &NatKey {
            real: real.addr,
            client: h.src,
            real_port_be: port,
            client_port_be: h.sport,
            proto: h.proto,
            family: h.family,
            _pad: [0; 2],
        },
        &NatOrigin {
            vip: h.dst,
            vport_be: h.dport,
            _pad: [0; 2],
        },
    );
    rewrite(ctx, h, false, &real.addr, port)
}

/// A reply from a NAT real, if this packet is one: where it must appear to come from.
#[inline(always)]
pub fn reply_origin(h: &Headers) -> Option<NatOrigin> {
    maps::nat_origin(&NatKey {
        real: h.src,
        client: h.dst,
        real_port_be: h.sport,
        client_port_be: h.dport,
        proto: h.proto,
        family: h.family,
        _pad: [0; 2],
    })
}

/// Real -> client becomes VIP -> client.
#[inline(always)]
pub fn from_real(ctx: &XdpContext, h: &Headers, origin: &NatOrigin) -> Result<(), Reason> {
    rewrite(ctx, h, true, &origin.vip, origin.vport_be)
}
