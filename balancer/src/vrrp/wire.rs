//! VRRP advertisements on the wire: VRRPv2 (RFC 3768 §5) and VRRPv3 (RFC 5798 / 9568 §5).
//!
//! The buffer is the IP payload. The IP header is the I/O layer's business, except for the
//! addresses VRRPv3 folds into its checksum ([`PseudoHeader`]) and the address family, which
//! the VRRP header does not carry and which decides the size of the address list.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::vrrp::auth::AUTH_DATA_LEN;
use crate::vrrp::checksum::{self, ChecksumMode, PseudoHeader};

/// The only message type either version defines (RFC 5798 §5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Length of the fixed header both versions share.
pub const HEADER_LEN: usize = field::ADDRESSES;
/// Largest VRRPv3 Max Adver Int: the field is 12 bits (RFC 5798 §5.2.7).
pub const MAX_ADVERT_INT_CS: u16 = 0x0fff;

mod field {
    use std::ops::Range;

    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// VRRPv2 only (RFC 3768 §5.3.6 / §5.3.7).
    pub const V2_AUTH_TYPE: usize = 4;
    pub const V2_ADVER_INT: usize = 5;
    /// VRRPv3 only: 4 reserved bits, then 12 bits of centiseconds (RFC 5798 §5.2.6 / §5.2.7).
    pub const V3_MAX_ADVER_INT: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const ADDRESSES: usize = 8;
}

/// VRRP protocol versions we speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }
}

/// The address family of the IP packet that carries the advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    #[must_use]
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    #[must_use]
    pub fn address_len(self) -> usize {
        match self {
            Self::V4 => 4,
            Self::V6 => 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("VRRP message is {len} bytes, needs at least {needed}")]
    Truncated { len: usize, needed: usize },
    #[error("VRRP version {version} is not supported (only 2 and 3 are)")]
    UnsupportedVersion { version: u8 },
    #[error("VRRP message type {msg_type} is unknown (only 1, advertisement, is defined)")]
    UnknownType { msg_type: u8 },
    #[error("VRRPv2 carries IPv4 addresses only (RFC 3768 §5.3.9)")]
    V2OverIpv6,
    #[error("{count} addresses do not fit the 8-bit Count IPvX Addr field")]
    TooManyAddresses { count: usize },
    #[error("Max Adver Int {centiseconds} cs does not fit 12 bits (largest is 4095)")]
    AdvertIntervalTooLarge { centiseconds: u16 },
    #[error("the pseudo-header mixes IPv4 and IPv6 addresses")]
    PseudoHeaderFamilies,
}

/// A VRRP message in a byte buffer: field access without interpretation.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    family: Family,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    /// Use [`Packet::new_checked`] on anything received.
    pub fn new_unchecked(buffer: T, family: Family) -> Self {
        Self { buffer, family }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    ///
    /// # Errors
    /// As [`Packet::check_len`].
    pub fn new_checked(buffer: T, family: Family) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer, family);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that every field the header announces is inside the buffer, so that no accessor
    /// can panic. Trailing bytes (Ethernet padding) are allowed; [`Packet::message_len`] says
    /// where the message ends.
    ///
    /// # Errors
    /// `Truncated` when the header or the announced addresses / auth data are missing,
    /// `UnsupportedVersion` when the length cannot be known, `V2OverIpv6` for VRRPv2 in IPv6.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        let needed = self.message_len()?;
        if len < needed {
            return Err(WireError::Truncated { len, needed });
        }
        Ok(())
    }

    /// Length of the VRRP message proper: header, addresses and, for VRRPv2, auth data.
    ///
    /// # Errors
    /// `Truncated` without a full header, `UnsupportedVersion` for versions other than 2 and 3,
    /// `V2OverIpv6`.
    pub fn message_len(&self) -> Result<usize, WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                len,
                needed: HEADER_LEN,
            });
        }
        let addresses = usize::from(self.addr_count()) * self.family.address_len();
        match (self.protocol_version()?, self.family) {
            (Version::V2, Family::V4) => Ok(HEADER_LEN + addresses + AUTH_DATA_LEN),
            (Version::V2, Family::V6) => Err(WireError::V2OverIpv6),
            (Version::V3, _) => Ok(HEADER_LEN + addresses),
        }
    }

    #[must_use]
    pub fn family(&self) -> Family {
        self.family
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[must_use]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// The version as an enum.
    ///
    /// # Errors
    /// `UnsupportedVersion` for anything but 2 and 3.
    pub fn protocol_version(&self) -> Result<Version, WireError> {
        match self.version() {
            2 => Ok(Version::V2),
            3 => Ok(Version::V3),
            version => Err(WireError::UnsupportedVersion { version }),
        }
    }

    #[must_use]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    #[must_use]
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    #[must_use]
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    #[must_use]
    pub fn addr_count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// VRRPv2 Auth Type.
    #[must_use]
    pub fn auth_type(&self) -> u8 {
        self.buffer.as_ref()[field::V2_AUTH_TYPE]
    }

    /// VRRPv2 Adver Int, in seconds.
    #[must_use]
    pub fn advert_int_secs(&self) -> u8 {
        self.buffer.as_ref()[field::V2_ADVER_INT]
    }

    /// VRRPv3 Max Adver Int, in centiseconds; the 4 reserved bits are ignored on reception
    /// (RFC 5798 §5.2.6).
    #[must_use]
    pub fn max_advert_int_cs(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::V3_MAX_ADVER_INT];
        u16::from_be_bytes([b[0], b[1]]) & MAX_ADVERT_INT_CS
    }

    #[must_use]
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The `index`th address, or `None` past the count or the buffer.
    #[must_use]
    pub fn address(&self, index: usize) -> Option<IpAddr> {
        if index >= usize::from(*self.buffer.as_ref().get(field::COUNT)?) {
            return None;
        }
        let len = self.family.address_len();
        let start = field::ADDRESSES + index * len;
        let bytes = self.buffer.as_ref().get(start..start + len)?;
        Some(match self.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        })
    }

    /// VRRPv2 Authentication Data, or `None` when the buffer or version has none.
    #[must_use]
    pub fn auth_data(&self) -> Option<[u8; AUTH_DATA_LEN]> {
        let end = self.message_len().ok()?;
        if self.protocol_version().ok()? != Version::V2 {
            return None;
        }
        let bytes = self.buffer.as_ref().get(end - AUTH_DATA_LEN..end)?;
        bytes.try_into().ok()
    }

    /// Whether the checksum is right when computed the way `mode` says.
    #[must_use]
    pub fn verify_checksum(&self, ph: PseudoHeader, mode: ChecksumMode) -> bool {
        let Ok(len) = self.message_len() else {
            return false;
        };
        let Some(message) = self.buffer.as_ref().get(..len) else {
            return false;
        };
        let seed = match self.protocol_version() {
            // RFC 3768 §5.3.8: the VRRP message only.
            Ok(Version::V2) => 0,
            // RFC 5798 §5.2.8: with the pseudo-header.
            Ok(Version::V3) => match checksum::v3_seed(ph, mode, len) {
                Some(seed) => seed,
                None => return false,
            },
            Err(_) => return false,
        };
        checksum::compute(seed, message) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version_type(&mut self, version: u8, msg_type: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version << 4) | (msg_type & 0x0f);
    }

    pub fn set_vrid(&mut self, vrid: u8) {
        self.buffer.as_mut()[field::VRID] = vrid;
    }

    pub fn set_priority(&mut self, priority: u8) {
        self.buffer.as_mut()[field::PRIORITY] = priority;
    }

    pub fn set_addr_count(&mut self, count: u8) {
        self.buffer.as_mut()[field::COUNT] = count;
    }

    pub fn set_auth_type(&mut self, auth_type: u8) {
        self.buffer.as_mut()[field::V2_AUTH_TYPE] = auth_type;
    }

    pub fn set_advert_int_secs(&mut self, secs: u8) {
        self.buffer.as_mut()[field::V2_ADVER_INT] = secs;
    }

    /// Writes the 12-bit interval with the reserved bits zero (RFC 5798 §5.2.6).
    pub fn set_max_advert_int_cs(&mut self, centiseconds: u16) {
        let value = centiseconds & MAX_ADVERT_INT_CS;
        self.buffer.as_mut()[field::V3_MAX_ADVER_INT].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Writes the `index`th address; an address of the other family writes nothing.
    pub fn set_address(&mut self, index: usize, addr: IpAddr) {
        let start = field::ADDRESSES + index * self.family.address_len();
        let buf = self.buffer.as_mut();
        match (addr, self.family) {
            (IpAddr::V4(a), Family::V4) => buf[start..start + 4].copy_from_slice(&a.octets()),
            (IpAddr::V6(a), Family::V6) => buf[start..start + 16].copy_from_slice(&a.octets()),
            _ => {}
        }
    }

    pub fn set_auth_data(&mut self, data: &[u8; AUTH_DATA_LEN]) {
        let start = field::ADDRESSES + usize::from(self.addr_count()) * self.family.address_len();
        self.buffer.as_mut()[start..start + AUTH_DATA_LEN].copy_from_slice(data);
    }

    /// Computes and stores the checksum the way `mode` says.
    ///
    /// # Errors
    /// As [`Packet::check_len`]; `PseudoHeaderFamilies` when `ph` mixes families for VRRPv3.
    pub fn fill_checksum(&mut self, ph: PseudoHeader, mode: ChecksumMode) -> Result<(), WireError> {
        self.check_len()?;
        let len = self.message_len()?;
        let seed = match self.protocol_version()? {
            // RFC 3768 §5.3.8
            Version::V2 => 0,
            // RFC 5798 §5.2.8
            Version::V3 => {
                checksum::v3_seed(ph, mode, len).ok_or(WireError::PseudoHeaderFamilies)?
            }
        };
        self.set_checksum(0);
        let value = checksum::compute(seed, &self.buffer.as_ref()[..len]);
        self.set_checksum(value);
        Ok(())
    }
}

/// The virtual addresses an advertisement lists; one family per message (RFC 5798 §5.2.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addresses {
    V4(Vec<Ipv4Addr>),
    V6(Vec<Ipv6Addr>),
}

impl Addresses {
    #[must_use]
    pub fn family(&self) -> Family {
        match self {
            Self::V4(_) => Family::V4,
            Self::V6(_) => Family::V6,
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::V4(list) => list.len(),
            Self::V6(list) => list.len(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = match self {
            Self::V4(list) => list.as_slice(),
            Self::V6(_) => &[],
        };
        let v6 = match self {
            Self::V6(list) => list.as_slice(),
            Self::V4(_) => &[],
        };
        v4.iter()
            .map(|a| IpAddr::V4(*a))
            .chain(v6.iter().map(|a| IpAddr::V6(*a)))
    }
}

/// What differs between the versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RFC 3768: interval in whole seconds, and the auth fields keepalived still uses.
    V2 {
        auth_type: u8,
        auth_data: [u8; AUTH_DATA_LEN],
        advert_int_secs: u8,
    },
    /// RFC 5798 / 9568: interval in centiseconds.
    V3 { max_advert_int_cs: u16 },
}

/// A parsed advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub vrid: u8,
    pub priority: u8,
    pub kind: Kind,
    pub addresses: Addresses,
}

impl Repr {
    /// Parses an advertisement; the checksum is checked separately, since it needs the IP
    /// header ([`Packet::verify_checksum`]).
    ///
    /// # Errors
    /// As [`Packet::check_len`], and `UnknownType` for anything but an advertisement.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, WireError> {
        packet.check_len()?;
        let version = packet.protocol_version()?;
        if packet.msg_type() != TYPE_ADVERTISEMENT {
            return Err(WireError::UnknownType {
                msg_type: packet.msg_type(),
            });
        }
        let count = usize::from(packet.addr_count());
        let addresses = match packet.family() {
            Family::V4 => Addresses::V4(
                (0..count)
                    .filter_map(|i| match packet.address(i) {
                        Some(IpAddr::V4(a)) => Some(a),
                        _ => None,
                    })
                    .collect(),
            ),
            Family::V6 => Addresses::V6(
                (0..count)
                    .filter_map(|i| match packet.address(i) {
                        Some(IpAddr::V6(a)) => Some(a),
                        _ => None,
                    })
                    .collect(),
            ),
        };
        let kind = match version {
            Version::V2 => Kind::V2 {
                auth_type: packet.auth_type(),
                auth_data: packet.auth_data().unwrap_or_default(),
                advert_int_secs: packet.advert_int_secs(),
            },
            Version::V3 => Kind::V3 {
                max_advert_int_cs: packet.max_advert_int_cs(),
            },
        };
        Ok(Self {
            vrid: packet.vrid(),
            priority: packet.priority(),
            kind,
            addresses,
        })
    }

    #[must_use]
    pub fn version(&self) -> Version {
        match self.kind {
            Kind::V2 { .. } => Version::V2,
            Kind::V3 { .. } => Version::V3,
        }
    }

    /// The advertisement interval the sender announces.
    #[must_use]
    pub fn advert_interval(&self) -> std::time::Duration {
        match self.kind {
            Kind::V2 {
                advert_int_secs, ..
            } => std::time::Duration::from_secs(u64::from(advert_int_secs)),
            Kind::V3 { max_advert_int_cs } => {
                std::time::Duration::from_millis(u64::from(max_advert_int_cs) * 10)
            }
        }
    }

    /// Bytes [`Repr::emit`] writes.
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        let addresses = self.addresses.len() * self.addresses.family().address_len();
        match self.kind {
            Kind::V2 { .. } => HEADER_LEN + addresses + AUTH_DATA_LEN,
            Kind::V3 { .. } => HEADER_LEN + addresses,
        }
    }

    /// Writes the advertisement and its checksum into `packet`, whose buffer must be at least
    /// [`Repr::buffer_len`] long and whose family must be that of the addresses.
    ///
    /// # Errors
    /// `Truncated` for a short buffer; `TooManyAddresses`, `AdvertIntervalTooLarge`,
    /// `V2OverIpv6` for what the header cannot express; `PseudoHeaderFamilies`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        ph: PseudoHeader,
        mode: ChecksumMode,
    ) -> Result<(), WireError> {
        let count =
            u8::try_from(self.addresses.len()).map_err(|_| WireError::TooManyAddresses {
                count: self.addresses.len(),
            })?;
        let len = packet.buffer.as_ref().len();
        let needed = self.buffer_len();
        if len < needed {
            return Err(WireError::Truncated { len, needed });
        }
        packet.family = self.addresses.family();
        packet.buffer.as_mut()[..needed].fill(0);
        match self.kind {
            Kind::V2 {
                auth_type,
                auth_data,
                advert_int_secs,
            } => {
                if packet.family == Family::V6 {
                    return Err(WireError::V2OverIpv6);
                }
                packet.set_version_type(2, TYPE_ADVERTISEMENT);
                packet.set_addr_count(count);
                packet.set_auth_type(auth_type);
                packet.set_advert_int_secs(advert_int_secs);
                packet.set_auth_data(&auth_data);
            }
            Kind::V3 { max_advert_int_cs } => {
                if max_advert_int_cs > MAX_ADVERT_INT_CS {
                    return Err(WireError::AdvertIntervalTooLarge {
                        centiseconds: max_advert_int_cs,
                    });
                }
                packet.set_version_type(3, TYPE_ADVERTISEMENT);
                packet.set_addr_count(count);
                packet.set_max_advert_int_cs(max_advert_int_cs);
            }
        }
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        for (i, addr) in self.addresses.iter().enumerate() {
            packet.set_address(i, addr);
        }
        packet.fill_checksum(ph, mode)
    }

    /// Convenience for the I/O layer: the advertisement as a fresh buffer.
    ///
    /// # Errors
    /// As [`Repr::emit`].
    pub fn to_bytes(&self, ph: PseudoHeader, mode: ChecksumMode) -> Result<Vec<u8>, WireError> {
        let mut packet = Packet::new_unchecked(vec![0; self.buffer_len()], self.addresses.family());
        self.emit(&mut packet, ph, mode)?;
        Ok(packet.into_inner())
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
