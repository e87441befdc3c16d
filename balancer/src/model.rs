//! The validated model every other module consumes: what the data plane forwards.
//!
//! The configuration layer turns `lb.toml` (or keepalived.conf) into these types; the data
//! plane renders them (XDP maps, or IPVS through netlink); checkers change real weights.

use std::net::IpAddr;

use crate::vrrp::net::InstanceSpec;

/// Everything a validated configuration asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub services: Vec<VirtualService>,
    /// Services that match packets by firewall mark (`virtual_server fwmark N`, a group's
    /// `fwmark` entries). Only a data plane behind netfilter can see marks: IPVS can, the XDP
    /// program (which runs before netfilter) cannot, so validation refuses them with XDP.
    pub fwmark_services: Vec<FwmarkService>,
    pub vrrp: Vec<VrrpInstance>,
    /// `static_ipaddress`, `static_routes`, `static_rules`.
    pub statics: crate::vrrp::net::statics::Statics,
}

/// A virtual service selected by firewall mark instead of by address and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwmarkService {
    pub fwmark: u32,
    /// The service's definition; `vips` is empty and `port` 0, the mark deciding both.
    pub service: VirtualService,
}

/// One `vrrp_instance`, as the VRRP I/O layer runs it, with what it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstance {
    pub name: String,
    pub spec: InstanceSpec,
    /// `track_interface`s, its sync group's included (unweighted).
    pub track_interfaces: Vec<crate::vrrp::track::TrackInterface>,
    /// `track_script`s: `vrrp_script` names, each with the weight that replaces the
    /// script's own, if the line gives one; its sync group's included (weight 0).
    pub track_scripts: Vec<(String, Option<i32>)>,
    /// `track_file`s, resolved from their `vrrp_track_file` blocks; its sync group's
    /// included (weight 0).
    pub track_files: Vec<crate::vrrp::track::TrackFile>,
    /// `track_process`es, resolved from their `vrrp_track_process` blocks; its sync group's
    /// included (weight 0).
    pub track_processes: Vec<crate::vrrp::track::TrackProcess>,
    /// The `vrrp_sync_group` it belongs to.
    pub sync_group: Option<String>,
}

/// IPVS's schedulers (`lb_algo`), plus Maglev hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sed,
    Nq,
    Sh,
    Dh,
    Mh,
}

/// `lb_kind`: how a packet reaches the real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Direct routing: same L2 segment, the real holds the VIP on a loopback.
    Dr,
    /// IPIP / IP6IP6 tunnel to the real.
    Tun,
    /// Destination NAT, replies come back through the balancer.
    Nat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    #[must_use]
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// Where a real is reached: interface and MACs. `None` lets the XDP program ask the kernel's
/// FIB per new packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Egress {
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    pub addr: IpAddr,
    /// Destination port after NAT; DR and TUN keep the virtual port.
    pub port: u16,
    /// 0 drains: no new connections, existing ones continue.
    pub weight: u32,
    pub method: Method,
    /// TUN: outer source address.
    pub tunnel_source: Option<IpAddr>,
    pub egress: Option<Egress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    pub timeout_s: u32,
    /// `persistence_granularity` as a prefix length.
    pub prefix: u8,
}

/// A virtual service: one or more VIPs (a `virtual_server_group`) sharing one definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualService {
    pub vips: Vec<IpAddr>,
    /// 0: every port (an all-port service).
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: Scheduler,
    /// One-packet scheduling for UDP (`ops`).
    pub ops: bool,
    /// sh/mh: hash the source port too (`sh-port`, `mh-port`).
    pub hash_port: bool,
    pub persistence: Option<Persistence>,
    pub reals: Vec<RealServer>,
    pub sorry_server: Option<RealServer>,
}
