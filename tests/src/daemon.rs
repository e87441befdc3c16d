//! Daemons under test (keepalived, our `balancer` binary) run inside a namespace, stopped
//! with SIGTERM when a test says so and killed when the guard drops, also on panic.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::Netns;

/// How long a daemon gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running daemon and its scratch directory (configuration, pid files, log).
pub struct Daemon {
    child: Child,
    dir: PathBuf,
    /// Processes the daemon forked that must not outlive it (keepalived's VRRP child).
    pid_files: Vec<PathBuf>,
}

fn scratch_dir(role: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("blt-{}-{n}-{role}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Our `balancer` binary, built beside the test binary (`target/<profile>/balancer`), or
/// beside a binary of this crate (the benchmarks, in `target/<profile>`).
///
/// # Panics
/// It has not been built.
#[must_use]
pub fn balancer_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let sibling = exe.parent().map(|dir| dir.join("balancer"));
    if let Some(path) = sibling.filter(|p| p.exists()) {
        return path;
    }
    // target/<profile>/deps/<test binary>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("balancer"))
        .expect("test binary lives in target/<profile>/deps");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p balancer` first (`cargo xtask test` does)",
        path.display()
    );
    path
}

impl Daemon {
    /// Starts Debian's keepalived with `config` in `ns`: VRRP only, in the foreground, logging
    /// to a file, with its own pid files.
    ///
    /// # Panics
    /// keepalived cannot be started.
    #[must_use]
    pub fn keepalived(ns: &Netns, config: &str) -> Self {
        let dir = scratch_dir("keepalived");
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, config).expect("write keepalived.conf");
        let pid = dir.join("keepalived.pid");
        let vrrp_pid = dir.join("vrrp.pid");
        let args = [
            "-f".as_ref(),
            conf.as_os_str(),
            "-n".as_ref(),
            "-l".as_ref(),
            "-P".as_ref(),
            "-p".as_ref(),
            pid.as_os_str(),
            "-r".as_ref(),
            vrrp_pid.as_os_str(),
        ];
        Self::spawn(ns, "keepalived", &args, dir.clone(), vec![vrrp_pid.clone()])
    }

    /// Starts `balancer ARGS` in `ns`, with its control socket, pid file and dumps in the
    /// daemon's own scratch directory (never the host's /run).
    ///
    /// # Panics
    /// The binary is missing or cannot be started.
    #[must_use]
    pub fn balancer(ns: &Netns, args: &[&str]) -> Self {
        let dir = scratch_dir("balancer");
        let binary = balancer_binary();
        let mut full: Vec<&std::ffi::OsStr> = vec![
            "--log-level".as_ref(),
            "debug".as_ref(),
            "--run-dir".as_ref(),
            dir.as_os_str(),
        ];
        full.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        Self::spawn(
            ns,
            &binary.to_string_lossy(),
            &full,
            dir.clone(),
            Vec::new(),
        )
    }

    /// The directory of the daemon's log, control socket, pid file and dumps.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `balancer ARGS` (a client command such as `status` or `reload`) against this
    /// daemon's run directory, and returns its exit success and standard output.
    ///
    /// # Panics
    /// The binary cannot be run.
    #[must_use]
    pub fn client(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(balancer_binary())
            .arg("--run-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run balancer client");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The daemon's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: i32) {
        signal(self.child.id(), sig);
    }

    fn spawn(
        ns: &Netns,
        program: &str,
        args: &[&std::ffi::OsStr],
        dir: PathBuf,
        pid_files: Vec<PathBuf>,
    ) -> Self {
        let log = File::create(dir.join("log")).expect("create log");
        let child = ns
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} in {}: {e}", ns.name()));
        Self {
            child,
            dir,
            pid_files,
        }
    }

    /// What the daemon logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Kills the daemon and the processes it forked with SIGKILL, as a crash would: nothing
    /// is cleaned up (its addresses stay). Returns once it has exited.
    pub fn kill(&mut self) {
        // keepalived's VRRP child first: it is the one that advertises.
        for file in &self.pid_files {
            if let Some(pid) = read_pid(file) {
                signal(pid, libc::SIGKILL);
            }
            // So that a later drop cannot signal a recycled pid.
            let _ = std::fs::remove_file(file);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        signal(self.child.id(), libc::SIGTERM);
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    ///
    /// # Panics
    /// The daemon does not exit within five seconds (it is then killed).
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `sig` (SIGTERM, or SIGKILL for a crash) and waits (bounded) for the exit.
    ///
    /// # Panics
    /// The daemon does not exit within five seconds (it is then killed).
    pub fn stop_with(&mut self, sig: i32) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        signal(self.child.id(), sig);
        let end = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "did not stop within {STOP_TIMEOUT:?} of signal {sig}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) on a pid we started; a stale pid only fails.
        unsafe { libc::kill(pid, sig) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), libc::SIGTERM);
            let end = Instant::now() + STOP_TIMEOUT;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for file in &self.pid_files {
            if let Some(pid) = read_pid(file) {
                signal(pid, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.dir.display(), self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
