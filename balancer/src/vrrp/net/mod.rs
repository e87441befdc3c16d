//! The I/O around the sans-IO state machine: raw VRRP sockets ([`socket`]), virtual addresses
//! through rtnetlink ([`vip`]), gratuitous ARP and unsolicited neighbour advertisements
//! ([`garp`]), and the task that drives one instance with them ([`task`]).

pub mod garp;
pub mod ipv4;
pub mod route;
pub mod rule;
pub mod socket;
pub mod statics;
pub mod task;
pub mod timer;
pub mod vip;
pub mod vmac;

pub use task::{
    InstanceSpec, NetError, Notification, run_instance, run_instance_observed, run_member,
};
pub use vip::{Link, Netlink, Vip};
