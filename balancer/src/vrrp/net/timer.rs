//! VRRP's timers to the microsecond. tokio's timer wheel rounds every sleep up to the next
//! millisecond tick, which adds half a millisecond on average to each advert interval and to
//! each takeover; keepalived's timers (a timerfd under its scheduler) do not. A sleep here is
//! a timerfd of its own, awaited through the runtime's reactor.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// Sleeps until `at`, to the microsecond. Falls back to tokio's timer (and its rounding) if
/// no timerfd can be made.
pub async fn sleep_until(at: Instant) {
    let Some(wait) = at
        .checked_duration_since(Instant::now())
        .filter(|w| !w.is_zero())
    else {
        return;
    };
    match arm(wait) {
        Ok(fd) => {
            // Readable once the timer fired; the expiry count is not needed.
            if let Ok(mut guard) = fd.readable().await {
                guard.clear_ready();
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "no timerfd: tokio's timer instead");
            tokio::time::sleep_until(at).await;
        }
    }
}

/// A one-shot monotonic timerfd firing after `wait`, registered with the reactor.
fn arm(wait: Duration) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: timerfd_create has no memory preconditions; the result is checked.
    let raw = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just created and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(wait.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(wait.subsec_nanos().max(1)),
        },
    };
    // SAFETY: a valid timerfd and a valid itimerspec; the old value is not asked for.
    let rc =
        unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &raw const spec, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the OwnedFd owns its descriptor and keeps it open, unchanged, for as long as
    // the AsyncFd owns it.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_sleep_ends_at_its_deadline_not_before() {
        for micros in [0u64, 300, 2_500] {
            let at = Instant::now() + Duration::from_micros(micros);
            sleep_until(at).await;
            assert!(Instant::now() >= at, "woke before the deadline");
        }
    }
}
