//! `MISC_CHECK`: a program decides (`keepalived/check/check_misc.c`
//! `misc_check_child_thread`). Exit 0 passes; any other status fails, except that with
//! `misc_dynamic` a status of 2..=255 passes and sets the real's weight to status - 2
//! (0..=253), and 0 gives the configured weight back. A script that overruns `misc_timeout`
//! is killed (SIGTERM, then SIGKILL) and fails. The script runs through the notify module's
//! runner: no shell unless the file needs one, as its user, in its own process group.

use std::time::Duration;

use crate::check::{Attempt, Probe, Verdict};
use crate::notify::{Outcome, Script};

/// `MISC_CHECK`.
#[derive(Clone, Debug)]
pub struct MiscCheck {
    /// `misc_path`, prepared (split, found, checked against script security).
    pub script: Script,
    /// `misc_timeout`; keepalived's default is the checker's `delay_loop`.
    pub timeout: Duration,
    /// `misc_dynamic`.
    pub dynamic: bool,
}

impl MiscCheck {
    /// The verdict for an exit status, by keepalived's rule.
    #[must_use]
    pub fn verdict_for(&self, code: i32) -> Verdict {
        match code {
            0 => Verdict::UP,
            2..=255 if self.dynamic => Verdict::Up {
                weight: u32::try_from(code - 2).ok(),
            },
            _ => Verdict::down(format!(
                "{:?} exited with status {code}",
                self.script.command
            )),
        }
    }
}

impl Probe for MiscCheck {
    fn attempt(&self) -> Attempt<'_> {
        Box::pin(async move {
            match self.script.run(&[], self.timeout).await {
                Outcome::Exited(status) => match status.code() {
                    Some(code) => self.verdict_for(code),
                    None => Verdict::down(format!(
                        "{:?} was killed by a signal ({status})",
                        self.script.command
                    )),
                },
                Outcome::TimedOut => Verdict::down(format!(
                    "{:?} ran longer than {:?} and was killed",
                    self.script.command, self.timeout
                )),
                Outcome::SpawnFailed(e) => {
                    Verdict::down(format!("{:?} could not run: {e}", self.script.command))
                }
            }
        })
    }

    fn describe(&self) -> String {
        format!("MISC_CHECK {:?}", self.script.command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::ScriptUser;

    fn check(command: &str, dynamic: bool) -> MiscCheck {
        MiscCheck {
            script: Script::prepare(command, ScriptUser::current(), false).unwrap(),
            timeout: Duration::from_secs(5),
            dynamic,
        }
    }

    #[test]
    fn exit_status_rule_of_keepalived() {
        let plain = check("/usr/bin/true", false);
        assert_eq!(plain.verdict_for(0), Verdict::UP);
        assert!(matches!(plain.verdict_for(1), Verdict::Down { .. }));
        assert!(matches!(plain.verdict_for(7), Verdict::Down { .. }));
        let dynamic = check("/usr/bin/true", true);
        assert_eq!(dynamic.verdict_for(0), Verdict::UP);
        assert!(matches!(dynamic.verdict_for(1), Verdict::Down { .. }));
        assert_eq!(dynamic.verdict_for(2), Verdict::Up { weight: Some(0) });
        assert_eq!(dynamic.verdict_for(255), Verdict::Up { weight: Some(253) });
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_the_script_and_reads_its_status() {
        assert_eq!(
            check("/usr/bin/sh -c 'exit 0'", false).attempt().await,
            Verdict::UP
        );
        assert_eq!(
            check("/usr/bin/sh -c 'exit 12'", true).attempt().await,
            Verdict::Up { weight: Some(10) }
        );
        let Verdict::Down { reason } = check("/usr/bin/sh -c 'exit 1'", true).attempt().await
        else {
            panic!("exit 1 passed");
        };
        assert!(reason.contains("status 1"), "{reason}");
        let mut slow = check("/usr/bin/sleep 5", false);
        slow.timeout = Duration::from_millis(50);
        assert!(matches!(slow.attempt().await, Verdict::Down { .. }));
    }
}
