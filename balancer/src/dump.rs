//! The SIGUSR1 / SIGUSR2 dumps: JSON files written so that no link is followed and nobody
//! else can read them. The document goes to a new file (`O_EXCL`, mode 0600) beside the
//! target, which is then renamed over it: a symlink planted at the target is replaced, never
//! written through.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

/// Writes `value` as pretty JSON to `path`, mode 0600.
///
/// # Errors
/// The temporary file cannot be created or written, or the rename fails.
pub fn write_private(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = serde_json::to_writer_pretty(&mut file, value)
        .map_err(std::io::Error::other)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_dump_replaces_a_planted_link_and_is_private() {
        let dir = std::env::temp_dir().join(format!(
            "balancer-dump-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let target = dir.join("default.stats.json");
        std::os::unix::fs::symlink(&victim, &target).unwrap();

        write_private(&target, &serde_json::json!({"flows": 3})).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let back: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
        assert_eq!(back["flows"], 3);
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
