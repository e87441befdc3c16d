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
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    check::{
        config::ScriptPolicy,
        runner::{CheckHandle, DEFAULT_CONCURRENCY, RealChecks, ServiceChecks, SharedDataplane},
    },
    config::{Config, ConfigError, Loaded, load_any},
    control::{self, ControlError, Incoming, Request, Response},
    dataplane::{
        Dataplane, DataplaneError,
        egress::Resolver,
        xdp::{LoadOptions, PinError, ProtoCounters, XdpError, XdpProgram, ensure_bpffs},
    },
    metrics,
    model::{Egress, Protocol, VirtualService, VrrpInstance},
    notify::{
        InstanceScripts, Script, ScriptUser,
        fifo::Fifo,
        mail::{Mailer, VrrpAlerts},
    },
    status::{ServiceStatus, Status, VrrpStatus},
    vrrp::{
        net::{NetError, Netlink, run_member, statics::Statics},
        sync::{GroupHandle, SyncLink},
        track::script::TrackScript,
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
/// SIGTERM; then detaches from every interface. SIGHUP (or `balancer reload`) applies a
/// changed configuration; SIGUSR1 and SIGUSR2 write JSON dumps; the control socket answers
/// `balancer status`.
///
/// # Errors
/// The configuration is invalid, or loading, programming, attaching or detaching failed. On an
/// attach failure the interfaces attached so far are detached again.
pub async fn run(options: &RunOptions) -> Result<(), RunError> {
    let loaded = load_any(&options.config)?;
    for w in &loaded.validated.warnings {
        tracing::warn!("{w}");
    }
    let mut signals = Signals::new()?;
    let (requests_tx, mut requests) = mpsc::channel::<Incoming>(16);
    let (_control, metrics) = serve(options, &loaded.config, &requests_tx).await?;

    let root = options.pin_root.as_path();
    ensure_bpffs(root)?;
    let program = XdpProgram::load_with(&LoadOptions {
        flows: loaded.config.connections.table_size,
        timeouts: loaded.config.connections.globals(),
        pin_dir: Some(pin_dir(root, &options.instance)),
        icmp_too_big: loaded.config.xdp.icmp_too_big,
        ..LoadOptions::default()
    })?;
    let program = Arc::new(Mutex::new(program));
    let shared: SharedDataplane = program.clone();
    let vrrp_runtime = VrrpRuntime::start(
        loaded.config.global_defs.vrrp_rt_priority,
        loaded.config.global_defs.vrrp_priority,
    )
    .map_err(|source| RunError::Runtime { source })?;
    let mut daemon = Daemon {
        checks: CheckHandle::new(&shared, DEFAULT_CONCURRENCY),
        program,
        instances: HashMap::new(),
        loaded,
        generation: 1,
        last_reload: None,
        flows: 0,
        samples: (None, None),
        resolver: match Resolver::connect() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "reals' egress left to the kernel's FIB");
                None
            }
        },
        egress: HashMap::new(),
        fifos: Vec::new(),
        sync: SyncGroups::default(),
        vrrp_runtime,
        mailer: Arc::new(Mailer::default()),
        options: options.clone(),
    };
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
    let mut last = daemon.lock().proto_counters()?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Some(now) = daemon.tick() {
                    report(&now.since(&last), options.interval, daemon.flows);
                    last = now;
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
    daemon.stop().await
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

/// VRRP's own thread and single-threaded runtime: adverts and the master-down timer never
/// wait behind a connection-table sweep, thousands of checkers, a reload or a status dump on
/// the daemon's workers (a late advert is a failover, a late timer a slower one).
struct VrrpRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VrrpRuntime {
    /// Starts the thread, with `global_defs`' `vrrp_rt_priority` (`SCHED_RR`) and
    /// `vrrp_priority` (nice) when given; a refusal is logged and the thread runs on.
    fn start(rt_priority: Option<u8>, nice: Option<i8>) -> std::io::Result<Self> {
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
fn schedule_vrrp_thread(rt_priority: Option<u8>, nice: Option<i8>) {
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

/// One running VRRP instance.
struct RunningInstance {
    /// What it was started from; a reload restarts it only when this changes.
    inputs: InstanceInputs,
    stop: watch::Sender<bool>,
    status: watch::Receiver<VrrpStatus>,
    task: JoinHandle<()>,
}

/// Everything an instance is built from: its model, and the configuration blocks of its
/// scripts (notify and `track_script`) and of the script user.
#[derive(PartialEq)]
struct InstanceInputs {
    model: VrrpInstance,
    block: Option<crate::config::schema::VrrpInstance>,
    scripts: Vec<crate::config::schema::VrrpScript>,
    script_user: Option<String>,
    script_security: bool,
}

fn instance_inputs(config: &Config, model: &VrrpInstance) -> InstanceInputs {
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

struct Daemon {
    options: RunOptions,
    loaded: Loaded,
    program: Arc<Mutex<XdpProgram>>,
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
}

type Sample = (Instant, Vec<ServiceStatus>);

impl Daemon {
    fn lock(&self) -> MutexGuard<'_, XdpProgram> {
        self.program.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Programs the configured services, attaches, starts the instances and the checkers.
    fn start(&mut self) -> Result<(), RunError> {
        let config = &self.loaded.config;
        // Everything that can refuse the configuration before anything changes.
        let checks = service_checks(config, &self.loaded.validated.model.services)?;
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
            for service in &self.loaded.validated.model.services {
                let name = service_name(service);
                program.apply(&name, &with_egress(service, &self.egress))?;
                tracing::info!(service = %name, reals = service.reals.len(), "service programmed");
            }
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
        }
        // The data plane is programmed on master and backup alike, as keepalived programs
        // IPVS on both, so a failover needs no reprogramming.
        let models = self.loaded.validated.model.vrrp.clone();
        for (instance, scripts) in models.iter().zip(scripts) {
            self.start_instance(instance, scripts);
        }
        for spec in checks {
            self.checks.replace(spec, |_| false);
        }
        Ok(())
    }

    fn start_instance(
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
            stopped,
            status_tx,
        );
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
    async fn stop_all_instances(&mut self) {
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
    async fn stop_instance(&mut self, name: &str) {
        if let Some(running) = self.instances.remove(name) {
            let _ = running.stop.send(true);
            let _ = running.task.await;
        }
    }

    /// Sweeps the connection table and samples the counters; `None` when the counters could
    /// not be read. A failed read is reported and retried next time: leaving the loop would
    /// skip the orderly stop (priority 0, VIPs released).
    fn tick(&mut self) -> Option<ProtoCounters> {
        let mut program = self.lock();
        let flows = match program.sweep() {
            Ok(sweep) => sweep.live,
            Err(e) => {
                tracing::error!(error = %e, "connection table sweep failed");
                0
            }
        };
        let sample = program.service_status();
        let counters = program.proto_counters();
        let capacity = u64::from(program.flow_capacity());
        drop(program);
        // An LRU evicts silently: say so when the table nears full, once per crossing.
        let near_full = flows * 10 >= capacity * 9;
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
        counters
            .map_err(|e| tracing::error!(error = %e, "reading the counters failed"))
            .ok()
    }

    /// What `balancer status` shows, now; rates are those of the last full interval.
    fn status(&self) -> Status {
        let program = self.lock();
        let services = program.service_status().unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the service counters failed");
            Vec::new()
        });
        let reasons = program
            .reasons()
            .map(|r| {
                r.iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(c, n)| (c.name().to_owned(), n))
                    .collect()
            })
            .unwrap_or_default();
        let flow_capacity = program.flow_capacity();
        let flow_misses = program.proto_counters().map_or(0, |c| {
            c.get(balancer_common::ProtoCounter::FlowMissMidStream)
        });
        drop(program);
        let mut status = Status {
            instance: self.options.instance.clone(),
            config: self.options.config.display().to_string(),
            generation: self.generation,
            last_reload: self.last_reload.clone(),
            flows: self.flows,
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

    /// Loads the configuration file again and applies the difference; on any error the
    /// running configuration stays as it was. Returns what changed.
    async fn reload(&mut self) -> Result<String, String> {
        tracing::info!(config = %self.options.config.display(), "reloading");
        let result = self.try_reload().await;
        let at = crate::status::unix_now();
        match &result {
            Ok(summary) => {
                self.generation += 1;
                self.last_reload = Some(crate::status::Reload { at, error: None });
                tracing::info!(generation = self.generation, "{summary}");
            }
            Err(e) => {
                self.last_reload = Some(crate::status::Reload {
                    at,
                    error: Some(e.clone()),
                });
                tracing::error!(
                    generation = self.generation,
                    "reload refused, the running configuration stays: {e}"
                );
            }
        }
        result
    }

    async fn try_reload(&mut self) -> Result<String, String> {
        let new = load_any(&self.options.config).map_err(|e| e.to_string())?;
        for w in &new.validated.warnings {
            tracing::warn!("{w}");
        }
        // Everything that can refuse the new configuration, before anything changes.
        let checks = service_checks(&new.config, &new.validated.model.services)
            .map_err(|e| e.to_string())?;
        let checks: HashMap<String, ServiceChecks> =
            checks.into_iter().map(|c| (c.name.clone(), c)).collect();
        // Sync groups and notify FIFOs are wired into every instance at its start: when they
        // change, every instance restarts with the new wiring.
        let rewire = vrrp_wiring(&self.loaded) != vrrp_wiring(&new);
        let fifos = if rewire {
            notify_fifos(&new.config).map_err(|e| e.to_string())?
        } else {
            self.fifos.clone()
        };

        let mut scripts = HashMap::new();
        for instance in &new.validated.model.vrrp {
            let inputs = instance_inputs(&new.config, instance);
            if rewire
                || self
                    .instances
                    .get(&instance.name)
                    .is_none_or(|running| running.inputs != inputs)
            {
                scripts.insert(
                    instance.name.clone(),
                    instance_scripts(&new.config, instance, &fifos, Some(&self.mailer))
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        let old = std::mem::replace(&mut self.loaded, new);
        let mut changes = Changes::default();
        if let Err(e) = self.mailer.reconfigure(&self.loaded.config.global_defs) {
            changes.failures.push(format!("mail settings: {e}"));
        }
        init_track_files(&self.loaded.config, Some(&old.config));
        self.reload_globals(&old, &mut changes);
        self.reload_interfaces(&old, &mut changes);
        self.reload_services(&old, checks, &mut changes);
        let old_statics = &old.validated.model.statics;
        if *old_statics != self.loaded.validated.model.statics {
            changes
                .failures
                .extend(change_statics(&self.loaded.validated.model.statics, old_statics).await);
            changes
                .summary
                .push("static addresses, routes or rules changed".to_owned());
        }
        if rewire {
            self.rewire_instances(fifos, scripts, &mut changes).await;
        } else {
            self.reload_instances(scripts, &mut changes).await;
        }
        changes.result()
    }

    /// Sync groups or notify FIFOs changed: every instance stops (as at shutdown, so the
    /// groups' `notify_stop` runs), the groups are wired anew, and every instance starts.
    async fn rewire_instances(
        &mut self,
        fifos: Vec<Arc<Fifo>>,
        mut scripts: HashMap<String, (Vec<TrackScript>, InstanceScripts)>,
        changes: &mut Changes,
    ) {
        self.stop_all_instances().await;
        self.fifos = fifos;
        let wanted: Vec<VrrpInstance> = self.loaded.validated.model.vrrp.clone();
        let _vrrp = self.vrrp_runtime.handle.enter();
        self.sync = match sync_groups(
            &self.loaded.config,
            &wanted,
            &self.fifos,
            Some(&self.mailer),
        ) {
            Ok(groups) => groups,
            Err(e) => {
                changes.failures.push(format!("vrrp_sync_group: {e}"));
                SyncGroups::default()
            }
        };
        for instance in &wanted {
            if let Some(scripts) = scripts.remove(&instance.name) {
                self.start_instance(instance, scripts);
            }
        }
        changes.summary.push(
            "vrrp_sync_group or notify FIFO changed: every vrrp_instance restarted".to_owned(),
        );
    }

    /// The connection timeouts apply at once; what is fixed when the program loads (table
    /// size, ICMP answers), where the control socket and metrics listen, wait for a restart.
    fn reload_globals(&self, old: &Loaded, changes: &mut Changes) {
        let (before, after) = (&old.config, &self.loaded.config);
        if before.connections.globals() != after.connections.globals() {
            match self.lock().set_timeouts(after.connections.globals()) {
                Ok(()) => changes.summary.push("connection timeouts".to_owned()),
                Err(e) => changes.failures.push(format!("connection timeouts: {e}")),
            }
        }
        for (key, changed) in [
            (
                "connections.table_size",
                before.connections.table_size != after.connections.table_size,
            ),
            (
                "xdp.icmp_too_big",
                before.xdp.icmp_too_big != after.xdp.icmp_too_big,
            ),
            ("control.socket", before.control != after.control),
            ("metrics", before.metrics != after.metrics),
        ] {
            if changed {
                changes
                    .summary
                    .push(format!("{key} changed: takes effect at the next start"));
            }
        }
    }

    /// Attaches to the new interfaces (before services change) and detaches from the dropped
    /// ones; a changed mode re-attaches everywhere.
    fn reload_interfaces(&self, old: &Loaded, changes: &mut Changes) {
        let Changes { summary, failures } = changes;
        let mut program = self.lock();
        {
            let cfg = &self.loaded.config.xdp;
            for interface in &cfg.interfaces {
                let mode_changed = old.config.xdp.mode != cfg.mode;
                if mode_changed {
                    let _ = program.detach(interface);
                }
                if mode_changed || !old.config.xdp.interfaces.contains(interface) {
                    match program.attach(interface, cfg.mode) {
                        Ok(mode) => summary.push(format!("attached to {interface} ({mode})")),
                        Err(e) => failures.push(format!("attaching to {interface}: {e}")),
                    }
                }
            }
            for interface in &old.config.xdp.interfaces {
                if !cfg.interfaces.contains(interface) {
                    match program.detach(interface) {
                        Ok(()) => summary.push(format!("detached from {interface}")),
                        Err(e) => failures.push(format!("detaching from {interface}: {e}")),
                    }
                }
            }
        }
    }

    /// Services: unchanged ones are not touched (their checkers keep running); a changed
    /// one is applied in one step, reals that stay keep their connections, and reals whose
    /// checks did not change keep their checker state and current weight.
    fn reload_services(
        &mut self,
        old: &Loaded,
        mut checks: HashMap<String, ServiceChecks>,
        changes: &mut Changes,
    ) {
        let Changes { summary, failures } = changes;
        let old_services: HashMap<String, &VirtualService> = old
            .validated
            .model
            .services
            .iter()
            .map(|s| (service_name(s), s))
            .collect();
        let mut kept = std::collections::HashSet::new();
        for service in &self.loaded.validated.model.services {
            let name = service_name(service);
            kept.insert(name.clone());
            let before = old_services.get(&name).copied();
            let new_checks = checks.remove(&name);
            let old_vs = before.and_then(|s| virtual_server(&old.config, s));
            let new_vs = virtual_server(&self.loaded.config, service);
            let carry = |r: &RealChecks| match (old_vs, new_vs) {
                (Some(o), Some(n)) => crate::check::config::same_checks(o, n, r.addr, r.port),
                _ => false,
            };
            let checks_same = match (&new_checks, old_vs, new_vs) {
                (None, _, _) => !self.checks.services().any(|s| s == name),
                (Some(c), Some(_), Some(_)) => {
                    self.checks.services().any(|s| s == name)
                        && c.reals.iter().all(carry)
                        && checks_unchanged(old_vs, new_vs)
                }
                _ => false,
            };
            if before == Some(service) && checks_same {
                continue;
            }
            // Reals whose checks continue keep the weight their checkers gave them.
            let mut programmed = with_egress(service, &self.egress);
            if let Some(c) = &new_checks {
                let current = self.checks.weights(&name);
                for r in &mut programmed.reals {
                    let continues = c
                        .reals
                        .iter()
                        .find(|x| x.addr == r.addr && x.port == r.port)
                        .is_some_and(carry);
                    if let Some((_, _, w)) = current
                        .iter()
                        .find(|(a, p, _)| continues && *a == r.addr && *p == r.port)
                    {
                        r.weight = *w;
                    }
                }
            }
            let applied = self.lock().apply(&name, &programmed);
            match applied {
                Ok(()) => summary.push(format!(
                    "{} {name}",
                    if before.is_some() { "changed" } else { "added" }
                )),
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            }
            match new_checks {
                Some(c) => self.checks.replace(c, carry),
                None => self.checks.remove(&name),
            }
        }
        for name in old_services.keys().filter(|n| !kept.contains(*n)) {
            self.checks.delete(name);
            match self.lock().remove(name) {
                Ok(()) => summary.push(format!("removed {name}")),
                Err(e) => failures.push(format!("removing {name}: {e}")),
            }
        }
    }

    /// VRRP: an unchanged instance runs on untouched (no transition); a changed one is
    /// restarted; a removed one stops as at shutdown. `scripts` holds the prepared scripts of
    /// every instance to (re)start.
    async fn reload_instances(
        &mut self,
        mut scripts: HashMap<String, (Vec<TrackScript>, InstanceScripts)>,
        changes: &mut Changes,
    ) {
        let summary = &mut changes.summary;
        let wanted: Vec<VrrpInstance> = self.loaded.validated.model.vrrp.clone();
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for name in names {
            if !wanted.iter().any(|i| i.name == name) {
                self.stop_instance(&name).await;
                summary.push(format!("stopped vrrp_instance {name}"));
            }
        }
        for instance in &wanted {
            if let Some(scripts) = scripts.remove(&instance.name) {
                let restarted = self.instances.contains_key(&instance.name);
                self.stop_instance(&instance.name).await;
                self.start_instance(instance, scripts);
                summary.push(format!(
                    "{} vrrp_instance {}",
                    if restarted { "restarted" } else { "started" },
                    instance.name
                ));
            }
        }
    }

    /// Every configured real and sorry server.
    fn configured_reals(&self) -> impl Iterator<Item = &crate::model::RealServer> {
        self.loaded
            .validated
            .model
            .services
            .iter()
            .flat_map(|s| s.reals.iter().chain(&s.sorry_server))
    }

    /// Says how many reals are sent without a FIB lookup.
    fn log_egress(&self, what: &str) {
        let reals: Vec<_> = self.configured_reals().collect();
        let resolved = reals
            .iter()
            .filter(|r| self.egress.contains_key(&r.addr))
            .count();
        tracing::info!(
            resolved,
            reals = reals.len(),
            "{what}: resolved reals are sent without a FIB lookup, the others through it"
        );
    }

    /// The egress of every configured real that resolves now.
    async fn resolve_egress(&self) -> HashMap<std::net::IpAddr, Egress> {
        let Some(resolver) = &self.resolver else {
            return HashMap::new();
        };
        let mut addrs: Vec<std::net::IpAddr> = self.configured_reals().map(|r| r.addr).collect();
        addrs.sort_unstable();
        addrs.dedup();
        match resolver.resolve(&addrs).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "resolving the reals' egress failed");
                self.egress.clone()
            }
        }
    }

    /// Resolves the reals' egress again and re-applies the services whose reals' egress
    /// changed (a neighbour learnt or moved), keeping the weights the data plane holds.
    async fn refresh_egress(&mut self) {
        let found = self.resolve_egress().await;
        if found == self.egress {
            return;
        }
        self.egress = found;
        self.log_egress("reals' egress changed");
        let names: Vec<String> = self
            .loaded
            .validated
            .model
            .services
            .iter()
            .map(service_name)
            .collect();
        let mut program = self.lock();
        for name in names {
            let Some(current) = program.installed_model(&name) else {
                continue;
            };
            let updated = with_egress(&current, &self.egress);
            if updated != current
                && let Err(e) = program.apply(&name, &updated)
            {
                tracing::error!(service = name, error = %e, "applying the new egress failed");
            }
        }
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
        // As keepalived's `stop_vrrp`.
        change_statics(&Statics::default(), &self.loaded.validated.model.statics).await;
        let checks = std::mem::replace(
            &mut self.checks,
            CheckHandle::new(&(self.program.clone() as SharedDataplane), 1),
        );
        checks.stop().await;
        let mut program = self.lock();
        if self.options.keep_state {
            // The pinned program goes on forwarding until the next run swaps itself in.
            program.keep_attached();
            tracing::info!("stopping: the data plane stays attached and pinned for the next run");
        } else {
            tracing::info!("stopping: detaching from every interface");
            program.detach_all()?;
            program.unpin()?;
        }
        Ok(())
    }
}

/// Makes the kernel hold `wanted`'s `static_ipaddress`, `static_routes` and `static_rules`
/// where it held `old`'s (nothing wanted: all of `old` removed); returns (and logs) what
/// failed.
async fn change_statics(wanted: &Statics, old: &Statics) -> Vec<String> {
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

/// How often the reals' egress is resolved again.
const EGRESS_REFRESH: Duration = Duration::from_secs(2);

/// `svc` with each real's (and the sorry server's) egress as resolved; unresolved ones are
/// left to the XDP program's FIB lookup.
fn with_egress(svc: &VirtualService, egress: &HashMap<std::net::IpAddr, Egress>) -> VirtualService {
    let mut out = svc.clone();
    for r in out.reals.iter_mut().chain(&mut out.sorry_server) {
        r.egress = egress.get(&r.addr).copied();
    }
    out
}

/// What a reload did, and what it could not do.
#[derive(Default)]
struct Changes {
    summary: Vec<String>,
    failures: Vec<String>,
}

impl Changes {
    fn result(self) -> Result<String, String> {
        if !self.failures.is_empty() {
            return Err(format!(
                "partly applied ({}); failed: {}",
                self.summary.join(", "),
                self.failures.join("; ")
            ));
        }
        Ok(if self.summary.is_empty() {
            "reloaded: nothing changed".to_owned()
        } else {
            format!("reloaded: {}", self.summary.join(", "))
        })
    }
}

/// The `virtual_server` block a model service came from: matched by protocol and its set of
/// reals (a `virtual_server_group` may give one block several services).
fn virtual_server<'a>(
    config: &'a Config,
    svc: &VirtualService,
) -> Option<&'a crate::config::schema::VirtualServer> {
    let proto = match svc.protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    };
    let reals: std::collections::BTreeSet<(std::net::IpAddr, u16)> =
        svc.reals.iter().map(|r| (r.addr, r.port)).collect();
    config.virtual_server.iter().find(|vs| {
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
    })
}

/// Whether the service-wide inputs of the checkers (quorum, hysteresis, sorry server) stayed.
fn checks_unchanged(
    old: Option<&crate::config::schema::VirtualServer>,
    new: Option<&crate::config::schema::VirtualServer>,
) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => {
            o.quorum == n.quorum && o.hysteresis == n.hysteresis && o.sorry_server == n.sorry_server
        }
        (None, None) => true,
        _ => false,
    }
}

type InstanceEnd = (String, Result<(), NetError>);

/// The health checkers of every configured service that has any, named as the data plane
/// knows the service.
fn service_checks(
    config: &Config,
    services: &[VirtualService],
) -> Result<Vec<ServiceChecks>, RunError> {
    let mut out = Vec::new();
    let mut policy = None;
    for svc in services {
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
            let mut spec = crate::check::config::service_checks(&service_name(svc), vs, p)?;
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

/// keepalived's `init_file`: a `vrrp_track_file` starts with its value (unless the file
/// exists and `overwrite` is not given). A file that cannot be written is logged; it then
/// reads as 0, as a missing file does.
/// At a reload (`before` given) only blocks that are new or changed are initialised.
fn init_track_files(config: &Config, before: Option<&Config>) {
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
fn instance_scripts(
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
fn vrrp_alerts(
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
        mail: None,
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
struct VrrpWiring<'a> {
    groups: &'a std::collections::BTreeMap<String, crate::config::schema::SyncGroup>,
    members: Vec<(&'a str, Option<&'a str>)>,
    fifos: [Option<&'a str>; 4],
}

fn vrrp_wiring(loaded: &Loaded) -> VrrpWiring<'_> {
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
struct SyncGroups {
    members: BTreeMap<String, (GroupHandle, usize, bool)>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts a coordinator (and notify scripts) for every `vrrp_sync_group` of two or more
/// running instances; keepalived drops a group of one (`vrrp_sync_set_group`).
fn sync_groups(
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
fn spawn_instance(
    vrrp: &tokio::runtime::Handle,
    instance: &VrrpInstance,
    (tracked, scripts): (Vec<TrackScript>, InstanceScripts),
    sync: Option<SyncMember>,
    mut stopped: watch::Receiver<bool>,
    status: watch::Sender<VrrpStatus>,
) -> JoinHandle<()> {
    let mut spec = instance.spec.clone();
    spec.track
        .interfaces
        .extend(instance.track_interfaces.iter().cloned());
    spec.track
        .files
        .extend(instance.track_files.iter().cloned());
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

fn log_instance_end(ended: InstanceEnd) {
    match ended {
        (name, Ok(())) => tracing::info!(instance = name, "VRRP instance stopped"),
        (name, Err(e)) => tracing::error!(instance = name, error = %e, "VRRP instance failed"),
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
