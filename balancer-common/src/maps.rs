//! Keys and values of the forwarding maps. Userspace writes them from the validated model;
//! the XDP program only reads them (and the flow, persistence and counter maps it owns).
//!
//! Addresses are `[u32; 4]` in network byte order as they sit in the packet: an IPv4 address
//! fills `[0]` and leaves the rest zero.

/// `family` values.
pub const FAMILY_V4: u8 = 4;

/// The program array the balancer program tail-calls into (not pinned: each loaded program
/// fills its own).
pub const TAIL_CALLS_MAP: &str = "TAIL_CALLS";
/// Index in [`TAIL_CALLS_MAP`] of the program that answers a packet the tunnel would make too
/// big; empty when the answers are turned off.
pub const TAIL_TOO_BIG: u32 = 0;
/// The `too_big` program's name in the object.
pub const TOO_BIG_PROGRAM: &str = "too_big";
pub const FAMILY_V6: u8 = 6;

/// `ServiceKey` -> `Service`.
pub const SERVICES_MAP: &str = "SERVICES";
/// `ServiceKey` with port 0 and proto 0 -> number of services on that address: "is a VIP".
pub const VIPS_MAP: &str = "VIPS";
/// Real index -> `Real`.
pub const REALS_MAP: &str = "REALS";
/// Scheduler tables: slot -> real index. Each service owns `table_len` slots from `table_base`.
pub const SCHED_SLOTS_MAP: &str = "SCHED_SLOTS";
/// `FlowKey` -> `Flow`, an LRU hash: the connection table.
pub const FLOWS_MAP: &str = "FLOWS";
/// `PersistKey` -> `Persist`, an LRU hash: persistence templates.
pub const PERSIST_MAP: &str = "PERSIST";
/// `NatKey` (a reply as the real sends it) -> `NatOrigin` (the VIP and port to restore), an
/// LRU hash written by the forward direction of NAT.
pub const NAT_REVERSE_MAP: &str = "NAT_REVERSE";
/// Index 0 -> `Globals`.
pub const GLOBALS_MAP: &str = "GLOBALS";
/// Index 0 -> [`LAYOUT_VERSION`] of the build that created the pinned maps; never read by the
/// XDP program.
pub const LAYOUT_MAP: &str = "LAYOUT";
/// The meaning of the pinned maps (keys, values, packed fields). Raised whenever one of them
/// changes, so that a restart with `--keep-state` never adopts maps it would misread.
pub const LAYOUT_VERSION: u32 = 1;
/// Index 0 -> `Clock`: how the XDP program reads the time. Not pinned: each loaded program
/// has its own, calibrated when it is loaded.
pub const CLOCK_MAP: &str = "CLOCK";
/// Per-CPU service id -> `Stats`.
pub const SERVICE_STATS_MAP: &str = "SERVICE_STATS";
/// Per-CPU real index -> `Stats`.
pub const REAL_STATS_MAP: &str = "REAL_STATS";
/// Per-CPU service id -> rr/wrr ring cursor.
pub const RR_CURSOR_MAP: &str = "RR_CURSOR";
/// Real index -> active connections (atomic; lc, wlc, sed and nq read it).
pub const REAL_ACTIVE_MAP: &str = "REAL_ACTIVE";

pub const MAX_SERVICES: u32 = 4096;
/// Service keys: more than services, since a `virtual_server_group` puts many VIPs on one.
pub const MAX_SERVICE_KEYS: u32 = 65_536;
pub const MAX_REALS: u32 = 65_536;
/// Slots of every scheduler table together (16 MiB of `u32`). Userspace double-buffers a
/// service's table here, so a table swap is one `Service` update.
pub const MAX_SCHED_SLOTS: u32 = 1 << 22;
/// `BPF_F_MMAPABLE` (linux/bpf.h): the scheduler slots are mapped into userspace, so a table
/// of 100,000 slots is written with one copy instead of one update per slot.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Reals of one service that lc, wlc, sed and nq compare per new connection.
pub const MAX_LC_REALS: u32 = 64;
/// Default size of the connection table; configurable at load time.
pub const DEFAULT_FLOWS: u32 = 1 << 20;
pub const DEFAULT_PERSIST: u32 = 1 << 16;

/// Schedulers (`Service::sched`).
pub mod sched {
    /// Round robin over a ring (rr is wrr with equal weights).
    pub const RING: u32 = 0;
    /// Hash of the source address (and port with `SVC_F_HASH_PORT`) into a bucket table:
    /// sh, and mh whose table is Maglev's.
    pub const SOURCE_HASH: u32 = 1;
    /// Hash of the destination address into a bucket table: dh.
    pub const DEST_HASH: u32 = 2;
    /// Least-connection family over the service's reals listed in its table: lc, wlc, sed, nq.
    pub const LC: u32 = 3;
    pub const WLC: u32 = 4;
    pub const SED: u32 = 5;
    pub const NQ: u32 = 6;
}

/// `Service::flags`.
pub const SVC_F_OPS: u32 = 1;
pub const SVC_F_PERSIST: u32 = 1 << 1;
pub const SVC_F_HASH_PORT: u32 = 1 << 2;

/// Forwarding methods (`Real::method`).
pub mod method {
    pub const DR: u8 = 0;
    pub const TUN: u8 = 1;
    pub const NAT: u8 = 2;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub addr: [u32; 4],
    /// 0 for an all-port service.
    pub port_be: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(size_of::<ServiceKey>() == 20);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Index into the per-service arrays (stats, cursors).
    pub id: u32,
    pub sched: u32,
    pub flags: u32,
    pub table_base: u32,
    /// 0 when no real has weight > 0: the sorry server, if any, takes new connections.
    pub table_len: u32,
    /// Real index + 1 of the sorry server; 0 = none.
    pub sorry_real: u32,
    pub persist_timeout_s: u32,
    /// Persistence granularity as a prefix length (IPv4 netmask 255.255.255.0 = 24).
    pub persist_prefix: u32,
}
const _: () = assert!(size_of::<Service>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Real {
    pub addr: [u32; 4],
    /// Destination port after NAT; DR and TUN keep the client's.
    pub port_be: u16,
    pub method: u8,
    pub family: u8,
    /// Weight for lc/wlc/sed/nq; 0 drains (no new connections).
    pub weight: u32,
    /// Egress interface; 0 = find it (and the MACs) with the kernel's FIB per packet.
    pub ifindex: u32,
    /// Next hop's MAC (the real itself for DR) and ours on `ifindex`.
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    /// TUN: outer source address.
    pub tun_src: [u32; 4],
    /// Service id + 1 of the service that lists this real (also as its sorry server), so a
    /// restarted daemon can tell whose real an index is and a flow whose real index was
    /// reused ends; with [`OWNER_DRAINING`] set, the real was removed and only serves the
    /// connections it already has (as IPVS keeps a removed destination's connections).
    pub owner: u32,
}

/// Set in [`Real::owner`] of a removed real that still has connections: their packets go on
/// reaching it, but no new connection nor persistence template does.
pub const OWNER_DRAINING: u32 = 1 << 31;
const _: () = assert!(size_of::<Real>() == 60);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FlowKey>() == 40);

/// `Flow::state`.
pub mod flow_state {
    /// TCP before the handshake completed (IPVS's `SYN_RECV`, 60 s at most); UDP flows are
    /// `ESTABLISHED` from their first packet.
    pub const NEW: u32 = 0;
    pub const ESTABLISHED: u32 = 1;
    /// FIN or RST seen: the tcpfin timeout applies.
    pub const CLOSING: u32 = 2;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub real: u32,
    pub service: u32,
    pub last_seen_ns: u64,
    pub state: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Flow>() == 24);

/// A reply from a NAT real: real address and port to the client's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatKey {
    pub real: [u32; 4],
    pub client: [u32; 4],
    pub real_port_be: u16,
    pub client_port_be: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<NatKey>() == 40);

/// The service address a NAT reply must appear to come from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatOrigin {
    pub vip: [u32; 4],
    pub vport_be: u16,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<NatOrigin>() == 20);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PersistKey {
    /// Client address masked to the service's persistence granularity.
    pub client: [u32; 4],
    pub service: u32,
}
const _: () = assert!(size_of::<PersistKey>() == 20);

/// A client address (`family`, words in network order) masked to `prefix` bits, as a
/// persistence template's key holds it (`persistence_granularity`).
#[inline(always)]
#[must_use]
#[expect(
    clippy::inline_always,
    reason = "per new connection in the XDP program, where calls cost stack"
)]
pub fn persist_mask(addr: &[u32; 4], family: u8, prefix: u32) -> [u32; 4] {
    let bits = if family == FAMILY_V4 {
        prefix.min(32)
    } else {
        prefix.min(128)
    };
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        #[expect(clippy::cast_possible_truncation, reason = "i < 4")]
        let start = (i as u32) * 32;
        let keep = bits.saturating_sub(start);
        let keep = if keep > 32 { 32 } else { keep };
        let m = if keep == 0 {
            0
        } else {
            (u32::MAX << (32 - keep)).to_be()
        };
        out[i] = addr[i] & m;
        i += 1;
    }
    out
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    pub real: u32,
    pub _pad: u32,
    pub last_seen_ns: u64,
}
const _: () = assert!(size_of::<Persist>() == 16);

/// Timeouts as `ipvsadm --set tcp tcpfin udp` (seconds there, nanoseconds here).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Globals {
    pub tcp_timeout_ns: u64,
    pub tcpfin_timeout_ns: u64,
    pub udp_timeout_ns: u64,
}
const _: () = assert!(size_of::<Globals>() == 24);

/// The packet path's clock: `CLOCK_MONOTONIC` nanoseconds from the kernel's jiffies.
///
/// `bpf_ktime_get_ns` reads the clocksource, which cost about 38 ns per packet on the
/// development machine (a quarter of an established flow's path); `bpf_jiffies64` is one load.
/// Timestamps stay in nanoseconds on `CLOCK_MONOTONIC` (to within a tick), so the userspace
/// sweep, adopted maps and the timeouts keep their meaning. IPVS itself times connections in
/// jiffies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// Nanoseconds per jiffy (the kernel's `TICK_NSEC`); 0 until calibrated, and then the
    /// program reads `bpf_ktime_get_ns` instead.
    pub jiffy_ns: u64,
    /// The jiffies count at `CLOCK_MONOTONIC` zero.
    pub epoch_jiffies: u64,
}
const _: () = assert!(size_of::<Clock>() == 16);

impl Clock {
    #[expect(clippy::inline_always, reason = "called per packet by the XDP program")]
    /// `CLOCK_MONOTONIC` nanoseconds at `jiffies` (at most one tick behind the clock).
    #[inline(always)]
    #[must_use]
    pub const fn now_ns(&self, jiffies: u64) -> u64 {
        jiffies
            .wrapping_sub(self.epoch_jiffies)
            .wrapping_mul(self.jiffy_ns)
    }
}

/// IPVS's timeout of a TCP connection in `SYN_RECV` (`ip_vs_proto_tcp.c`), which `ipvsadm
/// --set` does not change: a SYN flood's entries go after a minute, not after the tcp timeout.
pub const SYN_RECV_TIMEOUT_NS: u64 = 60_000_000_000;

/// A real's connection counts in `REAL_ACTIVE`, as IPVS keeps `activeconns` and `inactconns`:
/// active (TCP established, UDP) in the high 32 bits, inactive (TCP handshake not done, or
/// closing) in the low 32. The XDP program adds as connections start and establish; the
/// userspace sweep rewrites both from the connection table.
#[expect(
    clippy::inline_always,
    reason = "called per new connection by the XDP program, where calls cost stack"
)]
pub mod conn_count {
    /// One active connection.
    pub const ACTIVE: u64 = 1 << 32;
    /// One inactive connection.
    pub const INACTIVE: u64 = 1;

    #[inline(always)]
    #[must_use]
    pub const fn pack(active: u64, inactive: u64) -> u64 {
        (active << 32) | (inactive & 0xffff_ffff)
    }

    #[inline(always)]
    #[must_use]
    pub const fn active(v: u64) -> u64 {
        v >> 32
    }

    #[inline(always)]
    #[must_use]
    pub const fn inactive(v: u64) -> u64 {
        v & 0xffff_ffff
    }

    /// IPVS's `ip_vs_dest_conn_overhead`, what lc and wlc compare: active × 256 + inactive.
    #[inline(always)]
    #[must_use]
    pub const fn overhead(v: u64) -> u64 {
        (active(v) << 8) + inactive(v)
    }
}

impl Globals {
    /// Whether a flow of protocol `proto` last seen at `last_seen_ns` (in `state`) is still
    /// live at `now_ns`: the one rule the XDP program and the userspace sweep both apply.
    #[inline(always)]
    #[must_use]
    pub const fn flow_live(&self, proto: u8, state: u32, last_seen_ns: u64, now_ns: u64) -> bool {
        const IPPROTO_UDP: u8 = 17;
        let timeout = if proto == IPPROTO_UDP {
            self.udp_timeout_ns
        } else if state == flow_state::CLOSING {
            self.tcpfin_timeout_ns
        } else if state == flow_state::NEW && self.tcp_timeout_ns > SYN_RECV_TIMEOUT_NS {
            SYN_RECV_TIMEOUT_NS
        } else {
            self.tcp_timeout_ns
        };
        now_ns.saturating_sub(last_seen_ns) <= timeout
    }
}

impl Default for Globals {
    /// IPVS's defaults: tcp 900 s, tcpfin 120 s, udp 300 s.
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        Self {
            tcp_timeout_ns: 900 * S,
            tcpfin_timeout_ns: 120 * S,
            udp_timeout_ns: 300 * S,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    /// New connections scheduled.
    pub conns: u64,
}
const _: () = assert!(size_of::<Stats>() == 24);

/// The frame the benchmark's `restore` wrapper puts back before each iteration (see
/// `balancer-ebpf/src/bin/bench.rs`); not used by the balancer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchFrame {
    pub len: u32,
    /// Non-zero: every iteration gets a new source port and low half of the source address.
    pub vary: u32,
    /// Where the source port and the low 16 bits of the source address sit in the frame.
    pub sport_offset: u32,
    pub saddr_low_offset: u32,
    pub bytes: [u8; 128],
}
const _: () = assert!(size_of::<BenchFrame>() == 144);

#[cfg(feature = "user")]
mod pod {
    use super::{
        BenchFrame, Clock, Flow, FlowKey, Globals, NatKey, NatOrigin, Persist, PersistKey, Real,
        Service, ServiceKey, Stats,
    };
    // SAFETY: all of these are #[repr(C)], Copy, and have no padding holes (sizes asserted).
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for Service {}
    unsafe impl aya::Pod for Real {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Flow {}
    unsafe impl aya::Pod for PersistKey {}
    unsafe impl aya::Pod for Persist {}
    unsafe impl aya::Pod for Globals {}
    unsafe impl aya::Pod for Clock {}
    unsafe impl aya::Pod for BenchFrame {}
    unsafe impl aya::Pod for NatKey {}
    unsafe impl aya::Pod for NatOrigin {}
    unsafe impl aya::Pod for Stats {}
}

#[cfg(test)]
mod tests {
    use super::{Globals, flow_state};

    #[test]
    fn flow_liveness_follows_ipvs_timeouts_by_protocol_and_state() {
        let g = Globals {
            tcp_timeout_ns: 900,
            tcpfin_timeout_ns: 120,
            udp_timeout_ns: 300,
        };
        assert!(g.flow_live(6, flow_state::ESTABLISHED, 0, 900));
        assert!(!g.flow_live(6, flow_state::ESTABLISHED, 0, 901));
        assert!(!g.flow_live(6, flow_state::CLOSING, 0, 121));
        assert!(
            g.flow_live(17, flow_state::CLOSING, 0, 300),
            "UDP ignores TCP states"
        );
        assert!(!g.flow_live(17, flow_state::NEW, 0, 301));
        assert!(
            g.flow_live(6, flow_state::NEW, 0, 900),
            "shorter than SYN_RECV's minute"
        );
    }

    #[test]
    fn a_handshake_that_never_completes_ends_after_ipvss_syn_recv_minute() {
        let g = Globals::default();
        let s = 1_000_000_000;
        assert!(g.flow_live(6, flow_state::NEW, 0, 60 * s));
        assert!(!g.flow_live(6, flow_state::NEW, 0, 61 * s));
        assert!(g.flow_live(6, flow_state::ESTABLISHED, 0, 61 * s));
    }

    #[test]
    fn persistence_masks_keep_the_prefix_in_network_order() {
        use super::{FAMILY_V4, FAMILY_V6, persist_mask};
        let v4 = [u32::from_ne_bytes([198, 18, 7, 9]), 0, 0, 0];
        assert_eq!(
            persist_mask(&v4, FAMILY_V4, 24),
            [u32::from_ne_bytes([198, 18, 7, 0]), 0, 0, 0]
        );
        assert_eq!(persist_mask(&v4, FAMILY_V4, 32), v4);
        assert_eq!(persist_mask(&v4, FAMILY_V4, 0), [0; 4]);
        let v6 = [u32::MAX; 4];
        assert_eq!(
            persist_mask(&v6, FAMILY_V6, 72),
            [u32::MAX, u32::MAX, u32::from_ne_bytes([255, 0, 0, 0]), 0]
        );
    }

    #[test]
    fn connection_counts_pack_as_ipvs_weighs_them() {
        use super::conn_count::{ACTIVE, INACTIVE, active, inactive, overhead, pack};
        let v = pack(3, 7);
        assert_eq!((active(v), inactive(v)), (3, 7));
        assert_eq!(overhead(v), 3 * 256 + 7);
        assert_eq!(v + ACTIVE + INACTIVE, pack(4, 8));
    }
}
