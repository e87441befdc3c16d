//! Header parsing: Ethernet (with up to two 802.1Q / 802.1ad tags), IPv4, IPv6 (skipping
//! extension headers), TCP and UDP, into the [`Headers`] the forwarding path needs.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use balancer_common::{
    ProtoCounter,
    maps::{FAMILY_V4, FAMILY_V6},
};

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
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
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
///
/// The offset is bounded first: offsets read back from memory (a `Headers` passed to another
/// BPF function) are unknown scalars to the verifier, which refuses packet pointer arithmetic
/// with them until they have a range.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    const MAX_OFFSET: usize = 0x3fff;
    if offset > MAX_OFFSET {
        return None;
    }
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// A mutable pointer to a `T` at `offset` in the frame, bounds-checked like [`ptr_at`].
#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, offset).map(<*const T>::cast_mut)
}

/// Bytes of the frame that `ptr_at` checked, read in place: indexing loads one byte from the
/// packet instead of copying the whole header onto the 512-byte BPF stack.
#[derive(Clone, Copy)]
pub struct View<const N: usize>(pub *const [u8; N]);

impl<const N: usize> core::ops::Index<usize> for View<N> {
    type Output = u8;

    #[inline(always)]
    fn index(&self, i: usize) -> &u8 {
        // SAFETY: the pointer came from ptr_at, which checked that all N bytes lie inside the
        // frame; indexing past N panics like any array access.
        unsafe { &(*self.0)[i] }
    }
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

/// `Headers::fragment`.
pub const NOT_FRAGMENT: u8 = 0;
pub const FIRST_FRAGMENT: u8 = 1;
pub const LATER_FRAGMENT: u8 = 2;

/// What the forwarding path needs from a frame's headers.
pub struct Headers {
    /// The protocol counter this frame increments (exactly one class per frame).
    pub class: ProtoCounter,
    /// `FAMILY_V4`, `FAMILY_V6`, or 0 when not IP (or malformed before the IP header).
    pub family: u8,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the L4 header (meaningless for a later fragment).
    pub l4: usize,
    pub proto: u8,
    pub fragment: u8,
    /// Addresses as in the packet (network byte order); IPv4 in `[0]`.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Ports as in the packet (network byte order); 0 unless TCP or UDP.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub tcp_flags: u8,
}

impl Headers {
    pub const fn new(class: ProtoCounter) -> Self {
        Self {
            class,
            family: 0,
            l3: 0,
            l4: 0,
            proto: 0,
            fragment: NOT_FRAGMENT,
            src: [0; 4],
            dst: [0; 4],
            sport: 0,
            dport: 0,
            tcp_flags: 0,
        }
    }
}

/// Parses the frame. `mark` is called for the counters seen on the way (VLAN, IP family), so
/// that one frame increments exactly one class counter, `Headers::class`. A BPF function of
/// its own: the header copies it makes stay out of the main frame.
#[inline(always)]
pub fn parse(ctx: &XdpContext, h: &mut Headers, mark: impl Fn(ProtoCounter)) {
    h.class = ProtoCounter::Truncated;
    let Some(mut ethertype) = read_be16(ctx, 12) else {
        return;
    };
    let mut l3 = ETH_HLEN;
    let mut tagged = false;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        tagged = true;
        let Some(inner) = read_be16(ctx, l3 + 2) else {
            return;
        };
        ethertype = inner;
        l3 += VLAN_HLEN;
    }
    if tagged {
        mark(ProtoCounter::Vlan);
    }
    match ethertype {
        ETH_P_IP => ipv4(ctx, h, l3, mark),
        ETH_P_IPV6 => ipv6(ctx, h, l3, mark),
        ETH_P_ARP => h.class = ProtoCounter::Arp,
        _ => h.class = ProtoCounter::OtherL3,
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, h: &mut Headers, l3: usize, mark: impl Fn(ProtoCounter)) {
    let Some(ip) = ptr_at::<[u8; 20]>(ctx, l3).map(View) else {
        return;
    };
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 {
        return;
    }
    mark(ProtoCounter::Ipv4);
    h.class = ProtoCounter::OtherL4v4;
    h.family = FAMILY_V4;
    h.l3 = l3;
    h.l4 = l3 + ihl;
    h.proto = ip[9];
    h.src[0] = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
    h.dst[0] = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    // A later fragment carries no L4 header: count it by family only.
    if frag & 0x1fff != 0 {
        h.fragment = LATER_FRAGMENT;
        return;
    }
    if frag & 0x2000 != 0 {
        h.fragment = FIRST_FRAGMENT;
    }
    l4(ctx, h, IPPROTO_ICMP, V4);
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, h: &mut Headers, l3: usize, mark: impl Fn(ProtoCounter)) {
    let Some(ip) = ptr_at::<[u8; IPV6_HLEN]>(ctx, l3).map(View) else {
        return;
    };
    if ip[0] >> 4 != 6 {
        return;
    }
    mark(ProtoCounter::Ipv6);
    h.class = ProtoCounter::OtherL4v6;
    h.family = FAMILY_V6;
    h.l3 = l3;
    for i in 0..4 {
        let s = 8 + i * 4;
        let d = 24 + i * 4;
        h.src[i] = u32::from_ne_bytes([ip[s], ip[s + 1], ip[s + 2], ip[s + 3]]);
        h.dst[i] = u32::from_ne_bytes([ip[d], ip[d + 1], ip[d + 2], ip[d + 3]]);
    }
    let mut next = ip[6];
    let mut off = l3 + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some([n, len]) = read2(ctx, off) else {
                    h.class = ProtoCounter::Truncated;
                    return;
                };
                next = n;
                off += (usize::from(len) + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let Some(f) = ptr_at::<[u8; 8]>(ctx, off).map(View) else {
                    h.class = ProtoCounter::Truncated;
                    return;
                };
                h.proto = f[0];
                if u16::from_be_bytes([f[2], f[3]]) & 0xfff8 != 0 {
                    h.fragment = LATER_FRAGMENT;
                    return;
                }
                h.fragment = FIRST_FRAGMENT;
                next = f[0];
                off += 8;
            }
            _ => break,
        }
    }
    h.proto = next;
    h.l4 = off;
    l4(ctx, h, IPPROTO_ICMPV6, V6);
}

/// The four L4 class counters of one address family.
#[derive(Clone, Copy)]
struct Family {
    tcp: ProtoCounter,
    udp: ProtoCounter,
    icmp: ProtoCounter,
}

const V4: Family = Family {
    tcp: ProtoCounter::Tcp4,
    udp: ProtoCounter::Udp4,
    icmp: ProtoCounter::Icmp4,
};
const V6: Family = Family {
    tcp: ProtoCounter::Tcp6,
    udp: ProtoCounter::Udp6,
    icmp: ProtoCounter::Icmp6,
};

/// Fills in the L4 class, ports and TCP flags. `h.class` is already the family's "other".
#[inline(always)]
fn l4(ctx: &XdpContext, h: &mut Headers, icmp: u8, fam: Family) {
    let l4 = h.l4;
    if h.proto == IPPROTO_TCP {
        let Some(t) = ptr_at::<[u8; TCP_MIN_HLEN]>(ctx, l4).map(View) else {
            h.class = ProtoCounter::Truncated;
            return;
        };
        // The data offset must cover at least the fixed header and lie inside the frame.
        let hlen = usize::from(t[12] >> 4) * 4;
        if hlen < TCP_MIN_HLEN || ctx.data() + l4 + hlen > ctx.data_end() {
            h.class = ProtoCounter::Truncated;
            return;
        }
        h.sport = u16::from_ne_bytes([t[0], t[1]]);
        h.dport = u16::from_ne_bytes([t[2], t[3]]);
        h.tcp_flags = t[13];
        h.class = fam.tcp;
    } else if h.proto == IPPROTO_UDP {
        let Some(u) = ptr_at::<[u8; UDP_HLEN]>(ctx, l4).map(View) else {
            h.class = ProtoCounter::Truncated;
            return;
        };
        h.sport = u16::from_ne_bytes([u[0], u[1]]);
        h.dport = u16::from_ne_bytes([u[2], u[3]]);
        h.class = fam.udp;
    } else if h.proto == icmp {
        if ptr_at::<[u8; ICMP_MIN_HLEN]>(ctx, l4).is_none() {
            h.class = ProtoCounter::Truncated;
            return;
        }
        h.class = fam.icmp;
    }
}

/// The flow an ICMP error is about, as the balancer saw it: the error quotes a packet the real
/// sent (VIP -> client), so the quoted source and destination are swapped back.
pub struct Quoted {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// ICMP types that quote the offending packet: destination unreachable (including
/// fragmentation needed), time exceeded and parameter problem (RFC 792); for ICMPv6 also
/// packet too big (RFC 4443 §3).
const ICMP4_ERRORS: [u8; 3] = [3, 11, 12];
const ICMP6_ERRORS: [u8; 4] = [1, 2, 3, 4];
const ICMP_HLEN: usize = 8;

/// The quoted TCP or UDP flow of an ICMP error, or `None` for anything else.
#[inline(always)]
pub fn icmp_quoted(ctx: &XdpContext, h: &Headers) -> Option<Quoted> {
    let [ty, _code] = read2(ctx, h.l4)?;
    let inner = h.l4 + ICMP_HLEN;
    let mut q = Quoted {
        src: [0; 4],
        dst: [0; 4],
        sport: 0,
        dport: 0,
        proto: 0,
    };
    let l4 = if h.family == FAMILY_V4 {
        if !ICMP4_ERRORS.contains(&ty) {
            return None;
        }
        let ip = View(ptr_at::<[u8; 20]>(ctx, inner)?);
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[0] >> 4 != 4 || ihl < 20 {
            return None;
        }
        q.proto = ip[9];
        // Quoted: real (VIP) -> client; the flow is client -> VIP.
        q.dst[0] = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
        q.src[0] = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
        inner + ihl
    } else {
        if !ICMP6_ERRORS.contains(&ty) {
            return None;
        }
        let ip = View(ptr_at::<[u8; IPV6_HLEN]>(ctx, inner)?);
        if ip[0] >> 4 != 6 {
            return None;
        }
        q.proto = ip[6];
        for i in 0..4 {
            let s = 8 + i * 4;
            let d = 24 + i * 4;
            q.dst[i] = u32::from_ne_bytes([ip[s], ip[s + 1], ip[s + 2], ip[s + 3]]);
            q.src[i] = u32::from_ne_bytes([ip[d], ip[d + 1], ip[d + 2], ip[d + 3]]);
        }
        inner + IPV6_HLEN
    };
    if q.proto != IPPROTO_TCP && q.proto != IPPROTO_UDP {
        return None;
    }
    let ports = View(ptr_at::<[u8; 4]>(ctx, l4)?);
    q.dport = u16::from_ne_bytes([ports[0], ports[1]]);
    q.sport = u16::from_ne_bytes([ports[2], ports[3]]);
    Some(q)
}
