//! `TCP_CHECK`: the real passes when a TCP connection to it completes within
//! `connect_timeout` (`keepalived/check/check_tcp.c`). The connection is closed at once.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::check::{Attempt, Probe, Verdict};

/// Where a check connects, and from where (keepalived's `conn_opts_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connect {
    /// `connect_ip` / `connect_port`, defaulting to the real's address and port.
    pub to: SocketAddr,
    /// `bindto`: the source address.
    pub bind_ip: Option<IpAddr>,
    /// `bind_port`: the source port.
    pub bind_port: Option<u16>,
    /// `connect_timeout`.
    pub timeout: Duration,
}

impl Connect {
    /// Opens the connection within the timeout.
    ///
    /// # Errors
    /// The socket cannot be bound, the connection fails, or it does not complete in time
    /// (`io::ErrorKind::TimedOut`).
    pub async fn open(&self) -> io::Result<TcpStream> {
        let socket = if self.to.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if self.bind_ip.is_some() || self.bind_port.is_some() {
            let ip = self.bind_ip.unwrap_or(if self.to.is_ipv4() {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u16; 8])
            });
            // A fixed source port is reused check after check; the previous connection may
            // still be in TIME_WAIT.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(ip, self.bind_port.unwrap_or(0)))?;
        }
        match tokio::time::timeout(self.timeout, socket.connect(self.to)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

/// `TCP_CHECK`.
#[derive(Clone, Debug)]
pub struct TcpCheck {
    pub connect: Connect,
}

impl Probe for TcpCheck {
    fn attempt(&self) -> Attempt<'_> {
        Box::pin(async move {
            match self.connect.open().await {
                Ok(_) => Verdict::UP,
                Err(e) => Verdict::down(format!("connect to {}: {e}", self.connect.to)),
            }
        })
    }

    fn describe(&self) -> String {
        format!("TCP_CHECK {}", self.connect.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(to: SocketAddr) -> TcpCheck {
        TcpCheck {
            connect: Connect {
                to,
                bind_ip: Some(IpAddr::from([127, 0, 0, 1])),
                bind_port: None,
                timeout: Duration::from_secs(2),
            },
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn passes_while_listening_and_fails_once_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        assert_eq!(check(to).attempt().await, Verdict::UP);
        drop(listener);
        let Verdict::Down { reason } = check(to).attempt().await else {
            panic!("a closed port passed");
        };
        assert!(reason.contains("refused"), "{reason}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_source_port_is_the_configured_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let mut c = check(to).connect;
        c.bind_port = Some(port);
        let _stream = c.open().await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.port(), port);
    }
}
