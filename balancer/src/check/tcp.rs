//! `TCP_CHECK`: the real passes when a TCP connection to it completes within
//! `connect_timeout` (`keepalived/check/check_tcp.c`). The connection is closed at once,
//! with a reset (see [`TcpCheck`]'s probe).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

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
    /// `fwmark`: the mark (`SO_MARK`) of the check's packets, so that policy routing can
    /// send them a particular way (keepalived's `co->fwmark`, set on every checker socket).
    pub fwmark: Option<u32>,
}

impl Connect {
    /// Opens the connection within the timeout.
    ///
    /// # Errors
    /// The socket cannot be bound, the connection fails, or it does not complete in time
    /// (`io::ErrorKind::TimedOut`).
    pub async fn open(&self) -> io::Result<TcpStream> {
        let socket = self.socket(Type::STREAM, Protocol::TCP)?;
        if let Some(from) = self.bind_addr() {
            // A fixed source port is reused check after check; the previous connection may
            // still be in TIME_WAIT.
            socket.set_reuse_address(true)?;
            socket.bind(&from.into())?;
        }
        let socket = TcpSocket::from_std_stream(socket.into());
        match tokio::time::timeout(self.timeout, socket.connect(self.to)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

impl Connect {
    /// A non-blocking, close-on-exec socket of the destination's family, marked with
    /// `fwmark`.
    ///
    /// # Errors
    /// The socket cannot be made or marked (`SO_MARK` needs `CAP_NET_ADMIN`).
    pub fn socket(&self, kind: Type, protocol: Protocol) -> io::Result<Socket> {
        // Non-blocking (and close-on-exec, socket2's default) from the start: one system call
        // where setting the flags afterwards takes three, thousands of times a second.
        let socket = Socket::new(
            Domain::for_address(self.to),
            kind.nonblocking(),
            Some(protocol),
        )?;
        if let Some(mark) = self.fwmark {
            socket.set_mark(mark)?;
        }
        Ok(socket)
    }

    /// The source address, when `bindto` or `bind_port` asks for one.
    #[must_use]
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        if self.bind_ip.is_none() && self.bind_port.is_none() {
            return None;
        }
        let any = if self.to.is_ipv4() {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u16; 8])
        };
        Some(SocketAddr::new(
            self.bind_ip.unwrap_or(any),
            self.bind_port.unwrap_or(0),
        ))
    }

    /// A UDP socket bound as configured and connected to the destination: answers from
    /// elsewhere are dropped by the kernel, and an ICMP error (port unreachable) fails the
    /// next receive at once, as keepalived's `udp_bind_connect` has it.
    ///
    /// # Errors
    /// The socket cannot be made, marked, bound or connected.
    pub fn udp(&self) -> io::Result<UdpSocket> {
        let socket = self.socket(Type::DGRAM, Protocol::UDP)?;
        if let Some(from) = self.bind_addr() {
            socket.bind(&from.into())?;
        }
        socket.connect(&self.to.into())?;
        UdpSocket::from_std(socket.into())
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
                Ok(stream) => {
                    // Closed with a reset (SO_LINGER 0), as HAProxy closes its health checks,
                    // where keepalived closes with a FIN: the check has its answer once the
                    // handshake completes, and a FIN leaves a TIME_WAIT socket behind each
                    // check (10,000 reals at a delay_loop of 1 s would hold 600,000) and
                    // costs four more packets. A failure to set it changes nothing.
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    Verdict::UP
                }
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
                fwmark: None,
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

#[cfg(test)]
mod mark_tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_fwmark_is_set_on_the_socket() {
        // SO_MARK needs CAP_NET_ADMIN; without it the check fails, and says why.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = Connect {
            to: listener.local_addr().unwrap(),
            bind_ip: None,
            bind_port: None,
            timeout: Duration::from_secs(2),
            fwmark: Some(0x2a),
        };
        let root = nix::unistd::geteuid().is_root();
        match c.socket(Type::STREAM, Protocol::TCP) {
            Ok(socket) => {
                assert!(root, "SO_MARK set without privilege");
                assert_eq!(socket.mark().unwrap(), 0x2a);
                assert!(c.open().await.is_ok());
            }
            Err(e) => {
                assert!(!root, "{e}");
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            }
        }
    }
}
