//! Loads the XDP program, attaches it to interfaces, programs its maps and reads its counters.

mod batch;
mod clock;
mod flows;
mod link;
mod pin;
mod services;
mod status;

pub use flows::{Sweep, SweepWalk, Walked};
pub use pin::{PINNED_MAPS, PinError, ensure_bpffs};

use std::{fmt, marker::PhantomData, net::IpAddr};

pub use services::addr_words;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, PerCpuArray, ProgramArray},
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use balancer_common::{
    ProtoCounter, Reason,
    counters::{PROTO_COUNTERS_MAP, REASONS_MAP},
    maps::{
        CLOCK_MAP, Clock, DEFAULT_FLOWS, DEFAULT_PERSIST, FLOWS_MAP, GLOBALS_MAP, Globals,
        MAX_SCHED_SLOTS, NAT_REVERSE_MAP, PERSIST_MAP, SCHED_SLOTS_MAP, SERVICES_MAP,
        TAIL_CALLS_MAP, TAIL_TOO_BIG, TOO_BIG_PROGRAM,
    },
};
use serde::Deserialize;

/// The XDP object built by `build.rs` from `balancer-ebpf`.
static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/balancer"));
/// The benchmark's programs, built beside it: the floor (a MAC swap and `XDP_TX`), the floor
/// with a flow lookup, and the wrapper that restores the frame between iterations.
pub static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench"));
/// A tunnel end for test reals, built beside it: strips IPIP / IP6IP6 and passes the inner
/// packet on (the network tests' TUN reals run it; kernels without the ipip module need it).
pub static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/decap"));
/// The program's entry point in that object.
const PROGRAM_NAME: &str = "balancer";

/// How to attach to an interface.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, serde::Serialize, schemars::JsonSchema, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Driver (native) mode where the driver supports it, generic mode otherwise.
    #[default]
    Auto,
    /// Driver (native) mode only: fail where the driver lacks XDP support.
    Driver,
    /// Generic (skb) mode: works on every interface, after the kernel has built an skb.
    Generic,
}

/// The mode an attachment ended up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    Driver,
    Generic,
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Driver => "driver",
            Self::Generic => "generic",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the XDP program into the kernel failed (needs root or CAP_BPF+CAP_NET_ADMIN)")]
    Load {
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the XDP object has no {what} named {name:?}")]
    Missing {
        what: &'static str,
        name: &'static str,
    },
    #[error("attaching to {interface} in {mode} mode failed")]
    Attach {
        interface: String,
        mode: &'static str,
        source: ProgramError,
    },
    #[error("{path} is not on a bpf filesystem (mount -t bpf bpf DIR, or see ensure_bpffs)")]
    NotBpffs { path: std::path::PathBuf },
    #[error("{interface} is already attached")]
    AlreadyAttached { interface: String },
    #[error("detaching from {interface} failed")]
    Detach {
        interface: String,
        source: ProgramError,
    },
    #[error("reading map {map}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error(transparent)]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[error(
        "{dir}: the pinned maps were left by a build whose maps mean something else (layout {}, \
         this build: {}); adopting them would misread connections and counters. Stop the \
         instance that left them without --keep-state, or remove {dir} once no program runs \
         from it, then start again", .found.map_or("unrecorded".to_owned(), |v| v.to_string()),
        balancer_common::maps::LAYOUT_VERSION,
        dir = .dir.display()
    )]
    Layout {
        dir: std::path::PathBuf,
        found: Option<u32>,
    },
    #[error("the pinned XDP link of {interface}: {what}: {message}")]
    Link {
        interface: String,
        what: &'static str,
        message: String,
    },
}

struct Attachment {
    interface: String,
    mode: AttachedMode,
    link: XdpLinkId,
    /// Where the link is pinned (it then outlives the process), if it is.
    pin: Option<std::path::PathBuf>,
}

/// Sizes fixed when the program is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Connection table entries (an LRU: when full, the least recently used flow goes).
    pub flows: u32,
    /// Persistence template entries.
    pub persist: u32,
    /// Connection timeouts, as `ipvsadm --set`.
    pub timeouts: Globals,
    /// Pin every map in this directory (on a bpf filesystem, see [`ensure_bpffs`]), and adopt
    /// the maps already pinned there by a previous run. `None`: the maps die with the program.
    pub pin_dir: Option<std::path::PathBuf>,
    /// Answer a packet the tunnel would make too big with ICMP fragmentation needed / packet
    /// too big (IPVS's behaviour); `false` drops it (counted as `drop_too_big`).
    pub icmp_too_big: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            flows: DEFAULT_FLOWS,
            persist: DEFAULT_PERSIST,
            timeouts: Globals::default(),
            pin_dir: None,
            icmp_too_big: true,
        }
    }
}

/// The loaded program, its map contents and the interfaces it is attached to. Dropping it
/// detaches everywhere.
pub struct XdpProgram {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
    table: services::ServiceTable,
    pin_dir: Option<std::path::PathBuf>,
    /// The connection table's size.
    flow_capacity: u32,
    /// Leave pinned links attached when dropped (see [`XdpProgram::keep_attached`]).
    keep_attached: bool,
    /// The scheduler slots, mapped into this process when the kernel allows.
    slots: Option<services::MappedSlots>,
}

impl Drop for XdpProgram {
    /// Detaches everywhere, pinned links included, unless [`XdpProgram::keep_attached`] was
    /// called.
    fn drop(&mut self) {
        if !self.keep_attached {
            for a in &self.attachments {
                if let Some(pin) = &a.pin {
                    let _ = std::fs::remove_file(pin);
                }
            }
        }
    }
}

impl XdpProgram {
    /// Loads the embedded program into the kernel (not yet attached anywhere).
    ///
    /// # Errors
    /// The kernel rejects the object or the program (permissions, verifier).
    pub fn load() -> Result<Self, XdpError> {
        Self::load_with(&LoadOptions::default())
    }

    /// Loads the embedded program with the given table sizes and timeouts.
    ///
    /// # Errors
    /// The kernel rejects the object, the program (verifier) or a map size.
    pub fn load_with(options: &LoadOptions) -> Result<Self, XdpError> {
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(FLOWS_MAP, options.flows)
            // One reverse entry per NAT flow at most.
            .map_max_entries(NAT_REVERSE_MAP, options.flows)
            .map_max_entries(PERSIST_MAP, options.persist);
        let mut adopting = false;
        let pin_paths: Vec<(&str, std::path::PathBuf)> = match &options.pin_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| XdpError::Load {
                    source: Box::new(PinError::Io {
                        path: dir.clone(),
                        what: "cannot create the pin directory",
                        source: e,
                    }),
                })?;
                if !pin::is_bpffs(dir) {
                    return Err(XdpError::NotBpffs { path: dir.clone() });
                }
                adopting = dir.join(SERVICES_MAP).exists();
                if adopting {
                    pin::check_layout(dir)?;
                }
                PINNED_MAPS.iter().map(|&m| (m, dir.join(m))).collect()
            }
            None => Vec::new(),
        };
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(PROGRAM_OBJECT).map_err(|e| XdpError::Load {
            source: Box::new(e),
        })?;
        program(&mut ebpf)?.load().map_err(|e| XdpError::Load {
            source: Box::new(e),
        })?;
        if options.icmp_too_big {
            load_too_big(&mut ebpf)?;
        }
        let mut program = Self {
            ebpf,
            attachments: Vec::new(),
            table: services::ServiceTable::default(),
            pin_dir: options.pin_dir.clone(),
            flow_capacity: options.flows,
            keep_attached: false,
            slots: None,
        };
        program.slots = match program.ebpf.map(SCHED_SLOTS_MAP) {
            Some(aya::maps::Map::Array(data)) => services::MappedSlots::new(data, MAX_SCHED_SLOTS),
            _ => None,
        };
        if program.slots.is_none() {
            tracing::info!(
                "scheduler slots not mappable (pinned by an older build): tables are written slot by slot"
            );
        }
        if adopting {
            program.adopt()?;
        }
        pin::stamp_layout(&mut program.ebpf)?;
        program.set_timeouts(options.timeouts)?;
        if let Some(c) = clock::calibrated(&mut program.ebpf) {
            program.set_clock(c)?;
        }
        Ok(program)
    }

    /// Sets the connection timeouts (`ipvsadm --set tcp tcpfin udp`).
    ///
    /// # Errors
    /// The globals map cannot be written.
    pub fn set_timeouts(&mut self, timeouts: Globals) -> Result<(), XdpError> {
        write_single(&mut self.ebpf, GLOBALS_MAP, timeouts)
    }

    /// How the packet path reads the time (`jiffy_ns` 0: from the clocksource).
    ///
    /// # Errors
    /// The clock map cannot be read.
    pub fn clock(&self) -> Result<Clock, XdpError> {
        read_single(&self.ebpf, CLOCK_MAP)
    }

    /// Sets how the packet path reads the time.
    fn set_clock(&mut self, clock: Clock) -> Result<(), XdpError> {
        write_single(&mut self.ebpf, CLOCK_MAP, clock)
    }

    /// Attaches to `interface` in the calling thread's network namespace.
    ///
    /// # Errors
    /// The interface does not exist, already runs an XDP program, or does not support the
    /// requested mode.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<AttachedMode, XdpError> {
        if self.attachments.iter().any(|a| a.interface == interface) {
            return Err(XdpError::AlreadyAttached {
                interface: interface.to_owned(),
            });
        }
        let pin_dir = self.pin_dir.clone();
        let prog = program(&mut self.ebpf)?;
        if let Some(dir) = &pin_dir
            && let Some((link, attached, pin)) = link::adopt(prog, dir, interface, mode)?
        {
            tracing::info!(
                interface,
                mode = %attached,
                "adopted the attached XDP link: the new program took over without a gap"
            );
            self.attachments.push(Attachment {
                interface: interface.to_owned(),
                mode: attached,
                link,
                pin: Some(pin),
            });
            return Ok(attached);
        }
        let attach = |prog: &mut Xdp, mode: AttachedMode| {
            let flags = match mode {
                AttachedMode::Driver => XdpMode::Driver,
                AttachedMode::Generic => XdpMode::Skb,
            };
            prog.attach(interface, flags)
        };
        let (link, attached) = match mode {
            AttachMode::Driver => (attach(prog, AttachedMode::Driver), AttachedMode::Driver),
            AttachMode::Generic => (attach(prog, AttachedMode::Generic), AttachedMode::Generic),
            AttachMode::Auto => match attach(prog, AttachedMode::Driver) {
                Err(e) if is_unsupported(&e) => {
                    tracing::info!(
                        interface,
                        "driver lacks native XDP; attaching in generic mode"
                    );
                    (attach(prog, AttachedMode::Generic), AttachedMode::Generic)
                }
                other => (other, AttachedMode::Driver),
            },
        };
        let link = link.map_err(|source| XdpError::Attach {
            interface: interface.to_owned(),
            mode: match attached {
                AttachedMode::Driver => "driver",
                AttachedMode::Generic => "generic",
            },
            source,
        })?;
        let (link, pin) = match &pin_dir {
            Some(dir) => link::pin(
                prog,
                link,
                &link::pin_path(dir, interface, attached),
                interface,
            )?,
            None => (link, None),
        };
        self.attachments.push(Attachment {
            interface: interface.to_owned(),
            mode: attached,
            link,
            pin,
        });
        Ok(attached)
    }

    /// Leaves the pinned attachments in place when this program is dropped: the kernel goes
    /// on forwarding with the pinned maps until the next daemon adopts them.
    pub fn keep_attached(&mut self) {
        self.keep_attached = true;
    }

    /// Detaches the links a previous run pinned for interfaces that are no longer attached
    /// here (no longer configured). Returns their interface names.
    pub fn release_stale_links(&mut self) -> Vec<String> {
        let Some(dir) = &self.pin_dir else {
            return Vec::new();
        };
        let keep: Vec<std::path::PathBuf> = self
            .attachments
            .iter()
            .filter_map(|a| a.pin.clone())
            .collect();
        link::release_pins(dir, &keep)
    }

    /// Detaches from one interface (a reload dropped it); not attached there is no error.
    ///
    /// # Errors
    /// The kernel refused to detach.
    pub fn detach(&mut self, interface: &str) -> Result<(), XdpError> {
        let Some(at) = self
            .attachments
            .iter()
            .position(|a| a.interface == interface)
        else {
            return Ok(());
        };
        let a = self.attachments.remove(at);
        if let Some(pin) = &a.pin {
            let _ = std::fs::remove_file(pin);
        }
        program(&mut self.ebpf)?
            .detach(a.link)
            .map_err(|source| XdpError::Detach {
                interface: a.interface,
                source,
            })
    }

    /// Detaches from every interface; also what `Drop` does, but reporting errors.
    ///
    /// # Errors
    /// The kernel refused to detach from an interface (the others are still detached).
    pub fn detach_all(&mut self) -> Result<(), XdpError> {
        let mut first_error = None;
        for a in std::mem::take(&mut self.attachments) {
            if let Some(pin) = &a.pin {
                let _ = std::fs::remove_file(pin);
            }
            let prog = program(&mut self.ebpf)?;
            if let Err(source) = prog.detach(a.link) {
                first_error.get_or_insert(XdpError::Detach {
                    interface: a.interface,
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The interfaces the program is attached to, with their modes.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, AttachedMode)> {
        self.attachments
            .iter()
            .map(|a| (a.interface.as_str(), a.mode))
    }

    /// The protocol counters, summed over all CPUs.
    ///
    /// # Errors
    /// The counter map is missing or cannot be read.
    pub fn proto_counters(&self) -> Result<ProtoCounters, XdpError> {
        self.counters()
    }

    /// The reason counters (what was done with each frame and why), summed over all CPUs.
    ///
    /// # Errors
    /// The reason map is missing or cannot be read.
    pub fn reasons(&self) -> Result<Reasons, XdpError> {
        self.counters()
    }

    fn counters<C: Counter>(&self) -> Result<Snapshot<C>, XdpError> {
        let map_err = |source| XdpError::Map {
            map: C::MAP,
            source,
        };
        let map = self.ebpf.map(C::MAP).ok_or(XdpError::Missing {
            what: "map",
            name: C::MAP,
        })?;
        let array = PerCpuArray::<_, u64>::try_from(map).map_err(map_err)?;
        let mut values = Vec::with_capacity(C::ALL.len());
        for &c in C::ALL {
            values.push(array.get(&c.index(), 0).map_err(map_err)?.iter().sum());
        }
        Ok(Snapshot {
            values,
            kind: PhantomData,
        })
    }

    /// The real a hash scheduler (sh, mh) gives a new connection from `client`:`port`; see
    /// [`services::ServiceTable::predict`].
    #[must_use]
    pub fn predict(&self, service: &str, client: IpAddr, port: u16) -> Option<IpAddr> {
        self.table.predict(service, client, port).map(|r| r.addr)
    }

    /// The program itself, for `BPF_PROG_TEST_RUN` in tests and benchmarks.
    ///
    /// # Errors
    /// The object has no program of the expected name (a build problem).
    pub fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        program(&mut self.ebpf)
    }
}

/// Loads the `too_big` program and puts it where the balancer program tail-calls it.
/// The value of the one-entry array map `name` (globals, clock, layout).
fn read_single<T: aya::Pod>(ebpf: &Ebpf, name: &'static str) -> Result<T, XdpError> {
    let map = ebpf
        .map(name)
        .ok_or(XdpError::Missing { what: "map", name })?;
    let array: Array<_, T> =
        Array::try_from(map).map_err(|source| XdpError::Map { map: name, source })?;
    array
        .get(&0, 0)
        .map_err(|source| XdpError::Map { map: name, source })
}

/// Sets the value of the one-entry array map `name`.
fn write_single<T: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    value: T,
) -> Result<(), XdpError> {
    let map = ebpf
        .map_mut(name)
        .ok_or(XdpError::Missing { what: "map", name })?;
    let mut array: Array<_, T> =
        Array::try_from(map).map_err(|source| XdpError::Map { map: name, source })?;
    array
        .set(0, value, 0)
        .map_err(|source| XdpError::Map { map: name, source })
}

fn load_too_big(ebpf: &mut Ebpf) -> Result<(), XdpError> {
    let load_err = |e: ProgramError| XdpError::Load {
        source: Box::new(e),
    };
    let missing = XdpError::Missing {
        what: "XDP program",
        name: TOO_BIG_PROGRAM,
    };
    let prog: &mut Xdp = ebpf
        .program_mut(TOO_BIG_PROGRAM)
        .ok_or(XdpError::Missing {
            what: "XDP program",
            name: TOO_BIG_PROGRAM,
        })?
        .try_into()
        .map_err(|_| missing)?;
    prog.load().map_err(load_err)?;
    let fd = prog
        .fd()
        .map_err(load_err)?
        .try_clone()
        .map_err(|e| XdpError::Load {
            source: Box::new(e),
        })?;
    let map = ebpf.map_mut(TAIL_CALLS_MAP).ok_or(XdpError::Missing {
        what: "map",
        name: TAIL_CALLS_MAP,
    })?;
    let mut calls: ProgramArray<&mut aya::maps::MapData> =
        ProgramArray::try_from(map).map_err(|source| XdpError::Map {
            map: TAIL_CALLS_MAP,
            source,
        })?;
    calls
        .set(TAIL_TOO_BIG, &fd, 0)
        .map_err(|source| XdpError::Map {
            map: TAIL_CALLS_MAP,
            source,
        })
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    let missing = XdpError::Missing {
        what: "XDP program",
        name: PROGRAM_NAME,
    };
    match ebpf.program_mut(PROGRAM_NAME) {
        Some(p) => p.try_into().map_err(|_| missing),
        None => Err(missing),
    }
}

/// Whether an attach failed because the driver has no native XDP support.
fn is_unsupported(e: &ProgramError) -> bool {
    matches!(e, ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EOPNOTSUPP))
}

/// A per-CPU counter array of the program, indexed by an enum shared with it.
pub trait Counter: Copy + 'static {
    const MAP: &'static str;
    const ALL: &'static [Self];
    fn index(self) -> u32;
}

impl Counter for ProtoCounter {
    const MAP: &'static str = PROTO_COUNTERS_MAP;
    const ALL: &'static [Self] = &ProtoCounter::ALL;
    fn index(self) -> u32 {
        self as u32
    }
}

impl Counter for Reason {
    const MAP: &'static str = REASONS_MAP;
    const ALL: &'static [Self] = &Reason::ALL;
    fn index(self) -> u32 {
        self as u32
    }
}

/// A snapshot of one counter array, summed over CPUs.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot<C> {
    values: Vec<u64>,
    kind: PhantomData<C>,
}

pub type ProtoCounters = Snapshot<ProtoCounter>;
pub type Reasons = Snapshot<Reason>;

impl<C: Counter> Snapshot<C> {
    #[must_use]
    pub fn get(&self, c: C) -> u64 {
        self.values.get(c.index() as usize).copied().unwrap_or(0)
    }

    /// Counts since `earlier` (counters only grow; a reset reads as zero).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            values: self
                .values
                .iter()
                .zip(&earlier.values)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
            kind: PhantomData,
        }
    }

    /// Every counter with its value, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (C, u64)> + '_ {
        C::ALL.iter().map(|&c| (c, self.get(c)))
    }
}

impl<C: Counter + fmt::Debug> fmt::Debug for Snapshot<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().filter(|(_, v)| *v > 0))
            .finish()
    }
}
