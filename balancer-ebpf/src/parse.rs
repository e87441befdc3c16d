//! Header parsing: Ethernet (with up to two 802.1Q / 802.1ad tags), IPv4, IPv6 (skipping
//! extension headers), TCP and UDP.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use balancer_common::ProtoCounter;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const MAX_VLAN_TAGS: usize = 2;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;
const IPV6_HLEN: usize = 40;
/// Extension headers skipped before giving up and counting the packet as "other".
const MAX_IPV6_EXT_HEADERS: usize = 4;

const TCP_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const ICMP_MIN_HLEN: usize = 4;

/// A pointer to a `T` at `offset` in the frame, or `None` when the frame is too short.
/// The one place that bounds-checks packet access, in the form the verifier accepts.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// The two bytes at `offset`.
///
/// There is deliberately no one-byte read: LLVM turns `p + 1 > end` into `p >= end`, and the
/// verifier derives no range from that when `p` has a variable offset, so the access after it
/// is rejected. Every field read here has a neighbour inside the same header.
#[inline(always)]
fn read2(ctx: &XdpContext, offset: usize) -> Option<[u8; 2]> {
    // SAFETY: ptr_at checked that both bytes lie inside the frame; [u8; 2] has alignment 1.
    ptr_at::<[u8; 2]>(ctx, offset).map(|p| unsafe { *p })
}

#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read2(ctx, offset).map(u16::from_be_bytes)
}

/// The class counter for this frame. `mark` is called for the counters that are seen on the
/// way (VLAN, IP family), so that one frame increments exactly one class counter.
#[inline(always)]
pub fn classify(ctx: &XdpContext, mark: impl Fn(ProtoCounter)) -> ProtoCounter {
    let Some(mut ethertype) = read_be16(ctx, 12) else {
        return ProtoCounter::Truncated;
    };
    let mut l3 = ETH_HLEN;
    let mut tagged = false;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        tagged = true;
        let Some(inner) = read_be16(ctx, l3 + 2) else {
            return ProtoCounter::Truncated;
        };
        ethertype = inner;
        l3 += VLAN_HLEN;
    }
    if tagged {
        mark(ProtoCounter::Vlan);
    }
    match ethertype {
        ETH_P_IP => ipv4(ctx, l3, mark),
        ETH_P_IPV6 => ipv6(ctx, l3, mark),
        ETH_P_ARP => ProtoCounter::Arp,
        _ => ProtoCounter::OtherL3,
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize, mark: impl Fn(ProtoCounter)) -> ProtoCounter {
    let (Some([ver_ihl, _tos]), Some(frag), Some([_ttl, proto])) =
        (read2(ctx, l3), read_be16(ctx, l3 + 6), read2(ctx, l3 + 8))
    else {
        return ProtoCounter::Truncated;
    };
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return ProtoCounter::Truncated;
    }
    mark(ProtoCounter::Ipv4);
    // A later fragment carries no L4 header: count it by family only.
    if frag & 0x1fff != 0 {
        return ProtoCounter::OtherL4v4;
    }
    let l4 = l3 + ihl;
    l4_class(ctx, l4, proto, IPPROTO_ICMP, V4)
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize, mark: impl Fn(ProtoCounter)) -> ProtoCounter {
    let (Some([ver, _tc]), Some([mut next, _hop_limit])) = (read2(ctx, l3), read2(ctx, l3 + 6))
    else {
        return ProtoCounter::Truncated;
    };
    if ver >> 4 != 6 || ptr_at::<[u8; IPV6_HLEN]>(ctx, l3).is_none() {
        return ProtoCounter::Truncated;
    }
    mark(ProtoCounter::Ipv6);
    let mut off = l3 + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some([n, len]) = read2(ctx, off) else {
                    return ProtoCounter::Truncated;
                };
                next = n;
                off += (usize::from(len) + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let (Some([n, _reserved]), Some(frag)) = (read2(ctx, off), read_be16(ctx, off + 2))
                else {
                    return ProtoCounter::Truncated;
                };
                if frag & 0xfff8 != 0 {
                    return ProtoCounter::OtherL4v6;
                }
                next = n;
                off += 8;
            }
            _ => break,
        }
    }
    l4_class(ctx, off, next, IPPROTO_ICMPV6, V6)
}

/// The four L4 class counters of one address family.
#[derive(Clone, Copy)]
struct Family {
    tcp: ProtoCounter,
    udp: ProtoCounter,
    icmp: ProtoCounter,
    other: ProtoCounter,
}

const V4: Family = Family {
    tcp: ProtoCounter::Tcp4,
    udp: ProtoCounter::Udp4,
    icmp: ProtoCounter::Icmp4,
    other: ProtoCounter::OtherL4v4,
};
const V6: Family = Family {
    tcp: ProtoCounter::Tcp6,
    udp: ProtoCounter::Udp6,
    icmp: ProtoCounter::Icmp6,
    other: ProtoCounter::OtherL4v6,
};

#[inline(always)]
fn l4_class(ctx: &XdpContext, l4: usize, proto: u8, icmp: u8, fam: Family) -> ProtoCounter {
    let (class, min_len) = match proto {
        IPPROTO_TCP => (fam.tcp, TCP_MIN_HLEN),
        IPPROTO_UDP => (fam.udp, UDP_HLEN),
        p if p == icmp => (fam.icmp, ICMP_MIN_HLEN),
        _ => return fam.other,
    };
    if proto == IPPROTO_TCP {
        // The TCP data offset must cover at least the fixed header and lie inside the frame.
        let Some([doff, _flags]) = read2(ctx, l4 + 12) else {
            return ProtoCounter::Truncated;
        };
        let hlen = usize::from(doff >> 4) * 4;
        if hlen < TCP_MIN_HLEN || ctx.data() + l4 + hlen > ctx.data_end() {
            return ProtoCounter::Truncated;
        }
    }
    if ctx.data() + l4 + min_len > ctx.data_end() {
        return ProtoCounter::Truncated;
    }
    class
}
