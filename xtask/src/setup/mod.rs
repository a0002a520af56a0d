//! `cargo xtask setup`: installs what the build and the tests need, only when missing, so a
//! fresh clone on a fresh Debian 12 machine (as CI has) gets everything from one command.
//!
//! Each area (ClickHouse, live capture, report rendering) adds its own file here with one
//! `pub fn install() -> Result<()>`, called from [`all`]. The helpers below are shared.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};

use crate::run;

mod clickhouse;
mod ebpf;
mod live;
mod report;
mod tls13;

/// Everything the whole test suite needs.
pub fn all() -> Result<()> {
    rustup_components("stable", &["rustfmt", "clippy"])?;
    // System tests build hosts out of network namespaces (tests/src/netns.rs).
    apt_install(&["iproute2", "iputils-ping", "ethtool"])?;
    clickhouse::install(&crate::repo_root())?;
    ebpf::install()?;
    report::install()?;
    live::install()?;
    tls13::install()?;
    Ok(())
}

/// Is a Debian package installed (dpkg status `install ok installed`)?
pub fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok installed"))
        .unwrap_or(false)
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Installs the Debian packages of `pkgs` that are not installed yet (`apt-get update` once per
/// run, first). Needs root; says so instead of failing obscurely.
pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run `cargo xtask setup` as root, or `apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    let apt = |args: &[&str]| {
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-o", "DPkg::Lock::Timeout=300", "-q"])
            .args(args))
    };
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        apt(&["update"])?;
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args).with_context(|| format!("installing {}", missing.join(" ")))
}

/// Adds rustup components to a toolchain when missing (`rustup` absent: left to the user).
pub fn rustup_components(toolchain: &str, comps: &[&str]) -> Result<()> {
    let Ok(out) = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", toolchain])
        .output()
    else {
        eprintln!("xtask: rustup not found; make sure {comps:?} are installed for {toolchain}");
        return Ok(());
    };
    let list = String::from_utf8_lossy(&out.stdout);
    for c in comps {
        if !list.lines().any(|l| l.starts_with(c)) {
            run(Command::new("rustup").args(["component", "add", c, "--toolchain", toolchain]))?;
        }
    }
    Ok(())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
