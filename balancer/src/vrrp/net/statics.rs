//! keepalived's `static_ipaddress`, `static_routes` and `static_rules`: addresses, routes
//! and rules the node holds whatever any instance's state, added when the daemon starts and
//! removed when it stops (`vrrp_daemon.c` `start_vrrp` / `stop_vrrp`: rules, then routes,
//! then addresses). A reload removes the ones no longer configured and adds the new ones
//! (`clear_diff_static_*`). Lines have the syntax of `virtual_ipaddress`, `virtual_routes`
//! and `virtual_rules`; a static address needs its `dev`.

use crate::vrrp::net::Netlink;
use crate::vrrp::net::route::VirtualRoute;
use crate::vrrp::net::rule::VirtualRule;
use crate::vrrp::net::vip::{AddressOptions, Vip};

/// The static entries of a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statics {
    /// Each address with its options; `options.dev` is set (validation requires it).
    pub addresses: Vec<(Vip, AddressOptions)>,
    pub routes: Vec<VirtualRoute>,
    pub rules: Vec<VirtualRule>,
}

impl Statics {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.routes.is_empty() && self.rules.is_empty()
    }

    /// Makes the kernel hold `self` where it held `old`: what `old` has and `self` has not
    /// is removed (rules, routes, addresses), then everything of `self` is added (addresses,
    /// routes, rules; one already there counts as added). Returns a line per failure.
    pub async fn apply(&self, old: &Self, netlink: &Netlink) -> Vec<String> {
        let gone = Self {
            addresses: old
                .addresses
                .iter()
                .filter(|a| !self.addresses.contains(a))
                .cloned()
                .collect(),
            routes: old
                .routes
                .iter()
                .filter(|r| !self.routes.contains(r))
                .cloned()
                .collect(),
            rules: old
                .rules
                .iter()
                .filter(|r| !self.rules.contains(r))
                .cloned()
                .collect(),
        };
        let mut failures = gone.remove(netlink).await;
        for (vip, options) in &self.addresses {
            let dev = options.dev.as_deref().unwrap_or_default();
            let added = match netlink.link(dev).await {
                Ok(link) => netlink.add(link.index, *vip, options).await,
                Err(e) => Err(e),
            };
            if let Err(e) = added {
                failures.push(format!("static_ipaddress {vip} dev {dev}: {e}"));
            }
        }
        for route in &self.routes {
            if let Err(e) = netlink.route(route, true).await {
                failures.push(format!("static_routes: {e}"));
            }
        }
        for rule in &self.rules {
            if let Err(e) = netlink.rule(rule, true).await {
                failures.push(format!("static_rules: {e}"));
            }
        }
        failures
    }

    /// Removes every entry: rules, then routes, then addresses. Returns a line per failure;
    /// what is gone already counts as removed.
    async fn remove(&self, netlink: &Netlink) -> Vec<String> {
        let mut failures = Vec::new();
        for rule in &self.rules {
            if let Err(e) = netlink.rule(rule, false).await {
                failures.push(format!("static_rules: {e}"));
            }
        }
        for route in &self.routes {
            if let Err(e) = netlink.route(route, false).await {
                failures.push(format!("static_routes: {e}"));
            }
        }
        for (vip, options) in &self.addresses {
            let dev = options.dev.as_deref().unwrap_or_default();
            // An interface that went away took its addresses with it.
            if let Ok(link) = netlink.link(dev).await
                && let Err(e) = netlink.del(link.index, *vip).await
            {
                failures.push(format!("static_ipaddress {vip} dev {dev}: {e}"));
            }
        }
        failures
    }
}
