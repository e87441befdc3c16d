use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::*;

/// A DNS server that reads one query and sends the datagrams `answers` makes of it; it
/// returns the query.
async fn server(
    answers: fn(&Message) -> Vec<Vec<u8>>,
) -> (SocketAddr, tokio::task::JoinHandle<Message>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0; 512];
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        let query = Message::from_vec(&buf[..n]).unwrap();
        for answer in answers(&query) {
            socket.send_to(&answer, from).await.unwrap();
        }
        query
    });
    (addr, task)
}

fn answer(id: u16, kind: MessageType, code: ResponseCode) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id).set_message_type(kind).set_response_code(code);
    m.to_vec().unwrap()
}

fn check(to: SocketAddr) -> DnsCheck {
    DnsCheck {
        connect: Connect {
            to,
            bind_ip: None,
            bind_port: None,
            timeout: Duration::from_secs(2),
            fwmark: None,
        },
        query_type: DEFAULT_TYPE,
        name: query_name("").unwrap(),
    }
}

async fn down(check: &DnsCheck) -> String {
    match check.attempt().await {
        Verdict::Down { reason } => reason,
        Verdict::Up { .. } => panic!("{} passed", check.describe()),
    }
}

#[test]
fn types_and_names_as_keepalived_reads_them() {
    assert_eq!(query_type("soa"), Ok(RecordType::SOA));
    assert_eq!(query_type("DNSKEY"), Ok(RecordType::DNSKEY));
    assert!(query_type("PTR").is_err());
    assert!(query_name(".").unwrap().is_root());
    let name = query_name("example.com").unwrap();
    assert!(name.is_fqdn());
    assert_eq!(name.to_string(), "example.com.");
    for bad in ["a..b", ".a", &"x".repeat(64)] {
        assert!(query_name(bad).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn other_ids_queries_and_runts_are_ignored_until_the_answer() {
    let (addr, server) = server(|q| {
        vec![
            answer(
                q.id().wrapping_add(1),
                MessageType::Response,
                ResponseCode::NoError,
            ),
            answer(q.id(), MessageType::Query, ResponseCode::NoError),
            vec![0; 5],
            answer(q.id(), MessageType::Response, ResponseCode::NoError),
        ]
    })
    .await;
    let mut c = check(addr);
    c.query_type = RecordType::A;
    c.name = query_name("www.example").unwrap();
    assert_eq!(c.attempt().await, Verdict::UP);
    let query = server.await.unwrap();
    assert!(query.recursion_desired());
    assert_eq!(query.queries().len(), 1);
    assert_eq!(query.queries()[0].query_type(), RecordType::A);
    assert_eq!(query.queries()[0].name().to_string(), "www.example.");
}

#[tokio::test(flavor = "current_thread")]
async fn an_error_rcode_fails_and_the_default_query_is_soa_for_the_root() {
    let (addr, server) = server(|q| {
        vec![answer(
            q.id(),
            MessageType::Response,
            ResponseCode::ServFail,
        )]
    })
    .await;
    let reason = down(&check(addr)).await;
    assert!(reason.contains("rcode"), "{reason}");
    let query = server.await.unwrap();
    assert_eq!(query.queries()[0].query_type(), RecordType::SOA);
    assert!(query.queries()[0].name().is_root());
}

#[tokio::test(flavor = "current_thread")]
async fn a_closed_port_or_a_silent_server_fails() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = check(silent.local_addr().unwrap());
    c.connect.timeout = Duration::from_millis(100);
    let reason = down(&c).await;
    assert!(reason.contains("no answer within 100ms"), "{reason}");
    drop(silent);
    c.connect.timeout = Duration::from_secs(2);
    let reason = down(&c).await;
    assert!(reason.contains("refused"), "{reason}");
}
