//! VRRPv2 over `IPsec` AH (`auth_type AH`), as keepalived speaks it (RFC 2338 §5.3.6.3, RFC 2402,
//! keepalived's `vrrp_ipsecah.c`): the advert travels in an IPv4 packet of protocol 51 whose
//! Authentication Header carries HMAC-MD5-96 (RFC 2403) over the IP header (mutable fields
//! zeroed), the AH header and the VRRP message, keyed with the 8-byte `auth_pass`.
//!
//! As keepalived does it, with no security association to negotiate: the SPI is the sender's
//! address, and the sequence number is an anti-replay counter the routers share. Each advert
//! round raises it; a received advert must carry a higher one than any seen before, and
//! raises ours to it, so a backup that takes over goes on above the old master's. RFC 3768
//! removed authentication; keepalived kept it, and its peers configured for AH drop anything
//! else.

use std::net::Ipv4Addr;
use std::ops::Range;

use hmac::{Hmac, Mac as _};
use md5::Md5;

use crate::vrrp::auth::{AUTH_DATA_LEN, Password};
use crate::vrrp::checksum::PROTOCOL as IPPROTO_VRRP;
use crate::vrrp::validate::TTL;

/// IP protocol number of the Authentication Header.
pub const IPPROTO_AH: u8 = 51;
/// The AH header: next header, payload length, reserved, SPI, sequence number, and the 96-bit
/// ICV (RFC 2402 §2).
pub const AH_LEN: usize = 24;
const IPV4_LEN: usize = 20;
const ICV_LEN: usize = 12;
/// RFC 2402 §2.2: the AH length in 32-bit words, minus 2.
const PAYLOAD_LEN: u8 = 4;
const _: () = assert!(PAYLOAD_LEN as usize == AH_LEN / 4 - 2);
/// keepalived's IP precedence for adverts (`IPTOS_PREC_INTERNETCONTROL`).
const TOS_INTERNETCONTROL: u8 = 0xc0;

/// Why a received AH datagram is not an advert for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AhError {
    #[error("truncated or malformed IPv4 / AH header")]
    Malformed,
    /// An AH packet for another protocol: not ours, ignored as keepalived ignores it.
    #[error("AH for IP protocol {0}, not VRRP")]
    NotVrrp(u8),
    /// Another virtual router's advert on the same segment; its key is not ours to check.
    #[error("advert for VRID {0}")]
    OtherVrid(u8),
    #[error("the HMAC-MD5-96 does not match (another password, or a changed packet)")]
    BadIcv,
    #[error("SPI {spi:#x} is not the source address")]
    BadSpi { spi: u32 },
    #[error("sequence number {received} not above {seen}: a replay, dropped")]
    Replay { received: u32, seen: u32 },
}

/// One instance's AH state: its key, the shared sequence counter, and the IP ID of its adverts.
pub struct Ah {
    key: [u8; AUTH_DATA_LEN],
    vrid: u8,
    /// Unicast adverts also exclude the TTL from the ICV, as keepalived's do.
    unicast: bool,
    seq: u32,
    ip_id: u16,
}

impl std::fmt::Debug for Ah {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ah")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Ah {
    #[must_use]
    pub fn new(key: &Password, vrid: u8, unicast: bool) -> Self {
        Self {
            key: *key.as_bytes(),
            vrid,
            unicast,
            seq: 0,
            ip_id: 0,
        }
    }

    /// Starts an advert round: one sequence number and IP ID for every destination of it.
    pub fn next_round(&mut self) {
        // keepalived stops at 0xfffffffd (136 years of 1 s adverts) rather than wrap.
        if self.seq < 0xffff_fffd {
            self.seq += 1;
        }
        // The kernel would fill in an ID of 0, and the ICV covers it.
        self.ip_id = self.ip_id.wrapping_add(1).max(1);
    }

    /// The datagram for one advert of this round, IPv4 header included (sent with
    /// `IP_HDRINCL`; the kernel fills in only the header checksum, which the ICV leaves out).
    #[must_use]
    pub fn seal(&self, src: Ipv4Addr, dst: Ipv4Addr, vrrp: &[u8]) -> Vec<u8> {
        let total = IPV4_LEN + AH_LEN + vrrp.len();
        let mut p = Vec::with_capacity(total);
        p.extend_from_slice(&[0x45, TOS_INTERNETCONTROL]);
        p.extend_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
        p.extend_from_slice(&self.ip_id.to_be_bytes());
        p.extend_from_slice(&[0, 0, TTL, IPPROTO_AH, 0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&[IPPROTO_VRRP, PAYLOAD_LEN, 0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&[0; ICV_LEN]);
        p.extend_from_slice(vrrp);
        let icv = self.icv(&p, IPV4_LEN);
        p[IPV4_LEN + 12..IPV4_LEN + AH_LEN].copy_from_slice(&icv);
        p
    }

    /// Checks a received datagram (from its IPv4 header on) and returns where its VRRP message
    /// lies. A valid advert raises the sequence counter to its own.
    ///
    /// # Errors
    /// The datagram is malformed, not for this VRID, or fails authentication or anti-replay.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Range<usize>, AhError> {
        let header_len = usize::from(datagram.first().ok_or(AhError::Malformed)? & 0x0f) * 4;
        let vrrp_at = header_len + AH_LEN;
        if header_len < IPV4_LEN || datagram.len() < vrrp_at + 2 || datagram[9] != IPPROTO_AH {
            return Err(AhError::Malformed);
        }
        let ah = &datagram[header_len..vrrp_at];
        if ah[0] != IPPROTO_VRRP {
            return Err(AhError::NotVrrp(ah[0]));
        }
        if ah[1] != PAYLOAD_LEN {
            return Err(AhError::Malformed);
        }
        // RFC 3768 §5.3.3: the VRID is the message's second octet.
        if datagram[vrrp_at + 1] != self.vrid {
            return Err(AhError::OtherVrid(datagram[vrrp_at + 1]));
        }
        let expected = self.icv(datagram, header_len);
        // Constant time, so timing does not reveal how much of a forged ICV was right.
        let diff = ah[12..]
            .iter()
            .zip(&expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if std::hint::black_box(diff) != 0 {
            return Err(AhError::BadIcv);
        }
        let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if ah[4..8] != datagram[12..16] {
            return Err(AhError::BadSpi {
                spi: word(&ah[4..8]),
            });
        }
        let received = word(&ah[8..12]);
        if received <= self.seq {
            return Err(AhError::Replay {
                received,
                seen: self.seq,
            });
        }
        self.seq = received;
        Ok(vrrp_at..datagram.len())
    }

    /// HMAC-MD5-96 of `packet` (IPv4 header of `header_len`, AH, VRRP) with the mutable IP
    /// fields and the ICV taken as zero (RFC 2402 §3.3.3.1).
    fn icv(&self, packet: &[u8], header_len: usize) -> [u8; ICV_LEN] {
        let mut head = packet[..header_len + AH_LEN].to_vec();
        head[1] = 0; // TOS
        head[6] = 0; // flags and fragment offset
        head[7] = 0;
        head[10] = 0; // header checksum
        head[11] = 0;
        if self.unicast {
            head[8] = 0;
        }
        head[header_len + 12..].fill(0);
        let mut mac = <Hmac<Md5> as hmac::digest::KeyInit>::new_from_slice(&self.key)
            .expect("any key length");
        mac.update(&head);
        mac.update(&packet[header_len + AH_LEN..]);
        let full = mac.finalize().into_bytes();
        let mut icv = [0; ICV_LEN];
        icv.copy_from_slice(&full[..ICV_LEN]);
        icv
    }
}

#[cfg(test)]
#[path = "ah_tests.rs"]
mod tests;
