//! Gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6) that tell the link a
//! virtual address now lives behind our MAC address (RFC 5798 §6.4.2), built as whole Ethernet
//! frames and sent through an `AF_PACKET` socket, as keepalived does for ARP.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use crate::vrrp::checksum;

pub type Mac = [u8; 6];

const BROADCAST: Mac = [0xff; 6];
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETH_HEADER_LEN: usize = 14;
/// RFC 4861 §4.4 flags word: Override, so neighbours replace the MAC they cached.
const NA_FLAG_OVERRIDE: u32 = 0x2000_0000;
/// RFC 4861 §4.4 flags word: Router, for a node that forwards IPv6.
const NA_FLAG_ROUTER: u32 = 0x8000_0000;
const ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// RFC 4861 §4.6.1 Target Link-Layer Address option.
const OPTION_TARGET_LINK_LAYER: u8 = 2;
/// RFC 4861 §7.1.2: a receiver drops a neighbour advertisement whose hop limit is not 255.
const HOP_LIMIT: u8 = 255;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

fn ethernet(dst: Mac, src: Mac, ethertype: u16, payload_len: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETH_HEADER_LEN + payload_len);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// A gratuitous ARP request for `vip` from `mac`: sender and target address are both the VIP
/// (RFC 5227 §3 "ARP Announcement", which keepalived sends), to the broadcast address.
#[must_use]
pub fn arp_announcement(mac: Mac, vip: Ipv4Addr) -> Vec<u8> {
    let mut frame = ethernet(BROADCAST, mac, ETHERTYPE_ARP, 28);
    // RFC 826: Ethernet (1), IPv4, 6-byte and 4-byte addresses, request (1).
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&vip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&vip.octets());
    frame
}

/// An unsolicited neighbour advertisement for `vip` to all nodes (RFC 4861 §7.2.6), from
/// `src` (our link-local address), with Override set and our MAC in the target link-layer
/// option; `router` sets the Router flag, as a node that forwards IPv6 must.
#[must_use]
pub fn neighbour_advertisement(mac: Mac, src: Ipv6Addr, vip: Ipv6Addr, router: bool) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, 0, 0]);
    let flags = NA_FLAG_OVERRIDE | if router { NA_FLAG_ROUTER } else { 0 };
    icmp.extend_from_slice(&flags.to_be_bytes());
    icmp.extend_from_slice(&vip.octets());
    icmp.extend_from_slice(&[OPTION_TARGET_LINK_LAYER, 1]);
    icmp.extend_from_slice(&mac);
    let sum = checksum::ipv6_upper_layer(src, ALL_NODES, ICMPV6, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    // RFC 2464 §7: IPv6 multicast maps to 33:33 and the group's low 32 bits.
    let group = ALL_NODES.octets();
    let dst_mac = [0x33, 0x33, group[12], group[13], group[14], group[15]];
    let mut frame = ethernet(dst_mac, mac, ETHERTYPE_IPV6, 40 + icmp.len());
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    let payload_len = u16::try_from(icmp.len()).unwrap_or(u16::MAX);
    frame.extend_from_slice(&payload_len.to_be_bytes());
    frame.extend_from_slice(&[ICMPV6, HOP_LIMIT]);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&ALL_NODES.octets());
    frame.extend_from_slice(&icmp);
    frame
}

/// An `AF_PACKET` socket that sends whole frames out of one interface and receives nothing.
#[derive(Debug)]
pub struct FrameSender {
    fd: OwnedFd,
    ifindex: i32,
}

impl FrameSender {
    /// # Errors
    /// The socket cannot be created (needs `CAP_NET_RAW`), or `ifindex` does not fit.
    pub fn new(ifindex: u32) -> io::Result<Self> {
        let ifindex = i32::try_from(ifindex).map_err(|_| io::ErrorKind::InvalidInput)?;
        // Protocol 0: the socket is bound to no ethertype, so the kernel queues nothing to it.
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, ifindex })
    }

    /// Sends one Ethernet frame as it is; the destination MAC is in it.
    ///
    /// # Errors
    /// The frame is shorter than an Ethernet header, or the kernel refuses it (the link is down,
    /// the queue is full).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() < ETH_HEADER_LEN {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or_default();
        addr.sll_protocol = u16::from_ne_bytes([frame[12], frame[13]]);
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        #[expect(clippy::cast_possible_truncation, reason = "sockaddr_ll is 20 bytes")]
        let addr_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: the buffer and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                (&raw const addr).cast(),
                addr_len,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The frame announcing `vip`, or `None` for an IPv6 VIP when we have no link-local source.
#[must_use]
pub fn announcement(
    mac: Mac,
    vip: IpAddr,
    link_local: Option<Ipv6Addr>,
    router: bool,
) -> Option<Vec<u8>> {
    match vip {
        IpAddr::V4(v4) => Some(arp_announcement(mac, v4)),
        IpAddr::V6(v6) => link_local.map(|src| neighbour_advertisement(mac, src, v6, router)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [0x02, 0, 0x5e, 0, 1, 7];

    #[test]
    fn arp_announcement_names_the_vip_twice() {
        let f = arp_announcement(MAC, Ipv4Addr::new(198, 18, 1, 100));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[..6], &BROADCAST);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[22..28], &MAC);
        assert_eq!(&f[28..32], &[198, 18, 1, 100]);
        assert_eq!(&f[38..42], &[198, 18, 1, 100]);
    }

    #[test]
    fn neighbour_advertisement_is_valid_icmpv6() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let vip: Ipv6Addr = "fd00:1::100".parse().unwrap();
        let f = neighbour_advertisement(MAC, src, vip, false);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let ip = &f[14..];
        assert_eq!(ip[6], 58);
        assert_eq!(ip[7], 255);
        assert_eq!(&ip[4..6], &[0, 32]);
        let icmp = &ip[40..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4], 0x20, "override only");
        assert_eq!(&icmp[8..24], &vip.octets());
        assert_eq!(&icmp[24..26], &[2, 1]);
        assert_eq!(&icmp[26..32], &MAC);
        // A correct checksum makes the whole message sum to zero.
        assert_eq!(checksum::ipv6_upper_layer(src, ALL_NODES, 58, icmp), 0);
        let router = neighbour_advertisement(MAC, src, vip, true);
        assert_eq!(router[14 + 40 + 4], 0xa0);
    }

    #[test]
    fn ipv6_needs_a_link_local_source() {
        let vip: IpAddr = "fd00:1::100".parse().unwrap();
        assert_eq!(announcement(MAC, vip, None, false), None);
        let v4: IpAddr = "198.18.1.100".parse().unwrap();
        assert!(announcement(MAC, v4, None, false).is_some());
    }
}
