//! The daemon's data plane: the XDP program or the kernel's IPVS (`dataplane =`), one
//! [`Dataplane`] to the checkers and reloads, with what only one of them has (interfaces to
//! attach, a connection table to sweep, drop reasons) asked of it by name.

use std::net::IpAddr;

use balancer_common::maps::Globals;

use crate::{
    config::schema::DataplaneKind,
    dataplane::{Dataplane, DataplaneError, ipvs::IpvsDataplane, xdp::XdpProgram},
    model::VirtualService,
    status::ServiceStatus,
};

pub(super) enum Backend {
    Xdp(Box<XdpProgram>),
    Ipvs(IpvsDataplane),
}

impl Backend {
    pub(super) const fn kind(&self) -> DataplaneKind {
        match self {
            Self::Xdp(_) => DataplaneKind::Xdp,
            Self::Ipvs(_) => DataplaneKind::Ipvs,
        }
    }

    /// The XDP program, when that is the data plane.
    pub(super) fn xdp(&mut self) -> Option<&mut XdpProgram> {
        match self {
            Self::Xdp(p) => Some(p),
            Self::Ipvs(_) => None,
        }
    }

    /// Installs or changes a service: by address, or (IPVS only) by firewall mark.
    pub(super) fn apply_named(
        &mut self,
        name: &str,
        fwmark: Option<u32>,
        service: &VirtualService,
    ) -> Result<(), DataplaneError> {
        match (self, fwmark) {
            (Self::Ipvs(i), Some(mark)) => i.apply_fwmark(name, mark, service),
            (Self::Xdp(_), Some(_)) => Err(DataplaneError::Invalid {
                service: name.to_owned(),
                message: "the XDP data plane cannot select by firewall mark".into(),
            }),
            (backend, None) => backend.apply(name, service),
        }
    }

    pub(super) fn installed_model(&self, service: &str) -> Option<VirtualService> {
        match self {
            Self::Xdp(p) => p.installed_model(service),
            Self::Ipvs(i) => i.installed_model(service),
        }
    }

    pub(super) fn service_status(&mut self) -> Result<Vec<ServiceStatus>, String> {
        match self {
            Self::Xdp(p) => p.service_status().map_err(|e| e.to_string()),
            Self::Ipvs(i) => i.service_status().map_err(|e| e.to_string()),
        }
    }

    /// `ipvsadm --set`: the idle timeouts of TCP, closing TCP and UDP connections.
    pub(super) fn set_timeouts(&mut self, timeouts: Globals) -> Result<(), String> {
        match self {
            Self::Xdp(p) => p.set_timeouts(timeouts).map_err(|e| e.to_string()),
            Self::Ipvs(i) => i.set_timeouts(timeouts).map_err(|e| e.to_string()),
        }
    }

    /// The connection table's size; 0 for IPVS, whose table has no fixed limit.
    pub(super) fn flow_capacity(&self) -> u32 {
        match self {
            Self::Xdp(p) => p.flow_capacity(),
            Self::Ipvs(_) => 0,
        }
    }
}

impl Dataplane for Backend {
    fn apply(&mut self, name: &str, service: &VirtualService) -> Result<(), DataplaneError> {
        match self {
            Self::Xdp(p) => p.apply(name, service),
            Self::Ipvs(i) => i.apply(name, service),
        }
    }

    fn remove(&mut self, name: &str) -> Result<(), DataplaneError> {
        match self {
            Self::Xdp(p) => p.remove(name),
            Self::Ipvs(i) => i.remove(name),
        }
    }

    fn set_weight_fast(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError> {
        match self {
            Self::Xdp(p) => p.set_weight_fast(name, addr, port, weight),
            Self::Ipvs(i) => i.set_weight_fast(name, addr, port, weight),
        }
    }

    fn flush(&mut self) -> Result<(), DataplaneError> {
        match self {
            Self::Xdp(p) => p.flush(),
            Self::Ipvs(i) => i.flush(),
        }
    }
}
