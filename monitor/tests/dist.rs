//! The deployment files in monitor/dist/ stay valid: the example config holds only known keys
//! with valid values, and the systemd unit has the hardening the README promises and passes
//! `systemd-analyze verify` where systemd is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn dist(f: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist").join(f)
}

#[test]
fn example_config_is_accepted_by_mxcert_capture() {
    // A missing interface is the first thing that fails after the config has been applied, so
    // exit 2 with that message proves every key and value of the file was accepted.
    let out = std::env::temp_dir().join(format!("mxcert-dist-{}.jsonl", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_mxcert"))
        .args(["capture", "--config"])
        .arg(dist("mxcert.toml"))
        .args([
            "--iface",
            "mxnosuchif0",
            "--backend",
            "pcap",
            "--local-net",
            "198.18.0.1/32",
            "--out",
        ])
        .arg(&out)
        .env("MXCERT_METRICS_ADDR", "127.0.0.1:19399")
        .output()
        .expect("run mxcert");
    let _ = std::fs::remove_file(&out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        !err.contains("config file"),
        "the example config was rejected: {err}"
    );
    assert!(
        err.contains("mxnosuchif0") || err.contains("CAP_NET_RAW"),
        "expected the interface (or, unprivileged, the capability) to be the problem: {err}"
    );
}

#[test]
fn a_typo_in_the_config_file_is_named() {
    let cfg = std::env::temp_dir().join(format!("mxcert-typo-{}.toml", std::process::id()));
    std::fs::write(&cfg, "ifcae = [\"eth0\"]\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mxcert"))
        .args(["capture", "--config"])
        .arg(&cfg)
        .output()
        .expect("run mxcert");
    let _ = std::fs::remove_file(&cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown key \"ifcae\""), "{err}");
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let unit = std::fs::read_to_string(dist("mxcert.service")).expect("unit");
    for line in [
        "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_NET_RAW",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=mxcert",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "unit lacks {line}"
        );
    }
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd_unit_is_hardened_and_verifies: systemd-analyze not installed; directives checked only");
        return;
    };
    assert!(probe.status.success());
    // Verify a copy that points at the binary under test.
    let dir = std::env::temp_dir().join(format!("mxcert-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("mxcert.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/mxcert", env!("CARGO_BIN_EXE_mxcert")),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("verify");
    let _ = std::fs::remove_dir_all(&dir);
    let msg = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    let relevant: Vec<&str> = msg
        .lines()
        .filter(|l| l.contains("mxcert.service"))
        .collect();
    assert!(
        o.status.success() && relevant.is_empty(),
        "systemd-analyze verify: {msg}"
    );
}
