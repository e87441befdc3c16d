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
}

impl ProtoCounter {
    /// Number of counters, the size of [`PROTO_COUNTERS_MAP`].
    pub const COUNT: u32 = Self::OtherL4v6 as u32 + 1;

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
