//! Builds the XDP program (`balancer-ebpf`) for the BPF target with nightly and bpf-linker;
//! the object lands in `OUT_DIR/balancer` and is embedded by `dataplane::xdp`.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|workspace| workspace.join("balancer-ebpf").to_str().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("workspace path is not UTF-8"))?;
    let package = aya_build::Package {
        name: "balancer-ebpf",
        root_dir: &root,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
