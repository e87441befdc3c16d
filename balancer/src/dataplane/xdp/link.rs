//! Pinned XDP links: an attachment that outlives the daemon, as IPVS's table outlives
//! keepalived. With a pin directory every attachment is a `bpf_link` pinned there as
//! `link-MODE-INTERFACE`; a restarted daemon finds it and swaps its freshly loaded program in
//! atomically (`bpf_link_update`), so forwarding never stops across the restart. A clean stop
//! removes the pins and detaches; `--keep-state` leaves them.

use std::path::{Path, PathBuf};

use aya::programs::{
    Xdp,
    links::{FdLink, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};

use super::{AttachMode, AttachedMode, XdpError};

const PREFIX: &str = "link-";

fn mode_name(mode: AttachedMode) -> &'static str {
    match mode {
        AttachedMode::Driver => "driver",
        AttachedMode::Generic => "generic",
    }
}

/// Where the link of `interface` attached in `mode` is pinned.
pub(super) fn pin_path(dir: &Path, interface: &str, mode: AttachedMode) -> PathBuf {
    dir.join(format!("{PREFIX}{}-{interface}", mode_name(mode)))
}

fn link_error(interface: &str, what: &'static str, e: impl std::fmt::Display) -> XdpError {
    XdpError::Link {
        interface: interface.to_owned(),
        what,
        message: e.to_string(),
    }
}

/// Takes over a link a previous daemon left pinned for `interface`, replacing its program
/// with `prog`. A pin of another mode than the one asked for is detached instead (the
/// caller then attaches afresh). `None`: nothing to adopt.
pub(super) fn adopt(
    prog: &mut Xdp,
    dir: &Path,
    interface: &str,
    wanted: AttachMode,
) -> Result<Option<(XdpLinkId, AttachedMode, PathBuf)>, XdpError> {
    for mode in [AttachedMode::Driver, AttachedMode::Generic] {
        let path = pin_path(dir, interface, mode);
        if !path.exists() {
            continue;
        }
        let pinned =
            PinnedLink::from_pin(&path).map_err(|e| link_error(interface, "opening the pin", e))?;
        let fits = match wanted {
            AttachMode::Auto => true,
            AttachMode::Driver => mode == AttachedMode::Driver,
            AttachMode::Generic => mode == AttachedMode::Generic,
        };
        if !fits {
            // Unpinned and closed: the kernel detaches it.
            drop(
                pinned
                    .unpin()
                    .map_err(|e| link_error(interface, "removing the pin", e))?,
            );
            continue;
        }
        let link = XdpLink::try_from(FdLink::from(pinned))
            .map_err(|e| link_error(interface, "not an XDP link", e))?;
        let id = prog
            .attach_to_link(link)
            .map_err(|e| link_error(interface, "replacing the program", e))?;
        return Ok(Some((id, mode, path)));
    }
    Ok(None)
}

/// Pins a fresh attachment, so that it can outlive the daemon.
pub(super) fn pin(
    prog: &mut Xdp,
    id: XdpLinkId,
    path: &Path,
    interface: &str,
) -> Result<(XdpLinkId, Option<PathBuf>), XdpError> {
    let link = prog
        .take_link(id)
        .map_err(|e| link_error(interface, "taking the link", e))?;
    let fd = FdLink::try_from(link)
        .map_err(|e| link_error(interface, "the kernel attached without a bpf_link", e))?;
    let pinned = fd
        .pin(path)
        .map_err(|e| link_error(interface, "pinning", e))?;
    let link = XdpLink::try_from(FdLink::from(pinned))
        .map_err(|e| link_error(interface, "not an XDP link", e))?;
    let id = prog
        .attach_to_link(link)
        .map_err(|e| link_error(interface, "taking the link back", e))?;
    Ok((id, Some(path.to_path_buf())))
}

/// Detaches every link pinned in `dir` except those in `keep` (interfaces no longer
/// configured, or a clean stop). Returns the interfaces detached.
pub(super) fn release_pins(dir: &Path, keep: &[PathBuf]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut released = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) || keep.contains(&path) {
            continue;
        }
        // Removing the pin of a link nobody holds detaches it.
        if std::fs::remove_file(&path).is_ok() {
            released.push(name.splitn(3, '-').nth(2).unwrap_or(&name).to_owned());
        }
    }
    released
}
