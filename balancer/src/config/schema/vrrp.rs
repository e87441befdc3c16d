//! `[vrrp_script.NAME]`, `[vrrp_instance.NAME]` and `[vrrp_sync_group.NAME]`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::schema::{is_false, one};

/// keepalived's `vrrp_script`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VrrpScript {
    /// `script`: the command line, run without a shell.
    pub script: String,
    /// `interval`: seconds between runs. Default 1.
    #[serde(default = "one_second")]
    pub interval: f64,
    /// `timeout`: seconds before a run counts as failed. Default: `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// `weight`: -253..=253 added to the priority while the script succeeds (positive) or
    /// fails (negative); 0 puts the instance in FAULT on failure. Default 0.
    #[serde(default)]
    pub weight: i32,
    /// `rise`: successes in a row before the script counts as up. Default 1.
    #[serde(default = "one")]
    pub rise: u32,
    /// `fall`: failures in a row before the script counts as down. Default 1.
    #[serde(default = "one")]
    pub fall: u32,
    /// `user`: who runs it; default `global_defs.script_user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `init_fail`: start in the failed state. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub init_fail: bool,
}

const fn one_second() -> f64 {
    1.0
}

/// keepalived's `vrrp_instance`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is an independent keepalived keyword"
)]
pub struct VrrpInstance {
    /// `state`: `"MASTER"` or `"BACKUP"`; default `MASTER` at priority 255, else `BACKUP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `interface`: where adverts go and the VIPs are added.
    pub interface: String,
    /// `dont_track_primary`: `interface` going down is not a FAULT (keepalived's "ignore
    /// VRRP interface faults").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dont_track_primary: bool,
    /// `virtual_router_id`: 1..=255, unique per interface and family.
    pub virtual_router_id: i64,
    /// `priority`: 1..=255; 255 only for the address owner. Default 100.
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// `advert_int`: seconds between adverts (VRRPv3: hundredths allowed). Default 1.
    #[serde(default = "one_second")]
    pub advert_int: f64,
    /// `version`: 2 or 3; default `global_defs.vrrp_version` (always 3 for IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
    /// `nopreempt`: a backup never takes over from a live lower-priority master.
    #[serde(default, skip_serializing_if = "is_false")]
    pub nopreempt: bool,
    /// `preempt_delay`: seconds a backup waits before preempting. Default 0.
    #[serde(default)]
    pub preempt_delay: f64,
    /// `accept` (true) or `no_accept` (false): whether the master accepts packets for the VIPs
    /// it does not own. Default true, false under `vrrp_strict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<bool>,
    /// `authentication { auth_type PASS|AH auth_pass ... }` (VRRPv2 only; AH over IPv4 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// `unicast_src_ip` (or `mcast_src_ip`): the source of our adverts; default the
    /// interface's primary address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unicast_src_ip: Option<IpAddr>,
    /// `unicast_peer { }`: send adverts to these addresses instead of multicast.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unicast_peer: Vec<IpAddr>,
    /// `virtual_ipaddress { }`: lines as keepalived writes them, `ADDR[/PREFIX] [dev IF]
    /// [brd ADDR|+|-] [scope SCOPE] [label LABEL] [home] [mngtmpaddr] [noprefixroute]
    /// [autojoin] [-nodad] [no_track] [preferred_lft N|forever]`. An address goes on its
    /// `dev` (the instance's interface by default) with a gratuitous ARP / NA there; no
    /// broadcast unless `brd` says; an IPv6 /128 is deprecated (`preferred_lft` 0) unless
    /// told otherwise, as keepalived adds them.
    pub virtual_ipaddress: Vec<String>,
    /// `virtual_ipaddress_excluded { }`: added and removed with the virtual addresses but not
    /// listed in adverts (so either family, and any number).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_ipaddress_excluded: Vec<String>,
    /// `virtual_routes { }`: routes added on becoming master and removed on leaving it, as
    /// keepalived writes them: `[src ADDR] [to] PREFIX [via|gw ADDR] [dev IF] [metric N]
    /// [table N] [scope S]`, or `blackhole|unreachable|prohibit PREFIX`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_routes: Vec<String>,
    /// `virtual_rules { }`: policy routing rules added after the routes on becoming master
    /// and removed before them on leaving it, as keepalived writes them: `[inet|inet6] [not]
    /// [from PREFIX] [to PREFIX] [iif IF] [oif IF] [fwmark N[/MASK]] [tos N] [preference N]
    /// [uidrange A-B] [ipproto P] [sport A[-B]] [dport A[-B]] [protocol N]` and one action,
    /// `table N`, `goto N`, `nop`, `blackhole`, `unreachable`, `prohibit` or `l3mdev`. A
    /// rule without `preference` gets one counting down from 16384, with a warning, as
    /// keepalived assigns it; a rule with neither `from` nor `to` is IPv4 unless `inet6`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_rules: Vec<String>,
    /// `smtp_alert`: mail the instance's state changes; default `global_defs.smtp_alert_vrrp`,
    /// else `smtp_alert`, else off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_alert: Option<bool>,
    /// `track_interface { }`: lines `IF [weight W]`. Without a weight the interface going
    /// down puts the instance in FAULT; with one (-253..=253) a positive weight is added to
    /// the priority while it is up, a negative one while it is down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_interface: Vec<String>,
    /// `track_script { }`: lines `NAME [weight W]` naming `vrrp_script`s; a weight here
    /// replaces the script's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_script: Vec<String>,
    /// `track_file { }`: lines `NAME [weight W]` naming `vrrp_track_file`s; a weight here
    /// replaces the file's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_file: Vec<String>,
    /// `track_process { }`: lines `NAME [weight W [reverse|noreverse]]` naming
    /// `vrrp_track_process`es; a weight here replaces the block's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_process: Vec<String>,
    /// `garp_master_delay`; default `global_defs.vrrp_garp_master_delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_master_delay: Option<u32>,
    /// `garp_master_repeat`; default `global_defs.vrrp_garp_master_repeat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_master_repeat: Option<u32>,
    /// `garp_master_refresh`; default `global_defs.vrrp_garp_master_refresh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_master_refresh: Option<u32>,
    /// `notify_master`: run on becoming master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_master: Option<String>,
    /// `notify_backup`: run on becoming backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_backup: Option<String>,
    /// `notify_fault`: run on entering FAULT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_fault: Option<String>,
    /// `notify_stop`: run when the instance stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_stop: Option<String>,
    /// `notify`: run on every change with `INSTANCE NAME STATE PRIORITY` appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// `notify_master_rx_lower_pri`: run when, as master, the instance hears an advert of a
    /// lower priority (another router believes it is master).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_master_rx_lower_pri: Option<String>,
    /// `use_vmac`: the addresses live on a macvlan carrying the virtual router MAC
    /// (`00:00:5e:00:01:VRID`, or `02` for IPv6), so a takeover changes no ARP entry. IPv4
    /// multicast adverts leave from the macvlan (RFC 5798 §7.3); unicast and IPv6 ones from
    /// `interface`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_vmac: bool,
    /// `vmac_xmit_base`: with `use_vmac`, every advert leaves from `interface`, with its MAC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vmac_xmit_base: bool,
    /// The macvlan's name (keepalived's `use_vmac NAME`); default `vrrp.VRID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmac_name: Option<String>,
}

const fn default_priority() -> i64 {
    100
}

/// `authentication { }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Authentication {
    /// `auth_type`: `"PASS"` (the password travels in the advert) or `"AH"` (`IPsec` AH with
    /// HMAC-MD5-96 keyed by the password, as keepalived does it; IPv4 only). RFC 3768 removed
    /// both; they exist for keepalived peers that use them.
    pub auth_type: String,
    /// `auth_pass`: up to 8 characters are sent.
    pub auth_pass: String,
}

/// keepalived's `vrrp_sync_group`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncGroup {
    /// `group { }`: the `vrrp_instance` names that change state together.
    pub group: Vec<String>,
    /// `notify_master`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_master: Option<String>,
    /// `notify_backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_backup: Option<String>,
    /// `notify_fault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_fault: Option<String>,
    /// `notify_stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_stop: Option<String>,
    /// `notify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// `sync_group_tracking_weight`: members' tracker weights move their priority as usual;
    /// without it (keepalived's default) every weight counts as 0, so a failing tracker puts
    /// the member, and with it the group, in FAULT.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync_group_tracking_weight: bool,
    /// `smtp_alert`: mail the group's state changes; default `global_defs.smtp_alert_vrrp`,
    /// else `smtp_alert`, else off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_alert: Option<bool>,
    /// `track_interface { }`: interfaces every member tracks, unweighted: one going down puts
    /// the whole group in FAULT.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_interface: Vec<String>,
    /// `track_script { }`: `vrrp_script`s every member tracks, unweighted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_script: Vec<String>,
    /// `track_file { }`: `vrrp_track_file`s every member tracks, unweighted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_file: Vec<String>,
    /// `track_process { }`: `vrrp_track_process`es every member tracks, unweighted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_process: Vec<String>,
}

/// `[vrrp_track_process.NAME]`, keepalived's `vrrp_track_process NAME { }`: whether enough
/// processes of a name run. Found by name (`/proc/PID/comm`, exactly: `haproxy` does not
/// match `haproxy-ctl`), or by command line with `full_command` or parameters.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackProcessBlock {
    /// `process NAME [PARAM ...]`: the process name, or its command (argv\[0\]) when
    /// matching command lines.
    pub process: String,
    /// The parameters after the command; giving any matches command lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// `param_match`: `"exact"` (the default with parameters; with none, the command must
    /// have none), `"partial"` (these first, then any) or `"initial"` (as many, the last a
    /// prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_match: Option<crate::vrrp::track::process::ParamMatch>,
    /// `full_command`: match the command line (`/proc/PID/cmdline`), not the name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_command: bool,
    /// `weight W`, -254..=254. Default 0: FAULT while the quorum is not met. A positive
    /// weight is added while it is, a negative one while it is not.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub weight: i32,
    /// `weight W reverse`: the weight's effect inverted (weight 0: FAULT while the quorum is
    /// met).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverse: bool,
    /// `quorum`: at least this many processes, 1..=65535. Default 1.
    #[serde(default = "one_u32")]
    pub quorum: u32,
    /// `quorum_max`: at most this many, 0..=65535; 0 (with the default quorum): none may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_max: Option<u32>,
    /// `fork_delay`: seconds the quorum must last before it counts as gained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_delay: Option<f64>,
    /// `terminate_delay`: seconds its loss must last before it counts as lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_delay: Option<f64>,
}

fn one_u32() -> u32 {
    1
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if signature"
)]
fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// `[vrrp_track_file.NAME]`, keepalived's `vrrp_track_file NAME { }`: an integer read from a
/// file; times the weight it moves the priority, and at -254 or below (or, with weight 0,
/// anything but 0) it puts the instance in FAULT.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackFileBlock {
    /// `file`: the path.
    pub file: std::path::PathBuf,
    /// `weight`: -254..=254. Default 1.
    #[serde(default = "one_i32", skip_serializing_if = "is_one_i32")]
    pub weight: i32,
    /// `init_file [VALUE]`: create the file with VALUE (default 0) if it does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_file: Option<i64>,
    /// `init_file ... overwrite`: write VALUE even when the file exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init_overwrite: bool,
}

fn one_i32() -> i32 {
    1
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if signature"
)]
fn is_one_i32(v: &i32) -> bool {
    *v == 1
}
