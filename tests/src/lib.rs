//! Harness for mxcert's system tests: the real components the product meets on a gateway
//! (ClickHouse servers, Postfix/Exim/swaks in network namespaces, eBPF loads into the kernel),
//! started and torn down by the tests themselves. One module per component; the tests live in
//! `tests/tests/`, one file per behaviour.

pub mod clickhouse;

use std::path::PathBuf;

/// The repository root (this crate sits in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    #[test]
    fn repo_root_holds_the_workspace_manifest() {
        assert!(super::repo_root().join("Cargo.toml").is_file());
    }
}
