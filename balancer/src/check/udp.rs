//! `UDP_CHECK` (`keepalived/check/check_udp.c`, `core/layer4.c` `udp_bind_connect`,
//! `udp_socket_state`): a datagram is sent from a connected socket, `payload` or keepalived's
//! 32 octets of "keepalived check - ...". Then, within `connect_timeout`:
//!
//! - an ICMP error (port unreachable is the usual one) fails the check;
//! - an answer passes it, unless `require_reply` gave octets the answer must start with (hex
//!   digits, `x` for any nibble), in which case its length must lie within
//!   `min_reply_length` ..= `max_reply_length` (default 0 ..= 255) and its first octets
//!   match;
//! - silence passes, unless `require_reply` is set.

use crate::check::tcp::Connect;
use crate::check::{Attempt, Probe};

/// What keepalived sends without a `payload` (`set_buf` of `UDP_BUFSIZE` octets).
#[must_use]
pub fn default_payload(len: usize) -> Vec<u8> {
    b"keepalived check - "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// keepalived's `UDP_BUFSIZE`.
const DEFAULT_PAYLOAD_LEN: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("{value:?}: expected hexadecimal octets (spaces allowed{})", if *.wildcards { ", x for any nibble" } else { "" })]
    Invalid { value: String, wildcards: bool },
    #[error("min_reply_length {min} > max_reply_length {max}: every answer would fail")]
    Lengths { min: u16, max: u16 },
}

/// Octets to compare, with the bits that may be anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pattern {
    pub octets: Vec<u8>,
    /// Set bits are wildcards.
    pub mask: Vec<u8>,
}

impl Pattern {
    /// Parses keepalived's hex strings (`lib/parser.c` `read_hex_str`): pairs of digits, or a
    /// single digit standing alone before a space; spaces between octets; with `wildcards`,
    /// `x` for a nibble that may be anything.
    ///
    /// # Errors
    /// Another character, or no octet at all.
    pub fn parse(value: &str, wildcards: bool) -> Result<Self, HexError> {
        let bad = || HexError::Invalid {
            value: value.to_owned(),
            wildcards,
        };
        let nibble = |c: char| -> Option<(u8, u8)> {
            if wildcards && c.eq_ignore_ascii_case(&'x') {
                return Some((0, 0x0f));
            }
            c.to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
                .map(|d| (d, 0))
        };
        let mut pattern = Self::default();
        let mut chars = value.chars().peekable();
        loop {
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            let Some(first) = chars.next() else { break };
            let (mut octet, mut mask) = nibble(first).ok_or_else(bad)?;
            if let Some(second) = chars.next_if(|c| *c != ' ' && *c != '\t') {
                let (low, low_mask) = nibble(second).ok_or_else(bad)?;
                octet = octet << 4 | low;
                mask = mask << 4 | low_mask;
            }
            pattern.octets.push(octet);
            pattern.mask.push(mask);
        }
        if pattern.octets.is_empty() {
            return Err(bad());
        }
        Ok(pattern)
    }

    /// Whether `data` starts as the pattern does, over the shorter of the two
    /// (`check_udp_reply` compares only that many octets).
    #[must_use]
    pub fn matches(&self, data: &[u8]) -> bool {
        data.iter()
            .zip(self.octets.iter().zip(&self.mask))
            .all(|(d, (o, m))| (d ^ o) & !m == 0)
    }
}

/// `UDP_CHECK`.
#[derive(Clone, Debug)]
pub struct UdpCheck {
    pub connect: Connect,
    /// `payload`; keepalived's 32 octets without it.
    pub payload: Vec<u8>,
    /// `require_reply`: silence fails.
    pub require_reply: bool,
    /// `require_reply HEX`: what the answer starts with.
    pub reply: Option<Pattern>,
    /// `min_reply_length`, `max_reply_length`: checked only with a reply pattern, as
    /// keepalived does.
    pub reply_len: std::ops::RangeInclusive<u16>,
}

impl UdpCheck {
    /// A check with keepalived's defaults.
    #[must_use]
    pub fn new(connect: Connect) -> Self {
        Self {
            connect,
            payload: default_payload(DEFAULT_PAYLOAD_LEN),
            require_reply: false,
            reply: None,
            reply_len: 0..=u16::from(u8::MAX),
        }
    }

    async fn exchange(&self) -> Result<(), String> {
        let to = self.connect.to;
        let socket = self
            .connect
            .udp()
            .map_err(|e| format!("socket to {to}: {e}"))?;
        socket
            .send(&self.payload)
            .await
            .map_err(|e| format!("send to {to}: {e}"))?;
        // One more than the longest acceptable answer, so that a longer one is seen as such.
        let mut buf = vec![0; usize::from(*self.reply_len.end()) + 1];
        match tokio::time::timeout(self.connect.timeout, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => match &self.reply {
                Some(pattern) => {
                    let answer = &buf[..n];
                    if !u16::try_from(n).is_ok_and(|n| self.reply_len.contains(&n)) {
                        Err(format!(
                            "answer from {to}: {n} octets, expected {}..={}",
                            self.reply_len.start(),
                            self.reply_len.end()
                        ))
                    } else if pattern.matches(answer) {
                        Ok(())
                    } else {
                        Err(format!("answer from {to}: {answer:02x?} does not match"))
                    }
                }
                None => Ok(()),
            },
            // The ICMP error the kernel reports on the connected socket.
            Ok(Err(e)) => Err(format!("answer from {to}: {e}")),
            Err(_) if self.require_reply => Err(format!(
                "no answer from {to} within {:?}",
                self.connect.timeout
            )),
            Err(_) => Ok(()),
        }
    }
}

impl Probe for UdpCheck {
    fn attempt(&self) -> Attempt<'_> {
        Box::pin(async move { self.exchange().await.into() })
    }

    fn describe(&self) -> String {
        format!("UDP_CHECK {}", self.connect.to)
    }
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
