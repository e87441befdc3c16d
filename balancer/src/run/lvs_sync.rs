//! `lvs_sync_daemon` on the IPVS data plane, as keepalived runs it: following a
//! `vrrp_instance`, the backup daemon from the start and the master daemon while the
//! instance is MASTER (the other one stopped); with no instance, both throughout. Both stop
//! with the daemon.

use tokio::{sync::watch, task::JoinHandle};

use super::{Backend, Daemon};
use crate::{
    config::{Config, schema::DataplaneKind},
    dataplane::ipvs::sync::{SyncDaemon, SyncRole},
    status::VrrpStatus,
};

/// The configured sync daemon and the task that follows its instance.
#[derive(Default)]
pub(super) struct LvsSync {
    daemon: Option<(SyncDaemon, Option<String>)>,
    follower: Option<JoinHandle<()>>,
}

/// The sync daemon `config` asks for, with the instance it follows (IPVS only: validation
/// warns that XDP ignores it). The sync ID defaults to the instance's VRID, else 0.
fn configured(config: &Config) -> Option<(SyncDaemon, Option<String>)> {
    let s = config.global_defs.lvs_sync_daemon.as_ref()?;
    if config.dataplane != DataplaneKind::Ipvs {
        return None;
    }
    let vrid = s
        .instance
        .as_ref()
        .and_then(|i| config.vrrp_instance.get(i))
        .and_then(|i| u8::try_from(i.virtual_router_id).ok());
    Some((
        SyncDaemon {
            interface: s.interface.clone(),
            sync_id: s.id.or(vrid).unwrap_or(0),
            maxlen: s.maxlen,
            port: s.port,
            ttl: s.ttl,
            group: s.group,
        },
        s.instance.clone(),
    ))
}

/// Makes `role` the one daemon running (keepalived's `ipvs_syncd_master` / `_backup`).
fn switch(program: &std::sync::Mutex<Backend>, daemon: &SyncDaemon, role: SyncRole) {
    let mut backend = program
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Backend::Ipvs(ipvs) = &mut *backend else {
        return;
    };
    let other = match role {
        SyncRole::Master => SyncRole::Backup,
        SyncRole::Backup => SyncRole::Master,
    };
    match ipvs.stop_sync(other) {
        Ok(()) => start(ipvs, role, daemon),
        Err(e) => tracing::error!(error = %e, "lvs_sync_daemon"),
    }
}

fn start(ipvs: &mut crate::dataplane::ipvs::IpvsDataplane, role: SyncRole, daemon: &SyncDaemon) {
    match ipvs.start_sync(role, daemon) {
        Ok(()) => tracing::info!(
            interface = daemon.interface,
            sync_id = daemon.sync_id,
            "IPVS {} sync daemon running",
            role.name()
        ),
        Err(e) => tracing::error!(error = %e, "lvs_sync_daemon"),
    }
}

impl Daemon {
    /// Starts the configured sync daemons: both when no instance is followed, else the
    /// backup one until [`Daemon::follow_sync`] sees the instance MASTER.
    pub(super) fn start_lvs_sync(&mut self) {
        self.lvs_sync.daemon = configured(&self.loaded.config);
        let Some((daemon, instance)) = &self.lvs_sync.daemon else {
            return;
        };
        if instance.is_some() {
            switch(&self.program, daemon, SyncRole::Backup);
            return;
        }
        let mut backend = self.lock();
        if let Backend::Ipvs(ipvs) = &mut *backend {
            for role in [SyncRole::Master, SyncRole::Backup] {
                start(ipvs, role, daemon);
            }
        }
    }

    /// When instance `name` is the one the sync daemon follows: switches the daemons as its
    /// state changes, until the instance stops (its status channel closes).
    pub(super) fn follow_sync(&mut self, name: &str, mut status: watch::Receiver<VrrpStatus>) {
        let Some((daemon, Some(instance))) = self.lvs_sync.daemon.clone() else {
            return;
        };
        if instance != name {
            return;
        }
        if let Some(old) = self.lvs_sync.follower.take() {
            old.abort();
        }
        let program = self.program.clone();
        self.lvs_sync.follower = Some(tokio::spawn(async move {
            let mut current = SyncRole::Backup;
            loop {
                let role = if status.borrow_and_update().state == "MASTER" {
                    SyncRole::Master
                } else {
                    SyncRole::Backup
                };
                if role != current {
                    // Netlink and the kernel's thread start off the async workers (this may
                    // run on VRRP's own runtime).
                    let (program, daemon) = (program.clone(), daemon.clone());
                    let _ =
                        tokio::task::spawn_blocking(move || switch(&program, &daemon, role)).await;
                    current = role;
                }
                if status.changed().await.is_err() {
                    break;
                }
            }
        }));
    }

    /// A reload that changes `lvs_sync_daemon` restarts the daemons with the new settings
    /// (as keepalived's reload does), following the instance's current state.
    pub(super) fn reload_lvs_sync(&mut self, old: &Config) -> Option<String> {
        if configured(old) == configured(&self.loaded.config) {
            return None;
        }
        self.stop_lvs_sync();
        self.start_lvs_sync();
        if let Some((_, Some(name))) = self.lvs_sync.daemon.clone()
            && let Some(status) = self.instances.get(&name).map(|r| r.status.clone())
        {
            self.follow_sync(&name, status);
        }
        Some("lvs_sync_daemon restarted".to_owned())
    }

    /// Stops both daemons (at shutdown, as keepalived does).
    pub(super) fn stop_lvs_sync(&mut self) {
        if let Some(f) = self.lvs_sync.follower.take() {
            f.abort();
        }
        if self.lvs_sync.daemon.take().is_none() {
            return;
        }
        let mut backend = self.lock();
        if let Backend::Ipvs(ipvs) = &mut *backend {
            for role in [SyncRole::Master, SyncRole::Backup] {
                if let Err(e) = ipvs.stop_sync(role) {
                    tracing::error!(error = %e, "lvs_sync_daemon");
                }
            }
        }
    }
}
