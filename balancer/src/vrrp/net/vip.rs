//! The interface an instance runs on, and its virtual addresses, through rtnetlink.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, CacheInfo};
use rtnetlink::packet_route::link::LinkAttribute;

use crate::vrrp::net::garp::Mac;

/// A virtual address with the prefix it is configured with (`virtual_ipaddress` in
/// keepalived: `198.18.1.100/24`; no prefix means a host address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Vip {
    /// # Errors
    /// The prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, VipParseError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(VipParseError::Prefix { prefix, max });
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a `virtual_ipaddress` line says besides the address, as keepalived's
/// `parse_ipaddress` reads it (`vrrp_ipaddress.c`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressOptions {
    /// `dev`: the interface the address goes on, when not the instance's.
    pub dev: Option<String>,
    /// `brd` / `broadcast` (IPv4); keepalived sets none unless told.
    pub broadcast: Option<std::net::Ipv4Addr>,
    /// `scope` (IPv4), as rtnetlink numbers it; global unless told.
    pub scope: Option<u8>,
    /// `label` (IPv4), as `ip address` shows it.
    pub label: Option<String>,
    /// `home`, `mngtmpaddr`, `noprefixroute`, `autojoin`: `IFA_F_*` flags to set.
    pub flags: u32,
    /// `-nodad`: keep the kernel's duplicate address detection for an IPv6 address, which
    /// keepalived (and we) otherwise skip.
    pub dad: bool,
    /// `preferred_lft` seconds (IPv6); `None` is keepalived's default: 0 (deprecated, so
    /// never picked as a source) for a /128, forever otherwise.
    pub preferred_lft: Option<u32>,
}

/// `IFA_F_*` flags (`linux/if_addr.h`).
pub mod flags {
    pub const HOMEADDRESS: u32 = 0x10;
    pub const MANAGETEMPADDR: u32 = 0x100;
    pub const NOPREFIXROUTE: u32 = 0x200;
    pub const MCAUTOJOIN: u32 = 0x400;
}

/// The kernel's "forever" lifetime.
const INFINITY_LIFE_TIME: u32 = u32::MAX;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VipParseError {
    #[error("{text:?} is not an address (198.18.1.100/24 or fd00::100/64)")]
    Address { text: String },
    #[error("{text:?} is not a prefix length")]
    PrefixText { text: String },
    #[error("prefix /{prefix} is longer than the address (at most /{max})")]
    Prefix { prefix: u8, max: u8 },
}

impl FromStr for Vip {
    type Err = VipParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| VipParseError::Address {
            text: addr_text.to_owned(),
        })?;
        let prefix = match prefix_text {
            Some(p) => p
                .parse()
                .map_err(|_| VipParseError::PrefixText { text: p.to_owned() })?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, prefix)
    }
}

/// What the I/O layer needs to know about the instance's interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// `None` on links without Ethernet addresses (no gratuitous ARP can be sent there).
    pub mac: Option<Mac>,
    /// Every address on the interface, in the kernel's order (the primary IPv4 one first).
    pub addresses: Vec<IpAddr>,
}

impl Link {
    /// The address adverts leave from when none is configured: for IPv6 the link-local
    /// address (RFC 5798 §5.1.2.1); for IPv4 the first address that is not a VIP (one we may
    /// have left behind), else the first one (an address owner's VIP is its own address).
    #[must_use]
    pub fn primary_address(&self, ipv6: bool, vips: &[Vip]) -> Option<IpAddr> {
        if ipv6 {
            return self.link_local().map(IpAddr::V6);
        }
        let mut v4 = self.addresses.iter().copied().filter(IpAddr::is_ipv4);
        let first = v4.clone().next();
        v4.find(|a| !vips.iter().any(|v| v.addr == *a)).or(first)
    }

    #[must_use]
    pub fn link_local(&self) -> Option<Ipv6Addr> {
        self.addresses.iter().find_map(|a| match a {
            IpAddr::V6(v6) if is_link_local(*v6) => Some(*v6),
            _ => None,
        })
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket")]
    Connect { source: std::io::Error },
    #[error("no interface named {interface:?}")]
    NoSuchInterface { interface: String },
    #[error("looking up interface {interface:?}")]
    Link {
        interface: String,
        source: rtnetlink::Error,
    },
    #[error("{operation} route {route}")]
    Route {
        operation: &'static str,
        route: String,
        source: rtnetlink::Error,
    },
    #[error("{operation} rule {rule}")]
    Rule {
        operation: &'static str,
        rule: String,
        source: rtnetlink::Error,
    },
    #[error("{operation} {vip} on interface index {ifindex}")]
    Address {
        operation: &'static str,
        vip: Vip,
        ifindex: u32,
        source: rtnetlink::Error,
    },
}

/// An rtnetlink connection, served by a task on the current tokio runtime.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Opens the connection and spawns the task that serves it.
    ///
    /// # Errors
    /// The netlink socket cannot be opened.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| NetlinkError::Connect { source })?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The underlying handle, for link operations ([`crate::vrrp::net::vmac`]).
    #[must_use]
    pub fn handle(&self) -> rtnetlink::Handle {
        self.handle.clone()
    }

    /// The interface called `name`, with its MAC and addresses.
    ///
    /// # Errors
    /// It does not exist, or netlink fails.
    pub async fn link(&self, name: &str) -> Result<Link, NetlinkError> {
        let link_err = |source| NetlinkError::Link {
            interface: name.to_owned(),
            source,
        };
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let message = match links.try_next().await {
            Ok(Some(m)) => m,
            // ENODEV comes back as an error rather than an empty answer.
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => {
                return Err(NetlinkError::NoSuchInterface {
                    interface: name.to_owned(),
                });
            }
            Err(e) => return Err(link_err(e)),
        };
        let index = message.header.index;
        let mac = message.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) => Mac::try_from(bytes.as_slice()).ok(),
            _ => None,
        });
        let addresses = self
            .addresses(index)
            .await
            .map_err(link_err)?
            .iter()
            .filter_map(address_of)
            .collect();
        Ok(Link {
            index,
            mac,
            addresses,
        })
    }

    async fn addresses(&self, ifindex: u32) -> Result<Vec<AddressMessage>, rtnetlink::Error> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute()
            .try_collect()
            .await
    }

    /// Adds `vip` to the interface; an address that is already there counts as added.
    ///
    /// # Errors
    /// The kernel refuses it.
    pub async fn add(
        &self,
        ifindex: u32,
        vip: Vip,
        options: &AddressOptions,
    ) -> Result<(), NetlinkError> {
        let mut request = self.handle.address().add(ifindex, vip.addr, vip.prefix);
        let message = request.message_mut();
        // rtnetlink adds the "+" broadcast by itself; keepalived adds one only when told.
        message
            .attributes
            .retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
        if let Some(brd) = options.broadcast {
            message.attributes.push(AddressAttribute::Broadcast(brd));
        }
        if let Some(scope) = options.scope {
            message.header.scope = scope.into();
        }
        if let Some(label) = &options.label {
            message
                .attributes
                .push(AddressAttribute::Label(label.clone()));
        }
        let mut flags = AddressFlags::from_bits_retain(options.flags);
        if vip.addr.is_ipv6() {
            // keepalived adds VIPs without duplicate address detection: the address must
            // answer at once, and the backup that just let go of it would make DAD fail.
            if !options.dad {
                flags |= AddressFlags::Nodad;
            }
            let preferred = options.preferred_lft.unwrap_or(if vip.prefix == 128 {
                0
            } else {
                INFINITY_LIFE_TIME
            });
            if preferred != INFINITY_LIFE_TIME {
                let mut lifetimes = CacheInfo::default();
                lifetimes.ifa_preferred = preferred;
                lifetimes.ifa_valid = INFINITY_LIFE_TIME;
                message
                    .attributes
                    .push(AddressAttribute::CacheInfo(lifetimes));
            }
        }
        if !flags.is_empty() {
            message.attributes.push(AddressAttribute::Flags(flags));
        }
        match request.execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            result => result.map_err(|source| NetlinkError::Address {
                operation: "adding",
                vip,
                ifindex,
                source,
            }),
        }
    }

    /// Adds (`add`) or removes a `virtual_routes` route; one already there counts as added,
    /// one already gone as removed.
    ///
    /// # Errors
    /// Its `dev` does not exist, or netlink refuses the route.
    pub async fn route(
        &self,
        route: &crate::vrrp::net::route::VirtualRoute,
        add: bool,
    ) -> Result<(), NetlinkError> {
        let ifindex = match &route.dev {
            Some(dev) => Some(self.link(dev).await?.index),
            None => None,
        };
        let message = route.message(ifindex);
        let result = if add {
            self.handle.route().add(message).execute().await
        } else {
            self.handle.route().del(message).execute().await
        };
        already(result, add).map_err(|source| NetlinkError::Route {
            operation: if add { "adding" } else { "removing" },
            route: format!("{}/{}", route.dst, route.prefix),
            source,
        })
    }

    /// Adds (`add`) or removes a `virtual_rules` rule; one already there counts as added,
    /// one already gone as removed.
    ///
    /// # Errors
    /// Netlink refuses the rule.
    pub async fn rule(
        &self,
        rule: &crate::vrrp::net::rule::VirtualRule,
        add: bool,
    ) -> Result<(), NetlinkError> {
        let message = rule.message();
        let result = if add {
            let mut request = self.handle.rule().add();
            *request.message_mut() = message;
            request.execute().await
        } else {
            self.handle.rule().del(message).execute().await
        };
        already(result, add).map_err(|source| NetlinkError::Rule {
            operation: if add { "adding" } else { "removing" },
            rule: format!("{rule:?}"),
            source,
        })
    }

    /// Removes `vip` (whatever prefix it carries) from the interface; returns whether it was
    /// there.
    ///
    /// # Errors
    /// Netlink fails.
    pub async fn del(&self, ifindex: u32, vip: Vip) -> Result<bool, NetlinkError> {
        let err = |source| NetlinkError::Address {
            operation: "removing",
            vip,
            ifindex,
            source,
        };
        let mut found = false;
        for message in self.addresses(ifindex).await.map_err(err)? {
            if address_of(&message) != Some(vip.addr) {
                continue;
            }
            found = true;
            match self.handle.address().del(message).execute().await {
                // Removed meanwhile (by an operator, or with its primary address).
                Err(rtnetlink::Error::NetlinkError(e))
                    if e.raw_code() == -libc::EADDRNOTAVAIL || e.raw_code() == -libc::ENOENT => {}
                result => result.map_err(err)?,
            }
        }
        Ok(found)
    }
}

/// Adding what is there already, or removing what is gone already, succeeded.
fn already(result: Result<(), rtnetlink::Error>, add: bool) -> Result<(), rtnetlink::Error> {
    match result {
        Err(rtnetlink::Error::NetlinkError(e))
            if (add && e.raw_code() == -libc::EEXIST)
                || (!add && (e.raw_code() == -libc::ESRCH || e.raw_code() == -libc::ENOENT)) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The interface's own address in an address message (`IFA_LOCAL` on IPv4 point-to-point
/// links differs from `IFA_ADDRESS`; elsewhere they are equal).
fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    address
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vips_like_keepalived() {
        let v: Vip = "198.18.1.100/24".parse().unwrap();
        assert_eq!(v.addr, IpAddr::from([198, 18, 1, 100]));
        assert_eq!(v.prefix, 24);
        assert_eq!("198.18.1.100".parse::<Vip>().unwrap().prefix, 32);
        assert_eq!("fd00::1".parse::<Vip>().unwrap().prefix, 128);
        assert_eq!(v.to_string(), "198.18.1.100/24");
        assert_eq!(
            "198.18.1.1/33".parse::<Vip>(),
            Err(VipParseError::Prefix {
                prefix: 33,
                max: 32
            })
        );
        assert!(matches!(
            "x/24".parse::<Vip>(),
            Err(VipParseError::Address { .. })
        ));
        assert!(matches!(
            "198.18.1.1/x".parse::<Vip>(),
            Err(VipParseError::PrefixText { .. })
        ));
    }

    #[test]
    fn primary_address_skips_vips_and_prefers_link_local_for_ipv6() {
        let link = Link {
            index: 2,
            mac: None,
            addresses: vec![
                "198.18.1.100".parse().unwrap(),
                "198.18.1.1".parse().unwrap(),
                "fd00::1".parse().unwrap(),
                "fe80::1".parse().unwrap(),
            ],
        };
        let vips = ["198.18.1.100/24".parse().unwrap()];
        assert_eq!(
            link.primary_address(false, &vips),
            Some("198.18.1.1".parse().unwrap())
        );
        assert_eq!(
            link.primary_address(true, &vips),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(link.link_local(), Some("fe80::1".parse().unwrap()));
        // An address owner: its only address is the VIP.
        let owner = Link {
            index: 2,
            mac: None,
            addresses: vec!["198.18.1.100".parse().unwrap()],
        };
        assert_eq!(
            owner.primary_address(false, &vips),
            Some("198.18.1.100".parse().unwrap())
        );
        assert_eq!(owner.primary_address(true, &vips), None);
    }
}
