//! The Internet checksum over VRRP messages, with the pseudo-headers VRRPv3 adds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4).
pub const PROTOCOL: u8 = 112;

/// The group keepalived puts in the pseudo-header when it sends its old-style unicast checksum.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// Which bytes a VRRPv3 IPv4 checksum covers. VRRPv2 always covers the VRRP message alone
/// (RFC 3768 §5.3.8) and IPv6 always uses its pseudo-header (RFC 5798 §5.2.8), so the choice
/// only exists for VRRPv3 over IPv4, where keepalived has two non-standard ways.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumMode {
    /// RFC 5798 §5.2.8: the IPv4 pseudo-header with the packet's own source and destination.
    #[default]
    Rfc,
    /// keepalived `old_unicast_checksum` (and what keepalived before 1.3.6 sent): the
    /// pseudo-header as if the packet had gone to 224.0.0.18, even when it was unicast.
    MulticastPseudoHeader,
    /// keepalived `v3_checksum_as_v2`: the VRRP message alone, as in VRRPv2.
    NoPseudoHeader,
}

/// The addresses of the IP header that carried (or will carry) a VRRP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PseudoHeader {
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// Ones' complement sum of `data` (RFC 1071), folded to 16 bits, not yet inverted.
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        acc += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    fold(acc)
}

fn fold(mut acc: u32) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, len: u16) -> u32 {
    let acc = sum(sum(0, &src.octets()), &dst.octets());
    fold(acc + u32::from(PROTOCOL) + u32::from(len))
}

fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, len: u32) -> u32 {
    let acc = sum(sum(0, &src.octets()), &dst.octets());
    // The upper-layer length is 32 bits here (RFC 8200 §8.1).
    fold(acc + (len >> 16) + (len & 0xffff) + u32::from(PROTOCOL))
}

/// The checksum of an upper-layer IPv6 message (RFC 8200 §8.1), for the ICMPv6 neighbour
/// advertisements the I/O layer sends; `message`'s checksum field must read zero.
pub(crate) fn ipv6_upper_layer(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    message: &[u8],
) -> u16 {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let acc = sum(sum(0, &src.octets()), &dst.octets());
    let seed = fold(acc + (len >> 16) + (len & 0xffff) + u32::from(next_header));
    compute(seed, message)
}

/// The starting sum a VRRPv3 checksum adds to the message, or `None` when the addresses are
/// of different families (no valid pseudo-header exists).
pub(crate) fn v3_seed(ph: PseudoHeader, mode: ChecksumMode, message_len: usize) -> Option<u32> {
    match (ph.src, ph.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let len = u16::try_from(message_len).ok()?;
            Some(match mode {
                ChecksumMode::Rfc => pseudo_v4(src, dst, len),
                ChecksumMode::MulticastPseudoHeader => pseudo_v4(src, MULTICAST_V4, len),
                ChecksumMode::NoPseudoHeader => 0,
            })
        }
        // keepalived's variants are IPv4 only; IPv6 always has its pseudo-header.
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            Some(pseudo_v6(src, dst, u32::try_from(message_len).ok()?))
        }
        _ => None,
    }
}

/// The checksum field value for `message` (whose checksum field must read zero), or the value
/// a correct message sums to when its checksum field is filled in: zero.
pub(crate) fn compute(seed: u32, message: &[u8]) -> u16 {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "fold leaves at most 16 bits"
    )]
    let folded = sum(seed, message) as u16;
    !folded
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 §3 worked example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    #[test]
    fn rfc1071_example() {
        assert_eq!(
            compute(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(
            compute(0, &[0x12, 0x34, 0x56]),
            compute(0, &[0x12, 0x34, 0x56, 0x00])
        );
    }

    #[test]
    fn mixed_families_have_no_pseudo_header() {
        let ph = PseudoHeader {
            src: Ipv4Addr::LOCALHOST.into(),
            dst: Ipv6Addr::LOCALHOST.into(),
        };
        assert_eq!(v3_seed(ph, ChecksumMode::Rfc, 12), None);
    }
}
