//! `lb.toml` as serde reads and writes it. Key names are keepalived's wherever they make sense
//! in TOML, and every default is keepalived's (`man 5 keepalived.conf`), so that a
//! keepalived.conf converts key for key and an operator can read one beside the other.
//! Nothing here is checked beyond its type; [`crate::config::validate`] does that.

pub mod lvs;
pub mod vrrp;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::dataplane::xdp::AttachMode;

pub use lvs::{Checker, Endpoint, RealServer, Ssl, Url, VirtualServer, VirtualServerGroup};
pub use vrrp::{Authentication, SyncGroup, TrackFileBlock, VrrpInstance, VrrpScript};

/// The whole `lb.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which data plane forwards packets: `"xdp"` (default) or `"ipvs"`.
    #[serde(default)]
    pub dataplane: DataplaneKind,
    /// Where and how the XDP program attaches (required with the XDP data plane).
    #[serde(default)]
    pub xdp: XdpConfig,
    /// The data plane's connection table: its size and how long idle flows live.
    #[serde(default, skip_serializing_if = "is_default")]
    pub connections: Connections,
    /// The unix socket behind `balancer status` and `balancer stats`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub control: Control,
    /// The Prometheus metrics endpoint. Off by default.
    #[serde(default, skip_serializing_if = "is_default")]
    pub metrics: Metrics,
    /// keepalived's `global_defs`: node-wide settings and defaults for every VRRP instance.
    #[serde(default)]
    pub global_defs: GlobalDefs,
    /// keepalived's `static_ipaddress { }`: addresses held while the daemon runs, whatever
    /// any instance's state, as `virtual_ipaddress` lines, each with its `dev`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_ipaddress: Vec<String>,
    /// keepalived's `static_routes { }`: routes held while the daemon runs, as
    /// `virtual_routes` lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_routes: Vec<String>,
    /// keepalived's `static_rules { }`: policy rules held while the daemon runs, as
    /// `virtual_rules` lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_rules: Vec<String>,
    /// keepalived's `vrrp_script NAME { }`, by name: commands whose result `track_script`
    /// turns into a fault or a priority change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vrrp_script: BTreeMap<String, VrrpScript>,
    /// keepalived's `vrrp_track_file NAME { }`, by name: files whose value `track_file`
    /// follows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vrrp_track_file: BTreeMap<String, TrackFileBlock>,
    /// keepalived's `vrrp_track_process NAME { }`, by name: processes `track_process`
    /// follows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vrrp_track_process: BTreeMap<String, vrrp::TrackProcessBlock>,
    /// keepalived's `vrrp_instance NAME { }`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vrrp_instance: BTreeMap<String, VrrpInstance>,
    /// keepalived's `vrrp_sync_group NAME { }`, by name: instances that change state together.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vrrp_sync_group: BTreeMap<String, SyncGroup>,
    /// keepalived's `virtual_server_group NAME { }`, by name: VIPs that share one service
    /// definition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub virtual_server_group: BTreeMap<String, VirtualServerGroup>,
    /// keepalived's `virtual_server`, one `[[virtual_server]]` each, in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_server: Vec<VirtualServer>,
    /// keepalived's `SSL { }`: the client certificate every `SSL_GET` presents.
    #[serde(default, rename = "SSL", skip_serializing_if = "Option::is_none")]
    pub ssl: Option<Ssl>,
}

/// The forwarding engine.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneKind {
    /// The balancer's own XDP program.
    #[default]
    Xdp,
    /// The kernel's IPVS, programmed through generic netlink as keepalived programs it
    /// (`modprobe ip_vs` first, or it is loaded on start). `[xdp]` does not apply, nor
    /// `connections.table_size` (IPVS's table grows as needed); the timeouts do
    /// (`ipvsadm --set`).
    Ipvs,
}

/// `[connections]`: the connection table (an LRU hash) and its idle timeouts, as
/// `ipvsadm --set tcp tcpfin udp` sets IPVS's.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connections {
    /// Flows the table holds; the least recently used is evicted beyond it. Default 1048576.
    #[serde(default = "default_table_size")]
    pub table_size: u32,
    /// Seconds an established TCP flow lives without packets. Default 900 (IPVS's).
    #[serde(default = "default_tcp_timeout")]
    pub tcp_timeout: u32,
    /// Seconds a TCP flow lives after FIN or RST. Default 120 (IPVS's).
    #[serde(default = "default_tcpfin_timeout")]
    pub tcpfin_timeout: u32,
    /// Seconds a UDP flow lives without packets. Default 300 (IPVS's).
    #[serde(default = "default_udp_timeout")]
    pub udp_timeout: u32,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            table_size: default_table_size(),
            tcp_timeout: default_tcp_timeout(),
            tcpfin_timeout: default_tcpfin_timeout(),
            udp_timeout: default_udp_timeout(),
        }
    }
}

impl Connections {
    /// The timeouts as the XDP program reads them.
    #[must_use]
    pub fn globals(&self) -> balancer_common::maps::Globals {
        const NS: u64 = 1_000_000_000;
        balancer_common::maps::Globals {
            tcp_timeout_ns: u64::from(self.tcp_timeout) * NS,
            tcpfin_timeout_ns: u64::from(self.tcpfin_timeout) * NS,
            udp_timeout_ns: u64::from(self.udp_timeout) * NS,
        }
    }
}

const fn default_table_size() -> u32 {
    balancer_common::maps::DEFAULT_FLOWS
}

const fn default_tcp_timeout() -> u32 {
    900
}

const fn default_tcpfin_timeout() -> u32 {
    120
}

const fn default_udp_timeout() -> u32 {
    300
}

/// `[control]`: the control socket.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The unix socket's path. Default `/run/balancer/INSTANCE.sock` (`--run-dir` moves the
    /// directory), INSTANCE being `--instance` (`default`), so daemons side by side do not
    /// collide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
}

impl Control {
    /// The socket path for `instance`: the configured one, else the default.
    #[must_use]
    pub fn socket_path(&self, instance: &str) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| {
            crate::control::socket_path(std::path::Path::new(crate::control::RUN_DIR), instance)
        })
    }
}

/// `[metrics]`: Prometheus text exposition over HTTP.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Serve `/metrics`. Default false: nothing listens unless asked to.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// Where to listen when enabled. Default `127.0.0.1:9100`: this host only.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9100))
}

/// `[xdp]`: the interfaces the XDP program attaches to.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XdpConfig {
    /// Interface names, e.g. `["eth0", "eth1"]`. At least one with the XDP data plane.
    pub interfaces: Vec<String>,
    /// `"auto"` (driver mode where the driver supports it, generic otherwise), `"driver"` or
    /// `"generic"`. Default `"auto"`.
    #[serde(default)]
    pub mode: AttachMode,
    /// A packet that a TUN real's tunnel would make bigger than the egress MTU is answered
    /// with ICMP fragmentation needed / packet too big carrying the tunnel's MTU, as IPVS
    /// does (`true`), or dropped and counted as `drop_too_big` (`false`). Default true. Takes
    /// effect at the next start.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub icmp_too_big: bool,
}

impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            mode: AttachMode::default(),
            icmp_too_big: true,
        }
    }
}

const fn yes() -> bool {
    true
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if"
)]
const fn is_true(b: &bool) -> bool {
    *b
}

/// `[global_defs]`, keepalived's keywords and defaults.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is an independent keepalived keyword"
)]
pub struct GlobalDefs {
    /// `router_id`: this node's name in notifications; keepalived defaults to the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    /// `vrrp_mcast_group4`: where IPv4 adverts go. Default `224.0.0.18` (RFC 5798 §5.1.1.2).
    #[serde(default = "default_group4")]
    pub vrrp_mcast_group4: IpAddr,
    /// `vrrp_mcast_group6`: where IPv6 adverts go. Default `ff02::12` (RFC 5798 §5.1.2.2).
    #[serde(default = "default_group6")]
    pub vrrp_mcast_group6: IpAddr,
    /// `script_user`: who runs scripts; keepalived uses `keepalived_script` if it exists, else
    /// root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_user: Option<String>,
    /// `enable_script_security`: refuse scripts that a non-root user could change when they
    /// would run as root. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_script_security: bool,
    /// `vrrp_version`: the VRRP version of instances that do not say (2 or 3). Default 2.
    #[serde(default = "default_vrrp_version")]
    pub vrrp_version: u8,
    /// `vrrp_garp_master_delay`: seconds before the second gratuitous ARP burst after becoming
    /// master; 0 for none. Default 5.
    #[serde(default = "default_garp_delay")]
    pub vrrp_garp_master_delay: u32,
    /// `vrrp_garp_master_repeat`: gratuitous ARPs per VIP in each burst. Default 5.
    #[serde(default = "default_garp_repeat")]
    pub vrrp_garp_master_repeat: u32,
    /// `vrrp_garp_master_refresh`: seconds between refresh bursts while master; 0 for none.
    /// Default 0.
    #[serde(default)]
    pub vrrp_garp_master_refresh: u32,
    /// `vrrp_garp_master_refresh_repeat`: gratuitous ARPs per VIP in each refresh. Default 1.
    #[serde(default = "one")]
    pub vrrp_garp_master_refresh_repeat: u32,
    /// `vrrp_garp_lower_prio_delay`: seconds before the second burst after hearing a lower
    /// priority advert. Default: `vrrp_garp_master_delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp_garp_lower_prio_delay: Option<u32>,
    /// `vrrp_garp_lower_prio_repeat`: gratuitous ARPs per VIP after hearing a lower priority
    /// advert. Default: `vrrp_garp_master_repeat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp_garp_lower_prio_repeat: Option<u32>,
    /// `vrrp_strict`: RFC behaviour only (no authentication, no unicast, `no_accept`,
    /// VRRPv3 timing). Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub vrrp_strict: bool,
    /// `vrrp_check_unicast_src`: every unicast instance drops adverts from addresses that are
    /// not its peers. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub vrrp_check_unicast_src: bool,
    /// `vrrp_skip_check_adv_addr`: accept adverts whose address list differs from ours.
    /// Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub vrrp_skip_check_adv_addr: bool,
    /// `notify_fifo`: `PATH [USER [GROUP]]`, a FIFO (created if missing, owned by USER and
    /// GROUP when given) that gets a line per state change: `INSTANCE "NAME" STATE
    /// PRIORITY` or `GROUP "NAME" STATE 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_fifo: Option<String>,
    /// `notify_fifo_script`: started once with the FIFO's path as its last argument, to read
    /// it; stopped with the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_fifo_script: Option<String>,
    /// `vrrp_notify_fifo`: as `notify_fifo`, for VRRP events only (the same lines here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp_notify_fifo: Option<String>,
    /// `vrrp_notify_fifo_script`: as `notify_fifo_script`, for `vrrp_notify_fifo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp_notify_fifo_script: Option<String>,
    /// `vrrp_rt_priority`: run VRRP (its own thread in `balancer run`) under real-time
    /// scheduling (`SCHED_RR`) at this priority, 1..99, so a busy machine cannot delay an
    /// advert into a spurious takeover. Default: normal scheduling, as keepalived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp_rt_priority: Option<u8>,
    /// `vrrp_priority`: the VRRP thread's nice value, -20..19 (negative runs it sooner).
    /// Default: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp_priority: Option<i8>,
    /// `notification_email { }`: where alerts are mailed. No addresses, no mail. A bare name
    /// (keepalived's samples write `acassen`) is sent to NAME@HOSTNAME.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notification_email: Vec<String>,
    /// `notification_email_from`: the sender; keepalived's default is
    /// `keepalived@HOSTNAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_email_from: Option<String>,
    /// `smtp_server`: `ADDR [PORT]` (port 25 by default), plain SMTP as keepalived speaks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_server: Option<String>,
    /// `smtp_helo_name`: the HELO name; default the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_helo_name: Option<String>,
    /// `smtp_connect_timeout`: seconds. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_connect_timeout: Option<u32>,
    /// `smtp_alert`: the default of every instance, group and virtual server. Default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_alert: Option<bool>,
    /// `smtp_alert_vrrp`: the default of VRRP instances and groups, before `smtp_alert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_alert_vrrp: Option<bool>,
    /// `smtp_alert_checker`: the default of virtual servers, before `smtp_alert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_alert_checker: Option<bool>,
    /// `no_email_faults`: no mail for a VRRP FAULT.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_email_faults: bool,
    /// `vrrp_startup_delay`: seconds after the daemon starts before its VRRP instances do
    /// (for a node whose network is still coming up at boot); not applied by a reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp_startup_delay: Option<f64>,
    /// `startup_script`: run (as the script user) before anything starts; the daemon goes
    /// on when it ends, fails or times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_script: Option<String>,
    /// `startup_script_timeout`: seconds, 1 to 1000; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_script_timeout: Option<u32>,
    /// `shutdown_script`: run after everything has stopped, before the daemon exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_script: Option<String>,
    /// `shutdown_script_timeout`: seconds, 1 to 1000; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_script_timeout: Option<u32>,
    /// `lvs_flush`: empty IPVS of every service, ours or not, when the daemon starts (IPVS
    /// data plane only; a reload does not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lvs_flush: bool,
    /// `lvs_flush_on_stop`: `"full"` empties IPVS of every service at stop; `"vs"` removes
    /// our services whole (what the daemon does anyway). Unset: our services are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvs_flush_on_stop: Option<LvsFlushOnStop>,
    /// `lvs_sync_daemon`: IPVS's connection synchronisation (IPVS data plane only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvs_sync_daemon: Option<LvsSyncDaemon>,
}

/// `lvs_flush_on_stop [VS]`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LvsFlushOnStop {
    /// Every IPVS service, ours or not (`lvs_flush_on_stop` alone).
    Full,
    /// Our services, whole (`lvs_flush_on_stop VS`).
    Vs,
}

/// `lvs_sync_daemon INTERFACE [inst NAME] [id N] [maxlen N] [port N] [ttl N] [group ADDR]`:
/// IPVS's sync daemons send this node's connections to its peers and learn theirs, so a
/// failover keeps established connections. Following a `vrrp_instance`, the node runs the
/// master daemon while the instance is MASTER and the backup daemon otherwise, as keepalived
/// switches them; with no instance, both run throughout.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LvsSyncDaemon {
    /// The interface the sync messages are multicast on (at most 15 bytes).
    pub interface: String,
    /// The `vrrp_instance` whose state picks the daemon; none: both daemons run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `id`: the sync ID, 0 to 255; default the instance's `virtual_router_id`, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u8>,
    /// `maxlen`: the largest sync message payload, 1 to 65507; default the interface's MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlen: Option<u16>,
    /// `port`: the UDP port; IPVS's default 8848.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `ttl`: the multicast TTL, 1 to 255; IPVS's default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
    /// `group`: the multicast group; IPVS's default `224.0.0.81`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<IpAddr>,
}

impl GlobalDefs {
    /// Whether VRRP alerts are mailed by default (`smtp_alert_vrrp`, else `smtp_alert`).
    #[must_use]
    pub fn vrrp_alerts(&self) -> bool {
        self.smtp_alert_vrrp.or(self.smtp_alert).unwrap_or(false)
    }

    /// Whether checker alerts are mailed by default (`smtp_alert_checker`, else
    /// `smtp_alert`).
    #[must_use]
    pub fn checker_alerts(&self) -> bool {
        self.smtp_alert_checker.or(self.smtp_alert).unwrap_or(false)
    }
}

impl Default for GlobalDefs {
    fn default() -> Self {
        Self {
            router_id: None,
            vrrp_mcast_group4: default_group4(),
            vrrp_mcast_group6: default_group6(),
            script_user: None,
            enable_script_security: false,
            vrrp_version: default_vrrp_version(),
            vrrp_garp_master_delay: default_garp_delay(),
            vrrp_garp_master_repeat: default_garp_repeat(),
            vrrp_garp_master_refresh: 0,
            vrrp_garp_master_refresh_repeat: 1,
            vrrp_garp_lower_prio_delay: None,
            vrrp_garp_lower_prio_repeat: None,
            vrrp_strict: false,
            notification_email: Vec::new(),
            notification_email_from: None,
            smtp_server: None,
            smtp_helo_name: None,
            smtp_connect_timeout: None,
            smtp_alert: None,
            smtp_alert_vrrp: None,
            smtp_alert_checker: None,
            no_email_faults: false,
            vrrp_check_unicast_src: false,
            vrrp_skip_check_adv_addr: false,
            notify_fifo: None,
            notify_fifo_script: None,
            vrrp_notify_fifo: None,
            vrrp_notify_fifo_script: None,
            vrrp_rt_priority: None,
            vrrp_priority: None,
            lvs_sync_daemon: None,
            vrrp_startup_delay: None,
            lvs_flush: false,
            lvs_flush_on_stop: None,
            startup_script: None,
            startup_script_timeout: None,
            shutdown_script: None,
            shutdown_script_timeout: None,
        }
    }
}

fn default_group4() -> IpAddr {
    IpAddr::from([224, 0, 0, 18])
}

fn default_group6() -> IpAddr {
    IpAddr::from([0xff02, 0, 0, 0, 0, 0, 0, 0x12])
}

const fn default_vrrp_version() -> u8 {
    2
}

const fn default_garp_delay() -> u32 {
    5
}

const fn default_garp_repeat() -> u32 {
    5
}

pub(crate) const fn one() -> u32 {
    1
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
pub(crate) const fn is_false(b: &bool) -> bool {
    !*b
}
