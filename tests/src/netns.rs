//! Network namespaces and veth pairs for tests.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

/// Prefix of every namespace the harness creates, so leftovers are recognisable.
const PREFIX: &str = "blt";

/// A network namespace that exists for as long as this guard does.
pub struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    /// Creates a namespace with a unique name containing `role`, with loopback up and IPv6
    /// enabled (use [`Netns::disable_ipv6`] for IPv4-only tests that count packets exactly).
    ///
    /// # Panics
    /// `ip netns add` fails (not root, or iproute2 missing).
    #[must_use]
    pub fn new(role: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}-{}-{n}-{role}", std::process::id());
        run_ip(&["netns", "add", &name]);
        let ns = Self {
            name,
            children: Vec::new(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip ARGS` inside the namespace.
    ///
    /// # Panics
    /// The command fails; the message carries its stderr.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ip(&full);
    }

    /// Sets a sysctl inside the namespace (`key` in dotted form).
    ///
    /// # Panics
    /// The sysctl cannot be written.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run(|| std::fs::write(&path, value))
            .unwrap_or_else(|e| panic!("sysctl {key}={value} in {}: {e}", self.name));
    }

    /// Whether `addr` is configured on any interface of the namespace.
    #[must_use]
    pub fn has_addr(&self, addr: &str) -> bool {
        let out = self.output("ip", &["-o", "addr", "show"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/"))
    }

    /// The MAC address of `interface`.
    ///
    /// # Panics
    /// The interface has no Ethernet address.
    #[must_use]
    pub fn mac(&self, interface: &str) -> [u8; 6] {
        let out = self.output("ip", &["-o", "link", "show", interface]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let hex = text
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {text:?}"));
        let bytes: Vec<u8> = hex
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect();
        bytes.try_into().expect("6 bytes")
    }

    /// Turns IPv6 off, so that no router solicitation, DAD or MLD packet appears on its links.
    pub fn disable_ipv6(&self) {
        self.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        self.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    }

    /// A command that runs `program` inside the namespace.
    #[must_use]
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program ARGS` inside the namespace to completion.
    ///
    /// # Panics
    /// The program cannot be started.
    #[must_use]
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} in {}: {e}", self.name))
    }

    /// Starts `program ARGS` inside the namespace; it is killed when this guard drops.
    ///
    /// # Panics
    /// The program cannot be started.
    pub fn spawn(&mut self, program: &str, args: &[&str]) -> u32 {
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} in {}: {e}", self.name));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Runs `f` on a fresh thread that has joined this namespace: sockets it opens and
    /// interfaces it names are the namespace's. The calling thread is not moved.
    ///
    /// # Panics
    /// Joining the namespace fails, or `f` panics (the panic is passed on).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: a valid namespace fd; setns only changes this thread, which ends
                // when `f` returns.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// A thread inside a namespace, stopped (flag) and joined when dropped.
pub struct NsThread {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl NsThread {
    /// Whether the thread was asked to stop.
    #[must_use]
    pub fn stopping(flag: &std::sync::atomic::AtomicBool) -> bool {
        flag.load(Ordering::Relaxed)
    }
}

impl Drop for NsThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Netns {
    /// Runs `f` on a thread inside the namespace until the returned guard drops. `f` gets a
    /// stop flag and must return soon after it turns true (poll it between bounded waits).
    ///
    /// # Panics
    /// The thread cannot be started.
    #[must_use]
    pub fn spawn_thread(
        &self,
        f: impl FnOnce(&std::sync::atomic::AtomicBool) + Send + 'static,
    ) -> NsThread {
        let path = format!("/run/netns/{}", self.name);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: a valid namespace fd; only this thread moves.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
            let _ = ready_tx.send(());
            f(&flag);
        });
        let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(5));
        NsThread {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Not run_ip: a panic inside drop during an unwinding test would abort the process.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Creates a veth pair, `a_if` in `a` and `b_if` in `b`, both up. Interface names must be
/// at most 15 bytes.
///
/// # Panics
/// `ip link add` fails.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

fn run_ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Deletes namespaces left by test processes that no longer exist (killed before their guards
/// could drop). Only names this harness makes, `blt-PID-...`, are considered.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A namespace holding one bridge, `br0`, that other namespaces plug into: the lab's L2
/// segment.
pub struct Switch {
    ns: Netns,
}

impl Switch {
    /// # Panics
    /// The bridge cannot be made.
    #[must_use]
    pub fn new(role: &str) -> Self {
        let ns = Netns::new(role);
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "set", "br0", "up"]);
        Self { ns }
    }

    /// Connects `ns` to the bridge by a veth pair: `inner` in `ns`, `port` on the bridge.
    pub fn plug(&self, ns: &Netns, inner: &str, port: &str) {
        veth_pair(ns, inner, &self.ns, port);
        self.ns.ip(&["link", "set", port, "master", "br0"]);
    }

    /// The switch's own namespace (to attach programs to its ports).
    #[must_use]
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
}
