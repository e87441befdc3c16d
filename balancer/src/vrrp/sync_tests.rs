//! A sync group of real state machines, wired as the I/O tasks wire them: every member's
//! status change goes to the coordinator, whose events go back to the members.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;
use crate::vrrp::config::Config;
use crate::vrrp::fsm::{Action, Instance, PRIORITY_STOP};
use crate::vrrp::timing::Timestamp;
use crate::vrrp::validate::Advert;
use crate::vrrp::wire::{Addresses, Version};

fn at(ms: u64) -> Timestamp {
    Timestamp::from_start(Duration::from_millis(ms))
}

fn instance(vrid: u8, priority: u8) -> Instance {
    let mut c = Config::new(
        vrid,
        Version::V3,
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)),
        Addresses::V4(vec![Ipv4Addr::new(198, 18, 9, vrid)]),
    );
    c.priority = priority;
    let mut i = Instance::new(c).unwrap();
    i.join_sync_group();
    i
}

struct Sim {
    group: SyncGroup,
    members: Vec<Instance>,
    told: Vec<MemberStatus>,
    /// The group's notifications, in order.
    notified: Vec<State>,
}

impl Sim {
    fn new(members: Vec<Instance>) -> Self {
        Self {
            group: SyncGroup::new(members.len()),
            told: vec![MemberStatus::START; members.len()],
            members,
            notified: Vec::new(),
        }
    }

    fn started(priorities: &[u8]) -> Self {
        let mut sim = Self::new(
            priorities
                .iter()
                .zip(1..)
                .map(|(p, vrid)| instance(vrid, *p))
                .collect(),
        );
        for m in 0..priorities.len() {
            sim.handle(at(0), m, Event::Startup);
        }
        sim
    }

    /// Gives `event` to `member` and carries the group's answers through; returns every
    /// member's actions.
    fn handle(&mut self, now: Timestamp, member: usize, event: Event) -> Vec<(usize, Action)> {
        let mut out = Vec::new();
        let mut queue = VecDeque::from([(member, event)]);
        while let Some((m, event)) = queue.pop_front() {
            out.extend(
                self.members[m]
                    .handle(now, event)
                    .into_iter()
                    .map(|a| (m, a)),
            );
            let s = MemberStatus::of(&self.members[m]);
            if s != self.told[m] {
                self.told[m] = s;
                for o in self.group.update(m, s) {
                    match o {
                        Output::Member { member, event } => queue.push_back((member, event)),
                        Output::Notify { state } => self.notified.push(state),
                    }
                }
            }
        }
        out
    }

    /// Fires every member's timers until `end`, feeding `member 0` an advert from a live
    /// higher-priority master every second when `master_on_0` is set.
    fn run_until(&mut self, end: u64, master_on_0: bool) -> Vec<(u64, usize, Action)> {
        let mut out = Vec::new();
        let mut next_advert = 0;
        loop {
            let timer = self
                .members
                .iter()
                .enumerate()
                .filter_map(|(m, i)| i.next_deadline().map(|t| (t, m)))
                .min();
            let advert = master_on_0.then_some((at(next_advert), 0));
            let Some((t, m)) = [timer, advert].into_iter().flatten().min() else {
                break;
            };
            if t > at(end) {
                break;
            }
            let ms = u64::try_from(t.since_start().as_millis()).unwrap();
            let event = if master_on_0 && t == at(next_advert) && m == 0 {
                next_advert += 1000;
                Event::AdvertReceived(Advert {
                    src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 20)),
                    priority: 250,
                    advert_interval: Duration::from_secs(1),
                    anomalies: vec![],
                })
            } else {
                Event::TimerExpired
            };
            out.extend(
                self.handle(t, m, event)
                    .into_iter()
                    .map(|(m, a)| (ms, m, a)),
            );
        }
        out
    }

    fn states(&self) -> Vec<State> {
        self.members.iter().map(Instance::state).collect()
    }
}

fn adds(actions: &[(u64, usize, Action)]) -> Vec<(u64, usize)> {
    actions
        .iter()
        .filter(|(_, _, a)| *a == Action::AddVips)
        .map(|(t, m, _)| (*t, *m))
        .collect()
}

#[test]
fn a_started_group_is_backup_once_every_member_is() {
    let mut sim = Sim::new(vec![instance(1, 100), instance(2, 100)]);
    sim.handle(at(0), 0, Event::Startup);
    assert!(sim.notified.is_empty(), "one member is still INIT");
    sim.handle(at(0), 1, Event::Startup);
    // keepalived vrrp_init_state: send_group_notifies for a group in BACKUP.
    assert_eq!(sim.notified, [State::Backup]);
}

/// keepalived `vrrp_sync_can_goto_master`: a member whose `Master_Down_Timer` fires waits for
/// every other member to want mastership too; then `vrrp_sync_master` makes them all master
/// at once, and the group notifies MASTER once.
#[test]
fn the_group_becomes_master_only_when_every_member_wants_it() {
    // Priority 200's Master_Down_Interval (3 s + 0.22 s skew) ends before 100's (3.61 s).
    let mut sim = Sim::started(&[200, 100]);
    let actions = sim.run_until(3300, false);
    assert!(adds(&actions).is_empty(), "{actions:?}");
    assert_eq!(sim.states(), [State::Backup, State::Backup]);
    assert!(sim.members[0].wants_master() && !sim.members[1].wants_master());
    let actions = sim.run_until(3700, false);
    assert_eq!(adds(&actions), [(3609, 0), (3609, 1)]);
    assert_eq!(sim.states(), [State::Master, State::Master]);
    assert_eq!(sim.notified, [State::Backup, State::Master]);
}

/// keepalived: "Only sync to master if everyone wants to, i.e. prefer backup state to avoid
/// thrashing": a member that hears a live master keeps the whole group in backup.
#[test]
fn a_member_with_a_live_master_holds_the_others_in_backup() {
    let mut sim = Sim::started(&[100, 100]);
    let actions = sim.run_until(20_000, true);
    assert!(adds(&actions).is_empty(), "{actions:?}");
    assert_eq!(sim.states(), [State::Backup, State::Backup]);
    assert!(sim.members[1].wants_master(), "its own timer fired");
    assert_eq!(sim.group.state(), State::Backup);
}

fn master_group() -> Sim {
    let mut sim = Sim::started(&[150, 150]);
    sim.run_until(4000, false);
    assert_eq!(sim.states(), [State::Master, State::Master]);
    sim
}

/// keepalived `vrrp_sync_fault`: one member's tracked interface going down takes every
/// member to FAULT, a master one after a priority-0 advert (`vrrp_state_leave_master` with
/// wantstate FAULT), so the peer's whole group takes over after `Skew_Time`.
#[test]
fn one_member_fault_takes_the_group_to_fault_and_back() {
    let mut sim = master_group();
    let actions = sim.handle(at(5000), 0, Event::InterfaceDown { ifindex: 4 });
    for m in 0..2 {
        let mine: Vec<&Action> = actions
            .iter()
            .filter(|(i, _)| *i == m)
            .map(|(_, a)| a)
            .collect();
        assert_eq!(
            mine,
            [
                &Action::SendAdvert {
                    priority: PRIORITY_STOP
                },
                &Action::DelVips,
                &Action::Notify {
                    state: State::Fault
                }
            ],
            "member {m}"
        );
    }
    assert_eq!(sim.states(), [State::Fault, State::Fault]);
    assert_eq!(sim.notified.last(), Some(&State::Fault));
    assert!(
        sim.run_until(10_000, false).is_empty(),
        "FAULT has no timers"
    );

    // try_up_instance: the fault clears, every member comes back as backup, and the group
    // becomes master again once every member's timer has fired.
    let actions = sim.handle(at(10_000), 0, Event::InterfaceUp { ifindex: 4 });
    assert_eq!(sim.states(), [State::Backup, State::Backup]);
    assert_eq!(
        actions
            .iter()
            .filter(|(_, a)| *a
                == Action::Notify {
                    state: State::Backup
                })
            .count(),
        2
    );
    sim.run_until(15_000, false);
    assert_eq!(sim.states(), [State::Master, State::Master]);
    assert_eq!(
        sim.notified,
        [
            State::Backup,
            State::Master,
            State::Fault,
            State::Backup,
            State::Master
        ]
    );
}

/// keepalived counts faulty members (`num_member_fault`): the group leaves FAULT only when
/// the last one recovers.
#[test]
fn the_group_leaves_fault_only_when_no_member_has_a_fault() {
    let mut sim = master_group();
    sim.handle(at(5000), 0, Event::InterfaceDown { ifindex: 4 });
    sim.handle(at(5100), 1, Event::TrackersFailing { failing: true });
    sim.handle(at(5200), 0, Event::InterfaceUp { ifindex: 4 });
    assert_eq!(sim.states(), [State::Fault, State::Fault]);
    assert!(sim.run_until(10_000, false).is_empty());
    sim.handle(at(10_000), 1, Event::TrackersFailing { failing: false });
    assert_eq!(sim.states(), [State::Backup, State::Backup]);
    assert_eq!(sim.group.state(), State::Backup);
}

/// keepalived `VRRP_TSM` MASTER -> BACKUP runs `vrrp_sync_backup`: a member that hears a
/// higher priority takes the others out of MASTER with it, without priority 0.
#[test]
fn a_member_preempted_takes_the_others_to_backup() {
    let mut sim = master_group();
    let higher = Event::AdvertReceived(Advert {
        src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 20)),
        priority: 200,
        advert_interval: Duration::from_secs(1),
        anomalies: vec![],
    });
    let actions = sim.handle(at(5000), 0, higher);
    let other: Vec<&Action> = actions
        .iter()
        .filter(|(m, _)| *m == 1)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        other,
        [
            &Action::DelVips,
            &Action::Notify {
                state: State::Backup
            }
        ]
    );
    assert_eq!(sim.states(), [State::Backup, State::Backup]);
    assert_eq!(sim.group.state(), State::Backup);
    assert_eq!(sim.notified.last(), Some(&State::Backup));
}

/// keepalived `notify_shutdown`: the group says STOP once, after its instances.
#[test]
fn the_group_says_stop_after_every_member_stopped() {
    let mut sim = master_group();
    let before = sim.notified.len();
    sim.handle(at(5000), 0, Event::Shutdown);
    assert_eq!(sim.notified.len(), before, "one member still runs");
    sim.handle(at(5000), 1, Event::Shutdown);
    assert_eq!(sim.notified[before..], [State::Init]);
}

/// A MASTER group lets a member that wants mastership in at once (keepalived
/// `vrrp_sync_can_goto_master` returns true for a group in MASTER).
#[test]
fn a_master_group_lets_a_wanting_member_in_at_once() {
    let mut group = SyncGroup::new(2);
    let master = MemberStatus {
        state: State::Master,
        wants_master: true,
        own_fault: false,
    };
    let wanting = MemberStatus {
        state: State::Backup,
        wants_master: true,
        own_fault: false,
    };
    group.update(0, wanting);
    assert_eq!(
        group.update(1, master),
        [
            Output::Notify {
                state: State::Master
            },
            Output::Member {
                member: 0,
                event: Event::SyncMaster
            }
        ]
    );
    let restarted = MemberStatus {
        state: State::Backup,
        wants_master: false,
        own_fault: false,
    };
    assert!(group.update(0, restarted).is_empty());
    assert_eq!(
        group.update(0, wanting),
        [Output::Member {
            member: 0,
            event: Event::SyncMaster
        }]
    );
}

/// The coordinator task: events reach the members' links, and a member restarted (a reload)
/// gets a fresh link that receives what follows.
#[tokio::test]
async fn links_carry_the_groups_events_and_a_restarted_member_joins_again() {
    let (handle, task) = spawn("G".into(), 2, None);
    let (mut a, mut b) = (handle.link(0), handle.link(1));
    let mut faulty = instance(1, 100);
    faulty.handle(at(0), Event::Startup);
    faulty.handle(at(0), Event::InterfaceDown { ifindex: 3 });
    a.report(&faulty);
    assert_eq!(b.event().await, Some(Event::SyncFault { failing: true }));
    assert_eq!(a.event().await, Some(Event::SyncFault { failing: true }));

    drop(b);
    let mut b = handle.link(1);
    faulty.handle(at(1), Event::InterfaceUp { ifindex: 3 });
    a.report(&faulty);
    assert_eq!(b.event().await, Some(Event::SyncFault { failing: false }));
    drop((a, b, handle));
    task.await.unwrap();
}
