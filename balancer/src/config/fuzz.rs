//! The properties the fuzz targets (`fuzz/`) check, here so that the regression tests run the
//! very same code on the inputs that once broke them.
//!
//! Whatever the text, reading it never panics and never hangs; and what is accepted converts
//! to `lb.toml` text that reads back to the same model (the round trip `balancer convert`
//! promises).

use std::path::Path;

use crate::config::{Config, ConfigError, Loaded, from_keepalived, keepalived};

/// Files an included pattern can reach in the keepalived target's directory, so that the
/// fuzzer exercises includes, globs and cycles without depending on the host's files.
pub const INCLUDE_FIXTURES: [(&str, &str); 4] = [
    (
        "conf.d/script.conf",
        "vrrp_script chk {\n  script \"/bin/true\"\n  interval 2\n}\n",
    ),
    (
        "conf.d/vs.conf",
        "virtual_server 198.18.0.1 80 {\n  protocol TCP\n  real_server 198.18.1.1 80 {\n    TCP_CHECK {\n    }\n  }\n}\n",
    ),
    ("loop.conf", "include loop.conf\n"),
    ("empty.conf", ""),
];

/// Writes [`INCLUDE_FIXTURES`] under `dir`.
///
/// # Errors
/// A directory or file cannot be written.
pub fn write_include_fixtures(dir: &Path) -> std::io::Result<()> {
    for (name, text) in INCLUDE_FIXTURES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// The `lb.toml` loader on `text`.
///
/// # Panics
/// When accepted text does not round-trip: the property the fuzzer looks for.
pub fn lb_toml(text: &str) {
    let loaded = Config::load_text(Path::new("lb.toml"), text);
    round_trip(loaded);
}

/// keepalived.conf's parser, its import onto the schema and validation, on `text` read as
/// `dir/keepalived.conf` (its includes are relative to `dir`).
///
/// # Panics
/// When accepted text does not round-trip: the property the fuzzer looks for.
pub fn keepalived_conf(dir: &Path, text: &str) {
    let path = dir.join("keepalived.conf");
    let loaded = keepalived::parse(&path, text)
        .map_err(ConfigError::from)
        .and_then(|tree| from_keepalived(&path, &tree));
    round_trip(loaded);
}

pub(crate) fn round_trip(loaded: Result<Loaded, ConfigError>) {
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            // Formatting every diagnostic is part of what an operator's run does.
            let _ = e.to_string();
            return;
        }
    };
    for w in &loaded.validated.warnings {
        let _ = w.to_string();
    }
    let mut config = loaded.config;
    // keepalived.conf cannot name the XDP interfaces; `balancer convert` leaves the operator to
    // list them (a warning says so), and lb.toml requires them. The model does not hold them.
    if config.xdp.interfaces.is_empty() {
        config.xdp.interfaces.push("eth0".into());
    }
    let text = config
        .to_toml()
        .expect("an accepted configuration serialises");
    let again = Config::load_text(Path::new("lb.toml"), &text)
        .unwrap_or_else(|e| panic!("converted lb.toml does not load: {e}\n{text}"));
    assert_eq!(
        again.validated.model, loaded.validated.model,
        "converted lb.toml models differently:\n{text}"
    );
}
