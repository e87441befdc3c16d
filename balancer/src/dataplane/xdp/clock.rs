//! Calibrates the packet path's clock (`balancer_common::maps::Clock`): the kernel's tick length
//! and the jiffies count at `CLOCK_MONOTONIC` zero, measured through the object's `clock`
//! program, which reads both clocks in the kernel.
//!
//! The tick length is not exposed to userspace (`CLK_TCK` is `USER_HZ`, not `HZ`), so it is
//! measured: readings are taken back to back until jiffies has moved at least `SPAN_NS` apart,
//! each end read right after its tick, so the span is whole ticks to within a syscall.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use balancer_common::maps::Clock;

/// The object's calibration program.
const CLOCK_PROGRAM: &str = "clock";
/// The shortest span measured: 20 ticks at 1000 Hz, so a reading late by a few microseconds
/// moves the estimate by well under half a hertz.
const SPAN_NS: u64 = 20_000_000;
/// Calibration gives up after this long (a tick comes every 10 ms even at 100 Hz).
const DEADLINE: Duration = Duration::from_millis(500);
const NS_PER_S: u128 = 1_000_000_000;

/// The clock, calibrated once per process: the tick and the epoch do not change while the
/// machine runs. `None` when it could not be measured; the program then reads the clocksource.
pub(super) fn calibrated(ebpf: &mut Ebpf) -> Option<Clock> {
    static CLOCK: OnceLock<Option<Clock>> = OnceLock::new();
    if let Some(clock) = CLOCK.get() {
        return *clock;
    }
    let measured = measure(ebpf);
    match &measured {
        Ok(clock) => tracing::debug!(
            jiffy_ns = clock.jiffy_ns,
            "packet path clock calibrated from jiffies"
        ),
        Err(e) => tracing::warn!(
            "could not calibrate the packet path's clock ({e}); it reads the clocksource per \
             packet instead (slower)"
        ),
    }
    *CLOCK.get_or_init(|| measured.ok())
}

fn measure(ebpf: &mut Ebpf) -> Result<Clock, String> {
    let prog: &mut Xdp = ebpf
        .program_mut(CLOCK_PROGRAM)
        .ok_or("the object has no clock program")?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load().map_err(|e| format!("loading it: {e}"))?;
    let start = Instant::now();
    let (mut jiffies, _) = sample(prog)?;
    let mut first = None;
    while start.elapsed() < DEADLINE {
        let reading = sample(prog)?;
        if reading.0 == jiffies {
            continue;
        }
        jiffies = reading.0;
        match first {
            None => first = Some(reading),
            Some(f) if reading.1.saturating_sub(f.1) >= SPAN_NS => {
                return from_ticks(f, reading).ok_or_else(|| "inconsistent readings".into());
            }
            Some(_) => {}
        }
    }
    Err(format!("jiffies did not advance within {DEADLINE:?}"))
}

/// One reading: (jiffies, `CLOCK_MONOTONIC` nanoseconds).
fn sample(prog: &Xdp) -> Result<(u64, u64), String> {
    let frame = [0u8; 16];
    let mut out = [0u8; 16];
    prog.test_run(TestRunOptions {
        data_in: Some(&frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    })
    .map_err(|e| format!("running it: {e}"))?;
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&out[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(b)
    };
    Ok((word(0), word(1)))
}

/// The clock from two readings each taken just after jiffies moved.
fn from_ticks(first: (u64, u64), last: (u64, u64)) -> Option<Clock> {
    let ticks = u128::from(last.0.checked_sub(first.0)?);
    let span = u128::from(last.1.checked_sub(first.1)?);
    if ticks == 0 || span == 0 {
        return None;
    }
    let hz = (ticks * NS_PER_S + span / 2) / span;
    if hz == 0 {
        return None;
    }
    // The kernel's TICK_NSEC: jiffies advance by whole ticks of this length.
    let jiffy_ns = u64::try_from((NS_PER_S + hz / 2) / hz).ok()?;
    Some(Clock {
        jiffy_ns,
        epoch_jiffies: last.0.wrapping_sub(last.1 / jiffy_ns),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_length_and_epoch_follow_from_two_ticks() {
        // 250 Hz: 6 ticks in 24 ms, the last reading 3 µs after its tick.
        let c = from_ticks((1_000, 7_000_001_000), (1_006, 7_024_003_000)).unwrap();
        assert_eq!(c.jiffy_ns, 4_000_000);
        assert_eq!(c.now_ns(1_006), 7_024_000_000);
        // 300 Hz rounds to the kernel's TICK_NSEC.
        let c = from_ticks((10, 1_000_000_000), (16, 1_020_000_500)).unwrap();
        assert_eq!(c.jiffy_ns, 3_333_333);
        // 1000 Hz, a reading 4 µs late over 20 ticks still gives 1000.
        let c = from_ticks((5, 0), (25, 20_004_000)).unwrap();
        assert_eq!(c.jiffy_ns, 1_000_000);
        assert!(from_ticks((5, 10), (5, 20)).is_none());
        assert!(from_ticks((6, 10), (5, 20)).is_none());
    }
}
