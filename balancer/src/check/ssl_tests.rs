//! `SSL_GET` against a TLS server started here, with a certificate made here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::check::tls::{ClientIdentity, TlsError};

/// What the server saw of one connection: the SNI and the request head.
type Seen = (Option<String>, String);

/// A TLS server with a self-signed certificate for `localhost` (not the name the checker
/// asks for, nor one it could verify) that answers 200 with `body`; with `client`, it asks
/// for that client certificate and refuses a handshake without it.
async fn tls_responder(
    body: &'static str,
    client: Option<CertificateDer<'static>>,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<Seen>>) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client {
        Some(cert) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert).unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
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
            let Ok(mut s) = acceptor.accept(s).await else {
                continue;
            };
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
    ssl_check_as(to, url, sni, None)
}

fn ssl_check_as(
    to: SocketAddr,
    url: UrlCheck,
    sni: bool,
    client: Option<&ClientIdentity>,
) -> HttpCheck {
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
        tls: Some(Tls::new(sni, client, None).unwrap()),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn any_certificate_passes_and_the_digest_is_of_the_decrypted_body() {
    let (addr, server) = tls_responder("hello", None).await;
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
    let (addr, server) = tls_responder("", None).await;
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

#[tokio::test(flavor = "current_thread")]
async fn the_ssl_block_s_certificate_goes_to_a_real_that_asks_for_one() {
    let client = rcgen::generate_simple_self_signed(vec!["client.invalid".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("balancer-ssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, both) = (dir.join("c.pem"), dir.join("k.pem"), dir.join("ck.pem"));
    let key_pem = client.signing_key.serialize_pem();
    std::fs::write(&cert, client.cert.pem()).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    std::fs::write(&both, format!("{}{key_pem}", client.cert.pem())).unwrap();
    // `SSL { password }`: the key encrypted as OpenSSL writes it (PKCS#8, PBES2), and in
    // OpenSSL's older form, which is refused with the way out.
    let (encrypted, legacy) = (dir.join("ek.pem"), dir.join("legacy.pem"));
    for (args, out) in [
        (vec!["pkcs8", "-topk8", "-v2", "aes-256-cbc"], &encrypted),
        (vec!["ec", "-aes256"], &legacy),
    ] {
        let made = std::process::Command::new("openssl")
            .args(args)
            .arg("-in")
            .arg(&key)
            .arg("-out")
            .arg(out)
            .args(["-passout", "pass:s3cret"])
            .output()
            .expect("openssl (cargo xtask setup installs it)");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let separate = ClientIdentity::load(&cert, Some(&key), None);
    let combined = ClientIdentity::load(&both, None, None);
    let unlocked = ClientIdentity::load(&cert, Some(&encrypted), Some("s3cret"));
    let wrong = ClientIdentity::load(&cert, Some(&encrypted), Some("guess"));
    let locked = ClientIdentity::load(&cert, Some(&encrypted), None);
    let old_form = ClientIdentity::load(&cert, Some(&legacy), Some("s3cret"));
    let no_key = ClientIdentity::load(&cert, None, None);
    let missing = ClientIdentity::load(&dir.join("none.pem"), None, None);
    std::fs::remove_dir_all(&dir).unwrap();
    for (result, says) in [
        (&wrong, "decrypting the key with SSL.password"),
        (&locked, "SSL.password"),
        (&old_form, "openssl pkcs8 -topk8"),
    ] {
        let e = result.as_ref().unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    assert!(
        matches!(
            no_key,
            Err(TlsError::File {
                key: "certificate",
                ..
            })
        ),
        "{no_key:?}"
    );
    assert!(matches!(missing, Err(TlsError::File { .. })), "{missing:?}");

    let url = UrlCheck::new("/".into(), &[], None, None).unwrap();
    let (addr, server) = tls_responder("ok", Some(client.cert.der().clone())).await;
    // With TLS 1.3 the client learns of the refusal only when it writes the request.
    let verdict = ssl_check(addr, url.clone(), false).attempt().await;
    assert!(
        matches!(verdict, Verdict::Down { .. }),
        "a real that requires a client certificate passed without one"
    );
    for identity in [separate.unwrap(), combined.unwrap(), unlocked.unwrap()] {
        let check = ssl_check_as(addr, url.clone(), false, Some(&identity));
        assert_eq!(check.attempt().await, Verdict::UP);
    }
    assert_eq!(
        server.await.unwrap().len(),
        3,
        "three handshakes with the certificate"
    );
}

/// A CA made here, and a server certificate it issues for 127.0.0.1 (PEM of the CA, and the
/// server's certificate and key).
fn issued_for_loopback() -> (String, CertificateDer<'static>, PrivatePkcs8KeyDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (
        ca.pem(),
        cert.der().clone(),
        PrivatePkcs8KeyDer::from(key.serialize_der()),
    )
}

/// `SSL { verify }` (ours): a real whose certificate chains to `ca` for its address passes,
/// one signed by anyone else fails, where keepalived's semantics accept both.
#[tokio::test(flavor = "current_thread")]
async fn verify_accepts_only_certificates_that_chain_to_the_ca() {
    let (ca_pem, cert, key) = issued_for_loopback();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key.into())
            .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok(Ok((s, _))) =
            tokio::time::timeout(Duration::from_millis(300), listener.accept()).await
        {
            let Ok(mut s) = acceptor.accept(s).await else {
                continue;
            };
            let mut buf = vec![0; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = s.shutdown().await;
        }
    });
    let dir = std::env::temp_dir().join(format!("balancer-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ours, other) = (dir.join("ca.pem"), dir.join("other.pem"));
    std::fs::write(&ours, &ca_pem).unwrap();
    std::fs::write(&other, issued_for_loopback().0).unwrap();
    let check = |ca: &std::path::Path| {
        let roots = Arc::new(crate::check::tls::roots(ca).unwrap());
        let mut c = ssl_check(
            addr,
            UrlCheck::new("/".into(), &[], None, None).unwrap(),
            false,
        );
        c.tls = Some(Tls::new(false, None, Some(roots)).unwrap());
        c
    };
    assert_eq!(check(&ours).attempt().await, Verdict::UP);
    let Verdict::Down { reason } = check(&other).attempt().await else {
        panic!("a certificate of another CA passed verification");
    };
    assert!(reason.contains("TLS handshake"), "{reason}");
    // Without verify, any certificate passes, as in keepalived.
    let any = ssl_check(
        addr,
        UrlCheck::new("/".into(), &[], None, None).unwrap(),
        false,
    );
    assert_eq!(any.attempt().await, Verdict::UP);
    assert!(crate::check::tls::roots(&dir.join("none.pem")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
    server.await.unwrap();
}
