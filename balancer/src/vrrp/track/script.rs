//! `vrrp_script`: a command run every `interval`, whose exit status after `rise` successes or
//! `fall` failures changes the priority or puts the instance in FAULT. The counting is
//! keepalived's (`keepalived/vrrp/vrrp_scheduler.c` `vrrp_init_script`,
//! `vrrp_script_child_thread`).

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::MissedTickBehavior;

use crate::notify::Script;
use crate::vrrp::track::Update;

/// One tracked script (keepalived's `vrrp_script` block plus the instance's `track_script`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackScript {
    pub script: Script,
    /// `interval`, default 1 s.
    pub interval: Duration,
    /// `timeout`; `None` is keepalived's default, the interval.
    pub timeout: Option<Duration>,
    /// `weight`, -253..=253, default 0: 0 means FAULT while failing; above 0 it is added while
    /// the script succeeds, below 0 while it fails.
    pub weight: i32,
    /// `rise`, default 1.
    pub rise: u32,
    /// `fall`, default 1.
    pub fall: u32,
    /// `init_fail`: failed until it has succeeded `rise` times.
    pub init_fail: bool,
}

impl TrackScript {
    /// keepalived's defaults for the rest.
    #[must_use]
    pub fn new(script: Script) -> Self {
        Self {
            script,
            interval: Duration::from_secs(1),
            timeout: None,
            weight: 0,
            rise: 1,
            fall: 1,
            init_fail: false,
        }
    }
}

/// keepalived's `vscript->result`: 0 ..= rise + fall - 1; the script counts as succeeding
/// from `rise` up. It starts at `rise - 1` ("one success is enough"), or 0 with `init_fail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    rise: u32,
    fall: u32,
    result: u32,
    /// No result yet (and not `init_fail`): the first one is always reported.
    init: bool,
}

impl Counter {
    /// `rise` and `fall` below 1 count as 1.
    #[must_use]
    pub fn new(rise: u32, fall: u32, init_fail: bool) -> Self {
        let rise = rise.max(1);
        Self {
            rise,
            fall: fall.max(1),
            result: if init_fail { 0 } else { rise - 1 },
            init: !init_fail,
        }
    }

    /// Counts one run; `Some(ok)` when the script's status is (re)reported.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        let first = std::mem::replace(&mut self.init, false);
        let full = self.rise + self.fall - 1;
        if success {
            if self.result + 1 < self.rise {
                self.result += 1;
                None
            } else if self.result != full {
                let became_ok = self.result < self.rise;
                self.result = full;
                became_ok.then_some(true)
            } else {
                None
            }
        } else if self.result > self.rise {
            self.result -= 1;
            None
        } else {
            let became_failed = self.result == self.rise || first;
            self.result = 0;
            became_failed.then_some(false)
        }
    }
}

/// Runs `track` every interval until `updates` closes, sending [`Update::Script`] whenever
/// its status is reported. A run that overruns the interval delays the next (keepalived skips
/// a tick while the script still runs).
pub async fn run(index: usize, track: TrackScript, updates: UnboundedSender<Update>) {
    let mut counter = Counter::new(track.rise, track.fall, track.init_fail);
    let timeout = track.timeout.unwrap_or(track.interval);
    let mut ticks = tokio::time::interval(track.interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let outcome = track.script.run(&[], timeout).await;
        if let Some(ok) = counter.record(outcome.success()) {
            tracing::info!(
                command = track.script.command,
                ok,
                ?outcome,
                "VRRP script status"
            );
            if updates.send(Update::Script { index, ok }).is_err() {
                return;
            }
        }
        if updates.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(c: &mut Counter, runs: &str) -> Vec<Option<bool>> {
        runs.chars().map(|r| c.record(r == '+')).collect()
    }

    #[test]
    fn the_first_result_is_reported_at_once() {
        let mut c = Counter::new(3, 2, false);
        assert_eq!(feed(&mut c, "+"), [Some(true)]);
        let mut c = Counter::new(3, 2, false);
        assert_eq!(feed(&mut c, "-"), [Some(false)]);
    }

    #[test]
    fn fall_failures_then_rise_successes() {
        let mut c = Counter::new(3, 2, false);
        assert_eq!(feed(&mut c, "+"), [Some(true)]);
        // One failure is absorbed, the second (fall = 2) reports.
        assert_eq!(feed(&mut c, "-+-"), [None, None, None]);
        assert_eq!(feed(&mut c, "-"), [Some(false)]);
        // Three successes (rise = 3) report; an interruption starts again.
        assert_eq!(feed(&mut c, "++-++"), [None, None, None, None, None]);
        assert_eq!(feed(&mut c, "+"), [Some(true)]);
        assert_eq!(feed(&mut c, "++"), [None, None]);
    }

    #[test]
    fn init_fail_needs_rise_successes_and_reports_no_first_failure() {
        let mut c = Counter::new(2, 1, true);
        assert_eq!(feed(&mut c, "-"), [None]);
        assert_eq!(feed(&mut c, "++"), [None, Some(true)]);
        assert_eq!(feed(&mut c, "-"), [Some(false)]);
    }

    #[test]
    fn rise_and_fall_of_one() {
        let mut c = Counter::new(1, 1, false);
        assert_eq!(
            feed(&mut c, "+-+-"),
            [Some(true), Some(false), Some(true), Some(false)]
        );
        assert_eq!(feed(&mut c, "--"), [None, None]);
        let mut zero = Counter::new(0, 0, false);
        assert_eq!(feed(&mut zero, "+-"), [Some(true), Some(false)]);
    }
}
