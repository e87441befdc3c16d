//! What one VRRP instance is configured with, with keepalived's defaults.

use std::net::IpAddr;
use std::time::Duration;

use crate::vrrp::auth::Auth;
use crate::vrrp::wire::{Addresses, Family, Version};

/// keepalived's `state`: where an instance starts. Its only effect in keepalived is how soon the
/// instance becomes master: a priority 255 `MASTER` takes over at once, any other `MASTER`
/// waits one advert interval instead of the `Master_Down_Interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialState {
    Backup,
    Master,
}

/// keepalived's `old_unicast_checksum`: how VRRPv3 IPv4 unicast checksums are sent and accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnicastChecksum {
    /// keepalived's default: send the RFC checksum, but switch to the old one for good once a
    /// unicast peer is heard using it.
    #[default]
    Auto,
    /// `old_unicast_checksum never`: RFC checksum only.
    Never,
    /// `old_unicast_checksum`: the old checksum (pseudo-header names 224.0.0.18) both ways.
    Old,
}

/// Gratuitous ARP / unsolicited NA timing, with keepalived's names and defaults
/// (`man 5 keepalived.conf`, `vrrp_garp_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Garp {
    /// `garp_master_delay`: a second burst this long after becoming master; zero for none.
    pub master_delay: Duration,
    /// `garp_master_repeat`: messages per VIP in each burst after becoming master.
    pub master_repeat: u32,
    /// `garp_master_refresh`: period of refresh bursts while master; zero for none.
    pub master_refresh: Duration,
    /// `garp_master_refresh_repeat`: messages per VIP in each refresh burst.
    pub master_refresh_repeat: u32,
    /// `garp_lower_prio_delay`: a second burst this long after a lower priority advert.
    pub lower_prio_delay: Duration,
    /// `garp_lower_prio_repeat`: messages per VIP when a master hears a lower priority advert;
    /// zero sends none.
    pub lower_prio_repeat: u32,
}

impl Default for Garp {
    fn default() -> Self {
        Self {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            master_refresh: Duration::ZERO,
            master_refresh_repeat: 1,
            // keepalived defaults these to garp_master_delay / garp_master_repeat.
            lower_prio_delay: Duration::from_secs(5),
            lower_prio_repeat: 5,
        }
    }
}

/// One `vrrp_instance`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is an independent keepalived keyword, not a state"
)]
pub struct Config {
    /// `virtual_router_id`, 1..=255.
    pub vrid: u8,
    /// `version`: keepalived defaults to 2 for IPv4 and always uses 3 for IPv6.
    pub version: Version,
    /// `priority`, 1..=255; 255 is the address owner.
    pub priority: u8,
    /// `advert_int`: whole seconds for VRRPv2, centiseconds for VRRPv3.
    pub advert_interval: Duration,
    /// The source address of our adverts (`unicast_src_ip` / `mcast_src_ip` or the interface's
    /// primary address); it breaks ties between equal priorities (RFC 5798 §6.4.3).
    pub primary_address: IpAddr,
    /// `virtual_ipaddress`: the addresses the master owns and the adverts list.
    pub vips: Addresses,
    /// `authentication { auth_type PASS | AH }` (VRRPv2 only; AH over IPv4 only).
    pub auth: Option<Auth>,
    /// `state`; `None` is keepalived's default: `MASTER` at priority 255, else `BACKUP`.
    pub initial_state: Option<InitialState>,
    /// `false` is `nopreempt`: a backup never takes over from a live lower-priority master.
    pub preempt: bool,
    /// `preempt_delay`: how long a backup keeps accepting a lower-priority master before it
    /// preempts it.
    pub preempt_delay: Duration,
    /// `accept` / `no_accept` (RFC 5798 §6.1 `Accept_Mode`); the I/O layer applies it with the VIPs.
    pub accept: bool,
    pub garp: Garp,
    /// `lower_prio_no_advert`: a master that hears a lower priority advert does not answer it
    /// with an advert of its own (the RFC behaviour; keepalived answers by default).
    pub lower_prio_no_advert: bool,
    /// `higher_prio_send_advert`: a master that hears a higher priority advert sends one more
    /// advert before it steps down.
    pub higher_prio_send_advert: bool,
    /// `unicast_peer`: empty for multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// `check_unicast_src`: drop unicast adverts from addresses outside `unicast_peers`.
    pub check_unicast_src: bool,
    pub unicast_checksum: UnicastChecksum,
    /// `v3_checksum_as_v2`: VRRPv3 IPv4 checksums without the pseudo-header.
    pub v3_checksum_as_v2: bool,
    /// `vrrp_owner_ignore_adverts`: an address owner drops every advert, as RFC 5798 §7.1 says;
    /// keepalived's default (false) processes them so two owners can resolve the conflict.
    pub owner_ignores_adverts: bool,
}

impl Config {
    /// An instance with keepalived's defaults: priority 100, 1 s adverts, preempt, accept.
    #[must_use]
    pub fn new(vrid: u8, version: Version, primary_address: IpAddr, vips: Addresses) -> Self {
        Self {
            vrid,
            version,
            priority: 100,
            advert_interval: Duration::from_secs(1),
            primary_address,
            vips,
            auth: None,
            initial_state: None,
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept: true,
            garp: Garp::default(),
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            unicast_peers: Vec::new(),
            check_unicast_src: false,
            unicast_checksum: UnicastChecksum::Auto,
            v3_checksum_as_v2: false,
            owner_ignores_adverts: false,
        }
    }

    #[must_use]
    pub fn family(&self) -> Family {
        Family::of(self.primary_address)
    }

    #[must_use]
    pub fn is_unicast(&self) -> bool {
        !self.unicast_peers.is_empty()
    }

    /// The state the instance starts towards, resolving keepalived's default.
    #[must_use]
    pub fn initial_state(&self) -> InitialState {
        self.initial_state.unwrap_or(if self.priority == 255 {
            InitialState::Master
        } else {
            InitialState::Backup
        })
    }

    /// Checks what the wire and the state machine cannot express or would silently ignore.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::Vrid);
        }
        if self.priority == 0 {
            return Err(ConfigError::Priority);
        }
        let interval_ok = match self.version {
            // RFC 3768 §5.3.7: whole seconds in 8 bits.
            Version::V2 => {
                self.advert_interval.subsec_nanos() == 0
                    && (1..=255).contains(&self.advert_interval.as_secs())
            }
            // RFC 5798 §5.2.7: centiseconds in 12 bits.
            Version::V3 => {
                self.advert_interval.as_nanos().is_multiple_of(10_000_000)
                    && (1..=4095).contains(&(self.advert_interval.as_millis() / 10))
            }
        };
        if !interval_ok {
            return Err(ConfigError::AdvertInterval {
                version: self.version.number(),
                interval: self.advert_interval,
            });
        }
        if self.vips.family() != self.family() {
            return Err(ConfigError::Families);
        }
        if self.vips.len() > 255 {
            return Err(ConfigError::TooManyVips {
                count: self.vips.len(),
            });
        }
        if self
            .unicast_peers
            .iter()
            .any(|p| Family::of(*p) != self.family())
        {
            return Err(ConfigError::Families);
        }
        if self.version == Version::V2 && self.family() == Family::V6 {
            return Err(ConfigError::V2OverIpv6);
        }
        if self.auth.is_some() && self.version == Version::V3 {
            return Err(ConfigError::AuthNeedsV2);
        }
        // keepalived clears these with a warning; we refuse, because the configuration says
        // two contradicting things and guessing which one was meant is how outages start.
        if !self.preempt && self.priority == 255 {
            return Err(ConfigError::NopreemptWithOwner);
        }
        if self.initial_state() == InitialState::Master && self.priority != 255 {
            if !self.preempt {
                return Err(ConfigError::NopreemptWithStateMaster);
            }
            if !self.preempt_delay.is_zero() {
                return Err(ConfigError::PreemptDelayWithStateMaster);
            }
        }
        if !self.preempt && !self.preempt_delay.is_zero() {
            return Err(ConfigError::PreemptDelayWithNopreempt);
        }
        if self.preempt_delay > Duration::from_secs(1000) {
            return Err(ConfigError::PreemptDelay {
                delay: self.preempt_delay,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("virtual_router_id must be 1 to 255")]
    Vrid,
    #[error("priority must be 1 to 255 (0 is reserved for a master that stops)")]
    Priority,
    #[error(
        "advert_int {interval:?} does not fit VRRPv{version} (v2: whole seconds 1 to 255; \
         v3: hundredths of a second, 0.01 to 40.95)"
    )]
    AdvertInterval { version: u8, interval: Duration },
    #[error("the primary address, the virtual addresses and the unicast peers must share a family")]
    Families,
    #[error("{count} virtual addresses do not fit an advert (at most 255)")]
    TooManyVips { count: usize },
    #[error("VRRPv2 is IPv4 only; use version 3 for IPv6")]
    V2OverIpv6,
    #[error("authentication exists in VRRPv2 only")]
    AuthNeedsV2,
    #[error("nopreempt cannot apply to the address owner (priority 255)")]
    NopreemptWithOwner,
    #[error("nopreempt cannot apply with state MASTER; use state BACKUP")]
    NopreemptWithStateMaster,
    #[error("preempt_delay cannot apply with state MASTER; use state BACKUP")]
    PreemptDelayWithStateMaster,
    #[error("preempt_delay cannot apply with nopreempt")]
    PreemptDelayWithNopreempt,
    #[error("preempt_delay {delay:?} is longer than 1000 s")]
    PreemptDelay { delay: Duration },
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4() -> Config {
        Config::new(
            7,
            Version::V3,
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            Addresses::V4(vec![Ipv4Addr::new(198, 18, 9, 1)]),
        )
    }

    #[test]
    fn defaults_are_valid_and_keepalived_like() {
        let c = v4();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.initial_state(), InitialState::Backup);
        assert_eq!(c.garp, Garp::default());
        assert_eq!(c.garp.master_delay, Duration::from_secs(5));
        assert_eq!(c.garp.master_repeat, 5);
        assert!(c.garp.master_refresh.is_zero());
    }

    #[test]
    fn owner_starts_as_master_by_default() {
        let mut c = v4();
        c.priority = 255;
        assert_eq!(c.initial_state(), InitialState::Master);
        c.initial_state = Some(InitialState::Backup);
        assert_eq!(c.initial_state(), InitialState::Backup);
    }

    #[test]
    fn rejects_what_cannot_work() {
        type Case = (fn(&mut Config), ConfigError);
        let cases: Vec<Case> = vec![
            (|c| c.vrid = 0, ConfigError::Vrid),
            (|c| c.priority = 0, ConfigError::Priority),
            (
                |c| c.advert_interval = Duration::from_millis(5),
                ConfigError::AdvertInterval {
                    version: 3,
                    interval: Duration::from_millis(5),
                },
            ),
            (
                |c| {
                    c.version = Version::V2;
                    c.advert_interval = Duration::from_millis(1500);
                },
                ConfigError::AdvertInterval {
                    version: 2,
                    interval: Duration::from_millis(1500),
                },
            ),
            (
                |c| c.vips = Addresses::V6(vec![Ipv6Addr::LOCALHOST]),
                ConfigError::Families,
            ),
            (
                |c| c.auth = Some(Auth::Pass(crate::vrrp::auth::Password::new("x"))),
                ConfigError::AuthNeedsV2,
            ),
            (
                |c| {
                    c.priority = 255;
                    c.preempt = false;
                },
                ConfigError::NopreemptWithOwner,
            ),
            (
                |c| {
                    c.initial_state = Some(InitialState::Master);
                    c.preempt = false;
                },
                ConfigError::NopreemptWithStateMaster,
            ),
            (
                |c| {
                    c.initial_state = Some(InitialState::Master);
                    c.preempt_delay = Duration::from_secs(2);
                },
                ConfigError::PreemptDelayWithStateMaster,
            ),
            (
                |c| {
                    c.preempt = false;
                    c.preempt_delay = Duration::from_secs(2);
                },
                ConfigError::PreemptDelayWithNopreempt,
            ),
        ];
        for (change, expected) in cases {
            let mut c = v4();
            change(&mut c);
            assert_eq!(c.validate(), Err(expected));
        }
    }

    #[test]
    fn v2_over_ipv6_is_rejected() {
        let c = Config::new(
            7,
            Version::V2,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            Addresses::V6(vec![Ipv6Addr::LOCALHOST]),
        );
        assert_eq!(c.validate(), Err(ConfigError::V2OverIpv6));
    }
}
