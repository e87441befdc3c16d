//! Where each real is reached, resolved in userspace over rtnetlink: the route's output
//! interface, the next hop's MAC from the neighbour table, and our MAC on that interface.
//!
//! With the egress known, the XDP program rewrites MACs and sends without asking the kernel's
//! FIB per packet, which costs per packet and which the kernel refuses on interfaces without
//! forwarding. A real whose next hop is not resolved yet keeps the FIB path (the kernel is
//! prompted to resolve it) until a later pass finds the neighbour.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket},
};

use futures_util::TryStreamExt as _;
use rtnetlink::{
    RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        link::LinkAttribute,
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
        route::{RouteAddress, RouteAttribute, RouteType},
    },
};

use crate::model::Egress;

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("opening a netlink socket")]
    Connect { source: std::io::Error },
    #[error("{what}")]
    Netlink {
        what: &'static str,
        source: rtnetlink::Error,
    },
}

/// An rtnetlink connection for egress lookups, served by a task on the current runtime.
pub struct Resolver {
    handle: rtnetlink::Handle,
}

impl Resolver {
    /// # Errors
    /// The netlink socket cannot be opened.
    pub fn connect() -> Result<Self, EgressError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| EgressError::Connect { source })?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The egress towards each of `addrs` that can be resolved now: one route lookup per
    /// address, one neighbour-table read per family and one link read per interface. An
    /// address without a route, or whose next hop's MAC is not known yet, is left out (the
    /// kernel is prompted to resolve the next hop, for a later call).
    ///
    /// # Errors
    /// Netlink fails.
    pub async fn resolve(&self, addrs: &[IpAddr]) -> Result<HashMap<IpAddr, Egress>, EgressError> {
        let mut hops = Vec::new();
        for &addr in addrs {
            if let Some(hop) = self.route(addr).await {
                hops.push((addr, hop));
            }
        }
        let mut neighbours = HashMap::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            if hops
                .iter()
                .any(|(_, (_, h))| h.is_ipv4() == (family == AddressFamily::Inet))
            {
                self.neighbours(family, &mut neighbours)
                    .await
                    .map_err(|source| EgressError::Netlink {
                        what: "reading the neighbour table",
                        source,
                    })?;
            }
        }
        let mut macs: HashMap<u32, Option<[u8; 6]>> = HashMap::new();
        let mut out = HashMap::new();
        for (addr, (ifindex, next_hop)) in hops {
            let Some(&dmac) = neighbours.get(&(ifindex, next_hop)) else {
                solicit(next_hop);
                continue;
            };
            let smac = if let Some(m) = macs.get(&ifindex) {
                *m
            } else {
                let m = self.link_mac(ifindex).await;
                macs.insert(ifindex, m);
                m
            };
            if let Some(smac) = smac {
                out.insert(
                    addr,
                    Egress {
                        ifindex,
                        dmac,
                        smac,
                    },
                );
            }
        }
        Ok(out)
    }

    /// The route to `addr` as the kernel would choose it: output interface and next hop
    /// (the gateway, or `addr` itself on a directly attached network); `None` without a route
    /// or for a local address.
    async fn route(&self, addr: IpAddr) -> Option<(u32, IpAddr)> {
        let query = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(addr, if addr.is_ipv4() { 32 } else { 128 })
            .ok()?;
        let mut routes = self.handle.route().get(query.build()).execute();
        // No route is an error answer, not an empty one.
        let route = routes.try_next().await.ok()??;
        if route.header.kind == RouteType::Local {
            return None;
        }
        let mut oif = None;
        let mut gateway = None;
        for a in &route.attributes {
            match a {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(IpAddr::V4(*g)),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => {
                    gateway = Some(IpAddr::V6(*g));
                }
                _ => {}
            }
        }
        Some((oif?, gateway.unwrap_or(addr)))
    }

    /// Adds the entries of `family` the kernel still trusts, by (interface, address).
    async fn neighbours(
        &self,
        family: AddressFamily,
        into: &mut HashMap<(u32, IpAddr), [u8; 6]>,
    ) -> Result<(), rtnetlink::Error> {
        let mut entries = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute();
        while let Some(n) = entries.try_next().await? {
            if !matches!(
                n.header.state,
                NeighbourState::Reachable
                    | NeighbourState::Stale
                    | NeighbourState::Delay
                    | NeighbourState::Probe
                    | NeighbourState::Permanent
                    | NeighbourState::Noarp
            ) {
                continue;
            }
            let mut dst = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        dst = Some(IpAddr::V4(*v4));
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        dst = Some(IpAddr::V6(*v6));
                    }
                    NeighbourAttribute::LinkLayerAddress(b) => {
                        mac = <[u8; 6]>::try_from(b.as_slice()).ok();
                    }
                    _ => {}
                }
            }
            if let (Some(dst), Some(mac)) = (dst, mac) {
                into.insert((n.header.ifindex, dst), mac);
            }
        }
        Ok(())
    }

    async fn link_mac(&self, ifindex: u32) -> Option<[u8; 6]> {
        let mut links = self.handle.link().get().match_index(ifindex).execute();
        let link = links.try_next().await.ok()??;
        link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
            _ => None,
        })
    }
}

/// Prompts the kernel to resolve `next_hop`: one empty datagram to its discard port makes it
/// send an ARP request or neighbour solicitation (the datagram itself is discarded there).
fn solicit(next_hop: IpAddr) {
    let any: IpAddr = if next_hop.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    if let Ok(s) = UdpSocket::bind((any, 0)) {
        let _ = s.send_to(&[], (next_hop, 9));
    }
}
