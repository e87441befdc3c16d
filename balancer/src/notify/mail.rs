//! keepalived's SMTP alerts (`keepalived/core/smtp.c`): a mail per VRRP instance or group
//! state change and per real server or quorum change, to `notification_email`, from
//! `notification_email_from`, through `smtp_server` in plain SMTP, as keepalived sends them.
//! Subjects are keepalived's: `[ROUTER_ID] VRRP Instance VI_1 - Entering MASTER state`,
//! `[ROUTER_ID] Realserver [198.18.0.11]:80 of virtual server [198.18.0.100]:80 - DOWN`.
//!
//! A mail is sent on its own task: an unreachable server (up to `smtp_connect_timeout`)
//! never delays a transition or a notify script. A failure is logged.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use crate::config::schema::GlobalDefs;
use crate::vrrp::fsm::State;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("smtp_server {0:?}: ADDR [PORT]")]
    Server(String),
    #[error("{what} {address:?} is not a mail address")]
    Address { what: &'static str, address: String },
}

/// Where and how alerts are mailed. The settings can change under the daemon's feet (a
/// reload): everything that mails holds the same `Mailer`, which reads them at each mail.
#[derive(Default)]
pub struct Mailer {
    settings: std::sync::RwLock<Option<Arc<Settings>>>,
}

struct Settings {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// `router_id`, or the host name: the subject's tag.
    router_id: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings = self.current();
        f.debug_struct("Mailer")
            .field("from", &settings.as_ref().map(|s| &s.from))
            .field("to", &settings.as_ref().map(|s| &s.to))
            .finish_non_exhaustive()
    }
}

/// The host name, as keepalived uses it for defaults.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Settings {
    /// The settings `global_defs` describes: `None` without recipients or a server, as
    /// keepalived then sends nothing.
    fn parse(g: &GlobalDefs) -> Result<Option<Self>, MailError> {
        let (Some(server), false) = (&g.smtp_server, g.notification_email.is_empty()) else {
            return Ok(None);
        };
        let mut words = server.split_whitespace();
        let host = words
            .next()
            .ok_or_else(|| MailError::Server(server.clone()))?;
        let port = match words.next() {
            None => 25,
            Some(p) => p.parse().map_err(|_| MailError::Server(server.clone()))?,
        };
        if words.next().is_some() {
            return Err(MailError::Server(server.clone()));
        }
        let hostname = hostname();
        // keepalived.conf's own samples write bare names (`acassen`), which keepalived
        // sends as they are and the server qualifies; a mail address needs a domain, and
        // the host name is what a server would most likely add.
        let mailbox = |what, address: &str| {
            let qualified = if address.contains('@') {
                address.to_owned()
            } else {
                format!("{address}@{hostname}")
            };
            qualified
                .parse::<Mailbox>()
                .map_err(|_| MailError::Address {
                    what,
                    address: address.to_owned(),
                })
        };
        let from = mailbox(
            "notification_email_from",
            &g.notification_email_from
                .clone()
                .unwrap_or_else(|| format!("keepalived@{hostname}")),
        )?;
        let to = g
            .notification_email
            .iter()
            .map(|a| mailbox("notification_email", a))
            .collect::<Result<Vec<_>, _>>()?;
        let helo = g.smtp_helo_name.clone().unwrap_or_else(|| hostname.clone());
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .hello_name(ClientId::Domain(helo))
            .timeout(Some(Duration::from_secs(u64::from(
                g.smtp_connect_timeout.unwrap_or(30),
            ))))
            .build();
        Ok(Some(Self {
            transport,
            from,
            to,
            router_id: g.router_id.clone().unwrap_or(hostname),
        }))
    }
}

impl Mailer {
    /// A mailer with the settings of `global_defs` (none: it sends nothing).
    ///
    /// # Errors
    /// A malformed server or address.
    pub fn from_config(g: &GlobalDefs) -> Result<Arc<Self>, MailError> {
        let mailer = Arc::new(Self::default());
        mailer.reconfigure(g)?;
        Ok(mailer)
    }

    /// Takes the settings of `global_defs`; on error the previous ones stay.
    ///
    /// # Errors
    /// A malformed server or address.
    pub fn reconfigure(&self, g: &GlobalDefs) -> Result<(), MailError> {
        let settings = Settings::parse(g)?.map(Arc::new);
        *self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = settings;
        Ok(())
    }

    /// Whether mail goes anywhere.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<Settings>> {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Mails `subject` (after the `[router_id]` tag) and `body`, on a task of its own.
    pub fn send(self: &Arc<Self>, subject: &str, body: &str) {
        if !self.is_configured() {
            return;
        }
        let (mailer, subject, body) = (self.clone(), subject.to_owned(), body.to_owned());
        tokio::spawn(async move { mailer.deliver(&subject, &body).await });
    }

    /// Mails `subject` and `body` and returns once the server has answered (or the
    /// connect timeout passed): for a stop, which must not end before its mail is out.
    pub async fn deliver(&self, subject: &str, body: &str) {
        let Some(settings) = self.current() else {
            return;
        };
        let subject = format!("[{}] {subject}", settings.router_id);
        let mut builder = Message::builder()
            .from(settings.from.clone())
            .subject(subject.clone())
            .user_agent("balancer".to_owned());
        for to in &settings.to {
            builder = builder.to(to.clone());
        }
        let message = match builder.body(format!("{body}\n")) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(subject, error = %e, "alert mail not built");
                return;
            }
        };
        match settings.transport.send(message).await {
            Ok(_) => tracing::info!(subject, "alert mailed"),
            Err(e) => tracing::warn!(subject, error = %e, "alert mail not sent"),
        }
    }
}

/// A VRRP instance's or group's alerts, as keepalived's `vrrp_smtp_notifier` /
/// `vrrp_sync_smtp_notifier` send them: MASTER, BACKUP, FAULT (unless `no_email_faults`)
/// and stop, each once per change of state.
#[derive(Debug)]
pub struct VrrpAlerts {
    pub mailer: Arc<Mailer>,
    /// A `vrrp_sync_group`'s, rather than an instance's.
    pub group: bool,
    pub no_faults: bool,
    last: std::sync::Mutex<Option<State>>,
}

impl VrrpAlerts {
    #[must_use]
    pub fn new(mailer: Arc<Mailer>, group: bool, no_faults: bool) -> Self {
        Self {
            mailer,
            group,
            no_faults,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The subject (without the tag) and body for `name` entering `state`, if one is sent.
    #[must_use]
    pub fn mail(&self, name: &str, state: State) -> Option<(String, String)> {
        if self.no_faults && state == State::Fault {
            return None;
        }
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == Some(state) {
            return None;
        }
        *last = Some(state);
        let what = match state {
            State::Master => "Entering MASTER state",
            State::Backup => "Entering BACKUP state",
            State::Fault => "Entering FAULT state",
            State::Init => "Stopping",
        };
        let body = match (self.group, state) {
            (false, State::Master) => "=> VRRP Instance is now owning VRRP VIPs <=",
            (false, State::Backup | State::Fault) => {
                "=> VRRP Instance is no longer owning VRRP VIPs <="
            }
            (false, State::Init) => "=> VRRP Instance stopping <=",
            (true, State::Master) => "=> All VRRP group instances are now in MASTER state <=",
            (true, State::Backup) => "=> All VRRP group instances are now in BACKUP state <=",
            (true, State::Fault) => "=> All VRRP group instances are now in FAULT state <=",
            (true, State::Init) => "=> All VRRP group instances stopping <=",
        };
        let kind = if self.group { "Group" } else { "Instance" };
        Some((format!("VRRP {kind} {name} - {what}"), body.to_owned()))
    }

    /// Mails `name` entering `state`, if that calls for a mail: in the background, but a
    /// stop's mail is given up to `stop_wait` before this returns (the daemon may exit
    /// right after).
    pub async fn send(&self, name: &str, state: State, stop_wait: Duration) {
        if let Some((subject, body)) = self.mail(name, state) {
            if state == State::Init {
                let delivered = self.mailer.deliver(&subject, &body);
                if tokio::time::timeout(stop_wait, delivered).await.is_err() {
                    tracing::warn!(name, "the stop's alert mail not sent in time");
                }
            } else {
                self.mailer.send(&subject, &body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals() -> GlobalDefs {
        GlobalDefs {
            notification_email: vec!["ops@example.org".into()],
            smtp_server: Some("198.18.0.25 2525".into()),
            router_id: Some("lb1".into()),
            ..GlobalDefs::default()
        }
    }

    #[tokio::test]
    async fn vrrp_alerts_follow_keepalived_once_per_state() {
        let mailer = Mailer::from_config(&globals()).unwrap();
        assert!(mailer.is_configured());
        let alerts = VrrpAlerts::new(mailer.clone(), false, true);
        assert_eq!(
            alerts.mail("VI_1", State::Master),
            Some((
                "VRRP Instance VI_1 - Entering MASTER state".into(),
                "=> VRRP Instance is now owning VRRP VIPs <=".into()
            ))
        );
        assert_eq!(alerts.mail("VI_1", State::Master), None, "once per change");
        assert_eq!(alerts.mail("VI_1", State::Fault), None, "no_email_faults");
        let group = VrrpAlerts::new(mailer, true, false);
        assert_eq!(
            group.mail("G", State::Backup).unwrap().0,
            "VRRP Group G - Entering BACKUP state"
        );
    }

    #[test]
    fn no_recipients_or_server_is_no_mailer_and_bad_values_are_named() {
        let mut g = globals();
        g.notification_email.clear();
        assert!(!Mailer::from_config(&g).unwrap().is_configured());
        let mut g = globals();
        g.smtp_server = Some("198.18.0.25 smtp".into());
        assert!(
            Mailer::from_config(&g)
                .unwrap_err()
                .to_string()
                .contains("ADDR [PORT]")
        );
        let mut g = globals();
        g.notification_email = vec!["not an address".into()];
        assert!(
            Mailer::from_config(&g)
                .unwrap_err()
                .to_string()
                .contains("not a mail address")
        );
    }
}
