//! `PING_CHECK` (`keepalived/check/check_ping.c`): an ICMP (or ICMPv6) echo request with
//! keepalived's 128 octets of payload and a sequence number that grows with each attempt;
//! the check passes when the echo reply with that sequence number comes back within
//! `connect_timeout`.
//!
//! keepalived uses an unprivileged ping socket (`SOCK_DGRAM`, `IPPROTO_ICMP`), for which the
//! kernel chooses the identifier and hands over only the replies to it, and widens
//! `net.ipv4.ping_group_range` so that it may. We do not change a sysctl: where the range
//! refuses a ping socket, a raw socket (root has `CAP_NET_RAW`) takes its place, with an
//! identifier of our own that replies are filtered on.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use socket2::{Protocol, Type};
use tokio::net::UdpSocket;

use crate::check::tcp::Connect;
use crate::check::udp::default_payload;
use crate::check::{Attempt, Probe};

/// keepalived's `ICMP_BUFSIZE`.
const PAYLOAD_LEN: usize = 128;
/// ICMP echo header: type, code, checksum, identifier, sequence (RFC 792, RFC 4443 §4).
const HEADER_LEN: usize = 8;

/// `PING_CHECK`.
#[derive(Debug)]
pub struct PingCheck {
    pub connect: Connect,
    /// The last sequence number sent.
    sequence: AtomicU16,
    /// The identifier of a raw socket's requests.
    id: u16,
}

/// The socket and whether the kernel filters replies for us.
struct Pinger {
    socket: UdpSocket,
    raw: bool,
}

impl PingCheck {
    #[must_use]
    pub fn new(connect: Connect) -> Self {
        Self {
            connect,
            sequence: AtomicU16::new(0),
            id: fastrand::u16(..),
        }
    }

    fn protocol(&self) -> Protocol {
        if self.connect.to.is_ipv4() {
            Protocol::ICMPV4
        } else {
            Protocol::ICMPV6
        }
    }

    fn open(&self) -> io::Result<Pinger> {
        let (socket, raw) = match self.connect.socket(Type::DGRAM, self.protocol()) {
            Ok(s) => (s, false),
            // `ping_group_range` leaves our group out.
            Err(e) if matches!(e.kind(), io::ErrorKind::PermissionDenied) => {
                (self.connect.socket(Type::RAW, self.protocol())?, true)
            }
            Err(e) => return Err(e),
        };
        if let Some(ip) = self.connect.bind_ip {
            socket.bind(&std::net::SocketAddr::new(ip, 0).into())?;
        }
        // Connected: only the real's packets are received.
        socket.connect(&std::net::SocketAddr::new(self.connect.to.ip(), 0).into())?;
        // A datagram socket as far as tokio is concerned: send and recv are all we need.
        Ok(Pinger {
            socket: UdpSocket::from_std(socket.into())?,
            raw,
        })
    }

    /// The echo request (RFC 792 "Echo or Echo Reply Message", RFC 4443 §4.1).
    fn request(&self, sequence: u16) -> Vec<u8> {
        let v4 = self.connect.to.is_ipv4();
        let mut packet = Vec::with_capacity(HEADER_LEN + PAYLOAD_LEN);
        packet.extend_from_slice(&[if v4 { 8 } else { 128 }, 0, 0, 0]);
        packet.extend_from_slice(&self.id.to_be_bytes());
        packet.extend_from_slice(&sequence.to_be_bytes());
        packet.extend_from_slice(&default_payload(PAYLOAD_LEN));
        if v4 {
            // The kernel computes ICMPv6 checksums (RFC 3542 §3.1) but not a raw ICMPv4 one.
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        packet
    }

    /// Whether `datagram` is the reply to `sequence`.
    fn is_reply(&self, raw: bool, datagram: &[u8], sequence: u16) -> bool {
        let v4 = self.connect.to.is_ipv4();
        // A raw ICMPv4 socket receives the IP header too (its length in the first octet).
        let icmp = if raw && v4 {
            let header = usize::from(datagram.first().map_or(0, |b| b & 0x0f)) * 4;
            datagram.get(header..).unwrap_or_default()
        } else {
            datagram
        };
        if icmp.len() < HEADER_LEN {
            return false;
        }
        let echo_reply = if v4 { 0 } else { 129 };
        let id = u16::from_be_bytes([icmp[4], icmp[5]]);
        let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
        // The kernel matches a ping socket's replies to its identifier itself.
        icmp[0] == echo_reply && seq == sequence && (!raw || id == self.id)
    }

    async fn exchange(&self) -> Result<(), String> {
        let to = self.connect.to.ip();
        let pinger = self
            .open()
            .map_err(|e| format!("ICMP socket to {to}: {e}"))?;
        let sequence = self
            .sequence
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        pinger
            .socket
            .send(&self.request(sequence))
            .await
            .map_err(|e| format!("echo request to {to}: {e}"))?;
        let mut buf = [0; 60 + HEADER_LEN + PAYLOAD_LEN];
        let wait = async {
            loop {
                let n = pinger
                    .socket
                    .recv(&mut buf)
                    .await
                    .map_err(|e| format!("echo reply from {to}: {e}"))?;
                if self.is_reply(pinger.raw, &buf[..n], sequence) {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(self.connect.timeout, wait)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no echo reply from {to} within {:?}",
                    self.connect.timeout
                ))
            })
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum::<u32>();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

impl Probe for PingCheck {
    fn attempt(&self) -> Attempt<'_> {
        Box::pin(async move { self.exchange().await.into() })
    }

    fn describe(&self) -> String {
        format!("PING_CHECK {}", self.connect.to.ip())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::check::Verdict;

    fn check(to: &str) -> PingCheck {
        PingCheck::new(Connect {
            to: std::net::SocketAddr::new(to.parse().unwrap(), 0),
            bind_ip: None,
            bind_port: None,
            timeout: Duration::from_secs(1),
            fwmark: None,
        })
    }

    #[test]
    fn the_checksum_is_rfc_1071_s() {
        // RFC 1071 §3's example: 0001 f203 f4f5 f6f7 sums to ddf2, complemented 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        let c = check("127.0.0.1");
        let request = c.request(7);
        assert_eq!(
            checksum(&request),
            0,
            "a packet with its checksum sums to zero"
        );
        assert_eq!(&request[..2], [8, 0]);
        assert_eq!(&request[6..8], [0, 7]);
        assert_eq!(request.len(), HEADER_LEN + PAYLOAD_LEN);
    }

    #[test]
    fn only_the_echo_reply_to_the_last_request_counts() {
        let c = check("127.0.0.1");
        let mut reply = c.request(3);
        reply[0] = 0;
        assert!(c.is_reply(false, &reply, 3));
        assert!(!c.is_reply(false, &reply, 4), "another sequence");
        assert!(!c.is_reply(false, &c.request(3), 3), "an echo request");
        assert!(!c.is_reply(false, &reply[..7], 3), "too short");
        // A raw socket sees the IPv4 header and anybody's replies.
        let mut with_ip = vec![0x45];
        with_ip.extend_from_slice(&[0; 19]);
        with_ip.extend_from_slice(&reply);
        assert!(c.is_reply(true, &with_ip, 3));
        let other = PingCheck {
            id: c.id.wrapping_add(1),
            ..check("127.0.0.1")
        };
        assert!(!other.is_reply(true, &with_ip, 3), "another identifier");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn loopback_answers_when_we_may_ping() {
        // Needs a ping socket (ping_group_range) or root for a raw one.
        let c = check("127.0.0.1");
        match c.open() {
            Ok(_) => assert_eq!(c.attempt().await, Verdict::UP),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
        }
        assert_eq!(c.sequence.load(Ordering::Relaxed) > 0, c.open().is_ok());
    }
}
