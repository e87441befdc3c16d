//! `balancer vrrp`: one VRRP instance from the command line, until SIGINT or SIGTERM. It is
//! how the network tests run our side against keepalived, and a quick way to try an election
//! before a configuration file exists.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

use crate::vrrp::auth::Password;
use crate::vrrp::config::{Config, InitialState};
use crate::vrrp::net::{InstanceSpec, NetError, Vip, run_instance};
use crate::vrrp::wire::{Addresses, Version};

/// keepalived's `vrrp_instance` keywords, as flags.
#[derive(Args, Clone, Debug)]
pub struct VrrpArgs {
    /// `interface`: where adverts go and the VIPs are added.
    #[arg(long)]
    pub interface: String,
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
    /// `authentication { auth_type PASS auth_pass ... }` (VRRPv2 only; 8 bytes are used).
    #[arg(long)]
    pub auth_pass: Option<String>,
    /// `garp_master_delay` in seconds (0: no second burst).
    #[arg(long)]
    pub garp_master_delay: Option<u64>,
    /// `garp_master_repeat`.
    #[arg(long)]
    pub garp_master_repeat: Option<u32>,
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
        config.auth = self.auth_pass.as_deref().map(Password::new);
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
        }
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
    let instance = run_instance(args.spec(), shutdown, None).await?;
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
