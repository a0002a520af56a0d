//! Reading mxcert's JSON-lines output in system tests: the records, the session records of one
//! connection, and certificate identities as the records write them (lowercase hex SHA-256 of
//! the DER), plus the BPF programs a running mxcert holds.

use std::path::Path;

use serde_json::Value;

use crate::uprobe::{chain_ders, der_hashes};

/// Every record of a JSON-lines file, in file order; a line that is not JSON (a write cut by
/// a kill) is skipped. A missing file reads as no records.
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The session records between `client_ip` and `server_ip` on `server_port`.
pub fn sessions_between(
    recs: &[Value],
    client_ip: &str,
    server_ip: &str,
    server_port: u16,
) -> Vec<Value> {
    recs.iter()
        .filter(|r| {
            r["record"] == "session"
                && r["client_ip"] == client_ip
                && r["server_ip"] == server_ip
                && r["server_port"] == server_port
        })
        .cloned()
        .collect()
}

/// The findings of rule `rule` for the session `session_id`.
pub fn findings_of<'a>(recs: &'a [Value], session_id: &Value, rule: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| r["session_id"] == *session_id && r["rule"] == rule)
        .collect()
}

/// Lowercase hex of a SHA-256, as the records write certificate identities.
pub fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identities (hex SHA-256 of the DER, leaf first) of the fixture chain
/// `pcaps/certs/<name>.chain.pem`.
pub fn chain_hex(name: &str) -> Vec<String> {
    let pem = crate::mta::certs_dir().join(format!("{name}.chain.pem"));
    der_hashes(&chain_ders(&pem)).iter().map(hex).collect()
}

/// A JSON list of strings (a chain in a record) as a Vec; panics on anything else, so a test
/// never compares against a silently empty list.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

/// The BPF programs the process `pid` holds (from its file descriptors' fdinfo), with their
/// names in the kernel's program list.
pub fn programs_of(pid: u32) -> Vec<(u32, String)> {
    let mut ids: Vec<u32> = Vec::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    for fd in fds.flatten() {
        let text = std::fs::read_to_string(fd.path()).unwrap_or_default();
        for l in text.lines() {
            if let Some(id) = l.strip_prefix("prog_id:") {
                if let Ok(id) = id.trim().parse::<u32>() {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
    }
    loaded(&ids)
}

/// Which of `ids` the kernel still has loaded, with their names.
pub fn loaded(ids: &[u32]) -> Vec<(u32, String)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .map(|p| (p.id(), p.name_as_str().unwrap_or("").to_string()))
        .collect()
}

/// Kernel program names are cut to 15 bytes (BPF_OBJ_NAME_LEN).
pub fn has_program(progs: &[(u32, String)], name: &str) -> bool {
    let cut = &name[..name.len().min(15)];
    progs.iter().any(|(_, n)| n == cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_chain_identities_are_hex_sha256_leaf_first() {
        let ids = chain_hex("srv_both");
        assert_eq!(ids.len(), 2, "leaf + intermediate");
        assert!(ids.iter().all(|h| h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))));
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn sessions_are_picked_by_addresses_and_port() {
        let recs: Vec<Value> = [
            r#"{"record":"session","client_ip":"198.18.0.1","server_ip":"198.18.0.2","server_port":25,"session_id":"a"}"#,
            r#"{"record":"session","client_ip":"198.18.0.1","server_ip":"198.18.0.2","server_port":587,"session_id":"b"}"#,
            r#"{"record":"finding","session_id":"a","rule":"x"}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let s = sessions_between(&recs, "198.18.0.1", "198.18.0.2", 25);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0]["session_id"], "a");
        assert_eq!(findings_of(&recs, &s[0]["session_id"], "x").len(), 1);
        assert!(findings_of(&recs, &s[0]["session_id"], "y").is_empty());
    }
}
