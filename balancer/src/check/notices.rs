//! The checkers' notify scripts, with keepalived's semantics (`keepalived/check/ipwrapper.c`
//! `do_rs_notifies`, `do_vs_notifies`, `clear_service_rs`, `update_vs_notifies`):
//!
//! - a real's `notify_up` runs when it becomes alive (every checker passes), its
//!   `notify_down` when it stops being alive; an `alpha` real whose checker fails its first
//!   attempt gets `notify_down` too, though it was never up (`update_svr_checker_state`);
//! - a virtual server's `quorum_up` runs when the quorum is gained, `quorum_down` when it is
//!   lost, also when it is lost from the start;
//! - on a reload, a live real that the new configuration drops gets its `notify_down`
//!   (`clear_diff_rs`);
//! - at shutdown, only with `omega`: every live real's `notify_down`, then `quorum_down`
//!   (keepalived takes the quorum down at shutdown whatever it was), each killed after one
//!   second as keepalived's `system_call_script(..., TIMER_HZ, ...)`.
//!
//! Scripts get no arguments, run without a shell where they can, as the `script_user`, and
//! never on a checker's task: the runner queues [`Notice`]s and one task runs them one after
//! the other, so that they run in the order things happened. keepalived forks them without
//! waiting; we bound each by [`NOTIFY_TIMEOUT`](crate::notify::NOTIFY_TIMEOUT).

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use crate::notify::{Script, run_logged};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    RealUp,
    RealDown,
    QuorumUp,
    QuorumDown,
}

/// One script to run.
#[derive(Clone, Debug)]
pub struct Notice {
    /// The data plane's name of the service.
    pub service: String,
    /// The real (address, port), for `notify_up` and `notify_down`.
    pub real: Option<(IpAddr, u16)>,
    pub event: Event,
    pub script: Script,
    pub timeout: Duration,
}

/// Where the runner queues its notices.
pub type NoticeSender = UnboundedSender<Notice>;

/// Starts the task that runs queued notices; it ends once every sender is dropped and the
/// queue is empty.
#[must_use]
pub fn spawn() -> (NoticeSender, JoinHandle<()>) {
    let (tx, rx) = unbounded_channel();
    (tx, tokio::spawn(run(rx)))
}

async fn run(mut rx: UnboundedReceiver<Notice>) {
    while let Some(notice) = rx.recv().await {
        tracing::info!(
            service = notice.service,
            real = ?notice.real,
            event = ?notice.event,
            command = notice.script.command,
            "running checker notify script"
        );
        run_logged(&notice.script, &[], notice.timeout).await;
    }
}
