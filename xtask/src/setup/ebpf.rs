//! The eBPF capture toolchain (issue #5): the TC program in `monitor-ebpf` is built by
//! `monitor/build.rs` with nightly Rust (`-Z build-std=core` needs `rust-src`) and linked by
//! bpf-linker, which must use the same LLVM as that nightly. Debian ships no LLVM of nightly's
//! version, but the nightly toolchain carries its own `libLLVM-<ver>-rust-<rustc>.so`; bpf-linker
//! is built against that file (../shared/notes/ebpf-toolchain.md). `bpftool` is for the tests
//! (`bpftool link show`) and for operators inspecting the attachment.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{apt_install, rustup_components};
use crate::run;

/// bpf-linker release known to build against nightly's LLVM 22 (newer need rustc 1.98).
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn install() -> Result<()> {
    apt_install(&["bpftool"])?;
    if Command::new("rustup").arg("--version").output().is_err() {
        eprintln!("xtask: rustup not found; install nightly with rust-src and bpf-linker by hand");
        return Ok(());
    }
    let has_nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nightly {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    rustup_components("nightly", &["rust-src"])?;
    if bpf_linker_installed() {
        return Ok(());
    }
    let lib_dir = nightly_lib_dir()?;
    let (lib, major) = llvm_dylib(&lib_dir)?;
    let lib_dir_s = lib_dir
        .to_str()
        .context("nightly sysroot path is not UTF-8")?;
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against {lib} (about a minute)");
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{major},no-llvm-linking"))
        .env(
            "RUSTFLAGS",
            format!("-L {lib_dir_s} -l dylib={lib} -C link-arg=-Wl,-rpath,{lib_dir_s}"),
        ))?;
    Ok(())
}

/// bpf-linker on PATH or in cargo's bin directory (where `cargo install` puts it and where
/// monitor/build.rs also looks).
fn bpf_linker_installed() -> bool {
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("bpf-linker").is_file()))
        .unwrap_or(false);
    in_path || cargo_bin().is_some_and(|d| d.join("bpf-linker").is_file())
}

fn cargo_bin() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin"))
}

fn nightly_lib_dir() -> Result<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .context("rustup run nightly rustc --print sysroot")?;
    if !out.status.success() {
        bail!(
            "no nightly toolchain: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("lib"))
}

/// The `-l dylib=` name of nightly's LLVM (`libLLVM-22-rust-1.97.0-nightly.so` →
/// `LLVM-22-rust-1.97.0-nightly`) and its major version, read from the sysroot.
fn llvm_dylib(lib_dir: &Path) -> Result<(String, String)> {
    for entry in std::fs::read_dir(lib_dir).with_context(|| format!("{}", lib_dir.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(lib) = parse_llvm_dylib(&name) {
            return Ok(lib);
        }
    }
    bail!(
        "no libLLVM-<ver>-rust-*.so in {}: this nightly does not ship its LLVM as a shared \
         library; install bpf-linker by hand",
        lib_dir.display()
    )
}

fn parse_llvm_dylib(file: &str) -> Option<(String, String)> {
    let lib = file.strip_prefix("lib")?.strip_suffix(".so")?;
    let rest = lib.strip_prefix("LLVM-")?;
    let (major, tail) = rest.split_once('-')?;
    (major.chars().all(|c| c.is_ascii_digit()) && tail.starts_with("rust-"))
        .then(|| (lib.to_string(), major.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_llvm_dylib;

    #[test]
    fn llvm_dylib_name_and_version_come_from_the_file_name() {
        assert_eq!(
            parse_llvm_dylib("libLLVM-22-rust-1.97.0-nightly.so"),
            Some(("LLVM-22-rust-1.97.0-nightly".into(), "22".into()))
        );
        assert_eq!(
            parse_llvm_dylib("libLLVM.so.22.1-rust-1.97.0-nightly"),
            None
        );
        assert_eq!(
            parse_llvm_dylib("librustc_driver-b5a965480ee51f9a.so"),
            None
        );
    }
}
