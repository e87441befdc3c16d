//! `cargo xtask fuzz [SECONDS]`: the configuration readers under libFuzzer (cargo fuzz), each
//! target for SECONDS. Not part of `test`: it needs nightly and minutes, which CI's budget does
//! not have. A crash leaves its input in `fuzz/artifacts/TARGET/`; add it to the regression
//! tests in `balancer/src/config/fuzz_tests.rs` with the fix.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};

use crate::{run, setup};

/// cargo-fuzz, pinned so every machine fuzzes with the same driver.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The targets in `fuzz/fuzz_targets/`.
pub(crate) const TARGETS: [&str; 2] = ["lb_toml", "keepalived_conf"];
/// Debian's keepalived examples (installed by `setup`): extra seeds for keepalived.conf, read
/// where they are rather than copied into the repository.
const KEEPALIVED_SAMPLES: &str = "/usr/share/doc/keepalived/samples";

pub(crate) fn fuzz(root: &Path, seconds: u64, only: Option<&str>) -> Result<()> {
    cargo_fuzz()?;
    let fuzz_dir = root.join("fuzz");
    // The fuzzer writes what it finds here; the checked-in seeds stay as they are.
    let work = fuzz_dir.join("target");
    let tmp = work.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    for target in TARGETS.iter().filter(|t| only.is_none_or(|o| o == **t)) {
        let corpus = work.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        println!(
            "fuzz: {target} for {seconds} s (new inputs in {})",
            corpus.display()
        );
        let mut cmd = Command::new("rustup");
        cmd.current_dir(root)
            // The keepalived target writes its include fixtures under the temporary directory.
            .env("TMPDIR", &tmp)
            .args(["run", setup::NIGHTLY, "cargo", "fuzz", "run", target])
            .arg(&corpus)
            .arg(fuzz_dir.join("corpus").join(target));
        if *target == "keepalived_conf" && Path::new(KEEPALIVED_SAMPLES).is_dir() {
            cmd.arg(KEEPALIVED_SAMPLES);
        }
        cmd.args([
            "--",
            &format!("-max_total_time={seconds}"),
            // A configuration that takes a second to read is a hang.
            "-timeout=5",
            "-max_len=16384",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ]);
        run(&mut cmd).with_context(|| {
            format!("fuzz target {target} failed: its input is in fuzz/artifacts/{target}/")
        })?;
    }
    Ok(())
}

/// Installs cargo-fuzz when the pinned version is not there (a no-op otherwise).
fn cargo_fuzz() -> Result<()> {
    let current = Command::new("cargo-fuzz")
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if current.as_deref() == Some(&format!("cargo-fuzz {CARGO_FUZZ_VERSION}")) {
        return Ok(());
    }
    println!(
        "fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} (about a minute), found {}",
        current.as_deref().unwrap_or("none")
    );
    run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
        "--force",
    ]))
    .context("installing cargo-fuzz")
}
