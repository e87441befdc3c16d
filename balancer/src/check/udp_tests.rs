use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::*;
use crate::check::Verdict;

fn check(to: SocketAddr) -> UdpCheck {
    UdpCheck::new(Connect {
        to,
        bind_ip: None,
        bind_port: None,
        timeout: Duration::from_millis(300),
        fwmark: None,
    })
}

/// A server that answers one datagram with `answer` (nothing for `None`) and returns what
/// it received.
async fn server(answer: Option<Vec<u8>>) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0; 2048];
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        if let Some(answer) = answer {
            socket.send_to(&answer, from).await.unwrap();
        } else {
            // Keep the port open (no ICMP error) until the check gave up.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        buf[..n].to_vec()
    });
    (addr, task)
}

#[test]
fn hex_strings_read_as_keepalived_reads_them() {
    let p = Pattern::parse("01 23 4x", true).unwrap();
    assert_eq!(p.octets, [0x01, 0x23, 0x40]);
    assert_eq!(p.mask, [0, 0, 0x0f]);
    assert_eq!(Pattern::parse("1 23", false).unwrap().octets, [0x01, 0x23]);
    assert_eq!(
        Pattern::parse("deadBEEF", false).unwrap().octets,
        [0xde, 0xad, 0xbe, 0xef]
    );
    for bad in ["", "  ", "zz", "0g"] {
        assert!(Pattern::parse(bad, true).is_err(), "{bad:?}");
    }
    assert!(
        Pattern::parse("4x", false).is_err(),
        "no wildcard in a payload"
    );
}

#[test]
fn a_pattern_compares_the_shorter_length_and_skips_wildcards() {
    let p = Pattern::parse("ab xd", true).unwrap();
    assert!(p.matches(&[0xab, 0x1d, 0x99]));
    assert!(p.matches(&[0xab, 0xfd]));
    assert!(p.matches(&[0xab]), "only the shorter length is compared");
    assert!(!p.matches(&[0xab, 0x1e]));
    assert!(!p.matches(&[0xac, 0x1d]));
}

#[test]
fn the_default_payload_is_keepalived_s() {
    assert_eq!(default_payload(32), b"keepalived check - keepalived ch");
}

#[tokio::test(flavor = "current_thread")]
async fn silence_passes_unless_a_reply_is_required() {
    let (to, sent) = server(None).await;
    assert_eq!(check(to).attempt().await, Verdict::UP);
    assert_eq!(sent.await.unwrap(), default_payload(32));
    let (to, _) = server(None).await;
    let mut c = check(to);
    c.require_reply = true;
    let Verdict::Down { reason } = c.attempt().await else {
        panic!("silence passed with require_reply");
    };
    assert!(reason.contains("no answer"), "{reason}");
}

#[tokio::test(flavor = "current_thread")]
async fn port_unreachable_fails() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = closed.local_addr().unwrap();
    drop(closed);
    let Verdict::Down { reason } = check(to).attempt().await else {
        panic!("a closed port passed");
    };
    assert!(reason.contains("refused"), "{reason}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_answer_must_match_the_required_reply() {
    let mut c = check("127.0.0.1:9".parse().unwrap());
    c.payload = vec![1, 2, 3];
    c.require_reply = true;
    c.reply = Some(Pattern::parse("ca fx", true).unwrap());
    c.reply_len = 2..=4;
    for (answer, passes) in [
        (vec![0xca, 0xfe, 0x00], true),
        (vec![0xca, 0xee], false),
        (vec![0xca], false),
        (vec![0xca, 0xfe, 0, 0, 0], false),
    ] {
        let (to, sent) = server(Some(answer.clone())).await;
        c.connect.to = to;
        let verdict = c.attempt().await;
        assert_eq!(verdict == Verdict::UP, passes, "{answer:x?}: {verdict:?}");
        assert_eq!(sent.await.unwrap(), [1, 2, 3]);
    }
}
