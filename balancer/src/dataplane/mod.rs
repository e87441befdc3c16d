//! The data plane: the XDP program and how userspace drives it.

pub mod xdp;
