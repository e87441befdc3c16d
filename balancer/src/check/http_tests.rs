use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// Answers every connection with `status` and `body`, and records the request heads.
async fn responder(
    status: u16,
    body: &'static str,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut heads = Vec::new();
        while let Ok(Ok((mut s, _))) =
            tokio::time::timeout(Duration::from_millis(300), listener.accept()).await
        {
            let mut buf = vec![0; 4096];
            let n = s.read(&mut buf).await.unwrap();
            heads.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let answer = format!(
                "HTTP/1.0 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
        }
        heads
    });
    (addr, task)
}

fn check(to: SocketAddr, url: UrlCheck) -> HttpCheck {
    HttpCheck {
        connect: Connect {
            to,
            bind_ip: None,
            bind_port: None,
            timeout: Duration::from_secs(2),
            fwmark: None,
        },
        urls: vec![url],
        protocol: HttpProtocol::default(),
        tls: None,
    }
}

#[test]
fn status_codes_default_to_2xx_and_take_ranges() {
    let default = StatusCodes::parse(&[]).unwrap();
    assert!(default.contains(200) && default.contains(299) && !default.contains(301));
    let some = StatusCodes::parse(&["301".into(), "400-404".into()]).unwrap();
    assert!(some.contains(301) && some.contains(403) && !some.contains(200));
    for bad in ["abc", "99", "600", "300-200", "200-"] {
        assert!(StatusCodes::parse(&[bad.into()]).is_err(), "{bad}");
    }
}

#[test]
fn digest_is_genhash_md5() {
    // `echo -n hello | md5sum`
    assert_eq!(digest(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    assert!(UrlCheck::new("/".into(), &[], Some("XYZ"), None).is_err());
    let url = UrlCheck::new(
        "/".into(),
        &[],
        Some("5D41402ABC4B2A76B9719D911017C592"),
        None,
    );
    assert_eq!(
        url.unwrap().digest.as_deref(),
        Some("5d41402abc4b2a76b9719d911017c592")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn status_and_digest_decide_and_the_host_header_is_sent() {
    let (addr, server) = responder(200, "hello").await;
    let mut url = UrlCheck::new(
        "/health".into(),
        &[],
        Some("5d41402abc4b2a76b9719d911017c592"),
        Some("www.example".into()),
    )
    .unwrap();
    assert_eq!(check(addr, url.clone()).attempt().await, Verdict::UP);
    url.digest = Some(digest(b"other"));
    let Verdict::Down { reason } = check(addr, url.clone()).attempt().await else {
        panic!("a wrong digest passed");
    };
    assert!(reason.contains("digest 5d41"), "{reason}");
    url.digest = None;
    url.status = StatusCodes::parse(&["300-399".into()]).unwrap();
    let Verdict::Down { reason } = check(addr, url).attempt().await else {
        panic!("a wrong status passed");
    };
    assert!(reason.contains("status 200"), "{reason}");
    let heads = server.await.unwrap();
    assert!(
        heads[0].starts_with("GET /health HTTP/1.0\r\n"),
        "{}",
        heads[0]
    );
    let head = heads[0].to_ascii_lowercase();
    assert!(head.contains("user-agent: keepaliveclient\r\n"), "{head}");
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("host: www.example\r\n"),
        "{}",
        heads[0]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_real_that_accepts_and_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = check(
        listener.local_addr().unwrap(),
        UrlCheck::new("/".into(), &[], None, None).unwrap(),
    );
    c.connect.timeout = Duration::from_millis(100);
    let Verdict::Down { reason } = c.attempt().await else {
        panic!("a silent real passed");
    };
    assert!(reason.contains("no complete answer"), "{reason}");
}

#[test]
fn regex_matches_as_keepalived_documents_its_options_and_offsets() {
    let m =
        |pattern: &str, options: &[&str], no_match: bool, min: Option<u32>, max: Option<u32>| {
            let options: Vec<String> = options.iter().map(|&o| o.to_owned()).collect();
            BodyMatch::new(pattern, &options, no_match, min, max).unwrap()
        };
    let body = b"HTTP health\nstatus: OK\n";
    assert!(m("status: OK", &[], false, None, None).passes(body));
    assert!(!m("status: DOWN", &[], false, None, None).passes(body));
    assert!(
        !m("status: OK", &[], true, None, None).passes(body),
        "regex_no_match"
    );
    assert!(m("status: DOWN", &[], true, None, None).passes(body));
    assert!(!m("status: ok", &[], false, None, None).passes(body));
    assert!(m("status: ok", &["caseless"], false, None, None).passes(body));
    assert!(!m("^status", &[], false, None, None).passes(body));
    assert!(m("^status", &["multiline"], false, None, None).passes(body));
    assert!(m("health.status", &["dotall"], false, None, None).passes(body));
    // The match must start within [regex_min_offset, regex_max_offset].
    assert!(!m("HTTP", &[], false, Some(1), None).passes(body));
    assert!(m("status", &[], false, Some(12), Some(12)).passes(body));
    assert!(!m("status", &[], false, None, Some(11)).passes(body));
    assert!(!m("status", &["firstline"], false, None, None).passes(body));
    assert!(m("status", &["no_start_optimize"], false, None, None).passes(body));
    assert!(matches!(
        BodyMatch::new("a", &["alt_bsux".into()], false, None, None),
        Err(UrlError::RegexOption { .. })
    ));
    assert!(matches!(
        BodyMatch::new("(a", &[], false, None, None),
        Err(UrlError::Regex { .. })
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_without_the_regex_fails_the_check() {
    let (addr, _server) = responder(200, "service: ready").await;
    let url = |pattern: &str, no_match: bool| {
        UrlCheck::new("/".into(), &[], None, None)
            .unwrap()
            .with_body_match(Some(
                BodyMatch::new(pattern, &[], no_match, None, None).unwrap(),
            ))
    };
    assert_eq!(
        check(addr, url("ready$", false)).attempt().await,
        Verdict::UP
    );
    let Verdict::Down { reason } = check(addr, url("ready$", true)).attempt().await else {
        panic!("regex_no_match passed a matching body");
    };
    assert!(
        reason.contains("body without no match of \"ready$\""),
        "{reason}"
    );
    let Verdict::Down { reason } = check(addr, url("maintenance", false)).attempt().await else {
        panic!("a body without the pattern passed");
    };
    assert!(reason.contains("a match of \"maintenance\""), "{reason}");
}
