//! The fuzz targets' properties on their seeds and on every input that once broke them
//! (found by `cargo xtask fuzz`): reading never panics or hangs, and what is accepted
//! round-trips through lb.toml.

use std::path::Path;

use crate::config::fuzz::{keepalived_conf, lb_toml, write_include_fixtures};
use crate::config::keepalived;
use crate::config::test_dir::TestDir;

fn seeds(target: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            (path.display().to_string(), text)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 5, "{}: {out:?}", dir.display());
    out
}

#[test]
fn lb_toml_seeds_hold_the_property() {
    let mut accepted = 0;
    for (name, text) in seeds("lb_toml") {
        eprintln!("{name}");
        lb_toml(&text);
        accepted +=
            usize::from(crate::config::Config::load_text(Path::new("lb.toml"), &text).is_ok());
    }
    // The seeds hold valid configurations as well as broken ones.
    assert!(accepted >= 2, "{accepted}");
}

#[test]
fn keepalived_seeds_hold_the_property() {
    let dir = TestDir::new();
    write_include_fixtures(dir.path()).unwrap();
    for (name, text) in seeds("keepalived_conf") {
        eprintln!("{name}");
        keepalived_conf(dir.path(), &text);
    }
}

#[test]
fn recursive_globs_are_single_stars_as_in_glob3() {
    let dir = TestDir::new();
    dir.write(
        "a/b/deep.conf",
        "vrrp_script deep {\n script /bin/true\n}\n",
    );
    dir.write("a/top.conf", "vrrp_script top {\n script /bin/true\n}\n");
    let main = dir.write("keepalived.conf", "include a/**.conf\n");
    let tree = keepalived::read(&main).unwrap();
    let names: Vec<&str> = tree.nodes.iter().map(|n| n.args[0].as_str()).collect();
    assert_eq!(names, ["top"], "`**` must not descend into a/b");
}

#[test]
fn an_included_fifo_is_an_error_not_a_hang() {
    let dir = TestDir::new();
    let fifo = dir.path().join("pipe.conf");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let main = dir.write("keepalived.conf", "\ninclude p*.conf\n");
    let err = keepalived::read(&main).unwrap_err().to_string();
    assert!(
        err.contains("keepalived.conf:2:1: expected an include of regular files"),
        "{err}"
    );
}
