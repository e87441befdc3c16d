//! `cargo xtask setup`: install what a fresh machine lacks, and nothing when it lacks nothing.
//!
//! Each step first checks (cheaply) whether its result is already there, so a second run only
//! reads package databases and tool versions.

use std::{
    ffi::OsString,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::run;

/// The toolchain that builds the XDP program (`-Z build-std`); rustup's preinstalled nightly.
pub(crate) const NIGHTLY: &str = "nightly";
/// bpf-linker, pinned so every machine links the XDP program with the same linker.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The LLVM bpf-linker is built against; its `bin` holds `llvm-config`.
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// Debian packages, each with why it is needed.
const DEB_PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "bpf-linker is built against LLVM 22"),
    (
        "libpolly-22-dev",
        "LLVM 22's static libraries reference Polly",
    ),
    ("libzstd-dev", "linking bpf-linker against LLVM"),
    ("zlib1g-dev", "linking bpf-linker against LLVM"),
    (
        "iproute2",
        "`ip netns`, veth pairs and addresses in network tests",
    ),
    ("ethtool", "GRO on veth, which XDP_TX towards a veth needs"),
    ("keepalived", "a real VRRP peer in interoperability tests"),
    ("tcpdump", "capturing test traffic"),
    ("openssl", "making encrypted keys for the SSL password test"),
    ("bpftool", "inspecting loaded programs and maps"),
    (
        "netsniff-ng",
        "trafgen, a packet generator for network benchmarks",
    ),
    (
        "qemu-system-x86",
        "a guest whose kernel has IPVS, for the IPVS data plane's tests",
    ),
    ("busybox-static", "the IPVS test guest's shell and init"),
    ("ipvsadm", "reading what the IPVS data plane programmed"),
    (
        "binutils",
        "objcopy, stripping programs for the IPVS test guest",
    ),
];

/// The Debian kernel the IPVS tests boot (this host's has no IPVS): the cloud flavour,
/// small, with `ip_vs` and its schedulers as modules.
const GUEST_KERNEL: &str = "linux-image-cloud-amd64";

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub(crate) fn setup() -> Result<()> {
    debian_packages()?;
    rust_components()?;
    bpf_linker()?;
    guest_kernel(&crate::workspace_root().join("target/vm"))?;
    Ok(())
}

/// Unpacks Debian's cloud kernel and its modules under `dir/linux` (never installed on this
/// host: its /boot and /lib/modules stay as they are).
fn guest_kernel(dir: &std::path::Path) -> Result<()> {
    let linux = dir.join("linux");
    let present = std::fs::read_dir(linux.join("boot")).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-")))
    });
    if present {
        return Ok(());
    }
    let depends = output(Command::new("apt-cache").args(["depends", GUEST_KERNEL]))?;
    let package = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .with_context(|| format!("setup: apt-cache names no kernel behind {GUEST_KERNEL}"))?
        .to_owned();
    println!(
        "setup: unpacking {package} under {} (the IPVS tests' guest kernel)",
        linux.display()
    );
    let download = dir.join("download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download)?;
    let fetch = || {
        run(Command::new("apt-get")
            .args(["download", "-q", &package])
            .current_dir(&download))
    };
    if fetch().is_err() {
        // The package lists may be older than the mirror.
        run(Command::new("apt-get").args(["update", "-q"]))
            .context("setup: apt-get update failed")?;
        fetch().with_context(|| format!("setup: apt-get download {package} failed"))?;
    }
    let deb = std::fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("setup: apt-get download left no .deb")?;
    let unpacking = dir.join("linux.partial");
    let _ = std::fs::remove_dir_all(&unpacking);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacking))?;
    let _ = std::fs::remove_dir_all(&linux);
    std::fs::rename(&unpacking, &linux)?;
    std::fs::remove_dir_all(&download)?;
    Ok(())
}

fn debian_packages() -> Result<()> {
    let names: Vec<&str> = DEB_PACKAGES.iter().map(|(n, _)| *n).collect();
    // dpkg-query exits non-zero when some package is unknown: read its output, not its status.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\\n"])
        .args(&names)
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query: setup supports Debian (and derivatives) only")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, status)| status.starts_with("ii"))
        .map(|(name, _)| name)
        .collect();
    let missing: Vec<&(&str, &str)> = DEB_PACKAGES
        .iter()
        .filter(|(n, _)| !installed.contains(n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (name, why) in &missing {
        println!("setup: installing Debian package {name} ({why})");
    }
    if !is_root() {
        bail!(
            "setup: {} Debian package(s) missing and installing them needs root: run `sudo cargo xtask setup`, or `apt-get install {}`",
            missing.len(),
            missing
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    run(Command::new("apt-get")
        .arg("update")
        .arg("-q")
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("setup: apt-get update failed")?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(missing.iter().map(|(n, _)| *n))
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("setup: apt-get install failed")
}

fn rust_components() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("setup: rustup is needed (the XDP program builds with its nightly toolchain)")?;
    if !toolchains.lines().any(|l| l.starts_with(NIGHTLY)) {
        println!("setup: installing the {NIGHTLY} toolchain (builds the XDP program)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let wanted: [(Option<&str>, &str, &str); 4] = [
        (
            Some(NIGHTLY),
            "rust-src",
            "-Z build-std=core for the BPF target",
        ),
        (Some(NIGHTLY), "clippy", "linting the XDP program"),
        (None, "clippy", "linting the workspace"),
        (None, "rustfmt", "cargo fmt --check"),
    ];
    for (toolchain, component, why) in wanted {
        let mut list = Command::new("rustup");
        list.args(["component", "list", "--installed"]);
        if let Some(t) = toolchain {
            list.args(["--toolchain", t]);
        }
        let installed = output(&mut list)?;
        if installed.lines().any(|l| l.starts_with(component)) {
            continue;
        }
        println!("setup: adding rustup component {component} ({why})");
        let mut add = Command::new("rustup");
        add.args(["component", "add", component]);
        if let Some(t) = toolchain {
            add.args(["--toolchain", t]);
        }
        run(&mut add)?;
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let current = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if current.as_deref() == Some(&format!("bpf-linker {BPF_LINKER_VERSION}")) {
        return Ok(());
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (links the XDP program; about a minute), found {}",
        current.as_deref().unwrap_or("none")
    );
    let mut path = OsString::from(LLVM_BIN);
    if let Some(p) = std::env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
            "--force",
        ])
        .env("PATH", path))
    .context("setup: building bpf-linker failed; it needs llvm-22-dev and libpolly-22-dev")
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
