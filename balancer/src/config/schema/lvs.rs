//! `[virtual_server_group.NAME]` and `[[virtual_server]]` with their real servers and checkers.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::schema::{is_false, one};

/// keepalived's `virtual_server_group`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerGroup {
    /// Lines as keepalived writes them: `ADDR [PORT]`, a range `198.18.0.1-10 [PORT]`
    /// (the last byte, or the last group for IPv6) or `198.18.0.8/29 [PORT]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<String>,
    /// `fwmark N` lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fwmark: Vec<u32>,
}

/// `IPADDR [PORT]`, as in `sorry_server`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The address.
    pub ip: IpAddr,
    /// The port; default the virtual server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// keepalived's `virtual_server`: exactly one of `ip`, `fwmark` and `group` says which
/// packets it takes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is an independent keepalived keyword"
)]
pub struct VirtualServer {
    /// `virtual_server IPADDR [PORT]`: the VIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The virtual port; 0 or absent for every port (persistent services only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `virtual_server fwmark N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    /// `virtual_server group NAME`: a `virtual_server_group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `delay_loop`: seconds between checks. Default 60.
    #[serde(default = "default_delay_loop")]
    pub delay_loop: f64,
    /// `lb_algo` (or `lvs_sched`): rr, wrr, lc, wlc, sed, nq, sh, dh or mh. Default wlc, as
    /// ipvsadm's.
    #[serde(default = "default_lb_algo")]
    pub lb_algo: String,
    /// `lb_kind` (or `lvs_method`): DR, NAT or TUN. Default NAT.
    #[serde(default = "default_lb_kind")]
    pub lb_kind: String,
    /// `persistence_timeout`: seconds a client sticks to its real; keepalived's default when
    /// the keyword has no value is 360.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_timeout: Option<u32>,
    /// `persistence_granularity`: the netmask that groups clients, e.g. `255.255.255.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_granularity: Option<IpAddr>,
    /// `protocol`: TCP or UDP. Without it keepalived (and so we) take UDP, with a warning:
    /// the kernel's default for a service with no protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// `ops`: one-packet scheduling (UDP): every datagram is scheduled on its own.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ops: bool,
    /// `sh-port`: the sh scheduler hashes the source port too.
    #[serde(default, rename = "sh-port", skip_serializing_if = "is_false")]
    pub sh_port: bool,
    /// `mh-port`: the mh scheduler hashes the source port too.
    #[serde(default, rename = "mh-port", skip_serializing_if = "is_false")]
    pub mh_port: bool,
    /// `sorry_server`: takes the traffic while the quorum is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<Endpoint>,
    /// `quorum`: the live weight below which the service counts as down. Default 1.
    #[serde(default = "one")]
    pub quorum: u32,
    /// `hysteresis`: how far above or below `quorum` the weight must go to change state.
    /// Default 0.
    #[serde(default)]
    pub hysteresis: u32,
    /// `alpha`: reals start down until their first check passes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub alpha: bool,
    /// `omega`: run quorum and real-down notifications at shutdown too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub omega: bool,
    /// `quorum_up`: run when the quorum is gained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_up: Option<String>,
    /// `quorum_down`: run when the quorum is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_down: Option<String>,
    /// `smtp_alert`: mail its reals' and quorum's changes; default
    /// `global_defs.smtp_alert_checker`, else `smtp_alert`, else off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_alert: Option<bool>,
    /// `virtualhost`: default Host header for `HTTP_GET` / `SSL_GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    /// `sorry_server_inhibit`: keep the sorry server with weight 0 rather than removing it
    /// while the quorum holds. Our data plane never removes a real for a weight, so this
    /// changes nothing; it is accepted so that imported configurations keep it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sorry_server_inhibit: bool,
    /// `inhibit_on_failure`: default for the reals.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inhibit_on_failure: bool,
    /// `connect_timeout`: default for the checkers, seconds. keepalived's default is 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<f64>,
    /// `retry`: default for the checkers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    /// `delay_before_retry`: default for the checkers, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_before_retry: Option<f64>,
    /// `warmup`: default for the checkers, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<f64>,
    /// `real_server`: one `[[virtual_server.real_server]]` each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub real_server: Vec<RealServer>,
}

const fn default_delay_loop() -> f64 {
    60.0
}

fn default_lb_algo() -> String {
    "wlc".into()
}

fn default_lb_kind() -> String {
    "NAT".into()
}

/// keepalived's `SSL { }` (`keepalived/check/check_ssl.c` `build_ssl_ctx`): the client
/// certificate `SSL_GET` presents to reals that ask for one.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ssl {
    /// `certificate`: a PEM file with the client certificate and its chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// `key`: a PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    /// Default: the key in the `certificate` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `password`: opens an encrypted key (PKCS#8 `ENCRYPTED PRIVATE KEY`, as OpenSSL 3
    /// writes them; the older `Proc-Type: 4,ENCRYPTED` form is refused with the command
    /// that converts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `ca`: a PEM file of trusted certificates. keepalived loads it but never asks for the
    /// real's certificate to be verified, so alone it changes nothing; with `verify` it is
    /// what the real's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Ours, not keepalived's: verify each real's certificate against `ca`, for the name
    /// the handshake is for (the url's virtual host with `enable_sni`, else the real's
    /// address). A certificate that does not verify fails the check. Default false: any
    /// certificate is accepted, as keepalived accepts any.
    #[serde(default, skip_serializing_if = "crate::config::schema::is_false")]
    pub verify: bool,
}

/// keepalived's `real_server IPADDR [PORT] { }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// The real's address.
    pub ip: IpAddr,
    /// The real's port; default the virtual server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `weight`: 0..=65535 (ipvsadm's range); 0 drains. Default 1.
    #[serde(default = "default_weight")]
    pub weight: i64,
    /// `lb_kind` for this real; default the virtual server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb_kind: Option<String>,
    /// `inhibit_on_failure`: a failed real gets weight 0 instead of being removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inhibit_on_failure: Option<bool>,
    /// `notify_up`: run when the checks pass again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_up: Option<String>,
    /// `notify_down`: run when a check fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_down: Option<String>,
    /// `delay_loop`: seconds; default for this real's checkers (else the virtual server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_loop: Option<f64>,
    /// `alpha`: this real starts down until its checkers pass (else the virtual server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<bool>,
    /// `connect_timeout`: seconds; default for this real's checkers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<f64>,
    /// `retry` (`nb_get_retry`): default for this real's checkers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    /// `delay_before_retry`: seconds; default for this real's checkers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_before_retry: Option<f64>,
    /// `warmup`: seconds; default for this real's checkers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<f64>,
    /// `TCP_CHECK { }`: a TCP connect succeeds.
    #[serde(default, rename = "TCP_CHECK", skip_serializing_if = "Vec::is_empty")]
    pub tcp_check: Vec<Checker>,
    /// `HTTP_GET { }`: each `url` answers with the expected status or digest.
    #[serde(default, rename = "HTTP_GET", skip_serializing_if = "Vec::is_empty")]
    pub http_get: Vec<Checker>,
    /// `SSL_GET { }`: as `HTTP_GET`, over TLS.
    #[serde(default, rename = "SSL_GET", skip_serializing_if = "Vec::is_empty")]
    pub ssl_get: Vec<Checker>,
    /// `MISC_CHECK { }`: a program exits 0.
    #[serde(default, rename = "MISC_CHECK", skip_serializing_if = "Vec::is_empty")]
    pub misc_check: Vec<Checker>,
    /// `SMTP_CHECK { }`: the server answers HELO.
    #[serde(default, rename = "SMTP_CHECK", skip_serializing_if = "Vec::is_empty")]
    pub smtp_check: Vec<Checker>,
    /// `DNS_CHECK { }`: the server answers a query.
    #[serde(default, rename = "DNS_CHECK", skip_serializing_if = "Vec::is_empty")]
    pub dns_check: Vec<Checker>,
    /// `UDP_CHECK { }`: a datagram draws no ICMP error (or the required answer).
    #[serde(default, rename = "UDP_CHECK", skip_serializing_if = "Vec::is_empty")]
    pub udp_check: Vec<Checker>,
    /// `PING_CHECK { }`: the real answers an ICMP echo request.
    #[serde(default, rename = "PING_CHECK", skip_serializing_if = "Vec::is_empty")]
    pub ping_check: Vec<Checker>,
}

const fn default_weight() -> i64 {
    1
}

/// One checker block. The fields of every kind live in one table, as keepalived's parser
/// has them; validation refuses those that do not belong to the block's kind (a `misc_path`
/// in a `TCP_CHECK` is a mistake, not an option).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checker {
    /// `connect_ip`: default the real's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ip: Option<IpAddr>,
    /// `connect_port`: default the real's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_port: Option<u16>,
    /// `bindto`: the source address of the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindto: Option<IpAddr>,
    /// `bind_port`: the source port of the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_port: Option<u16>,
    /// `connect_timeout`: seconds. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<f64>,
    /// `retry` (or `nb_get_retry`): extra attempts before a failure counts. Default 1
    /// (`MISC_CHECK` 0, `DNS_CHECK` 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    /// Ours: failed attempts in a row that take an up checker down, the same as
    /// `retry` + 1 (give one or the other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// Ours: passes in a row that bring a down checker up, `delay_loop` apart, so a flapping
    /// real does not flap the data plane. Default 1 (keepalived's: one pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// `delay_before_retry`: seconds. Default 1 (`HTTP_GET` / `SSL_GET` 3, `DNS_CHECK`
    /// `delay_loop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_before_retry: Option<f64>,
    /// `warmup`: at most this many seconds of random delay before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<f64>,
    /// `delay_loop`: seconds between checks; default the virtual server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_loop: Option<f64>,
    /// `fwmark`: mark the check's packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    /// `HTTP_GET` / `SSL_GET` `url { }`: at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub url: Vec<Url>,
    /// `HTTP_GET` / `SSL_GET` `http_protocol`: 1.0, 1.0C or 1.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_protocol: Option<String>,
    /// `SSL_GET` `enable_sni`: send the virtual host as SNI.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_sni: bool,
    /// `SMTP_CHECK` `helo_name`. Default keepalived's, `smtpchecker.keepalived.org`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo_name: Option<String>,
    /// `DNS_CHECK` `type`: A, NS, CNAME, SOA, MX, TXT, AAAA, RRSIG or DNSKEY. Default SOA.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub query_type: Option<String>,
    /// `DNS_CHECK` `name`: the name queried. Default `.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `MISC_CHECK` `misc_path`: the command line (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misc_path: Option<String>,
    /// `MISC_CHECK` `misc_timeout`: seconds. Default `delay_loop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misc_timeout: Option<u32>,
    /// `MISC_CHECK` `misc_dynamic`: the exit status sets the weight.
    #[serde(default, skip_serializing_if = "is_false")]
    pub misc_dynamic: bool,
    /// `MISC_CHECK` `user`: who runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `UDP_CHECK` `payload`: the datagram, as hexadecimal octets (spaces allowed). Default
    /// keepalived's 32 octets of text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// `UDP_CHECK` `require_reply`: silence fails the check.
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_reply: bool,
    /// `UDP_CHECK` `require_reply HEX`: what the answer must start with, hexadecimal, `x`
    /// for any nibble; implies `require_reply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// `UDP_CHECK` `min_reply_length`: octets, with `reply`. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reply_length: Option<u16>,
    /// `UDP_CHECK` `max_reply_length`: octets, with `reply`. Default 255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reply_length: Option<u16>,
}

/// `HTTP_GET` / `SSL_GET` `url { }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Url {
    /// `path`: e.g. `/health` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `digest`: the MD5 of the body, as genhash prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `status_code`: codes or ranges, e.g. `["200-299", "301"]`. Default 200-299.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_code: Vec<String>,
    /// `virtualhost`: the Host header; default the real's or the virtual server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    /// `regex`: the body must contain a match (the check fails without one). Rust `regex`
    /// syntax, which is PCRE2's less backreferences and lookaround.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `regex_no_match`: a match of `regex` fails the check instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub regex_no_match: bool,
    /// `regex_options`: keepalived's PCRE2 option names; `caseless`, `multiline`, `dotall`,
    /// `extended`, `ungreedy`, `firstline`, `utf`, `ucp`, `never_utf` and `never_ucp` change
    /// the match; the optimisation options are accepted and change nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regex_options: Vec<String>,
    /// `regex_min_offset`: where in the body the search starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_min_offset: Option<u32>,
    /// `regex_max_offset`: the last offset at which a match may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_max_offset: Option<u32>,
}
