//! Empty library target: it lets `balancer` name this crate as a build-dependency, so cargo
//! rebuilds the daemon when the XDP program's sources change.
#![no_std]
