//! The VRRP state machine of RFC 3768 §6.4 and RFC 5798 / 9568 §6.4, with keepalived's
//! extensions (`state`, `nopreempt`, `preempt_delay`, gratuitous ARP timing, re-announcing to
//! a lower-priority master), sans-IO.
//!
//! The I/O task feeds it [`Event`]s with the current [`Timestamp`], carries out the returned
//! [`Action`]s in order, and calls [`Instance::handle`] with [`Event::TimerExpired`] once the
//! clock reaches [`Instance::next_deadline`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::vrrp::auth::{AUTH_DATA_LEN, AUTH_NONE};
use crate::vrrp::checksum::ChecksumMode;
use crate::vrrp::config::{Config, ConfigError, InitialState, UnicastChecksum};
use crate::vrrp::timing::{Timestamp, master_down_interval, skew_time};
use crate::vrrp::validate::{self, Advert, Anomaly, Counters, Received};
use crate::vrrp::wire::{Kind, Repr, Version};

/// Priority of the address owner (RFC 5798 §5.2.4).
pub const PRIORITY_OWNER: u8 = 255;
/// Priority a master advertises when it stops (RFC 5798 §5.2.4).
pub const PRIORITY_STOP: u8 = 0;

/// RFC 5798 §6.4 states, plus keepalived's FAULT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Initialize: not started, or stopped.
    Init,
    Backup,
    Master,
    /// A tracked interface is down: no adverts, no VIPs, until it comes back.
    Fault,
}

impl State {
    /// Stable name for logs, notifications and metrics (keepalived's words).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Init => "INIT",
            Self::Backup => "BACKUP",
            Self::Master => "MASTER",
            Self::Fault => "FAULT",
        }
    }
}

/// What happened, as the I/O task saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The instance starts (RFC 5798 §6.4.1).
    Startup,
    /// The instance stops (daemon shutdown or the instance removed by a reload).
    Shutdown,
    /// An advert that passed [`validate::check`]; [`Instance::receive`] does both steps.
    AdvertReceived(Advert),
    /// The clock reached [`Instance::next_deadline`].
    TimerExpired,
    /// The instance's interface or a `track_interface` without weight went down.
    InterfaceDown {
        ifindex: u32,
    },
    InterfaceUp {
        ifindex: u32,
    },
    /// Whether an unweighted tracker other than an interface (a `track_script` of weight 0,
    /// a `track_file` at -254 or below) is failing: keepalived's `VRRP_FAULT_FL_TRACKER`.
    TrackersFailing {
        failing: bool,
    },
    /// The sum of the weights of failing / succeeding trackers (`track_script`, weighted
    /// `track_interface`...) changed; the effective priority is the configured one plus this.
    PriorityChanged {
        weight: i32,
    },
    /// The instance's `vrrp_sync_group` goes MASTER: a backup member becomes master now,
    /// whatever its own timer says (keepalived `vrrp_sync_master`).
    SyncMaster,
    /// A master member of the group stepped down: this one does too (keepalived
    /// `vrrp_sync_backup`).
    SyncBackup,
    /// Whether another member of the group is in FAULT, which holds this one there too
    /// (keepalived `vrrp_sync_fault`, `num_member_fault`).
    SyncFault {
        failing: bool,
    },
}

/// What the I/O task must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority; [`Instance::advert`] builds it and
    /// [`Instance::checksum_mode`] says how to checksum it.
    SendAdvert { priority: u8 },
    /// Add the virtual addresses (and apply accept mode).
    AddVips,
    /// Remove the virtual addresses.
    DelVips,
    /// Send `repeat` gratuitous ARPs (IPv4) or unsolicited neighbour advertisements (IPv6)
    /// for every virtual address.
    SendGratuitous { repeat: u32 },
    /// Run notify scripts / write the FIFO for the new state; `Init` is keepalived's
    /// `notify_stop`.
    Notify { state: State },
    /// keepalived's `notify_master_rx_lower_pri`: a lower-priority router claims mastership.
    NotifyMasterRxLowerPriority { from: IpAddr },
}

/// Role changes and priority-0 adverts, as keepalived counts them (`become_master`,
/// `release_master`, `pri_zero_rcvd`, `pri_zero_sent` in its stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    pub become_master: u64,
    pub release_master: u64,
    pub priority_zero_received: u64,
    pub priority_zero_sent: u64,
}

/// Pending timers; `None` is stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Timers {
    /// RFC 5798 §6.2 `Adver_Timer` (master).
    advert: Option<Timestamp>,
    /// RFC 5798 §6.2 `Master_Down_Timer` (backup).
    master_down: Option<Timestamp>,
    /// keepalived `garp_master_delay`: the second burst after becoming master.
    garp_master: Option<Timestamp>,
    /// keepalived `garp_master_refresh`.
    garp_refresh: Option<Timestamp>,
    /// keepalived `garp_lower_prio_delay`.
    garp_lower_prio: Option<Timestamp>,
}

impl Timers {
    fn earliest(&self) -> Option<Timestamp> {
        [
            self.advert,
            self.master_down,
            self.garp_master,
            self.garp_refresh,
            self.garp_lower_prio,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// What a `vrrp_sync_group` member keeps besides its own state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Membership {
    /// See [`Event::SyncFault`].
    fault: bool,
    /// keepalived's `wantstate == MASTER` for a synced backup: its `Master_Down_Timer` fired,
    /// and it waits for the rest of the group to want the same.
    wants_master: bool,
}

/// One VRRP instance (one VRID on one interface and family).
#[derive(Clone, Debug)]
pub struct Instance {
    config: Config,
    state: State,
    priority: u8,
    /// RFC 5798 §6.1 `Master_Adver_Interval`: the master's interval as last heard (VRRPv3).
    master_adver_interval: Duration,
    timers: Timers,
    /// keepalived `preempt_time`: until when a lower-priority master is still tolerated.
    preempt_until: Option<Timestamp>,
    /// The current master as last heard, while backup.
    master: Option<(IpAddr, u8)>,
    interfaces_down: BTreeSet<u32>,
    /// See [`Event::TrackersFailing`].
    trackers_failing: bool,
    /// Set for a member of a `vrrp_sync_group`: it becomes master only when the group lets it.
    sync: Option<Membership>,
    /// Set once a unicast peer was heard using keepalived's old checksum.
    old_checksum_seen: bool,
    counters: Counters,
    transitions: Transitions,
}

impl Instance {
    /// # Errors
    /// When [`Config::validate`] fails.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            state: State::Init,
            priority: config.priority,
            master_adver_interval: config.advert_interval,
            timers: Timers::default(),
            preempt_until: None,
            master: None,
            interfaces_down: BTreeSet::new(),
            trackers_failing: false,
            sync: None,
            old_checksum_seen: false,
            counters: Counters::default(),
            transitions: Transitions::default(),
            config,
        })
    }

    /// Makes the instance a member of a `vrrp_sync_group`: from then on its own timers only
    /// make it *want* mastership ([`Instance::wants_master`]), and the group coordinator
    /// ([`crate::vrrp::sync`]) turns that into [`Event::SyncMaster`] once every member wants
    /// the same (keepalived `vrrp_sync_can_goto_master`: prefer backup, to avoid thrashing).
    pub fn join_sync_group(&mut self) {
        self.sync = Some(Membership::default());
    }

    /// Whether the instance is master or, as a synced backup, wants to be.
    #[must_use]
    pub fn wants_master(&self) -> bool {
        self.state == State::Master
            || (self.state == State::Backup && self.sync.is_some_and(|s| s.wants_master))
    }

    /// Whether the instance's own trackers (not its sync group) hold it in FAULT.
    #[must_use]
    pub fn own_fault(&self) -> bool {
        !self.interfaces_down.is_empty() || self.trackers_failing
    }

    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// The priority in our adverts: configured plus tracker weights.
    #[must_use]
    pub fn priority(&self) -> u8 {
        self.priority
    }

    #[must_use]
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// The master we last accepted an advert from, while backup: (address, priority).
    #[must_use]
    pub fn master(&self) -> Option<(IpAddr, u8)> {
        self.master
    }

    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    #[must_use]
    pub fn transitions(&self) -> Transitions {
        self.transitions
    }

    /// When the I/O task must call [`Instance::handle`] with [`Event::TimerExpired`].
    #[must_use]
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.timers.earliest()
    }

    /// How our adverts are checksummed (keepalived's VRRPv3 IPv4 variants).
    #[must_use]
    pub fn checksum_mode(&self) -> ChecksumMode {
        if self.config.v3_checksum_as_v2 {
            ChecksumMode::NoPseudoHeader
        } else if self.config.unicast_checksum == UnicastChecksum::Old || self.old_checksum_seen {
            ChecksumMode::MulticastPseudoHeader
        } else {
            ChecksumMode::Rfc
        }
    }

    /// The advert to send for [`Action::SendAdvert`].
    #[must_use]
    pub fn advert(&self, priority: u8) -> Repr {
        let interval = self.config.advert_interval;
        let kind = match self.config.version {
            Version::V2 => {
                let (auth_type, auth_data) = match &self.config.auth {
                    Some(auth) => (auth.auth_type(), auth.auth_data()),
                    None => (AUTH_NONE, [0; AUTH_DATA_LEN]),
                };
                Kind::V2 {
                    auth_type,
                    auth_data,
                    // Config::validate keeps it within 1..=255 s.
                    advert_int_secs: u8::try_from(interval.as_secs()).unwrap_or(u8::MAX),
                }
            }
            Version::V3 => Kind::V3 {
                // Config::validate keeps it within 1..=4095 cs.
                max_advert_int_cs: u16::try_from(interval.as_millis() / 10).unwrap_or(u16::MAX),
            },
        };
        Repr {
            vrid: self.config.vrid,
            priority,
            kind,
            addresses: self.config.vips.clone(),
        }
    }

    /// Validates a received advert, counts the outcome, and handles it if it passed.
    /// Counts an advert the transport refused before it reached the checks (AH authentication).
    pub fn reject(&mut self, reason: crate::vrrp::validate::Discard) {
        self.counters.record(&Err(reason));
    }

    pub fn receive(&mut self, now: Timestamp, rx: &Received<'_>) -> Vec<Action> {
        let outcome = validate::check(&self.config, self.priority, self.checksum_mode(), rx);
        self.counters.record(&outcome);
        match outcome {
            Ok(advert) => {
                if advert.anomalies.contains(&Anomaly::OldUnicastChecksum) {
                    self.old_checksum_seen = true;
                }
                self.handle(now, Event::AdvertReceived(advert))
            }
            Err(_) => Vec::new(),
        }
    }

    pub fn handle(&mut self, now: Timestamp, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Startup => self.startup(now, &mut actions),
            Event::Shutdown => self.shutdown(&mut actions),
            Event::AdvertReceived(advert) => match self.state {
                State::Backup => self.backup_rx(now, &advert),
                State::Master => self.master_rx(now, &advert, &mut actions),
                // Nothing listens in these states (RFC 5798 §6.4.1; keepalived's FAULT).
                State::Init | State::Fault => {}
            },
            Event::TimerExpired => self.timers_expired(now, &mut actions),
            Event::InterfaceDown { ifindex } => self.interface_down(ifindex, &mut actions),
            Event::InterfaceUp { ifindex } => self.interface_up(now, ifindex, &mut actions),
            Event::TrackersFailing { failing } => self.trackers_failing(now, failing, &mut actions),
            Event::PriorityChanged { weight } => self.priority_changed(now, weight),
            Event::SyncMaster => {
                if self.state == State::Backup {
                    self.become_master(now, &mut actions);
                }
            }
            Event::SyncBackup => self.sync_backup(now, &mut actions),
            Event::SyncFault { failing } => self.sync_fault(now, failing, &mut actions),
        }
        actions
    }

    fn master_down_interval(&self) -> Duration {
        let interval = match self.config.version {
            // RFC 3768 §6.1: VRRPv2 uses its own Advertisement_Interval.
            Version::V2 => self.config.advert_interval,
            // RFC 5798 §6.1: VRRPv3 uses Master_Adver_Interval.
            Version::V3 => self.master_adver_interval,
        };
        master_down_interval(self.config.version, self.priority, interval)
    }

    fn skew_time(&self) -> Duration {
        skew_time(
            self.config.version,
            self.priority,
            self.master_adver_interval,
        )
    }

    fn startup(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        if self.state != State::Init {
            return;
        }
        if self.faulted() {
            self.state = State::Fault;
            actions.push(Action::Notify {
                state: State::Fault,
            });
        } else {
            self.enter_initial(now, actions);
        }
    }

    /// Leaving Initialize (at startup, or when a fault clears).
    fn enter_initial(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        // RFC 5798 §6.4.1: Master_Adver_Interval starts as our own Advertisement_Interval.
        self.master_adver_interval = self.config.advert_interval;
        self.master = None;
        match self.config.initial_state() {
            // RFC 5798 §6.4.1: the address owner becomes master at once.
            // keepalived holds a synced owner in backup for one interval like `state MASTER`
            // (`vrrp_init_state`), so the group decides.
            InitialState::Master
                if self.config.priority == PRIORITY_OWNER && self.sync.is_none() =>
            {
                self.become_master(now, actions);
            }
            // keepalived `state MASTER` below 255: wait one interval (plus the smallest skew)
            // for a live master instead of three, then take over.
            InitialState::Master => {
                let wait = self.master_adver_interval
                    + skew_time(
                        self.config.version,
                        PRIORITY_OWNER,
                        self.master_adver_interval,
                    );
                self.enter_backup(now + wait, actions);
            }
            // RFC 5798 §6.4.1: backup with Master_Down_Timer = Master_Down_Interval.
            InitialState::Backup => {
                let deadline = now + self.master_down_interval();
                self.enter_backup(deadline, actions);
            }
        }
    }

    fn enter_backup(&mut self, master_down: Timestamp, actions: &mut Vec<Action>) {
        self.state = State::Backup;
        self.set_wants_master(false);
        self.timers = Timers {
            master_down: Some(master_down),
            ..Timers::default()
        };
        // keepalived restarts preempt_delay on every entry to backup.
        self.preempt_until = None;
        actions.push(Action::Notify {
            state: State::Backup,
        });
    }

    /// `Master_Down_Timer` fired. A synced instance asks its group instead (keepalived
    /// `vrrp_state_goto_master` / `vrrp_sync_can_goto_master`): it stays backup, wanting
    /// mastership, and re-arms the timer while the group decides.
    fn goto_master(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        if self.sync.is_some() {
            self.set_wants_master(true);
            self.timers.master_down = Some(now + self.master_down_interval());
        } else {
            self.become_master(now, actions);
        }
    }

    fn become_master(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let garp = self.config.garp;
        self.set_wants_master(false);
        self.transitions.become_master += 1;
        self.state = State::Master;
        self.master = None;
        self.preempt_until = None;
        self.master_adver_interval = self.config.advert_interval;
        // RFC 5798 §6.4.2 (Master_Down_Timer fires): send an advert first, so the old master
        // (if any) lets go before our gratuitous ARPs, as keepalived orders it.
        actions.push(Action::SendAdvert {
            priority: self.priority,
        });
        actions.push(Action::AddVips);
        // RFC 5798 §6.4.2: gratuitous ARP / unsolicited NA for each address; keepalived sends
        // garp_master_repeat of them.
        if garp.master_repeat > 0 {
            actions.push(Action::SendGratuitous {
                repeat: garp.master_repeat,
            });
        }
        actions.push(Action::Notify {
            state: State::Master,
        });
        self.timers = Timers {
            // RFC 5798 §6.4.2: Adver_Timer = Advertisement_Interval.
            advert: Some(now + self.config.advert_interval),
            // keepalived: a second burst garp_master_delay later.
            garp_master: (!garp.master_delay.is_zero() && garp.master_repeat > 0)
                .then(|| now + garp.master_delay),
            // keepalived: refreshes start garp_master_delay + garp_master_refresh later.
            garp_refresh: (!garp.master_refresh.is_zero())
                .then(|| now + garp.master_delay + garp.master_refresh),
            ..Timers::default()
        };
    }

    /// Master to backup or fault: the addresses go.
    fn leave_master(&mut self, actions: &mut Vec<Action>) {
        self.transitions.release_master += 1;
        actions.push(Action::DelVips);
        self.timers = Timers::default();
    }

    fn shutdown(&mut self, actions: &mut Vec<Action>) {
        match self.state {
            State::Init => return,
            // RFC 5798 §6.4.3 (Shutdown): cancel Adver_Timer, send priority 0, go to Initialize.
            State::Master => {
                actions.push(Action::SendAdvert {
                    priority: PRIORITY_STOP,
                });
                self.transitions.priority_zero_sent += 1;
                self.leave_master(actions);
            }
            // RFC 5798 §6.4.2 (Shutdown): cancel Master_Down_Timer, go to Initialize.
            State::Backup | State::Fault => {}
        }
        self.timers = Timers::default();
        self.state = State::Init;
        self.master = None;
        actions.push(Action::Notify { state: State::Init });
    }

    fn backup_rx(&mut self, now: Timestamp, advert: &Advert) {
        // RFC 5798 §6.4.2 / RFC 3768 §6.4.2: the master is leaving; take over after Skew_Time
        // only, so the highest-priority backup wins the race.
        if advert.priority == PRIORITY_STOP {
            self.transitions.priority_zero_received += 1;
            self.timers.master_down = Some(now + self.skew_time());
            return;
        }
        let delay = self.config.preempt_delay;
        // keepalived preempt_delay: a lower-priority master is tolerated until the delay that
        // its first advert started has run out.
        let delaying = !delay.is_zero() && self.preempt_until.is_none_or(|until| until > now);
        // RFC 5798 §6.4.2: accept if Preempt_Mode is False, or the priority is >= ours.
        if !self.config.preempt || advert.priority >= self.priority || delaying {
            if self.config.version == Version::V3 {
                // RFC 5798 §6.4.2: learn Master_Adver_Interval, recompute the interval.
                self.master_adver_interval = advert.advert_interval;
            }
            // RFC 5798 §6.4.2: reset Master_Down_Timer to Master_Down_Interval.
            self.timers.master_down = Some(now + self.master_down_interval());
            // keepalived: a synced backup held there by its group wanted mastership; a live
            // master it accepts means it wants backup again.
            self.set_wants_master(false);
            self.master = Some((advert.src, advert.priority));
            if !delay.is_zero() {
                if advert.priority >= self.priority {
                    self.preempt_until = None;
                } else if self.preempt_until.is_none() {
                    self.preempt_until = Some(now + delay);
                }
            }
        }
        // RFC 5798 §6.4.2: otherwise discard; the Master_Down_Timer keeps running, so we
        // preempt the lower-priority master when it fires.
    }

    fn master_rx(&mut self, now: Timestamp, advert: &Advert, actions: &mut Vec<Action>) {
        // RFC 5798 §6.4.3: another router that believed it was master is stopping; advertise
        // and reset Adver_Timer at once, so no backup takes over after its Skew_Time.
        if advert.priority == PRIORITY_STOP {
            self.transitions.priority_zero_received += 1;
            actions.push(Action::SendAdvert {
                priority: self.priority,
            });
            self.timers.advert = Some(now + self.config.advert_interval);
            return;
        }
        let ours = self.config.primary_address;
        // RFC 5798 §6.4.3: higher priority, or equal priority and a higher primary address,
        // wins.
        let higher = advert.priority > self.priority
            || (advert.priority == self.priority && advert.src > ours);
        if higher {
            // keepalived `higher_prio_send_advert`: one last advert, so a master with
            // garp_lower_prio_repeat re-announces the addresses we held.
            if self.config.higher_prio_send_advert {
                actions.push(Action::SendAdvert {
                    priority: self.priority,
                });
            }
            // RFC 5798 §6.4.3: cancel Adver_Timer, learn Master_Adver_Interval, set
            // Master_Down_Timer, go to Backup.
            self.leave_master(actions);
            if self.config.version == Version::V3 {
                self.master_adver_interval = advert.advert_interval;
            }
            let master_down = now + self.master_down_interval();
            self.enter_backup(master_down, actions);
            self.master = Some((advert.src, advert.priority));
            return;
        }
        if advert.src == ours {
            // Our own address at our priority: a looped-back advert or an address clash;
            // keepalived only logs it.
            return;
        }
        // A lower-priority router thinks it is master. RFC 5798 §6.4.3 says discard;
        // keepalived (unless lower_prio_no_advert) answers with an advert so it steps down,
        // and re-announces the addresses that router may have taken.
        if !self.config.lower_prio_no_advert {
            actions.push(Action::SendAdvert {
                priority: self.priority,
            });
        }
        let garp = self.config.garp;
        if garp.lower_prio_repeat > 0 {
            actions.push(Action::SendGratuitous {
                repeat: garp.lower_prio_repeat,
            });
            if !garp.lower_prio_delay.is_zero() {
                self.timers.garp_lower_prio = Some(now + garp.lower_prio_delay);
            }
        }
        actions.push(Action::NotifyMasterRxLowerPriority { from: advert.src });
    }

    fn timers_expired(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let due = |t: Option<Timestamp>| t.is_some_and(|t| t <= now);
        // RFC 5798 §6.4.2: Master_Down_Timer fired, become master.
        if self.state == State::Backup && due(self.timers.master_down) {
            self.goto_master(now, actions);
        }
        if self.state != State::Master {
            return;
        }
        let garp = self.config.garp;
        // RFC 5798 §6.4.3: Adver_Timer fired: advertise, reset the timer.
        if due(self.timers.advert) {
            actions.push(Action::SendAdvert {
                priority: self.priority,
            });
            self.timers.advert = Some(now + self.config.advert_interval);
        }
        if due(self.timers.garp_master) {
            self.timers.garp_master = None;
            actions.push(Action::SendGratuitous {
                repeat: garp.master_repeat,
            });
        }
        if due(self.timers.garp_lower_prio) {
            self.timers.garp_lower_prio = None;
            actions.push(Action::SendGratuitous {
                repeat: garp.lower_prio_repeat,
            });
        }
        if due(self.timers.garp_refresh) {
            self.timers.garp_refresh = Some(now + garp.master_refresh);
            actions.push(Action::SendGratuitous {
                repeat: garp.master_refresh_repeat,
            });
        }
    }

    /// Whether anything holds the instance in FAULT.
    fn faulted(&self) -> bool {
        self.own_fault() || self.sync.is_some_and(|s| s.fault)
    }

    fn set_wants_master(&mut self, wants: bool) {
        if let Some(sync) = &mut self.sync {
            sync.wants_master = wants;
        }
    }

    fn interface_down(&mut self, ifindex: u32, actions: &mut Vec<Action>) {
        let first = !self.faulted();
        self.interfaces_down.insert(ifindex);
        if first {
            self.enter_fault(actions);
        }
    }

    fn trackers_failing(&mut self, now: Timestamp, failing: bool, actions: &mut Vec<Action>) {
        if failing == self.trackers_failing {
            return;
        }
        if failing {
            let first = !self.faulted();
            self.trackers_failing = true;
            if first {
                self.enter_fault(actions);
            }
        } else {
            self.trackers_failing = false;
            self.leave_fault(now, actions);
        }
    }

    fn enter_fault(&mut self, actions: &mut Vec<Action>) {
        match self.state {
            // Startup will go straight to FAULT.
            State::Init | State::Fault => return,
            // keepalived: a master going to FAULT still says priority 0, so a backup takes over
            // after Skew_Time instead of Master_Down_Interval.
            State::Master => {
                actions.push(Action::SendAdvert {
                    priority: PRIORITY_STOP,
                });
                self.transitions.priority_zero_sent += 1;
                self.leave_master(actions);
            }
            State::Backup => {}
        }
        self.timers = Timers::default();
        self.state = State::Fault;
        self.master = None;
        self.set_wants_master(false);
        actions.push(Action::Notify {
            state: State::Fault,
        });
    }

    fn interface_up(&mut self, now: Timestamp, ifindex: u32, actions: &mut Vec<Action>) {
        if self.interfaces_down.remove(&ifindex) {
            self.leave_fault(now, actions);
        }
    }

    fn leave_fault(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        if self.faulted() {
            return;
        }
        if self.state == State::Fault {
            // Leaving FAULT is a fresh start (RFC 5798 §6.4.1): the owner takes over at once,
            // others listen first.
            self.enter_initial(now, actions);
        }
    }

    /// keepalived `vrrp_sync_backup`: a master member steps down without a priority-0 advert
    /// (`vrrp_state_leave_master` with `wantstate` BACKUP). Members the group held in FAULT
    /// come back with [`Event::SyncFault`] instead.
    fn sync_backup(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        if self.state == State::Master {
            self.leave_master(actions);
            let master_down = now + self.master_down_interval();
            self.enter_backup(master_down, actions);
        }
    }

    /// keepalived `vrrp_sync_fault`: another member's FAULT takes this one there too (a
    /// master says priority 0 first, `vrrp_state_leave_master` with `wantstate` FAULT); the
    /// group leaving FAULT lets it start again.
    fn sync_fault(&mut self, now: Timestamp, failing: bool, actions: &mut Vec<Action>) {
        let Some(sync) = self.sync else {
            return;
        };
        if failing == sync.fault {
            return;
        }
        let first = !self.faulted();
        self.sync = Some(Membership {
            fault: failing,
            ..sync
        });
        if !failing {
            self.leave_fault(now, actions);
        } else if first {
            self.enter_fault(actions);
        }
    }

    fn priority_changed(&mut self, now: Timestamp, weight: i32) {
        // keepalived: an address owner's priority never changes, and trackers can neither
        // make a router the owner nor take it to 0.
        if self.config.priority == PRIORITY_OWNER {
            return;
        }
        let total = i32::from(self.config.priority).saturating_add(weight);
        let new = u8::try_from(total.clamp(1, 254)).unwrap_or(1);
        if new == self.priority {
            return;
        }
        let before = self.master_down_interval();
        self.priority = new;
        // keepalived: a backup's pending Master_Down_Timer moves by the change in skew.
        if self.state == State::Backup
            && let Some(deadline) = self.timers.master_down
        {
            let after = self.master_down_interval();
            let moved = match after.checked_sub(before) {
                Some(longer) => deadline + longer,
                None => deadline.saturating_sub(before.saturating_sub(after)),
            };
            self.timers.master_down = Some(moved.max(now));
        }
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;
