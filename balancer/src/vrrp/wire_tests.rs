use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::*;
use crate::vrrp::auth::AUTH_SIMPLE;
use crate::vrrp::testdata::{self, Capture};

fn parse(c: &Capture) -> Repr {
    let packet = Packet::new_checked(c.payload, c.family()).expect(c.name);
    Repr::parse(&packet).expect(c.name)
}

#[test]
fn keepalived_captures_parse_verify_and_round_trip() {
    for c in testdata::RFC_CHECKSUM {
        let packet = Packet::new_checked(c.payload, c.family()).expect(c.name);
        assert!(
            packet.verify_checksum(c.pseudo_header(), ChecksumMode::Rfc),
            "{}",
            c.name
        );
        let repr = Repr::parse(&packet).expect(c.name);
        assert_eq!(repr.buffer_len(), c.payload.len(), "{}", c.name);
        let bytes = repr
            .to_bytes(c.pseudo_header(), ChecksumMode::Rfc)
            .expect(c.name);
        assert_eq!(bytes, c.payload, "{}", c.name);
    }
}

// RFC 3768 §5.3: every field of keepalived's `auth_type PASS` advert.
#[test]
fn v2_pass_fields() {
    let repr = parse(&testdata::V2_PASS);
    assert_eq!(repr.vrid, 51);
    assert_eq!(repr.priority, 150);
    assert_eq!(
        repr.kind,
        Kind::V2 {
            auth_type: AUTH_SIMPLE,
            auth_data: *b"secret12",
            advert_int_secs: 1,
        }
    );
    assert_eq!(repr.advert_interval(), Duration::from_secs(1));
    assert_eq!(
        repr.addresses,
        Addresses::V4(vec![
            Ipv4Addr::new(198, 18, 1, 1),
            Ipv4Addr::new(198, 18, 1, 2)
        ])
    );
    assert_eq!(parse(&testdata::V2_PASS_STOP).priority, 0);
}

// RFC 5798 §5.2: VRRPv3 over IPv6, 50 cs interval, two addresses.
#[test]
fn v3_ipv6_fields() {
    let repr = parse(&testdata::V3_IPV6);
    assert_eq!((repr.vrid, repr.priority), (53, 200));
    assert_eq!(
        repr.kind,
        Kind::V3 {
            max_advert_int_cs: 50
        }
    );
    assert_eq!(repr.advert_interval(), Duration::from_millis(500));
    assert_eq!(
        repr.addresses,
        Addresses::V6(vec![
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x53),
            Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0x53),
        ])
    );
}

#[test]
fn v3_ipv4_fields() {
    let repr = parse(&testdata::V3_IPV4);
    assert_eq!((repr.vrid, repr.priority), (52, 100));
    assert_eq!(
        repr.kind,
        Kind::V3 {
            max_advert_int_cs: 100
        }
    );
    assert_eq!(
        repr.addresses,
        Addresses::V4(vec![Ipv4Addr::new(198, 18, 2, 1)])
    );
}

// keepalived `old_unicast_checksum`: the pseudo-header names 224.0.0.18, not the unicast peer.
#[test]
fn old_unicast_checksum_verifies_only_in_its_mode_and_round_trips() {
    for c in [testdata::V3_UNICAST_OLD, testdata::V3_UNICAST_OLD_STOP] {
        let packet = Packet::new_checked(c.payload, c.family()).unwrap();
        assert!(
            !packet.verify_checksum(c.pseudo_header(), ChecksumMode::Rfc),
            "{}",
            c.name
        );
        assert!(!packet.verify_checksum(c.pseudo_header(), ChecksumMode::NoPseudoHeader));
        assert!(packet.verify_checksum(c.pseudo_header(), ChecksumMode::MulticastPseudoHeader));
        let repr = Repr::parse(&packet).unwrap();
        let bytes = repr
            .to_bytes(c.pseudo_header(), ChecksumMode::MulticastPseudoHeader)
            .unwrap();
        assert_eq!(bytes, c.payload, "{}", c.name);
    }
    // And the RFC-mode unicast capture does not pass in the old mode.
    let c = testdata::V3_UNICAST;
    let packet = Packet::new_checked(c.payload, c.family()).unwrap();
    assert!(!packet.verify_checksum(c.pseudo_header(), ChecksumMode::MulticastPseudoHeader));
}

// keepalived `v3_checksum_as_v2`: the VRRP message alone.
#[test]
fn no_pseudo_header_mode_round_trips() {
    let c = testdata::V3_UNICAST;
    let repr = parse(&c);
    let bytes = repr
        .to_bytes(c.pseudo_header(), ChecksumMode::NoPseudoHeader)
        .unwrap();
    let packet = Packet::new_checked(&bytes[..], Family::V4).unwrap();
    assert!(packet.verify_checksum(c.pseudo_header(), ChecksumMode::NoPseudoHeader));
    assert!(!packet.verify_checksum(c.pseudo_header(), ChecksumMode::Rfc));
    assert_eq!(Repr::parse(&packet).unwrap(), repr);
}

// RFC 3768 §5.3.8: the VRRPv2 checksum has no pseudo-header, whatever the mode or addresses.
#[test]
fn v2_checksum_ignores_addresses_and_mode() {
    let c = testdata::V2_PASS;
    let packet = Packet::new_checked(c.payload, Family::V4).unwrap();
    let other = PseudoHeader {
        src: testdata::PEER4,
        dst: testdata::SRC4,
    };
    for mode in [
        ChecksumMode::Rfc,
        ChecksumMode::MulticastPseudoHeader,
        ChecksumMode::NoPseudoHeader,
    ] {
        assert!(packet.verify_checksum(other, mode));
    }
}

#[test]
fn corrupted_byte_fails_the_checksum() {
    for c in testdata::RFC_CHECKSUM {
        for i in 0..c.payload.len() {
            let mut bytes = c.payload.to_vec();
            bytes[i] ^= 0x01;
            if i == 3 {
                // The count changes the length; that is a different error.
                continue;
            }
            let Ok(packet) = Packet::new_checked(&bytes[..], c.family()) else {
                continue;
            };
            assert!(
                !packet.verify_checksum(c.pseudo_header(), ChecksumMode::Rfc),
                "{} byte {i}",
                c.name
            );
        }
    }
}

// RFC 5798 §5.2.8: the pseudo-header's addresses are covered.
#[test]
fn v3_checksum_covers_the_ip_addresses() {
    let c = testdata::V3_IPV4;
    let packet = Packet::new_checked(c.payload, Family::V4).unwrap();
    let moved = PseudoHeader {
        src: testdata::PEER4,
        dst: c.dst,
    };
    assert!(!packet.verify_checksum(moved, ChecksumMode::Rfc));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for c in testdata::RFC_CHECKSUM {
        for len in 0..c.payload.len() {
            let err = Packet::new_checked(&c.payload[..len], c.family()).unwrap_err();
            assert!(
                matches!(err, WireError::Truncated { .. }),
                "{} at {len}: {err}",
                c.name
            );
        }
    }
}

#[test]
fn trailing_padding_is_outside_the_message() {
    let c = testdata::V3_IPV4;
    let mut padded = c.payload.to_vec();
    padded.extend_from_slice(&[0; 6]);
    let packet = Packet::new_checked(&padded[..], Family::V4).unwrap();
    assert_eq!(packet.message_len().unwrap(), c.payload.len());
    assert!(packet.verify_checksum(c.pseudo_header(), ChecksumMode::Rfc));
    assert_eq!(Repr::parse(&packet).unwrap(), parse(&c));
}

#[test]
fn count_larger_than_the_buffer_is_truncated() {
    let mut bytes = testdata::V3_IPV4.payload.to_vec();
    bytes[3] = 255;
    assert_eq!(
        Packet::new_checked(&bytes[..], Family::V4).unwrap_err(),
        WireError::Truncated {
            len: 12,
            needed: 8 + 255 * 4
        }
    );
}

#[test]
fn unknown_version_and_type_are_errors() {
    let mut bytes = testdata::V3_IPV4.payload.to_vec();
    bytes[0] = 0x41;
    assert_eq!(
        Packet::new_checked(&bytes[..], Family::V4).unwrap_err(),
        WireError::UnsupportedVersion { version: 4 }
    );
    bytes[0] = 0x32;
    let packet = Packet::new_checked(&bytes[..], Family::V4).unwrap();
    assert_eq!(
        Repr::parse(&packet).unwrap_err(),
        WireError::UnknownType { msg_type: 2 }
    );
}

// RFC 3768 §5.3.9 (VRRPv2 is IPv4 only).
#[test]
fn v2_over_ipv6_is_an_error() {
    let bytes = [0x21, 1, 100, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        Packet::new_checked(&bytes[..], Family::V6).unwrap_err(),
        WireError::V2OverIpv6
    );
}

// RFC 5798 §5.2.6: the reserved bits are ignored on reception and zero on transmission.
#[test]
fn reserved_bits_ignored_and_cleared() {
    let c = testdata::V3_IPV4;
    let mut bytes = c.payload.to_vec();
    bytes[4] |= 0xf0;
    let packet = Packet::new_checked(&bytes[..], Family::V4).unwrap();
    assert_eq!(packet.max_advert_int_cs(), 100);
    let out = Repr::parse(&packet)
        .unwrap()
        .to_bytes(c.pseudo_header(), ChecksumMode::Rfc)
        .unwrap();
    assert_eq!(out, c.payload);
}

#[test]
fn emit_rejects_what_the_header_cannot_say() {
    let ph = testdata::V3_IPV4.pseudo_header();
    let mut repr = parse(&testdata::V3_IPV4);
    repr.kind = Kind::V3 {
        max_advert_int_cs: 4096,
    };
    assert_eq!(
        repr.to_bytes(ph, ChecksumMode::Rfc).unwrap_err(),
        WireError::AdvertIntervalTooLarge { centiseconds: 4096 }
    );
    repr.kind = Kind::V3 {
        max_advert_int_cs: 100,
    };
    repr.addresses = Addresses::V4(vec![Ipv4Addr::new(198, 18, 0, 9); 256]);
    assert_eq!(
        repr.to_bytes(ph, ChecksumMode::Rfc).unwrap_err(),
        WireError::TooManyAddresses { count: 256 }
    );
    let mut short = Packet::new_unchecked([0u8; 10], Family::V4);
    let repr = parse(&testdata::V3_IPV4);
    assert_eq!(
        repr.emit(&mut short, ph, ChecksumMode::Rfc).unwrap_err(),
        WireError::Truncated {
            len: 10,
            needed: 12
        }
    );
    let mixed = PseudoHeader {
        src: testdata::SRC4,
        dst: testdata::MCAST6,
    };
    assert_eq!(
        repr.to_bytes(mixed, ChecksumMode::Rfc).unwrap_err(),
        WireError::PseudoHeaderFamilies
    );
    let mut v2 = parse(&testdata::V2_PASS);
    v2.addresses = Addresses::V6(vec![Ipv6Addr::LOCALHOST]);
    assert_eq!(
        v2.to_bytes(testdata::V3_IPV6.pseudo_header(), ChecksumMode::Rfc)
            .unwrap_err(),
        WireError::V2OverIpv6
    );
}

// No input may panic: walk a deterministic pseudo-random stream of buffers through everything.
#[test]
fn arbitrary_bytes_never_panic() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = usize::try_from(next() % 80).unwrap();
        let mut bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        if let Some(b) = bytes.first_mut() {
            // Mostly valid versions, so the deeper paths run too.
            *b = (*b & 0x0f) | if next() % 2 == 0 { 0x20 } else { 0x30 };
        }
        if let Some(b) = bytes.get_mut(3) {
            *b %= 8;
        }
        for (family, ph) in [
            (Family::V4, testdata::V3_IPV4.pseudo_header()),
            (Family::V6, testdata::V3_IPV6.pseudo_header()),
        ] {
            let packet = Packet::new_unchecked(&bytes[..], family);
            let _ = packet.message_len();
            let _ = packet.auth_data();
            let _ = packet.address(0);
            if let Ok(packet) = Packet::new_checked(&bytes[..], family) {
                let _ = packet.verify_checksum(ph, ChecksumMode::Rfc);
                if let Ok(repr) = Repr::parse(&packet) {
                    let again = repr.to_bytes(ph, ChecksumMode::Rfc).unwrap();
                    let reparsed = Repr::parse(&Packet::new_checked(&again[..], family).unwrap());
                    assert_eq!(reparsed.unwrap(), repr);
                }
            }
        }
    }
}
