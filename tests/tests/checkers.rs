//! Health checkers against real servers in a network namespace: a TCP listener and a tiny HTTP
//! responder that the test starts, breaks (stops listening, answers a wrong status) and
//! restores, while the checkers (built from lb.toml, run from a checker namespace) set the
//! real's weight in a recording data plane. Needs root.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, TcpListener},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use balancer::{
    check::{self, ScriptPolicy, SharedDataplane},
    config::schema::lvs::VirtualServer,
    dataplane::{Dataplane, DataplaneError},
    model::VirtualService,
    notify::ScriptUser,
};
use balancer_tests::{Netns, NsThread, require_root, veth_pair};

const REAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);

const VIRTUAL_SERVER: &str = r#"
ip = "198.18.0.100"
port = 80
delay_loop = 0.2
[[real_server]]
ip = "198.18.0.11"
weight = 5
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
"#;

/// The weights the checkers set, by real.
#[derive(Default)]
struct Recorder {
    weights: HashMap<(IpAddr, u16), u32>,
    writes: usize,
}

impl Dataplane for Recorder {
    fn apply(&mut self, _: &str, _: &VirtualService) -> Result<(), DataplaneError> {
        Ok(())
    }
    fn remove(&mut self, _: &str) -> Result<(), DataplaneError> {
        Ok(())
    }
    fn set_weight(
        &mut self,
        name: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError> {
        assert_eq!(name, "web");
        self.weights.insert((addr, port), weight);
        self.writes += 1;
        Ok(())
    }
}

/// Accepts and closes connections on `port` until stopped.
fn tcp_server(ns: &Netns, port: u16) -> NsThread {
    ns.spawn_thread(move |stop: &AtomicBool| {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("listen");
        listener.set_nonblocking(true).unwrap();
        while !NsThread::stopping(stop) {
            if listener.accept().is_err() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
}

/// Answers every HTTP request on `port` with the status `status` holds and the body `ok`
/// (MD5 444bcb3a3fcf8389296c49467f27e1d6).
fn http_server(ns: &Netns, port: u16, status: Arc<AtomicU16>) -> NsThread {
    ns.spawn_thread(move |stop: &AtomicBool| {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("listen");
        listener.set_nonblocking(true).unwrap();
        while !NsThread::stopping(stop) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut buf = [0; 2048];
            let _ = s.read(&mut buf);
            let code = status.load(Ordering::Relaxed);
            let _ = s.write_all(
                format!("HTTP/1.0 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .as_bytes(),
            );
        }
    })
}

/// Waits (bounded) until the recorded weight of the real is `want`.
fn wait_weight(recorder: &Mutex<Recorder>, want: Option<u32>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = recorder
            .lock()
            .unwrap()
            .weights
            .get(&(IpAddr::V4(REAL), 80))
            .copied();
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

#[test]
fn checkers_drain_a_broken_real_and_restore_it() {
    require_root!();
    let lb = Netns::new("cklb");
    let real = Netns::new("ckreal");
    lb.disable_ipv6();
    real.disable_ipv6();
    veth_pair(&lb, "c0", &real, "r0");
    lb.ip(&["addr", "add", "198.18.0.1/24", "dev", "c0"]);
    real.ip(&["addr", "add", "198.18.0.11/24", "dev", "r0"]);

    let status = Arc::new(AtomicU16::new(200));
    let mut tcp = Some(tcp_server(&real, 80));
    let _http = http_server(&real, 8080, status.clone());

    let vs: VirtualServer = toml::from_str(VIRTUAL_SERVER).unwrap();
    let policy = ScriptPolicy {
        user: ScriptUser::current(),
        security: false,
    };
    let checks = check::service_checks("web", &vs, &policy).unwrap();
    assert_eq!(checks.reals[0].checkers.len(), 2);
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let dataplane: SharedDataplane = recorder.clone();
    // The checkers run on a runtime of a thread inside the checker namespace, so every socket
    // they open is that namespace's.
    let _checkers = lb.spawn_thread(move |stop: &AtomicBool| {
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

    // Healthy: the checkers never touch the configured weight.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        recorder.lock().unwrap().writes,
        0,
        "a healthy real was written"
    );

    status.store(500, Ordering::Relaxed);
    wait_weight(&recorder, Some(0), "HTTP_GET answered 500");
    status.store(202, Ordering::Relaxed);
    wait_weight(&recorder, Some(5), "HTTP_GET answers 202 again");

    drop(tcp.take());
    wait_weight(&recorder, Some(0), "nothing listens on port 80");
    tcp = Some(tcp_server(&real, 80));
    wait_weight(&recorder, Some(5), "port 80 listens again");
    drop(tcp);
}
