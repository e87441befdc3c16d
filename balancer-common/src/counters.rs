//! Per-CPU packet counters kept by the XDP program, indexed by [`ProtoCounter`].

/// Name of the per-CPU array map that holds one `u64` per [`ProtoCounter`].
pub const PROTO_COUNTERS_MAP: &str = "PROTO_COUNTERS";

/// Index of one protocol counter in [`PROTO_COUNTERS_MAP`].
///
/// Every frame increments `Frames` and exactly one of the "class" counters: `Arp`,
/// `OtherL3`, `Truncated`, or one of the per-family L4 counters (`Tcp4` .. `OtherL4v6`).
/// `Vlan`, `Ipv4` and `Ipv6` count frames that also carried a tag or that family.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtoCounter {
    /// Every frame the program saw.
    Frames = 0,
    /// Frames with at least one 802.1Q / 802.1ad tag.
    Vlan,
    /// ARP frames.
    Arp,
    /// IPv4 packets with a valid header.
    Ipv4,
    /// IPv6 packets with a valid header.
    Ipv6,
    /// Ethertypes other than ARP, IPv4 and IPv6.
    OtherL3,
    /// Frames too short for a header they announce, or with an impossible header length.
    Truncated,
    /// TCP over IPv4.
    Tcp4,
    /// UDP over IPv4.
    Udp4,
    /// ICMP over IPv4.
    Icmp4,
    /// Any other protocol over IPv4, and non-first fragments.
    OtherL4v4,
    /// TCP over IPv6.
    Tcp6,
    /// UDP over IPv6.
    Udp6,
    /// ICMPv6.
    Icmp6,
    /// Any other next header over IPv6 (after skipping extension headers), and non-first fragments.
    OtherL4v6,
    /// ICMP errors quoting a balanced flow, sent on to the flow's real (also counted by class).
    IcmpErrorToReal,
    /// TCP segments to a service, other than a SYN, that found no flow (Katran's "LRU miss"):
    /// the flow was evicted from a full connection table, timed out, or was opened through
    /// another node before a failover. They are scheduled afresh (also counted by class).
    FlowMissMidStream,
}

impl ProtoCounter {
    /// Number of counters, the size of [`PROTO_COUNTERS_MAP`].
    pub const COUNT: u32 = Self::FlowMissMidStream as u32 + 1;

    /// Every counter, in index order.
    pub const ALL: [Self; Self::COUNT as usize] = [
        Self::Frames,
        Self::Vlan,
        Self::Arp,
        Self::Ipv4,
        Self::Ipv6,
        Self::OtherL3,
        Self::Truncated,
        Self::Tcp4,
        Self::Udp4,
        Self::Icmp4,
        Self::OtherL4v4,
        Self::Tcp6,
        Self::Udp6,
        Self::Icmp6,
        Self::OtherL4v6,
        Self::IcmpErrorToReal,
        Self::FlowMissMidStream,
    ];

    /// A stable, lower-case name for logs, status output and metrics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Frames => "frames",
            Self::Vlan => "vlan",
            Self::Arp => "arp",
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::OtherL3 => "other_l3",
            Self::Truncated => "truncated",
            Self::Tcp4 => "tcp4",
            Self::Udp4 => "udp4",
            Self::Icmp4 => "icmp4",
            Self::OtherL4v4 => "other_l4_v4",
            Self::Tcp6 => "tcp6",
            Self::Udp6 => "udp6",
            Self::Icmp6 => "icmp6",
            Self::OtherL4v6 => "other_l4_v6",
            Self::IcmpErrorToReal => "icmp_error_to_real",
            Self::FlowMissMidStream => "flow_miss_mid_stream",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProtoCounter;

    #[test]
    fn all_is_in_index_order_and_names_are_unique() {
        for (i, c) in ProtoCounter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?} is out of order in ALL");
            for other in &ProtoCounter::ALL[..i] {
                assert_ne!(c.name(), other.name());
            }
        }
    }
}

/// Name of the per-CPU array map that holds one `u64` per [`Reason`].
pub const REASONS_MAP: &str = "REASONS";

/// What the program did with a frame and why: every frame increments exactly one, so "why was
/// this packet dropped" is a lookup.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): the kernel's.
    PassNotIp = 0,
    /// Headers cut short or impossible: left to the kernel, which drops it.
    PassMalformed,
    /// No service for this destination, protocol and port: the kernel's.
    PassNoService,
    /// Neither TCP nor UDP (ICMP echo, VRRP, ...), to any address, and ICMP errors about no
    /// flow the balancer forwards: the kernel's.
    PassOtherProto,
    /// Forwarded out of the interface it came in on.
    Tx,
    /// Forwarded to another interface.
    Redirect,
    /// A new connection found no real with weight > 0 and no sorry server.
    DropNoReal,
    /// An IP fragment to a service: the ports are not in every fragment, so it cannot be
    /// scheduled consistently.
    DropFragment,
    /// The kernel's FIB has no route to the real.
    DropNoRoute,
    /// The FIB found the route but not yet the next hop's MAC (the daemon keeps reals'
    /// neighbours resolved).
    DropNoNeighbour,
    /// The real's egress is left to the kernel's FIB, which refuses lookups on an interface
    /// with forwarding disabled.
    DropFwdDisabled,
    /// Encapsulation would exceed the egress MTU, and no ICMP answer was sent (tagged frame,
    /// or answers turned off).
    DropTooBig,
    /// Growing the frame for encapsulation failed.
    DropAdjustHead,
    /// A scheduler table or real entry was missing: a userspace bug, never expected.
    DropBadTable,
    /// Encapsulation would exceed the egress MTU: answered with ICMP "fragmentation needed"
    /// (IPv4) or "packet too big" (IPv6) carrying the tunnel's MTU, as IPVS's tunnel does,
    /// sent back out of the interface it came in on.
    TxIcmpTooBig,
}

impl Reason {
    pub const COUNT: u32 = Self::TxIcmpTooBig as u32 + 1;

    pub const ALL: [Self; Self::COUNT as usize] = [
        Self::PassNotIp,
        Self::PassMalformed,
        Self::PassNoService,
        Self::PassOtherProto,
        Self::Tx,
        Self::Redirect,
        Self::DropNoReal,
        Self::DropFragment,
        Self::DropNoRoute,
        Self::DropNoNeighbour,
        Self::DropFwdDisabled,
        Self::DropTooBig,
        Self::DropAdjustHead,
        Self::DropBadTable,
        Self::TxIcmpTooBig,
    ];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::PassNotIp => "pass_not_ip",
            Self::PassMalformed => "pass_malformed",
            Self::PassNoService => "pass_no_service",
            Self::PassOtherProto => "pass_other_proto",
            Self::Tx => "tx",
            Self::Redirect => "redirect",
            Self::DropNoReal => "drop_no_real",
            Self::DropFragment => "drop_fragment",
            Self::DropNoRoute => "drop_no_route",
            Self::DropNoNeighbour => "drop_no_neighbour",
            Self::DropFwdDisabled => "drop_fwd_disabled",
            Self::DropTooBig => "drop_too_big",
            Self::DropAdjustHead => "drop_adjust_head",
            Self::DropBadTable => "drop_bad_table",
            Self::TxIcmpTooBig => "tx_icmp_too_big",
        }
    }
}

#[cfg(test)]
mod reason_tests {
    use super::Reason;

    #[test]
    fn all_is_in_index_order_and_names_are_unique() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?} is out of order in ALL");
            for other in &Reason::ALL[..i] {
                assert_ne!(r.name(), other.name());
            }
        }
    }
}
