//! Pieces of the traffic tests: the XDP program with small tables, identity servers on the
//! reals, many concurrent clients, and neighbour warm-up on the balancer.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::atomic::AtomicBool,
    time::Duration,
};

use balancer::dataplane::xdp::{LoadOptions, XdpProgram};
use balancer_common::maps::Globals;

use crate::{Netns, NsThread};

/// The XDP program with a connection table of `flows` entries (tests need few).
#[must_use]
pub fn load_program(flows: u32) -> XdpProgram {
    XdpProgram::load_with(&LoadOptions {
        flows,
        persist: 1024,
        timeouts: Globals::default(),
        pin_dir: None,
        ..LoadOptions::default()
    })
    .expect("load the XDP program")
}

/// `ethtool ARGS` inside `ns`, which must succeed.
pub fn ethtool(ns: &Netns, args: &[&str]) {
    let out = ns.output("ethtool", args);
    assert!(
        out.status.success(),
        "ethtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP server on `port` that answers every connection with `me`, so a client can tell which
/// real it reached.
#[must_use]
pub fn identity_server(ns: &Netns, port: u16, me: IpAddr) -> NsThread {
    ns.spawn_thread(move |stop: &AtomicBool| {
        let any: IpAddr = if me.is_ipv6() {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let listener = TcpListener::bind((any, port)).expect("listen");
        listener.set_nonblocking(true).unwrap();
        while !NsThread::stopping(stop) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(me.to_string().as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    })
}

/// An HTTP server on `port` that answers every request `200 OK` with `me` as the body (so a
/// client and an `HTTP_GET` checker both see a healthy real, and the client can tell which).
#[must_use]
pub fn http_server(ns: &Netns, port: u16, me: IpAddr) -> NsThread {
    ns.spawn_thread(move |stop: &AtomicBool| {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("listen");
        listener.set_nonblocking(true).unwrap();
        let body = me.to_string();
        let answer = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        std::thread::scope(|scope| {
            while !NsThread::stopping(stop) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let answer = answer.as_bytes();
                        scope.spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                            // Read the request head (bounded), then answer and close.
                            let mut head = Vec::new();
                            let mut buf = [0u8; 512];
                            while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                                match s.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => head.extend_from_slice(&buf[..n]),
                                }
                            }
                            let _ = s.write_all(answer);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
    })
}

/// One HTTP/1.0 GET to `to` from the calling thread's namespace: the body of a `200 OK`, or
/// what went wrong.
///
/// # Errors
/// The connection, the request or the answer failed, or the status was not 200.
pub fn http_get(to: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut c = TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    c.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    c.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {answer:?}"))?;
    if !head.starts_with("HTTP/1.0 200") {
        return Err(format!("status: {head:?}"));
    }
    Ok(body.to_owned())
}

/// A TCP server on `port` that answers each line it reads with `me` and the line, for as
/// long as the client keeps the connection open: a long-lived connection whose real can be
/// asked at any time.
#[must_use]
pub fn echo_server(ns: &Netns, port: u16, me: IpAddr) -> NsThread {
    ns.spawn_thread(move |stop: &AtomicBool| {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("listen");
        listener.set_nonblocking(true).unwrap();
        std::thread::scope(|scope| {
            while !NsThread::stopping(stop) {
                match listener.accept() {
                    Ok((s, _)) => {
                        scope.spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                            let mut reader = std::io::BufReader::new(&s);
                            let mut line = String::new();
                            while !NsThread::stopping(stop) {
                                match std::io::BufRead::read_line(&mut reader, &mut line) {
                                    Ok(0) => break,
                                    Ok(_) => {
                                        let _ = (&s).write_all(format!("{me} {line}").as_bytes());
                                        line.clear();
                                    }
                                    Err(_) => {}
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
    })
}

/// A mail server that takes every message and keeps it: `220`, `250` to `EHLO`/`HELO`,
/// `MAIL`, `RCPT`, `354` to `DATA`, then the message up to the lone dot, `221` to `QUIT`.
/// Each message's text (headers and body) is pushed to the returned list.
#[must_use]
pub fn smtp_sink(
    ns: &Netns,
    port: u16,
) -> (NsThread, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let mails = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = mails.clone();
    let thread = ns.spawn_thread(move |stop: &AtomicBool| {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("listen");
        listener.set_nonblocking(true).unwrap();
        while !NsThread::stopping(stop) {
            let Ok((s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut reader = std::io::BufReader::new(&s);
            let mut out = &s;
            let _ = out.write_all(b"220 sink ESMTP\r\n");
            let (mut data, mut message) = (false, String::new());
            let mut line = String::new();
            // Bounded: a session ends at QUIT, at a read timeout or after 1,000 lines.
            for _ in 0..1000 {
                line.clear();
                match std::io::BufRead::read_line(&mut reader, &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if data {
                    if line.trim_end() == "." {
                        data = false;
                        kept.lock().unwrap().push(std::mem::take(&mut message));
                        let _ = out.write_all(b"250 kept\r\n");
                    } else {
                        message.push_str(&line);
                    }
                    continue;
                }
                let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "DATA" => {
                        data = true;
                        b"354 go on\r\n"
                    }
                    "QUIT" => {
                        let _ = out.write_all(b"221 bye\r\n");
                        break;
                    }
                    _ => b"250 ok\r\n",
                };
                let _ = out.write_all(reply);
            }
        }
    });
    (thread, mails)
}

/// `total` TCP connections to `to` from `ns`, `threads` at a time: each one's local port and
/// the answer as text.
#[must_use]
pub fn connect_many(
    ns: &Netns,
    to: SocketAddr,
    total: usize,
    threads: usize,
) -> Vec<(u16, String)> {
    ns.run(|| {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        (0..total / threads)
                            .map(|_| {
                                let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                                    .expect("connect through the balancer");
                                c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                                let port = c.local_addr().expect("local address").port();
                                let mut answer = String::new();
                                c.read_to_string(&mut answer).expect("answer");
                                (port, answer)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        })
    })
}

/// Makes `ns` resolve the MACs of `targets` on `dev` (a datagram to each from `from`), as the
/// daemon keeps its reals' neighbours resolved; waits up to 2 s for all of them.
pub fn warm_neighbours(ns: &Netns, from: IpAddr, targets: &[IpAddr], dev: &str) {
    ns.run(|| {
        let s = UdpSocket::bind((from, 0)).unwrap();
        for &a in targets {
            s.send_to(b"hello", (a, 9)).unwrap();
        }
    });
    for _ in 0..200 {
        let neigh = ns.output("ip", &["neigh", "show", "dev", dev]);
        let text = String::from_utf8_lossy(&neigh.stdout).into_owned();
        if targets
            .iter()
            .all(|a| text.contains(&format!("{a} lladdr")))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{dev}: neighbours {targets:?} not resolved in 2 s");
}

/// Attaches the test tunnel end (strips IPIP / IP6IP6) to `iface` in `ns`; detached when the
/// returned object drops.
#[must_use]
pub fn attach_decap(ns: &Netns, iface: &str) -> aya::Ebpf {
    let mut ebpf = aya::Ebpf::load(balancer::dataplane::xdp::DECAP_OBJECT).expect("load decap");
    let prog: &mut aya::programs::Xdp = ebpf
        .program_mut("decap")
        .expect("decap program")
        .try_into()
        .expect("an XDP program");
    prog.load().expect("verify decap");
    ns.run(|| prog.attach(iface, aya::programs::XdpMode::Driver))
        .expect("attach decap");
    ebpf
}

/// A bpf filesystem mounted in a temporary directory for one test, unmounted and removed on
/// drop: pinning tests never touch the host's /sys/fs/bpf.
pub struct Bpffs {
    root: std::path::PathBuf,
}

impl Bpffs {
    #[must_use]
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("blt-bpffs-{}-{n}", std::process::id()));
        balancer::dataplane::xdp::ensure_bpffs(&root).expect("mount a bpf filesystem");
        Self { root }
    }

    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        &self.root
    }
}

impl Default for Bpffs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        if let Ok(c) = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes()) {
            // SAFETY: a NUL-terminated path; MNT_DETACH never blocks.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// A directory for one test's files, removed on drop (also while the test panics).
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// A fresh `blt-PID-N-ROLE` directory under the system's temporary directory.
    #[must_use]
    pub fn new(role: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("blt-{}-{n}-{role}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        // Scripts run from here under script security: root-owned, not writable by others.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        Self(dir)
    }

    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path of `name` inside.
    #[must_use]
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// Writes a `#!/bin/sh` script `name` with `body`, mode 0755, and returns its path.
    #[must_use]
    pub fn script(&self, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.file(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A connection to an [`echo_server`] that stays open: asks its real through it at any time.
pub struct Held(TcpStream);

impl Held {
    /// Connects from `ns` to `to`.
    #[must_use]
    pub fn open(ns: &Netns, to: SocketAddr) -> Self {
        Self(ns.run(|| {
            let s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                .expect("connect through the balancer");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        }))
    }

    /// Sends `word` and returns which real echoed it.
    pub fn ask(&mut self, word: &str) -> String {
        self.0.write_all(format!("{word}\n").as_bytes()).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&self.0), &mut line)
            .expect("an echo");
        let (real, echoed) = line.trim_end().split_once(' ').expect("REAL WORD");
        assert_eq!(echoed, word);
        real.to_owned()
    }
}
