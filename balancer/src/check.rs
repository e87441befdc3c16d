//! Health checkers that drive real-server weights, with keepalived's semantics
//! (`keepalived/check/`): one file per checker kind, [`state`] for the retry and alpha rules of
//! one checker, [`runner`] for the tasks that run them and set weights in the data plane.
//!
//! A checker is a [`Probe`]: one attempt, answering [`Verdict`]. Everything about time (delay
//! loop, retries, warmup) lives in the runner, so that a probe is testable against a listener
//! and the runner against a scripted probe on tokio's paused clock.

pub mod config;
pub mod dns;
pub mod http;
pub mod misc;
pub mod notices;
pub mod ping;
pub mod quorum;
#[cfg(any(test, feature = "test-double"))]
pub mod recording;
pub mod runner;
pub mod smtp;
pub mod state;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use config::{ConfigError, Globals, ScriptPolicy, checks_for, service_checks};
pub use runner::{CheckHandle, RealChecks, ServiceChecks, SharedDataplane, spawn, spawn_notifying};

/// What one attempt of a checker saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It passed. `weight` is set by `MISC_CHECK` with `misc_dynamic` (exit status - 2) and
    /// replaces the configured weight while it holds.
    Up { weight: Option<u32> },
    /// It failed; `reason` says what the checker saw, for the log.
    Down { reason: String },
}

impl Verdict {
    /// A plain pass.
    pub const UP: Self = Self::Up { weight: None };

    #[must_use]
    pub fn down(reason: impl Into<String>) -> Self {
        Self::Down {
            reason: reason.into(),
        }
    }
}

/// A conversation's outcome: done, or what went wrong.
impl From<Result<(), String>> for Verdict {
    fn from(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Self::UP,
            Err(reason) => Self::Down { reason },
        }
    }
}

/// One attempt, boxed so that the runner holds checkers of every kind side by side.
pub type Attempt<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

/// A checker kind: `TCP_CHECK`, `HTTP_GET`, `MISC_CHECK`, or a test's scripted one.
pub trait Probe: Send + Sync {
    /// Runs one attempt; it must end on its own (each kind bounds itself by its timeout).
    fn attempt(&self) -> Attempt<'_>;

    /// Names the checker in logs, e.g. `TCP_CHECK 198.18.0.11:80`.
    fn describe(&self) -> String;
}

/// keepalived's timing keywords of one checker, defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `delay_loop`: between two checks.
    pub delay_loop: Duration,
    /// `retry` (`nb_get_retry`): failed attempts tolerated before the checker goes down.
    pub retry: u32,
    /// `delay_before_retry`: between a failed attempt and its retry.
    pub delay_before_retry: Duration,
    /// `warmup`: the first check starts after a random delay up to this.
    pub warmup: Duration,
    /// `rise` (ours): passes in a row a down checker needs to come up. keepalived's is 1.
    pub rise: u32,
}

impl Default for Timing {
    /// keepalived's defaults for `TCP_CHECK` under a virtual server without timing keywords.
    fn default() -> Self {
        Self {
            delay_loop: Duration::from_mins(1),
            retry: 1,
            delay_before_retry: Duration::from_secs(1),
            warmup: Duration::ZERO,
            rise: 1,
        }
    }
}
