//! `balancer vrrp`: one VRRP instance from the command line, until SIGINT or SIGTERM. It is
//! how the network tests run our side against keepalived, and a quick way to try an election
//! before a configuration file exists.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

use crate::notify::{self, InstanceScripts, Script, ScriptError, ScriptUser, SecurityError};
use crate::vrrp::auth::{Auth, Password};
use crate::vrrp::config::{Config, InitialState};
use crate::vrrp::net::{InstanceSpec, NetError, Vip, run_instance};
use crate::vrrp::track::{Track, TrackFile, TrackInterface, TrackScript};
use crate::vrrp::wire::{Addresses, Version};

/// keepalived's `vrrp_instance` keywords, as flags.
#[derive(Args, Clone, Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one command-line flag per keepalived keyword that takes no value"
)]
pub struct VrrpArgs {
    /// `interface`: where adverts go and the VIPs are added.
    #[arg(long)]
    pub interface: String,
    /// `dont_track_primary`: `--interface` going down is not a FAULT.
    #[arg(long)]
    pub dont_track_primary: bool,
    /// `virtual_router_id`, 1 to 255.
    #[arg(long)]
    pub vrid: u8,
    /// `priority`, 1 to 255 (255: the address owner).
    #[arg(long, default_value_t = 100)]
    pub priority: u8,
    /// `virtual_ipaddress`: ADDR/PREFIX, repeatable; all of one family.
    #[arg(long = "vip", required = true)]
    pub vips: Vec<Vip>,
    /// VRRP version; keepalived's default is 2 for IPv4, and IPv6 is always 3.
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub version: Option<u8>,
    /// `advert_int` in seconds (VRRPv3: hundredths allowed, e.g. 0.2).
    #[arg(long, default_value_t = 1.0)]
    pub advert_int: f64,
    /// `unicast_peer`, repeatable; none means multicast.
    #[arg(long = "unicast-peer")]
    pub unicast_peers: Vec<IpAddr>,
    /// `unicast_src_ip` / `mcast_src_ip`; default: the interface's first IPv4 address, or
    /// its IPv6 link-local one.
    #[arg(long)]
    pub src: Option<IpAddr>,
    /// `mcast_dst_ip`; default 224.0.0.18 / `ff02::12`.
    #[arg(long)]
    pub group: Option<IpAddr>,
    /// `state`.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// `nopreempt`.
    #[arg(long)]
    pub nopreempt: bool,
    /// keepalived's `use_vmac NAME`: the addresses live on a macvlan of this name carrying
    /// the virtual router MAC.
    #[arg(long)]
    pub vmac: Option<String>,
    /// keepalived's `vmac_xmit_base`: with `--vmac`, adverts leave from the base interface.
    #[arg(long, requires = "vmac")]
    pub vmac_xmit_base: bool,
    /// keepalived's `virtual_ipaddress_excluded`: owned with the VIPs, not advertised
    /// (repeatable, either family).
    #[arg(long = "vip-excluded")]
    pub excluded: Vec<Vip>,
    /// `authentication { auth_type PASS auth_pass ... }` (VRRPv2 only; 8 bytes are used).
    #[arg(long)]
    pub auth_pass: Option<String>,
    /// With `--auth-pass`: `PASS` (the password travels in the advert) or `AH` (it keys
    /// `IPsec` AH, IPv4 only), as keepalived's `auth_type`.
    #[arg(long, value_enum, requires = "auth_pass")]
    pub auth_type: Option<AuthArg>,
    /// `garp_master_delay` in seconds (0: no second burst).
    #[arg(long)]
    pub garp_master_delay: Option<u64>,
    /// `garp_master_repeat`.
    #[arg(long)]
    pub garp_master_repeat: Option<u32>,
    /// The instance's name (`vrrp_instance NAME`), the generic notify script's second
    /// argument; default `VI_<vrid>`.
    #[arg(long)]
    pub name: Option<String>,
    /// `track_interface`: IF (FAULT while it is down) or IF:WEIGHT (-253..253), repeatable.
    #[arg(long = "track-interface", value_parser = parse_track_interface)]
    pub track_interfaces: Vec<TrackInterface>,
    /// `track_script`: a `vrrp_script`'s `script` string (split as keepalived does, no
    /// shell), repeatable; the --script-* flags below apply to each.
    #[arg(long = "track-script")]
    pub track_scripts: Vec<String>,
    /// `vrrp_script` `interval` in seconds.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub script_interval: Duration,
    /// `vrrp_script` `timeout` in seconds; default the interval.
    #[arg(long, value_parser = parse_seconds)]
    pub script_timeout: Option<Duration>,
    /// `vrrp_script` `weight`, -253..253; 0 means FAULT while the script fails.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(-253..=253))]
    pub script_weight: i32,
    /// `vrrp_script` `rise`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub script_rise: u32,
    /// `vrrp_script` `fall`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub script_fall: u32,
    /// `vrrp_script` `init_fail`.
    #[arg(long)]
    pub script_init_fail: bool,
    /// `track_file`: PATH or PATH:WEIGHT (-254..254, default 1), repeatable.
    #[arg(long = "track-file", value_parser = parse_track_file)]
    pub track_files: Vec<TrackFile>,
    /// `notify_master`: run with no arguments on becoming master.
    #[arg(long)]
    pub notify_master: Option<String>,
    /// `notify_backup`.
    #[arg(long)]
    pub notify_backup: Option<String>,
    /// `notify_fault`.
    #[arg(long)]
    pub notify_fault: Option<String>,
    /// `notify_stop`: when the instance stops.
    #[arg(long)]
    pub notify_stop: Option<String>,
    /// `notify`: every state change, with INSTANCE NAME STATE PRIORITY appended.
    #[arg(long)]
    pub notify: Option<String>,
    /// `notify_master_rx_lower_pri`.
    #[arg(long)]
    pub notify_master_rx_lower_pri: Option<String>,
    /// `script_user`: USER or USER:GROUP for every script; default `keepalived_script` if that
    /// user exists, else the user we run as.
    #[arg(long)]
    pub script_user: Option<String>,
    /// `enable_script_security`: refuse scripts run as root from paths others can change.
    #[arg(long)]
    pub enable_script_security: bool,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

/// `NAME[:WEIGHT]` split at the last colon, the weight within `range`.
fn name_and_weight(
    s: &str,
    range: std::ops::RangeInclusive<i32>,
) -> Result<(&str, Option<i32>), String> {
    match s.rsplit_once(':') {
        Some((name, weight)) if !name.is_empty() => match weight.parse::<i32>() {
            Ok(w) if range.contains(&w) => Ok((name, Some(w))),
            _ => Err(format!(
                "{weight:?} is not a weight from {} to {}",
                range.start(),
                range.end()
            )),
        },
        _ if s.is_empty() => Err("empty name".to_owned()),
        _ => Ok((s, None)),
    }
}

fn parse_track_interface(s: &str) -> Result<TrackInterface, String> {
    let (name, weight) = name_and_weight(s, -253..=253)?;
    Ok(TrackInterface {
        name: name.to_owned(),
        weight,
    })
}

fn parse_track_file(s: &str) -> Result<TrackFile, String> {
    let (path, weight) = name_and_weight(s, -254..=254)?;
    let mut file = TrackFile::new(PathBuf::from(path));
    if let Some(w) = weight {
        file.weight = w;
    }
    Ok(file)
}

/// `--auth-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum AuthArg {
    Pass,
    Ah,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum StateArg {
    Master,
    Backup,
}

impl VrrpArgs {
    /// The instance these flags describe, with keepalived's defaults for the rest.
    #[must_use]
    pub fn spec(&self) -> InstanceSpec {
        let ipv6 = self.vips.first().is_some_and(|v| v.addr.is_ipv6());
        let primary = self.src.unwrap_or(if ipv6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        });
        let version = match self.version {
            Some(3) => Version::V3,
            None if ipv6 => Version::V3,
            Some(_) | None => Version::V2,
        };
        // run_instance fills in the list from `vips`.
        let empty = if ipv6 {
            Addresses::V6(Vec::new())
        } else {
            Addresses::V4(Vec::new())
        };
        let mut config = Config::new(self.vrid, version, primary, empty);
        config.priority = self.priority;
        // Out-of-range or non-finite values become an interval that Config::validate rejects
        // with its own message.
        config.advert_interval =
            Duration::try_from_secs_f64(self.advert_int).unwrap_or(Duration::ZERO);
        if version == Version::V3 {
            // Round to whole centiseconds, as the wire carries them (RFC 5798 §5.2.7).
            let cs = (config.advert_interval.as_millis() + 5) / 10;
            config.advert_interval = Duration::from_millis(u64::try_from(cs * 10).unwrap_or(0));
        }
        config.unicast_peers.clone_from(&self.unicast_peers);
        config.initial_state = self.state.map(|s| match s {
            StateArg::Master => InitialState::Master,
            StateArg::Backup => InitialState::Backup,
        });
        config.preempt = !self.nopreempt;
        config.auth = self.auth_pass.as_deref().map(|p| {
            if self.auth_type == Some(AuthArg::Ah) {
                Auth::Ah(Password::new(p))
            } else {
                Auth::Pass(Password::new(p))
            }
        });
        if let Some(delay) = self.garp_master_delay {
            config.garp.master_delay = Duration::from_secs(delay);
        }
        if let Some(repeat) = self.garp_master_repeat {
            config.garp.master_repeat = repeat;
        }
        InstanceSpec {
            interface: self.interface.clone(),
            config,
            vips: self.vips.clone(),
            group: self.group,
            vmac: self.vmac.clone(),
            vmac_xmit_base: self.vmac_xmit_base,
            excluded: self.excluded.clone(),
            routes: Vec::new(),
            rules: Vec::new(),
            address_options: std::collections::BTreeMap::new(),
            track: Track {
                interfaces: self.track_interfaces.clone(),
                scripts: Vec::new(),
                files: self.track_files.clone(),
                processes: Vec::new(),
                dont_track_primary: self.dont_track_primary,
            },
        }
    }

    /// The user scripts run as: `--script-user`, else keepalived's default.
    ///
    /// # Errors
    /// The user or group does not exist, or security is on without a default user.
    pub fn script_user(&self) -> Result<ScriptUser, SecurityError> {
        ScriptUser::from_spec(self.script_user.as_deref(), self.enable_script_security)
    }

    /// The tracked scripts and the notify scripts, split and checked.
    ///
    /// # Errors
    /// A script does not parse, cannot be found or run, or is refused by script security.
    pub fn scripts(&self) -> Result<(Vec<TrackScript>, InstanceScripts), CommandError> {
        let any = !self.track_scripts.is_empty()
            || [
                &self.notify_master,
                &self.notify_backup,
                &self.notify_fault,
                &self.notify_stop,
                &self.notify,
                &self.notify_master_rx_lower_pri,
            ]
            .iter()
            .any(|s| s.is_some());
        if !any {
            return Ok((Vec::new(), InstanceScripts::default()));
        }
        let user = self
            .script_user()
            .map_err(|source| CommandError::ScriptUser { source })?;
        let security = self.enable_script_security;
        let prepare = |command: &String| Script::prepare(command, user.clone(), security);
        let optional = |command: &Option<String>| command.as_ref().map(prepare).transpose();
        let tracked = self
            .track_scripts
            .iter()
            .map(|command| {
                Ok(TrackScript {
                    script: prepare(command)?,
                    interval: self.script_interval,
                    timeout: self.script_timeout,
                    weight: self.script_weight,
                    rise: self.script_rise,
                    fall: self.script_fall,
                    init_fail: self.script_init_fail,
                })
            })
            .collect::<Result<Vec<_>, ScriptError>>()?;
        let notify = InstanceScripts {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("VI_{}", self.vrid)),
            master: optional(&self.notify_master)?,
            backup: optional(&self.notify_backup)?,
            fault: optional(&self.notify_fault)?,
            stop: optional(&self.notify_stop)?,
            generic: optional(&self.notify)?,
            master_rx_lower_pri: optional(&self.notify_master_rx_lower_pri)?,
            fifos: Vec::new(),
            mail: None,
        };
        Ok((tracked, notify))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("installing the {signal} handler")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("script user")]
    ScriptUser { source: SecurityError },
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// Runs the instance until SIGINT or SIGTERM, then steps down (priority 0, VIPs removed).
///
/// # Errors
/// The signal handlers or the instance's setup fail.
pub async fn run(args: &VrrpArgs) -> Result<(), CommandError> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(|source| CommandError::Signal {
        signal: "SIGINT",
        source,
    })?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| CommandError::Signal {
        signal: "SIGTERM",
        source,
    })?;
    let shutdown = async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    };
    let mut spec = args.spec();
    let (tracked, scripts) = args.scripts()?;
    spec.track.scripts = tracked;
    let (tx, notifier) = if scripts.is_empty() {
        (None, None)
    } else {
        let (tx, task) = notify::spawn(scripts);
        (Some(tx), Some(task))
    };
    let instance = run_instance(spec, shutdown, tx).await?;
    // The instance dropped its sender: the notifier ends once the queued scripts (notify_stop
    // last, bounded by its timeout) have run.
    if let Some(task) = notifier {
        let _ = task.await;
    }
    let t = instance.transitions();
    tracing::info!(
        became_master = t.become_master,
        released_master = t.release_master,
        priority_zero_sent = t.priority_zero_sent,
        "VRRP instance stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        vrrp: VrrpArgs,
    }

    fn spec(args: &[&str]) -> InstanceSpec {
        let mut full = vec!["balancer"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).unwrap().vrrp.spec()
    }

    #[test]
    fn keepalived_defaults_per_family() {
        let s = spec(&[
            "--interface",
            "e0",
            "--vrid",
            "7",
            "--vip",
            "198.18.1.100/24",
        ]);
        assert_eq!(s.config.version, Version::V2);
        assert_eq!(s.config.priority, 100);
        assert_eq!(s.config.advert_interval, Duration::from_secs(1));
        assert!(s.config.primary_address.is_unspecified());
        assert!(s.config.preempt);
        let s = spec(&["--interface", "e0", "--vrid", "7", "--vip", "fd00::100/64"]);
        assert_eq!(s.config.version, Version::V3);
        assert!(s.config.primary_address.is_ipv6());
    }

    #[test]
    fn flags_map_to_keywords() {
        let s = spec(&[
            "--interface",
            "e0",
            "--vrid",
            "9",
            "--priority",
            "200",
            "--vip",
            "198.18.1.100/24",
            "--version",
            "3",
            "--advert-int",
            "0.2",
            "--unicast-peer",
            "198.18.1.2",
            "--state",
            "BACKUP",
            "--nopreempt",
            "--src",
            "198.18.1.1",
        ]);
        assert_eq!(s.config.vrid, 9);
        assert_eq!(s.config.priority, 200);
        assert_eq!(s.config.version, Version::V3);
        assert_eq!(s.config.advert_interval, Duration::from_millis(200));
        assert_eq!(
            s.config.unicast_peers,
            vec!["198.18.1.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(s.config.initial_state, Some(InitialState::Backup));
        assert!(!s.config.preempt);
        assert_eq!(
            s.config.primary_address,
            "198.18.1.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn tracking_flags() {
        let s = spec(&[
            "--interface",
            "e0",
            "--vrid",
            "7",
            "--vip",
            "198.18.1.100/24",
            "--track-interface",
            "e1",
            "--track-interface",
            "e2:-20",
            "--track-file",
            "/run/x:-3",
            "--track-file",
            "/run/y",
        ]);
        assert_eq!(
            s.track.interfaces,
            [
                TrackInterface {
                    name: "e1".into(),
                    weight: None
                },
                TrackInterface {
                    name: "e2".into(),
                    weight: Some(-20)
                }
            ]
        );
        let files: Vec<_> = s
            .track
            .files
            .iter()
            .map(|f| (f.path.clone(), f.weight))
            .collect();
        assert_eq!(
            files,
            [(PathBuf::from("/run/x"), -3), (PathBuf::from("/run/y"), 1)]
        );
        let mut full = vec!["balancer", "--interface", "e0", "--vrid", "7"];
        full.extend(["--vip", "198.18.1.100/24", "--track-interface", "e1:300"]);
        assert!(Cli::try_parse_from(&full).is_err());
        full.truncate(7);
        full.extend(["--track-script", "/bin/true", "--script-weight", "-254"]);
        assert!(Cli::try_parse_from(&full).is_err());
    }

    #[test]
    fn script_flags_build_tracked_and_notify_scripts() {
        let mut full = vec!["balancer", "--interface", "e0", "--vrid", "7"];
        full.extend([
            "--vip",
            "198.18.1.100/24",
            "--track-script",
            "/usr/bin/sh -c 'exit 0'",
            "--script-interval",
            "0.5",
            "--script-weight",
            "-30",
            "--script-rise",
            "2",
            "--script-fall",
            "3",
            "--notify",
            "/usr/bin/true",
        ]);
        let args = Cli::try_parse_from(full).unwrap().vrrp;
        let (tracked, notify) = args.scripts().unwrap();
        assert_eq!(tracked.len(), 1);
        let t = &tracked[0];
        assert_eq!(t.script.args, ["-c", "exit 0"]);
        assert_eq!(
            (t.interval, t.timeout, t.weight, t.rise, t.fall),
            (Duration::from_millis(500), None, -30, 2, 3)
        );
        assert_eq!(notify.name, "VI_7");
        assert!(notify.generic.is_some() && notify.master.is_none());
    }

    #[test]
    fn bad_values_are_refused_by_the_parser_or_the_config() {
        let mut full = vec!["balancer", "--interface", "e0", "--vrid", "7"];
        full.extend(["--vip", "198.18.1.100/40"]);
        assert!(Cli::try_parse_from(&full).is_err());
        let s = spec(&[
            "--interface",
            "e0",
            "--vrid",
            "7",
            "--vip",
            "198.18.1.100",
            "--advert-int=-1",
        ]);
        let mut config = s.config;
        config.vips = Addresses::V4(vec![Ipv4Addr::new(198, 18, 1, 100)]);
        config.primary_address = Ipv4Addr::new(198, 18, 1, 1).into();
        assert!(config.validate().is_err());
    }
}
