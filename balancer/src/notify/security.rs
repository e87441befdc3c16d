//! Who a script runs as, and whether it is safe to run: keepalived's rules from
//! `keepalived/core/notify.c` (`get_default_script_user`, `check_script_secure`,
//! `check_security`, `is_executable`, `find_path`).
//!
//! A script that runs as root (or group root, or is set-uid / set-gid root) must not be
//! replaceable by anyone but root: every component of its path, and of the path it resolves
//! to, must be owned by root and, unless it is a directory with the sticky bit, writable
//! neither by a non-root group nor by others. With `enable_script_security` such a script is
//! refused; without, it runs with a warning.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// The user keepalived runs scripts as by default, when it exists.
pub const DEFAULT_SCRIPT_USER: &str = "keepalived_script";

/// The identity a script runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, set before the script runs (root only can).
    pub groups: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("no user named {user:?}")]
    NoUser { user: String },
    #[error("no group named {group:?}")]
    NoGroup { group: String },
    #[error("looking up user or group {name:?}")]
    Lookup { name: String, source: nix::Error },
    #[error(
        "enable_script_security is on but user {DEFAULT_SCRIPT_USER} does not exist: give a script user (root to run scripts as root)"
    )]
    NoDefaultUser,
    #[error("script {script:?} not found in PATH")]
    NotInPath { script: PathBuf },
    #[error("script {script:?} cannot be accessed")]
    NotFound { script: PathBuf, source: io::Error },
    #[error("script {script:?} is not executable by uid {uid} gid {gid}")]
    NotExecutable { script: PathBuf, uid: u32, gid: u32 },
    #[error("script {script:?}: {component:?} in its path is not a directory, file or link")]
    WrongType { script: PathBuf, component: PathBuf },
    #[error(
        "script {script:?} runs as root but {component:?} can be changed by a user other than root (enable_script_security)"
    )]
    Insecure { script: PathBuf, component: PathBuf },
}

impl ScriptUser {
    /// `user` with `group`, or the user's own group when none is given (`script_user`,
    /// `user` in `vrrp_script`, the user after a `notify_*` script).
    ///
    /// # Errors
    /// The user or the group does not exist.
    pub fn named(user: &str, group: Option<&str>) -> Result<Self, SecurityError> {
        let lookup = |source| SecurityError::Lookup {
            name: user.to_owned(),
            source,
        };
        let found =
            User::from_name(user)
                .map_err(lookup)?
                .ok_or_else(|| SecurityError::NoUser {
                    user: user.to_owned(),
                })?;
        let gid = match group {
            Some(name) => {
                Group::from_name(name)
                    .map_err(|source| SecurityError::Lookup {
                        name: name.to_owned(),
                        source,
                    })?
                    .ok_or_else(|| SecurityError::NoGroup {
                        group: name.to_owned(),
                    })?
                    .gid
            }
            None => found.gid,
        };
        let groups = CString::new(user)
            .ok()
            .and_then(|c| nix::unistd::getgrouplist(&c, gid).ok())
            .map_or_else(
                || vec![gid.as_raw()],
                |g| g.iter().map(|g| g.as_raw()).collect(),
            );
        Ok(Self {
            uid: found.uid.as_raw(),
            gid: gid.as_raw(),
            groups,
        })
    }

    /// This process's own identity.
    #[must_use]
    pub fn current() -> Self {
        let gid = Gid::effective().as_raw();
        Self {
            uid: Uid::effective().as_raw(),
            gid,
            groups: vec![gid],
        }
    }

    /// The user of a `script_user` setting, `USER` or `USER:GROUP`; without one, keepalived's
    /// default ([`ScriptUser::default_for`]).
    ///
    /// # Errors
    /// The user or group does not exist, or no default applies.
    pub fn from_spec(spec: Option<&str>, script_security: bool) -> Result<Self, SecurityError> {
        match spec {
            Some(spec) => {
                let (user, group) = match spec.split_once(':') {
                    Some((u, g)) => (u, Some(g)),
                    None => (spec, None),
                };
                Self::named(user, group)
            }
            None => Self::default_for(script_security),
        }
    }

    /// keepalived's default: `keepalived_script` if that user exists, else the identity we run
    /// as; with `enable_script_security` a missing `keepalived_script` is an error instead
    /// (`get_default_script_user`).
    ///
    /// # Errors
    /// Security is on and the user does not exist, or the lookup fails.
    pub fn default_for(script_security: bool) -> Result<Self, SecurityError> {
        match Self::named(DEFAULT_SCRIPT_USER, None) {
            Ok(user) => Ok(user),
            Err(SecurityError::NoUser { .. }) if script_security => {
                Err(SecurityError::NoDefaultUser)
            }
            Err(SecurityError::NoUser { .. }) => Ok(Self::current()),
            Err(e) => Err(e),
        }
    }
}

/// What the checks need to know about one path component (`lstat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

impl Meta {
    fn of(m: &std::fs::Metadata) -> Self {
        let t = m.file_type();
        let kind = if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else if t.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        };
        Self {
            kind,
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode(),
        }
    }
}

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const S_IXUSR: u32 = 0o100;
const S_IWGRP: u32 = 0o020;
const S_IXGRP: u32 = 0o010;
const S_IWOTH: u32 = 0o002;
const S_IXOTH: u32 = 0o001;

/// keepalived's `is_executable`: root needs any execute bit; others the bit of the class
/// (owner, group, other) they fall in.
#[must_use]
pub fn is_executable(meta: &Meta, uid: u32, gid: u32) -> bool {
    (uid == 0 && meta.mode & (S_IXUSR | S_IXGRP | S_IXOTH) != 0)
        || (uid == meta.uid && meta.mode & S_IXUSR != 0)
        || (uid != meta.uid
            && ((gid == meta.gid && meta.mode & S_IXGRP != 0)
                || (gid != meta.gid && meta.mode & S_IXOTH != 0)))
}

/// The outcome of [`check_script`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// What to execute: the command's first word, found in PATH when it had no `/`.
    pub program: PathBuf,
    /// Whether a root-run script's path could be changed by another user (only possible when
    /// script security is off: with it on, that is an error).
    pub insecure: bool,
}

/// The file system as the checks see it, so that they can be tested without root.
pub trait FileSystem {
    /// `lstat(2)`.
    ///
    /// # Errors
    /// The path cannot be examined.
    fn lstat(&self, path: &Path) -> io::Result<Meta>;
    /// `stat(2)` (follows links).
    ///
    /// # Errors
    /// The path cannot be examined.
    fn stat(&self, path: &Path) -> io::Result<Meta>;
    /// `realpath(3)`.
    ///
    /// # Errors
    /// The path cannot be resolved.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
}

/// The real file system.
pub struct Real;

impl FileSystem for Real {
    fn lstat(&self, path: &Path) -> io::Result<Meta> {
        std::fs::symlink_metadata(path).map(|m| Meta::of(&m))
    }
    fn stat(&self, path: &Path) -> io::Result<Meta> {
        std::fs::metadata(path).map(|m| Meta::of(&m))
    }
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }
}

/// keepalived's `check_script_secure` for a script whose first word is `program`, run as
/// `user`, with `PATH` = `search_path` for bare names.
///
/// # Errors
/// The script cannot be found or executed by `user`, or, for a script that runs as root,
/// its path is unsafe and `script_security` is on.
pub fn check_script(
    fs: &impl FileSystem,
    program: &OsStr,
    user: &ScriptUser,
    script_security: bool,
    search_path: Option<&OsStr>,
) -> Result<Checked, SecurityError> {
    let mut program = PathBuf::from(program);
    if !program.as_os_str().as_bytes().contains(&b'/') {
        program = find_in_path(fs, &program, user, search_path)?;
    }
    let real = fs
        .canonicalize(&program)
        .map_err(|source| SecurityError::NotFound {
            script: program.clone(),
            source,
        })?;
    let meta = fs.stat(&real).map_err(|source| SecurityError::NotFound {
        script: program.clone(),
        source,
    })?;
    if meta.kind != Kind::File || !is_executable(&meta, user.uid, user.gid) {
        return Err(SecurityError::NotExecutable {
            script: program,
            uid: user.uid,
            gid: user.gid,
        });
    }
    let runs_as_root = user.uid == 0
        || user.gid == 0
        || (meta.uid == 0 && meta.mode & S_IXUSR != 0 && meta.mode & S_ISUID != 0)
        || (meta.gid == 0 && meta.mode & S_IXGRP != 0 && meta.mode & S_ISGID != 0);
    let mut insecure = false;
    if runs_as_root {
        // Both the name as given and what it resolves to: a safe link in an unsafe directory
        // or an unsafe target behind a safe link can each be swapped.
        let mut paths = vec![absolute(&program)];
        if real != paths[0] {
            paths.push(real);
        }
        for path in &paths {
            if let Some(component) = unsafe_component(fs, path, &program)? {
                if script_security {
                    return Err(SecurityError::Insecure {
                        script: program,
                        component,
                    });
                }
                insecure = true;
            }
        }
    }
    Ok(Checked { program, insecure })
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |d| d.join(path))
    }
}

/// keepalived's `check_security`: the first component of `path` (from `/` down) that another
/// user than root could change.
fn unsafe_component(
    fs: &impl FileSystem,
    path: &Path,
    script: &Path,
) -> Result<Option<PathBuf>, SecurityError> {
    let mut prefix = PathBuf::new();
    let mut components = path.components().peekable();
    while let Some(c) = components.next() {
        prefix.push(c);
        let last = components.peek().is_none();
        let meta = fs
            .lstat(&prefix)
            .map_err(|source| SecurityError::NotFound {
                script: script.to_path_buf(),
                source,
            })?;
        let right_type = if last {
            matches!(meta.kind, Kind::File | Kind::Symlink)
        } else {
            meta.kind == Kind::Dir
        };
        if !right_type {
            return Err(SecurityError::WrongType {
                script: script.to_path_buf(),
                component: prefix,
            });
        }
        // A sticky directory (/tmp) lets others add entries but not replace ours.
        let guarded =
            (meta.kind == Kind::Dir && meta.mode & S_ISVTX == 0) || meta.kind == Kind::File;
        let writable = (meta.gid != 0 && meta.mode & S_IWGRP != 0) || meta.mode & S_IWOTH != 0;
        if meta.uid != 0 || (guarded && writable) {
            return Ok(Some(prefix));
        }
    }
    Ok(None)
}

/// keepalived's `find_path`: the first PATH entry holding a regular file `user` can execute.
fn find_in_path(
    fs: &impl FileSystem,
    name: &Path,
    user: &ScriptUser,
    search_path: Option<&OsStr>,
) -> Result<PathBuf, SecurityError> {
    // glibc's default when PATH is unset, as execvpe (and so keepalived) uses it.
    let default = OsString::from("/bin:/usr/bin");
    let search = search_path.unwrap_or(&default);
    for dir in std::env::split_paths(search) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        if let Ok(meta) = fs.stat(&candidate)
            && meta.kind == Kind::File
            && is_executable(&meta, user.uid, user.gid)
        {
            return Ok(candidate);
        }
    }
    Err(SecurityError::NotInPath {
        script: name.to_path_buf(),
    })
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
