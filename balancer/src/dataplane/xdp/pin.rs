//! Pinning: the maps live in a bpf filesystem directory per instance, so a restarted daemon
//! finds the services, reals and connections of the one before and forwarding never forgets
//! an established flow.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use balancer_common::{
    counters::{PROTO_COUNTERS_MAP, REASONS_MAP},
    maps::{
        FLOWS_MAP, GLOBALS_MAP, LAYOUT_MAP, LAYOUT_VERSION, MAX_REALS, NAT_REVERSE_MAP,
        PERSIST_MAP, REAL_ACTIVE_MAP, REAL_STATS_MAP, REALS_MAP, RR_CURSOR_MAP, Real,
        SCHED_SLOTS_MAP, SERVICE_STATS_MAP, SERVICES_MAP, Service, ServiceKey, VIPS_MAP,
    },
};

use super::{XdpError, XdpProgram};

/// `statfs` magic of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Every map of the program: all of them are state a restart must keep.
pub const PINNED_MAPS: [&str; 15] = [
    LAYOUT_MAP,
    PROTO_COUNTERS_MAP,
    REASONS_MAP,
    SERVICES_MAP,
    VIPS_MAP,
    REALS_MAP,
    SCHED_SLOTS_MAP,
    FLOWS_MAP,
    PERSIST_MAP,
    NAT_REVERSE_MAP,
    GLOBALS_MAP,
    SERVICE_STATS_MAP,
    REAL_STATS_MAP,
    RR_CURSOR_MAP,
    REAL_ACTIVE_MAP,
];

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

pub(super) fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid out-buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &raw mut st) };
    rc == 0 && st.f_type == BPF_FS_MAGIC
}

/// Makes sure `root` is a bpf filesystem, mounting one there when it is not (bpffs is not
/// mounted by default on every system, and `ip netns exec` gives a process a /sys without it;
/// Cilium and Katran's tools do the same).
///
/// # Errors
/// The directory cannot be made or the mount fails (not root).
pub fn ensure_bpffs(root: &Path) -> Result<(), PinError> {
    if is_bpffs(root) {
        return Ok(());
    }
    std::fs::create_dir_all(root).map_err(|source| PinError::Io {
        path: root.to_owned(),
        what: "cannot create the bpffs mount point",
        source,
    })?;
    let target = CString::new(root.as_os_str().as_bytes()).map_err(|e| PinError::Io {
        path: root.to_owned(),
        what: "path contains NUL",
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let fstype = c"bpf";
    // SAFETY: NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(PinError::Io {
            path: root.to_owned(),
            what: "cannot mount a bpf filesystem (needs root)",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The layout version of the maps pinned in `dir`; `None` for pins made before versions were
/// recorded.
fn pinned_layout(dir: &Path) -> Option<u32> {
    let data = MapData::from_pin(dir.join(LAYOUT_MAP)).ok()?;
    let array: Array<MapData, u32> = Array::try_from(aya::maps::Map::Array(data)).ok()?;
    array.get(&0, 0).ok()
}

/// Refuses to adopt maps pinned in `dir` by a build that gave them another meaning.
pub(super) fn check_layout(dir: &Path) -> Result<(), XdpError> {
    match pinned_layout(dir) {
        Some(LAYOUT_VERSION) => Ok(()),
        found => Err(XdpError::Layout {
            dir: dir.to_owned(),
            found,
        }),
    }
}

/// Records this build's layout version in the pinned (or fresh) maps.
pub(super) fn stamp_layout(ebpf: &mut aya::Ebpf) -> Result<(), XdpError> {
    super::write_single(ebpf, LAYOUT_MAP, LAYOUT_VERSION)
}

impl XdpProgram {
    /// Reads what a previous daemon left in the pinned maps and hands it to the allocator.
    pub(super) fn adopt(&mut self) -> Result<(), XdpError> {
        let map_err = |map: &'static str| move |source| XdpError::Map { map, source };
        let services: Vec<(ServiceKey, Service)> = {
            let m = self.ebpf.map(SERVICES_MAP).ok_or(XdpError::Missing {
                what: "map",
                name: SERVICES_MAP,
            })?;
            let h: BpfHashMap<&MapData, ServiceKey, Service> =
                BpfHashMap::try_from(m).map_err(map_err(SERVICES_MAP))?;
            h.iter().filter_map(Result::ok).collect()
        };
        let reals: Vec<(u32, Real)> = {
            let m = self.ebpf.map(REALS_MAP).ok_or(XdpError::Missing {
                what: "map",
                name: REALS_MAP,
            })?;
            let a: Array<&MapData, Real> = Array::try_from(m).map_err(map_err(REALS_MAP))?;
            (0..MAX_REALS)
                .filter_map(|i| a.get(&i, 0).ok().map(|r| (i, r)))
                .filter(|(_, r)| r.family != 0)
                .collect()
        };
        self.table.adopt(services, reals);
        Ok(())
    }

    /// Removes the pins, so the maps go away with this program: a clean stop that leaves
    /// nothing behind. Without it, the maps outlive the process for the next one to adopt.
    ///
    /// # Errors
    /// A pin cannot be removed.
    pub fn unpin(&mut self) -> Result<(), PinError> {
        let Some(dir) = self.pin_dir.take() else {
            return Ok(());
        };
        // Links left by a run that attached elsewhere: unpinned, they detach.
        super::link::release_pins(&dir, &[]);
        for name in PINNED_MAPS {
            let path = dir.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(PinError::Io {
                        path,
                        what: "cannot remove the pin",
                        source: e,
                    });
                }
                _ => {}
            }
        }
        std::fs::remove_dir(&dir).map_err(|source| PinError::Io {
            path: dir.clone(),
            what: "cannot remove the pin directory",
            source,
        })
    }
}
