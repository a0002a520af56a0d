//! Builds the eBPF capture program (`monitor-ebpf`, bin target, for `bpfel-unknown-none`) and
//! lets `src/capture/ebpf.rs` embed it, as the aya-template does: `aya_build::build_ebpf` runs
//! `rustup run nightly cargo build -Z build-std=core --target bpfel-unknown-none` into OUT_DIR.
//!
//! The program needs a toolchain beyond stable Rust: nightly with `rust-src` and `bpf-linker`
//! (`cargo xtask setup` installs both). Without it mxcert still builds, with
//! `cfg(mxcert_ebpf)` unset, and the eBPF backend reports itself unavailable with the reason; the
//! libpcap backend keeps working. CI (`CI=true`) and `MXCERT_REQUIRE_EBPF=1` turn a missing
//! toolchain or a failed program build into a build failure, so a release cannot ship without
//! the program by accident.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mxcert_ebpf)");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=MXCERT_REQUIRE_EBPF");
    println!("cargo:rerun-if-changed=build.rs");
    let required = env::var("CI").is_ok_and(|v| v == "true")
        || env::var("MXCERT_REQUIRE_EBPF").is_ok_and(|v| v == "1");

    if let Err(why) = toolchain() {
        give_up(required, &format!("{why}; run `cargo xtask setup`"));
        return;
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf_dir = manifest_dir
        .parent()
        .expect("monitor/ sits in the workspace")
        .join("monitor-ebpf");
    let ebpf_dir = ebpf_dir.to_str().expect("workspace path is UTF-8");
    let package = aya_build::Package {
        name: "mxcert-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    match aya_build::build_ebpf([package], aya_build::Toolchain::Nightly) {
        Ok(()) => println!("cargo:rustc-cfg=mxcert_ebpf"),
        Err(e) => give_up(
            required,
            &format!(
                "building the eBPF program failed ({e:#}); the compiler's messages are in the \
                 warnings above"
            ),
        ),
    }
}

fn give_up(required: bool, why: &str) {
    if required {
        panic!(
            "the eBPF capture program is required (CI=true or MXCERT_REQUIRE_EBPF=1) but cannot \
             be built: {why}"
        );
    }
    println!(
        "cargo:warning=mxcert is built without the eBPF capture program ({why}); \
         `--backend pcap` still works"
    );
}

/// Checks for nightly + rust-src + bpf-linker, and puts bpf-linker's directory on PATH for the
/// nested cargo when it sits in cargo's bin directory but PATH lacks it (a shell that never
/// sourced ~/.cargo/env, or a CI step).
fn toolchain() -> Result<(), String> {
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustup ({e})"))?;
    if !sysroot.status.success() {
        return Err("no nightly toolchain (`rustup toolchain install nightly`)".into());
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let core_src = sysroot.join("lib/rustlib/src/rust/library/core");
    // A path that does not exist makes cargo rerun this script on every build, so installing
    // the toolchain later is noticed; once it exists, only a change does.
    println!("cargo:rerun-if-changed={}", core_src.display());
    if !core_src.is_dir() {
        return Err(
            "nightly lacks rust-src (`rustup component add rust-src --toolchain nightly`)".into(),
        );
    }
    let linker = find_bpf_linker()?;
    println!("cargo:rerun-if-changed={}", linker.display());
    let dir = linker.parent().expect("a file has a parent");
    let path = env::var_os("PATH").unwrap_or_default();
    if !env::split_paths(&path).any(|p| p == dir) {
        let mut paths: Vec<PathBuf> = vec![dir.to_path_buf()];
        paths.extend(env::split_paths(&path));
        let joined = env::join_paths(paths).map_err(|e| format!("cannot extend PATH: {e}"))?;
        // Single-threaded here: the nested cargo started by aya-build inherits it.
        env::set_var("PATH", joined);
    }
    Ok(())
}

fn find_bpf_linker() -> Result<PathBuf, String> {
    let path = env::var_os("PATH").unwrap_or_default();
    let cargo_bin = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin"));
    env::split_paths(&path)
        .chain(cargo_bin)
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "bpf-linker not found on PATH or in ~/.cargo/bin (`cargo xtask setup` builds it)".into()
        })
}
