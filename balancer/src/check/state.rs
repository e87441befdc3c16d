//! One checker's state between attempts, as keepalived's epilogues keep it
//! (`keepalived/check/check_tcp.c` `tcp_epilog`, the same rule in `check_http.c` and
//! `check_misc.c` `misc_check_child_thread`; `check_api.c` `queue_checker` for the defaults):
//!
//! - a checker starts up (`is_up = true`) unless `alpha` is set, with its retries already
//!   spent, so that a failure before the first pass counts at once (`check_data.c`
//!   `check_check_daemon_data`: "for non alpha mode, one failure is enough initially");
//! - a pass resets the retry count and, if the checker was down or has never run, brings it up;
//! - a failure while the checker is up (or before its first result) is retried `retry` times,
//!   `delay_before_retry` apart, and only then takes it down;
//! - a failure while it is already down changes nothing and waits a full `delay_loop`.

use std::time::Duration;

use crate::check::{Timing, Verdict};

/// A change of the checker's state or of its dynamic weight, for the runner to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Up { weight: Option<u32> },
    Down { reason: String },
}

#[derive(Clone, Debug)]
pub struct CheckerState {
    timing: Timing,
    is_up: bool,
    has_run: bool,
    retries: u32,
    /// The last dynamic weight reported, so that a new one is a change even while up.
    weight: Option<u32>,
    /// Passes in a row while down, towards `rise`.
    passes: u32,
}

impl CheckerState {
    #[must_use]
    pub fn new(timing: Timing, alpha: bool) -> Self {
        Self {
            timing,
            is_up: !alpha,
            has_run: false,
            retries: timing.retry,
            weight: None,
            passes: 0,
        }
    }

    /// A checker that takes over from one of the same real and configuration (a reload):
    /// it continues from that one's verdict instead of starting afresh.
    #[must_use]
    pub fn resume(timing: Timing, up: bool, weight: Option<u32>) -> Self {
        Self {
            timing,
            is_up: up,
            has_run: true,
            retries: 0,
            weight: if up { weight } else { None },
            passes: 0,
        }
    }

    #[must_use]
    pub fn is_up(&self) -> bool {
        self.is_up
    }

    /// Takes one attempt's verdict: what changed, and how long until the next attempt.
    pub fn observe(&mut self, verdict: Verdict) -> (Option<Change>, Duration) {
        let first = !self.has_run;
        match verdict {
            Verdict::Up { weight } => {
                self.retries = 0;
                // `rise`: a down checker comes up only after enough passes in a row.
                if !self.is_up {
                    self.passes += 1;
                    if self.passes < self.timing.rise {
                        self.has_run = true;
                        return (None, self.timing.delay_loop);
                    }
                }
                self.passes = 0;
                self.has_run = true;
                let change = (!self.is_up || first || weight != self.weight)
                    .then_some(Change::Up { weight });
                self.is_up = true;
                self.weight = weight;
                (change, self.timing.delay_loop)
            }
            Verdict::Down { reason } => {
                self.passes = 0;
                if (self.is_up || first) && self.retries >= self.timing.retry {
                    self.retries = 0;
                    self.has_run = true;
                    self.is_up = false;
                    self.weight = None;
                    (Some(Change::Down { reason }), self.timing.delay_loop)
                } else if self.is_up {
                    // Not yet a failure: keepalived retries sooner.
                    self.retries += 1;
                    (None, self.timing.delay_before_retry)
                } else {
                    // Already down: nothing to retry.
                    (None, self.timing.delay_loop)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        delay_loop: Duration::from_secs(10),
        retry: 2,
        delay_before_retry: Duration::from_secs(1),
        warmup: Duration::ZERO,
        rise: 1,
    };

    fn down() -> Verdict {
        Verdict::down("refused")
    }

    #[test]
    fn failures_are_retried_before_the_checker_goes_down() {
        let mut s = CheckerState::new(TIMING, false);
        assert_eq!(
            s.observe(Verdict::UP),
            (Some(Change::Up { weight: None }), TIMING.delay_loop)
        );
        assert_eq!(s.observe(down()), (None, TIMING.delay_before_retry));
        assert_eq!(s.observe(down()), (None, TIMING.delay_before_retry));
        let (change, delay) = s.observe(down());
        assert_eq!(
            change,
            Some(Change::Down {
                reason: "refused".into()
            })
        );
        assert_eq!(delay, TIMING.delay_loop);
        // Down: further failures wait a full loop and change nothing.
        assert_eq!(s.observe(down()), (None, TIMING.delay_loop));
        assert_eq!(
            s.observe(Verdict::UP),
            (Some(Change::Up { weight: None }), TIMING.delay_loop)
        );
    }

    #[test]
    fn a_pass_between_failures_resets_the_retry_count() {
        let mut s = CheckerState::new(TIMING, false);
        let _ = s.observe(Verdict::UP);
        let _ = s.observe(down());
        let _ = s.observe(down());
        assert_eq!(s.observe(Verdict::UP), (None, TIMING.delay_loop));
        assert_eq!(s.observe(down()).0, None);
        assert_eq!(s.observe(down()).0, None);
        assert!(s.is_up());
    }

    #[test]
    fn a_failure_before_the_first_pass_is_not_retried() {
        for alpha in [false, true] {
            let mut s = CheckerState::new(TIMING, alpha);
            assert_eq!(s.is_up(), !alpha);
            let (change, delay) = s.observe(down());
            assert!(matches!(change, Some(Change::Down { .. })), "alpha {alpha}");
            assert_eq!(delay, TIMING.delay_loop);
            assert_eq!(s.observe(down()), (None, TIMING.delay_loop));
            assert_eq!(s.observe(Verdict::UP).0, Some(Change::Up { weight: None }));
            // From now on failures are retried.
            assert_eq!(s.observe(down()), (None, TIMING.delay_before_retry));
        }
    }

    #[test]
    fn with_no_retry_the_first_failure_counts() {
        let mut s = CheckerState::new(Timing { retry: 0, ..TIMING }, false);
        assert!(matches!(s.observe(down()).0, Some(Change::Down { .. })));
    }

    #[test]
    fn a_new_dynamic_weight_is_a_change_while_up() {
        let mut s = CheckerState::new(TIMING, false);
        assert_eq!(
            s.observe(Verdict::Up { weight: Some(5) }).0,
            Some(Change::Up { weight: Some(5) })
        );
        assert_eq!(s.observe(Verdict::Up { weight: Some(5) }).0, None);
        assert_eq!(s.observe(Verdict::UP).0, Some(Change::Up { weight: None }));
    }

    /// `rise`: a flapping real stays down until it passes `rise` times in a row; a failure
    /// in between starts the count again.
    #[test]
    fn rise_needs_passes_in_a_row_to_bring_a_down_checker_up() {
        let timing = Timing {
            retry: 0,
            rise: 3,
            ..TIMING
        };
        let mut s = CheckerState::new(timing, false);
        assert!(matches!(s.observe(down()).0, Some(Change::Down { .. })));
        assert_eq!(s.observe(Verdict::UP), (None, timing.delay_loop));
        assert_eq!(s.observe(Verdict::UP).0, None);
        assert_eq!(s.observe(down()).0, None, "already down");
        assert_eq!(s.observe(Verdict::UP).0, None, "the count starts again");
        assert_eq!(s.observe(Verdict::UP).0, None);
        assert_eq!(
            s.observe(Verdict::UP).0,
            Some(Change::Up { weight: None }),
            "the third pass in a row"
        );
        assert!(s.is_up());
        // An alpha checker starts down and needs the same.
        let mut a = CheckerState::new(timing, true);
        assert_eq!(a.observe(Verdict::UP).0, None);
        assert_eq!(a.observe(Verdict::UP).0, None);
        assert_eq!(a.observe(Verdict::UP).0, Some(Change::Up { weight: None }));
    }
}
