//! ClickHouse for the tests: Debian's `clickhouse-server` (18.16, started privately by the
//! streaming tests) and the current engine through chdb (PyPI `chdb-core`) in a virtualenv at
//! `target/chdb-venv`, where `tests/src/clickhouse.rs` looks for it.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::apt_install;
use crate::run;

pub fn install(root: &Path) -> Result<()> {
    apt_install(&["clickhouse-server", "python3", "python3-venv"])?;
    let venv = root.join("target/chdb-venv");
    let python = venv.join("bin/python3");
    let has_chdb = Command::new(&python)
        .args(["-c", "import chdb"])
        .status()
        .is_ok_and(|s| s.success());
    if has_chdb {
        return Ok(());
    }
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "chdb-core",
    ]))
}
