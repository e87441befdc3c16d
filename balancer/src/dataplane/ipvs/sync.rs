//! IPVS's connection synchronisation daemons (`ipvsadm --start-daemon`), which keepalived's
//! `lvs_sync_daemon` drives: the master daemon multicasts this node's connections, the
//! backup daemon installs its peers', so the node that takes over a VIP already knows the
//! connections through it.

use std::net::IpAddr;

use super::{
    IpvsDataplane, error,
    netlink::{Attr, attr, cmd, daemon},
};
use crate::dataplane::DataplaneError;

/// Which of the two daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRole {
    Master,
    Backup,
}

impl SyncRole {
    const fn state(self) -> u32 {
        match self {
            Self::Master => daemon::MASTER,
            Self::Backup => daemon::BACKUP,
        }
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Backup => "backup",
        }
    }
}

/// How a daemon runs; `None` leaves IPVS's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDaemon {
    pub interface: String,
    pub sync_id: u8,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<IpAddr>,
}

/// A daemon as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningSync {
    pub role: SyncRole,
    pub interface: String,
    pub sync_id: u32,
}

impl IpvsDataplane {
    /// Starts the `role` daemon; one already running is left as it is.
    ///
    /// # Errors
    /// The kernel refuses it (no such interface, say).
    pub fn start_sync(&mut self, role: SyncRole, d: &SyncDaemon) -> Result<(), DataplaneError> {
        let mut attrs = vec![
            Attr::U32(daemon::STATE, role.state()),
            Attr::Str(daemon::MCAST_IFN, d.interface.clone()),
            Attr::U32(daemon::SYNC_ID, u32::from(d.sync_id)),
        ];
        if let Some(maxlen) = d.maxlen {
            attrs.push(Attr::U16(daemon::SYNC_MAXLEN, maxlen));
        }
        if let Some(port) = d.port {
            attrs.push(Attr::Be16(daemon::MCAST_PORT, port));
        }
        if let Some(ttl) = d.ttl {
            attrs.push(Attr::U8(daemon::MCAST_TTL, ttl));
        }
        match d.group {
            Some(IpAddr::V4(g)) => {
                attrs.push(Attr::Bytes(daemon::MCAST_GROUP, g.octets().to_vec()));
            }
            Some(IpAddr::V6(g)) => {
                attrs.push(Attr::Bytes(daemon::MCAST_GROUP6, g.octets().to_vec()));
            }
            None => {}
        }
        match self
            .genl
            .request(cmd::NEW_DAEMON, vec![Attr::Nested(attr::DAEMON, attrs)])
        {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(error(
                "starting",
                format!("the {} sync daemon on {}", role.name(), d.interface),
                e,
            )),
            _ => Ok(()),
        }
    }

    /// Stops the `role` daemon; none running is not an error.
    ///
    /// # Errors
    /// The kernel refuses it.
    pub fn stop_sync(&mut self, role: SyncRole) -> Result<(), DataplaneError> {
        match self.genl.request(
            cmd::DEL_DAEMON,
            vec![Attr::Nested(
                attr::DAEMON,
                vec![Attr::U32(daemon::STATE, role.state())],
            )],
        ) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => Err(error(
                "stopping",
                format!("the {} sync daemon", role.name()),
                e,
            )),
            _ => Ok(()),
        }
    }

    /// The daemons running now.
    ///
    /// # Errors
    /// Netlink fails.
    pub fn sync_daemons(&mut self) -> Result<Vec<RunningSync>, DataplaneError> {
        self.dump_nested(
            cmd::GET_DAEMON,
            Vec::new(),
            attr::DAEMON,
            "the sync daemons",
            |a| {
                let role = match a.u32(daemon::STATE) {
                    Some(daemon::MASTER) => SyncRole::Master,
                    Some(daemon::BACKUP) => SyncRole::Backup,
                    _ => return Ok(None),
                };
                Ok(Some(RunningSync {
                    role,
                    interface: a.string(daemon::MCAST_IFN).unwrap_or_default(),
                    sync_id: a.u32(daemon::SYNC_ID).unwrap_or(0),
                }))
            },
        )
    }
}
