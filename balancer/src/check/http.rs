//! `HTTP_GET`: each `url` is fetched over a fresh connection and must answer with one of its
//! status codes and, when a `digest` is given, a body whose MD5 is that digest, as keepalived's
//! `genhash` prints it (`keepalived/check/check_http.c`: `http_handle_response`, the default
//! status codes 200-299 of `url_handler_end`, the request of `http_request_thread`).
//!
//! keepalived writes the request by hand; we let hyper speak HTTP/1 over the socket that
//! [`Connect`] opened, so `bindto` and `bind_port` apply as for `TCP_CHECK`. Unlike keepalived,
//! the digest is of the body as HTTP defines it: de-chunked, and empty for a 204 or 304 answer
//! whatever bytes follow the head (keepalived hashes whatever it reads after the head).
//!
//! `SSL_GET` is the same check over TLS (`check_http.c` serves both): an [`HttpCheck`] with
//! [`Tls`] set.

use std::fmt::Write as _;
use std::ops::RangeInclusive;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, Version, header};
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::check::tcp::Connect;
use crate::check::tls::Tls;
use crate::check::{Attempt, Probe, Verdict};

/// keepalived reads whole bodies; we stop at this size so that a misbehaving real cannot
/// make a checker allocate without bound.
pub const MAX_BODY: usize = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("status_code {value:?}: expected a code or a range CODE-CODE within 100-599")]
    StatusCode { value: String },
    #[error("digest {value:?}: expected 32 hexadecimal digits (the MD5 genhash prints)")]
    Digest { value: String },
    #[error("regex {value:?}: {message}")]
    Regex { value: String, message: String },
    #[error("regex_options {value:?}: not available here; valid: {REGEX_OPTIONS}")]
    RegexOption { value: String },
}

/// The `regex_options` we take, for the messages that refuse another.
pub const REGEX_OPTIONS: &str = "caseless, multiline, dotall, extended, ungreedy, firstline, \
     utf, ucp, never_utf, never_ucp (and PCRE2's optimisation options, which change nothing); \
     the patterns are Rust regex, not PCRE2";

/// `status_code`: codes and ranges; empty means keepalived's default 200-299.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCodes(Vec<RangeInclusive<u16>>);

impl StatusCodes {
    /// Parses `["200", "300-399"]`.
    ///
    /// # Errors
    /// A value is not a code or range within 100-599 (keepalived's limits).
    pub fn parse(values: &[String]) -> Result<Self, UrlError> {
        if values.is_empty() {
            return Ok(Self(vec![200..=299]));
        }
        let ranges = values
            .iter()
            .map(|value| {
                let bad = || UrlError::StatusCode {
                    value: value.clone(),
                };
                let (low, high) = value.split_once('-').unwrap_or((value, value));
                let low: u16 = low.trim().parse().map_err(|_| bad())?;
                let high: u16 = high.trim().parse().map_err(|_| bad())?;
                if !(100..=599).contains(&low) || !(low..=599).contains(&high) {
                    return Err(bad());
                }
                Ok(low..=high)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self(ranges))
    }

    #[must_use]
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|r| r.contains(&code))
    }
}

/// Lower-case hex of the MD5 of `body`, as genhash prints it.
#[must_use]
pub fn digest(body: &[u8]) -> String {
    Md5::digest(body).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One `url { }` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlCheck {
    pub path: String,
    pub status: StatusCodes,
    /// Lower-case hex.
    pub digest: Option<String>,
    /// `Host:`; keepalived's default is the connected address and port.
    pub virtualhost: Option<String>,
    /// `regex` and its options: what the body must (or with `regex_no_match`, must not)
    /// contain.
    pub body: Option<BodyMatch>,
}

/// keepalived's `regex`, `regex_no_match`, `regex_options`, `regex_min_offset` and
/// `regex_max_offset`.
#[derive(Clone, Debug)]
pub struct BodyMatch {
    pattern: String,
    options: Vec<String>,
    no_match: bool,
    min_offset: usize,
    max_offset: Option<usize>,
    /// Only the first line of the body may hold the match's start (`firstline`).
    first_line: bool,
    regex: regex::bytes::Regex,
}

impl PartialEq for BodyMatch {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.pattern,
            &self.options,
            self.no_match,
            self.min_offset,
            self.max_offset,
        ) == (
            &other.pattern,
            &other.options,
            other.no_match,
            other.min_offset,
            other.max_offset,
        )
    }
}

impl Eq for BodyMatch {}

/// PCRE2 options that only tune its matcher (or its callouts) and change no result here.
const NO_EFFECT_OPTIONS: [&str; 7] = [
    "auto_callout",
    "dollar_endonly",
    "no_auto_capture",
    "no_auto_possess",
    "no_dotstar_anchor",
    "no_start_optimize",
    "use_offset_limit",
];

impl BodyMatch {
    /// # Errors
    /// The pattern does not compile, or an option has no counterpart here.
    pub fn new(
        pattern: &str,
        options: &[String],
        no_match: bool,
        min_offset: Option<u32>,
        max_offset: Option<u32>,
    ) -> Result<Self, UrlError> {
        let mut b = regex::bytes::RegexBuilder::new(pattern);
        let mut first_line = false;
        for o in options {
            match o.as_str() {
                "caseless" => b.case_insensitive(true),
                "multiline" => b.multi_line(true),
                "dotall" => b.dot_matches_new_line(true),
                "extended" => b.ignore_whitespace(true),
                "ungreedy" => b.swap_greed(true),
                "utf" | "ucp" => b.unicode(true),
                "never_utf" | "never_ucp" => b.unicode(false),
                "firstline" => {
                    first_line = true;
                    &mut b
                }
                o if NO_EFFECT_OPTIONS.contains(&o) => &mut b,
                other => {
                    return Err(UrlError::RegexOption {
                        value: other.to_owned(),
                    });
                }
            };
        }
        let regex = b.build().map_err(|e| UrlError::Regex {
            value: pattern.to_owned(),
            message: e.to_string(),
        })?;
        let offset = |o: Option<u32>| o.map(|v| usize::try_from(v).unwrap_or(usize::MAX));
        Ok(Self {
            pattern: pattern.to_owned(),
            options: options.to_vec(),
            no_match,
            min_offset: offset(min_offset).unwrap_or(0),
            max_offset: offset(max_offset),
            first_line,
            regex,
        })
    }

    /// Whether `body` passes: a match starting within the offsets, or with `regex_no_match`
    /// none.
    #[must_use]
    pub fn passes(&self, body: &[u8]) -> bool {
        let mut last_start = self.max_offset.unwrap_or(usize::MAX);
        if self.first_line {
            let line_end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
            last_start = last_start.min(line_end);
        }
        // The leftmost match from `min_offset`: if it starts too late, none starts in time.
        let found = body.get(self.min_offset..).is_some_and(|rest| {
            self.regex
                .find(rest)
                .is_some_and(|m| self.min_offset + m.start() <= last_start)
        });
        found != self.no_match
    }

    /// What the check expected, for the failure's reason.
    fn describe(&self) -> String {
        if self.no_match {
            format!("no match of {:?}", self.pattern)
        } else {
            format!("a match of {:?}", self.pattern)
        }
    }
}

impl UrlCheck {
    /// # Errors
    /// A status code or the digest does not parse.
    pub fn new(
        path: String,
        status_code: &[String],
        digest: Option<&str>,
        virtualhost: Option<String>,
    ) -> Result<Self, UrlError> {
        let digest = digest
            .map(|d| {
                if d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(d.to_ascii_lowercase())
                } else {
                    Err(UrlError::Digest { value: d.into() })
                }
            })
            .transpose()?;
        Ok(Self {
            path,
            status: StatusCodes::parse(status_code)?,
            digest,
            virtualhost,
            body: None,
        })
    }

    /// The same check, with the body matched against `body`.
    #[must_use]
    pub fn with_body_match(mut self, body: Option<BodyMatch>) -> Self {
        self.body = body;
        self
    }
}

/// `http_protocol`: which request line and connection handling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpProtocol {
    /// `1.0`: keepalived's default.
    #[default]
    Http10,
    /// `1.0C`: 1.0 with `Connection: close`.
    Http10Close,
    /// `1.1`: with `Connection: close`, as keepalived sends it.
    Http11,
}

/// `HTTP_GET`, or `SSL_GET` when `tls` is set.
#[derive(Clone, Debug)]
pub struct HttpCheck {
    pub connect: Connect,
    pub urls: Vec<UrlCheck>,
    pub protocol: HttpProtocol,
    pub tls: Option<Tls>,
}

impl HttpCheck {
    async fn fetch(&self, url: &UrlCheck) -> Result<(), String> {
        let stream = self
            .connect
            .open()
            .await
            .map_err(|e| format!("connect to {}: {e}", self.connect.to))?;
        match &self.tls {
            None => self.exchange(url, stream).await,
            Some(tls) => {
                let name = tls.server_name(url.virtualhost.as_deref(), self.connect.to.ip())?;
                let stream = tls
                    .connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.connect.to))?;
                self.exchange(url, stream).await
            }
        }
    }

    /// One request and its answer over an open connection, plain or TLS.
    async fn exchange<S>(&self, url: &UrlCheck, stream: S) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        let host = url
            .virtualhost
            .clone()
            .unwrap_or_else(|| self.connect.to.to_string());
        // keepalived's request: its User-Agent, and `Connection: close` except for plain 1.0.
        let mut request = Request::get(url.path.as_str())
            .header(header::USER_AGENT, "KeepAliveClient")
            .header(header::HOST, host);
        request = match self.protocol {
            HttpProtocol::Http10 => request.version(Version::HTTP_10),
            HttpProtocol::Http10Close => request
                .version(Version::HTTP_10)
                .header(header::CONNECTION, "close"),
            HttpProtocol::Http11 => request
                .version(Version::HTTP_11)
                .header(header::CONNECTION, "close"),
        };
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("path {:?}: {e}", url.path))?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("GET {}: {e}", url.path))?;
            let status = response.status().as_u16();
            if !url.status.contains(status) {
                return Err(format!("GET {}: status {status}", url.path));
            }
            if url.digest.is_none() && url.body.is_none() {
                return Ok(());
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("GET {}: reading the body: {e}", url.path))?
                .to_bytes();
            if let Some(expected) = &url.digest {
                let seen = digest(&body);
                if &seen != expected {
                    return Err(format!(
                        "GET {}: digest {seen}, expected {expected}",
                        url.path
                    ));
                }
            }
            match &url.body {
                Some(m) if !m.passes(&body) => {
                    Err(format!("GET {}: body without {}", url.path, m.describe()))
                }
                _ => Ok(()),
            }
        };
        // The connection is driven here rather than in a task of its own, so that the
        // attempt's timeout ends it too. A connection that ends cleanly may do so before the
        // exchange has read the last of the body: only its errors end the attempt early.
        tokio::pin!(conn);
        tokio::select! {
            result = exchange => result,
            Err(e) = &mut conn => Err(format!("GET {}: {e}", url.path)),
        }
    }
}

impl Probe for HttpCheck {
    fn attempt(&self) -> Attempt<'_> {
        Box::pin(async move {
            for url in &self.urls {
                // keepalived's connect_timeout bounds each step; one bound per url is as strict.
                match tokio::time::timeout(self.connect.timeout, self.fetch(url)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => return Verdict::down(reason),
                    Err(_) => {
                        return Verdict::down(format!(
                            "GET {}: no complete answer within {:?}",
                            url.path, self.connect.timeout
                        ));
                    }
                }
            }
            Verdict::UP
        })
    }

    fn describe(&self) -> String {
        let kind = if self.tls.is_some() {
            "SSL_GET"
        } else {
            "HTTP_GET"
        };
        format!("{kind} {}", self.connect.to)
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "ssl_tests.rs"]
mod ssl_tests;
