use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::vrrp::auth::{Auth, Password};
use crate::vrrp::checksum::PseudoHeader;
use crate::vrrp::config::Garp;
use crate::vrrp::testdata;
use crate::vrrp::wire::Addresses;

const US: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10));

fn peer(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at(d: Duration) -> Timestamp {
    Timestamp::from_start(d)
}

fn config(version: Version, priority: u8) -> Config {
    let mut c = Config::new(
        7,
        version,
        US,
        Addresses::V4(vec![Ipv4Addr::new(198, 18, 9, 1)]),
    );
    c.priority = priority;
    c
}

fn advert(from: IpAddr, priority: u8, interval: Duration) -> Event {
    Event::AdvertReceived(Advert {
        src: from,
        priority,
        advert_interval: interval,
        anomalies: vec![],
    })
}

fn started(c: Config) -> Instance {
    let mut i = Instance::new(c).unwrap();
    i.handle(Timestamp::ZERO, Event::Startup);
    i
}

/// Runs the instance until `deadline`, firing timers as the I/O task would, and returns the
/// actions with the time each happened.
fn run_until(i: &mut Instance, end: Duration) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    while let Some(t) = i.next_deadline() {
        if t > at(end) {
            break;
        }
        for a in i.handle(t, Event::TimerExpired) {
            out.push((t.since_start(), a));
        }
    }
    out
}

/// `Master_Down_Interval` for VRRPv3, priority 100, 1 s: 3 s + 156/256 s.
const DOWN_100: Duration = Duration::from_micros(3_609_375);

fn became_master(priority: u8) -> Vec<Action> {
    vec![
        Action::SendAdvert { priority },
        Action::AddVips,
        Action::SendGratuitous { repeat: 5 },
        Action::Notify {
            state: State::Master,
        },
    ]
}

fn master(c: Config) -> Instance {
    let mut i = started(c);
    let t = i.next_deadline().unwrap();
    i.handle(t, Event::TimerExpired);
    assert_eq!(i.state(), State::Master);
    i
}

// RFC 5798 §6.4.1: a non-owner starts as backup with Master_Down_Timer = Master_Down_Interval.
#[test]
fn startup_as_backup_waits_master_down_interval() {
    let mut i = Instance::new(config(Version::V3, 100)).unwrap();
    assert_eq!(i.next_deadline(), None);
    assert_eq!(
        i.handle(Timestamp::ZERO, Event::Startup),
        vec![Action::Notify {
            state: State::Backup
        }]
    );
    assert_eq!(i.next_deadline(), Some(at(DOWN_100)));
    // Early wake-ups do nothing.
    assert_eq!(i.handle(at(ms(3000)), Event::TimerExpired), vec![]);
    assert_eq!(i.state(), State::Backup);
}

// RFC 5798 §6.4.2: Master_Down_Timer fires: advert, addresses, gratuitous ARP, Adver_Timer.
#[test]
fn master_down_timer_makes_master() {
    let mut i = started(config(Version::V3, 100));
    assert_eq!(
        i.handle(at(DOWN_100), Event::TimerExpired),
        became_master(100)
    );
    assert_eq!(i.state(), State::Master);
    assert_eq!(i.next_deadline(), Some(at(DOWN_100 + ms(1000))));
}

// RFC 5798 §6.4.3: a master advertises every Advertisement_Interval.
#[test]
fn master_advertises_every_interval() {
    let mut c = config(Version::V3, 100);
    c.garp.master_delay = Duration::ZERO;
    c.advert_interval = ms(500);
    let mut i = master(c);
    let t0 = i
        .next_deadline()
        .unwrap()
        .since_start()
        .saturating_sub(ms(500));
    let sent: Vec<_> = run_until(&mut i, t0 + ms(2000));
    assert_eq!(
        sent,
        (1..=4)
            .map(|n| (t0 + ms(500) * n, Action::SendAdvert { priority: 100 }))
            .collect::<Vec<_>>()
    );
}

// RFC 5798 §6.4.1: the address owner (255) becomes master at startup.
#[test]
fn owner_starts_as_master() {
    let mut i = Instance::new(config(Version::V3, 255)).unwrap();
    assert_eq!(
        i.handle(Timestamp::ZERO, Event::Startup),
        became_master(255)
    );
    assert_eq!(i.next_deadline(), Some(at(ms(1000))));
}

// keepalived: an owner configured `state BACKUP` waits like any backup.
#[test]
fn owner_with_state_backup_waits() {
    let mut c = config(Version::V3, 255);
    c.initial_state = Some(InitialState::Backup);
    let i = started(c);
    assert_eq!(i.state(), State::Backup);
    // 3 s + (256-255)/256 s
    assert_eq!(
        i.next_deadline(),
        Some(at(Duration::from_nanos(3_003_906_250)))
    );
}

// keepalived `state MASTER` below 255: one interval plus the smallest skew, not three.
#[test]
fn state_master_below_owner_waits_one_interval() {
    let mut c = config(Version::V3, 100);
    c.initial_state = Some(InitialState::Master);
    let mut i = started(c);
    assert_eq!(i.state(), State::Backup);
    let deadline = Duration::from_nanos(1_003_906_250);
    assert_eq!(i.next_deadline(), Some(at(deadline)));
    // A live higher master keeps it backup.
    i.handle(at(ms(500)), advert(peer(2), 150, ms(1000)));
    assert_eq!(i.next_deadline(), Some(at(ms(500) + DOWN_100)));
}

// RFC 3768 §6.1: VRRPv2 skew is (256 - priority)/256 s whatever the interval.
#[test]
fn v2_master_down_interval() {
    let mut c = config(Version::V2, 100);
    c.advert_interval = Duration::from_secs(2);
    let i = started(c);
    assert_eq!(
        i.next_deadline(),
        Some(at(Duration::from_micros(6_609_375)))
    );
}

// RFC 5798 §6.4.2: adverts of higher or equal priority reset Master_Down_Timer.
#[test]
fn backup_accepts_higher_and_equal_priority() {
    let mut i = started(config(Version::V3, 100));
    for (t, prio) in [(1000, 150), (2000, 100), (3000, 150)] {
        assert_eq!(i.handle(at(ms(t)), advert(peer(2), prio, ms(1000))), vec![]);
        assert_eq!(i.next_deadline(), Some(at(ms(t) + DOWN_100)));
    }
    assert_eq!(i.master(), Some((peer(2), 150)));
    assert_eq!(i.state(), State::Backup);
}

// RFC 5798 §6.4.2: with preemption, lower-priority adverts are discarded and we take over.
#[test]
fn backup_preempts_lower_priority_master() {
    let mut i = started(config(Version::V3, 100));
    i.handle(at(ms(1000)), advert(peer(2), 150, ms(1000)));
    let deadline = i.next_deadline();
    i.handle(at(ms(2000)), advert(peer(2), 50, ms(1000)));
    assert_eq!(
        i.next_deadline(),
        deadline,
        "lower priority must not reset the timer"
    );
    assert_eq!(
        i.handle(deadline.unwrap(), Event::TimerExpired),
        became_master(100)
    );
}

// RFC 5798 §6.4.2 Preempt_Mode false; keepalived `nopreempt`: never preempt a live master.
#[test]
fn nopreempt_keeps_a_lower_priority_master() {
    let mut c = config(Version::V3, 200);
    c.preempt = false;
    let mut i = started(c);
    for t in 1..20 {
        i.handle(at(ms(t * 1000)), advert(peer(2), 50, ms(1000)));
        assert_eq!(
            i.next_deadline(),
            Some(at(ms(t * 1000) + Duration::from_micros(3_218_750)))
        );
    }
    assert_eq!(i.state(), State::Backup);
}

// keepalived `preempt_delay`: a lower-priority master is tolerated for the delay that its
// first advert starts, then preempted.
#[test]
fn preempt_delay_tolerates_then_preempts() {
    let mut c = config(Version::V3, 100);
    c.preempt_delay = Duration::from_secs(5);
    let mut i = started(c);
    for t in 1..=8 {
        i.handle(at(ms(t * 1000)), advert(peer(2), 50, ms(1000)));
    }
    // Accepted at 1..=5 s (the delay ends at 6 s), discarded from 6 s on.
    assert_eq!(i.next_deadline(), Some(at(ms(5000) + DOWN_100)));
    assert_eq!(
        i.handle(at(ms(5000) + DOWN_100), Event::TimerExpired),
        became_master(100)
    );
}

// keepalived: a higher-priority advert cancels a running preempt delay.
#[test]
fn higher_priority_advert_restarts_preempt_delay() {
    let mut c = config(Version::V3, 100);
    c.preempt_delay = Duration::from_secs(5);
    let mut i = started(c);
    i.handle(at(ms(1000)), advert(peer(2), 50, ms(1000)));
    i.handle(at(ms(2000)), advert(peer(3), 150, ms(1000)));
    // The delay starts again from the next lower-priority advert, at 4 s: tolerated to 9 s.
    for t in 4..=9 {
        i.handle(at(ms(t * 1000)), advert(peer(2), 50, ms(1000)));
    }
    assert_eq!(i.next_deadline(), Some(at(ms(8000) + DOWN_100)));
}

// RFC 5798 §6.4.2 / RFC 3768 §6.4.2: priority 0 from the master: take over after Skew_Time.
#[test]
fn priority_zero_makes_backup_take_over_after_skew() {
    for (version, skew) in [
        (Version::V3, Duration::from_micros(609_375)),
        (Version::V2, Duration::from_micros(609_375)),
    ] {
        let mut i = started(config(version, 100));
        i.handle(at(ms(1000)), advert(peer(2), 150, ms(1000)));
        i.handle(at(ms(1500)), advert(peer(2), 0, ms(1000)));
        assert_eq!(i.next_deadline(), Some(at(ms(1500) + skew)));
        assert_eq!(i.transitions().priority_zero_received, 1);
    }
    // RFC 5798 §6.1: VRRPv3 skew follows Master_Adver_Interval.
    let mut i = started(config(Version::V3, 128));
    i.handle(at(ms(1000)), advert(peer(2), 150, ms(200)));
    i.handle(at(ms(1100)), advert(peer(2), 0, ms(200)));
    assert_eq!(i.next_deadline(), Some(at(ms(1200))));
}

// RFC 5798 §6.4.2: a VRRPv3 backup learns Master_Adver_Interval from the master.
#[test]
fn v3_backup_learns_master_adver_interval() {
    let mut i = started(config(Version::V3, 100));
    i.handle(at(ms(1000)), advert(peer(2), 200, ms(2000)));
    assert_eq!(i.master_adver_interval(), ms(2000));
    // 3 * 2 s + 156 * 2 s / 256
    assert_eq!(
        i.next_deadline(),
        Some(at(ms(1000) + Duration::from_micros(7_218_750)))
    );
    // And forgets it on becoming master (RFC 5798 §6.4.2: Adver_Timer = Advertisement_Interval).
    let t = i.next_deadline().unwrap();
    i.handle(t, Event::TimerExpired);
    assert_eq!(i.master_adver_interval(), ms(1000));
}

// RFC 5798 §6.4.3: Shutdown as master sends priority 0; the VIPs go.
#[test]
fn shutdown_as_master() {
    let mut i = master(config(Version::V3, 100));
    assert_eq!(
        i.handle(at(ms(9000)), Event::Shutdown),
        vec![
            Action::SendAdvert { priority: 0 },
            Action::DelVips,
            Action::Notify { state: State::Init },
        ]
    );
    assert_eq!((i.state(), i.next_deadline()), (State::Init, None));
    assert_eq!(i.handle(at(ms(9001)), Event::Shutdown), vec![]);
    assert_eq!(
        i.transitions(),
        Transitions {
            become_master: 1,
            release_master: 1,
            priority_zero_received: 0,
            priority_zero_sent: 1,
        }
    );
}

// RFC 5798 §6.4.2: Shutdown as backup cancels the timer and goes to Initialize.
#[test]
fn shutdown_as_backup() {
    let mut i = started(config(Version::V3, 100));
    assert_eq!(
        i.handle(at(ms(10)), Event::Shutdown),
        vec![Action::Notify { state: State::Init }]
    );
    assert_eq!(i.next_deadline(), None);
    // A restart works like the first start.
    i.handle(at(ms(20)), Event::Startup);
    assert_eq!(i.next_deadline(), Some(at(ms(20) + DOWN_100)));
}

// RFC 5798 §6.4.3: a higher-priority advert sends the master back to backup.
#[test]
fn master_steps_down_for_higher_priority() {
    let mut i = master(config(Version::V3, 100));
    let now = at(ms(10_000));
    assert_eq!(
        i.handle(now, advert(peer(2), 150, ms(2000))),
        vec![
            Action::DelVips,
            Action::Notify {
                state: State::Backup
            }
        ]
    );
    assert_eq!(i.state(), State::Backup);
    assert_eq!(i.master_adver_interval(), ms(2000));
    assert_eq!(
        i.next_deadline(),
        Some(now + Duration::from_micros(7_218_750))
    );
}

// keepalived `higher_prio_send_advert`: one more advert before stepping down.
#[test]
fn higher_prio_send_advert() {
    let mut c = config(Version::V3, 100);
    c.higher_prio_send_advert = true;
    let mut i = master(c);
    let actions = i.handle(at(ms(10_000)), advert(peer(2), 150, ms(1000)));
    assert_eq!(actions[0], Action::SendAdvert { priority: 100 });
    assert_eq!(actions[1], Action::DelVips);
}

// RFC 5798 §6.4.3: equal priority, the higher primary address wins.
#[test]
fn equal_priority_tie_break_by_address() {
    let mut i = master(config(Version::V3, 100));
    let lower = i.handle(at(ms(10_000)), advert(peer(9), 100, ms(1000)));
    assert_eq!(i.state(), State::Master);
    assert!(lower.contains(&Action::SendAdvert { priority: 100 }));
    let higher = i.handle(at(ms(10_100)), advert(peer(11), 100, ms(1000)));
    assert_eq!(i.state(), State::Backup);
    assert!(higher.contains(&Action::DelVips));
    // Our own address at our priority (a looped advert) changes nothing.
    let mut i = master(config(Version::V3, 100));
    assert_eq!(i.handle(at(ms(10_000)), advert(US, 100, ms(1000))), vec![]);
    assert_eq!(i.state(), State::Master);
}

// keepalived: a master hearing a lower priority advertises at once and re-sends gratuitous
// ARPs (garp_lower_prio_repeat now and again after garp_lower_prio_delay).
#[test]
fn master_reannounces_to_lower_priority() {
    let mut i = master(config(Version::V3, 100));
    let now = at(ms(10_000));
    assert_eq!(
        i.handle(now, advert(peer(2), 50, ms(1000))),
        vec![
            Action::SendAdvert { priority: 100 },
            Action::SendGratuitous { repeat: 5 },
            Action::NotifyMasterRxLowerPriority { from: peer(2) },
        ]
    );
    let later = run_until(&mut i, ms(15_000));
    assert!(later.contains(&(ms(15_000), Action::SendGratuitous { repeat: 5 })));
}

// RFC 5798 §6.4.3 strictly (keepalived lower_prio_no_advert, garp_lower_prio_repeat 0).
#[test]
fn master_ignores_lower_priority_when_told_to() {
    let mut c = config(Version::V3, 100);
    c.lower_prio_no_advert = true;
    c.garp.lower_prio_repeat = 0;
    let mut i = master(c);
    assert_eq!(
        i.handle(at(ms(10_000)), advert(peer(2), 50, ms(1000))),
        vec![Action::NotifyMasterRxLowerPriority { from: peer(2) }]
    );
}

// RFC 5798 §6.4.3: priority 0 heard as master: advertise and reset Adver_Timer.
#[test]
fn master_answers_priority_zero() {
    let mut c = config(Version::V3, 100);
    c.garp.master_delay = Duration::ZERO;
    let mut i = master(c);
    let now = at(ms(10_250));
    assert_eq!(
        i.handle(now, advert(peer(2), 0, ms(1000))),
        vec![Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(i.state(), State::Master);
    assert_eq!(i.next_deadline(), Some(now + ms(1000)));
}

// keepalived garp_master_delay / garp_master_repeat / garp_master_refresh(_repeat).
#[test]
fn gratuitous_arp_timing() {
    let mut c = config(Version::V3, 255);
    c.garp = Garp {
        master_refresh: Duration::from_secs(10),
        master_refresh_repeat: 2,
        ..Garp::default()
    };
    let mut i = Instance::new(c).unwrap();
    i.handle(Timestamp::ZERO, Event::Startup);
    let garps: Vec<_> = run_until(&mut i, ms(36_000))
        .into_iter()
        .filter(|(_, a)| matches!(a, Action::SendGratuitous { .. }))
        .collect();
    assert_eq!(
        garps,
        vec![
            (ms(5000), Action::SendGratuitous { repeat: 5 }),
            (ms(15_000), Action::SendGratuitous { repeat: 2 }),
            (ms(25_000), Action::SendGratuitous { repeat: 2 }),
            (ms(35_000), Action::SendGratuitous { repeat: 2 }),
        ]
    );
}

// keepalived garp_master_delay 0: no second burst; garp_master_repeat 0: no burst at all.
#[test]
fn gratuitous_arp_can_be_disabled() {
    let mut c = config(Version::V3, 255);
    c.garp.master_delay = Duration::ZERO;
    let mut i = Instance::new(c.clone()).unwrap();
    i.handle(Timestamp::ZERO, Event::Startup);
    assert!(
        run_until(&mut i, ms(20_000))
            .iter()
            .all(|(_, a)| matches!(a, Action::SendAdvert { .. }))
    );
    c.garp.master_repeat = 0;
    let mut i = Instance::new(c).unwrap();
    let actions = i.handle(Timestamp::ZERO, Event::Startup);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SendGratuitous { .. }))
    );
}

// keepalived FAULT: a master whose interface fails says priority 0 and lets go of the VIPs.
#[test]
fn interface_down_as_master_is_fault() {
    let mut i = master(config(Version::V3, 100));
    assert_eq!(
        i.handle(at(ms(10_000)), Event::InterfaceDown { ifindex: 3 }),
        vec![
            Action::SendAdvert { priority: 0 },
            Action::DelVips,
            Action::Notify {
                state: State::Fault
            },
        ]
    );
    assert_eq!((i.state(), i.next_deadline()), (State::Fault, None));
    // Adverts are not processed in FAULT.
    assert_eq!(
        i.handle(at(ms(10_500)), advert(peer(2), 50, ms(1000))),
        vec![]
    );
    let up = at(ms(11_000));
    assert_eq!(
        i.handle(up, Event::InterfaceUp { ifindex: 3 }),
        vec![Action::Notify {
            state: State::Backup
        }]
    );
    assert_eq!(i.next_deadline(), Some(up + DOWN_100));
}

// keepalived track_interface: FAULT lasts until every tracked interface is up.
#[test]
fn fault_lasts_until_every_interface_is_up() {
    let mut i = started(config(Version::V3, 100));
    assert_eq!(
        i.handle(at(ms(10)), Event::InterfaceDown { ifindex: 3 }),
        vec![Action::Notify {
            state: State::Fault
        }]
    );
    assert_eq!(
        i.handle(at(ms(20)), Event::InterfaceDown { ifindex: 4 }),
        vec![]
    );
    assert_eq!(
        i.handle(at(ms(30)), Event::InterfaceUp { ifindex: 3 }),
        vec![]
    );
    assert_eq!(
        i.handle(at(ms(35)), Event::InterfaceUp { ifindex: 9 }),
        vec![]
    );
    assert_eq!(i.state(), State::Fault);
    i.handle(at(ms(40)), Event::InterfaceUp { ifindex: 4 });
    assert_eq!(i.state(), State::Backup);
}

// keepalived VRRP_FAULT_FL_TRACKER: an unweighted script or file failing is a FAULT of its
// own, cleared only when interfaces are up too.
#[test]
fn failing_trackers_fault_alongside_interfaces() {
    let mut i = master(config(Version::V3, 100));
    assert_eq!(
        i.handle(at(ms(10_000)), Event::TrackersFailing { failing: true }),
        vec![
            Action::SendAdvert { priority: 0 },
            Action::DelVips,
            Action::Notify {
                state: State::Fault
            },
        ]
    );
    assert_eq!(
        i.handle(at(ms(10_100)), Event::InterfaceDown { ifindex: 3 }),
        vec![]
    );
    assert_eq!(
        i.handle(at(ms(10_200)), Event::TrackersFailing { failing: false }),
        vec![]
    );
    assert_eq!(i.state(), State::Fault);
    assert_eq!(
        i.handle(at(ms(10_300)), Event::InterfaceUp { ifindex: 3 }),
        vec![Action::Notify {
            state: State::Backup
        }]
    );
    assert_eq!(
        i.handle(at(ms(10_400)), Event::TrackersFailing { failing: false }),
        vec![]
    );
}

#[test]
fn interface_down_before_startup_starts_in_fault() {
    let mut i = Instance::new(config(Version::V3, 255)).unwrap();
    assert_eq!(
        i.handle(Timestamp::ZERO, Event::InterfaceDown { ifindex: 3 }),
        vec![]
    );
    assert_eq!(
        i.handle(Timestamp::ZERO, Event::Startup),
        vec![Action::Notify {
            state: State::Fault
        }]
    );
    // RFC 5798 §6.4.1 again when it clears: the owner becomes master at once.
    assert_eq!(
        i.handle(at(ms(5)), Event::InterfaceUp { ifindex: 3 }),
        became_master(255)
    );
}

// keepalived track_script weights: the priority moves within 1..=254 and a backup's pending
// Master_Down_Timer moves by the change in Skew_Time.
#[test]
fn priority_changes_move_the_down_timer() {
    let mut i = started(config(Version::V3, 100));
    assert_eq!(
        i.handle(at(ms(1)), Event::PriorityChanged { weight: 28 }),
        vec![]
    );
    assert_eq!(i.priority(), 128);
    // Skew went from 156/256 s to 128/256 s.
    assert_eq!(i.next_deadline(), Some(at(ms(3500))));
    i.handle(at(ms(2)), Event::PriorityChanged { weight: 500 });
    assert_eq!(i.priority(), 254);
    i.handle(at(ms(3)), Event::PriorityChanged { weight: -500 });
    assert_eq!(i.priority(), 1);
}

// keepalived: the address owner's priority never changes.
#[test]
fn owner_priority_is_fixed() {
    let mut i = started(config(Version::V3, 255));
    i.handle(at(ms(1)), Event::PriorityChanged { weight: -100 });
    assert_eq!(i.priority(), 255);
}

// A tracker raising a backup above the master makes it preempt (RFC 5798 §6.4.2).
#[test]
fn raised_priority_preempts() {
    let mut i = started(config(Version::V3, 100));
    i.handle(at(ms(1000)), advert(peer(2), 150, ms(1000)));
    i.handle(at(ms(1100)), Event::PriorityChanged { weight: 60 });
    i.handle(at(ms(2000)), advert(peer(2), 150, ms(1000)));
    let deadline = i.next_deadline().unwrap();
    i.handle(at(ms(3000)), advert(peer(2), 150, ms(1000)));
    assert_eq!(i.next_deadline(), Some(deadline));
    assert_eq!(i.handle(deadline, Event::TimerExpired), became_master(160));
    // A master with a lowered priority advertises it from its next advert on.
    i.handle(deadline, Event::PriorityChanged { weight: -20 });
    let next = i.next_deadline().unwrap();
    assert_eq!(
        i.handle(next, Event::TimerExpired),
        vec![Action::SendAdvert { priority: 80 }]
    );
}

// keepalived's adverts, rebuilt from our configuration, are byte for byte what it sent.
#[test]
fn our_adverts_match_keepalived_bytes() {
    let v4 = |addrs: &[[u8; 4]]| Addresses::V4(addrs.iter().map(|a| Ipv4Addr::from(*a)).collect());
    let mut v2 = Config::new(
        51,
        Version::V2,
        testdata::SRC4,
        v4(&[[198, 18, 1, 1], [198, 18, 1, 2]]),
    );
    v2.auth = Some(Auth::Pass(Password::new("secret12xyz")));
    let v3 = Config::new(52, Version::V3, testdata::SRC4, v4(&[[198, 18, 2, 1]]));
    let mut v6 = Config::new(
        53,
        Version::V3,
        testdata::SRC6,
        Addresses::V6(vec![
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x53),
            Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0x53),
        ]),
    );
    v6.advert_interval = ms(500);
    let mut uni = Config::new(54, Version::V3, testdata::SRC4, v4(&[[198, 18, 4, 1]]));
    uni.unicast_peers = vec![testdata::PEER4];
    let mut old = Config::new(55, Version::V3, testdata::SRC4, v4(&[[198, 18, 5, 1]]));
    old.unicast_peers = vec![testdata::PEER4];
    old.unicast_checksum = UnicastChecksum::Old;
    for (config, running, stopped) in [
        (v2, testdata::V2_PASS, testdata::V2_PASS_STOP),
        (v3, testdata::V3_IPV4, testdata::V3_IPV4_STOP),
        (v6, testdata::V3_IPV6, testdata::V3_IPV6_STOP),
        (uni, testdata::V3_UNICAST, testdata::V3_UNICAST_STOP),
        (old, testdata::V3_UNICAST_OLD, testdata::V3_UNICAST_OLD_STOP),
    ] {
        let i = Instance::new(config).unwrap();
        let ph = PseudoHeader {
            src: running.src,
            dst: running.dst,
        };
        for c in [running, stopped] {
            let bytes = i
                .advert(c.payload[2])
                .to_bytes(ph, i.checksum_mode())
                .unwrap();
            assert_eq!(bytes, c.payload, "{}", c.name);
        }
    }
}

// The whole receive path on a real keepalived advert: validate, count, handle.
#[test]
fn receive_validates_counts_and_handles() {
    let c = testdata::V3_IPV4;
    let mut cfg = Config::new(
        52,
        Version::V3,
        testdata::PEER4,
        Addresses::V4(vec![Ipv4Addr::new(198, 18, 2, 1)]),
    );
    cfg.priority = 50;
    let mut i = started(cfg);
    let rx = Received {
        src: c.src,
        dst: c.dst,
        ttl: 255,
        payload: c.payload,
    };
    let now = at(ms(2000));
    assert_eq!(i.receive(now, &rx), vec![]);
    assert_eq!(i.counters().accepted, 1);
    assert_eq!(i.master(), Some((c.src, 100)));
    // 3 s + 206/256 s
    assert_eq!(
        i.next_deadline(),
        Some(now + Duration::from_nanos(3_804_687_500))
    );
    let bad = Received { ttl: 1, ..rx };
    assert_eq!(i.receive(at(ms(2500)), &bad), vec![]);
    assert_eq!(i.counters().discarded(validate::Discard::TtlNot255), 1);
    // keepalived's stop advert: take over after Skew_Time.
    let stop = Received {
        payload: testdata::V3_IPV4_STOP.payload,
        ..rx
    };
    i.receive(at(ms(3000)), &stop);
    assert_eq!(
        i.next_deadline(),
        Some(at(ms(3000)) + Duration::from_nanos(804_687_500))
    );
}

// keepalived old_unicast_checksum auto-detection switches what we send.
#[test]
fn receiving_an_old_checksum_switches_ours() {
    let c = testdata::V3_UNICAST_OLD;
    let mut cfg = Config::new(
        55,
        Version::V3,
        testdata::PEER4,
        Addresses::V4(vec![Ipv4Addr::new(198, 18, 5, 1)]),
    );
    cfg.unicast_peers = vec![testdata::SRC4];
    let mut i = started(cfg);
    assert_eq!(i.checksum_mode(), ChecksumMode::Rfc);
    let rx = Received {
        src: c.src,
        dst: c.dst,
        ttl: 255,
        payload: c.payload,
    };
    i.receive(at(ms(100)), &rx);
    assert_eq!(i.checksum_mode(), ChecksumMode::MulticastPseudoHeader);
    assert_eq!(i.counters().anomalies(Anomaly::OldUnicastChecksum), 1);
}

#[test]
fn invalid_config_is_refused() {
    let mut c = config(Version::V3, 100);
    c.vrid = 0;
    assert_eq!(Instance::new(c).unwrap_err(), ConfigError::Vrid);
}

#[test]
fn state_names_are_keepalived_words() {
    let names: Vec<_> = [State::Init, State::Backup, State::Master, State::Fault]
        .into_iter()
        .map(State::name)
        .collect();
    assert_eq!(names, ["INIT", "BACKUP", "MASTER", "FAULT"]);
}
