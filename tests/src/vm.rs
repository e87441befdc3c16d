//! A throwaway virtual machine for what this host's kernel lacks (IPVS): Debian's cloud
//! kernel (unpacked by `cargo xtask setup` under `target/vm/linux`), booted by qemu with an
//! initramfs built here that holds busybox, the kernel modules asked for (with their
//! dependencies), and the programs to run with every shared library they load.
//!
//! The guest runs one command as its init's child and powers off; its console (serial) is
//! the returned output, and the command's exit status is read from a marker line. qemu runs
//! under TCG, not KVM: KVM inside this machine's own virtual machine failed to start a guest
//! (an MSR qemu needs is refused), and TCG boots the kernel in about two seconds.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const START_MARKER: &str = "BALANCER-VM-START";
const EXIT_MARKER: &str = "BALANCER-VM-EXIT=";

/// Where `cargo xtask setup` unpacks the guest kernel (`boot/vmlinuz-*`, `lib/modules/*`).
#[must_use]
pub fn kernel_root() -> PathBuf {
    std::env::var_os("BALANCER_VM_LINUX").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm/linux"),
        PathBuf::from,
    )
}

/// What a guest run printed, and how its command ended.
#[derive(Debug)]
pub struct Outcome {
    /// The console: the kernel's messages and the command's output, interleaved.
    pub console: String,
    /// The command's exit status; `None` when the guest never reported one (it crashed or
    /// timed out).
    pub status: Option<i32>,
}

impl Outcome {
    /// The lines the guest's init and command printed (after the firmware's and the
    /// kernel's boot messages), without the serial console's carriage returns.
    #[must_use]
    pub fn lines(&self) -> Vec<&str> {
        self.console
            .lines()
            .map(str::trim_end)
            .skip_while(|l| *l != START_MARKER)
            .skip(1)
            .collect()
    }
}

/// A guest to boot: the programs and modules its initramfs holds.
pub struct Guest {
    kernel: PathBuf,
    modules: PathBuf,
    files: BTreeMap<PathBuf, PathBuf>,
    module_names: Vec<String>,
    memory_mb: u32,
}

impl Guest {
    /// A guest with busybox and Debian's cloud kernel.
    ///
    /// # Panics
    /// The kernel is not unpacked (run `cargo xtask setup`).
    #[must_use]
    pub fn new() -> Self {
        let root = kernel_root();
        let boot = root.join("boot");
        let kernel = std::fs::read_dir(&boot)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e}: the guest kernel is unpacked by `cargo xtask setup`",
                    boot.display()
                )
            })
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .unwrap_or_else(|| panic!("no vmlinuz-* in {}", boot.display()));
        let version = kernel
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .trim_start_matches("vmlinuz-")
                    .to_owned()
            })
            .unwrap_or_default();
        let mut guest = Self {
            kernel,
            modules: root.join("lib/modules").join(version),
            files: BTreeMap::new(),
            module_names: Vec::new(),
            memory_mb: 1024,
        };
        guest.program(Path::new("/bin/busybox"), Path::new("/busybox/busybox"));
        guest
    }

    /// Adds a host program at `at`, stripped of debug information (a debug build is
    /// hundreds of megabytes), with every shared library `ldd` says it loads.
    pub fn program(&mut self, host: &Path, at: &Path) -> &mut Self {
        self.files.insert(at.to_owned(), host.to_owned());
        let out = Command::new("ldd")
            .arg(host)
            .output()
            .unwrap_or_else(|e| panic!("ldd {}: {e}", host.display()));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
            let path = line
                .split("=>")
                .last()
                .and_then(|s| s.split_whitespace().next())
                .filter(|p| p.starts_with('/'));
            if let Some(p) = path {
                self.files.insert(PathBuf::from(p), PathBuf::from(p));
            }
        }
        self
    }

    /// Adds the kernel modules `names` and what they depend on; init loads them in order.
    pub fn modules(&mut self, names: &[&str]) -> &mut Self {
        let index = module_index(&self.modules);
        for name in names {
            self.add_module(&index, &name.replace('-', "_"));
        }
        self
    }

    fn add_module(&mut self, index: &BTreeMap<String, PathBuf>, name: &str) {
        if self.module_names.iter().any(|m| m == name) {
            return;
        }
        let path = index
            .get(name)
            .unwrap_or_else(|| panic!("no module {name} under {}", self.modules.display()));
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for dep in depends(&bytes) {
            self.add_module(index, &dep);
        }
        self.files
            .insert(PathBuf::from(format!("/modules/{name}.ko")), path.clone());
        self.module_names.push(name.to_owned());
    }

    /// Boots the guest, runs `command` (a program and its arguments, started by init's
    /// shell with `PATH` holding the guest's programs, then busybox), and powers off.
    /// Waits at most `timeout`; the guest is killed after it.
    ///
    /// # Panics
    /// The initramfs cannot be written, or qemu cannot be started.
    #[must_use]
    pub fn run(&self, command: &[&str], timeout: Duration) -> Outcome {
        let dir = crate::lab::TempDir::new("vm");
        let initrd = dir.file("initrd.cpio");
        self.write_initramfs(&initrd, command);
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m"])
            .arg(self.memory_mb.to_string())
            .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args([
                "-append",
                "console=ttyS0 quiet panic=-1 oops=panic rdinit=/init",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-x86_64 (installed by `cargo xtask setup`)");
        let mut stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let end = Instant::now() + timeout;
        let mut timed_out = false;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > end {
                timed_out = true;
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.wait();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let console = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
        let status = console
            .lines()
            .find_map(|l| l.trim().strip_prefix(EXIT_MARKER))
            .and_then(|s| s.trim().parse().ok());
        let mut console = console;
        if timed_out {
            let _ = write!(console, "\n[guest killed after {timeout:?}]\n");
        }
        if !err.is_empty() {
            let _ = write!(console, "\n[qemu: {err}]\n");
        }
        Outcome { console, status }
    }

    fn write_initramfs(&self, path: &Path, command: &[&str]) {
        let quoted: Vec<String> = command
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let mut inserts = String::new();
        for m in &self.module_names {
            let _ = writeln!(
                inserts,
                "insmod /modules/{m}.ko || echo 'insmod {m} failed'"
            );
        }
        let init = format!(
            "#!/busybox/busybox sh\n\
             /busybox/busybox --install -s /busybox\n\
             export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox\n\
             mkdir -p /proc /sys /dev /run /tmp /var/run\n\
             mount -t proc proc /proc\n\
             mount -t sysfs sys /sys\n\
             mount -t devtmpfs dev /dev\n\
             mount -t tmpfs tmp /tmp\n\
             mount -t tmpfs run /run\n\
             mkdir -p /run/netns\n\
             {inserts}\
             ip link set lo up\n\
             cd /tmp\n\
             echo; echo {START_MARKER}\n\
             {cmd}\n\
             echo {EXIT_MARKER}$?\n\
             sync\n\
             poweroff -f\n",
            cmd = quoted.join(" ")
        );
        let mut cpio = Cpio::new(path);
        cpio.file(Path::new("/init"), 0o755, init.as_bytes());
        // Root alone: user lookups (a script user that does not exist) answer "no such user".
        cpio.file(
            Path::new("/etc/passwd"),
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\n",
        );
        cpio.file(Path::new("/etc/group"), 0o644, b"root:x:0:\n");
        let scratch = crate::lab::TempDir::new("vm-strip");
        for (at, host) in &self.files {
            let bytes = if is_elf_executable(host)
                && !host.starts_with("/lib")
                && !host.starts_with("/usr/lib")
            {
                strip(host, scratch.path())
            } else {
                std::fs::read(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()))
            };
            cpio.file(at, 0o755, &bytes);
        }
        // Debian's /lib, /lib64 and /bin are symlinks into /usr; ldd names either form.
        for (link, target) in [
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
        ] {
            if !self.files.keys().any(|p| p.starts_with(link)) {
                cpio.symlink(Path::new(link), target);
            }
        }
        cpio.finish();
    }
}

impl Default for Guest {
    fn default() -> Self {
        Self::new()
    }
}

fn is_elf_executable(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// A copy of `host` without debug sections.
fn strip(host: &Path, scratch: &Path) -> Vec<u8> {
    let out = scratch.join("stripped");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(host)
        .arg(&out)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success(), "objcopy --strip-debug {}", host.display());
    let bytes = std::fs::read(&out).expect("stripped copy");
    let _ = std::fs::remove_file(&out);
    bytes
}

/// Every module under `dir` by name (`-` read as `_`, as modprobe does).
fn module_index(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ko"))
            {
                out.insert(name.replace('-', "_"), p.clone());
            }
        }
    }
    out
}

/// The `depends=` entry of a module's `.modinfo`.
fn depends(module: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let Some(at) = module.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &module[at + key.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// A `newc` cpio archive, the initramfs format the kernel unpacks.
struct Cpio {
    out: std::io::BufWriter<std::fs::File>,
    dirs: BTreeSet<PathBuf>,
    ino: u32,
}

impl Cpio {
    fn new(path: &Path) -> Self {
        let file =
            std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self {
            out: std::io::BufWriter::new(file),
            dirs: BTreeSet::new(),
            ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            namesize,
            0
        );
        let w = &mut self.out;
        let mut write = |b: &[u8]| w.write_all(b).expect("write initramfs");
        write(header.as_bytes());
        write(name.as_bytes());
        write(&[0]);
        write(&vec![0; (4 - (110 + namesize) % 4) % 4]);
        write(data);
        write(&vec![0; (4 - data.len() % 4) % 4]);
    }

    fn parents(&mut self, path: &Path) {
        let mut missing = Vec::new();
        let mut p = path.parent();
        while let Some(d) = p {
            if d == Path::new("/") || d.as_os_str().is_empty() || self.dirs.contains(d) {
                break;
            }
            missing.push(d.to_owned());
            p = d.parent();
        }
        for d in missing.into_iter().rev() {
            let name = d.to_string_lossy().trim_start_matches('/').to_owned();
            self.entry(&name, 0o040_755, &[]);
            self.dirs.insert(d);
        }
    }

    fn file(&mut self, path: &Path, perm: u32, data: &[u8]) {
        self.parents(path);
        let name = path.to_string_lossy().trim_start_matches('/').to_owned();
        self.entry(&name, 0o100_000 | perm, data);
    }

    fn symlink(&mut self, path: &Path, target: &str) {
        self.parents(path);
        let name = path.to_string_lossy().trim_start_matches('/').to_owned();
        self.entry(&name, 0o120_777, target.as_bytes());
    }

    fn finish(mut self) {
        self.entry("TRAILER!!!", 0, &[]);
        self.out.flush().expect("write initramfs");
    }
}
