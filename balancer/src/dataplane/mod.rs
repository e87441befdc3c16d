//! The data plane: the XDP program and how userspace drives it.
//!
//! [`Dataplane`] is the one interface the daemon, the checkers and the tests use; the XDP
//! program is one rendering of the model behind it (the IPVS backend will be another).

pub mod egress;
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

    /// Sets one real's weight (a checker's decision); 0 drains it.
    ///
    /// # Errors
    /// No such service or real, or a map write fails.
    fn set_weight(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError>;
}
