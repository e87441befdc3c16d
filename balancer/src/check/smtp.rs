//! `SMTP_CHECK`: the real greets with 220, answers `HELO helo_name` with 250, and answers
//! `QUIT` (`keepalived/check/check_smtp.c`: `smtp_engine_thread`, `SMTP_DEFAULT_HELO`). As
//! keepalived, each step (connect, every read and write) is bounded by `connect_timeout`,
//! and the answer to `QUIT` may have any code but must come.
//!
//! keepalived looks at the first line of each read and drops the rest of the buffer; a
//! multi-line reply (`220-...` then `220 ...`, RFC 5321 §4.2.1) can leave its last line to be
//! taken for the answer to `HELO`. We read whole replies, as RFC 5321 defines them.

use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::net::TcpStream;

use crate::check::tcp::Connect;
use crate::check::{Attempt, Probe};

/// keepalived's `helo_name` when none is configured.
pub const DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with its CRLF. Longer lines are
/// refused rather than buffered without bound.
const MAX_LINE: u64 = 512;

/// `SMTP_CHECK`.
#[derive(Clone, Debug)]
pub struct SmtpCheck {
    pub connect: Connect,
    /// `helo_name`.
    pub helo_name: String,
}

impl SmtpCheck {
    async fn converse(&self) -> Result<(), String> {
        let timeout = self.connect.timeout;
        let stream = self
            .connect
            .open()
            .await
            .map_err(|e| format!("connect to {}: {e}", self.connect.to))?;
        let mut stream = BufReader::new(stream);
        expect(&mut stream, timeout, "banner", 220).await?;
        send(
            &mut stream,
            timeout,
            &format!("HELO {}\r\n", self.helo_name),
        )
        .await?;
        expect(&mut stream, timeout, "answer to HELO", 250).await?;
        send(&mut stream, timeout, "QUIT\r\n").await?;
        reply(&mut stream, timeout, "answer to QUIT").await?;
        Ok(())
    }
}

/// Bounds one step by `timeout`, as keepalived bounds each read and write.
async fn step<T>(
    timeout: Duration,
    what: &str,
    future: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, future)
        .await
        .unwrap_or_else(|_| Err(format!("{what}: nothing within {timeout:?}")))
}

async fn send(
    stream: &mut BufReader<TcpStream>,
    timeout: Duration,
    line: &str,
) -> Result<(), String> {
    let what = line.trim_end();
    step(timeout, what, async {
        stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("sending {what}: {e}"))
    })
    .await
}

async fn expect(
    stream: &mut BufReader<TcpStream>,
    timeout: Duration,
    what: &str,
    code: u16,
) -> Result<(), String> {
    match reply(stream, timeout, what).await? {
        seen if seen == code => Ok(()),
        seen => Err(format!("{what}: {seen}, expected {code}")),
    }
}

/// Reads one reply, all its lines, and returns its code.
async fn reply<R: AsyncRead + Unpin>(
    stream: &mut BufReader<R>,
    timeout: Duration,
    what: &str,
) -> Result<u16, String> {
    step(timeout, what, async {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut *stream)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            if n == 0 {
                return Err(format!("{what}: the connection closed"));
            }
            if line.last() != Some(&b'\n') {
                return Err(if u64::try_from(n).is_ok_and(|n| n < MAX_LINE) {
                    format!("{what}: the connection closed within a line")
                } else {
                    format!("{what}: a line longer than {MAX_LINE} octets")
                });
            }
            let code = line
                .get(..3)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| {
                    format!(
                        "{what}: {:?} is not an SMTP reply",
                        String::from_utf8_lossy(&line).trim_end()
                    )
                })?;
            // RFC 5321 §4.2.1: "NNN-" continues the reply, "NNN " or "NNN" ends it.
            if line.get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    })
    .await
}

impl Probe for SmtpCheck {
    fn attempt(&self) -> Attempt<'_> {
        Box::pin(async move { self.converse().await.into() })
    }

    fn describe(&self) -> String {
        format!("SMTP_CHECK {}", self.connect.to)
    }
}

#[cfg(test)]
#[path = "smtp_tests.rs"]
mod tests;
