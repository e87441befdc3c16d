//! `track_file`: an integer read from a file (`keepalived/trackers/track_file.c`
//! `process_track_file`, `update_track_file_status`, and
//! `keepalived/vrrp/vrrp_track.c` `initialise_vrrp_file_tracking_priorities`).
//!
//! keepalived rereads the file on inotify events; we poll it, so a change is seen within
//! [`TrackFile::poll`].

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::vrrp::track::Update;

/// The status at or below which the instance goes to FAULT.
pub const FAULT_STATUS: i64 = -254;
/// The largest status added to the priority.
pub const MAX_STATUS: i64 = 253;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackFile {
    pub path: PathBuf,
    /// `weight`, -254..=254, default 1: the value times the weight is added to the priority;
    /// with weight 0, any value other than 0 means FAULT.
    pub weight: i32,
    /// How often the file is read.
    pub poll: Duration,
}

impl TrackFile {
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            weight: 1,
            poll: Duration::from_secs(1),
        }
    }
}

/// What a file's value contributes: a priority change, or `None` for FAULT.
#[must_use]
pub fn contribution(value: i64, weight: i32) -> Option<i32> {
    let status = if weight == 0 {
        if value == 0 { 0 } else { FAULT_STATUS }
    } else {
        value.saturating_mul(i64::from(weight))
    };
    if status <= FAULT_STATUS {
        return None;
    }
    // Within (-254, 253] after the clamp: always an i32.
    i32::try_from(status.min(MAX_STATUS)).ok()
}

/// The file's value as keepalived reads it: `strtol(buf, NULL, 0)` over the first 127 bytes,
/// so leading white space, a sign, `0x` hex and `0` octal are accepted, parsing stops at the
/// first other character, and no number at all (or no file) is 0. `None` for a number outside
/// the 32-bit range, which keepalived ignores (the previous value stays).
#[must_use]
pub fn parse(contents: &[u8]) -> Option<i64> {
    let text = &contents[..contents.len().min(127)];
    let mut i = 0;
    while i < text.len() && b" \t\n\r\x0b\x0c".contains(&text[i]) {
        i += 1;
    }
    let negative = match text.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let rest = &text[i..];
    let (radix, digits) = if (rest.starts_with(b"0x") || rest.starts_with(b"0X"))
        && rest.get(2).is_some_and(u8::is_ascii_hexdigit)
    {
        (16, &rest[2..])
    } else if rest.starts_with(b"0") {
        (8, rest)
    } else {
        (10, rest)
    };
    let mut value: i64 = 0;
    for &b in digits {
        let Some(d) = char::from(b).to_digit(radix) else {
            break;
        };
        value = value
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(d));
    }
    let value = if negative { -value } else { value };
    (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1)
        .contains(&value)
        .then_some(value)
}

/// Reads the file every [`TrackFile::poll`] until `updates` closes, sending
/// [`Update::File`] at first and whenever the value changes.
pub async fn run(index: usize, track: TrackFile, updates: UnboundedSender<Update>) {
    let mut last = None;
    let mut ticks = tokio::time::interval(track.poll.max(Duration::from_millis(10)));
    loop {
        ticks.tick().await;
        let contents = std::fs::read(&track.path).unwrap_or_default();
        let Some(value) = parse(&contents) else {
            tracing::warn!(path = %track.path.display(), "track_file value out of range, ignored");
            continue;
        };
        if last != Some(value) {
            last = Some(value);
            if updates.send(Update::File { index, value }).is_err() {
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

    #[test]
    fn values_parse_like_strtol() {
        assert_eq!(parse(b"42\n"), Some(42));
        assert_eq!(parse(b"  -7 apples"), Some(-7));
        assert_eq!(parse(b"0x1F"), Some(31));
        assert_eq!(parse(b"010"), Some(8));
        assert_eq!(parse(b""), Some(0));
        assert_eq!(parse(b"junk"), Some(0));
        assert_eq!(parse(b"99999999999"), None);
    }

    #[test]
    fn weight_times_value_or_fault() {
        assert_eq!(contribution(3, 10), Some(30));
        assert_eq!(contribution(-3, 10), Some(-30));
        assert_eq!(contribution(100, 10), Some(253));
        assert_eq!(contribution(-25, 10), Some(-250));
        assert_eq!(contribution(-26, 10), None);
        assert_eq!(contribution(1, -254), None);
        assert_eq!(contribution(0, 0), Some(0));
        assert_eq!(contribution(5, 0), None);
    }
}
