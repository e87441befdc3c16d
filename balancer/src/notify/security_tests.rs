use std::collections::HashMap;

use super::*;

/// A file system of `lstat` entries; links resolve through `links`.
#[derive(Default)]
struct Fake {
    entries: HashMap<PathBuf, Meta>,
    links: HashMap<PathBuf, PathBuf>,
}

fn meta(kind: Kind, uid: u32, gid: u32, mode: u32) -> Meta {
    Meta {
        kind,
        uid,
        gid,
        mode,
    }
}

impl Fake {
    /// `/`, `/etc`, `/etc/ka` root-owned 0755 and a root-owned 0755 script in it.
    fn safe() -> Self {
        let mut fs = Self::default();
        fs.add("/", meta(Kind::Dir, 0, 0, 0o755));
        fs.add("/etc", meta(Kind::Dir, 0, 0, 0o755));
        fs.add("/etc/ka", meta(Kind::Dir, 0, 0, 0o755));
        fs.add("/etc/ka/up.sh", meta(Kind::File, 0, 0, 0o755));
        fs
    }

    fn add(&mut self, path: &str, m: Meta) {
        self.entries.insert(PathBuf::from(path), m);
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.links
            .get(path)
            .cloned()
            .unwrap_or_else(|| path.to_path_buf())
    }
}

impl FileSystem for Fake {
    fn lstat(&self, path: &Path) -> io::Result<Meta> {
        self.entries
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn stat(&self, path: &Path) -> io::Result<Meta> {
        self.lstat(&self.resolve(path))
    }
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        let real = self.resolve(path);
        self.lstat(&real).map(|_| real)
    }
}

fn root() -> ScriptUser {
    ScriptUser {
        uid: 0,
        gid: 0,
        groups: vec![0],
    }
}

fn nobody() -> ScriptUser {
    ScriptUser {
        uid: 65534,
        gid: 65534,
        groups: vec![65534],
    }
}

fn check(
    fs: &Fake,
    script: &str,
    user: &ScriptUser,
    security: bool,
) -> Result<Checked, SecurityError> {
    check_script(
        fs,
        OsStr::new(script),
        user,
        security,
        Some(OsStr::new("/usr/sbin:/etc/ka")),
    )
}

#[test]
fn a_root_owned_path_is_safe() {
    let c = check(&Fake::safe(), "/etc/ka/up.sh", &root(), true).unwrap();
    assert_eq!(c.program, PathBuf::from("/etc/ka/up.sh"));
    assert!(!c.insecure);
}

#[test]
fn every_component_is_checked() {
    // A writable file, a directory owned by a user, a group-writable directory of a non-root
    // group: each makes the script replaceable.
    let cases: [(&str, Meta); 4] = [
        ("/etc/ka/up.sh", meta(Kind::File, 0, 0, 0o757)),
        ("/etc/ka", meta(Kind::Dir, 1000, 0, 0o755)),
        ("/etc", meta(Kind::Dir, 0, 50, 0o775)),
        ("/", meta(Kind::Dir, 0, 0, 0o777)),
    ];
    for (path, m) in cases {
        let mut fs = Fake::safe();
        fs.add(path, m);
        match check(&fs, "/etc/ka/up.sh", &root(), true) {
            Err(SecurityError::Insecure { component, .. }) => {
                assert_eq!(component, PathBuf::from(path));
            }
            other => panic!("{path}: {other:?}"),
        }
        // Without enable_script_security it runs, flagged.
        assert!(
            check(&fs, "/etc/ka/up.sh", &root(), false)
                .unwrap()
                .insecure
        );
    }
}

#[test]
fn group_root_write_and_sticky_directories_are_allowed() {
    let mut fs = Fake::safe();
    fs.add("/etc", meta(Kind::Dir, 0, 0, 0o775));
    fs.add("/etc/ka", meta(Kind::Dir, 0, 0, 0o1777));
    assert!(!check(&fs, "/etc/ka/up.sh", &root(), true).unwrap().insecure);
}

#[test]
fn a_link_and_its_target_are_both_checked() {
    let mut fs = Fake::safe();
    fs.add("/tmp", meta(Kind::Dir, 0, 0, 0o1777));
    fs.add("/tmp/x", meta(Kind::Dir, 1000, 1000, 0o755));
    fs.add("/tmp/x/up.sh", meta(Kind::File, 1000, 1000, 0o755));
    fs.add("/etc/ka/link.sh", meta(Kind::Symlink, 0, 0, 0o777));
    fs.links.insert(
        PathBuf::from("/etc/ka/link.sh"),
        PathBuf::from("/tmp/x/up.sh"),
    );
    match check(&fs, "/etc/ka/link.sh", &root(), true) {
        Err(SecurityError::Insecure { component, .. }) => {
            assert_eq!(component, PathBuf::from("/tmp/x"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn scripts_not_run_as_root_are_not_path_checked() {
    let mut fs = Fake::safe();
    fs.add("/etc/ka", meta(Kind::Dir, 1000, 0, 0o777));
    assert!(
        !check(&fs, "/etc/ka/up.sh", &nobody(), true)
            .unwrap()
            .insecure
    );
    // Unless the file is set-uid root.
    fs.add("/etc/ka/up.sh", meta(Kind::File, 0, 0, 0o4755));
    assert!(matches!(
        check(&fs, "/etc/ka/up.sh", &nobody(), true),
        Err(SecurityError::Insecure { .. })
    ));
}

#[test]
fn bare_names_are_found_in_path_and_must_be_executable() {
    let c = check(&Fake::safe(), "up.sh", &root(), true).unwrap();
    assert_eq!(c.program, PathBuf::from("/etc/ka/up.sh"));
    assert!(matches!(
        check(&Fake::safe(), "missing.sh", &root(), true),
        Err(SecurityError::NotInPath { .. })
    ));
    let mut fs = Fake::safe();
    fs.add("/etc/ka/up.sh", meta(Kind::File, 0, 0, 0o744));
    assert!(matches!(
        check(&fs, "/etc/ka/up.sh", &nobody(), false),
        Err(SecurityError::NotExecutable { .. })
    ));
    assert!(check(&fs, "/etc/ka/up.sh", &root(), false).is_ok());
    assert!(matches!(
        check(&fs, "/etc/ka/nope.sh", &root(), false),
        Err(SecurityError::NotFound { .. })
    ));
}

#[test]
fn execute_bits_follow_the_class() {
    let m = meta(Kind::File, 10, 20, 0o710);
    assert!(is_executable(&m, 10, 99));
    assert!(is_executable(&m, 11, 20));
    assert!(!is_executable(&m, 11, 21));
    assert!(is_executable(&m, 0, 0));
    assert!(!is_executable(&meta(Kind::File, 10, 20, 0o644), 0, 0));
}

#[test]
fn a_symlinked_directory_in_the_path_is_refused_for_root() {
    // keepalived's check_security lstat()s each component: on a merged-/usr system /bin is a
    // link, so a root script must be named by its /usr/bin path.
    let mut fs = Fake::safe();
    fs.add("/bin", meta(Kind::Symlink, 0, 0, 0o777));
    fs.add("/usr", meta(Kind::Dir, 0, 0, 0o755));
    fs.add("/usr/bin", meta(Kind::Dir, 0, 0, 0o755));
    fs.add("/usr/bin/sh", meta(Kind::File, 0, 0, 0o755));
    fs.links
        .insert(PathBuf::from("/bin/sh"), PathBuf::from("/usr/bin/sh"));
    assert!(matches!(
        check(&fs, "/bin/sh", &root(), false),
        Err(SecurityError::WrongType { component, .. }) if component == Path::new("/bin")
    ));
    assert!(check(&fs, "/usr/bin/sh", &root(), true).is_ok());
}
