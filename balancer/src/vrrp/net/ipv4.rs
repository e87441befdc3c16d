//! The IPv4 header that an IPv4 raw socket hands over in front of every VRRP message.

use std::net::Ipv4Addr;
use std::ops::Range;

use crate::vrrp::checksum::PROTOCOL;

const MIN_HEADER_LEN: usize = 20;

/// What the receive checks need from the IPv4 header, and where the VRRP message lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// The IP payload within the buffer the header was parsed from.
    pub payload: Range<usize>,
}

/// Why a datagram from the raw socket is not an IPv4 VRRP packet we can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{len} bytes are too short for an IPv4 header")]
    Truncated { len: usize },
    #[error("IP version {version}, expected 4")]
    Version { version: u8 },
    #[error("header length {header_len} or total length {total_len} does not fit {len} bytes")]
    Lengths {
        header_len: usize,
        total_len: usize,
        len: usize,
    },
    #[error("IP protocol {protocol}, expected 112 (VRRP) or 51 (AH)")]
    Protocol { protocol: u8 },
}

/// Parses the header at the start of `datagram` (RFC 791 §3.1), which must carry VRRP.
///
/// # Errors
/// The datagram is too short, not IPv4, not VRRP, or its lengths disagree.
pub fn parse(datagram: &[u8]) -> Result<Header, HeaderError> {
    parse_protocol(datagram, PROTOCOL)
}

/// [`parse`] for a datagram of IP protocol `expected` (51 with `auth_type AH`).
///
/// # Errors
/// As [`parse`].
pub fn parse_protocol(datagram: &[u8], expected: u8) -> Result<Header, HeaderError> {
    if datagram.len() < MIN_HEADER_LEN {
        return Err(HeaderError::Truncated {
            len: datagram.len(),
        });
    }
    let version = datagram[0] >> 4;
    if version != 4 {
        return Err(HeaderError::Version { version });
    }
    let header_len = usize::from(datagram[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    // Linux trims link-layer padding before a raw socket sees the datagram, but a total length
    // shorter than what arrived is still honoured rather than trusted the other way round.
    if header_len < MIN_HEADER_LEN || total_len < header_len || total_len > datagram.len() {
        return Err(HeaderError::Lengths {
            header_len,
            total_len,
            len: datagram.len(),
        });
    }
    let protocol = datagram[9];
    if protocol != expected {
        return Err(HeaderError::Protocol { protocol });
    }
    let addr = |at: usize| {
        Ipv4Addr::new(
            datagram[at],
            datagram[at + 1],
            datagram[at + 2],
            datagram[at + 3],
        )
    };
    Ok(Header {
        src: addr(12),
        dst: addr(16),
        ttl: datagram[8],
        payload: header_len..total_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VRRPv3 advert from 198.18.1.2 to 224.0.0.18 as an IPv4 raw socket delivers it; the
    /// checksums are left zero, since this parser does not read them (the kernel checked the
    /// IP header, the receive checks verify the VRRP one).
    const CAPTURED: [u8; 32] = [
        0x45, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0xff, 0x70, 0x00, 0x00, 0xc6, 0x12, 0x01,
        0x02, 0xe0, 0x00, 0x00, 0x12, 0x31, 0x33, 0x64, 0x01, 0x00, 0x14, 0x00, 0x00, 0xc6, 0x12,
        0x01, 0x64,
    ];

    #[test]
    fn parses_a_captured_advert() {
        let h = parse(&CAPTURED).unwrap();
        assert_eq!(h.src, Ipv4Addr::new(198, 18, 1, 2));
        assert_eq!(h.dst, Ipv4Addr::new(224, 0, 0, 18));
        assert_eq!(h.ttl, 255);
        assert_eq!(h.payload, 20..32);
    }

    #[test]
    fn honours_options_and_total_length() {
        let mut d = vec![0x46];
        d.extend_from_slice(&CAPTURED[1..20]);
        d[3] = 36;
        d.extend_from_slice(&[1, 0, 0, 0]);
        d.extend_from_slice(&CAPTURED[20..]);
        d.extend_from_slice(&[0, 0]);
        assert_eq!(parse(&d).unwrap().payload, 24..36);
    }

    #[test]
    fn rejects_what_is_not_ipv4_vrrp() {
        assert_eq!(
            parse(&CAPTURED[..19]),
            Err(HeaderError::Truncated { len: 19 })
        );
        let mut d = CAPTURED;
        d[0] = 0x65;
        assert_eq!(parse(&d), Err(HeaderError::Version { version: 6 }));
        let mut d = CAPTURED;
        d[9] = 6;
        assert_eq!(parse(&d), Err(HeaderError::Protocol { protocol: 6 }));
        let mut d = CAPTURED;
        d[3] = 40;
        assert!(matches!(parse(&d), Err(HeaderError::Lengths { .. })));
        let mut d = CAPTURED;
        d[0] = 0x44;
        assert!(matches!(parse(&d), Err(HeaderError::Lengths { .. })));
    }
}
