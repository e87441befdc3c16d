//! IPVS's generic netlink family (`linux/ip_vs.h`): its commands and attributes, and a
//! blocking socket that sends one request and reads its answer (an acknowledgement, or a
//! dump's messages).
//!
//! Framing comes from the `netlink-packet-*` crates; only IPVS's own attribute numbers and
//! layouts are written here, as the kernel header defines them.

use std::{io, net::IpAddr};

use netlink_packet_core::{
    DecodeError, Emitable, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, Nla, NlasIterator, ParseableParametrized,
};
use netlink_packet_generic::{
    GenlFamily, GenlHeader, GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

/// `IPVS_CMD_*`.
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    pub const NEW_DAEMON: u8 = 9;
    pub const DEL_DAEMON: u8 = 10;
    pub const GET_DAEMON: u8 = 11;
    pub const SET_CONFIG: u8 = 12;
    pub const FLUSH: u8 = 17;
}

/// `IPVS_CMD_ATTR_*`.
pub mod attr {
    pub const SERVICE: u16 = 1;
    pub const DEST: u16 = 2;
    pub const DAEMON: u16 = 3;
    pub const TIMEOUT_TCP: u16 = 4;
    pub const TIMEOUT_TCP_FIN: u16 = 5;
    pub const TIMEOUT_UDP: u16 = 6;
}

/// `IPVS_SVC_ATTR_*`.
pub mod svc {
    pub const AF: u16 = 1;
    pub const PROTOCOL: u16 = 2;
    pub const ADDR: u16 = 3;
    pub const PORT: u16 = 4;
    pub const FWMARK: u16 = 5;
    pub const SCHED_NAME: u16 = 6;
    pub const FLAGS: u16 = 7;
    pub const TIMEOUT: u16 = 8;
    pub const NETMASK: u16 = 9;
    pub const STATS64: u16 = 12;
}

/// `IPVS_DEST_ATTR_*`.
pub mod dest {
    pub const ADDR: u16 = 1;
    pub const PORT: u16 = 2;
    pub const FWD_METHOD: u16 = 3;
    pub const WEIGHT: u16 = 4;
    pub const U_THRESH: u16 = 5;
    pub const L_THRESH: u16 = 6;
    pub const ACTIVE_CONNS: u16 = 7;
    pub const INACT_CONNS: u16 = 8;
    pub const ADDR_FAMILY: u16 = 11;
    pub const STATS64: u16 = 12;
    pub const TUN_TYPE: u16 = 13;
}

/// `IPVS_DAEMON_ATTR_*`, and the daemons' states (`IP_VS_STATE_*`).
pub mod daemon {
    pub const STATE: u16 = 1;
    pub const MCAST_IFN: u16 = 2;
    pub const SYNC_ID: u16 = 3;
    pub const SYNC_MAXLEN: u16 = 4;
    pub const MCAST_GROUP: u16 = 5;
    pub const MCAST_GROUP6: u16 = 6;
    pub const MCAST_PORT: u16 = 7;
    pub const MCAST_TTL: u16 = 8;
    pub const MASTER: u32 = 1;
    pub const BACKUP: u32 = 2;
}

/// `IPVS_STATS_ATTR_*`.
pub mod stats {
    pub const CONNS: u16 = 1;
    pub const INPKTS: u16 = 2;
    pub const INBYTES: u16 = 4;
    pub const CPS: u16 = 6;
    pub const INPPS: u16 = 7;
    pub const INBPS: u16 = 9;
}

/// `IP_VS_SVC_F_*`.
pub mod flags {
    pub const PERSISTENT: u32 = 0x1;
    pub const ONEPACKET: u32 = 0x4;
    /// `sh-port` and `mh-port`: the schedulers' second flag.
    pub const SCHED_PORT: u32 = 0x10;
}

/// `IP_VS_CONN_F_*` forwarding methods.
pub mod fwd {
    pub const MASQ: u32 = 0;
    pub const TUNNEL: u32 = 2;
    pub const DROUTE: u32 = 3;
    pub const MASK: u32 = 7;
}

const FAMILY: &str = "IPVS";
const VERSION: u8 = 1;

/// One attribute as it is sent; ports are in network order, as IPVS takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    U8(u16, u8),
    U16(u16, u16),
    Be16(u16, u16),
    U32(u16, u32),
    Bytes(u16, Vec<u8>),
    Str(u16, String),
    Nested(u16, Vec<Attr>),
}

impl Attr {
    /// An address as `union nf_inet_addr`: 16 bytes, IPv4 in the first four.
    #[must_use]
    pub fn addr(kind: u16, addr: IpAddr) -> Self {
        let mut bytes = vec![0; 16];
        match addr {
            IpAddr::V4(a) => bytes[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => bytes.copy_from_slice(&a.octets()),
        }
        Self::Bytes(kind, bytes)
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Self::U8(..) => 1,
            Self::U16(..) | Self::Be16(..) => 2,
            Self::U32(..) => 4,
            Self::Bytes(_, b) => b.len(),
            Self::Str(_, s) => s.len() + 1,
            Self::Nested(_, attrs) => attrs.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::U8(k, _)
            | Self::U16(k, _)
            | Self::Be16(k, _)
            | Self::U32(k, _)
            | Self::Bytes(k, _)
            | Self::Str(k, _)
            | Self::Nested(k, _) => *k,
        }
    }

    fn is_nested(&self) -> bool {
        matches!(self, Self::Nested(..))
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::U8(_, v) => buffer[0] = *v,
            Self::U16(_, v) => buffer[..2].copy_from_slice(&v.to_ne_bytes()),
            Self::Be16(_, v) => buffer[..2].copy_from_slice(&v.to_be_bytes()),
            Self::U32(_, v) => buffer[..4].copy_from_slice(&v.to_ne_bytes()),
            Self::Bytes(_, b) => buffer[..b.len()].copy_from_slice(b),
            Self::Str(_, s) => {
                buffer[..s.len()].copy_from_slice(s.as_bytes());
                buffer[s.len()] = 0;
            }
            Self::Nested(_, attrs) => attrs.as_slice().emit(buffer),
        }
    }
}

/// An IPVS message: a command with attributes when sent, with its raw attributes when
/// received (read with [`Attrs`]).
#[derive(Debug, Clone)]
pub struct IpvsMessage {
    pub cmd: u8,
    pub attrs: Vec<Attr>,
    pub raw: Vec<u8>,
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        FAMILY
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(Self {
            cmd: header.cmd,
            attrs: Vec::new(),
            raw: buf.to_vec(),
        })
    }
}

/// A received attribute list, by kind.
pub struct Attrs<'a>(Vec<(u16, &'a [u8])>);

impl<'a> Attrs<'a> {
    /// # Errors
    /// The attributes are malformed.
    pub fn parse(buf: &'a [u8]) -> io::Result<Self> {
        let mut out = Vec::new();
        for nla in NlasIterator::new(buf) {
            let nla = nla.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let buf: &'a [u8] = nla.into_inner();
            let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
            let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
            out.push((kind, &buf[4..len.min(buf.len())]));
        }
        Ok(Self(out))
    }

    #[must_use]
    pub fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.0.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
    }

    #[must_use]
    pub fn u16(&self, kind: u16) -> Option<u16> {
        self.get(kind)
            .and_then(|v| Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?)))
    }

    #[must_use]
    pub fn be16(&self, kind: u16) -> Option<u16> {
        self.get(kind)
            .and_then(|v| Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?)))
    }

    #[must_use]
    pub fn u32(&self, kind: u16) -> Option<u32> {
        self.get(kind)
            .and_then(|v| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)))
    }

    #[must_use]
    pub fn u64(&self, kind: u16) -> Option<u64> {
        self.get(kind)
            .and_then(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
    }

    /// An address of family `af` (`AF_INET` or `AF_INET6`).
    #[must_use]
    pub fn addr(&self, kind: u16, af: u16) -> Option<IpAddr> {
        let v = self.get(kind)?;
        if af == AF_INET6 {
            let octets: [u8; 16] = v.get(..16)?.try_into().ok()?;
            Some(IpAddr::from(octets))
        } else {
            let octets: [u8; 4] = v.get(..4)?.try_into().ok()?;
            Some(IpAddr::from(octets))
        }
    }

    #[must_use]
    pub fn string(&self, kind: u16) -> Option<String> {
        let v = self.get(kind)?;
        let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
        Some(String::from_utf8_lossy(&v[..end]).into_owned())
    }
}

#[expect(clippy::cast_possible_truncation, reason = "AF_* constants are small")]
pub const AF_INET: u16 = libc::AF_INET as u16;
#[expect(clippy::cast_possible_truncation, reason = "AF_* constants are small")]
pub const AF_INET6: u16 = libc::AF_INET6 as u16;

/// The address family of `addr`, as IPVS numbers it.
#[must_use]
pub const fn af(addr: IpAddr) -> u16 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// A generic netlink socket bound to the IPVS family.
pub struct Genl {
    socket: Socket,
    family: u16,
    seq: u32,
}

impl Genl {
    /// Opens the socket and resolves the IPVS family; when the kernel has none, loads
    /// `ip_vs` with modprobe once (as keepalived does) and asks again.
    ///
    /// # Errors
    /// No netlink socket, or no IPVS in this kernel.
    pub fn connect() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let mut genl = Self {
            socket,
            family: 0,
            seq: 0,
        };
        genl.family = match genl.resolve() {
            Ok(id) => id,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let _ = std::process::Command::new("modprobe")
                    .arg("ip_vs")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                genl.resolve().map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "the kernel has no IPVS (generic netlink family {FAMILY}: {e}); load it with `modprobe ip_vs`"
                        ),
                    )
                })?
            }
            Err(e) => return Err(e),
        };
        Ok(genl)
    }

    fn resolve(&mut self) -> io::Result<u16> {
        let request = GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY.to_owned())],
        };
        let replies = self.exchange(
            GenlMessage::from_payload(request),
            NLM_F_REQUEST | NLM_F_ACK,
        )?;
        replies
            .iter()
            .flat_map(|m| m.payload.nlas.iter())
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no family id in the answer"))
    }

    /// Sends a command and waits for the kernel's acknowledgement.
    ///
    /// # Errors
    /// The kernel refused it (its errno), or the socket failed.
    pub fn request(&mut self, cmd: u8, attrs: Vec<Attr>) -> io::Result<()> {
        let message = self.message(cmd, attrs);
        self.exchange(message, NLM_F_REQUEST | NLM_F_ACK).map(drop)
    }

    /// Sends a `GET` command as a dump and returns every answer's attributes.
    ///
    /// # Errors
    /// The kernel refused it, or the socket failed.
    pub fn dump(&mut self, cmd: u8, attrs: Vec<Attr>) -> io::Result<Vec<Vec<u8>>> {
        let message = self.message(cmd, attrs);
        Ok(self
            .exchange(message, NLM_F_REQUEST | NLM_F_DUMP)?
            .into_iter()
            .map(|m| m.payload.raw)
            .collect())
    }

    /// Sends a `GET` command for one answer.
    ///
    /// # Errors
    /// The kernel refused it, or the socket failed.
    pub fn get(&mut self, cmd: u8, attrs: Vec<Attr>) -> io::Result<Vec<u8>> {
        let message = self.message(cmd, attrs);
        self.exchange(message, NLM_F_REQUEST)?
            .into_iter()
            .next()
            .map(|m| m.payload.raw)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"))
    }

    fn message(&self, cmd: u8, attrs: Vec<Attr>) -> GenlMessage<IpvsMessage> {
        let mut m = GenlMessage::from_payload(IpvsMessage {
            cmd,
            attrs,
            raw: Vec::new(),
        });
        m.set_resolved_family_id(self.family);
        m
    }

    /// Sends `payload` and reads until its acknowledgement, error or end of dump.
    fn exchange<F>(
        &mut self,
        payload: GenlMessage<F>,
        flags: u16,
    ) -> io::Result<Vec<GenlMessage<F>>>
    where
        F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::from(payload));
        message.finalize();
        let mut buf = vec![0; message.buffer_len()];
        message.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let frame = NetlinkBuffer::new_checked(&data[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = frame.length() as usize;
                let bytes = &data[offset..offset + len];
                offset += len.max(4).next_multiple_of(4);
                let reply = NetlinkMessage::<GenlMessage<F>>::deserialize(bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        Some(_) => return Err(e.to_io()),
                        None => return Ok(out),
                    },
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    NetlinkPayload::Noop | NetlinkPayload::Overrun(_) | _ => {}
                }
            }
        }
    }
}
