//! The VRRP side of `balancer run`: its thread and runtime, the instances with their
//! scripts, FIFOs, alerts and sync groups, and the static addresses, routes and rules.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinHandle};

use crate::{
    config::{Config, Loaded},
    model::VrrpInstance,
    notify::{
        InstanceScripts, Script, ScriptUser,
        fifo::Fifo,
        mail::{Mailer, VrrpAlerts},
    },
    status::VrrpStatus,
    vrrp::{
        net::{NetError, Netlink, run_member, statics::Statics},
        sync::{GroupHandle, SyncLink},
        track::script::TrackScript,
    },
};

use super::{Daemon, RunError, script_user};

/// VRRP's own thread and single-threaded runtime: adverts and the master-down timer never
/// wait behind a connection-table sweep, thousands of checkers, a reload or a status dump on
/// the daemon's workers (a late advert is a failover, a late timer a slower one).
pub(super) struct VrrpRuntime {
    pub(super) handle: tokio::runtime::Handle,
    pub(super) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl VrrpRuntime {
    /// Starts the thread, with `global_defs`' `vrrp_rt_priority` (`SCHED_RR`) and
    /// `vrrp_priority` (nice) when given; a refusal is logged and the thread runs on.
    pub(super) fn start(rt_priority: Option<u8>, nice: Option<i8>) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vrrp".into())
            .spawn(move || {
                schedule_vrrp_thread(rt_priority, nice);
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// keepalived's `vrrp_rt_priority` and `vrrp_priority`, for the calling thread.
pub(super) fn schedule_vrrp_thread(rt_priority: Option<u8>, nice: Option<i8>) {
    if let Some(n) = nice {
        // SAFETY: plain system calls on this thread's id.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(
                libc::PRIO_PROCESS,
                libc::id_t::try_from(tid).unwrap_or(0),
                i32::from(n),
            )
        };
        if rc != 0 {
            tracing::warn!(nice = n, error = %std::io::Error::last_os_error(), "vrrp_priority not applied");
        }
    }
    if let Some(p) = rt_priority {
        let param = libc::sched_param {
            sched_priority: i32::from(p),
        };
        // SAFETY: a valid sched_param for this thread (0).
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &raw const param) };
        if rc == 0 {
            tracing::info!(priority = p, "VRRP runs under SCHED_RR");
        } else {
            tracing::warn!(priority = p, error = %std::io::Error::last_os_error(), "vrrp_rt_priority not applied");
        }
    }
}

impl Drop for VrrpRuntime {
    /// The instances have stopped by now (the daemon awaits them); whatever is left is
    /// dropped with the runtime.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One running VRRP instance.
pub(super) struct RunningInstance {
    /// What it was started from; a reload restarts it only when this changes.
    pub(super) inputs: InstanceInputs,
    pub(super) stop: watch::Sender<bool>,
    pub(super) status: watch::Receiver<VrrpStatus>,
    pub(super) task: JoinHandle<()>,
}

/// Everything an instance is built from: its model, and the configuration blocks of its
/// scripts (notify and `track_script`) and of the script user.
#[derive(PartialEq)]
pub(super) struct InstanceInputs {
    pub(super) model: VrrpInstance,
    pub(super) block: Option<crate::config::schema::VrrpInstance>,
    pub(super) scripts: Vec<crate::config::schema::VrrpScript>,
    pub(super) script_user: Option<String>,
    pub(super) script_security: bool,
}

pub(super) fn instance_inputs(config: &Config, model: &VrrpInstance) -> InstanceInputs {
    let block = config.vrrp_instance.get(&model.name).cloned();
    let scripts = model
        .track_scripts
        .iter()
        .filter_map(|(n, _)| config.vrrp_script.get(n).cloned())
        .collect();
    InstanceInputs {
        model: model.clone(),
        block,
        scripts,
        script_user: config.global_defs.script_user.clone(),
        script_security: config.global_defs.enable_script_security,
    }
}

/// Makes the kernel hold `wanted`'s `static_ipaddress`, `static_routes` and `static_rules`
/// where it held `old`'s (nothing wanted: all of `old` removed); returns (and logs) what
/// failed.
pub(super) async fn change_statics(wanted: &Statics, old: &Statics) -> Vec<String> {
    if wanted.is_empty() && old.is_empty() {
        return Vec::new();
    }
    let failures = match Netlink::connect() {
        Ok(netlink) => wanted.apply(old, &netlink).await,
        Err(e) => vec![format!("static entries: {e}")],
    };
    for f in &failures {
        tracing::error!("{f}");
    }
    failures
}

/// keepalived's `init_file`: a `vrrp_track_file` starts with its value (unless the file
/// exists and `overwrite` is not given). A file that cannot be written is logged; it then
/// reads as 0, as a missing file does.
/// At a reload (`before` given) only blocks that are new or changed are initialised.
pub(super) fn init_track_files(config: &Config, before: Option<&Config>) {
    for (name, block) in &config.vrrp_track_file {
        let Some(value) = block.init_file else {
            continue;
        };
        if before.is_some_and(|b| b.vrrp_track_file.get(name) == Some(block)) {
            continue;
        }
        if (block.init_overwrite || !block.file.exists())
            && let Err(e) = std::fs::write(&block.file, format!("{value}\n"))
        {
            tracing::error!(vrrp_track_file = name, path = %block.file.display(), error = %e, "init_file not written");
        }
    }
}

/// An instance's `track_script`s (from their `vrrp_script` blocks) and notify scripts, split
/// and checked now, so a script keepalived would refuse stops the start with its reason.
pub(super) fn instance_scripts(
    config: &Config,
    model: &VrrpInstance,
    fifos: &[Arc<Fifo>],
    mailer: Option<&Arc<Mailer>>,
) -> Result<(Vec<TrackScript>, InstanceScripts), RunError> {
    let instance = model.name.as_str();
    let block = config.vrrp_instance.get(instance);
    let mail = vrrp_alerts(config, mailer, block.and_then(|b| b.smtp_alert), false);
    let none = (
        Vec::new(),
        InstanceScripts {
            name: instance.to_owned(),
            fifos: fifos.to_vec(),
            mail: mail.clone(),
            ..InstanceScripts::default()
        },
    );
    let Some(inst) = block else {
        return Ok(none);
    };
    let security = config.global_defs.enable_script_security;
    let script_err = |source| RunError::Script {
        block: format!("vrrp_instance {instance}"),
        source,
    };
    let notify = [
        &inst.notify_master,
        &inst.notify_backup,
        &inst.notify_fault,
        &inst.notify_stop,
        &inst.notify,
        &inst.notify_master_rx_lower_pri,
    ];
    if model.track_scripts.is_empty() && notify.iter().all(|n| n.is_none()) {
        return Ok(none);
    }
    let default_user = script_user(config, None)?;
    let mut tracked = Vec::new();
    // validate() has checked that every name is a vrrp_script.
    for (s, weight) in model
        .track_scripts
        .iter()
        .filter_map(|(n, w)| Some((config.vrrp_script.get(n)?, *w)))
    {
        let user = match &s.user {
            Some(u) => script_user(config, Some(u))?,
            None => default_user.clone(),
        };
        tracked.push(TrackScript {
            script: Script::prepare(&s.script, user, security).map_err(script_err)?,
            interval: Duration::from_secs_f64(s.interval.max(0.0)),
            timeout: s.timeout.map(|t| Duration::from_secs_f64(t.max(0.0))),
            weight: weight.unwrap_or(s.weight),
            rise: s.rise,
            fall: s.fall,
            init_fail: s.init_fail,
        });
    }
    let mut scripts =
        notify_scripts(instance, notify, &default_user, security, fifos).map_err(script_err)?;
    scripts.mail = mail;
    Ok((tracked, scripts))
}

/// An instance's or group's mail alerts: its `smtp_alert`, else `global_defs`' default;
/// none without a mailer.
pub(super) fn vrrp_alerts(
    config: &Config,
    mailer: Option<&Arc<Mailer>>,
    own: Option<bool>,
    group: bool,
) -> Option<Arc<VrrpAlerts>> {
    let g = &config.global_defs;
    // Asked for: the mailer may get its settings only at a later reload.
    let mailer = mailer.filter(|_| own.unwrap_or_else(|| g.vrrp_alerts()))?;
    Some(Arc::new(VrrpAlerts::new(
        mailer.clone(),
        group,
        g.no_email_faults,
    )))
}

/// `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`, `notify` and
/// `notify_master_rx_lower_pri`, in that order, prepared for `name` (an instance or a sync
/// group).
pub(super) fn notify_scripts(
    name: &str,
    [master, backup, fault, stop, generic, rx_lower]: [&Option<String>; 6],
    user: &ScriptUser,
    security: bool,
    fifos: &[Arc<Fifo>],
) -> Result<InstanceScripts, crate::notify::ScriptError> {
    let prepare = |command: &Option<String>| {
        command
            .as_ref()
            .map(|c| Script::prepare(c, user.clone(), security))
            .transpose()
    };
    Ok(InstanceScripts {
        name: name.to_owned(),
        master: prepare(master)?,
        backup: prepare(backup)?,
        fault: prepare(fault)?,
        stop: prepare(stop)?,
        generic: prepare(generic)?,
        master_rx_lower_pri: prepare(rx_lower)?,
        fifos: fifos.to_vec(),
        mail: None,
    })
}

/// `notify_fifo` and `vrrp_notify_fifo`, opened (created if missing) with their scripts
/// started; every instance and sync group writes its events to each.
pub(super) fn notify_fifos(config: &Config) -> Result<Vec<Arc<Fifo>>, RunError> {
    let g = &config.global_defs;
    let mut fifos = Vec::new();
    for (path, script) in [
        (&g.notify_fifo, &g.notify_fifo_script),
        (&g.vrrp_notify_fifo, &g.vrrp_notify_fifo_script),
    ] {
        let Some(line) = path else { continue };
        // keepalived's `notify_fifo PATH [USER [GROUP]]`.
        let mut words = line.split_whitespace();
        let path = words.next().unwrap_or_default();
        let owner_spec: Vec<&str> = words.collect();
        let owner = if owner_spec.is_empty() {
            None
        } else {
            let user = ScriptUser::from_spec(Some(&owner_spec.join(":")), false)
                .map_err(|source| RunError::ScriptUser { source })?;
            Some((user.uid, user.gid))
        };
        let script = script
            .as_ref()
            .map(|c| {
                Script::prepare(c, script_user(config, None)?, g.enable_script_security).map_err(
                    |source| RunError::Script {
                        block: "global_defs notify_fifo_script".into(),
                        source,
                    },
                )
            })
            .transpose()?;
        fifos.push(Arc::new(Fifo::open(Path::new(path), script, owner)?));
    }
    Ok(fifos)
}

/// What the VRRP instances are wired to at start: the sync groups (their blocks and
/// members) and the notify FIFOs.
#[derive(PartialEq)]
pub(super) struct VrrpWiring<'a> {
    pub(super) groups: &'a std::collections::BTreeMap<String, crate::config::schema::SyncGroup>,
    pub(super) members: Vec<(&'a str, Option<&'a str>)>,
    pub(super) fifos: [Option<&'a str>; 4],
}

pub(super) fn vrrp_wiring(loaded: &Loaded) -> VrrpWiring<'_> {
    let g = &loaded.config.global_defs;
    VrrpWiring {
        groups: &loaded.config.vrrp_sync_group,
        members: loaded
            .validated
            .model
            .vrrp
            .iter()
            .map(|i| (i.name.as_str(), i.sync_group.as_deref()))
            .collect(),
        fifos: [
            g.notify_fifo.as_deref(),
            g.notify_fifo_script.as_deref(),
            g.vrrp_notify_fifo.as_deref(),
            g.vrrp_notify_fifo_script.as_deref(),
        ],
    }
}

/// A member's link to its `vrrp_sync_group`, and whether the group keeps tracker weights.
type SyncMember = (SyncLink, bool);

/// The running sync groups: by instance name, its group, its place there and whether the
/// group keeps tracker weights (a member restarted by a reload joins again); and the tasks
/// that end once the handles are dropped and the members have stopped (and the group's
/// `notify_stop` has run). Groups are wired at start, and again by a reload that changes
/// them (every instance then restarts).
#[derive(Default)]
pub(super) struct SyncGroups {
    pub(super) members: BTreeMap<String, (GroupHandle, usize, bool)>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

/// Starts a coordinator (and notify scripts) for every `vrrp_sync_group` of two or more
/// running instances; keepalived drops a group of one (`vrrp_sync_set_group`).
pub(super) fn sync_groups(
    config: &Config,
    instances: &[VrrpInstance],
    fifos: &[Arc<Fifo>],
    mailer: Option<&Arc<Mailer>>,
) -> Result<SyncGroups, RunError> {
    let mut groups = SyncGroups::default();
    for (name, group) in &config.vrrp_sync_group {
        let members: Vec<&str> = instances
            .iter()
            .filter(|i| i.sync_group.as_deref() == Some(name.as_str()))
            .map(|i| i.name.as_str())
            .collect();
        // A group naming no running instance has nothing to sync; one of one member is kept,
        // as keepalived keeps it (validation warned).
        if members.is_empty() {
            continue;
        }
        let scripts = notify_scripts(
            name,
            [
                &group.notify_master,
                &group.notify_backup,
                &group.notify_fault,
                &group.notify_stop,
                &group.notify,
                &None,
            ],
            &script_user(config, None)?,
            config.global_defs.enable_script_security,
            fifos,
        )
        .map_err(|source| RunError::Script {
            block: format!("vrrp_sync_group {name}"),
            source,
        })?;
        let mut scripts = scripts;
        scripts.mail = vrrp_alerts(config, mailer, group.smtp_alert, true);
        let (notify, notifier) = if scripts.is_empty() {
            (None, None)
        } else {
            let (tx, task) = crate::notify::spawn(scripts);
            (Some(tx), Some(task))
        };
        let (handle, coordinator) = crate::vrrp::sync::spawn(name.clone(), members.len(), notify);
        for (place, member) in members.into_iter().enumerate() {
            groups.members.insert(
                member.to_owned(),
                (handle.clone(), place, group.sync_group_tracking_weight),
            );
        }
        groups.tasks.push(tokio::spawn(async move {
            let _ = coordinator.await;
            if let Some(task) = notifier {
                let _ = task.await;
            }
        }));
    }
    Ok(groups)
}

/// Runs one configured VRRP instance until `stopped` turns true, publishing its state on
/// `status`; its notify scripts run on their own task, which is awaited so `notify_stop`
/// completes before the task ends.
pub(super) fn spawn_instance(
    vrrp: &tokio::runtime::Handle,
    instance: &VrrpInstance,
    (tracked, scripts): (Vec<TrackScript>, InstanceScripts),
    sync: Option<SyncMember>,
    (mut stopped, start_at): (watch::Receiver<bool>, Option<tokio::time::Instant>),
    status: watch::Sender<VrrpStatus>,
) -> JoinHandle<()> {
    let mut spec = instance.spec.clone();
    spec.track
        .interfaces
        .extend(instance.track_interfaces.iter().cloned());
    spec.track
        .files
        .extend(instance.track_files.iter().cloned());
    spec.track
        .processes
        .extend(instance.track_processes.iter().cloned());
    spec.track.scripts = tracked;
    if sync.as_ref().is_some_and(|(_, weights)| !weights) {
        spec.track.ignore_weights();
    }
    let sync = sync.map(|(link, _)| link);
    let name = instance.name.clone();
    tracing::info!(
        instance = name,
        interface = spec.interface,
        "VRRP instance starting"
    );
    vrrp.spawn(async move {
        // `vrrp_startup_delay`: nothing is sent or elected before it ends.
        if let Some(at) = start_at.filter(|at| *at > tokio::time::Instant::now()) {
            tracing::info!(instance = name, "delaying startup (vrrp_startup_delay)");
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                _ = stopped.wait_for(|s| *s) => {
                    log_instance_end((name, Ok(())));
                    return;
                }
            }
        }
        let (tx, notifier) = if scripts.is_empty() {
            (None, None)
        } else {
            let (tx, task) = crate::notify::spawn(scripts);
            (Some(tx), Some(task))
        };
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let observer = status.clone();
        let result = run_member(spec, shutdown, tx, Some(observer), sync)
            .await
            .map(|_| ());
        if let Some(task) = notifier {
            let _ = task.await;
        }
        if let Err(e) = &result {
            status.send_modify(|s| {
                "STOPPED".clone_into(&mut s.state);
                s.since = crate::status::unix_now();
                s.why = format!("failed: {e}");
            });
        }
        log_instance_end((name, result));
    })
}

/// An instance's name and how its task ended.
pub(super) type InstanceEnd = (String, Result<(), NetError>);

pub(super) fn log_instance_end(ended: InstanceEnd) {
    match ended {
        (name, Ok(())) => tracing::info!(instance = name, "VRRP instance stopped"),
        (name, Err(e)) => tracing::error!(instance = name, error = %e, "VRRP instance failed"),
    }
}

impl Daemon {
    pub(super) fn start_instance(
        &mut self,
        instance: &VrrpInstance,
        scripts: (Vec<TrackScript>, InstanceScripts),
    ) {
        let (stop, stopped) = watch::channel(false);
        let (status_tx, status) = watch::channel(VrrpStatus {
            name: instance.name.clone(),
            interface: instance.spec.interface.clone(),
            vrid: instance.spec.config.vrid,
            version: 0,
            state: "INIT".into(),
            priority: instance.spec.config.priority,
            configured_priority: instance.spec.config.priority,
            master: None,
            since: crate::status::unix_now(),
            why: "starting".into(),
            become_master: 0,
            release_master: 0,
        });
        let sync = self
            .sync
            .members
            .get(&instance.name)
            .map(|(group, member, weights)| (group.link(*member), *weights));
        let task = spawn_instance(
            &self.vrrp_runtime.handle,
            instance,
            scripts,
            sync,
            (stopped, self.vrrp_start_at),
            status_tx,
        );
        self.follow_sync(&instance.name, status.clone());
        self.instances.insert(
            instance.name.clone(),
            RunningInstance {
                inputs: instance_inputs(&self.loaded.config, instance),
                stop,
                status,
                task,
            },
        );
    }

    /// Stops every instance together, then their sync groups (whose `notify_stop` runs once
    /// their members have stopped).
    pub(super) async fn stop_all_instances(&mut self) {
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for running in self.instances.values() {
            let _ = running.stop.send(true);
        }
        for name in names {
            self.stop_instance(&name).await;
        }
        self.sync.members.clear();
        for group in std::mem::take(&mut self.sync.tasks) {
            let _ = group.await;
        }
    }

    /// Stops one instance (priority 0 if master, addresses released, `notify_stop`) and waits
    /// for it.
    pub(super) async fn stop_instance(&mut self, name: &str) {
        if let Some(running) = self.instances.remove(name) {
            let _ = running.stop.send(true);
            let _ = running.task.await;
        }
    }
}
