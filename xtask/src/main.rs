//! `cargo xtask`: the only entry points a user needs.
//!
//! - `setup`: install what this machine lacks (idempotent; a few seconds when nothing is).
//! - `run -- ARGS`: setup, build in release, run `balancer run ARGS`.
//! - `test`: setup, `cargo fmt --check`, clippy on the host crates and on the XDP program, and
//!   the whole test suite (the privileged tests need root, as CI is).
//! - `bench [NAME]`: setup, then a benchmark in release (figures printed and saved as JSON).
//! - `fuzz [SECONDS]`: setup and cargo-fuzz, then each configuration fuzz target for SECONDS.

mod fuzz;
mod setup;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "balancer's developer and operator entry points")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the Debian packages, Rust components and bpf-linker the build and tests need.
    Setup,
    /// Setup, build in release and run `balancer run ARGS` (e.g. `-- --config lb.toml`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, then run a benchmark (needs root): `dataplane` (ns per packet through the XDP
    /// program beside a MAC-swap floor), `checkers` (10,000 TCP checks at `delay_loop` 1:
    /// checks per second, drift, CPU), `failover` (VRRP takeover time, ours beside
    /// keepalived) or `control` (how long `apply` and `set_weight` take to reach the maps).
    /// Prints a table and writes target/bench/NAME.json. `dataplane FILTER` runs only the
    /// cases whose names contain FILTER.
    Bench {
        #[arg(default_value = "dataplane")]
        name: String,
        filter: Option<String>,
    },
    /// Setup (and cargo-fuzz), then fuzz the lb.toml and keepalived.conf readers for SECONDS
    /// each (nightly, libFuzzer). Not part of `test`. Crashes land in fuzz/artifacts/TARGET/.
    Fuzz {
        #[arg(default_value_t = 60)]
        seconds: u64,
        /// Only this target (`lb_toml` or `keepalived_conf`).
        #[arg(long, value_parser = fuzz::TARGETS)]
        target: Option<String>,
    },
    /// Setup, then formatting, lints and every test (privileged ones need root).
    Test {
        /// Passed to `cargo test` after `--` (a test name filter, `--nocapture`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Cmd::Setup => setup::setup(),
        Cmd::Run { args } => {
            setup::setup()?;
            let mut cmd = cargo(&root);
            cmd.args(["run", "--release", "--package", "balancer", "--", "run"])
                .args(args);
            run(&mut cmd)
        }
        Cmd::Bench { name, filter } => {
            setup::setup()?;
            if name == "failover" {
                // The benchmark starts the daemon binary itself.
                run(cargo(&root).args(["build", "--release", "--package", "balancer"]))?;
            }
            run(cargo(&root)
                .args([
                    "run",
                    "--release",
                    "--package",
                    "balancer-tests",
                    "--bin",
                    "bench",
                    "--",
                    &name,
                ])
                .args(filter))
        }
        Cmd::Fuzz { seconds, target } => {
            setup::setup()?;
            fuzz::fuzz(&root, seconds, target.as_deref())
        }
        Cmd::Test { args } => {
            setup::setup()?;
            test(&root, &args)
        }
    }
}

fn test(root: &Path, args: &[String]) -> Result<()> {
    run(cargo(root).args(["fmt", "--all", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    run(cargo(root).args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The XDP program only builds for the BPF target, with nightly and build-std.
    run(Command::new("rustup").current_dir(root).args([
        "run",
        setup::NIGHTLY,
        "cargo",
        "clippy",
        "--package",
        "balancer-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))?;
    if !setup::is_root() {
        println!(
            "xtask: not root: the privileged tests (XDP, network namespaces) will say SKIPPED"
        );
    }
    // The VRRP network tests run the `balancer` binary as a process beside keepalived; cargo
    // builds a package's binaries only for that package's own integration tests.
    run(cargo(root).args(["build", "--package", "balancer"]))?;
    let mut cmd = cargo(root);
    cmd.env("RUST_BACKTRACE", "1")
        .args(["test", "--no-fail-fast", "--"])
        .args(args);
    run_tests(&mut cmd)
}

/// Runs `cargo test`, echoing its output, and closes with one line that sums every test
/// binary's result (cargo ends with the last binary's, often an empty doc-test run).
fn run_tests(cmd: &mut Command) -> Result<()> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(['.', ';']) {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(what)) = (words.next(), words.next()) {
                    let n: u64 = n.parse().unwrap_or(0);
                    match what {
                        "passed" => passed += n,
                        "failed" => failed += n,
                        "ignored" => ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    println!("\nall test binaries: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    Ok(())
}

/// A `cargo` command in the workspace root, on the toolchain that runs xtask.
fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

/// Runs `cmd`, failing with the command line when it does not succeed.
fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}
