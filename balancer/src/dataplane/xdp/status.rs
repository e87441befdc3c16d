//! The data plane's part of `balancer status`: every installed service and real with the
//! weight, connection counts and counters the maps hold now.

use aya::maps::{Array, MapData};
use balancer_common::maps::{
    REAL_ACTIVE_MAP, REAL_STATS_MAP, SERVICE_STATS_MAP, Stats, conn_count,
};

use super::{XdpError, XdpProgram};
use crate::{
    model::RealServer,
    status::{Counters, Rates, RealStatus, ServiceStatus},
};

fn counters(s: Stats) -> Counters {
    Counters {
        conns: s.conns,
        packets: s.packets,
        bytes: s.bytes,
    }
}

impl XdpProgram {
    /// The connection table's size.
    #[must_use]
    pub fn flow_capacity(&self) -> u32 {
        self.flow_capacity
    }

    /// The model `service` was last applied with, weights as last set.
    #[must_use]
    pub fn installed_model(&self, service: &str) -> Option<crate::model::VirtualService> {
        self.table.model(service).cloned()
    }

    /// Every installed service as `balancer status` shows it, in name order. Rates are left
    /// at zero: they need two readings (see [`crate::status::Status::rates_since`]).
    ///
    /// # Errors
    /// A map cannot be read.
    pub fn service_status(&self) -> Result<Vec<ServiceStatus>, XdpError> {
        let map = self.ebpf.map(REAL_ACTIVE_MAP).ok_or(XdpError::Missing {
            what: "map",
            name: REAL_ACTIVE_MAP,
        })?;
        let active: Array<&MapData, u64> =
            Array::try_from(map).map_err(|source| XdpError::Map {
                map: REAL_ACTIVE_MAP,
                source,
            })?;
        let real = |r: &RealServer, index: u32| -> Result<RealStatus, XdpError> {
            let counts = active.get(&index, 0).unwrap_or(0);
            Ok(RealStatus {
                addr: r.addr,
                port: r.port,
                method: r.method,
                weight: r.weight,
                active: conn_count::active(counts),
                inactive: conn_count::inactive(counts),
                counters: counters(self.stats(REAL_STATS_MAP, index)?),
                rates: Rates::default(),
            })
        };
        let mut out = Vec::new();
        for installed in self.table.installed() {
            let (model, reals) = (installed.model, installed.reals);
            let mut listed = Vec::with_capacity(reals.len());
            for (r, &index) in model.reals.iter().zip(reals) {
                listed.push(real(r, index)?);
            }
            let sorry_server = match (&model.sorry_server, installed.sorry) {
                (Some(r), Some(index)) => Some(real(r, index)?),
                _ => None,
            };
            out.push(ServiceStatus {
                name: installed.name.to_owned(),
                protocol: model.protocol,
                vips: model.vips.clone(),
                port: model.port,
                scheduler: model.scheduler,
                persistence: model.persistence.map(|p| (p.timeout_s, p.prefix)),
                ops: model.ops,
                counters: counters(self.stats(SERVICE_STATS_MAP, installed.id)?),
                rates: Rates::default(),
                reals: listed,
                sorry_server,
            });
        }
        Ok(out)
    }
}
