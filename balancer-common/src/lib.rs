//! Types shared by the XDP program (`balancer-ebpf`) and userspace (`balancer`).
//!
//! Everything here is `#[repr(C)]`, `Copy`, free of `bool`, enum and `Option` fields, and
//! checked for size, so that both sides agree on every byte of every map.
#![no_std]

pub mod counters;

pub use counters::ProtoCounter;
