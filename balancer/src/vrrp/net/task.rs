//! The task that drives one [`Instance`]: it sleeps until the state machine's next deadline,
//! feeds it the adverts the socket receives, and carries out every [`Action`] it returns.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use tokio::sync::{
    mpsc::{UnboundedSender, unbounded_channel},
    watch,
};
use tokio::time::Instant;

use crate::status::VrrpStatus;
use crate::vrrp::ah::{Ah, AhError};
use crate::vrrp::auth::Auth;
use crate::vrrp::checksum::PseudoHeader;
use crate::vrrp::config::{Config, ConfigError};
use crate::vrrp::fsm::{Action, Event, Instance, State};
use crate::vrrp::net::garp::{self, FrameSender};
use crate::vrrp::net::socket::{Datagram, RECV_BUFFER_LEN, VrrpSocket};
use crate::vrrp::net::vip::{AddressOptions, Link, Netlink, NetlinkError, Vip};
use crate::vrrp::net::vmac::{self, Vmac};
use crate::vrrp::sync::SyncLink;
use crate::vrrp::timing::Timestamp;
use crate::vrrp::track::{self, Track, Tracking, Update};
use crate::vrrp::validate::Discard;
use crate::vrrp::wire::Addresses;

/// RFC 5798 §5.1.1.2: the IPv4 multicast group of VRRP.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// RFC 5798 §5.1.2.2: the IPv6 multicast group of VRRP.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// How long receiving pauses after a socket error other than a malformed datagram, so a
/// failing socket cannot spin the task while timers keep running.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// One instance as the I/O layer runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// The interface the instance sends, receives and adds its addresses on.
    pub interface: String,
    /// The state machine's configuration. Its `vips` are replaced by [`InstanceSpec::vips`];
    /// an unspecified `primary_address` (`0.0.0.0` or `::`) means the interface's own (see
    /// [`Link::primary_address`]).
    pub config: Config,
    /// The virtual addresses with their prefixes, in the order adverts list them.
    pub vips: Vec<Vip>,
    /// keepalived's `virtual_ipaddress_excluded`: owned with the VIPs (added, removed,
    /// announced) but left out of adverts, so of either family.
    pub excluded: Vec<Vip>,
    /// The multicast group (keepalived `mcast_dst_ip`); `None` is the RFC's.
    pub group: Option<IpAddr>,
    /// Trackers besides `interface` (which is always tracked, unweighted).
    pub track: Track,
    /// keepalived's `use_vmac`: the name of the macvlan that carries the virtual MAC and the
    /// addresses (see [`crate::vrrp::net::vmac`]).
    pub vmac: Option<String>,
    /// keepalived's `vmac_xmit_base`: with `use_vmac`, IPv4 multicast adverts too leave from
    /// the base interface (with its MAC) instead of the macvlan.
    pub vmac_xmit_base: bool,
    /// keepalived's `virtual_routes`: added with the addresses, removed with them.
    pub routes: Vec<crate::vrrp::net::route::VirtualRoute>,
    /// keepalived's `virtual_rules`: added after the routes, removed before them.
    pub rules: Vec<crate::vrrp::net::rule::VirtualRule>,
    /// The options of the addresses (of `vips` and `excluded`) that have any: another
    /// `dev`, `brd`, `scope`, `label`, flags.
    pub address_options: std::collections::BTreeMap<IpAddr, AddressOptions>,
}

/// A state change or event for the notify module, sent besides the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    State {
        interface: String,
        vrid: u8,
        state: State,
        /// The effective priority (configured plus tracker weights), as keepalived passes it.
        priority: u8,
    },
    MasterRxLowerPriority {
        interface: String,
        vrid: u8,
        from: IpAddr,
        /// Our effective priority, as keepalived's FIFO line gives it.
        priority: u8,
    },
    /// A `vrrp_sync_group` changed state (`Init` is STOP).
    Group { name: String, state: State },
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("instance VRID {vrid} on {interface}")]
    Config {
        vrid: u8,
        interface: String,
        source: ConfigError,
    },
    #[error(
        "virtual address {vip} is {family} but the instance's source address {source_address} is not"
    )]
    VipFamily {
        vip: Vip,
        family: &'static str,
        source_address: IpAddr,
    },
    #[error("interface {interface} has no {what} address to send adverts from; give one")]
    NoSourceAddress {
        interface: String,
        what: &'static str,
    },
    #[error("opening the VRRP socket on {interface}")]
    Socket {
        interface: String,
        source: io::Error,
    },
}

/// Runs the instance until `shutdown` completes, then sends the priority-0 advert if it is
/// master and removes its addresses. Returns the stopped instance (counters, transitions).
///
/// Before electing, addresses of ours left on the interface (a crash, a `kill -9`) are
/// removed, so a backup never answers for an address while another router is master.
///
/// # Errors
/// Setup fails: the interface, the configuration, the socket. Once running, send and netlink
/// failures are logged and the instance goes on, as keepalived does.
pub async fn run_instance(
    spec: InstanceSpec,
    shutdown: impl Future<Output = ()>,
    notify: Option<UnboundedSender<Notification>>,
) -> Result<Instance, NetError> {
    run_instance_observed(spec, shutdown, notify, None).await
}

/// [`run_instance`], publishing the instance's state, priority, master and the reason of its
/// last transition on `status` after every step (what `balancer status` shows). The sender's
/// name field is left as the caller set it.
///
/// # Errors
/// As [`run_instance`].
pub async fn run_instance_observed(
    spec: InstanceSpec,
    shutdown: impl Future<Output = ()>,
    notify: Option<UnboundedSender<Notification>>,
    status: Option<watch::Sender<VrrpStatus>>,
) -> Result<Instance, NetError> {
    run_member(spec, shutdown, notify, status, None).await
}

/// [`run_instance_observed`] for a member of a `vrrp_sync_group` (see [`crate::vrrp::sync`]):
/// the instance reports every status change on `sync` and takes the group's events from it.
///
/// # Errors
/// As [`run_instance`].
pub async fn run_member(
    spec: InstanceSpec,
    shutdown: impl Future<Output = ()>,
    notify: Option<UnboundedSender<Notification>>,
    status: Option<watch::Sender<VrrpStatus>>,
    mut sync: Option<SyncLink>,
) -> Result<Instance, NetError> {
    let mut driver = Driver::new(spec, notify).await?;
    driver.status = status;
    if sync.is_some() {
        driver.instance.join_sync_group();
    }
    let start = Instant::now();
    let now = || Timestamp::from_start(start.elapsed());
    driver.remove_leftovers().await?;
    // Trackers report on a channel; the instance starts once each has been heard from (an
    // unweighted script's first result, every interface and file read).
    let (track_tx, mut track_rx) = unbounded_channel();
    let mut tracking = Tracking::new(&driver.spec.track);
    let _trackers = track::start(
        &driver.spec.track,
        &driver.spec.interface,
        &mut tracking,
        &track_tx,
    )
    .await?;
    drop(track_tx);
    let mut started = false;
    driver.cause = "startup".into();
    let actions = driver.track(now(), &mut tracking, &mut started);
    driver.execute(actions).await;
    report(sync.as_mut(), &driver.instance);

    let mut buffer = vec![0; RECV_BUFFER_LEN];
    let mut recv_paused_until = None;
    tokio::pin!(shutdown);
    loop {
        let deadline = driver
            .instance
            .next_deadline()
            .map(|t| start + t.since_start());
        let actions = tokio::select! {
            () = &mut shutdown => break,
            () = sleep_until(deadline) => {
                driver.cause = match driver.instance.state() {
                    State::Backup => "no advert from the master within the master-down interval".into(),
                    _ => "timer".into(),
                };
                driver.instance.handle(now(), Event::TimerExpired)
            }
            Some(update) = track_rx.recv() => {
                driver.cause = track_cause(&update, &driver.spec.interface, &driver.spec.track);
                tracking.apply(&update);
                driver.track(now(), &mut tracking, &mut started)
            }
            Some(event) = group_event(sync.as_mut()) => {
                tracing::debug!(interface = driver.spec.interface, ?event, "sync group");
                driver.cause = match &event {
                    Event::SyncMaster => "its vrrp_sync_group became master",
                    Event::SyncBackup => "another member of its vrrp_sync_group stepped down",
                    Event::SyncFault { failing: true } => "another member of its vrrp_sync_group is in FAULT",
                    _ => "its vrrp_sync_group left FAULT",
                }
                .into();
                driver.instance.handle(now(), event)
            }
            () = sleep_until(recv_paused_until), if recv_paused_until.is_some() => {
                recv_paused_until = None;
                Vec::new()
            }
            received = driver.socket.recv(&mut buffer), if recv_paused_until.is_none() => {
                match received {
                    Ok(mut datagram) => {
                        if driver.authenticate(&buffer, &mut datagram) {
                            let rx = datagram.received(&buffer);
                            // RFC 5798 §5.2.4: the priority is the third octet in v2 and v3.
                            driver.cause = match rx.payload.get(2) {
                                Some(0) => format!("{} gave up mastership (priority 0)", rx.src),
                                Some(p) => format!("advert from {} priority {p}", rx.src),
                                None => format!("advert from {}", rx.src),
                            };
                            driver.instance.receive(now(), &rx)
                        } else {
                            Vec::new()
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        tracing::debug!(interface = driver.spec.interface, error = %e, "dropped a datagram");
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::warn!(interface = driver.spec.interface, error = %e, "receiving adverts");
                        recv_paused_until = Some(Instant::now() + RECV_ERROR_PAUSE);
                        Vec::new()
                    }
                }
            }
        };
        driver.execute(actions).await;
        report(sync.as_mut(), &driver.instance);
    }
    driver.cause = "stopping".into();
    let actions = driver.instance.handle(now(), Event::Shutdown);
    driver.execute(actions).await;
    report(sync.as_mut(), &driver.instance);
    if let Some(vmac) = driver.vmac.take() {
        vmac.remove(&driver.netlink).await;
    }
    Ok(driver.instance)
}

fn report(sync: Option<&mut SyncLink>, instance: &Instance) {
    if let Some(link) = sync {
        link.report(instance);
    }
}

async fn group_event(sync: Option<&mut SyncLink>) -> Option<Event> {
    match sync {
        Some(link) => link.event().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => crate::vrrp::net::timer::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Driver {
    spec: InstanceSpec,
    instance: Instance,
    netlink: Netlink,
    /// Where the addresses live and gratuitous ARPs / NAs leave from: the interface, or its
    /// macvlan with `use_vmac`.
    link: Link,
    /// The link-local address neighbour advertisements carry (the base interface's).
    link_local: Option<Ipv6Addr>,
    vmac: Option<Vmac>,
    socket: VrrpSocket,
    /// With `use_vmac` on IPv4 multicast: the socket adverts leave from, on the macvlan, so
    /// that they carry the virtual MAC as RFC 5798 §7.3 has them (keepalived's default;
    /// adverts are still received on `socket`).
    vmac_socket: Option<VrrpSocket>,
    frames: Option<FrameSender>,
    /// The other interfaces addresses name with `dev`, and a gratuitous ARP / NA sender on
    /// each, by name.
    devices: std::collections::HashMap<String, (Link, Option<FrameSender>)>,
    /// Where adverts go: the group, or each unicast peer.
    destinations: Vec<IpAddr>,
    /// With `auth_type AH`: the key and the sequence counter adverts share in and out.
    ah: Option<Ah>,
    /// Whether the interface forwards IPv6: neighbour advertisements then carry the Router
    /// flag (RFC 4861 §4.4), as keepalived's do.
    ipv6_router: bool,
    notify: Option<UnboundedSender<Notification>>,
    status: Option<watch::Sender<VrrpStatus>>,
    /// What the state machine was last fed, for the status's "why".
    cause: String,
}

/// A tracker's report in words, for the status's "why".
fn track_cause(update: &Update, own: &str, track: &Track) -> String {
    match update {
        // Index 0 is the instance's own interface (see `track::start`).
        Update::Link { index, up, .. } => {
            let name = match index.checked_sub(1) {
                None => own,
                Some(i) => track
                    .interfaces
                    .get(i)
                    .map_or("a tracked interface", |t| t.name.as_str()),
            };
            format!("{name} {}", if *up { "up" } else { "down" })
        }
        Update::Script { ok, .. } => format!(
            "a track_script {}",
            if *ok { "succeeded" } else { "failed" }
        ),
        Update::File { value, .. } => format!("a track_file now reads {value}"),
        Update::Process { ok, .. } => format!(
            "a track_process {} its quorum",
            if *ok { "gained" } else { "lost" }
        ),
    }
}

impl Driver {
    async fn new(
        mut spec: InstanceSpec,
        notify: Option<UnboundedSender<Notification>>,
    ) -> Result<Self, NetError> {
        let netlink = Netlink::connect()?;
        let link = netlink.link(&spec.interface).await?;
        let ipv6 = spec.config.primary_address.is_ipv6();
        if spec.config.primary_address.is_unspecified() {
            spec.config.primary_address =
                link.primary_address(ipv6, &spec.vips).ok_or_else(|| {
                    NetError::NoSourceAddress {
                        interface: spec.interface.clone(),
                        what: if ipv6 { "IPv6 link-local" } else { "IPv4" },
                    }
                })?;
        }
        spec.config.vips = addresses(&spec.vips, spec.config.primary_address)?;
        let instance = Instance::new(spec.config.clone()).map_err(|source| NetError::Config {
            vrid: spec.config.vrid,
            interface: spec.interface.clone(),
            source,
        })?;
        let unicast = spec.config.is_unicast();
        let group = spec.group.unwrap_or(if ipv6 {
            GROUP_V6.into()
        } else {
            GROUP_V4.into()
        });
        let ah = match &spec.config.auth {
            Some(Auth::Ah(key)) => Some(Ah::new(key, spec.config.vrid, unicast)),
            _ => None,
        };
        let socket = VrrpSocket::open(
            &spec.interface,
            link.index,
            spec.config.primary_address,
            (!unicast).then_some(group),
            ah.is_some(),
        )
        .map_err(|source| NetError::Socket {
            interface: spec.interface.clone(),
            source,
        })?;
        let link_local = link.link_local();
        let (link, vmac) = match &spec.vmac {
            Some(name) => {
                let mac = vmac::virtual_mac(spec.config.vrid, ipv6);
                let v = Vmac::create(&netlink, &spec.interface, link.index, name, mac).await?;
                match netlink.link(name).await {
                    Ok(l) => (l, Some(v)),
                    Err(e) => {
                        v.remove(&netlink).await;
                        return Err(e.into());
                    }
                }
            }
            None => (link, None),
        };
        let vmac_socket = vmac.as_ref().and_then(|_| vmac_advert_socket(&spec, &link));
        let frames = frame_sender(&link, &spec.interface);
        let devices = other_devices(&netlink, &spec).await;
        let destinations = if unicast {
            spec.config.unicast_peers.clone()
        } else {
            vec![group]
        };
        let ipv6_router = ipv6_forwarding(&spec.interface);
        Ok(Self {
            spec,
            instance,
            netlink,
            link,
            link_local,
            vmac,
            socket,
            vmac_socket,
            frames,
            devices,
            destinations,
            ah,
            ipv6_router,
            notify,
            status: None,
            cause: String::new(),
        })
    }

    /// With AH, checks a received datagram's authentication and points its payload at the
    /// VRRP message inside; false when it is to be dropped (an authentication failure counts,
    /// another router's or another protocol's AH packet does not).
    fn authenticate(&mut self, buffer: &[u8], datagram: &mut Datagram) -> bool {
        let Some(ah) = &mut self.ah else {
            return true;
        };
        let Some(packet) = buffer.get(datagram.packet.clone()) else {
            return false;
        };
        match ah.open(packet) {
            Ok(vrrp) => {
                let at = datagram.packet.start;
                datagram.payload = at + vrrp.start..at + vrrp.end;
                true
            }
            Err(e @ (AhError::OtherVrid(_) | AhError::NotVrrp(_))) => {
                tracing::trace!(interface = self.spec.interface, src = %datagram.src, error = %e, "not our AH advert");
                false
            }
            Err(e) => {
                tracing::debug!(interface = self.spec.interface, src = %datagram.src, error = %e, "AH advert dropped");
                self.instance.reject(match e {
                    AhError::Malformed => Discard::BadLength,
                    _ => Discard::AuthFailure,
                });
                false
            }
        }
    }

    /// Feeds the state machine what changed in `tracking`, and starts it once every tracker
    /// has reported.
    fn track(
        &mut self,
        now: Timestamp,
        tracking: &mut Tracking,
        started: &mut bool,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for event in tracking.events() {
            tracing::debug!(interface = self.spec.interface, ?event, "tracking");
            actions.extend(self.instance.handle(now, event));
        }
        if !*started && tracking.ready() {
            *started = true;
            actions.extend(self.instance.handle(now, Event::Startup));
        }
        actions
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        let transition = actions.iter().any(|a| matches!(a, Action::Notify { .. }));
        self.run(actions).await;
        self.publish(transition);
    }

    /// Sends the instance's status to the observer, if any; `transition` stamps the time and
    /// the reason.
    fn publish(&self, transition: bool) {
        let Some(tx) = &self.status else { return };
        let i = &self.instance;
        tx.send_modify(|s| {
            s.interface.clone_from(&self.spec.interface);
            s.vrid = self.spec.config.vrid;
            s.version = match self.spec.config.version {
                crate::vrrp::wire::Version::V2 => 2,
                crate::vrrp::wire::Version::V3 => 3,
            };
            i.state().name().clone_into(&mut s.state);
            s.priority = i.priority();
            s.configured_priority = self.spec.config.priority;
            s.master = match i.state() {
                State::Master => Some((self.spec.config.primary_address, i.priority())),
                State::Backup => i.master(),
                _ => None,
            };
            let t = i.transitions();
            s.become_master = t.become_master;
            s.release_master = t.release_master;
            if transition {
                s.since = crate::status::unix_now();
                s.why.clone_from(&self.cause);
            }
        });
    }

    async fn run(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::AddVips => {
                    for vip in self.spec.vips.iter().chain(&self.spec.excluded) {
                        let Some((link, _)) = self.place(vip.addr) else {
                            continue;
                        };
                        let result = self
                            .netlink
                            .add(link.index, *vip, self.options(vip.addr))
                            .await;
                        if let Err(e) = result {
                            tracing::error!(error = %e, "virtual address not added");
                        }
                    }
                    // After the addresses: a route may use one as its source.
                    for route in &self.spec.routes {
                        if let Err(e) = self.netlink.route(route, true).await {
                            tracing::error!(error = %e, "virtual route not added");
                        }
                    }
                    for rule in &self.spec.rules {
                        if let Err(e) = self.netlink.rule(rule, true).await {
                            tracing::error!(error = %e, "virtual rule not added");
                        }
                    }
                }
                Action::DelVips => {
                    self.remove_rules_and_routes().await;
                    for vip in self.removable_vips() {
                        let Some((link, _)) = self.place(vip.addr) else {
                            continue;
                        };
                        if let Err(e) = self.netlink.del(link.index, vip).await {
                            tracing::error!(error = %e, "virtual address not removed");
                        }
                    }
                }
                Action::SendGratuitous { repeat } => self.send_gratuitous(repeat),
                Action::Notify { state } => {
                    tracing::info!(
                        interface = self.spec.interface,
                        vrid = self.spec.config.vrid,
                        state = state.name(),
                        "VRRP instance state"
                    );
                    self.notify(Notification::State {
                        interface: self.spec.interface.clone(),
                        vrid: self.spec.config.vrid,
                        state,
                        priority: self.instance.priority(),
                    });
                }
                Action::NotifyMasterRxLowerPriority { from } => {
                    tracing::info!(
                        interface = self.spec.interface,
                        vrid = self.spec.config.vrid,
                        %from,
                        "advert from a lower-priority master"
                    );
                    self.notify(Notification::MasterRxLowerPriority {
                        interface: self.spec.interface.clone(),
                        vrid: self.spec.config.vrid,
                        from,
                        priority: self.instance.priority(),
                    });
                }
            }
        }
    }

    /// The VIPs that may be removed: all but the address adverts leave from, which an address
    /// owner (RFC 5798 §3: priority 255, the VIP is its own address) keeps whatever its state,
    /// since the interface and the instance itself need it.
    fn removable_vips(&self) -> Vec<Vip> {
        let primary = self.spec.config.primary_address;
        self.spec
            .vips
            .iter()
            .chain(&self.spec.excluded)
            .copied()
            .filter(|v| v.addr != primary)
            .collect()
    }

    fn notify(&self, notification: Notification) {
        if let Some(tx) = &self.notify {
            // A receiver that went away only means nobody listens any more.
            let _ = tx.send(notification);
        }
    }

    async fn send_advert(&mut self, priority: u8) {
        let repr = self.instance.advert(priority);
        if let Some(ah) = &mut self.ah {
            ah.next_round();
        }
        let mode = self.instance.checksum_mode();
        for dst in &self.destinations {
            let ph = PseudoHeader {
                src: self.spec.config.primary_address,
                dst: *dst,
            };
            let result = match repr.to_bytes(ph, mode) {
                Ok(bytes) => {
                    let bytes = match (&self.ah, ph.src, *dst) {
                        (Some(ah), IpAddr::V4(src), IpAddr::V4(dst)) => ah.seal(src, dst, &bytes),
                        _ => bytes,
                    };
                    self.vmac_socket
                        .as_ref()
                        .unwrap_or(&self.socket)
                        .send(*dst, &bytes)
                        .await
                }
                Err(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
            };
            if let Err(e) = result {
                tracing::warn!(interface = self.spec.interface, %dst, error = %e, "advert not sent");
            }
        }
    }

    fn send_gratuitous(&self, repeat: u32) {
        for vip in self.spec.vips.iter().chain(&self.spec.excluded) {
            let Some((link, frames)) = self.place(vip.addr) else {
                continue;
            };
            let (Some(frames), Some(mac)) = (frames, link.mac) else {
                continue;
            };
            // An address on another `dev` is announced with that device's own link-local
            // source and Router flag.
            let (link_local, router) = if link.index == self.link.index {
                (self.link_local, self.ipv6_router)
            } else {
                let dev = self.options(vip.addr).dev.as_deref().unwrap_or_default();
                (link.link_local(), ipv6_forwarding(dev))
            };
            let Some(frame) = garp::announcement(mac, vip.addr, link_local, router) else {
                tracing::warn!(interface = self.spec.interface, %vip, "no link-local address for a neighbour advertisement");
                continue;
            };
            for _ in 0..repeat {
                if let Err(e) = frames.send(&frame) {
                    tracing::warn!(interface = self.spec.interface, %vip, error = %e, "gratuitous ARP / NA not sent");
                }
            }
        }
    }

    /// Removes the rules, then the routes (a route may be what a rule leads to).
    async fn remove_rules_and_routes(&self) {
        for rule in &self.spec.rules {
            if let Err(e) = self.netlink.rule(rule, false).await {
                tracing::error!(error = %e, "virtual rule not removed");
            }
        }
        for route in &self.spec.routes {
            if let Err(e) = self.netlink.route(route, false).await {
                tracing::error!(error = %e, "virtual route not removed");
            }
        }
    }

    /// Removes the rules, routes and addresses a previous run left behind (a crash),
    /// before electing.
    async fn remove_leftovers(&self) -> Result<(), NetlinkError> {
        self.remove_rules_and_routes().await;
        for vip in self.removable_vips() {
            let Some((link, _)) = self.place(vip.addr) else {
                continue;
            };
            if self.netlink.del(link.index, vip).await? {
                tracing::warn!(interface = self.spec.interface, %vip, "removed a leftover virtual address");
            }
        }
        Ok(())
    }

    /// The options `addr` was configured with.
    fn options(&self, addr: IpAddr) -> &AddressOptions {
        static NONE: AddressOptions = AddressOptions {
            dev: None,
            broadcast: None,
            scope: None,
            label: None,
            flags: 0,
            dad: false,
            preferred_lft: None,
        };
        self.spec.address_options.get(&addr).unwrap_or(&NONE)
    }

    /// The interface `addr` goes on (its `dev`, else the instance's or its macvlan) and the
    /// sender of its gratuitous ARPs / NAs there; `None` when its `dev` does not exist (the
    /// address is skipped).
    fn place(&self, addr: IpAddr) -> Option<(&Link, Option<&FrameSender>)> {
        match self.options(addr).dev.as_ref() {
            Some(dev) if *dev != self.spec.interface => self
                .devices
                .get(dev)
                .map(|(link, frames)| (link, frames.as_ref())),
            _ => Some((&self.link, self.frames.as_ref())),
        }
    }
}

/// With `use_vmac`, the socket IPv4 multicast adverts leave from, on the macvlan `link`.
/// Unicast adverts and IPv6 ones (whose link-local source lives on the base) leave from the
/// base, as keepalived's `vmac_xmit_base` sends them; so does everything when the socket
/// cannot be opened (logged).
fn vmac_advert_socket(spec: &InstanceSpec, link: &Link) -> Option<VrrpSocket> {
    if spec.vmac_xmit_base || spec.config.is_unicast() || spec.config.primary_address.is_ipv6() {
        return None;
    }
    let name = spec.vmac.as_deref()?;
    let ah = matches!(spec.config.auth, Some(Auth::Ah(_)));
    match VrrpSocket::open(name, link.index, spec.config.primary_address, None, ah) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(interface = spec.interface, error = %e, "adverts leave from the base interface, not the macvlan");
            None
        }
    }
}

/// The interfaces other than the instance's that addresses name with `dev`, with a
/// gratuitous ARP / NA sender on each. keepalived skips an address whose interface is
/// missing ("Cannot find interface"), and so do we (logged), rather than the instance.
async fn other_devices(
    netlink: &Netlink,
    spec: &InstanceSpec,
) -> std::collections::HashMap<String, (Link, Option<FrameSender>)> {
    let mut devices = std::collections::HashMap::new();
    for dev in spec.address_options.values().filter_map(|o| o.dev.as_ref()) {
        if *dev == spec.interface || devices.contains_key(dev) {
            continue;
        }
        match netlink.link(dev).await {
            Ok(other) => {
                let sender = frame_sender(&other, dev);
                devices.insert(dev.clone(), (other, sender));
            }
            Err(e) => tracing::error!(
                interface = spec.interface,
                dev,
                error = %e,
                "the virtual addresses on this dev are skipped"
            ),
        }
    }
    devices
}

/// Whether `interface` forwards IPv6: its neighbour advertisements then carry the Router
/// flag (RFC 4861 §4.4), as keepalived's do.
fn ipv6_forwarding(interface: &str) -> bool {
    let path = format!("/proc/sys/net/ipv6/conf/{interface}/forwarding");
    std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1")
}

/// A gratuitous ARP / NA sender on `link`, if it has a MAC; a failure is logged.
fn frame_sender(link: &Link, name: &str) -> Option<FrameSender> {
    link.mac?;
    match FrameSender::new(link.index) {
        Ok(sender) => Some(sender),
        Err(e) => {
            tracing::warn!(interface = name, error = %e, "no gratuitous ARP / NA socket");
            None
        }
    }
}

/// The advert's address list for `vips`, all of `primary`'s family.
fn addresses(vips: &[Vip], primary: IpAddr) -> Result<Addresses, NetError> {
    let wrong = |vip: &Vip| NetError::VipFamily {
        vip: *vip,
        family: if vip.addr.is_ipv4() { "IPv4" } else { "IPv6" },
        source_address: primary,
    };
    match primary {
        IpAddr::V4(_) => vips
            .iter()
            .map(|v| match v.addr {
                IpAddr::V4(a) => Ok(a),
                IpAddr::V6(_) => Err(wrong(v)),
            })
            .collect::<Result<_, _>>()
            .map(Addresses::V4),
        IpAddr::V6(_) => vips
            .iter()
            .map(|v| match v.addr {
                IpAddr::V6(a) => Ok(a),
                IpAddr::V4(_) => Err(wrong(v)),
            })
            .collect::<Result<_, _>>()
            .map(Addresses::V6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_addresses_keep_order_and_family() {
        let vips: Vec<Vip> = ["198.18.1.101/24", "198.18.1.100/24"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let primary: IpAddr = "198.18.1.1".parse().unwrap();
        assert_eq!(
            addresses(&vips, primary).unwrap(),
            Addresses::V4(vec![
                Ipv4Addr::new(198, 18, 1, 101),
                Ipv4Addr::new(198, 18, 1, 100)
            ])
        );
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert!(matches!(
            addresses(&vips, v6),
            Err(NetError::VipFamily { .. })
        ));
    }
}
