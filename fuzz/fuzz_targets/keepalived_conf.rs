//! keepalived.conf: the parser (with includes and globs), the import onto lb.toml's schema and
//! validation; what it accepts round-trips through lb.toml.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A directory with the include fixtures, made once per process.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("balancer-fuzz-{}", std::process::id()));
        balancer::config::fuzz::write_include_fixtures(&dir).expect("writing include fixtures");
        dir
    })
}

fuzz_target!(|text: &str| balancer::config::fuzz::keepalived_conf(dir(), text));
