//! Time as the state machine sees it, and the protocol's timer formulas.

use std::ops::Add;
use std::time::Duration;

use crate::vrrp::wire::Version;

/// A point on a monotonic clock, as the time since an arbitrary start. The I/O task maps
/// `tokio::time::Instant` onto it (`now - start`); tests just count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(Duration);

impl Timestamp {
    pub const ZERO: Self = Self(Duration::ZERO);

    #[must_use]
    pub const fn from_start(since_start: Duration) -> Self {
        Self(since_start)
    }

    #[must_use]
    pub const fn since_start(self) -> Duration {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub fn saturating_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// `self` moved back by `d`, stopping at the start.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Self;

    fn add(self, rhs: Duration) -> Self {
        Self(self.0.saturating_add(rhs))
    }
}

/// `Skew_Time` for `priority` (the base priority for an owner, else the effective one).
#[must_use]
pub fn skew_time(version: Version, priority: u8, master_adver_interval: Duration) -> Duration {
    let weight = 256 - u32::from(priority);
    match version {
        // RFC 3768 §6.1: Skew_Time = (256 - Priority) / 256 seconds.
        Version::V2 => Duration::from_secs(1) * weight / 256,
        // RFC 5798 §6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
        Version::V3 => master_adver_interval * weight / 256,
    }
}

/// `Master_Down_Interval`: how long a backup waits without adverts before it takes over.
#[must_use]
pub fn master_down_interval(
    version: Version,
    priority: u8,
    master_adver_interval: Duration,
) -> Duration {
    // RFC 3768 §6.1 / RFC 5798 §6.1: 3 * (Master_)Adver_Interval + Skew_Time.
    master_adver_interval * 3 + skew_time(version, priority, master_adver_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    // RFC 3768 §6.1: priority 100 → (256-100)/256 s = 609.375 ms.
    #[test]
    fn v2_skew_is_a_fraction_of_a_second() {
        assert_eq!(
            skew_time(Version::V2, 100, SEC),
            Duration::from_micros(609_375)
        );
        assert_eq!(
            skew_time(Version::V2, 255, 3 * SEC),
            Duration::from_nanos(3_906_250)
        );
        // VRRPv2 skew does not scale with the interval.
        assert_eq!(
            skew_time(Version::V2, 100, 5 * SEC),
            Duration::from_micros(609_375)
        );
    }

    // RFC 5798 §6.1: skew scales with Master_Adver_Interval.
    #[test]
    fn v3_skew_scales_with_the_interval() {
        assert_eq!(skew_time(Version::V3, 128, SEC), Duration::from_millis(500));
        assert_eq!(
            skew_time(Version::V3, 128, Duration::from_millis(200)),
            Duration::from_millis(100)
        );
        assert_eq!(
            skew_time(Version::V3, 254, Duration::from_millis(2560)),
            Duration::from_millis(20)
        );
    }

    // RFC 5798 §6.1 and keepalived's man page example: advert_int 1, priority 128 → 3.5 s.
    #[test]
    fn master_down_interval_is_three_intervals_plus_skew() {
        assert_eq!(
            master_down_interval(Version::V3, 128, SEC),
            Duration::from_millis(3500)
        );
        assert_eq!(
            master_down_interval(Version::V2, 100, SEC),
            Duration::from_micros(3_609_375)
        );
    }

    #[test]
    fn higher_priority_waits_less() {
        for version in [Version::V2, Version::V3] {
            assert!(
                master_down_interval(version, 200, SEC) < master_down_interval(version, 100, SEC)
            );
        }
    }

    #[test]
    fn timestamps_saturate() {
        let t = Timestamp::from_start(SEC);
        assert_eq!(t.saturating_since(t + SEC), Duration::ZERO);
        assert_eq!(t.saturating_sub(2 * SEC), Timestamp::ZERO);
        assert_eq!((t + SEC).since_start(), 2 * SEC);
    }
}
