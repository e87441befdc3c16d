//! `SSL_GET` against a TLS server started here, with a certificate made here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::PrivatePkcs8KeyDer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsAcceptor;

use super::*;

/// What the server saw of one connection: the SNI and the request head.
type Seen = (Option<String>, String);

/// A TLS server with a self-signed certificate for `localhost` (not the name the checker
/// asks for, nor one it could verify) that answers 200 with `body`.
async fn tls_responder(body: &'static str) -> (SocketAddr, tokio::task::JoinHandle<Vec<Seen>>) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()).into(),
            )
            .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Ok((s, _))) =
            tokio::time::timeout(Duration::from_millis(300), listener.accept()).await
        {
            let mut s = acceptor.accept(s).await.unwrap();
            let sni = s.get_ref().1.server_name().map(str::to_owned);
            let mut buf = vec![0; 4096];
            let n = s.read(&mut buf).await.unwrap();
            seen.push((sni, String::from_utf8_lossy(&buf[..n]).into_owned()));
            let answer = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        }
        seen
    });
    (addr, task)
}

fn ssl_check(to: SocketAddr, url: UrlCheck, sni: bool) -> HttpCheck {
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
        tls: Some(Tls::new(sni).unwrap()),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn any_certificate_passes_and_the_digest_is_of_the_decrypted_body() {
    let (addr, server) = tls_responder("hello").await;
    let url = UrlCheck::new("/h".into(), &[], Some(&digest(b"hello")), None).unwrap();
    let check = ssl_check(addr, url.clone(), false);
    assert_eq!(check.describe(), format!("SSL_GET {addr}"));
    assert_eq!(check.attempt().await, Verdict::UP);
    let mut wrong = url;
    wrong.digest = Some(digest(b"other"));
    let Verdict::Down { reason } = ssl_check(addr, wrong, false).attempt().await else {
        panic!("a wrong digest passed");
    };
    assert!(reason.contains("digest 5d41"), "{reason}");
    let seen = server.await.unwrap();
    assert_eq!(seen[0].0, None, "SNI is sent only with enable_sni");
    assert!(
        seen[0].1.starts_with("GET /h HTTP/1.0\r\n"),
        "{}",
        seen[0].1
    );
}

#[tokio::test(flavor = "current_thread")]
async fn enable_sni_sends_the_virtual_host() {
    let (addr, server) = tls_responder("").await;
    let url = UrlCheck::new("/".into(), &[], None, Some("www.example:443".into())).unwrap();
    assert_eq!(
        ssl_check(addr, url.clone(), true).attempt().await,
        Verdict::UP
    );
    assert_eq!(ssl_check(addr, url, false).attempt().await, Verdict::UP);
    let seen = server.await.unwrap();
    assert_eq!(seen[0].0.as_deref(), Some("www.example"));
    assert!(
        seen[0]
            .1
            .to_ascii_lowercase()
            .contains("host: www.example:443\r\n"),
        "{}",
        seen[0].1
    );
    assert_eq!(seen[1].0, None);
}

#[tokio::test(flavor = "current_thread")]
async fn a_real_that_speaks_plain_http_fails_the_handshake() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
    });
    let url = UrlCheck::new("/".into(), &[], None, None).unwrap();
    let Verdict::Down { reason } = ssl_check(addr, url, false).attempt().await else {
        panic!("plain HTTP passed as TLS");
    };
    assert!(reason.contains("TLS handshake"), "{reason}");
    server.await.unwrap();
}
