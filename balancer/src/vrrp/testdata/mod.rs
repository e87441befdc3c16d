//! Adverts captured from keepalived v2.2.7 (see README.md in this directory for how).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::vrrp::checksum::PseudoHeader;
use crate::vrrp::wire::Family;

pub struct Capture {
    pub name: &'static str,
    pub payload: &'static [u8],
    pub src: IpAddr,
    pub dst: IpAddr,
}

impl Capture {
    pub fn pseudo_header(&self) -> PseudoHeader {
        PseudoHeader {
            src: self.src,
            dst: self.dst,
        }
    }

    pub fn family(&self) -> Family {
        Family::of(self.src)
    }
}

pub const SRC4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
pub const PEER4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
pub const MCAST4: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
pub const SRC6: IpAddr = IpAddr::V6(Ipv6Addr::new(
    0xfe80, 0, 0, 0, 0xf4c6, 0x8dff, 0xfe8a, 0x2b75,
));
pub const MCAST6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12));

pub const V2_PASS: Capture = Capture {
    name: "v2_pass_prio150",
    payload: include_bytes!("v2_pass_prio150.bin"),
    src: SRC4,
    dst: MCAST4,
};
pub const V2_PASS_STOP: Capture = Capture {
    name: "v2_pass_prio0",
    payload: include_bytes!("v2_pass_prio0.bin"),
    src: SRC4,
    dst: MCAST4,
};
pub const V3_IPV4: Capture = Capture {
    name: "v3_ipv4_prio100",
    payload: include_bytes!("v3_ipv4_prio100.bin"),
    src: SRC4,
    dst: MCAST4,
};
pub const V3_IPV4_STOP: Capture = Capture {
    name: "v3_ipv4_prio0",
    payload: include_bytes!("v3_ipv4_prio0.bin"),
    src: SRC4,
    dst: MCAST4,
};
pub const V3_IPV6: Capture = Capture {
    name: "v3_ipv6_prio200",
    payload: include_bytes!("v3_ipv6_prio200.bin"),
    src: SRC6,
    dst: MCAST6,
};
pub const V3_IPV6_STOP: Capture = Capture {
    name: "v3_ipv6_prio0",
    payload: include_bytes!("v3_ipv6_prio0.bin"),
    src: SRC6,
    dst: MCAST6,
};
pub const V3_UNICAST: Capture = Capture {
    name: "v3_unicast_prio120",
    payload: include_bytes!("v3_unicast_prio120.bin"),
    src: SRC4,
    dst: PEER4,
};
pub const V3_UNICAST_STOP: Capture = Capture {
    name: "v3_unicast_prio0",
    payload: include_bytes!("v3_unicast_prio0.bin"),
    src: SRC4,
    dst: PEER4,
};
pub const V3_UNICAST_OLD: Capture = Capture {
    name: "v3_unicast_old_checksum_prio120",
    payload: include_bytes!("v3_unicast_old_checksum_prio120.bin"),
    src: SRC4,
    dst: PEER4,
};
pub const V3_UNICAST_OLD_STOP: Capture = Capture {
    name: "v3_unicast_old_checksum_prio0",
    payload: include_bytes!("v3_unicast_old_checksum_prio0.bin"),
    src: SRC4,
    dst: PEER4,
};

/// Every capture that uses the RFC checksum.
pub const RFC_CHECKSUM: [Capture; 8] = [
    V2_PASS,
    V2_PASS_STOP,
    V3_IPV4,
    V3_IPV4_STOP,
    V3_IPV6,
    V3_IPV6_STOP,
    V3_UNICAST,
    V3_UNICAST_STOP,
];
