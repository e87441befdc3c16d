//! balancer: an XDP load balancer with VRRP and health checks, replacing keepalived + LVS.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library; tests and benchmarks use the
//! same pieces.

pub mod check;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod dump;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod run;
pub mod status;
pub mod vrrp;
