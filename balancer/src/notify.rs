//! Notify scripts for VRRP state changes, with keepalived's conventions
//! (`keepalived/vrrp/vrrp_notify.c` `send_instance_notifies`, `notify_script_exec`):
//! `notify_master`, `notify_backup`, `notify_fault` and `notify_stop` run with their
//! configured words only; the generic `notify` runs after them with four more:
//! `INSTANCE`, the instance's name, `MASTER|BACKUP|FAULT|STOP` and the effective priority.
//!
//! Scripts run without a shell (see [`split`] and [`process`]), as their user, and never on
//! the VRRP task: [`spawn`] gives the task a channel, and one notifier task per instance runs
//! the scripts one after the other, so that they see the states in the order they happened.
//! keepalived forks notify scripts without waiting (so they may overtake each other) and
//! kills only `notify_stop` after a second; we wait for each, bounded by a timeout, so that
//! order holds and a hung script cannot hold up the next for ever.

pub mod fifo;
pub mod mail;
pub mod process;
pub mod security;
pub mod split;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use crate::vrrp::fsm::State;
use crate::vrrp::net::Notification;

pub use process::{Outcome, Script, ScriptError};
pub use security::{ScriptUser, SecurityError};

/// How long `notify_stop` (and the generic script for STOP) may run: keepalived's one second
/// (`system_call_script(..., TIMER_HZ, ...)` in `send_instance_notifies`).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long any other notify script may run before it is killed; keepalived does not wait
/// for these at all, so this is ours: the default of its `startup_script_timeout`.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// One instance's or sync group's notify scripts (keepalived's `notify*` keywords).
#[derive(Clone, Debug, Default)]
pub struct InstanceScripts {
    /// The instance's or group's name (`vrrp_instance NAME`, `vrrp_sync_group NAME`), the
    /// generic script's second argument.
    pub name: String,
    pub master: Option<Script>,
    pub backup: Option<Script>,
    pub fault: Option<Script>,
    pub stop: Option<Script>,
    /// `notify`: every state change, with four extra arguments.
    pub generic: Option<Script>,
    /// `notify_master_rx_lower_pri`.
    pub master_rx_lower_pri: Option<Script>,
    /// `notify_fifo` and `vrrp_notify_fifo`: each gets [`InstanceScripts::fifo_line`].
    pub fifos: Vec<Arc<fifo::Fifo>>,
    /// `smtp_alert`: state changes mailed.
    pub mail: Option<Arc<mail::VrrpAlerts>>,
}

impl InstanceScripts {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        [
            &self.master,
            &self.backup,
            &self.fault,
            &self.stop,
            &self.generic,
            &self.master_rx_lower_pri,
        ]
        .iter()
        .all(|s| s.is_none())
            && self.fifos.is_empty()
            && self.mail.is_none()
    }

    /// The line the notify FIFOs get (`keepalived/vrrp/vrrp_notify.c` `notify_fifo`):
    /// `INSTANCE "NAME" STATE PRIORITY`, `GROUP "NAME" STATE 0`, or
    /// `INSTANCE "NAME" MASTER_RX_LOWER_PRI PRIORITY`.
    #[must_use]
    pub fn fifo_line(&self, notification: &Notification) -> String {
        let (kind, event, priority) = match notification {
            Notification::State {
                state, priority, ..
            } => ("INSTANCE", state_word(*state), *priority),
            Notification::Group { state, .. } => ("GROUP", state_word(*state), 0),
            Notification::MasterRxLowerPriority { priority, .. } => {
                ("INSTANCE", "MASTER_RX_LOWER_PRI", *priority)
            }
        };
        fifo::line(kind, &self.name, event, priority)
    }

    /// The runs a notification calls for, in order: script, extra arguments, timeout.
    #[must_use]
    pub fn runs(&self, notification: &Notification) -> Vec<(&Script, Vec<String>, Duration)> {
        let (kind, state, priority) = match notification {
            Notification::State {
                state, priority, ..
            } => ("INSTANCE", *state, *priority),
            // keepalived send_group_notifies: "GROUP", the group's name, its state, and 0.
            Notification::Group { state, .. } => ("GROUP", *state, 0),
            Notification::MasterRxLowerPriority { .. } => {
                return self
                    .master_rx_lower_pri
                    .iter()
                    .map(|s| (s, Vec::new(), NOTIFY_TIMEOUT))
                    .collect();
            }
        };
        let (specific, timeout) = match state {
            State::Master => (&self.master, NOTIFY_TIMEOUT),
            State::Backup => (&self.backup, NOTIFY_TIMEOUT),
            State::Fault => (&self.fault, NOTIFY_TIMEOUT),
            State::Init => (&self.stop, STOP_TIMEOUT),
        };
        let word = state_word(state);
        let mut runs = Vec::new();
        if let Some(script) = specific {
            runs.push((script, Vec::new(), timeout));
        }
        if let Some(script) = &self.generic {
            let extra = vec![
                kind.to_owned(),
                self.name.clone(),
                word.to_owned(),
                priority.to_string(),
            ];
            runs.push((script, extra, timeout));
        }
        runs
    }
}

/// keepalived's word for a state in notifications (`Init` is a stop).
fn state_word(state: State) -> &'static str {
    match state {
        State::Master => "MASTER",
        State::Backup => "BACKUP",
        State::Fault => "FAULT",
        State::Init => "STOP",
    }
}

/// Starts the notifier of one instance. Give the sender to
/// [`run_instance`](crate::vrrp::net::run_instance); the task ends once the sender is dropped
/// and every queued script has run, so awaiting it after the instance stopped lets
/// `notify_stop` finish.
#[must_use]
pub fn spawn(scripts: InstanceScripts) -> (UnboundedSender<Notification>, JoinHandle<()>) {
    let (tx, rx) = unbounded_channel();
    (tx, tokio::spawn(notifier(scripts, rx)))
}

async fn notifier(scripts: InstanceScripts, mut rx: UnboundedReceiver<Notification>) {
    while let Some(notification) = rx.recv().await {
        // keepalived writes the FIFO as it launches the scripts, without waiting for them.
        if !scripts.fifos.is_empty() {
            let line = scripts.fifo_line(&notification);
            for fifo in &scripts.fifos {
                fifo.write(&line);
            }
        }
        for (script, extra, timeout) in scripts.runs(&notification) {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            run_logged(script, &extra, timeout).await;
        }
        // After the scripts: a slow mail server never delays them.
        if let (
            Some(alerts),
            Notification::State { state, .. } | Notification::Group { state, .. },
        ) = (&scripts.mail, &notification)
        {
            alerts.send(&scripts.name, *state, STOP_TIMEOUT).await;
        }
    }
}

/// Runs a notify script (VRRP's or a checker's) and logs how it ended; a notify script's
/// status changes nothing, as in keepalived.
pub async fn run_logged(script: &Script, extra: &[&str], timeout: Duration) {
    match script.run(extra, timeout).await {
        Outcome::Exited(status) if status.success() => {
            tracing::debug!(command = script.command, ?extra, "notify script ran");
        }
        Outcome::Exited(status) => {
            tracing::warn!(command = script.command, ?extra, %status, "notify script failed");
        }
        Outcome::TimedOut => {
            tracing::warn!(
                command = script.command,
                ?extra,
                "notify script killed after its timeout"
            );
        }
        Outcome::SpawnFailed(error) => {
            tracing::error!(command = script.command, ?extra, %error, "notify script not started");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn script(name: &str) -> Script {
        Script {
            command: name.into(),
            program: PathBuf::from(name),
            args: Vec::new(),
            user: ScriptUser::current(),
            shell: false,
        }
    }

    fn state(state: State, priority: u8) -> Notification {
        Notification::State {
            interface: "e0".into(),
            vrid: 1,
            state,
            priority,
        }
    }

    fn runs(s: &InstanceScripts, n: &Notification) -> Vec<(String, Vec<String>, Duration)> {
        s.runs(n)
            .into_iter()
            .map(|(script, extra, timeout)| (script.command.clone(), extra, timeout))
            .collect()
    }

    #[test]
    fn specific_scripts_get_no_arguments_and_the_generic_one_gets_four() {
        let s = InstanceScripts {
            name: "VI_1".into(),
            master: Some(script("m")),
            backup: Some(script("b")),
            fault: Some(script("f")),
            stop: Some(script("s")),
            generic: Some(script("g")),
            master_rx_lower_pri: Some(script("r")),
            fifos: Vec::new(),
            mail: None,
        };
        let words = |v: &[&str]| v.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        for (st, specific, word) in [
            (State::Master, "m", "MASTER"),
            (State::Backup, "b", "BACKUP"),
            (State::Fault, "f", "FAULT"),
        ] {
            assert_eq!(
                runs(&s, &state(st, 150)),
                [
                    (specific.to_owned(), Vec::new(), NOTIFY_TIMEOUT),
                    (
                        "g".to_owned(),
                        words(&["INSTANCE", "VI_1", word, "150"]),
                        NOTIFY_TIMEOUT
                    )
                ]
            );
        }
        assert_eq!(
            runs(&s, &state(State::Init, 50)),
            [
                ("s".to_owned(), Vec::new(), STOP_TIMEOUT),
                (
                    "g".to_owned(),
                    words(&["INSTANCE", "VI_1", "STOP", "50"]),
                    STOP_TIMEOUT
                )
            ]
        );
        let lower = Notification::MasterRxLowerPriority {
            interface: "e0".into(),
            vrid: 1,
            from: "198.18.1.2".parse().unwrap(),
            priority: 150,
        };
        assert_eq!(
            runs(&s, &lower),
            [("r".to_owned(), Vec::new(), NOTIFY_TIMEOUT)]
        );
        assert!(InstanceScripts::default().runs(&lower).is_empty());
        // keepalived notify_fifo: one line per event, the name quoted.
        assert_eq!(
            s.fifo_line(&state(State::Init, 50)),
            "INSTANCE \"VI_1\" STOP 50\n"
        );
        assert_eq!(
            s.fifo_line(&lower),
            "INSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 150\n"
        );
        // keepalived send_group_notifies: a group's generic script gets GROUP and priority 0.
        let group = Notification::Group {
            name: "ignored: the scripts carry the name".into(),
            state: State::Fault,
        };
        assert_eq!(
            runs(&s, &group),
            [
                ("f".to_owned(), Vec::new(), NOTIFY_TIMEOUT),
                (
                    "g".to_owned(),
                    words(&["GROUP", "VI_1", "FAULT", "0"]),
                    NOTIFY_TIMEOUT
                )
            ]
        );
        assert!(InstanceScripts::default().is_empty());
    }
}
