//! `cargo xtask bench NAME`: `dataplane` (see [`dataplane`]), `checkers`, `failover`, `control`.

#[path = "bench/checkers.rs"]
mod checkers;
#[path = "bench/control.rs"]
mod control;
#[path = "bench/dataplane.rs"]
mod dataplane;
#[path = "bench/failover.rs"]
mod failover;

fn main() {
    let what = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "dataplane".into());
    assert!(
        ["dataplane", "checkers", "failover", "control"].contains(&what.as_str()),
        "unknown benchmark {what:?}; available: dataplane, checkers, failover, control"
    );
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the benchmarks need root (BPF, network namespaces)"
    );
    if what == "checkers" {
        checkers::run();
        return;
    }
    if what == "failover" {
        failover::run();
        return;
    }
    if what == "control" {
        control::run();
        return;
    }

    dataplane::run_all(&std::env::args().nth(2).unwrap_or_default());
}

/// Writes a benchmark's JSON to `target/bench/NAME.json` and returns the path.
fn save(name: &str, json: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, json).expect("write the JSON results");
    path
}
