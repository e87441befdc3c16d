//! What validation knows of the host it runs on: the networks directly attached to it, for
//! the rule that a DR real must be on one (DR rewrites only the destination MAC address, so
//! the real must be one hop away on the same link).

use std::fmt;
use std::net::IpAddr;

use crate::config::address::netmask_prefix;

/// An address with its prefix length: the network it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` is on this network.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The host a configuration is validated for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// The networks of its interfaces; `None` when the configuration is checked away from the
    /// node it is for (none of its XDP interfaces exists here), so host rules are skipped.
    pub networks: Option<Vec<Network>>,
}

impl Host {
    /// This host, as seen from the calling thread's network namespace, when at least one of
    /// `xdp_interfaces` exists here.
    #[must_use]
    pub fn current(xdp_interfaces: &[String]) -> Self {
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return Self::default();
        };
        let mut present = false;
        let mut networks = Vec::new();
        for a in addrs {
            present |= xdp_interfaces.contains(&a.interface_name);
            let ip = |s: &nix::sys::socket::SockaddrStorage| {
                s.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            };
            let (Some(addr), Some(mask)) = (
                a.address.as_ref().and_then(ip),
                a.netmask.as_ref().and_then(ip),
            ) else {
                continue;
            };
            if addr.is_loopback() {
                continue;
            }
            if let Some(prefix) = netmask_prefix(mask) {
                networks.push(Network { addr, prefix });
            }
        }
        Self {
            networks: present.then_some(networks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses_only() {
        let n = Network {
            addr: IpAddr::from([198, 18, 0, 1]),
            prefix: 24,
        };
        assert!(n.contains(IpAddr::from([198, 18, 0, 200])));
        assert!(!n.contains(IpAddr::from([198, 18, 1, 1])));
        assert!(!n.contains("fd00::1".parse().unwrap()));
        let v6 = Network {
            addr: "fd00::1".parse().unwrap(),
            prefix: 64,
        };
        assert!(v6.contains("fd00::ffff".parse().unwrap()));
        assert!(!v6.contains("fd00:0:0:1::1".parse().unwrap()));
        let all = Network {
            addr: IpAddr::from([0, 0, 0, 0]),
            prefix: 0,
        };
        assert!(all.contains(IpAddr::from([203, 0, 113, 1])));
    }

    #[test]
    fn a_host_without_the_xdp_interfaces_is_not_known() {
        assert_eq!(
            Host::current(&["no-such-interface-x".into()]).networks,
            None
        );
    }
}
