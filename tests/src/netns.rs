//! Two hosts on one machine: a pair of network namespaces joined by a veth pair, the server at
//! `198.18.N.1`, the client at `198.18.N.2` (198.18.0.0/15 is reserved for benchmarking,
//! RFC 2544, so test traffic can never reach a real network). Each test picks its own `N` and
//! name prefix so tests can run in parallel. Dropping the pair deletes both namespaces, which
//! also removes the veth pair and ends nothing else: processes started in a namespace are the
//! test's to stop.

use std::net::Ipv4Addr;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// Which end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

#[derive(Debug)]
pub struct NetnsPair {
    pub server_ns: String,
    pub client_ns: String,
    /// Interface names inside the namespaces (at most 15 bytes, IFNAMSIZ - 1).
    pub server_if: String,
    pub client_if: String,
    pub server_ip: Ipv4Addr,
    pub client_ip: Ipv4Addr,
}

impl NetnsPair {
    /// Creates `<prefix>-srv` and `<prefix>-cli` joined by veth `<prefix>s0`/`<prefix>c0`, with
    /// 198.18.`subnet`.1/24 and .2/24, loopback up in both. A stale pair of the same names (a
    /// killed earlier run) is removed first. `prefix` must be at most 12 bytes.
    pub fn create(prefix: &str, subnet: u8) -> Result<NetnsPair> {
        if prefix.len() > 12 {
            bail!("netns prefix {prefix:?} too long: interface names are limited to 15 bytes");
        }
        let pair = NetnsPair {
            server_ns: format!("{prefix}-srv"),
            client_ns: format!("{prefix}-cli"),
            server_if: format!("{prefix}s0"),
            client_if: format!("{prefix}c0"),
            server_ip: Ipv4Addr::new(198, 18, subnet, 1),
            client_ip: Ipv4Addr::new(198, 18, subnet, 2),
        };
        pair.delete();
        for ns in [&pair.server_ns, &pair.client_ns] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "link",
            "add",
            &pair.server_if,
            "netns",
            &pair.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &pair.client_if,
            "netns",
            &pair.client_ns,
        ])?;
        for (ns, ifname, addr) in [
            (&pair.server_ns, &pair.server_if, pair.server_ip),
            (&pair.client_ns, &pair.client_if, pair.client_ip),
        ] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
        }
        Ok(pair)
    }

    pub fn ns(&self, side: Side) -> &str {
        match side {
            Side::Server => &self.server_ns,
            Side::Client => &self.client_ns,
        }
    }

    pub fn ifname(&self, side: Side) -> &str {
        match side {
            Side::Server => &self.server_if,
            Side::Client => &self.client_if,
        }
    }

    /// A command that runs `program` inside the namespace of `side`.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(side), program]);
        c
    }

    /// Switches TSO/GSO/GRO and TX checksum offload on or off on both ends. With offloads on
    /// (the veth default, and what a gateway's TC hook and libpcap see) the kernel hands over
    /// super-segments up to 64 KiB.
    pub fn set_offloads(&self, on: bool) -> Result<()> {
        let v = if on { "on" } else { "off" };
        for side in [Side::Server, Side::Client] {
            run(self.command(side, "ethtool").args([
                "-K",
                self.ifname(side),
                "tso",
                v,
                "gso",
                v,
                "gro",
                v,
                "tx",
                v,
            ]))?;
        }
        Ok(())
    }

    /// Sets the initial congestion and receive windows (in segments) of the pair's route on both
    /// ends, so a fresh connection can send a 64 KiB burst at once: with the default 10
    /// segments TSO never builds a super-packet bigger than ~14 KiB in the first round trips.
    pub fn set_initial_windows(&self, segments: u32) -> Result<()> {
        let o = self.server_ip.octets();
        let net = format!("{}.{}.{}.0/24", o[0], o[1], o[2]);
        let n = segments.to_string();
        for (side, src) in [
            (Side::Server, self.server_ip),
            (Side::Client, self.client_ip),
        ] {
            ip(&[
                "-n",
                self.ns(side),
                "route",
                "replace",
                &net,
                "dev",
                self.ifname(side),
                "proto",
                "kernel",
                "scope",
                "link",
                "src",
                &src.to_string(),
                "initcwnd",
                &n,
                "initrwnd",
                &n,
            ])?;
        }
        Ok(())
    }

    /// Moves the calling thread into the namespace of `side` until the guard drops. Sockets,
    /// interface lookups and BPF attachments made meanwhile happen there; other threads are
    /// unaffected (setns(2) acts on the calling thread).
    pub fn enter(&self, side: Side) -> Result<NetnsGuard> {
        NetnsGuard::enter_path(&format!("/run/netns/{}", self.ns(side)))
    }

    fn delete(&self) {
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        self.delete();
    }
}

/// The calling thread's network namespace is another one until this drops.
#[derive(Debug)]
pub struct NetnsGuard {
    home: std::fs::File,
}

impl NetnsGuard {
    /// Moves the calling thread into the network namespace at `path` (`/run/netns/NAME`).
    pub fn enter_path(path: &str) -> Result<NetnsGuard> {
        use std::os::fd::AsRawFd;
        let home = std::fs::File::open("/proc/thread-self/ns/net")
            .context("cannot open this thread's network namespace")?;
        let target = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
        // SAFETY: setns(2) on a namespace fd we own; affects only this thread.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns({path}): {}", std::io::Error::last_os_error());
        }
        Ok(NetnsGuard { home })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above; back to the namespace the thread came from.
        unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// Runs a command to completion; a failure carries its stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// True when the tests may create namespaces and load programs (root). Otherwise prints why the
/// calling test is skipped, except under CI, where a missing prerequisite is a failure.
pub fn require_root(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        panic!("{test}: needs root (network namespaces), and CI runs as root");
    }
    eprintln!("{test}: SKIPPED: needs root to create network namespaces");
    false
}
