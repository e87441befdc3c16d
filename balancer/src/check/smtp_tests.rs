use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use super::*;
use crate::check::Verdict;

/// An SMTP server that greets with `banner` and answers each line it reads with the next of
/// `answers`; it returns the lines it read.
async fn server(
    banner: &'static str,
    answers: &'static [&'static str],
) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mut s = BufReader::new(s);
        s.get_mut().write_all(banner.as_bytes()).await.unwrap();
        let mut heard = Vec::new();
        for answer in answers {
            let mut line = String::new();
            if s.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            heard.push(line);
            s.get_mut().write_all(answer.as_bytes()).await.unwrap();
        }
        heard
    });
    (addr, task)
}

fn check(to: SocketAddr) -> SmtpCheck {
    SmtpCheck {
        connect: Connect {
            to,
            bind_ip: None,
            bind_port: None,
            timeout: Duration::from_secs(2),
            fwmark: None,
        },
        helo_name: DEFAULT_HELO.into(),
    }
}

async fn down(check: &SmtpCheck) -> String {
    match check.attempt().await {
        Verdict::Down { reason } => reason,
        Verdict::Up { .. } => panic!("{} passed", check.describe()),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_multi_line_banner_helo_and_quit_pass() {
    let (addr, server) = server(
        "220-mx.example ESMTP\r\n220 ready\r\n",
        &["250 mx.example\r\n", "221 bye\r\n"],
    )
    .await;
    assert_eq!(check(addr).attempt().await, Verdict::UP);
    assert_eq!(
        server.await.unwrap(),
        ["HELO smtpchecker.keepalived.org\r\n", "QUIT\r\n"]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_refusing_banner_or_helo_fails() {
    let (addr, _server) = server("554 go away\r\n", &[]).await;
    let reason = down(&check(addr)).await;
    assert!(reason.contains("banner: 554, expected 220"), "{reason}");

    let (addr, server) = server("220 ready\r\n", &["501 who?\r\n"]).await;
    let mut c = check(addr);
    c.helo_name = "lb1.example".into();
    let reason = down(&c).await;
    assert!(reason.contains("HELO: 501, expected 250"), "{reason}");
    assert_eq!(server.await.unwrap(), ["HELO lb1.example\r\n"]);
}

#[tokio::test(flavor = "current_thread")]
async fn no_answer_to_quit_and_garbage_fail() {
    let (addr, _server) = server("220 ready\r\n", &["250 ok\r\n"]).await;
    let reason = down(&check(addr)).await;
    assert!(
        reason.contains("answer to QUIT: the connection closed"),
        "{reason}"
    );

    let (addr, _server) = server("HTTP/1.0 400\r\n", &[]).await;
    let reason = down(&check(addr)).await;
    assert!(reason.contains("not an SMTP reply"), "{reason}");

    let long: &'static str = "2".repeat(600).leak();
    let (addr, _server) = server(long, &[]).await;
    let reason = down(&check(addr)).await;
    assert!(reason.contains("longer than 512"), "{reason}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_silent_real_times_out_per_step() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = check(listener.local_addr().unwrap());
    c.connect.timeout = Duration::from_millis(100);
    let reason = down(&c).await;
    assert!(reason.contains("banner: nothing within 100ms"), "{reason}");
}
