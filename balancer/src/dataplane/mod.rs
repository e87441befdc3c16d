//! The data plane: the XDP program and how userspace drives it.
//!
//! [`Dataplane`] is the one interface the daemon, the checkers and the tests use; the XDP
//! program is one rendering of the model behind it, the kernel's IPVS ([`ipvs`]) another.

pub mod egress;
pub mod ipvs;
pub mod sched;
pub mod xdp;

use std::net::IpAddr;

use crate::model::VirtualService;

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("service {service}: {message}")]
    Invalid { service: String, message: String },
    #[error("service {service}: no real {addr}:{port}")]
    UnknownReal {
        service: String,
        addr: IpAddr,
        port: u16,
    },
    #[error("no service {service}")]
    UnknownService { service: String },
    #[error("{what} exhausted ({limit}); raise the limit or remove services")]
    Full { what: &'static str, limit: u32 },
    #[error("the XDP object has no map {map}")]
    MissingMap { map: &'static str },
    #[error("writing map {map}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    /// The kernel's IPVS refused a change or could not be read; `op` says what was asked.
    #[error("IPVS: {op}: {source}")]
    Ipvs {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

/// What every data plane offers. Service names are stable identities chosen by the caller
/// (the configuration's name for the virtual server or group).
pub trait Dataplane {
    /// Installs `service` under `name`, or changes it in place: a real that stays keeps its
    /// identity, so its established connections stay on it; the new table takes effect for
    /// new connections in one step.
    ///
    /// # Errors
    /// The service cannot be represented (limits), or a map write fails.
    fn apply(&mut self, name: &str, service: &VirtualService) -> Result<(), DataplaneError>;

    /// Removes a service; its connections are no longer forwarded.
    ///
    /// # Errors
    /// No such service, or a map write fails.
    fn remove(&mut self, name: &str) -> Result<(), DataplaneError>;

    /// Sets one real's weight; 0 drains it (no new connections, established ones stay).
    /// Everything, scheduler tables included, is as the weight says when this returns.
    ///
    /// # Errors
    /// No such service or real, or a map write fails.
    fn set_weight(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError> {
        self.set_weight_fast(name, addr, port, weight)?;
        self.flush()
    }

    /// A checker's decision: as [`Dataplane::set_weight`], except for work that can wait
    /// for [`Dataplane::flush`] (a scheduler table that takes milliseconds to rebuild), so
    /// that a decision takes effect in microseconds and a burst of them (a rack going
    /// down) costs one rebuild. A real set to 0 takes no new connection once this returns;
    /// one set above 0 may take none until the flush.
    ///
    /// # Errors
    /// No such service or real, or a map write fails.
    fn set_weight_fast(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError>;

    /// Completes what [`Dataplane::set_weight_fast`] left to do. A failed flush leaves the
    /// work pending for the next one.
    ///
    /// # Errors
    /// A map write fails.
    fn flush(&mut self) -> Result<(), DataplaneError> {
        Ok(())
    }
}
