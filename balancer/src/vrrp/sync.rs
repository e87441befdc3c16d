//! `vrrp_sync_group`: instances that change state together, with keepalived's rules
//! (`keepalived/vrrp/vrrp_sync.c` `vrrp_sync_can_goto_master`, `vrrp_sync_master`,
//! `vrrp_sync_backup`, `vrrp_sync_fault`; the transition table `VRRP_TSM` and
//! `try_up_instance` in `vrrp_scheduler.c`; `send_group_notifies` in `vrrp_notify.c`).
//!
//! [`SyncGroup`] is sans-IO: each member's task reports its [`MemberStatus`] whenever it
//! changes, and the group answers with the [`Event`]s to give the other members and the group
//! state to notify. The rules:
//! - One member in FAULT (its own trackers) puts the group in FAULT and every other member
//!   with it; the group leaves FAULT (to BACKUP) only once no member has a fault of its own.
//! - A backup member whose `Master_Down_Timer` fires only *wants* mastership; the group goes
//!   MASTER once every member wants it (prefer backup, to avoid thrashing), and then every
//!   member becomes master at once. While the group is MASTER, a member that wants
//!   mastership gets it at once.
//! - A master member stepping down to backup (a higher priority heard) takes the group and
//!   every other master member to BACKUP.
//! - At shutdown, once every member has stopped, the group notifies STOP.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use crate::vrrp::fsm::{Event, Instance, State};
use crate::vrrp::net::Notification;

/// What a member's task reports whenever one of these changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub state: State,
    /// [`crate::vrrp::fsm::Instance::wants_master`].
    pub wants_master: bool,
    /// [`crate::vrrp::fsm::Instance::own_fault`]: a fault of its own, not the group's.
    pub own_fault: bool,
}

impl MemberStatus {
    #[must_use]
    pub fn of(instance: &Instance) -> Self {
        Self {
            state: instance.state(),
            wants_master: instance.wants_master(),
            own_fault: instance.own_fault(),
        }
    }

    const START: Self = Self {
        state: State::Init,
        wants_master: false,
        own_fault: false,
    };
}

/// What the coordinator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Give `event` to member `member`.
    Member { member: usize, event: Event },
    /// The group entered `state`: run its notify scripts (`Init` is STOP).
    Notify { state: State },
}

/// One `vrrp_sync_group`'s state and its members' last reports.
#[derive(Clone, Debug)]
pub struct SyncGroup {
    state: State,
    members: Vec<MemberStatus>,
    /// Whether a member has been started (reported anything but INIT) since the last STOP.
    running: bool,
}

impl SyncGroup {
    #[must_use]
    pub fn new(members: usize) -> Self {
        Self {
            state: State::Init,
            members: vec![MemberStatus::START; members],
            running: false,
        }
    }

    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// Member `member` reports `status`; returns what the other members must be told, in
    /// order, and the group's notification if its state changed.
    pub fn update(&mut self, member: usize, status: MemberStatus) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(slot) = self.members.get_mut(member) else {
            return out;
        };
        let before = std::mem::replace(slot, status);
        if status.state != State::Init {
            self.running = true;
        }
        if self.running && self.members.iter().all(|m| m.state == State::Init) {
            // notify_shutdown: the group says STOP after its instances.
            self.running = false;
            self.enter(State::Init, &mut out);
            return out;
        }
        if self.members.iter().any(|m| m.own_fault) {
            // vrrp_sync_fault: every member is held in FAULT, the failing one too, so that
            // it stays there after its own fault clears while another member's lasts
            // (keepalived counts them in num_member_fault).
            if self.state != State::Fault {
                self.enter(State::Fault, &mut out);
                self.tell_all(&Event::SyncFault { failing: true }, &mut out);
            }
            return out;
        }
        if self.state == State::Fault {
            // try_up_instance: the last fault cleared; every member starts again as backup
            // (vrrp_state_leave_fault, vrrp_sync_backup).
            self.enter(State::Backup, &mut out);
            self.tell_all(&Event::SyncFault { failing: false }, &mut out);
            return out;
        }
        // VRRP_TSM MASTER -> BACKUP: vrrp_sync_backup.
        if before.state == State::Master && status.state == State::Backup {
            if self.state != State::Backup {
                self.enter(State::Backup, &mut out);
            }
            for (i, m) in self.members.iter().enumerate() {
                if i != member && m.state == State::Master {
                    out.push(Output::Member {
                        member: i,
                        event: Event::SyncBackup,
                    });
                }
            }
            return out;
        }
        if status.wants_master {
            if self.state == State::Master {
                // vrrp_sync_can_goto_master: a MASTER group lets a member in at once.
                if status.state == State::Backup {
                    out.push(Output::Member {
                        member,
                        event: Event::SyncMaster,
                    });
                }
            } else if self.members.iter().all(|m| m.wants_master) {
                // vrrp_sync_master: everyone wants it; every backup member becomes master.
                self.enter(State::Master, &mut out);
                for (i, m) in self.members.iter().enumerate() {
                    if m.state == State::Backup {
                        out.push(Output::Member {
                            member: i,
                            event: Event::SyncMaster,
                        });
                    }
                }
            }
            return out;
        }
        // vrrp_init_state: a group that has started (no fault, no master) is BACKUP.
        if self.state == State::Init && self.members.iter().all(|m| m.state != State::Init) {
            self.enter(State::Backup, &mut out);
        }
        out
    }

    fn enter(&mut self, state: State, out: &mut Vec<Output>) {
        self.state = state;
        out.push(Output::Notify { state });
    }

    fn tell_all(&self, event: &Event, out: &mut Vec<Output>) {
        out.extend((0..self.members.len()).map(|member| Output::Member {
            member,
            event: event.clone(),
        }));
    }
}

/// A member's end of its group: give it to [`crate::vrrp::net::run_member`].
#[derive(Debug)]
pub struct SyncLink {
    member: usize,
    reports: UnboundedSender<(usize, MemberStatus)>,
    events: UnboundedReceiver<Event>,
    last: MemberStatus,
}

impl SyncLink {
    /// Reports the instance's status if it changed since the last report.
    pub fn report(&mut self, instance: &Instance) {
        let status = MemberStatus::of(instance);
        if status != self.last {
            self.last = status;
            // The coordinator ends only once every member has dropped its link.
            let _ = self.reports.send((self.member, status));
        }
    }

    /// The next event the group has for this member.
    pub async fn event(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

/// A running coordinator: hands out member links. The coordinator ends once this handle (and
/// every clone) and every link are dropped.
#[derive(Clone, Debug)]
pub struct GroupHandle {
    reports: UnboundedSender<(usize, MemberStatus)>,
    senders: Arc<Mutex<Vec<UnboundedSender<Event>>>>,
}

impl GroupHandle {
    /// A link for member `member` (its place in the group), replacing any earlier one: a
    /// member restarted (by a reload) joins again, starting from INIT.
    #[must_use]
    pub fn link(&self, member: usize) -> SyncLink {
        let (tx, events) = unbounded_channel();
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = senders.get_mut(member) {
            *slot = tx;
        }
        SyncLink {
            member,
            reports: self.reports.clone(),
            events,
            last: MemberStatus::START,
        }
    }
}

/// Starts the coordinator of the group `name` with `members` members. The group's state
/// changes are logged and, with `notify`, sent there as [`Notification::Group`].
#[must_use]
pub fn spawn(
    name: String,
    members: usize,
    notify: Option<UnboundedSender<Notification>>,
) -> (GroupHandle, JoinHandle<()>) {
    let (reports, mut rx) = unbounded_channel();
    let senders = Arc::new(Mutex::new(
        (0..members)
            .map(|_| unbounded_channel().0)
            .collect::<Vec<_>>(),
    ));
    let handle = GroupHandle {
        reports,
        senders: senders.clone(),
    };
    let task = tokio::spawn(async move {
        let mut group = SyncGroup::new(members);
        while let Some((member, status)) = rx.recv().await {
            for output in group.update(member, status) {
                match output {
                    Output::Member { member, event } => {
                        tracing::debug!(group = name, member, ?event, "sync group event");
                        let senders = senders.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(tx) = senders.get(member) {
                            // A member that has stopped needs nothing more.
                            let _ = tx.send(event);
                        }
                    }
                    Output::Notify { state } => {
                        tracing::info!(group = name, state = state.name(), "VRRP sync group state");
                        if let Some(tx) = &notify {
                            let _ = tx.send(Notification::Group {
                                name: name.clone(),
                                state,
                            });
                        }
                    }
                }
            }
        }
    });
    (handle, task)
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
