use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::vrrp::auth::{Auth, Password};
use crate::vrrp::testdata::{self, Capture};
use crate::vrrp::wire::Addresses;

const US4: IpAddr = testdata::PEER4;
const US6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2));

/// The configuration of the instance on the receiving side of each capture.
fn config_for(c: &Capture) -> Config {
    let v4 = |addrs: &[[u8; 4]]| Addresses::V4(addrs.iter().map(|a| Ipv4Addr::from(*a)).collect());
    match c.payload[1] {
        51 => {
            let mut cfg = Config::new(
                51,
                Version::V2,
                US4,
                v4(&[[198, 18, 1, 1], [198, 18, 1, 2]]),
            );
            cfg.auth = Some(Auth::Pass(Password::new("secret12")));
            cfg
        }
        52 => Config::new(52, Version::V3, US4, v4(&[[198, 18, 2, 1]])),
        53 => {
            let mut cfg = Config::new(
                53,
                Version::V3,
                US6,
                Addresses::V6(vec![
                    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x53),
                    Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0x53),
                ]),
            );
            cfg.advert_interval = Duration::from_millis(500);
            cfg
        }
        vrid @ (54 | 55) => {
            let mut cfg = Config::new(vrid, Version::V3, US4, v4(&[[198, 18, vrid - 50, 1]]));
            cfg.unicast_peers = vec![testdata::SRC4];
            cfg
        }
        other => panic!("no configuration for vrid {other}"),
    }
}

fn rx<'a>(c: &Capture, payload: &'a [u8]) -> Received<'a> {
    Received {
        src: c.src,
        dst: c.dst,
        ttl: 255,
        payload,
    }
}

fn run(cfg: &Config, rx: &Received<'_>) -> Result<Advert, Discard> {
    check(cfg, cfg.priority, ChecksumMode::Rfc, rx)
}

/// The capture with `edit` applied and the checksum made right again.
fn edited(c: &Capture, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = c.payload.to_vec();
    edit(&mut bytes);
    let mut packet = Packet::new_unchecked(&mut bytes[..], c.family());
    packet
        .fill_checksum(c.pseudo_header(), ChecksumMode::Rfc)
        .unwrap();
    bytes
}

#[test]
fn every_keepalived_capture_is_accepted_as_is() {
    for c in testdata::RFC_CHECKSUM {
        let advert = run(&config_for(&c), &rx(&c, c.payload))
            .unwrap_or_else(|e| panic!("{}: {e:?}", c.name));
        assert_eq!(advert.src, c.src);
        assert_eq!(advert.priority, c.payload[2]);
        assert_eq!(advert.anomalies, vec![], "{}", c.name);
    }
}

#[test]
fn family_mismatch() {
    let c = testdata::V3_IPV4;
    let mut from_v6 = rx(&c, c.payload);
    from_v6.src = testdata::SRC6;
    assert_eq!(run(&config_for(&c), &from_v6), Err(Discard::FamilyMismatch));
}

// RFC 5798 §7.1: TTL must be 255; keepalived does not check it for unicast.
#[test]
fn ttl_not_255() {
    let c = testdata::V3_IPV4;
    let mut r = rx(&c, c.payload);
    r.ttl = 254;
    assert_eq!(run(&config_for(&c), &r), Err(Discard::TtlNot255));
    let u = testdata::V3_UNICAST;
    let mut r = rx(&u, u.payload);
    r.ttl = 64;
    assert!(run(&config_for(&u), &r).is_ok());
}

// RFC 5798 §7.1: the version must be ours.
#[test]
fn bad_version() {
    let c = testdata::V2_PASS;
    let mut cfg = config_for(&c);
    cfg.version = Version::V3;
    cfg.auth = None;
    assert_eq!(run(&cfg, &rx(&c, c.payload)), Err(Discard::BadVersion));
    let v4 = edited(&testdata::V3_IPV4, |_| {});
    let mut v4 = v4.clone();
    v4[0] = 0x41;
    let c = testdata::V3_IPV4;
    assert_eq!(run(&config_for(&c), &rx(&c, &v4)), Err(Discard::BadVersion));
}

// RFC 5798 §7.1: the complete message must be there; only Ethernet padding may follow it.
#[test]
fn bad_length() {
    let c = testdata::V3_IPV4;
    let cfg = config_for(&c);
    assert_eq!(
        run(&cfg, &rx(&c, &c.payload[..11])),
        Err(Discard::BadLength)
    );
    let mut padded = c.payload.to_vec();
    padded.extend_from_slice(&[0; 14]); // 20 + 26 = 46: what Ethernet pads to
    assert!(run(&cfg, &rx(&c, &padded)).is_ok());
    padded.push(0);
    assert_eq!(run(&cfg, &rx(&c, &padded)), Err(Discard::BadLength));
    let c6 = testdata::V3_IPV6;
    let mut trailing = c6.payload.to_vec();
    trailing.push(0);
    assert_eq!(
        run(&config_for(&c6), &rx(&c6, &trailing)),
        Err(Discard::BadLength)
    );
}

// RFC 5798 §5.2.2: type 1 only.
#[test]
fn bad_type() {
    let c = testdata::V3_IPV4;
    let bytes = edited(&c, |b| b[0] = 0x32);
    assert_eq!(run(&config_for(&c), &rx(&c, &bytes)), Err(Discard::BadType));
}

// RFC 5798 §7.1: VRID must be configured.
#[test]
fn vrid_mismatch() {
    let c = testdata::V3_IPV4;
    let mut cfg = config_for(&c);
    cfg.vrid = 60;
    assert_eq!(run(&cfg, &rx(&c, c.payload)), Err(Discard::VridMismatch));
}

// RFC 5798 §7.1 / RFC 3768 §7.1: checksum.
#[test]
fn bad_checksum() {
    for c in testdata::RFC_CHECKSUM {
        let mut bytes = c.payload.to_vec();
        bytes[2] ^= 0x04;
        assert_eq!(
            run(&config_for(&c), &rx(&c, &bytes)),
            Err(Discard::BadChecksum),
            "{}",
            c.name
        );
    }
}

// RFC 2338 §7.1, as keepalived keeps it: the Auth Type must match ours.
#[test]
fn auth_type_mismatch() {
    let c = testdata::V2_PASS;
    let mut cfg = config_for(&c);
    cfg.auth = None;
    assert_eq!(
        run(&cfg, &rx(&c, c.payload)),
        Err(Discard::AuthTypeMismatch)
    );
    let no_auth = edited(&c, |b| {
        b[4] = AUTH_NONE;
        b[16..24].fill(0);
    });
    assert!(run(&cfg, &rx(&c, &no_auth)).is_ok());
    assert_eq!(
        run(&config_for(&c), &rx(&c, &no_auth)),
        Err(Discard::AuthTypeMismatch)
    );
}

#[test]
fn auth_failure() {
    let c = testdata::V2_PASS;
    let mut cfg = config_for(&c);
    cfg.auth = Some(Auth::Pass(Password::new("secret13")));
    assert_eq!(run(&cfg, &rx(&c, c.payload)), Err(Discard::AuthFailure));
    // keepalived compares the first 8 bytes only.
    cfg.auth = Some(Auth::Pass(Password::new("secret12xyz")));
    assert!(run(&cfg, &rx(&c, c.payload)).is_ok());
}

// RFC 3768 §7.1: VRRPv2 intervals must match; RFC 5798 §6.4.2: VRRPv3 ones are learnt.
#[test]
fn advert_interval_mismatch_v2_only() {
    let c = testdata::V2_PASS;
    let mut cfg = config_for(&c);
    cfg.advert_interval = Duration::from_secs(2);
    assert_eq!(
        run(&cfg, &rx(&c, c.payload)),
        Err(Discard::AdvertIntervalMismatch)
    );
    let c = testdata::V3_IPV4;
    let mut cfg = config_for(&c);
    cfg.advert_interval = Duration::from_secs(2);
    let advert = run(&cfg, &rx(&c, c.payload)).unwrap();
    assert_eq!(advert.anomalies, vec![Anomaly::AdvertIntervalDiffers]);
    assert_eq!(advert.advert_interval, Duration::from_secs(1));
}

// keepalived: a multicast instance drops unicast adverts and the other way round.
#[test]
fn unicast_and_multicast_do_not_mix() {
    let m = testdata::V3_IPV4;
    let mut cfg = config_for(&m);
    cfg.unicast_peers = vec![testdata::SRC4];
    assert_eq!(
        run(&cfg, &rx(&m, m.payload)),
        Err(Discard::UnexpectedMulticast)
    );
    let u = testdata::V3_UNICAST;
    let mut cfg = config_for(&u);
    cfg.unicast_peers.clear();
    assert_eq!(
        run(&cfg, &rx(&u, u.payload)),
        Err(Discard::UnexpectedUnicast)
    );
}

// keepalived `check_unicast_src`.
#[test]
fn unknown_unicast_source() {
    let u = testdata::V3_UNICAST;
    let mut cfg = config_for(&u);
    cfg.check_unicast_src = true;
    assert!(run(&cfg, &rx(&u, u.payload)).is_ok());
    cfg.unicast_peers = vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9))];
    assert_eq!(
        run(&cfg, &rx(&u, u.payload)),
        Err(Discard::UnknownUnicastSource)
    );
}

// RFC 5798 §7.1: the owner discards; keepalived only with vrrp_owner_ignore_adverts.
#[test]
fn local_is_owner() {
    let c = testdata::V3_IPV4;
    let mut cfg = config_for(&c);
    cfg.priority = 255;
    assert!(run(&cfg, &rx(&c, c.payload)).is_ok());
    cfg.owner_ignores_adverts = true;
    assert_eq!(run(&cfg, &rx(&c, c.payload)), Err(Discard::LocalIsOwner));
}

// RFC 5798 §7.1 "MAY verify": keepalived logs the mismatch and accepts the advert.
#[test]
fn address_list_mismatch_is_accepted() {
    let c = testdata::V3_IPV4;
    let mut cfg = config_for(&c);
    cfg.vips = Addresses::V4(vec![Ipv4Addr::new(198, 18, 2, 2)]);
    let advert = run(&cfg, &rx(&c, c.payload)).unwrap();
    assert_eq!(advert.anomalies, vec![Anomaly::AddressListMismatch]);
    // Order does not matter.
    let c = testdata::V2_PASS;
    let mut cfg = config_for(&c);
    cfg.vips = Addresses::V4(vec![
        Ipv4Addr::new(198, 18, 1, 2),
        Ipv4Addr::new(198, 18, 1, 1),
    ]);
    assert_eq!(run(&cfg, &rx(&c, c.payload)).unwrap().anomalies, vec![]);
}

// keepalived `old_unicast_checksum`, auto-detected unless `never`.
#[test]
fn old_unicast_checksum() {
    let c = testdata::V3_UNICAST_OLD;
    let mut cfg = config_for(&c);
    let advert = run(&cfg, &rx(&c, c.payload)).unwrap();
    assert_eq!(advert.anomalies, vec![Anomaly::OldUnicastChecksum]);
    // Once switched, the old checksum is the normal one, and RFC ones no longer pass.
    let old = check(
        &cfg,
        100,
        ChecksumMode::MulticastPseudoHeader,
        &rx(&c, c.payload),
    )
    .unwrap();
    assert_eq!(old.anomalies, vec![]);
    let rfc = testdata::V3_UNICAST;
    let mut rfc_cfg = config_for(&rfc);
    rfc_cfg.vrid = 55;
    rfc_cfg.vips = cfg.vips.clone();
    let rfc_bytes = edited(&rfc, |b| {
        b[1] = 55;
        b[8..12].copy_from_slice(&[198, 18, 5, 1]);
    });
    assert_eq!(
        check(
            &rfc_cfg,
            100,
            ChecksumMode::MulticastPseudoHeader,
            &rx(&rfc, &rfc_bytes)
        ),
        Err(Discard::BadChecksum)
    );
    cfg.unicast_checksum = UnicastChecksum::Never;
    assert_eq!(run(&cfg, &rx(&c, c.payload)), Err(Discard::BadChecksum));
}

// keepalived `v3_checksum_as_v2`.
#[test]
fn v3_checksum_as_v2() {
    let c = testdata::V3_IPV4;
    let mut cfg = config_for(&c);
    let mut bytes = c.payload.to_vec();
    Packet::new_unchecked(&mut bytes[..], Family::V4)
        .fill_checksum(c.pseudo_header(), ChecksumMode::NoPseudoHeader)
        .unwrap();
    assert_eq!(run(&cfg, &rx(&c, &bytes)), Err(Discard::BadChecksum));
    cfg.v3_checksum_as_v2 = true;
    assert!(run(&cfg, &rx(&c, &bytes)).is_ok());
    assert!(run(&cfg, &rx(&c, c.payload)).is_ok());
    bytes[2] ^= 1;
    assert_eq!(run(&cfg, &rx(&c, &bytes)), Err(Discard::BadChecksum));
}

#[test]
fn counters_count_by_stable_name() {
    let c = testdata::V3_IPV4;
    let cfg = config_for(&c);
    let mut counters = Counters::default();
    counters.record(&run(&cfg, &rx(&c, c.payload)));
    counters.record(&run(&cfg, &rx(&c, &c.payload[..3])));
    let mut other = cfg.clone();
    other.vips = Addresses::V4(vec![]);
    counters.record(&run(&other, &rx(&c, c.payload)));
    assert_eq!(counters.accepted, 2);
    assert_eq!(counters.discarded(Discard::BadLength), 1);
    assert_eq!(counters.anomalies(Anomaly::AddressListMismatch), 1);
    let names: Vec<_> = counters.iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), names.iter().collect::<HashSet<_>>().len());
    assert_eq!(names.len(), 1 + Discard::ALL.len() + Anomaly::ALL.len());
    assert!(names.contains(&"ttl_not_255"));
    assert!(names.contains(&"address_list_mismatch"));
}
