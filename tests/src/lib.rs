//! Test harness for tests that need root: network namespaces joined by veth pairs, commands and
//! closures run inside them, and the skip rule for unprivileged runs.
//!
//! Every namespace is a [`Netns`] guard with a unique name; dropping it (also while a test
//! panics) kills what the test started there and deletes it. Addresses come from
//! 198.18.0.0/15 and `fd00::/8` and are only ever configured inside these namespaces.
#![expect(
    clippy::missing_panics_doc,
    reason = "test helpers panic on misuse or a broken environment: that panic is the test failure"
)]

pub mod capture;
pub mod daemon;
pub mod frame;
pub mod lab;
pub mod netns;
pub mod vm;
pub mod vrrp;

pub use netns::{Netns, NsThread, Switch, veth_pair};

/// Polls `cond` every 20 ms until it holds (true) or `timeout` passes (false): every wait in
/// a test is bounded.
pub fn wait_until(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() > end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether the test process runs as root (CI does).
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns from the calling test, with a message saying so, unless it runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!(
                "SKIPPED {}: needs root (BPF, XDP and network namespaces)",
                module_path!()
            );
            return;
        }
    };
}
