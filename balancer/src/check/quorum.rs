//! A virtual service's quorum with hysteresis (`keepalived/check/ipwrapper.c`
//! `update_quorum_state`): the sum of its live reals' weights is compared with `quorum`, less
//! `hysteresis` while the quorum holds and plus `hysteresis` while it is lost, so that a weight
//! sum hovering at `quorum` does not flap. The quorum starts as held (keepalived's
//! `quorum_state_up = true`) and is judged at once on the starting weights.

/// The quorum state of one virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// The configured `quorum`.
    needed: u32,
    hysteresis: u32,
    up: bool,
}

impl Quorum {
    #[must_use]
    pub fn new(quorum: u32, hysteresis: u32) -> Self {
        Self {
            needed: quorum,
            hysteresis,
            up: true,
        }
    }

    /// Whether the quorum holds.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The live weight the next change is judged against.
    #[must_use]
    pub fn threshold(&self) -> i64 {
        let (quorum, hysteresis) = (i64::from(self.needed), i64::from(self.hysteresis));
        if self.up {
            quorum - hysteresis
        } else {
            quorum + hysteresis
        }
    }

    /// Takes the sum of the live reals' weights; returns the new state when it changed.
    pub fn update(&mut self, live_weight: u64) -> Option<bool> {
        let live = i64::try_from(live_weight).unwrap_or(i64::MAX);
        let threshold = self.threshold();
        if !self.up && live >= threshold {
            self.up = true;
            Some(true)
        } else if self.up && (live == 0 || live < threshold) {
            // keepalived: no live weight at all loses the quorum even at quorum 0.
            self.up = false;
            Some(false)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_widens_the_band_in_both_directions() {
        let mut q = Quorum::new(10, 2);
        assert_eq!(q.update(9), None, "8 is still enough while up");
        assert_eq!(q.update(8), None);
        assert_eq!(q.update(7), Some(false));
        assert_eq!(q.update(10), None, "12 is needed to regain it");
        assert_eq!(q.update(12), Some(true));
    }

    #[test]
    fn no_live_weight_loses_even_a_zero_quorum() {
        let mut q = Quorum::new(0, 0);
        assert_eq!(q.update(1), None);
        assert_eq!(q.update(0), Some(false));
        assert_eq!(q.update(1), Some(true));
    }

    #[test]
    fn default_quorum_of_one() {
        let mut q = Quorum::new(1, 0);
        assert!(q.is_up());
        assert_eq!(q.update(0), Some(false));
        assert_eq!(q.threshold(), 1);
        assert_eq!(q.update(1), Some(true));
    }
}
