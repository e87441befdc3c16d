//! keepalived's notify FIFO (`global_defs` `notify_fifo` / `vrrp_notify_fifo`, with
//! `notify_fifo_script`): one line per event, `INSTANCE "VI_1" MASTER 150` or
//! `GROUP "G" BACKUP 0` (`keepalived/vrrp/vrrp_notify.c` `notify_fifo`), written without
//! blocking to a FIFO that is created if missing and removed at the end only if we created it
//! (`keepalived/core/notify.c` `fifo_open`, `fifo_close`).

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::notify::{Outcome, Script, ScriptUser};

/// How long the FIFO script may run: it is meant to read for as long as the daemon runs, and
/// is stopped with it.
const SCRIPT_LIFETIME: Duration = Duration::from_hours(365 * 24);

#[derive(Debug, thiserror::Error)]
pub enum FifoError {
    #[error("creating the notify FIFO {path}")]
    Create { path: PathBuf, source: io::Error },
    #[error("opening the notify FIFO {path}")]
    Open { path: PathBuf, source: io::Error },
    /// keepalived refuses a path it did not create unless it is a FIFO owned by us: an
    /// attacker could have planted a file or a link there.
    #[error("{path} is not a FIFO owned by this user")]
    NotOurFifo { path: PathBuf },
}

/// An open notify FIFO, and the script reading it.
#[derive(Debug)]
pub struct Fifo {
    path: PathBuf,
    file: File,
    created: bool,
    script: Option<JoinHandle<()>>,
}

impl Fifo {
    /// Creates the FIFO if it is missing (mode 0644), starts `script` with its path as the
    /// last argument, and opens it for writing without blocking (read-write, so that writes
    /// succeed while no reader is there yet). Needs a tokio runtime when `script` is given.
    ///
    /// # Errors
    /// It cannot be created or opened, or the path holds something other than our FIFO.
    pub fn open(
        path: &Path,
        script: Option<Script>,
        owner: Option<(u32, u32)>,
    ) -> Result<Self, FifoError> {
        let created = match nix_mkfifo(path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(source) => {
                return Err(FifoError::Create {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(path);
        let file = match opened {
            Ok(file) => file,
            Err(source) => {
                if created {
                    let _ = std::fs::remove_file(path);
                }
                return Err(FifoError::Open {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        // keepalived's `notify_fifo PATH USER [GROUP]`: the FIFO belongs to that user.
        if let (true, Some((uid, gid))) = (created, owner)
            && let Err(source) = std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
        {
            let _ = std::fs::remove_file(path);
            return Err(FifoError::Open {
                path: path.to_owned(),
                source,
            });
        }
        let owner_uid = owner.map_or_else(|| ScriptUser::current().uid, |(uid, _)| uid);
        let ours = file
            .metadata()
            .is_ok_and(|m| m.file_type().is_fifo() && m.uid() == owner_uid);
        if !ours {
            return Err(FifoError::NotOurFifo {
                path: path.to_owned(),
            });
        }
        let script = script.map(|script| {
            let arg = path.to_string_lossy().into_owned();
            tokio::spawn(async move {
                let outcome = script.run(&[&arg], SCRIPT_LIFETIME).await;
                if !matches!(outcome, Outcome::Exited(_)) || !outcome.success() {
                    tracing::warn!(
                        command = script.command,
                        ?outcome,
                        "notify FIFO script ended"
                    );
                }
            })
        });
        Ok(Self {
            path: path.to_owned(),
            file,
            created,
            script,
        })
    }

    /// Writes one line; a full FIFO (nobody reading) loses it, as keepalived's does.
    pub fn write(&self, line: &str) {
        if let Err(e) = (&self.file).write_all(line.as_bytes()) {
            tracing::warn!(path = %self.path.display(), error = %e, "notify FIFO write failed");
        }
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        // Unlinked first, so that a reader looping on reopening it cannot find it again.
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
        // The script's process is killed with its task (kill_on_drop).
        if let Some(task) = self.script.take() {
            task.abort();
        }
    }
}

fn nix_mkfifo(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// keepalived's line: `TYPE "NAME" EVENT PRIORITY` and a newline.
#[must_use]
pub fn line(kind: &str, name: &str, event: &str, priority: u8) -> String {
    format!("{kind} \"{name}\" {event} {priority}\n")
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn lines_are_keepalived_s() {
        assert_eq!(
            line("INSTANCE", "VI_1", "MASTER", 150),
            "INSTANCE \"VI_1\" MASTER 150\n"
        );
        assert_eq!(line("GROUP", "G", "STOP", 0), "GROUP \"G\" STOP 0\n");
    }

    #[test]
    fn a_created_fifo_carries_lines_and_is_removed_at_the_end() {
        let dir = crate::config::test_dir::TestDir::new();
        let path = dir.path().join("notify");
        let fifo = Fifo::open(&path, None, None).unwrap();
        assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo());
        // Written before any reader: the read-write open keeps it in the pipe.
        fifo.write("INSTANCE \"VI_1\" BACKUP 100\n");
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut buf = [0u8; 128];
        let n = reader.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"INSTANCE \"VI_1\" BACKUP 100\n");
        drop(fifo);
        assert!(!path.exists(), "we created it, so we remove it");
    }

    #[test]
    fn an_existing_fifo_stays_and_a_planted_file_is_refused() {
        let dir = crate::config::test_dir::TestDir::new();
        let path = dir.path().join("theirs");
        nix_mkfifo(&path).unwrap();
        drop(Fifo::open(&path, None, None).unwrap());
        assert!(path.exists(), "not ours to remove");

        let planted = dir.path().join("planted");
        std::fs::write(&planted, "").unwrap();
        assert!(matches!(
            Fifo::open(&planted, None, None),
            Err(FifoError::NotOurFifo { .. })
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            Fifo::open(&link, None, None),
            Err(FifoError::Open { .. })
        ));
    }

    /// Needs root (to give the FIFO away), as CI runs.
    #[test]
    fn a_fifo_with_an_owner_belongs_to_it_and_is_reopened_as_ours() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = crate::config::test_dir::TestDir::new();
        let path = dir.path().join("owned");
        let fifo = Fifo::open(&path, None, Some((65534, 65534))).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        // A second daemon (the file exists now) finds it its own...
        let again = Fifo::open(&path, None, Some((65534, 65534)));
        assert!(again.is_ok(), "{again:?}");
        // ... and one that expects it root's does not.
        assert!(matches!(
            Fifo::open(&path, None, None),
            Err(FifoError::NotOurFifo { .. })
        ));
        drop(again);
        drop(fifo);
    }
}
