//! Tracking: what moves an instance's priority or holds it in FAULT, as keepalived's
//! `track_interface`, `track_script` (`vrrp_script`), `track_file` and `track_process` do.
//!
//! Each tracker runs on its own task ([`link`], [`script`], [`file`], [`process`]) and reports
//! [`Update`]s; [`Tracking`] (sans-IO) keeps the latest status of each and turns changes into
//! the state machine's events: [`Event::InterfaceDown`] / [`Event::InterfaceUp`] for
//! unweighted interfaces, [`Event::TrackersFailing`] for unweighted scripts, files and
//! processes, and
//! [`Event::PriorityChanged`] with the sum of the weights that apply. The rules are
//! keepalived's (`keepalived/vrrp/vrrp_track.c` `initialise_interface_tracking_priorities`,
//! `process_script_update_priority`, `initialise_track_script_state`,
//! `initialise_vrrp_file_tracking_priorities`).

pub mod file;
pub mod link;
pub mod process;
pub mod script;

use std::collections::BTreeSet;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::vrrp::fsm::Event;
use crate::vrrp::net::vip::NetlinkError;

pub use file::TrackFile;
pub use process::TrackProcess;
pub use script::TrackScript;

/// `track_interface NAME [weight W]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInterface {
    pub name: String,
    /// `None`: FAULT while the interface is down. `Some(w)`, -253..=253: a positive weight is
    /// added while it is up, a negative one while it is down.
    pub weight: Option<i32>,
}

/// Everything one instance tracks besides its own interface (always tracked, unweighted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Track {
    pub interfaces: Vec<TrackInterface>,
    pub scripts: Vec<TrackScript>,
    pub files: Vec<TrackFile>,
    pub processes: Vec<TrackProcess>,
    /// `dont_track_primary`: the instance's own interface going down is not a FAULT.
    pub dont_track_primary: bool,
}

impl Track {
    /// keepalived (`vrrp.c`, "not running floating priorities on any VRRP instance" of a
    /// sync group unless `sync_group_tracking_weight`): every weight becomes 0, so a failing
    /// tracker puts the instance in FAULT instead of moving its priority.
    pub fn ignore_weights(&mut self) {
        for i in &mut self.interfaces {
            i.weight = None;
        }
        for s in &mut self.scripts {
            s.weight = 0;
        }
        for f in &mut self.files {
            f.weight = 0;
        }
        for p in &mut self.processes {
            p.weight = 0;
        }
    }
}

/// A tracker's report; `index` is its place in [`Tracking`]'s lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    Link {
        index: usize,
        ifindex: u32,
        up: bool,
    },
    Script {
        index: usize,
        ok: bool,
    },
    File {
        index: usize,
        value: i64,
    },
    /// Whether a `vrrp_track_process`'s quorum holds.
    Process {
        index: usize,
        ok: bool,
    },
}

/// An interface's (ifindex, up).
type LinkState = (u32, bool);

/// The latest status of every tracker, and what the state machine was last told.
#[derive(Clone, Debug, Default)]
pub struct Tracking {
    /// Weight and, once known, (ifindex, up). The instance's own interface comes first.
    interfaces: Vec<(Option<i32>, Option<LinkState>)>,
    /// Weight and, once the script has a result (or `init_fail`), whether it succeeds.
    scripts: Vec<(i32, Option<bool>)>,
    /// Weight and, once read, the value.
    files: Vec<(i32, Option<i64>)>,
    /// The tracked processes and, once scanned, whether their quorum holds.
    processes: Vec<(TrackProcess, Option<bool>)>,
    /// Whether the own interface (index 0) puts the instance in FAULT while down.
    own_tracked: bool,
    told_weight: i32,
    told_failing: bool,
    told_down: BTreeSet<u32>,
}

impl Tracking {
    /// Interfaces are indexed with `own` (unweighted) at 0, then `track.interfaces`; scripts
    /// and files in their order.
    #[must_use]
    pub fn new(track: &Track) -> Self {
        Self {
            interfaces: std::iter::once(None)
                .chain(track.interfaces.iter().map(|t| t.weight))
                .map(|w| (w, None))
                .collect(),
            scripts: track
                .scripts
                .iter()
                // keepalived: init_fail scripts start failed; others have no status yet.
                .map(|s| (s.weight, s.init_fail.then_some(false)))
                .collect(),
            files: track.files.iter().map(|f| (f.weight, None)).collect(),
            processes: track.processes.iter().map(|p| (p.clone(), None)).collect(),
            own_tracked: !track.dont_track_primary,
            ..Self::default()
        }
    }

    pub fn apply(&mut self, update: &Update) {
        match *update {
            Update::Link { index, ifindex, up } => {
                if let Some(slot) = self.interfaces.get_mut(index) {
                    slot.1 = Some((ifindex, up));
                }
            }
            Update::Script { index, ok } => {
                if let Some(slot) = self.scripts.get_mut(index) {
                    slot.1 = Some(ok);
                }
            }
            Update::File { index, value } => {
                if let Some(slot) = self.files.get_mut(index) {
                    slot.1 = Some(value);
                }
            }
            Update::Process { index, ok } => {
                if let Some(slot) = self.processes.get_mut(index) {
                    slot.1 = Some(ok);
                }
            }
        }
    }

    /// Whether the instance may start: every interface and file has been read, and every
    /// unweighted script has a result (keepalived holds an instance in INIT until then,
    /// `num_script_init`).
    #[must_use]
    pub fn ready(&self) -> bool {
        self.interfaces.iter().all(|(_, s)| s.is_some())
            && self.files.iter().all(|(_, v)| v.is_some())
            && self.processes.iter().all(|(_, q)| q.is_some())
            && self.scripts.iter().all(|(w, s)| *w != 0 || s.is_some())
    }

    /// The sum of the weights that apply now.
    #[must_use]
    pub fn weight(&self) -> i32 {
        let interfaces = self.interfaces.iter().filter_map(|(w, s)| match (*w, *s) {
            (Some(w), Some((_, up))) if (w > 0) == up => Some(w),
            _ => None,
        });
        // A weighted script without a result yet counts neither way.
        let scripts = self.scripts.iter().filter_map(|(w, s)| match (*w, *s) {
            (w, Some(ok)) if w != 0 && (w > 0) == ok => Some(w),
            _ => None,
        });
        let files = self.files.iter().filter_map(|(w, v)| match (*w, *v) {
            (w, Some(v)) if w != 0 => file::contribution(v, w),
            _ => None,
        });
        let processes = self
            .processes
            .iter()
            .filter_map(|(p, q)| q.and_then(|q| p.contribution(q)));
        interfaces
            .chain(scripts)
            .chain(files)
            .chain(processes)
            .fold(0i32, i32::saturating_add)
    }

    /// Whether an unweighted script fails or a file is at its FAULT value.
    #[must_use]
    pub fn failing(&self) -> bool {
        self.scripts
            .iter()
            .any(|(w, s)| *w == 0 && *s == Some(false))
            || self
                .files
                .iter()
                .any(|(w, v)| v.is_some_and(|v| file::contribution(v, *w).is_none()))
            || self
                .processes
                .iter()
                .any(|(p, q)| q.is_some_and(|q| p.contribution(q).is_none()))
    }

    /// The unweighted interfaces that are down, by ifindex.
    #[must_use]
    pub fn down(&self) -> BTreeSet<u32> {
        self.interfaces
            .iter()
            .enumerate()
            .filter(|(i, _)| *i > 0 || self.own_tracked)
            .filter_map(|(_, (w, s))| match (*w, *s) {
                (None, Some((ifindex, false))) => Some(ifindex),
                _ => None,
            })
            .collect()
    }

    /// The events that bring the state machine up to date, and remembers them as told. The
    /// priority goes first, so that an instance leaving FAULT starts with the right one.
    pub fn events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let weight = self.weight();
        if weight != self.told_weight {
            self.told_weight = weight;
            events.push(Event::PriorityChanged { weight });
        }
        let down = self.down();
        events.extend(
            down.difference(&self.told_down)
                .map(|&ifindex| Event::InterfaceDown { ifindex }),
        );
        let failing = self.failing();
        if failing != self.told_failing {
            self.told_failing = failing;
            events.push(Event::TrackersFailing { failing });
        }
        events.extend(
            self.told_down
                .difference(&down)
                .map(|&ifindex| Event::InterfaceUp { ifindex }),
        );
        self.told_down = down;
        events
    }
}

/// The tracker tasks of one instance; dropping this stops them (a running script is
/// killed).
#[derive(Debug, Default)]
pub struct Trackers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Trackers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Reads the interfaces' current states into `tracking` and starts every tracker, each
/// reporting on `updates`. `own` is the instance's interface.
///
/// # Errors
/// Netlink cannot be opened, or a tracked interface does not exist.
pub async fn start(
    track: &Track,
    own: &str,
    tracking: &mut Tracking,
    updates: &UnboundedSender<Update>,
) -> Result<Trackers, NetlinkError> {
    let watch = link::LinkWatch::open()?;
    let names: Vec<String> = std::iter::once(own.to_owned())
        .chain(track.interfaces.iter().map(|t| t.name.clone()))
        .collect();
    let handle = watch.handle();
    let mut states = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let (ifindex, up) = link::state(&handle, name).await?;
        tracking.apply(&Update::Link { index, ifindex, up });
        states.push(up);
    }
    let mut tasks = vec![tokio::spawn(watch.run(names, states, updates.clone()))];
    for (index, s) in track.scripts.iter().enumerate() {
        tasks.push(tokio::spawn(script::run(index, s.clone(), updates.clone())));
    }
    for (index, f) in track.files.iter().enumerate() {
        tasks.push(tokio::spawn(file::run(index, f.clone(), updates.clone())));
    }
    for (index, p) in track.processes.iter().enumerate() {
        tasks.push(tokio::spawn(process::run(
            index,
            p.clone(),
            updates.clone(),
        )));
    }
    Ok(Trackers { tasks })
}

#[cfg(test)]
#[path = "tracking_tests.rs"]
mod tests;
