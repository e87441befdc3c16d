//! The reals' egress for `balancer run`: resolved over rtnetlink, refreshed every few seconds,
//! and written into the services so the XDP program needs no FIB lookup.

use std::{collections::HashMap, time::Duration};

use crate::{
    dataplane::Dataplane,
    model::{Egress, VirtualService},
};

use super::{Daemon, service_name};

/// How often the reals' egress is resolved again.
pub(super) const EGRESS_REFRESH: Duration = Duration::from_secs(2);

/// `svc` with each real's (and the sorry server's) egress as resolved; unresolved ones are
/// left to the XDP program's FIB lookup.
pub(super) fn with_egress(
    svc: &VirtualService,
    egress: &HashMap<std::net::IpAddr, Egress>,
) -> VirtualService {
    let mut out = svc.clone();
    for r in out.reals.iter_mut().chain(&mut out.sorry_server) {
        r.egress = egress.get(&r.addr).copied();
    }
    out
}

impl Daemon {
    /// Every configured real and sorry server.
    pub(super) fn configured_reals(&self) -> impl Iterator<Item = &crate::model::RealServer> {
        self.loaded
            .validated
            .model
            .services
            .iter()
            .flat_map(|s| s.reals.iter().chain(&s.sorry_server))
    }

    /// Says how many reals are sent without a FIB lookup.
    pub(super) fn log_egress(&self, what: &str) {
        if self.resolver.is_none() && self.egress.is_empty() {
            // IPVS, or no resolver (already warned about): nothing was looked for.
            return;
        }
        let reals: Vec<_> = self.configured_reals().collect();
        let resolved = reals
            .iter()
            .filter(|r| self.egress.contains_key(&r.addr))
            .count();
        tracing::info!(
            resolved,
            reals = reals.len(),
            "{what}: resolved reals are sent without a FIB lookup, the others through it"
        );
    }

    /// The egress of every configured real that resolves now.
    pub(super) async fn resolve_egress(&self) -> HashMap<std::net::IpAddr, Egress> {
        let Some(resolver) = &self.resolver else {
            return HashMap::new();
        };
        let mut addrs: Vec<std::net::IpAddr> = self.configured_reals().map(|r| r.addr).collect();
        addrs.sort_unstable();
        addrs.dedup();
        match resolver.resolve(&addrs).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "resolving the reals' egress failed");
                self.egress.clone()
            }
        }
    }

    /// Resolves the reals' egress again and re-applies the services whose reals' egress
    /// changed (a neighbour learnt or moved), keeping the weights the data plane holds.
    pub(super) async fn refresh_egress(&mut self) {
        let found = self.resolve_egress().await;
        if found == self.egress {
            return;
        }
        self.egress = found;
        self.log_egress("reals' egress changed");
        let names: Vec<String> = self
            .loaded
            .validated
            .model
            .services
            .iter()
            .map(service_name)
            .collect();
        let mut program = self.lock();
        for name in names {
            let Some(current) = program.installed_model(&name) else {
                continue;
            };
            let updated = with_egress(&current, &self.egress);
            if updated != current
                && let Err(e) = program.apply(&name, &updated)
            {
                tracing::error!(service = name, error = %e, "applying the new egress failed");
            }
        }
    }
}
