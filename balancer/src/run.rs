//! `balancer run`: the data plane from a configuration (lb.toml or keepalived.conf), until
//! stopped.
//!
//! The maps are pinned per instance under `/sys/fs/bpf/balancer/INSTANCE`, so a restart adopts
//! the services, real indexes and established connections of the run before. Every interval
//! the connection table is swept (expiry, active counts) and the counters are reported.
//! The configured VRRP instances run beside it (with their `track_interface`s); on SIGTERM
//! they advertise priority 0 and remove their VIPs before the data plane detaches.
//! Their `track_script`s and notify scripts run with keepalived's semantics (`script_user`,
//! `enable_script_security`). The health checkers of the configured reals set their weights
//! through the same data plane.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use crate::{
    check::{
        config::ScriptPolicy,
        runner::{DEFAULT_CONCURRENCY, ServiceChecks, SharedDataplane, spawn},
    },
    config::{Config, ConfigError, load_any},
    dataplane::{
        Dataplane, DataplaneError,
        xdp::{LoadOptions, PinError, ProtoCounters, XdpError, XdpProgram, ensure_bpffs},
    },
    model::{Protocol, VirtualService, VrrpInstance},
    notify::{InstanceScripts, Script, ScriptUser, fifo::Fifo},
    vrrp::{
        net::{NetError, run_member},
        sync::SyncLink,
        track::{TrackInterface, script::TrackScript},
    },
};

/// Where the bpf filesystem is normally mounted; mounted there when it is not.
pub const PIN_ROOT: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Pin(#[from] PinError),
    /// `block` is `vrrp_instance NAME` or `vrrp_sync_group NAME`.
    #[error("{block}: {source}")]
    Script {
        block: String,
        #[source]
        source: crate::notify::ScriptError,
    },
    #[error("global_defs: {0}")]
    Fifo(#[from] crate::notify::fifo::FifoError),
    #[error("global_defs.script_user: {source}")]
    ScriptUser {
        #[source]
        source: crate::notify::SecurityError,
    },
    #[error(transparent)]
    Check(#[from] crate::check::config::ConfigError),
    #[error("installing the {signal} handler")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
}

/// How `run` behaves, from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Seconds between sweeps and counter reports.
    pub interval: Duration,
    /// Separates the pinned maps of daemons side by side (one per network namespace).
    pub instance: String,
    /// On stop, leave the maps pinned for the next run to adopt (instead of removing them).
    pub keep_state: bool,
}

/// The name a service goes by in logs and in the data plane: as `ipvsadm -Ln` shows it.
#[must_use]
pub fn service_name(s: &VirtualService) -> String {
    let proto = match s.protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    };
    match s.vips.first() {
        Some(std::net::IpAddr::V6(a)) => format!("{proto} [{a}]:{}", s.port),
        Some(a) => format!("{proto} {a}:{}", s.port),
        None => format!("{proto} *:{}", s.port),
    }
}

/// The pin directory of an instance.
#[must_use]
pub fn pin_dir(root: &Path, instance: &str) -> PathBuf {
    root.join("balancer").join(instance)
}

/// Loads the configuration, programs and attaches the data plane, and runs until SIGINT or
/// SIGTERM; then detaches from every interface.
///
/// # Errors
/// The configuration is invalid, or loading, programming, attaching or detaching failed. On an
/// attach failure the interfaces attached so far are detached again.
pub async fn run(options: &RunOptions) -> Result<(), RunError> {
    let loaded = load_any(&options.config)?;
    for w in &loaded.validated.warnings {
        tracing::warn!("{w}");
    }
    let mut sigint = signal(SignalKind::interrupt()).map_err(|source| RunError::Signal {
        signal: "SIGINT",
        source,
    })?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| RunError::Signal {
        signal: "SIGTERM",
        source,
    })?;

    let root = Path::new(PIN_ROOT);
    ensure_bpffs(root)?;
    let mut program = XdpProgram::load_with(&LoadOptions {
        pin_dir: Some(pin_dir(root, &options.instance)),
        ..LoadOptions::default()
    })?;
    for service in &loaded.validated.model.services {
        let name = service_name(service);
        program.apply(&name, service)?;
        tracing::info!(service = %name, reals = service.reals.len(), "service programmed");
    }
    let removed = program.remove_unclaimed()?;
    if removed > 0 {
        tracing::info!(
            removed,
            "services of the previous run no longer configured, removed"
        );
    }
    for interface in &loaded.config.xdp.interfaces {
        // On error `program` drops here, which detaches the interfaces already attached.
        let mode = program.attach(interface, loaded.config.xdp.mode)?;
        tracing::info!(interface, %mode, "XDP program attached");
    }

    // The data plane is programmed on master and backup alike, as keepalived programs IPVS on
    // both, so a failover needs no reprogramming.
    let (stop, stopped) = watch::channel(false);
    let mut vrrp = JoinSet::new();
    let fifos = notify_fifos(&loaded.config)?;
    let mut sync = sync_groups(&loaded.config, &loaded.validated.model.vrrp, &fifos)?;
    for instance in &loaded.validated.model.vrrp {
        let scripts = instance_scripts(&loaded.config, &instance.name, &fifos)?;
        let link = sync.links.remove(&instance.name);
        spawn_instance(&mut vrrp, instance, scripts, link, stopped.clone());
    }

    // Checkers and this loop share the program: checkers set weights, the loop sweeps.
    let program = Arc::new(Mutex::new(program));
    let shared: SharedDataplane = program.clone();
    let checks = spawn(
        service_checks(&loaded.config, &loaded.validated.model.services)?,
        &shared,
        DEFAULT_CONCURRENCY,
    );
    let lock = || program.lock().unwrap_or_else(PoisonError::into_inner);

    let mut ticker = tokio::time::interval(options.interval);
    ticker.tick().await;
    let mut last = lock().proto_counters()?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                // A failed read is reported and retried next time: leaving here would skip
                // the orderly stop (priority 0, VIPs released) below.
                let live = match lock().sweep() {
                    Ok(sweep) => sweep.live,
                    Err(e) => {
                        tracing::error!(error = %e, "connection table sweep failed");
                        0
                    }
                };
                match lock().proto_counters() {
                    Ok(now) => {
                        report(&now.since(&last), options.interval, live);
                        last = now;
                    }
                    Err(e) => tracing::error!(error = %e, "reading the counters failed"),
                }
            }
            Some(ended) = vrrp.join_next() => log_instance_end(ended),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("stopping: VRRP instances advertise priority 0 and release their addresses");
    let _ = stop.send(true);
    while let Some(ended) = vrrp.join_next().await {
        log_instance_end(ended);
    }
    // The groups' notify_stop runs once their members have stopped.
    for group in sync.tasks {
        let _ = group.await;
    }
    checks.stop().await;
    tracing::info!("stopping: detaching from every interface");
    let mut program = lock();
    program.detach_all()?;
    if !options.keep_state {
        program.unpin()?;
    }
    Ok(())
}

type InstanceEnd = (String, Result<(), NetError>);

/// The health checkers of every configured service that has any, named as the data plane
/// knows the service. A model service is matched to its `virtual_server` by protocol and its
/// set of reals (a `virtual_server_group` may give one block several services).
fn service_checks(
    config: &Config,
    services: &[VirtualService],
) -> Result<Vec<ServiceChecks>, RunError> {
    let mut out = Vec::new();
    let mut policy = None;
    for svc in services {
        let proto = match svc.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        };
        let reals: std::collections::BTreeSet<(std::net::IpAddr, u16)> =
            svc.reals.iter().map(|r| (r.addr, r.port)).collect();
        let Some(vs) = config.virtual_server.iter().find(|vs| {
            vs.protocol
                .as_deref()
                .unwrap_or("UDP")
                .eq_ignore_ascii_case(proto)
                && vs
                    .real_server
                    .iter()
                    .map(|rs| (rs.ip, rs.port.or(vs.port).unwrap_or(svc.port)))
                    .collect::<std::collections::BTreeSet<_>>()
                    == reals
        }) else {
            continue;
        };
        let has_checks = vs.real_server.iter().any(|rs| {
            [
                &rs.tcp_check,
                &rs.http_get,
                &rs.misc_check,
                &rs.ssl_get,
                &rs.smtp_check,
                &rs.dns_check,
            ]
            .iter()
            .any(|c| !c.is_empty())
        });
        if !has_checks {
            continue;
        }
        if policy.is_none() {
            policy = Some(ScriptPolicy {
                user: script_user(config, None)?,
                security: config.global_defs.enable_script_security,
            });
        }
        if let Some(p) = &policy {
            out.push(crate::check::config::service_checks(
                &service_name(svc),
                vs,
                p,
            )?);
        }
    }
    Ok(out)
}

/// The script user and security setting of `global_defs`, as keepalived chooses them.
fn script_user(config: &Config, spec: Option<&str>) -> Result<ScriptUser, RunError> {
    ScriptUser::from_spec(
        spec.or(config.global_defs.script_user.as_deref()),
        config.global_defs.enable_script_security,
    )
    .map_err(|source| RunError::ScriptUser { source })
}

/// An instance's `track_script`s (from their `vrrp_script` blocks) and notify scripts, split
/// and checked now, so a script keepalived would refuse stops the start with its reason.
fn instance_scripts(
    config: &Config,
    instance: &str,
    fifos: &[Arc<Fifo>],
) -> Result<(Vec<TrackScript>, InstanceScripts), RunError> {
    let none = (
        Vec::new(),
        InstanceScripts {
            name: instance.to_owned(),
            fifos: fifos.to_vec(),
            ..InstanceScripts::default()
        },
    );
    let Some(inst) = config.vrrp_instance.get(instance) else {
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
    if inst.track_script.is_empty() && notify.iter().all(|n| n.is_none()) {
        return Ok(none);
    }
    let default_user = script_user(config, None)?;
    let mut tracked = Vec::new();
    // validate() has checked that every name is a vrrp_script.
    for s in inst
        .track_script
        .iter()
        .filter_map(|n| config.vrrp_script.get(n))
    {
        let user = match &s.user {
            Some(u) => script_user(config, Some(u))?,
            None => default_user.clone(),
        };
        tracked.push(TrackScript {
            script: Script::prepare(&s.script, user, security).map_err(script_err)?,
            interval: Duration::from_secs_f64(s.interval.max(0.0)),
            timeout: s.timeout.map(|t| Duration::from_secs_f64(t.max(0.0))),
            weight: s.weight,
            rise: s.rise,
            fall: s.fall,
            init_fail: s.init_fail,
        });
    }
    let scripts =
        notify_scripts(instance, notify, &default_user, security, fifos).map_err(script_err)?;
    Ok((tracked, scripts))
}

/// `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`, `notify` and
/// `notify_master_rx_lower_pri`, in that order, prepared for `name` (an instance or a sync
/// group).
fn notify_scripts(
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
    })
}

/// `notify_fifo` and `vrrp_notify_fifo`, opened (created if missing) with their scripts
/// started; every instance and sync group writes its events to each.
fn notify_fifos(config: &Config) -> Result<Vec<Arc<Fifo>>, RunError> {
    let g = &config.global_defs;
    let mut fifos = Vec::new();
    for (path, script) in [
        (&g.notify_fifo, &g.notify_fifo_script),
        (&g.vrrp_notify_fifo, &g.vrrp_notify_fifo_script),
    ] {
        let Some(path) = path else { continue };
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
        fifos.push(Arc::new(Fifo::open(Path::new(path), script)?));
    }
    Ok(fifos)
}

/// A member's link to its `vrrp_sync_group`, and whether the group keeps tracker weights.
type SyncMember = (SyncLink, bool);

/// The running sync groups: each member's link by instance name, and the tasks that end
/// once the members have stopped (and the group's `notify_stop` has run).
#[derive(Default)]
struct SyncGroups {
    links: BTreeMap<String, SyncMember>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts a coordinator (and notify scripts) for every `vrrp_sync_group` of two or more
/// running instances; keepalived drops a group of one (`vrrp_sync_set_group`). Returns each
/// member's link by instance name, and the tasks that end once the members have stopped.
fn sync_groups(
    config: &Config,
    instances: &[VrrpInstance],
    fifos: &[Arc<Fifo>],
) -> Result<SyncGroups, RunError> {
    let mut groups = SyncGroups::default();
    for (name, group) in &config.vrrp_sync_group {
        let members: Vec<&str> = instances
            .iter()
            .filter(|i| i.sync_group.as_deref() == Some(name.as_str()))
            .map(|i| i.name.as_str())
            .collect();
        if members.len() < 2 {
            tracing::warn!(
                group = name,
                "vrrp_sync_group of fewer than two instances ignored"
            );
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
        let (notify, notifier) = if scripts.is_empty() {
            (None, None)
        } else {
            let (tx, task) = crate::notify::spawn(scripts);
            (Some(tx), Some(task))
        };
        let (member_links, coordinator) =
            crate::vrrp::sync::spawn(name.clone(), members.len(), notify);
        for (member, link) in members.into_iter().zip(member_links) {
            groups
                .links
                .insert(member.to_owned(), (link, group.sync_group_tracking_weight));
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

/// Runs one configured VRRP instance until `stopped` turns true; its notify scripts run on
/// their own task, which is awaited so `notify_stop` completes before the daemon exits.
fn spawn_instance(
    set: &mut JoinSet<InstanceEnd>,
    instance: &VrrpInstance,
    (tracked, scripts): (Vec<TrackScript>, InstanceScripts),
    sync: Option<SyncMember>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut spec = instance.spec.clone();
    spec.track
        .interfaces
        .extend(instance.track_interfaces.iter().map(|name| TrackInterface {
            name: name.clone(),
            weight: None,
        }));
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
    set.spawn(async move {
        let (tx, notifier) = if scripts.is_empty() {
            (None, None)
        } else {
            let (tx, task) = crate::notify::spawn(scripts);
            (Some(tx), Some(task))
        };
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let result = run_member(spec, shutdown, tx, sync).await.map(|_| ());
        if let Some(task) = notifier {
            let _ = task.await;
        }
        (name, result)
    });
}

fn log_instance_end(ended: Result<InstanceEnd, tokio::task::JoinError>) {
    match ended {
        Ok((name, Ok(()))) => tracing::info!(instance = name, "VRRP instance stopped"),
        Ok((name, Err(e))) => tracing::error!(instance = name, error = %e, "VRRP instance failed"),
        Err(e) => tracing::error!(error = %e, "VRRP instance task failed"),
    }
}

fn report(delta: &ProtoCounters, interval: Duration, flows: u64) {
    let secs = interval.as_secs_f64();
    let fields: Vec<String> = delta
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(c, v)| {
            #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
            let rate = v as f64 / secs;
            format!("{}={v} ({rate:.0}/s)", c.name())
        })
        .collect();
    if fields.is_empty() {
        tracing::info!(flows, "no packets in the last {secs:.1}s");
    } else {
        tracing::info!(flows, "{}", fields.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Scheduler;

    #[test]
    fn services_are_named_as_ipvsadm_shows_them() {
        let mut s = VirtualService {
            vips: vec!["198.18.0.100".parse().unwrap()],
            port: 80,
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Wlc,
            ops: false,
            hash_port: false,
            persistence: None,
            reals: Vec::new(),
            sorry_server: None,
        };
        assert_eq!(service_name(&s), "TCP 198.18.0.100:80");
        s.vips = vec!["fd00::100".parse().unwrap()];
        s.protocol = Protocol::Udp;
        assert_eq!(service_name(&s), "UDP [fd00::100]:80");
        assert_eq!(
            pin_dir(Path::new("/sys/fs/bpf"), "default"),
            Path::new("/sys/fs/bpf/balancer/default")
        );
    }
}
