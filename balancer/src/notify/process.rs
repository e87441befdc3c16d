//! Running one script: as its user, in its own process group, without a shell unless the
//! file needs one, killed when it overruns (`keepalived/core/notify.c` `system_call_script`,
//! `keepalived/vrrp/vrrp_scheduler.c` `vrrp_script_child_thread`).

use std::ffi::OsString;
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::notify::security::{self, Real, ScriptUser, SecurityError};
use crate::notify::split::{SplitError, split};

/// How long a script has between SIGTERM and SIGKILL once it overran (keepalived's 2 s).
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// What keepalived removes from a script's environment before exec ("defence in depth").
const SCRUBBED_ENV: [&str; 3] = ["IFS", "LD_PRELOAD", "LD_LIBRARY_PATH"];

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("script {command:?}")]
    Security {
        command: String,
        source: SecurityError,
    },
}

/// A script ready to run: split, found, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// The command as configured, for logs.
    pub command: String,
    pub program: PathBuf,
    /// The words after the first.
    pub args: Vec<OsString>,
    pub user: ScriptUser,
    /// keepalived execs a file directly only when it is a binary or starts with `#!`;
    /// anything else goes through `/bin/sh -c` (its libmagic test, `SC_EXECABLE`).
    pub shell: bool,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    Exited(ExitStatus),
    /// It overran its timeout and was killed (a failure for a tracking script).
    TimedOut,
    /// It could not be started.
    SpawnFailed(io::Error),
}

impl Outcome {
    /// keepalived counts only exit status 0 as success.
    #[must_use]
    pub fn success(&self) -> bool {
        matches!(self, Self::Exited(status) if status.success())
    }
}

impl Script {
    /// Splits `command`, finds its program and checks it may run as `user`.
    ///
    /// # Errors
    /// The command does not parse, or [`security::check_script`] refuses it.
    pub fn prepare(
        command: &str,
        user: ScriptUser,
        script_security: bool,
    ) -> Result<Self, ScriptError> {
        let mut words = split(command)?;
        let first = words.remove(0);
        let search_path = std::env::var_os("PATH");
        let checked = security::check_script(
            &Real,
            &first,
            &user,
            script_security,
            search_path.as_deref(),
        )
        .map_err(|source| ScriptError::Security {
            command: command.to_owned(),
            source,
        })?;
        if checked.insecure {
            tracing::warn!(
                command,
                "script runs as root from a path other users can change (enable_script_security refuses this)"
            );
        }
        let shell = !directly_executable(&checked.program);
        Ok(Self {
            command: command.to_owned(),
            program: checked.program,
            args: words,
            user,
            shell,
        })
    }

    /// The program and arguments to exec, with `extra` appended.
    fn argv(&self, extra: &[&str]) -> (PathBuf, Vec<OsString>) {
        let mut args = self.args.clone();
        args.extend(extra.iter().map(OsString::from));
        if !self.shell {
            return (self.program.clone(), args);
        }
        // keepalived's `cmd_str`: every word in single quotes, a quote as '\''.
        let mut line = Vec::new();
        for word in
            std::iter::once(self.program.as_os_str()).chain(args.iter().map(OsString::as_os_str))
        {
            if !line.is_empty() {
                line.push(b' ');
            }
            line.push(b'\'');
            for &b in word.as_bytes() {
                if b == b'\'' {
                    line.extend_from_slice(b"'\\''");
                } else {
                    line.push(b);
                }
            }
            line.push(b'\'');
        }
        let line = std::ffi::OsStr::from_bytes(&line).to_os_string();
        (PathBuf::from("/bin/sh"), vec!["-c".into(), line])
    }

    /// Runs the script with `extra` arguments; after `timeout` it gets SIGTERM, and
    /// [`KILL_GRACE`] later SIGKILL, its whole process group each time.
    pub async fn run(&self, extra: &[&str], timeout: Duration) -> Outcome {
        let (program, args) = self.argv(extra);
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so that an overrunning script's children die with it.
            .process_group(0)
            .kill_on_drop(true);
        for name in SCRUBBED_ENV {
            cmd.env_remove(name);
        }
        let target = self.user.clone();
        let ours = ScriptUser::current();
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls on data prepared before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || become_user(&target, &ours));
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return Outcome::SpawnFailed(e),
        };
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => return Outcome::Exited(status),
            Ok(Err(e)) => return Outcome::SpawnFailed(e),
            Err(_) => {}
        }
        tracing::warn!(
            command = self.command,
            ?timeout,
            "script timed out, terminating it"
        );
        if let Some(group) = group {
            let _ = killpg(group, Signal::SIGTERM);
        }
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        // Whatever is left of the group (the script, or children it left behind).
        if let Some(group) = group {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = child.wait().await;
        Outcome::TimedOut
    }
}

/// In the child: drop to the script's user, as keepalived's `set_script_env` does (group
/// first, while we may still change it).
fn become_user(target: &ScriptUser, ours: &ScriptUser) -> io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY (all three): plain system calls on values owned by the closure.
    if ours.uid == 0 {
        check(unsafe { libc::setgroups(target.groups.len(), target.groups.as_ptr()) })?;
    }
    if target.gid != ours.gid {
        check(unsafe { libc::setgid(target.gid) })?;
    }
    if target.uid != ours.uid {
        check(unsafe { libc::setuid(target.uid) })?;
    }
    // If we die, so does the script (keepalived's PR_SET_PDEATHSIG).
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) })?;
    Ok(())
}

/// Whether `path` starts as an executable format the kernel runs itself.
fn directly_executable(path: &std::path::Path) -> bool {
    let mut head = [0u8; 4];
    let Ok(mut file) = std::fs::File::open(path) else {
        // Unreadable for us is not our call: exec it and let the kernel say.
        return true;
    };
    let n = file.read(&mut head).unwrap_or(0);
    head[..n].starts_with(b"#!") || head[..n] == *b"\x7fELF"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: bool) -> Script {
        Script {
            command: "x".into(),
            program: "/etc/ka/it's".into(),
            args: vec!["a b".into()],
            user: ScriptUser::current(),
            shell,
        }
    }

    #[test]
    fn arguments_are_passed_as_words_or_quoted_for_the_shell() {
        let (program, args) = script(false).argv(&["INSTANCE", "VI 1"]);
        assert_eq!(program, PathBuf::from("/etc/ka/it's"));
        assert_eq!(args, ["a b", "INSTANCE", "VI 1"]);
        let (program, args) = script(true).argv(&["MASTER"]);
        assert_eq!(program, PathBuf::from("/bin/sh"));
        assert_eq!(args, ["-c", r"'/etc/ka/it'\''s' 'a b' 'MASTER'"]);
    }

    #[test]
    fn only_binaries_and_shebang_scripts_skip_the_shell() {
        let dir = std::env::temp_dir().join(format!("balancer-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, &[u8], bool); 4] = [
            ("shebang", b"#!/bin/sh\nexit 0\n", true),
            ("elf", b"\x7fELF\x02\x01", true),
            ("plain", b"exit 0\n", false),
            ("empty", b"", false),
        ];
        for (name, contents, direct) in cases {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            assert_eq!(directly_executable(&path), direct, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn exit_status_and_timeout() {
        let mut ok = script(false);
        ok.program = "/bin/sh".into();
        ok.args = vec!["-c".into(), "exit \"$0\"".into()];
        assert!(ok.run(&["0"], Duration::from_secs(5)).await.success());
        assert!(!ok.run(&["3"], Duration::from_secs(5)).await.success());
        ok.args = vec!["-c".into(), "sleep 5".into()];
        let started = std::time::Instant::now();
        assert!(matches!(
            ok.run(&[], Duration::from_millis(20)).await,
            Outcome::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut missing = script(false);
        missing.program = "/nonexistent/balancer-test".into();
        assert!(matches!(
            missing.run(&[], Duration::from_secs(1)).await,
            Outcome::SpawnFailed(_)
        ));
    }
}
