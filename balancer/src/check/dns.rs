//! `DNS_CHECK`: one query over UDP; the real passes when an answer with the query's id comes
//! back with RCODE `NOERROR` (`keepalived/check/check_dns.c`: `dns_make_query`,
//! `dns_recv_thread`). As keepalived, the query asks for recursion, datagrams that are too
//! short for a header, carry another id or are not responses are ignored while the wait goes
//! on, only the header of the answer is read (an empty answer section passes), and
//! `connect_timeout` bounds the whole exchange.

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinDecodable as _;

use crate::check::tcp::Connect;
use crate::check::{Attempt, Probe, Verdict};

/// The types keepalived accepts for `type` (`DNS_TYPE` in `check_dns.c`).
const TYPES: [(&str, RecordType); 9] = [
    ("A", RecordType::A),
    ("NS", RecordType::NS),
    ("CNAME", RecordType::CNAME),
    ("SOA", RecordType::SOA),
    ("MX", RecordType::MX),
    ("TXT", RecordType::TXT),
    ("AAAA", RecordType::AAAA),
    ("RRSIG", RecordType::RRSIG),
    ("DNSKEY", RecordType::DNSKEY),
];

/// keepalived's `DNS_DEFAULT_TYPE`.
pub const DEFAULT_TYPE: RecordType = RecordType::SOA;

/// A DNS answer is at most this long over UDP without EDNS (RFC 1035 §4.2.1); keepalived's
/// buffer is larger, and we only read the header.
const MAX_DATAGRAM: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("type {value:?}: expected one of A, NS, CNAME, SOA, MX, TXT, AAAA, RRSIG, DNSKEY")]
    Type { value: String },
    #[error("name {value:?}: {reason}")]
    Name { value: String, reason: String },
}

/// `type`, case-insensitive as keepalived's `dns_type_lookup`.
///
/// # Errors
/// Not one of keepalived's types.
pub fn query_type(value: &str) -> Result<RecordType, DnsError> {
    TYPES
        .iter()
        .find(|(label, _)| label.eq_ignore_ascii_case(value))
        .map(|(_, t)| *t)
        .ok_or_else(|| DnsError::Type {
            value: value.to_owned(),
        })
}

/// `name`, always absolute (keepalived ends every name with the root label); empty or `.`
/// is the root, keepalived's default.
///
/// # Errors
/// An empty label (`a..b`, `.a`) or a label longer than 63 octets.
pub fn query_name(value: &str) -> Result<Name, DnsError> {
    if value.is_empty() || value == "." {
        return Ok(Name::root());
    }
    let bad = |reason: String| DnsError::Name {
        value: value.to_owned(),
        reason,
    };
    // keepalived's `dns_name_handler` refuses empty labels; hickory would read `.a` as root.
    if value.trim_end_matches('.').split('.').any(str::is_empty) {
        return Err(bad("an empty label".into()));
    }
    let mut name = Name::from_ascii(value).map_err(|e| bad(e.to_string()))?;
    name.set_fqdn(true);
    Ok(name)
}

/// `DNS_CHECK`.
#[derive(Clone, Debug)]
pub struct DnsCheck {
    pub connect: Connect,
    pub query_type: RecordType,
    pub name: Name,
}

impl DnsCheck {
    fn query(&self, id: u16) -> Result<Vec<u8>, String> {
        let mut message = Message::new();
        message
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(self.name.clone(), self.query_type));
        message
            .to_vec()
            .map_err(|e| format!("query {} {}: {e}", self.name, self.query_type))
    }

    async fn exchange(&self) -> Result<(), String> {
        let to = self.connect.to;
        let id = fastrand::u16(..);
        let query = self.query(id)?;
        let socket = self
            .connect
            .udp()
            .map_err(|e| format!("socket to {to}: {e}"))?;
        socket
            .send(&query)
            .await
            .map_err(|e| format!("send to {to}: {e}"))?;
        let mut buf = [0; MAX_DATAGRAM];
        loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| format!("answer from {to}: {e}"))?;
            let Ok(header) = Header::from_bytes(&buf[..n]) else {
                continue;
            };
            if header.id() != id || header.message_type() != MessageType::Response {
                continue;
            }
            return match header.response_code() {
                ResponseCode::NoError => Ok(()),
                code => Err(format!(
                    "{} {}: rcode {code} ({})",
                    self.name,
                    self.query_type,
                    u16::from(code)
                )),
            };
        }
    }
}

impl Probe for DnsCheck {
    fn attempt(&self) -> Attempt<'_> {
        Box::pin(async move {
            match tokio::time::timeout(self.connect.timeout, self.exchange()).await {
                Ok(Ok(())) => Verdict::UP,
                Ok(Err(reason)) => Verdict::down(reason),
                Err(_) => Verdict::down(format!(
                    "{} {}: no answer within {:?}",
                    self.name, self.query_type, self.connect.timeout
                )),
            }
        })
    }

    fn describe(&self) -> String {
        format!("DNS_CHECK {}", self.connect.to)
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
