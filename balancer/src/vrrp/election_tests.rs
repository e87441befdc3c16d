//! Whole elections: several instances on a simulated LAN, exchanging real advert bytes
//! through `wire` and `validate`, driven only by their own deadlines.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::vrrp::checksum::{MULTICAST_V4, PseudoHeader};
use crate::vrrp::config::Config;
use crate::vrrp::fsm::{Action, Event, Instance, State};
use crate::vrrp::timing::Timestamp;
use crate::vrrp::validate::Received;
use crate::vrrp::wire::{Addresses, Version};

struct Node {
    addr: IpAddr,
    instance: Instance,
    up: bool,
}

struct Lan {
    nodes: Vec<Node>,
    /// (time, node, state) for every notification.
    notes: Vec<(Duration, usize, State)>,
    /// Adverts are lost while set.
    partitioned: bool,
}

impl Lan {
    fn new(version: Version, priorities: &[u8]) -> Self {
        let nodes = priorities
            .iter()
            .enumerate()
            .map(|(i, &priority)| {
                let addr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1 + u8::try_from(i).unwrap()));
                let mut config = Config::new(
                    9,
                    version,
                    addr,
                    Addresses::V4(vec![Ipv4Addr::new(198, 18, 9, 9)]),
                );
                config.priority = priority;
                Node {
                    addr,
                    instance: Instance::new(config).unwrap(),
                    up: false,
                }
            })
            .collect();
        Self {
            nodes,
            notes: Vec::new(),
            partitioned: false,
        }
    }

    fn event(&mut self, at: Duration, node: usize, event: Event) {
        match event {
            Event::Startup => self.nodes[node].up = true,
            Event::Shutdown => self.nodes[node].up = false,
            _ => {}
        }
        let actions = self.nodes[node]
            .instance
            .handle(Timestamp::from_start(at), event);
        self.carry_out(at, node, actions, 0);
    }

    /// Delivers adverts to every other running node at once, and records notifications.
    fn carry_out(&mut self, at: Duration, from: usize, actions: Vec<Action>, depth: u32) {
        assert!(depth < 8, "advert storm");
        for action in actions {
            match action {
                Action::Notify { state } => self.notes.push((at, from, state)),
                Action::SendAdvert { .. } if self.partitioned => {}
                Action::SendAdvert { priority } => {
                    let sender = &self.nodes[from];
                    let ph = PseudoHeader {
                        src: sender.addr,
                        dst: IpAddr::V4(MULTICAST_V4),
                    };
                    let bytes = sender
                        .instance
                        .advert(priority)
                        .to_bytes(ph, sender.instance.checksum_mode())
                        .unwrap();
                    for to in 0..self.nodes.len() {
                        if to == from || !self.nodes[to].up {
                            continue;
                        }
                        let rx = Received {
                            src: ph.src,
                            dst: ph.dst,
                            ttl: 255,
                            payload: &bytes,
                        };
                        let replies = self.nodes[to]
                            .instance
                            .receive(Timestamp::from_start(at), &rx);
                        self.carry_out(at, to, replies, depth + 1);
                    }
                }
                _ => {}
            }
        }
    }

    /// Fires every deadline up to `end`, in time order.
    fn run_until(&mut self, end: Duration) {
        loop {
            let next = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.instance.next_deadline().map(|t| (t, i)))
                .min();
            let Some((t, node)) = next else { return };
            if t.since_start() > end {
                return;
            }
            self.event(t.since_start(), node, Event::TimerExpired);
        }
    }

    fn states(&self) -> Vec<State> {
        self.nodes.iter().map(|n| n.instance.state()).collect()
    }

    fn became_master(&self) -> Vec<(Duration, usize)> {
        self.notes
            .iter()
            .filter(|(_, _, s)| *s == State::Master)
            .map(|(t, n, _)| (*t, *n))
            .collect()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// RFC 5798 §6.4: the highest priority wins, the others stay backup, and every failover takes
// the time the RFC gives it.
#[test]
fn election_failover_and_preemption() {
    for version in [Version::V2, Version::V3] {
        let mut lan = Lan::new(version, &[200, 100, 50]);
        for node in 0..3 {
            lan.event(Duration::ZERO, node, Event::Startup);
        }
        lan.run_until(secs(10));
        assert_eq!(lan.states(), [State::Master, State::Backup, State::Backup]);
        // 3 s + (256-200)/256 s: the highest priority's timer fires first.
        assert_eq!(lan.became_master(), [(Duration::from_micros(3_218_750), 0)]);

        // RFC 5798 §6.4.3 / §6.4.2: a stopping master sends priority 0; the next one takes
        // over after its Skew_Time alone.
        lan.event(secs(10), 0, Event::Shutdown);
        lan.run_until(secs(20));
        assert_eq!(lan.states(), [State::Init, State::Master, State::Backup]);
        assert_eq!(
            lan.became_master()[1],
            (secs(10) + Duration::from_micros(609_375), 1)
        );

        // RFC 5798 §6.4.2: the higher priority comes back and preempts after its
        // Master_Down_Interval, and the old master steps down on its first advert.
        lan.event(secs(20), 0, Event::Startup);
        lan.run_until(secs(30));
        assert_eq!(lan.states(), [State::Master, State::Backup, State::Backup]);
        assert_eq!(
            lan.became_master()[2],
            (secs(20) + Duration::from_micros(3_218_750), 0)
        );
    }
}

// A master that dies silently is replaced after Master_Down_Interval (RFC 5798 §6.4.2).
#[test]
fn silent_master_failure() {
    let mut lan = Lan::new(Version::V3, &[200, 100]);
    lan.event(Duration::ZERO, 0, Event::Startup);
    lan.event(Duration::ZERO, 1, Event::Startup);
    lan.run_until(secs(5));
    // Node 0 vanishes without a word (power cut): a fresh, never started instance in its place.
    lan.nodes[0] = Node {
        up: false,
        instance: Instance::new(lan.nodes[0].instance.config().clone()).unwrap(),
        addr: lan.nodes[0].addr,
    };
    lan.run_until(secs(20));
    assert_eq!(lan.states()[1], State::Master);
    // The last advert from node 0 was at 4.21875 s (adverts every second from 3.21875 s);
    // node 1 waits 3 s + 156/256 s after it.
    let took_over = lan.became_master()[1];
    assert_eq!(took_over, (Duration::from_micros(4_218_750 + 3_609_375), 1));
}

// RFC 5798 §6.4.2: a backup accepts a master of equal priority, whatever its address: the
// first to time out keeps the role.
#[test]
fn equal_priority_backup_accepts_the_first_master() {
    let mut lan = Lan::new(Version::V3, &[100, 100]);
    lan.event(Duration::ZERO, 0, Event::Startup);
    lan.event(Duration::ZERO, 1, Event::Startup);
    lan.run_until(secs(10));
    assert_eq!(lan.states(), [State::Master, State::Backup]);
}

// RFC 5798 §6.4.3: two masters of equal priority (after a partition heals) settle on the
// higher primary address.
#[test]
fn split_brain_settles_on_the_higher_address() {
    let mut lan = Lan::new(Version::V3, &[100, 100]);
    lan.partitioned = true;
    lan.event(Duration::ZERO, 0, Event::Startup);
    lan.event(Duration::ZERO, 1, Event::Startup);
    lan.run_until(secs(10));
    assert_eq!(lan.states(), [State::Master, State::Master]);
    lan.partitioned = false;
    lan.run_until(secs(20));
    assert_eq!(lan.states(), [State::Backup, State::Master]);
}

// keepalived `nopreempt`: a returning higher priority stays backup.
#[test]
fn nopreempt_lets_the_current_master_stay() {
    let mut lan = Lan::new(Version::V3, &[200, 100]);
    let mut config = lan.nodes[0].instance.config().clone();
    config.preempt = false;
    lan.nodes[0].instance = Instance::new(config).unwrap();
    lan.event(Duration::ZERO, 1, Event::Startup);
    lan.run_until(secs(10));
    lan.event(secs(10), 0, Event::Startup);
    lan.run_until(secs(60));
    assert_eq!(lan.states(), [State::Backup, State::Master]);
}
