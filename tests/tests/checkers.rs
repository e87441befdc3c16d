//! Health checkers against real servers in a network namespace: TCP, HTTP, TLS, SMTP, DNS and
//! UDP responders and the real's ICMP echo, which the test starts, breaks (wrong status,
//! wrong body, too slow, reset, silence, port closed) and restores, while the checkers (built
//! from lb.toml, run from a checker namespace) set the real's weight in a recording data
//! plane and run notify scripts that log their words. Needs root.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use balancer::{
    check::{self, Globals, ScriptPolicy, recording::RecordingDataplane},
    config::schema::lvs::VirtualServer,
    notify::ScriptUser,
};
use balancer_tests::{Netns, NsThread, lab::TempDir, require_root, veth_pair, wait_until};

const REAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
/// The real's configured weight.
const WEIGHT: u32 = 5;

/// A checker namespace and a real's namespace joined by a veth pair, and a directory for the
/// notify scripts and their log.
struct Case {
    lb: Netns,
    real: Netns,
    dir: TempDir,
}

impl Case {
    fn new(tag: &str) -> Self {
        let lb = Netns::new(&format!("ck{tag}lb"));
        let real = Netns::new(&format!("ck{tag}r"));
        lb.disable_ipv6();
        real.disable_ipv6();
        veth_pair(&lb, "c0", &real, "r0");
        lb.ip(&["addr", "add", "198.18.0.1/24", "dev", "c0"]);
        real.ip(&["addr", "add", "198.18.0.11/24", "dev", "r0"]);
        let dir = TempDir::new(&format!("ck{tag}"));
        Self { lb, real, dir }
    }

    /// A virtual server with one real on `port` and `checkers` (TOML tables under the real),
    /// its notify scripts logging to `notify.log`.
    fn virtual_server(&self, port: u16, extra: &str, checkers: &str) -> VirtualServer {
        let log = self.dir.file("notify.log");
        let script = self.dir.script(
            "notify.sh",
            &format!("echo \"$*\" >> {}", log.to_string_lossy()),
        );
        let text = format!(
            r#"
ip = "198.18.0.100"
port = {port}
delay_loop = 0.2
quorum_up = "{script} quorum_up"
quorum_down = "{script} quorum_down"
{extra}
[[real_server]]
ip = "198.18.0.11"
weight = {WEIGHT}
notify_up = "{script} up 198.18.0.11"
notify_down = "{script} down 198.18.0.11"
{checkers}
"#
        );
        toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Starts the checkers of `vs` on a runtime of a thread inside the checker namespace, so
    /// that every socket they open is that namespace's. Dropping the guard stops them (and
    /// runs the `omega` scripts).
    fn start(&self, vs: &VirtualServer) -> (Arc<Mutex<RecordingDataplane>>, NsThread) {
        let scripts = ScriptPolicy {
            user: ScriptUser::current(),
            security: false,
        };
        let globals = Globals::new(scripts, None).unwrap();
        let checks = check::service_checks("web", vs, &globals).unwrap();
        let (recorder, dataplane) = RecordingDataplane::shared();
        let thread = self.lb.spawn_thread(move |stop: &AtomicBool| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let handle = check::spawn(vec![checks], &dataplane, 16);
                while !NsThread::stopping(stop) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                handle.stop().await;
            });
        });
        (recorder, thread)
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.file("notify.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits (bounded) until the notify scripts logged exactly `want`.
    fn wait_log(&self, want: &[String], what: &str) {
        let ok = wait_until(Duration::from_secs(10), || self.log() == want);
        assert!(ok, "{what}: notify log {:?}, expected {want:?}", self.log());
    }
}

/// Waits (bounded) until the recorded weight of the real on `port` is `want`.
fn wait_weight(recorder: &Mutex<RecordingDataplane>, port: u16, want: Option<u32>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = RecordingDataplane::lock(recorder).weight(IpAddr::V4(REAL), port);
        if seen == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: weight {seen:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A healthy real is never written and nothing is notified; then each broken mode drains
/// the real (weight 0, `notify_down`, `quorum_down`) and the good one restores it (the
/// configured weight, `notify_up`, `quorum_up`).
fn break_and_restore(
    case: &Case,
    recorder: &Mutex<RecordingDataplane>,
    port: u16,
    mode: &AtomicU8,
    broken: &[(u8, &str)],
) {
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        RecordingDataplane::lock(recorder).writes,
        [],
        "a healthy real was written"
    );
    assert_eq!(case.log(), Vec::<String>::new(), "a healthy real notified");
    let mut log = Vec::new();
    for &(m, what) in broken {
        mode.store(m, Ordering::Relaxed);
        wait_weight(recorder, port, Some(0), what);
        log.extend(["down 198.18.0.11".to_owned(), "quorum_down".to_owned()]);
        case.wait_log(&log, what);
        mode.store(GOOD, Ordering::Relaxed);
        wait_weight(
            recorder,
            port,
            Some(WEIGHT),
            &format!("restored after {what}"),
        );
        log.extend(["up 198.18.0.11".to_owned(), "quorum_up".to_owned()]);
        case.wait_log(&log, &format!("restored after {what}"));
    }
}

/// Servers' modes: answer as configured, or break one way or another.
const GOOD: u8 = 0;
const WRONG_STATUS: u8 = 1;
const WRONG_BODY: u8 = 2;
const SLOW: u8 = 3;
const RESET: u8 = 4;
const SILENT: u8 = 5;
const CLOSED: u8 = 6;

/// Accepts connections on `port` and serves each on its own thread with `serve(stream,
/// mode)`, except in `RESET` mode (the connection is reset at once) and `SILENT` mode (it is
/// held, unanswered, for three seconds).
fn tcp_service(ns: &Netns, port: u16, mode: Arc<AtomicU8>, serve: fn(TcpStream, u8)) -> NsThread {
    ns.spawn_thread(move |stop: &AtomicBool| {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("listen");
        listener.set_nonblocking(true).unwrap();
        while !NsThread::stopping(stop) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            match mode.load(Ordering::Relaxed) {
                RESET => {
                    // SO_LINGER 0: close sends a reset.
                    socket2::SockRef::from(&stream)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                }
                SILENT => {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(3));
                        drop(stream);
                    });
                }
                m => {
                    std::thread::spawn(move || {
                        if m == SLOW {
                            // Longer than the checkers' connect_timeout of 1 s.
                            std::thread::sleep(Duration::from_millis(1500));
                        }
                        serve(stream, m);
                    });
                }
            }
        }
    })
}

/// An HTTP answer to one request: 200 with the body `ok` (MD5
/// 444bcb3a3fcf8389296c49467f27e1d6), or 500, or 200 with another body.
fn http_answer(mode: u8) -> String {
    let (code, body) = match mode {
        WRONG_STATUS => (500, "ok"),
        WRONG_BODY => (200, "ko"),
        _ => (200, "ok"),
    };
    format!("HTTP/1.0 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{body}")
}

/// Reads a request head (bounded) and answers it.
fn serve_http(mut stream: impl std::io::Read + std::io::Write, mode: u8) {
    let mut head = Vec::new();
    let mut buf = [0; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(http_answer(mode).as_bytes());
    let _ = stream.flush();
}

fn serve_plain_http(stream: TcpStream, mode: u8) {
    serve_http(stream, mode);
}

#[test]
fn tcp_check_and_http_get_drain_a_broken_real_and_restore_it() {
    require_root!();
    let case = Case::new("http");
    let http_mode = Arc::new(AtomicU8::new(GOOD));
    let tcp = tcp_service(&case.real, 80, Arc::new(AtomicU8::new(GOOD)), |_, _| {});
    let _http = tcp_service(&case.real, 8080, http_mode.clone(), serve_plain_http);
    let vs = case.virtual_server(
        80,
        "",
        r#"
[[real_server.TCP_CHECK]]
connect_timeout = 1
retry = 1
delay_before_retry = 0.1
[[real_server.HTTP_GET]]
connect_port = 8080
connect_timeout = 1
retry = 1
delay_before_retry = 0.1
url = [{ path = "/health", status_code = ["200-299"], digest = "444bcb3a3fcf8389296c49467f27e1d6" }]
"#,
    );
    let (recorder, _checkers) = case.start(&vs);
    break_and_restore(
        &case,
        &recorder,
        80,
        &http_mode,
        &[
            (WRONG_STATUS, "HTTP_GET answered 500"),
            (WRONG_BODY, "HTTP_GET answered another body"),
            (SLOW, "HTTP_GET answered too late"),
            (RESET, "HTTP_GET was reset"),
            (SILENT, "HTTP_GET got no answer"),
        ],
    );
    // The TCP_CHECK: a port nobody listens on fails it.
    let mut log = case.log();
    drop(tcp);
    wait_weight(&recorder, 80, Some(0), "nothing listens on port 80");
    log.extend(["down 198.18.0.11".to_owned(), "quorum_down".to_owned()]);
    case.wait_log(&log, "nothing listens on port 80");
    let _tcp = tcp_service(&case.real, 80, Arc::new(AtomicU8::new(GOOD)), |_, _| {});
    wait_weight(&recorder, 80, Some(WEIGHT), "port 80 listens again");
    log.extend(["up 198.18.0.11".to_owned(), "quorum_up".to_owned()]);
    case.wait_log(&log, "port 80 listens again");
}

/// A server configuration with a certificate made here for a name the checker never asks
/// for: keepalived's `SSL_GET` accepts any certificate.
fn tls_config() -> Arc<rustls::ServerConfig> {
    let key = rcgen::generate_simple_self_signed(vec!["real.invalid".into()]).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![key.cert.der().clone()],
        rustls::pki_types::PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()).into(),
    )
    .unwrap();
    Arc::new(config)
}

static TLS: std::sync::OnceLock<Arc<rustls::ServerConfig>> = std::sync::OnceLock::new();

fn serve_https(stream: TcpStream, mode: u8) {
    let Some(config) = TLS.get() else { return };
    let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    serve_http(&mut tls, mode);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

#[test]
fn ssl_get_follows_status_digest_delay_reset_and_silence_and_omega_notifies_at_stop() {
    require_root!();
    let _ = TLS.set(tls_config());
    let case = Case::new("tls");
    let mode = Arc::new(AtomicU8::new(GOOD));
    let _https = tcp_service(&case.real, 443, mode.clone(), serve_https);
    let vs = case.virtual_server(
        443,
        "omega = true",
        r#"
[[real_server.SSL_GET]]
connect_timeout = 1
retry = 1
delay_before_retry = 0.1
url = [{ path = "/health", status_code = ["200"], digest = "444bcb3a3fcf8389296c49467f27e1d6" }]
"#,
    );
    let (recorder, checkers) = case.start(&vs);
    break_and_restore(
        &case,
        &recorder,
        443,
        &mode,
        &[
            (WRONG_STATUS, "SSL_GET answered 500"),
            (WRONG_BODY, "SSL_GET answered another body"),
            (SLOW, "SSL_GET answered too late"),
            (RESET, "SSL_GET was reset"),
            (SILENT, "SSL_GET got no answer"),
        ],
    );
    // omega: stopping the checkers runs the live real's notify_down and quorum_down.
    let before = case.log();
    drop(checkers);
    let mut want = before;
    want.extend(["down 198.18.0.11".to_owned(), "quorum_down".to_owned()]);
    case.wait_log(&want, "omega at shutdown");
}

/// A minimal SMTP responder: a 220 banner and 250 to HELO, or a 554 banner, or 500 to HELO.
fn serve_smtp(stream: TcpStream, mode: u8) {
    let Ok(read) = stream.try_clone() else { return };
    let mut lines = BufReader::new(read).lines();
    let mut stream = stream;
    let banner = if mode == WRONG_STATUS {
        "554 no service\r\n"
    } else {
        "220 real ESMTP\r\n"
    };
    if stream.write_all(banner.as_bytes()).is_err() || mode == WRONG_STATUS {
        return;
    }
    let Some(Ok(helo)) = lines.next() else { return };
    let reply = if mode == WRONG_BODY || !helo.starts_with("HELO ") {
        "500 what\r\n"
    } else {
        "250 hello\r\n"
    };
    let _ = stream.write_all(reply.as_bytes());
    if let Some(Ok(quit)) = lines.next()
        && quit == "QUIT"
    {
        let _ = stream.write_all(b"221 bye\r\n");
    }
}

#[test]
fn smtp_check_follows_banner_helo_and_silence() {
    require_root!();
    let case = Case::new("smtp");
    let mode = Arc::new(AtomicU8::new(GOOD));
    let _smtp = tcp_service(&case.real, 25, mode.clone(), serve_smtp);
    let vs = case.virtual_server(
        25,
        "",
        r"
[[real_server.SMTP_CHECK]]
connect_timeout = 1
retry = 1
delay_before_retry = 0.1
",
    );
    let (recorder, _checkers) = case.start(&vs);
    break_and_restore(
        &case,
        &recorder,
        25,
        &mode,
        &[
            (WRONG_STATUS, "SMTP banner 554"),
            (WRONG_BODY, "HELO answered 500"),
            (SILENT, "SMTP server silent"),
            (RESET, "SMTP connection reset"),
        ],
    );
}

/// Answers datagrams on `port` with `answer(datagram, mode)` (nothing for `None`); in
/// `CLOSED` mode the port is closed, so that the kernel answers port unreachable.
fn udp_service(
    ns: &Netns,
    port: u16,
    mode: Arc<AtomicU8>,
    answer: fn(&[u8], u8) -> Option<Vec<u8>>,
) -> NsThread {
    ns.spawn_thread(move |stop: &AtomicBool| {
        let mut socket: Option<UdpSocket> = None;
        let mut buf = [0; 2048];
        while !NsThread::stopping(stop) {
            let m = mode.load(Ordering::Relaxed);
            if m == CLOSED {
                socket = None;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let s = socket.get_or_insert_with(|| {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind");
                s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                s
            });
            if let Ok((n, from)) = s.recv_from(&mut buf)
                && let Some(reply) = answer(&buf[..n], m)
            {
                let _ = s.send_to(&reply, from);
            }
        }
    })
}

/// The query turned into an answer: QR set, RCODE NOERROR, or REFUSED (RFC 1035 §4.1.1).
fn dns_answer(query: &[u8], mode: u8) -> Option<Vec<u8>> {
    let mut reply = query.to_vec();
    if reply.len() < 12 || mode == SILENT {
        return None;
    }
    reply[2] |= 0x80;
    reply[3] = (reply[3] & 0xf0) | if mode == WRONG_STATUS { 5 } else { 0 };
    Some(reply)
}

#[test]
fn dns_check_follows_rcode_silence_and_a_closed_port() {
    require_root!();
    let case = Case::new("dns");
    let mode = Arc::new(AtomicU8::new(GOOD));
    let _dns = udp_service(&case.real, 53, mode.clone(), dns_answer);
    let vs = case.virtual_server(
        53,
        r#"protocol = "UDP""#,
        r#"
[[real_server.DNS_CHECK]]
connect_timeout = 1
retry = 1
delay_before_retry = 0.1
type = "A"
name = "real.test"
"#,
    );
    let (recorder, _checkers) = case.start(&vs);
    break_and_restore(
        &case,
        &recorder,
        53,
        &mode,
        &[
            (WRONG_STATUS, "DNS answered REFUSED"),
            (SILENT, "DNS server silent"),
            (CLOSED, "DNS port closed"),
        ],
    );
}

/// `ca fe` and the query's length, or another first octet.
fn udp_answer(_: &[u8], mode: u8) -> Option<Vec<u8>> {
    match mode {
        SILENT => None,
        WRONG_BODY => Some(vec![0xcb, 0xfe, 0x01]),
        _ => Some(vec![0xca, 0xfe, 0x01]),
    }
}

#[test]
fn udp_check_follows_the_reply_and_port_unreachable() {
    require_root!();
    let case = Case::new("udp");
    let mode = Arc::new(AtomicU8::new(GOOD));
    let _udp = udp_service(&case.real, 5000, mode.clone(), udp_answer);
    let vs = case.virtual_server(
        5000,
        r#"protocol = "UDP""#,
        r#"
[[real_server.UDP_CHECK]]
connect_timeout = 1
retry = 1
delay_before_retry = 0.1
payload = "68 65 6c 6c 6f"
reply = "ca fx"
min_reply_length = 2
"#,
    );
    let (recorder, _checkers) = case.start(&vs);
    break_and_restore(
        &case,
        &recorder,
        5000,
        &mode,
        &[
            (WRONG_BODY, "UDP answer does not match"),
            (SILENT, "UDP server silent with require_reply"),
            (CLOSED, "UDP port unreachable"),
        ],
    );
}

#[test]
fn ping_check_follows_the_real_s_echo_replies() {
    require_root!();
    let case = Case::new("ping");
    let vs = case.virtual_server(
        80,
        "",
        r"
[[real_server.PING_CHECK]]
connect_timeout = 1
retry = 1
delay_before_retry = 0.1
",
    );
    let (recorder, _checkers) = case.start(&vs);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(RecordingDataplane::lock(&recorder).writes, []);
    case.real.sysctl("net.ipv4.icmp_echo_ignore_all", "1");
    wait_weight(&recorder, 80, Some(0), "the real ignores echo requests");
    let mut log = vec!["down 198.18.0.11".to_owned(), "quorum_down".to_owned()];
    case.wait_log(&log, "the real ignores echo requests");
    case.real.sysctl("net.ipv4.icmp_echo_ignore_all", "0");
    wait_weight(&recorder, 80, Some(WEIGHT), "the real answers again");
    log.extend(["up 198.18.0.11".to_owned(), "quorum_up".to_owned()]);
    case.wait_log(&log, "the real answers again");
}
