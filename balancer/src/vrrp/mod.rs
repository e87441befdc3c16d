//! VRRP (RFC 3768 for v2, RFC 5798 / 9568 for v3), interoperating with keepalived.
//!
//! Everything here is sans-IO: [`wire`] turns bytes into advertisements and back, [`validate`]
//! applies the receive checks, and [`fsm`] is the state machine that a thin I/O task drives with
//! packets, timers and link events, carrying out the [`fsm::Action`]s it returns: that task is
//! [`net::run_instance`], with raw sockets, rtnetlink and gratuitous ARP / NA around it, and
//! [`command`] runs one instance from the command line (`balancer vrrp`).
//!
//! Section citations name RFC 5798 for VRRPv3; RFC 9568 obsoletes it with the same section
//! numbers and rules, renaming Master to Active (`Active_Down_Timer`...). We keep the older words
//! because keepalived and its operators use them.

pub mod ah;
pub mod auth;
pub mod checksum;
pub mod command;
pub mod config;
pub mod fsm;
pub mod net;
pub mod sync;
pub mod timing;
pub mod track;
pub mod validate;
pub mod wire;

#[cfg(test)]
mod election_tests;
#[cfg(test)]
mod testdata;
