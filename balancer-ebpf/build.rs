//! Rebuild the program when bpf-linker changes (a new LLVM can change the object), and have
//! LLVM expand `memset` inline.
//!
//! bpf-linker passes `--bpf-expand-memcpy-in-order` by default, which leaves the BPF backend no
//! inline expansion of `memset`: every zeroed struct (a `Headers`, a `Real`) became a call to a
//! byte-at-a-time loop, 48 iterations on every packet before parsing began. Without it, LLVM
//! lowers `memset` and `memcpy` of known size to plain stores.

fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
}
