//! Types shared by the XDP program (`balancer-ebpf`) and userspace (`balancer`).
//!
//! Everything here is `#[repr(C)]`, `Copy`, free of `bool`, enum and `Option` fields, and
//! checked for size, so that both sides agree on every byte of every map.
#![no_std]
#![expect(
    clippy::pub_underscore_fields,
    reason = "map types spell their padding out as `_pad` fields, so no byte is uninitialised"
)]

pub mod counters;
pub mod hash;
pub mod maps;

pub use counters::{ProtoCounter, Reason};
