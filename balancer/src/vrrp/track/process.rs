//! `vrrp_track_process`: whether enough processes of a name run, as keepalived's
//! `track_process.c` decides it. The processes are found once by reading /proc, then
//! followed through the kernel's process events connector (fork, exec, name change, exit),
//! so nothing polls; where the connector cannot be opened, /proc is read again every second
//! (said in the log).
//!
//! A process matches by its name (`/proc/PID/comm`), or with `full_command` or parameters by
//! its command line (`/proc/PID/cmdline`): the first word exactly, then the parameters as
//! `param_match` says. Quorum holds while `quorum <= matching <= quorum_max`; gaining it waits
//! `fork_delay`, losing it `terminate_delay`, and a change undone within the delay is not
//! reported.

use std::{
    collections::HashSet,
    io,
    os::fd::AsRawFd as _,
    path::Path,
    time::{Duration, Instant},
};

use netlink_sys::{Socket, SocketAddr};
use tokio::{io::unix::AsyncFd, sync::mpsc::UnboundedSender};

use super::Update;

/// How the configured parameters meet a command line's.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ParamMatch {
    /// Exactly these parameters (none, if none are given).
    Exact,
    /// These first, then any.
    Partial,
    /// Exactly as many, the last one a prefix of the process's.
    Initial,
}

/// One `vrrp_track_process` as an instance tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackProcess {
    /// The block's name, for the log.
    pub name: String,
    /// The process name, or with `full_command` the command (argv\[0\]).
    pub process: String,
    pub params: Vec<String>,
    /// `None` with no parameters and no `param_match`: the parameters are not looked at.
    pub param_match: Option<ParamMatch>,
    pub full_command: bool,
    /// 0: FAULT without quorum (with `reverse`, with it). Else added while quorum holds
    /// (positive) or is lost (negative), negated by `reverse`.
    pub weight: i32,
    pub reverse: bool,
    pub quorum: u32,
    pub quorum_max: u32,
    pub fork_delay: Duration,
    pub terminate_delay: Duration,
}

impl TrackProcess {
    /// What a quorum state adds to the priority; `None` when it puts the instance in FAULT.
    #[must_use]
    pub fn contribution(&self, quorum: bool) -> Option<i32> {
        let sign = if self.reverse { -1 } else { 1 };
        if self.weight == 0 {
            return (quorum != self.reverse).then_some(0);
        }
        Some(if (self.weight > 0) == quorum {
            self.weight * sign
        } else {
            0
        })
    }

    /// Whether a process with name `comm` and command line `cmdline` (NUL-separated, as in
    /// /proc) is one of these.
    #[must_use]
    pub fn matches(&self, comm: &str, cmdline: &[u8]) -> bool {
        if !self.uses_cmdline() {
            // The kernel keeps 15 bytes of a name.
            let wanted = self.process.get(..15).unwrap_or(&self.process);
            return comm == wanted;
        }
        let mut words = cmdline
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned());
        let mut args: Vec<String> = words.by_ref().collect();
        if args.last().is_some_and(String::is_empty) {
            args.pop();
        }
        let Some((command, rest)) = args.split_first() else {
            return false;
        };
        if *command != self.process {
            return false;
        }
        let p = &self.params;
        match self.param_match {
            None => true,
            Some(ParamMatch::Exact) => rest == p.as_slice(),
            Some(ParamMatch::Partial) => rest.len() >= p.len() && rest[..p.len()] == p[..],
            Some(ParamMatch::Initial) => {
                rest.len() == p.len()
                    && match (p.split_last(), rest.split_last()) {
                        (Some((last, init)), Some((theirs, their_init))) => {
                            init == their_init && theirs.starts_with(last.as_str())
                        }
                        _ => true,
                    }
            }
        }
    }

    fn uses_cmdline(&self) -> bool {
        self.full_command || !self.params.is_empty() || self.param_match.is_some()
    }

    fn has_quorum(&self, count: usize) -> bool {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        count >= self.quorum && count <= self.quorum_max
    }

    /// Whether process `pid` matches now (it may have gone: then not).
    fn check(&self, pid: i32) -> bool {
        let dir = Path::new("/proc").join(pid.to_string());
        // Zombies have ended; keepalived does not count them.
        let zombie = std::fs::read_to_string(dir.join("stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        });
        if zombie {
            return false;
        }
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let cmdline = if self.uses_cmdline() {
            std::fs::read(dir.join("cmdline")).unwrap_or_default()
        } else {
            Vec::new()
        };
        self.matches(comm.trim_end_matches('\n'), &cmdline)
    }

    /// Every matching process now.
    fn scan(&self) -> HashSet<i32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return HashSet::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| self.check(*pid))
            .collect()
    }
}

/// `NETLINK_CONNECTOR`, and the process events' connector ID (`linux/connector.h`).
const NETLINK_CONNECTOR: isize = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `PROC_CN_MCAST_LISTEN`.
const LISTEN: u32 = 1;
/// `proc_event.what` (`linux/cn_proc.h`).
const FORK: u32 = 0x1;
const EXEC: u32 = 0x2;
const COMM: u32 = 0x200;
const EXIT: u32 = 0x8000_0000;
/// `nlmsghdr` and `cn_msg` before the event; the event's data after `what`, `cpu` and the
/// timestamp.
const NLMSG_LEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const EVENT_DATA: usize = NLMSG_LEN + CN_MSG_LEN + 16;

/// A process event that may change what matches.
#[derive(Debug, PartialEq, Eq)]
enum ProcEvent {
    /// A new process (not a thread): it runs its parent's program until it execs.
    Fork {
        child: i32,
    },
    /// Exec or a name change: look again.
    Changed {
        pid: i32,
    },
    Exit {
        pid: i32,
    },
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// The event in one netlink message from the connector, if it is one that matters.
fn parse_event(msg: &[u8]) -> Option<ProcEvent> {
    let idx = u32::from_ne_bytes(msg.get(NLMSG_LEN..NLMSG_LEN + 4)?.try_into().ok()?);
    if idx != CN_IDX_PROC {
        return None;
    }
    let at = NLMSG_LEN + CN_MSG_LEN;
    let what = u32::from_ne_bytes(msg.get(at..at + 4)?.try_into().ok()?);
    let d = EVENT_DATA;
    match what {
        FORK => {
            let (child_pid, child_tgid) = (read_i32(msg, d + 8)?, read_i32(msg, d + 12)?);
            (child_pid == child_tgid).then_some(ProcEvent::Fork { child: child_tgid })
        }
        EXEC | COMM => {
            let (pid, tgid) = (read_i32(msg, d)?, read_i32(msg, d + 4)?);
            (pid == tgid).then_some(ProcEvent::Changed { pid: tgid })
        }
        EXIT => {
            let (pid, tgid) = (read_i32(msg, d)?, read_i32(msg, d + 4)?);
            (pid == tgid).then_some(ProcEvent::Exit { pid: tgid })
        }
        _ => None,
    }
}

/// A socket subscribed to the process events connector (needs `CAP_NET_ADMIN`).
fn connector() -> io::Result<AsyncFd<Socket>> {
    let mut socket = Socket::new(NETLINK_CONNECTOR)?;
    socket.bind(&SocketAddr::new(0, CN_IDX_PROC))?;
    let mut msg = Vec::with_capacity(NLMSG_LEN + CN_MSG_LEN + 4);
    let len = u32::try_from(NLMSG_LEN + CN_MSG_LEN + 4).unwrap_or(0);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&3u16.to_ne_bytes()); // NLMSG_DONE
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    for word in [CN_IDX_PROC, CN_VAL_PROC, 0, 0] {
        msg.extend_from_slice(&word.to_ne_bytes());
    }
    msg.extend_from_slice(&4u16.to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&LISTEN.to_ne_bytes());
    socket.send_to(&msg, &SocketAddr::new(0, 0), 0)?;
    socket.set_non_blocking(true)?;
    // SAFETY: the socket owns its descriptor, which stays open until the AsyncFd (which
    // owns the socket) drops.
    unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)
}

/// Reads what the connector has queued; `Err` with `ENOBUFS` when events were lost.
fn drain(socket: &Socket, events: &mut Vec<ProcEvent>) -> io::Result<()> {
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: a valid socket and a buffer of the length given.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        let Ok(n) = usize::try_from(n) else {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(())
            } else {
                Err(e)
            };
        };
        let mut at = 0;
        while at + NLMSG_LEN <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
            if len < NLMSG_LEN || at + len > n {
                break;
            }
            events.extend(parse_event(&buf[at..at + len]));
            at += len.next_multiple_of(4);
        }
    }
}

/// Follows `track`'s processes and reports its quorum on `updates` (at once, then on each
/// change that outlasts its delay).
pub async fn run(index: usize, track: TrackProcess, updates: UnboundedSender<Update>) {
    let socket = match connector() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(vrrp_track_process = track.name, error = %e, "no process events: /proc is read every second");
            None
        }
    };
    let mut pids = track.scan();
    let mut reported = track.has_quorum(pids.len());
    tracing::info!(
        vrrp_track_process = track.name,
        processes = pids.len(),
        quorum = reported,
        "tracking processes"
    );
    if updates
        .send(Update::Process {
            index,
            ok: reported,
        })
        .is_err()
    {
        return;
    }
    let mut pending: Option<(bool, Instant)> = None;
    loop {
        let deadline = pending.map(|(_, at)| at);
        let wait = async {
            if let Some(s) = &socket {
                s.readable()
                    .await
                    .map(|mut g| g.clear_ready())
                    .map_err(drop)
            } else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Err(())
            }
        };
        tokio::select! {
            ready = wait => {
                let mut events = Vec::new();
                let lost = match (&socket, ready) {
                    (Some(s), Ok(())) => drain(s.get_ref(), &mut events).is_err(),
                    _ => true,
                };
                if lost {
                    pids = track.scan();
                }
                for e in events {
                    match e {
                        ProcEvent::Fork { child } | ProcEvent::Changed { pid: child } => {
                            if track.check(child) {
                                pids.insert(child);
                            } else {
                                pids.remove(&child);
                            }
                        }
                        ProcEvent::Exit { pid } => {
                            pids.remove(&pid);
                        }
                    }
                }
            }
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some((quorum, _)) = pending.take() {
                    reported = quorum;
                    tracing::info!(vrrp_track_process = track.name, processes = pids.len(), "quorum {}", if quorum { "gained" } else { "lost" });
                    if updates.send(Update::Process { index, ok: quorum }).is_err() {
                        return;
                    }
                }
            }
        }
        let quorum = track.has_quorum(pids.len());
        if quorum == reported {
            pending = None;
        } else if pending.is_none_or(|(q, _)| q != quorum) {
            let delay = if quorum {
                track.fork_delay
            } else {
                track.terminate_delay
            };
            pending = Some((quorum, Instant::now() + delay));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(process: &str) -> TrackProcess {
        TrackProcess {
            name: "t".into(),
            process: process.into(),
            params: Vec::new(),
            param_match: None,
            full_command: false,
            weight: 0,
            reverse: false,
            quorum: 1,
            quorum_max: u32::MAX,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
        }
    }

    #[test]
    fn names_match_exactly_as_the_kernel_keeps_them() {
        let t = track("haproxy");
        assert!(t.matches("haproxy", b""));
        // pgrep would match these; keepalived's track_process does not.
        assert!(!t.matches("haproxy-ctl", b""));
        assert!(!t.matches("hap", b""));
        // A name longer than the kernel keeps is compared on its first 15 bytes.
        assert!(track("a-very-long-daemon-name").matches("a-very-long-dae", b""));
    }

    #[test]
    fn command_lines_match_by_command_then_parameters() {
        let line = b"/usr/sbin/haproxy\0-f\0/etc/haproxy/haproxy.cfg\0";
        let mut t = track("/usr/sbin/haproxy");
        t.full_command = true;
        assert!(t.matches("haproxy", line));
        assert!(!t.matches("haproxy", b"haproxy\0-f\0"));
        t.params = vec!["-f".into(), "/etc/haproxy/haproxy.cfg".into()];
        t.param_match = Some(ParamMatch::Exact);
        assert!(t.matches("haproxy", line));
        t.params.pop();
        assert!(!t.matches("haproxy", line), "exact: one parameter too many");
        t.param_match = Some(ParamMatch::Partial);
        assert!(t.matches("haproxy", line));
        t.params = vec!["-f".into(), "/etc/hap".into()];
        t.param_match = Some(ParamMatch::Initial);
        assert!(t.matches("haproxy", line));
        t.params = vec!["-f".into()];
        assert!(!t.matches("haproxy", line), "initial: as many parameters");
        // param_match with no parameters: the command must have none.
        t.params.clear();
        t.param_match = Some(ParamMatch::Exact);
        assert!(!t.matches("haproxy", line));
        assert!(t.matches("haproxy", b"/usr/sbin/haproxy\0"));
    }

    #[test]
    fn weights_and_reverse_as_keepalived_applies_them() {
        let mut t = track("x");
        // Weight 0: FAULT without quorum; reversed, FAULT with it.
        assert_eq!(
            (t.contribution(true), t.contribution(false)),
            (Some(0), None)
        );
        t.reverse = true;
        assert_eq!(
            (t.contribution(true), t.contribution(false)),
            (None, Some(0))
        );
        // Positive: added with quorum; negative: added without; reverse negates.
        for (weight, reverse, with, without) in [
            (10, false, 10, 0),
            (-10, false, 0, -10),
            (10, true, -10, 0),
            (-10, true, 0, 10),
        ] {
            t.weight = weight;
            t.reverse = reverse;
            assert_eq!(
                (t.contribution(true), t.contribution(false)),
                (Some(with), Some(without)),
                "{weight} {reverse}"
            );
        }
    }

    #[test]
    fn quorum_counts_between_quorum_and_quorum_max() {
        let mut t = track("x");
        t.quorum = 2;
        t.quorum_max = 3;
        assert_eq!(
            (0..5).map(|n| t.has_quorum(n)).collect::<Vec<_>>(),
            [false, false, true, true, false]
        );
    }

    /// Root, in the initial network namespace (the only one the kernel sends process
    /// events to): the exec and the exit of a process started here arrive as events.
    #[test]
    fn the_connector_reports_a_process_exec_and_exit() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: the process events connector needs root");
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let socket = connector().expect("process events (root, initial namespace)");
            let mut child = std::process::Command::new("/bin/sleep")
                .arg("30")
                .spawn()
                .expect("sleep");
            let pid = i32::try_from(child.id()).unwrap();
            let mut seen = Vec::new();
            let mut killed = false;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !seen.contains(&ProcEvent::Exit { pid }) {
                let ready = tokio::time::timeout_at(deadline, socket.readable()).await;
                let Ok(Ok(mut guard)) = ready else { break };
                guard.clear_ready();
                drain(socket.get_ref(), &mut seen).expect("events");
                if !killed && seen.contains(&ProcEvent::Changed { pid }) {
                    let _ = child.kill();
                    let _ = child.wait();
                    killed = true;
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                seen.contains(&ProcEvent::Changed { pid }),
                "no exec of {pid}"
            );
            assert!(seen.contains(&ProcEvent::Exit { pid }), "no exit of {pid}");
        });
    }

    #[test]
    fn connector_messages_are_read_for_processes_not_threads() {
        let event = |what: u32, words: [i32; 4]| {
            let mut m = vec![0u8; NLMSG_LEN];
            m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
            m.extend_from_slice(&[0; CN_MSG_LEN - 4]);
            m.extend_from_slice(&what.to_ne_bytes());
            m.extend_from_slice(&[0; 12]);
            for w in words {
                m.extend_from_slice(&w.to_ne_bytes());
            }
            m
        };
        assert_eq!(
            parse_event(&event(FORK, [1, 1, 42, 42])),
            Some(ProcEvent::Fork { child: 42 })
        );
        assert_eq!(parse_event(&event(FORK, [1, 1, 43, 42])), None, "a thread");
        assert_eq!(
            parse_event(&event(EXEC, [42, 42, 0, 0])),
            Some(ProcEvent::Changed { pid: 42 })
        );
        assert_eq!(
            parse_event(&event(COMM, [42, 42, 0, 0])),
            Some(ProcEvent::Changed { pid: 42 })
        );
        assert_eq!(
            parse_event(&event(EXIT, [42, 42, 0, 0])),
            Some(ProcEvent::Exit { pid: 42 })
        );
        assert_eq!(parse_event(&event(EXIT, [43, 42, 0, 0])), None, "a thread");
        assert_eq!(parse_event(&event(0x4, [42, 42, 0, 0])), None, "uid change");
    }
}
