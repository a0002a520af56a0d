//! Harness for mxcert's system tests: the real components the product meets on a gateway
//! (ClickHouse servers, Postfix/Exim/swaks in network namespaces, eBPF loads into the kernel),
//! started and torn down by the tests themselves. One module per component; the tests live in
//! `tests/tests/`, one file per behaviour.

pub mod clickhouse;

use std::path::PathBuf;

pub mod ebpf;
pub mod live;
pub mod mta;
pub mod netns;
pub mod postfix_pair;
pub mod records;
pub mod tlswire;
pub mod uprobe;

/// The repository root (this crate sits in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::netns::{NetnsPair, Side};

    #[test]
    fn repo_root_holds_the_workspace_manifest() {
        assert!(super::repo_root().join("Cargo.toml").is_file());
    }

    #[test]
    fn netns_pair_hosts_reach_each_other_and_vanish_on_drop() {
        if !super::netns::require_root("netns_pair") {
            return;
        }
        let pair = NetnsPair::create("mxnt", 250).expect("create namespaces");
        let ping = pair
            .command(Side::Client, "ping")
            .args(["-c", "1", "-W", "2", &pair.server_ip.to_string()])
            .output()
            .expect("run ping");
        assert!(
            ping.status.success(),
            "client cannot reach server: {ping:?}"
        );
        let ns = pair.server_ns.clone();
        drop(pair);
        let list = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&ns));
    }
}
