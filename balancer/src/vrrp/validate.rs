//! Receive checks of RFC 3768 §7.1 and RFC 5798 §7.1, in keepalived's flavour
//! (`vrrp_check_packet` in keepalived's vrrp.c): every discard has a named reason, and what
//! keepalived only logs is an [`Anomaly`] on an accepted advert.

use std::net::IpAddr;
use std::time::Duration;

use crate::vrrp::auth::{AUTH_DATA_LEN, AUTH_NONE, Auth};
use crate::vrrp::checksum::{ChecksumMode, MULTICAST_V4, PseudoHeader};
use crate::vrrp::config::{Config, UnicastChecksum};
use crate::vrrp::wire::{Family, Kind, Packet, Repr, Version, WireError};

/// TTL / Hop Limit every multicast advert must carry (RFC 5798 §5.1.1.3 / §5.1.2.3).
pub const TTL: u8 = 255;

/// The smallest Ethernet payload: shorter IPv4 packets arrive with padding after them.
const ETH_MIN_PAYLOAD: usize = 46;
const IPV4_HEADER_LEN: usize = 20;

/// An advert as the I/O layer received it.
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 Hop Limit.
    pub ttl: u8,
    /// The IP payload.
    pub payload: &'a [u8],
}

/// Why an advert was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Discard {
    FamilyMismatch,
    TtlNot255,
    BadVersion,
    BadLength,
    BadType,
    VridMismatch,
    BadChecksum,
    AuthTypeMismatch,
    AuthFailure,
    AdvertIntervalMismatch,
    UnexpectedMulticast,
    UnexpectedUnicast,
    UnknownUnicastSource,
    LocalIsOwner,
}

impl Discard {
    pub const ALL: [Self; 14] = [
        Self::FamilyMismatch,
        Self::TtlNot255,
        Self::BadVersion,
        Self::BadLength,
        Self::BadType,
        Self::VridMismatch,
        Self::BadChecksum,
        Self::AuthTypeMismatch,
        Self::AuthFailure,
        Self::AdvertIntervalMismatch,
        Self::UnexpectedMulticast,
        Self::UnexpectedUnicast,
        Self::UnknownUnicastSource,
        Self::LocalIsOwner,
    ];

    /// Stable name for counters and logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::FamilyMismatch => "family_mismatch",
            Self::TtlNot255 => "ttl_not_255",
            Self::BadVersion => "bad_version",
            Self::BadLength => "bad_length",
            Self::BadType => "bad_type",
            Self::VridMismatch => "vrid_mismatch",
            Self::BadChecksum => "bad_checksum",
            Self::AuthTypeMismatch => "auth_type_mismatch",
            Self::AuthFailure => "auth_failure",
            Self::AdvertIntervalMismatch => "advert_interval_mismatch",
            Self::UnexpectedMulticast => "unexpected_multicast",
            Self::UnexpectedUnicast => "unexpected_unicast",
            Self::UnknownUnicastSource => "unknown_unicast_source",
            Self::LocalIsOwner => "local_is_owner",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Something odd about an advert that keepalived logs but still accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Anomaly {
    /// The listed addresses differ from ours (RFC 5798 §7.1 "MAY verify"; keepalived logs).
    AddressListMismatch,
    /// VRRPv3 interval differs from ours: legal, the backup learns it (RFC 5798 §6.4.2).
    AdvertIntervalDiffers,
    /// A unicast peer uses keepalived's old checksum; we switch to it (`old_unicast_checksum`).
    OldUnicastChecksum,
}

impl Anomaly {
    pub const ALL: [Self; 3] = [
        Self::AddressListMismatch,
        Self::AdvertIntervalDiffers,
        Self::OldUnicastChecksum,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::AddressListMismatch => "address_list_mismatch",
            Self::AdvertIntervalDiffers => "advert_interval_differs",
            Self::OldUnicastChecksum => "old_unicast_checksum",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|a| *a == self).unwrap_or(0)
    }
}

/// An advert that passed every check: what the state machine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub src: IpAddr,
    pub priority: u8,
    /// Adver Int (VRRPv2) or Max Adver Int (VRRPv3).
    pub advert_interval: Duration,
    pub anomalies: Vec<Anomaly>,
}

/// Per-instance receive counters, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub accepted: u64,
    discarded: [u64; Discard::ALL.len()],
    anomalies: [u64; Anomaly::ALL.len()],
}

impl Counters {
    #[must_use]
    pub fn discarded(&self, reason: Discard) -> u64 {
        self.discarded[reason.index()]
    }

    #[must_use]
    pub fn anomalies(&self, anomaly: Anomaly) -> u64 {
        self.anomalies[anomaly.index()]
    }

    /// Every counter by its stable name, for metrics.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        std::iter::once(("accepted", self.accepted))
            .chain(Discard::ALL.iter().map(|r| (r.name(), self.discarded(*r))))
            .chain(Anomaly::ALL.iter().map(|a| (a.name(), self.anomalies(*a))))
    }

    pub fn record(&mut self, outcome: &Result<Advert, Discard>) {
        match outcome {
            Ok(advert) => {
                self.accepted += 1;
                for a in &advert.anomalies {
                    self.anomalies[a.index()] += 1;
                }
            }
            Err(reason) => self.discarded[reason.index()] += 1,
        }
    }
}

/// Runs every receive check for the instance configured by `config`, whose effective priority
/// is `priority` and which currently sends checksums the `checksum` way.
///
/// # Errors
/// The first failed check.
pub fn check(
    config: &Config,
    priority: u8,
    checksum: ChecksumMode,
    rx: &Received<'_>,
) -> Result<Advert, Discard> {
    let family = config.family();
    if Family::of(rx.src) != family || Family::of(rx.dst) != family {
        return Err(Discard::FamilyMismatch);
    }
    // RFC 5798 §7.1 / RFC 3768 §7.1: TTL 255, which proves the sender is on-link. keepalived
    // skips it for unicast, where routers in between may lower it.
    if !config.is_unicast() && rx.ttl != TTL {
        return Err(Discard::TtlNot255);
    }
    let packet = Packet::new_checked(rx.payload, family).map_err(|e| match e {
        WireError::UnsupportedVersion { .. } | WireError::V2OverIpv6 => Discard::BadVersion,
        _ => Discard::BadLength,
    })?;
    // RFC 5798 §7.1: the version must be ours.
    if packet.version() != config.version.number() {
        return Err(Discard::BadVersion);
    }
    // RFC 5798 §7.1: the packet must hold the complete message. Ethernet pads IPv4 packets
    // shorter than its minimum, so keepalived allows trailing bytes there and only there.
    let message_len = packet.message_len().map_err(|_| Discard::BadLength)?;
    if rx.payload.len() > message_len
        && !(family == Family::V4 && IPV4_HEADER_LEN + rx.payload.len() <= ETH_MIN_PAYLOAD)
    {
        return Err(Discard::BadLength);
    }
    // RFC 5798 §5.2.2: only advertisements exist.
    let repr = Repr::parse(&packet).map_err(|_| Discard::BadType)?;
    // RFC 5798 §7.1: the VRID must be configured here.
    if repr.vrid != config.vrid {
        return Err(Discard::VridMismatch);
    }
    let mut anomalies = Vec::new();
    // RFC 5798 §7.1 / RFC 3768 §7.1: the checksum.
    check_checksum(config, checksum, &packet, rx, &mut anomalies)?;
    if let Kind::V2 {
        auth_type,
        auth_data,
        advert_int_secs,
    } = repr.kind
    {
        check_v2_auth(config, auth_type, auth_data)?;
        // RFC 3768 §7.1: the interval must match ours, or two masters could coexist.
        if Duration::from_secs(u64::from(advert_int_secs)) != config.advert_interval {
            return Err(Discard::AdvertIntervalMismatch);
        }
    } else if repr.advert_interval() != config.advert_interval {
        // RFC 5798 §6.4.2: a VRRPv3 backup learns the master's interval instead.
        anomalies.push(Anomaly::AdvertIntervalDiffers);
    }
    // keepalived: multicast instances drop unicast adverts and unicast instances multicast ones.
    let multicast = rx.dst.is_multicast();
    if multicast && config.is_unicast() {
        return Err(Discard::UnexpectedMulticast);
    }
    if !multicast && !config.is_unicast() {
        return Err(Discard::UnexpectedUnicast);
    }
    // keepalived `check_unicast_src`.
    if config.check_unicast_src && !config.unicast_peers.contains(&rx.src) {
        return Err(Discard::UnknownUnicastSource);
    }
    // RFC 5798 §7.1: the address owner discards adverts. keepalived only does so with
    // `vrrp_owner_ignore_adverts`, so that two owners can notice each other.
    if config.owner_ignores_adverts && priority == 255 {
        return Err(Discard::LocalIsOwner);
    }
    // RFC 5798 §7.1 "MAY verify" the addresses; keepalived logs a mismatch and goes on.
    let mut listed: Vec<IpAddr> = repr.addresses.iter().collect();
    let mut ours: Vec<IpAddr> = config.vips.iter().collect();
    listed.sort_unstable();
    ours.sort_unstable();
    if listed != ours {
        anomalies.push(Anomaly::AddressListMismatch);
    }
    Ok(Advert {
        src: rx.src,
        priority: repr.priority,
        advert_interval: repr.advert_interval(),
        anomalies,
    })
}

fn check_checksum(
    config: &Config,
    current: ChecksumMode,
    packet: &Packet<&[u8]>,
    rx: &Received<'_>,
    anomalies: &mut Vec<Anomaly>,
) -> Result<(), Discard> {
    let ph = PseudoHeader {
        src: rx.src,
        dst: rx.dst,
    };
    let v3_ipv4 = config.version == Version::V3 && config.family() == Family::V4;
    if !v3_ipv4 {
        return if packet.verify_checksum(ph, ChecksumMode::Rfc) {
            Ok(())
        } else {
            Err(Discard::BadChecksum)
        };
    }
    if config.v3_checksum_as_v2 {
        // keepalived skips the check altogether here; we accept either form but still reject
        // corruption.
        return if packet.verify_checksum(ph, ChecksumMode::NoPseudoHeader)
            || packet.verify_checksum(ph, ChecksumMode::Rfc)
        {
            Ok(())
        } else {
            Err(Discard::BadChecksum)
        };
    }
    if packet.verify_checksum(ph, current) {
        return Ok(());
    }
    // keepalived's auto-detection: a unicast peer still on the old checksum switches us to it.
    let may_switch = current == ChecksumMode::Rfc
        && config.is_unicast()
        && config.unicast_checksum == UnicastChecksum::Auto
        && rx.dst != IpAddr::V4(MULTICAST_V4);
    if may_switch && packet.verify_checksum(ph, ChecksumMode::MulticastPseudoHeader) {
        anomalies.push(Anomaly::OldUnicastChecksum);
        return Ok(());
    }
    Err(Discard::BadChecksum)
}

fn check_v2_auth(
    config: &Config,
    auth_type: u8,
    auth_data: [u8; AUTH_DATA_LEN],
) -> Result<(), Discard> {
    let expected = config.auth.as_ref().map_or(AUTH_NONE, Auth::auth_type);
    // RFC 2338 §7.1 (kept by keepalived): the Auth Type must be ours.
    if auth_type != expected {
        return Err(Discard::AuthTypeMismatch);
    }
    // AH was checked on the way in, with the whole packet (`crate::vrrp::ah`).
    match &config.auth {
        Some(Auth::Pass(password)) if !password.matches(&auth_data) => Err(Discard::AuthFailure),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
