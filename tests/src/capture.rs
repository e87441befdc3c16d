//! Frames seen on an interface inside a namespace, captured by an `AF_PACKET` socket on a
//! thread there, for tests that assert what went over the wire.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::{Duration, Instant},
};

use crate::{Netns, NsThread};

/// Every frame that `interface` received or sent since [`Capture::start`], until dropped.
pub struct Capture {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    _thread: NsThread,
}

impl Capture {
    /// Starts capturing on `interface` in `ns`; frames are recorded once this returns.
    ///
    /// # Panics
    /// The socket cannot be opened or bound.
    #[must_use]
    pub fn start(ns: &Netns, interface: &str) -> Self {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let sink = frames.clone();
        let interface = interface.to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = ns.spawn_thread(move |stop: &AtomicBool| {
            let fd = open(&interface).unwrap_or_else(|e| panic!("capture on {interface}: {e}"));
            let _ = ready_tx.send(());
            let mut buf = vec![0u8; 65536];
            while !NsThread::stopping(stop) {
                // SAFETY: a valid socket and a writable buffer of the length given.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if let Ok(n) = usize::try_from(n) {
                    sink.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("capture thread did not start");
        Self {
            frames,
            _thread: thread,
        }
    }

    /// Whether a frame matching `pred` was captured within `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[u8]) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.frames.lock().unwrap().iter().any(|f| pred(f)) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many captured frames match `pred`.
    pub fn count(&self, pred: impl Fn(&[u8]) -> bool) -> usize {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| pred(f))
            .count()
    }
}

fn open(interface: &str) -> io::Result<OwnedFd> {
    let all = u16::try_from(libc::ETH_P_ALL).unwrap().to_be();
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = CString::new(interface).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
    addr.sll_protocol = all;
    addr.sll_ifindex = i32::try_from(index).unwrap();
    let len = u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap();
    // SAFETY: a valid socket and address of the length given.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Bounded reads, so the thread sees its stop flag.
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    let len = u32::try_from(size_of::<libc::timeval>()).unwrap();
    // SAFETY: a valid socket and a timeval of the length given.
    if unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            len,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Whether `frame` is a gratuitous ARP for `vip`: sender and target protocol address both
/// the VIP (an ARP announcement, request or reply).
#[must_use]
pub fn is_gratuitous_arp(frame: &[u8], vip: std::net::Ipv4Addr) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x06]
        && frame[28..32] == vip.octets()
        && frame[38..42] == vip.octets()
}

/// Whether `frame` is an unsolicited neighbour advertisement for `vip`: ICMPv6 type 136 with
/// the Override flag, hop limit 255, to all nodes.
#[must_use]
pub fn is_unsolicited_na(frame: &[u8], vip: std::net::Ipv6Addr) -> bool {
    frame.len() >= 14 + 40 + 24
        && frame[12..14] == [0x86, 0xdd]
        && frame[14 + 6] == 58
        && frame[14 + 7] == 255
        && frame[14 + 24..14 + 40] == std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets()
        && frame[54] == 136
        && frame[58] & 0x20 != 0
        && frame[62..78] == vip.octets()
}
