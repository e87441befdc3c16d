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
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};

use crate::{
    check::{
        config::ScriptPolicy,
        runner::{CheckHandle, DEFAULT_CONCURRENCY, ServiceChecks, SharedDataplane},
    },
    config::schema::DataplaneKind,
    config::{Config, ConfigError, Loaded, load_any_as},
    control::{self, ControlError, Incoming, Request, Response},
    dataplane::{
        DataplaneError,
        egress::Resolver,
        ipvs::IpvsDataplane,
        xdp::{LoadOptions, PinError, ProtoCounters, XdpError, XdpProgram, ensure_bpffs},
    },
    metrics,
    model::{Egress, Protocol, VirtualService},
    notify::{ScriptUser, fifo::Fifo, mail::Mailer},
    status::{ServiceStatus, Status, VrrpStatus},
    vrrp::net::statics::Statics,
};

mod backend;
mod egress;
mod lvs_sync;
mod reload;
mod vrrp;

use backend::Backend;
use egress::{EGRESS_REFRESH, with_egress};
use reload::virtual_server;
use vrrp::{
    RunningInstance, SyncGroups, VrrpRuntime, change_statics, init_track_files, instance_scripts,
    notify_fifos, sync_groups,
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
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("metrics: cannot listen on {listen}")]
    Metrics {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the VRRP thread")]
    Runtime { source: std::io::Error },
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
    /// On stop, leave the program attached and its maps pinned, so it goes on forwarding
    /// until the next run adopts them (instead of detaching and removing them).
    pub keep_state: bool,
    /// Where the control socket, the pid file and the SIGUSR dumps go.
    pub run_dir: PathBuf,
    /// The bpf filesystem the maps and links are pinned under (`PIN_ROOT/balancer/INSTANCE`).
    pub pin_root: PathBuf,
    /// Serve Prometheus metrics on this address; `None` for none.
    pub metrics: Option<SocketAddr>,
    /// The data plane, in place of the configuration's `dataplane` (`--dataplane`).
    pub dataplane: Option<DataplaneKind>,
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

/// A service as the data plane knows it: its name, the mark that selects it if one does
/// (IPVS only: validation refuses marks with XDP), and its definition.
pub(super) struct Named<'a> {
    pub name: String,
    pub fwmark: Option<u32>,
    pub service: &'a VirtualService,
}

/// Every service of `model` the data plane programs: those selected by address, then those
/// selected by mark, named `FWM 7` (`FWM 7 IPv6` for IPv6 reals) as `ipvsadm -Ln` shows
/// them.
pub(super) fn named(model: &crate::model::Model) -> Vec<Named<'_>> {
    let by_addr = model.services.iter().map(|s| Named {
        name: service_name(s),
        fwmark: None,
        service: s,
    });
    let by_mark = model.fwmark_services.iter().map(|m| {
        let v6 = m
            .service
            .reals
            .iter()
            .chain(m.service.sorry_server.as_ref())
            .next()
            .is_some_and(|r| r.addr.is_ipv6());
        Named {
            name: format!("FWM {}{}", m.fwmark, if v6 { " IPv6" } else { "" }),
            fwmark: Some(m.fwmark),
            service: &m.service,
        }
    });
    by_addr.chain(by_mark).collect()
}

/// The pin directory of an instance.
#[must_use]
pub fn pin_dir(root: &Path, instance: &str) -> PathBuf {
    root.join("balancer").join(instance)
}

/// Loads the configuration, programs and attaches the data plane, and runs until SIGINT or
/// SIGTERM; then detaches from every interface. SIGHUP (or `balancer reload`) applies a
/// changed configuration; SIGUSR1 and SIGUSR2 write JSON dumps; the control socket answers
/// `balancer status`.
///
/// # Errors
/// The configuration is invalid, or loading, programming, attaching or detaching failed. On an
/// attach failure the interfaces attached so far are detached again.
pub async fn run(options: &RunOptions) -> Result<(), RunError> {
    let loaded = load_any_as(&options.config, options.dataplane)?;
    for w in &loaded.validated.warnings {
        tracing::warn!("{w}");
    }
    let g = &loaded.config.global_defs;
    let shutdown = global_script(&loaded.config, g.shutdown_script.as_deref(), "shutdown")?
        .map(|s| (s, g.shutdown_script_timeout));
    // keepalived's `run_startup_script`: before anything starts.
    if let Some(script) = global_script(&loaded.config, g.startup_script.as_deref(), "startup")? {
        tracing::info!(command = script.command, "running the startup script");
        crate::notify::run_logged(&script, &[], script_timeout(g.startup_script_timeout)).await;
    }
    let mut signals = Signals::new()?;
    let (requests_tx, mut requests) = mpsc::channel::<Incoming>(16);
    let (_control, metrics) = serve(options, &loaded.config, &requests_tx).await?;

    let mut daemon = Daemon::new(options, loaded)?;
    daemon.egress = daemon.resolve_egress().await;
    daemon.log_egress("reals' egress");
    // Before the instances, as keepalived's `start_vrrp`: a virtual route may need them.
    let statics = &daemon.loaded.validated.model.statics;
    change_statics(statics, &Statics::default()).await;
    if let Err(e) = daemon.start() {
        change_statics(&Statics::default(), &daemon.loaded.validated.model.statics).await;
        return Err(e);
    }
    // Neighbours are learnt (and change): the egress is looked at again every few seconds.
    let mut egress_ticker = tokio::time::interval(EGRESS_REFRESH);
    egress_ticker.tick().await;

    let mut ticker = tokio::time::interval(options.interval);
    ticker.tick().await;
    let mut last = daemon
        .lock()
        .xdp()
        .map(|p| p.proto_counters())
        .transpose()?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Some(now) = daemon.tick().await {
                    if let Some(last) = &last {
                        report(&now.since(last), options.interval, daemon.flows);
                    }
                    last = Some(now);
                }
            }
            _ = egress_ticker.tick() => daemon.refresh_egress().await,
            Some((request, reply)) = requests.recv() => {
                let response = match request {
                    Request::Status => Response {
                        error: None,
                        message: None,
                        status: Some(Box::new(daemon.status())),
                    },
                    Request::Reload => match daemon.reload().await {
                        Ok(message) => Response { error: None, message: Some(message), status: None },
                        Err(e) => Response::error(e),
                    },
                };
                let _ = reply.send(response);
            }
            signal = signals.next() => match signal {
                Signal::Stop => break,
                Signal::Reload => {
                    let _ = daemon.reload().await;
                }
                Signal::DumpData => daemon.dump("data"),
                Signal::DumpStats => daemon.dump("stats"),
            },
        }
    }
    if let Some(task) = metrics {
        task.abort();
    }
    let stopped = daemon.stop().await;
    // keepalived: after everything has stopped.
    if let Some((script, timeout)) = shutdown {
        tracing::info!(command = script.command, "running the shutdown script");
        crate::notify::run_logged(&script, &[], script_timeout(timeout)).await;
    }
    stopped
}

/// `startup_script` or `shutdown_script`, prepared to run as the script user.
fn global_script(
    config: &Config,
    command: Option<&str>,
    which: &str,
) -> Result<Option<crate::notify::process::Script>, RunError> {
    let Some(command) = command else {
        return Ok(None);
    };
    crate::notify::process::Script::prepare(
        command,
        script_user(config, None)?,
        config.global_defs.enable_script_security,
    )
    .map(Some)
    .map_err(|source| RunError::Script {
        block: format!("global_defs.{which}_script"),
        source,
    })
}

/// keepalived's default for `startup_script_timeout` and `shutdown_script_timeout`: 10 s.
fn script_timeout(seconds: Option<u32>) -> Duration {
    Duration::from_secs(u64::from(seconds.unwrap_or(10)))
}

/// The configured data plane: the XDP program loaded (and its pinned maps adopted), or the
/// kernel's IPVS with the configured timeouts.
fn load(options: &RunOptions, config: &Config) -> Result<Backend, RunError> {
    match config.dataplane {
        DataplaneKind::Xdp => {
            let root = options.pin_root.as_path();
            ensure_bpffs(root)?;
            let program = XdpProgram::load_with(&LoadOptions {
                flows: config.connections.table_size,
                timeouts: config.connections.globals(),
                pin_dir: Some(pin_dir(root, &options.instance)),
                icmp_too_big: config.xdp.icmp_too_big,
                ..LoadOptions::default()
            })?;
            Ok(Backend::Xdp(Box::new(program)))
        }
        DataplaneKind::Ipvs => {
            let mut ipvs = IpvsDataplane::connect()?;
            if config.global_defs.lvs_flush {
                tracing::info!("lvs_flush: emptying IPVS of every service");
                ipvs.flush_all()?;
            }
            ipvs.set_timeouts(config.connections.globals())?;
            Ok(Backend::Ipvs(ipvs))
        }
    }
}

/// The control socket (before anything is attached: a second daemon of the same instance
/// stops here) and, when asked for, the metrics endpoint.
async fn serve(
    options: &RunOptions,
    config: &Config,
    requests_tx: &mpsc::Sender<Incoming>,
) -> Result<(control::Server, Option<JoinHandle<()>>), RunError> {
    let socket = config
        .control
        .socket
        .clone()
        .unwrap_or_else(|| control::socket_path(&options.run_dir, &options.instance));
    let control = control::Server::start_at(
        &socket,
        &control::pid_path(&options.run_dir, &options.instance),
        requests_tx.clone(),
    )?;
    // `--metrics` wins over the configuration's `[metrics]`.
    let listen = options
        .metrics
        .or(config.metrics.enabled.then_some(config.metrics.listen));
    let metrics = match listen {
        Some(listen) => Some(
            metrics::serve(listen, requests_tx.clone())
                .await
                .map_err(|source| RunError::Metrics { listen, source })?,
        ),
        None => None,
    };
    Ok((control, metrics))
}

/// The signals the daemon acts on.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

enum Signal {
    Stop,
    Reload,
    DumpData,
    DumpStats,
}

impl Signals {
    fn new() -> Result<Self, RunError> {
        let install = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|source| RunError::Signal {
                signal: name,
                source,
            })
        };
        Ok(Self {
            int: install(SignalKind::interrupt(), "SIGINT")?,
            term: install(SignalKind::terminate(), "SIGTERM")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
            usr1: install(SignalKind::user_defined1(), "SIGUSR1")?,
            usr2: install(SignalKind::user_defined2(), "SIGUSR2")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Stop,
            _ = self.term.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
            _ = self.usr1.recv() => Signal::DumpData,
            _ = self.usr2.recv() => Signal::DumpStats,
        }
    }
}

struct Daemon {
    options: RunOptions,
    loaded: Loaded,
    program: Arc<Mutex<Backend>>,
    checks: CheckHandle,
    instances: HashMap<String, RunningInstance>,
    /// Configurations applied so far.
    generation: u64,
    last_reload: Option<crate::status::Reload>,
    /// Live flows at the last sweep.
    flows: u64,
    /// The services at the last two ticks, for rates.
    samples: (Option<Sample>, Option<Sample>),
    /// Resolves the reals' egress (interface, MACs) so the XDP program needs no FIB lookup.
    resolver: Option<Resolver>,
    /// The egress of every real resolved so far.
    egress: HashMap<std::net::IpAddr, Egress>,
    /// `notify_fifo` and `vrrp_notify_fifo`, opened at start.
    fifos: Vec<Arc<Fifo>>,
    /// The `vrrp_sync_group`s, wired at start: a member's link is taken when it first starts.
    sync: SyncGroups,
    /// VRRP's own thread and runtime.
    vrrp_runtime: VrrpRuntime,
    /// Where `smtp_alert`s are mailed (nowhere until `global_defs` says where); every
    /// instance, group and service holds this one, so a reload's settings reach them all.
    mailer: Arc<Mailer>,
    /// `lvs_sync_daemon` (IPVS).
    lvs_sync: lvs_sync::LvsSync,
    /// When the VRRP instances may start (`vrrp_startup_delay` after the daemon started);
    /// instances restarted by a reload before then wait for it too, as keepalived's do.
    vrrp_start_at: Option<tokio::time::Instant>,
}

type Sample = (Instant, Vec<ServiceStatus>);

impl Daemon {
    /// The daemon of `loaded`: its data plane loaded, VRRP's runtime started, nothing
    /// programmed yet.
    fn new(options: &RunOptions, loaded: Loaded) -> Result<Self, RunError> {
        let program = Arc::new(Mutex::new(load(options, &loaded.config)?));
        let shared: SharedDataplane = program.clone();
        let loaded_kind = loaded.config.dataplane;
        let vrrp_start_at = loaded
            .config
            .global_defs
            .vrrp_startup_delay
            .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
        let vrrp_runtime = VrrpRuntime::start(
            loaded.config.global_defs.vrrp_rt_priority,
            loaded.config.global_defs.vrrp_priority,
        )
        .map_err(|source| RunError::Runtime { source })?;
        Ok(Self {
            checks: CheckHandle::new(&shared, DEFAULT_CONCURRENCY),
            program,
            instances: HashMap::new(),
            loaded,
            generation: 1,
            last_reload: None,
            flows: 0,
            samples: (None, None),
            // IPVS forwards through the kernel's own routing and neighbours.
            resolver: match loaded_kind {
                DataplaneKind::Ipvs => None,
                DataplaneKind::Xdp => match Resolver::connect() {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(error = %e, "reals' egress left to the kernel's FIB");
                        None
                    }
                },
            },
            egress: HashMap::new(),
            fifos: Vec::new(),
            sync: SyncGroups::default(),
            vrrp_runtime,
            mailer: Arc::new(Mailer::default()),
            lvs_sync: lvs_sync::LvsSync::default(),
            vrrp_start_at,
            options: options.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Backend> {
        self.program.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Programs the configured services, attaches, starts the instances and the checkers.
    fn start(&mut self) -> Result<(), RunError> {
        let config = &self.loaded.config;
        // Everything that can refuse the configuration before anything changes.
        let checks = service_checks(config, &named(&self.loaded.validated.model))?;
        let fifos = notify_fifos(config)?;
        if let Err(e) = self.mailer.reconfigure(&config.global_defs) {
            tracing::error!(error = %e, "no mail alerts");
        }
        self.checks.set_mailer(Some(self.mailer.clone()));
        let mut scripts = Vec::new();
        for instance in &self.loaded.validated.model.vrrp {
            scripts.push(instance_scripts(
                config,
                instance,
                &fifos,
                Some(&self.mailer),
            )?);
        }
        init_track_files(config, None);
        self.sync = {
            // The groups' coordinators run beside their members, on VRRP's runtime.
            let _vrrp = self.vrrp_runtime.handle.enter();
            sync_groups(
                config,
                &self.loaded.validated.model.vrrp,
                &fifos,
                Some(&self.mailer),
            )?
        };
        self.fifos = fifos;
        {
            let mut program = self.lock();
            for Named {
                name,
                fwmark,
                service,
            } in named(&self.loaded.validated.model)
            {
                program.apply_named(&name, fwmark, &with_egress(service, &self.egress))?;
                tracing::info!(service = %name, reals = service.reals.len(), "service programmed");
            }
            match &mut *program {
                Backend::Xdp(program) => attach(program, config)?,
                Backend::Ipvs(ipvs) => {
                    for key in ipvs.unclaimed()? {
                        tracing::warn!(
                            service = %crate::dataplane::ipvs::describe(key),
                            "IPVS holds a service the configuration does not name: left as it is"
                        );
                    }
                }
            }
        }
        // The data plane is programmed on master and backup alike, as keepalived programs
        // IPVS on both, so a failover needs no reprogramming.
        self.start_lvs_sync();
        let models = self.loaded.validated.model.vrrp.clone();
        for (instance, scripts) in models.iter().zip(scripts) {
            self.start_instance(instance, scripts);
        }
        for spec in checks {
            self.checks.replace(spec, |_| false);
        }
        Ok(())
    }

    /// Sweeps the connection table and samples the counters; `None` when the counters could
    /// not be read. A failed read is reported and retried next time: leaving the loop would
    /// skip the orderly stop (priority 0, VIPs released).
    async fn tick(&mut self) -> Option<ProtoCounters> {
        // IPVS sweeps its connections and rates them itself (`ipvsadm --rate` reads its
        // estimators): nothing to do each second. Its numbers are read when asked for.
        let flows = self.sweep().await?;
        let mut program = self.lock();
        let sample = program.service_status();
        let counters = program.xdp().map(|p| p.proto_counters());
        let capacity = u64::from(program.flow_capacity());
        drop(program);
        // An LRU evicts silently: say so when the table nears full, once per crossing.
        let near_full = capacity > 0 && flows * 10 >= capacity * 9;
        if near_full && self.flows * 10 < capacity * 9 {
            tracing::warn!(
                flows,
                capacity,
                "connection table over 90% full: the least recently used flows will be evicted (flow_miss_mid_stream counts what that costs); raise its size"
            );
        }
        self.flows = flows;
        match sample {
            Ok(services) => {
                self.samples = (self.samples.1.take(), Some((Instant::now(), services)));
            }
            Err(e) => tracing::error!(error = %e, "reading the service counters failed"),
        }
        counters?
            .map_err(|e| tracing::error!(error = %e, "reading the counters failed"))
            .ok()
    }

    /// Sweeps the XDP connection table and returns the live flows; `None` for IPVS, which
    /// sweeps its own. The table is walked without the program's lock (a third of a second
    /// at a million connections), so checkers' weight changes and `status` do not wait
    /// behind it.
    async fn sweep(&self) -> Option<u64> {
        let walk = self.lock().xdp()?.sweep_walk();
        let walked = match walk {
            Ok(walk) => match tokio::task::spawn_blocking(move || walk.walk()).await {
                Ok(walked) => walked.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let mut program = self.lock();
        let program = program.xdp()?;
        let swept = walked.and_then(|w| program.sweep_finish(&w).map_err(|e| e.to_string()));
        Some(match swept {
            Ok(sweep) => sweep.live,
            Err(e) => {
                tracing::error!(error = %e, "connection table sweep failed");
                0
            }
        })
    }

    /// What `balancer status` shows, now; rates are those of the last full interval.
    fn status(&self) -> Status {
        let mut program = self.lock();
        let services = program.service_status().unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the service counters failed");
            Vec::new()
        });
        // IPVS: its live connections are what its destinations count.
        let flows = match &*program {
            Backend::Xdp(_) => self.flows,
            Backend::Ipvs(_) => services
                .iter()
                .flat_map(|s| s.reals.iter().chain(s.sorry_server.as_ref()))
                .map(|r| r.active + r.inactive)
                .sum(),
        };
        let flow_capacity = program.flow_capacity();
        let dataplane = program.kind();
        let (reasons, flow_misses) = program.xdp().map_or_else(Default::default, |p| {
            let reasons = p
                .reasons()
                .map(|r| {
                    r.iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(c, n)| (c.name().to_owned(), n))
                        .collect()
                })
                .unwrap_or_default();
            let misses = p.proto_counters().map_or(0, |c| {
                c.get(balancer_common::ProtoCounter::FlowMissMidStream)
            });
            (reasons, misses)
        });
        drop(program);
        let mut status = Status {
            instance: self.options.instance.clone(),
            config: self.options.config.display().to_string(),
            dataplane,
            generation: self.generation,
            last_reload: self.last_reload.clone(),
            flows,
            flow_capacity,
            flow_misses,
            services,
            vrrp: {
                let mut v: Vec<VrrpStatus> = self
                    .instances
                    .values()
                    .map(|i| i.status.borrow().clone())
                    .collect();
                v.sort_by(|a, b| a.name.cmp(&b.name));
                v
            },
            checkers: self.checks.status(),
            reasons,
        };
        if let (Some((t0, earlier)), Some((t1, later))) = &self.samples {
            let mut rated = Status {
                services: later.clone(),
                ..Status::default()
            };
            rated.rates_since(earlier, t1.duration_since(*t0).as_secs_f64());
            status.copy_rates(&rated.services);
        }
        status
    }

    /// SIGUSR1 (`data`: the configuration and state) and SIGUSR2 (`stats`: the status with
    /// counters and rates), as JSON files in the run directory.
    fn dump(&self, kind: &str) {
        let status = self.status();
        let value = if kind == "data" {
            serde_json::json!({
                "config": &self.loaded.config,
                "status": &status,
            })
        } else {
            serde_json::json!(&status)
        };
        let path = self
            .options
            .run_dir
            .join(format!("{}.{kind}.json", self.options.instance));
        match crate::dump::write_private(&path, &value) {
            Ok(()) => tracing::info!(path = %path.display(), "{kind} dump written"),
            Err(e) => tracing::error!(path = %path.display(), error = %e, "{kind} dump failed"),
        }
    }

    /// Stops the instances (priority 0, VIPs released, `notify_stop`) and the checkers, then
    /// detaches, and unpins unless asked to keep the state.
    async fn stop(mut self) -> Result<(), RunError> {
        tracing::info!("stopping: VRRP instances advertise priority 0 and release their addresses");
        self.stop_all_instances().await;
        self.stop_lvs_sync();
        // As keepalived's `stop_vrrp`.
        change_statics(&Statics::default(), &self.loaded.validated.model.statics).await;
        let checks = std::mem::replace(
            &mut self.checks,
            CheckHandle::new(&(self.program.clone() as SharedDataplane), 1),
        );
        checks.stop().await;
        let mut program = self.lock();
        match (&mut *program, self.options.keep_state) {
            (Backend::Xdp(program), true) => {
                // The pinned program goes on forwarding until the next run swaps itself in.
                program.keep_attached();
                tracing::info!(
                    "stopping: the data plane stays attached and pinned for the next run"
                );
            }
            (Backend::Xdp(program), false) => {
                tracing::info!("stopping: detaching from every interface");
                program.detach_all()?;
                program.unpin()?;
            }
            (Backend::Ipvs(_), true) => {
                tracing::info!("stopping: the IPVS services stay for the next run");
            }
            (Backend::Ipvs(ipvs), false) => {
                let flush = self.loaded.config.global_defs.lvs_flush_on_stop;
                if flush == Some(crate::config::schema::LvsFlushOnStop::Full) {
                    tracing::info!("stopping: lvs_flush_on_stop: emptying IPVS of every service");
                    ipvs.flush_all()?;
                } else {
                    tracing::info!("stopping: removing the IPVS services");
                    ipvs.remove_all()?;
                }
            }
        }
        Ok(())
    }
}

/// Removes what the previous run pinned and this configuration no longer names, and attaches
/// to the configured interfaces.
fn attach(program: &mut XdpProgram, config: &Config) -> Result<(), RunError> {
    let removed = program.remove_unclaimed()?;
    if removed > 0 {
        tracing::info!(
            removed,
            "services of the previous run no longer configured, removed"
        );
    }
    for interface in &config.xdp.interfaces {
        // On error the program drops with the daemon, which detaches the interfaces
        // already attached.
        let mode = program.attach(interface, config.xdp.mode)?;
        tracing::info!(interface, %mode, "XDP program attached");
    }
    for interface in program.release_stale_links() {
        tracing::info!(
            interface,
            "detached: attached by the previous run, no longer configured"
        );
    }
    Ok(())
}

/// The health checkers of every configured service that has any, named as the data plane
/// knows the service.
fn service_checks(config: &Config, services: &[Named<'_>]) -> Result<Vec<ServiceChecks>, RunError> {
    let mut out = Vec::new();
    let mut policy = None;
    for Named {
        name, service: svc, ..
    } in services
    {
        let Some(vs) = virtual_server(config, svc) else {
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
                &rs.udp_check,
                &rs.ping_check,
            ]
            .iter()
            .any(|c| !c.is_empty())
        });
        if !has_checks {
            continue;
        }
        if policy.is_none() {
            let scripts = ScriptPolicy {
                user: script_user(config, None)?,
                security: config.global_defs.enable_script_security,
            };
            policy = Some(crate::check::Globals::new(scripts, config.ssl.as_ref())?);
        }
        if let Some(p) = &policy {
            let mut spec = crate::check::config::service_checks(name, vs, p)?;
            spec.alerts = vs
                .smtp_alert
                .unwrap_or_else(|| config.global_defs.checker_alerts());
            out.push(spec);
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
