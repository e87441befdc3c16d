//! Raw IP protocol 112 sockets, one per instance, bound to its interface: adverts out with
//! TTL / Hop Limit 255 from the instance's primary address, adverts in with the TTL, source
//! and destination the receive checks need.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::ops::Range;
use std::os::fd::AsRawFd as _;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockAddrStorage, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::vrrp::ah::IPPROTO_AH;
use crate::vrrp::checksum::PROTOCOL;
use crate::vrrp::net::ipv4;
use crate::vrrp::validate::{Received, TTL};

/// keepalived's IP precedence for adverts (`IPTOS_PREC_INTERNETCONTROL`), so `QoS` queues treat
/// them as network control.
const TOS_INTERNETCONTROL: u32 = 0xc0;
/// Room for the largest advert: 255 IPv6 addresses and a header (RFC 5798 §5.2).
pub const RECV_BUFFER_LEN: usize = 8192;

/// Where one received advert came from and went to, and where its payload is in the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub payload: Range<usize>,
    /// The whole IPv4 datagram, header included, which AH authenticates (empty for IPv6).
    pub packet: Range<usize>,
}

impl Datagram {
    /// The advert as the receive checks take it, borrowing from the receive buffer.
    #[must_use]
    pub fn received<'a>(&self, buffer: &'a [u8]) -> Received<'a> {
        Received {
            src: self.src,
            dst: self.dst,
            ttl: self.ttl,
            payload: buffer.get(self.payload.clone()).unwrap_or_default(),
        }
    }
}

/// A raw VRRP socket on one interface, for one family.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
    source: IpAddr,
    /// The IP protocol: 112, or 51 for AH, whose datagrams we send with their IP header.
    protocol: u8,
}

impl VrrpSocket {
    /// Opens the socket on `interface` (index `ifindex`), sending from `source` and, when
    /// `group` is given, receiving the multicast adverts sent to it. With `ah` (IPv4 only) the
    /// socket carries IP protocol 51 and sends datagrams built whole by [`crate::vrrp::ah`].
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    /// A socket call fails (most often: no `CAP_NET_RAW`, or no such interface).
    pub fn open(
        interface: &str,
        ifindex: u32,
        source: IpAddr,
        group: Option<IpAddr>,
        ah: bool,
    ) -> io::Result<Self> {
        let domain = match source {
            IpAddr::V4(_) => Domain::IPV4,
            IpAddr::V6(_) => Domain::IPV6,
        };
        let protocol = if ah && source.is_ipv4() {
            IPPROTO_AH
        } else {
            PROTOCOL
        };
        let socket = Socket::new(
            domain,
            Type::RAW.cloexec().nonblocking(),
            Some(Protocol::from(i32::from(protocol))),
        )?;
        if protocol == IPPROTO_AH {
            // The ICV covers the IP header, so we write it (RFC 2402 §3.3.3.1).
            socket.set_header_included_v4(true)?;
        }
        // Only this interface's adverts; another instance with the same VRID elsewhere is
        // another router.
        socket.bind_device(Some(interface.as_bytes()))?;
        let ttl = u32::from(TTL);
        match source {
            IpAddr::V4(_) => {
                // RFC 5798 §5.1.1.3: TTL 255, multicast or unicast.
                socket.set_multicast_ttl_v4(ttl)?;
                socket.set_ttl_v4(ttl)?;
                // Our own adverts must not come back as if another router sent them.
                socket.set_multicast_loop_v4(false)?;
                // Only the groups this socket joined, not every group the host joined.
                socket.set_multicast_all_v4(false)?;
                socket.set_tos_v4(TOS_INTERNETCONTROL)?;
                if let Some(IpAddr::V4(group)) = group {
                    socket.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(ifindex))?;
                }
            }
            IpAddr::V6(_) => {
                // RFC 5798 §5.1.2.3: Hop Limit 255.
                socket.set_multicast_hops_v6(ttl)?;
                socket.set_unicast_hops_v6(ttl)?;
                socket.set_multicast_loop_v6(false)?;
                socket.set_multicast_all_v6(false)?;
                socket.set_multicast_if_v6(ifindex)?;
                socket.set_tclass_v6(TOS_INTERNETCONTROL)?;
                // The IPv6 header is not delivered: the hop limit and destination come as
                // ancillary data.
                socket.set_recv_hoplimit_v6(true)?;
                set_int_option(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
                if let Some(IpAddr::V6(group)) = group {
                    socket.join_multicast_v6(&group, ifindex)?;
                }
            }
        }
        // SAFETY: the Socket owns its descriptor and keeps it open, unchanged, for as long as
        // the AsyncFd owns the Socket.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            fd,
            ifindex,
            source,
            protocol,
        })
    }

    /// Waits for the next datagram and reads it into `buffer`; datagrams that are not
    /// well-formed IP VRRP packets are reported as `InvalidData` so the caller can count and
    /// skip them.
    ///
    /// # Errors
    /// The socket fails, or the datagram is truncated or malformed.
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<Datagram> {
        self.fd
            .async_io(Interest::READABLE, |socket| {
                recv_datagram(socket, buffer, self.protocol)
            })
            .await
    }

    /// Sends one advert (the VRRP message, checksummed; with AH the whole IP datagram) to
    /// `dst` from our source address.
    ///
    /// # Errors
    /// The kernel refuses the datagram (no route, link down, queue full).
    pub async fn send(&self, dst: IpAddr, message: &[u8]) -> io::Result<()> {
        self.fd
            .async_io(Interest::WRITABLE, |socket| {
                send_from(socket, self.source, self.ifindex, dst, message)
            })
            .await
    }
}

fn set_int_option(socket: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    #[expect(clippy::cast_possible_truncation, reason = "size of an int")]
    let len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: a valid descriptor and a pointer to an int of the length given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Control buffer, aligned for `cmsghdr`, large enough for a hop limit and a packet info.
#[repr(C, align(8))]
struct Control([u8; 128]);

#[expect(
    clippy::cast_possible_truncation,
    reason = "ancillary data sizes are a few dozen bytes"
)]
fn cmsg_space<T>() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic.
    unsafe { libc::CMSG_SPACE(size_of::<T>() as u32) as usize }
}

fn recv_datagram(socket: &Socket, buffer: &mut [u8], protocol: u8) -> io::Result<Datagram> {
    let mut control = Control([0; 128]);
    let mut name = SockAddrStorage::zeroed();
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: all-zero is a valid msghdr; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut name).cast();
    msg.msg_namelen = name.size_of();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: msg describes valid, writable buffers of the lengths it states.
    let len = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    let len = usize::try_from(len).map_err(|_| io::Error::last_os_error())?;
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(invalid(format!(
            "datagram longer than {} bytes",
            buffer.len()
        )));
    }
    let data = &buffer[..len];
    // SAFETY: recvmsg filled `name` with msg_namelen bytes of a socket address.
    let from = unsafe { SockAddr::new(name, msg.msg_namelen) };
    match from.as_socket() {
        // RFC 5798 §5.1.1: IPv4 raw sockets deliver the IP header, which carries everything.
        Some(SocketAddr::V4(_)) => {
            let header =
                ipv4::parse_protocol(data, protocol).map_err(|e| invalid(e.to_string()))?;
            Ok(Datagram {
                src: header.src.into(),
                dst: header.dst.into(),
                ttl: header.ttl,
                packet: 0..header.payload.end,
                payload: header.payload,
            })
        }
        Some(SocketAddr::V6(src)) => {
            let (ttl, dst) = ipv6_ancillary(&msg);
            Ok(Datagram {
                src: (*src.ip()).into(),
                dst: dst
                    .ok_or_else(|| invalid("no IPV6_PKTINFO on an IPv6 datagram"))?
                    .into(),
                ttl: ttl.ok_or_else(|| invalid("no IPV6_HOPLIMIT on an IPv6 datagram"))?,
                payload: 0..len,
                packet: 0..0,
            })
        }
        None => Err(invalid("datagram without an IP source address")),
    }
}

/// The hop limit and destination address from an IPv6 datagram's ancillary data.
fn ipv6_ancillary(msg: &libc::msghdr) -> (Option<u8>, Option<Ipv6Addr>) {
    let (mut ttl, mut dst) = (None, None);
    // SAFETY: msg was filled by recvmsg; the CMSG_* walk stays within msg_controllen, and
    // every payload is read unaligned with the size the kernel wrote for its type.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    let hops = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    ttl = u8::try_from(hops).ok();
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    (ttl, dst)
}

fn send_from(
    socket: &Socket,
    source: IpAddr,
    ifindex: u32,
    dst: IpAddr,
    message: &[u8],
) -> io::Result<()> {
    let to = match dst {
        IpAddr::V4(v4) => SockAddr::from(SocketAddr::new(v4.into(), 0)),
        // Link-local destinations (ff02::12, fe80::...) need the interface as their scope.
        IpAddr::V6(v6) => SockAddr::from(SocketAddrV6::new(v6, 0, 0, ifindex)),
    };
    let mut control = Control([0; 128]);
    let mut iov = libc::iovec {
        iov_base: message.as_ptr().cast_mut().cast(),
        iov_len: message.len(),
    };
    // SAFETY: all-zero is a valid msghdr; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = to.as_ptr().cast_mut().cast();
    msg.msg_namelen = to.len();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    // The source address goes in as packet info, so adverts leave from the primary address
    // (which breaks priority ties, RFC 5798 §6.4.3) whatever else the interface holds, while
    // the socket stays unbound and keeps receiving multicast.
    let ifindex_c = i32::try_from(ifindex).map_err(|_| io::ErrorKind::InvalidInput)?;
    let ancillary = match source {
        IpAddr::V4(src) => Ancillary::V4(libc::in_pktinfo {
            ipi_ifindex: ifindex_c,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from_ne_bytes(src.octets()),
            },
            ipi_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(Ipv4Addr::UNSPECIFIED.octets()),
            },
        }),
        IpAddr::V6(src) => Ancillary::V6(libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: src.octets(),
            },
            ipi6_ifindex: ifindex,
        }),
    };
    msg.msg_controllen = match ancillary {
        Ancillary::V4(_) => cmsg_space::<libc::in_pktinfo>(),
        Ancillary::V6(_) => cmsg_space::<libc::in6_pktinfo>(),
    };
    // SAFETY: the control buffer holds one cmsg of the space set above; its header and
    // payload are written within it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        let data = libc::CMSG_DATA(cmsg);
        #[expect(clippy::cast_possible_truncation, reason = "pktinfo is 12 or 20 bytes")]
        match ancillary {
            Ancillary::V4(info) => {
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
                std::ptr::write_unaligned(data.cast(), info);
            }
            Ancillary::V6(info) => {
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
                std::ptr::write_unaligned(data.cast(), info);
            }
        }
    }
    // SAFETY: msg describes valid buffers of the lengths it states.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &raw const msg, libc::MSG_DONTWAIT) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

enum Ancillary {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_range_outside_the_buffer_reads_as_empty() {
        let d = Datagram {
            src: Ipv4Addr::new(198, 18, 1, 2).into(),
            dst: Ipv4Addr::new(224, 0, 0, 18).into(),
            ttl: 255,
            payload: 20..40,
            packet: 0..40,
        };
        assert!(d.received(&[0; 32]).payload.is_empty());
        assert_eq!(d.received(&[7; 40]).payload, &[7; 20]);
    }

    #[test]
    fn control_buffer_holds_the_ancillary_data_we_ask_for() {
        assert!(
            cmsg_space::<libc::c_int>() + cmsg_space::<libc::in6_pktinfo>() <= size_of::<Control>()
        );
        assert!(cmsg_space::<libc::in_pktinfo>() <= size_of::<Control>());
    }
}
