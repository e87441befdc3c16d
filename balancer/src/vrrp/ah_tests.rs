use super::*;

const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// A VRRPv2 advert for VRID 7 (its bytes do not matter to AH beyond the VRID).
const VRRP: [u8; 20] = [
    0x21, 7, 100, 1, 2, 1, 0, 0, 198, 18, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn pair() -> (Ah, Ah) {
    let key = Password::new("secret");
    (Ah::new(&key, 7, false), Ah::new(&key, 7, false))
}

#[test]
fn a_sealed_advert_opens_with_the_same_key_and_carries_keepalived_s_layout() {
    let (mut tx, mut rx) = pair();
    tx.next_round();
    let p = tx.seal(SRC, GROUP, &VRRP);
    assert_eq!(p.len(), 20 + 24 + VRRP.len());
    // IPv4: TOS 0xc0, TTL 255, protocol 51; AH: next header 112, length 4, SPI = source.
    assert_eq!((p[1], p[8], p[9]), (0xc0, 255, 51));
    assert_eq!(u16::from_be_bytes([p[2], p[3]]), 64);
    assert_eq!(&p[20..24], &[112, 4, 0, 0]);
    assert_eq!(&p[24..28], &SRC.octets());
    assert_eq!(&p[28..32], &1u32.to_be_bytes());
    assert_eq!(rx.open(&p), Ok(44..64));
    assert_eq!(&p[44..], &VRRP);
}

#[test]
fn another_password_or_a_changed_byte_fails_and_mutable_fields_do_not_count() {
    let (mut tx, _) = pair();
    tx.next_round();
    let p = tx.seal(SRC, GROUP, &VRRP);
    let mut other = Ah::new(&Password::new("secreT"), 7, false);
    assert_eq!(other.open(&p), Err(AhError::BadIcv));
    let mut changed = p.clone();
    changed[44 + 2] = 101; // the priority
    assert_eq!(pair().1.open(&changed), Err(AhError::BadIcv));
    // TOS, fragment field and header checksum may change in flight (RFC 2402 §3.3.3.1.1.1).
    let mut mutable = p.clone();
    mutable[1] = 0;
    mutable[6] = 0x40;
    mutable[10] = 0x12;
    assert!(pair().1.open(&mutable).is_ok());
    // The TTL is covered for multicast (keepalived zeroes it only for unicast peers).
    let mut ttl = p;
    ttl[8] = 254;
    assert_eq!(pair().1.open(&ttl), Err(AhError::BadIcv));
}

#[test]
fn unicast_adverts_leave_the_ttl_out() {
    let key = Password::new("secret");
    let mut tx = Ah::new(&key, 7, true);
    tx.next_round();
    let mut p = tx.seal(SRC, Ipv4Addr::new(198, 18, 0, 2), &VRRP);
    p[8] = 63;
    assert!(Ah::new(&key, 7, true).open(&p).is_ok());
}

#[test]
fn sequence_numbers_must_rise_and_are_shared_by_both_directions() {
    let (mut tx, mut rx) = pair();
    tx.next_round();
    let first = tx.seal(SRC, GROUP, &VRRP);
    tx.next_round();
    let second = tx.seal(SRC, GROUP, &VRRP);
    assert!(rx.open(&second).is_ok());
    assert_eq!(
        rx.open(&first),
        Err(AhError::Replay {
            received: 1,
            seen: 2
        })
    );
    assert!(matches!(rx.open(&second), Err(AhError::Replay { .. })));
    // A backup that takes over goes on above the master it heard.
    rx.next_round();
    let taken_over = rx.seal(Ipv4Addr::new(198, 18, 0, 2), GROUP, &VRRP);
    assert_eq!(&taken_over[28..32], &3u32.to_be_bytes());
    assert!(tx.open(&taken_over).is_ok());
}

#[test]
fn the_spi_must_be_the_source_and_other_routers_are_not_ours_to_judge() {
    let (mut tx, _) = pair();
    tx.next_round();
    let p = tx.seal(SRC, GROUP, &VRRP);
    let mut spoofed = p.clone();
    spoofed[12..16].copy_from_slice(&[198, 18, 0, 9]);
    // The source is covered by the ICV too, so a changed source fails there first.
    assert_eq!(pair().1.open(&spoofed), Err(AhError::BadIcv));
    // A correct ICV over an SPI that is not the source: keepalived's SPI rule still refuses it.
    let mut wrong_spi = p.clone();
    wrong_spi[24..28].copy_from_slice(&[198, 18, 0, 9]);
    let icv = tx.icv(&wrong_spi, 20);
    wrong_spi[32..44].copy_from_slice(&icv);
    assert_eq!(
        pair().1.open(&wrong_spi),
        Err(AhError::BadSpi { spi: 0xc612_0009 })
    );
    let mut other_vrid = Ah::new(&Password::new("secret"), 8, false);
    assert_eq!(other_vrid.open(&p), Err(AhError::OtherVrid(7)));
    let mut not_vrrp = p.clone();
    not_vrrp[20] = 6;
    assert_eq!(pair().1.open(&not_vrrp), Err(AhError::NotVrrp(6)));
    assert_eq!(pair().1.open(&p[..40]), Err(AhError::Malformed));
}

/// Two adverts from keepalived 2.2.7 (`auth_type AH`, `auth_pass s3cret`, VRID 53), captured
/// with tcpdump from the IPv4 header on.
const KEEPALIVED: [[u8; 64]; 2] = [
    [
        0x45, 0xc0, 0x00, 0x40, 0x00, 0x01, 0x00, 0x00, 0xff, 0x33, 0x13, 0xa3, 0xc6, 0x12, 0x01,
        0x02, 0xe0, 0x00, 0x00, 0x12, 0x70, 0x04, 0x00, 0x00, 0xc6, 0x12, 0x01, 0x02, 0x00, 0x00,
        0x00, 0x01, 0x7f, 0x32, 0xac, 0x76, 0x59, 0x45, 0x9f, 0x53, 0x2d, 0xb1, 0x6d, 0x66, 0x21,
        0x35, 0x64, 0x01, 0x02, 0x01, 0xb1, 0x51, 0xc6, 0x12, 0x01, 0x64, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ],
    [
        0x45, 0xc0, 0x00, 0x40, 0x00, 0x02, 0x00, 0x00, 0xff, 0x33, 0x13, 0xa2, 0xc6, 0x12, 0x01,
        0x02, 0xe0, 0x00, 0x00, 0x12, 0x70, 0x04, 0x00, 0x00, 0xc6, 0x12, 0x01, 0x02, 0x00, 0x00,
        0x00, 0x02, 0xac, 0x4b, 0x5f, 0xca, 0x0b, 0x89, 0x22, 0x05, 0x58, 0xdb, 0x88, 0xe6, 0x21,
        0x35, 0x64, 0x01, 0x02, 0x01, 0xb1, 0x51, 0xc6, 0x12, 0x01, 0x64, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ],
];

#[test]
fn keepalived_s_adverts_open_and_ours_match_them_byte_for_byte() {
    let key = Password::new("s3cret");
    let mut rx = Ah::new(&key, 53, false);
    assert_eq!(rx.open(&KEEPALIVED[0]), Ok(44..64));
    assert_eq!(rx.open(&KEEPALIVED[1]), Ok(44..64));
    assert!(matches!(
        rx.open(&KEEPALIVED[0]),
        Err(AhError::Replay { received: 1, .. })
    ));
    // The same advert from us: identical but for the header checksum, which the kernel fills.
    let mut tx = Ah::new(&key, 53, false);
    for sent in KEEPALIVED {
        tx.next_round();
        let ours = tx.seal(
            Ipv4Addr::new(198, 18, 1, 2),
            Ipv4Addr::new(224, 0, 0, 18),
            &sent[44..],
        );
        let mut expected = sent.to_vec();
        expected[10..12].fill(0);
        assert_eq!(ours, expected);
    }
}
