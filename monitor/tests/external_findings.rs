//! Classification of the public third-party captures (../shared/pcaps-external): real chains
//! from 2013-2018 judged at the capture's own time and at a pinned "today".

mod common;

use std::path::PathBuf;

use common::{mxcert_read, shared_dir};
use serde_json::Value;

const TODAY: &str = "2026-11-23T00:00:00Z";

fn external(name: &str) -> Option<PathBuf> {
    let p = shared_dir().join("pcaps-external").join(name);
    if p.exists() {
        Some(p)
    } else {
        println!(
            "skipping: {} is missing (../shared not beside the repo)",
            p.display()
        );
        None
    }
}

/// Non-pass findings of `scenario` for the server at `server_ip`, as (role, rule, verdict).
fn findings<'a>(
    run: &'a [Value],
    server_ip: &str,
    scenario: &str,
) -> Vec<(&'a str, &'a str, &'a str)> {
    let mut v: Vec<_> = run
        .iter()
        .filter(|f| f["server_ip"] == server_ip && f["scenario"] == scenario)
        .map(|f| {
            (
                f["role"].as_str().unwrap(),
                f["rule"].as_str().unwrap(),
                f["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn effective<'a>(run: &'a [Value], server_ip: &str, rule: &str) -> Option<&'a str> {
    run.iter()
        .find(|f| f["server_ip"] == server_ip && f["rule"] == rule)
        .and_then(|f| f["effective"].as_str())
}

#[test]
fn google_chain_is_valid_at_capture_time_and_expired_today() {
    for name in ["zeek__smtp-starttls.pcap", "ndpi__smtp-starttls.pcap"] {
        let Some(p) = external(name) else { return };
        let google = if name.starts_with("zeek") {
            "74.125.142.26"
        } else {
            "173.194.68.26"
        };
        // At the capture's own time (2013/2014) the leaf (valid 2013-09-09 .. 2014-09-09) and
        // its intermediates are within validity.
        let then = mxcert_read(&[&p], &[]);
        let f = findings(&then.findings, google, "strict_validation");
        assert!(
            !f.iter().any(|(_, r, _)| r.starts_with("validity.")),
            "{name}: {f:?}"
        );
        // The chain ends at GeoTrust Global CA, whose issuer (Equifax) is neither sent nor in
        // today's Mozilla roots: incomplete for a validator with today's roots.
        assert!(
            f.contains(&("server", "chain.incomplete", "fail")),
            "{name}: {f:?}"
        );
        // Today it is expired, from the second after notAfter.
        let now = mxcert_read(&[&p], &["--at", TODAY]);
        let f = findings(&now.findings, google, "strict_validation");
        assert!(
            f.contains(&("server", "validity.expired", "fail")),
            "{name}: {f:?}"
        );
        assert_eq!(
            effective(&now.findings, google, "validity.expired"),
            Some("2014-09-09T11:32:36.000Z")
        );
    }
}

#[test]
fn charter_chain_is_valid_at_capture_time_and_expired_today() {
    let Some(p) = external("certgrep__sess_smtps.pcapng") else {
        return;
    };
    let ip = "68.114.188.72";
    let then = mxcert_read(&[&p], &[]);
    let f = findings(&then.findings, ip, "strict_validation");
    assert!(
        !f.iter().any(|(_, r, _)| r.starts_with("validity.")),
        "{f:?}"
    );
    let now = mxcert_read(&[&p], &["--at", TODAY]);
    let f = findings(&now.findings, ip, "strict_validation");
    assert!(f.contains(&("server", "validity.expired", "fail")), "{f:?}");
    // Leaf notAfter 2016-08-10T23:59:59Z.
    assert_eq!(
        effective(&now.findings, ip, "validity.expired"),
        Some("2016-08-11T00:00:00.000Z")
    );
    // No SNI and no banner (implicit TLS): the name cannot be checked, and says so.
    assert!(f.contains(&("server", "name.mismatch", "unknown")), "{f:?}");
    // With the MX name given, the leaf (CN/SAN mobile.charter.net) matches it.
    let named = mxcert_read(&[&p], &["--mx-name", "68.114.188.72=mobile.charter.net"]);
    let f = findings(&named.findings, ip, "strict_validation");
    assert!(!f.iter().any(|(_, r, _)| r.starts_with("name.")), "{f:?}");
}

#[test]
fn self_signed_certificates_are_chain_self_signed() {
    // ndpi's IPv6 Postfix (CN=jw-vm08-int-dns), Wireshark's lab server (a v1 certificate),
    // Arkime's SSL 3.0 server and client (CA:TRUE leaves): all lone self-issued certificates.
    let cases: [(&str, &[&str], &str, &[&str]); 3] = [
        (
            "ndpi__smtp-starttls.pcap",
            &[],
            "2003:de:2016:120::a08:53",
            &["server"],
        ),
        (
            "wireshark-notes__smtp-ssl.pcapng",
            &[],
            "127.0.0.1",
            &["server"],
        ),
        (
            "arkime__ssl-selfsign.pcap",
            &["--ports", "4443"],
            "10.180.152.137",
            &["server", "client"],
        ),
    ];
    for (name, args, ip, roles) in cases {
        let Some(p) = external(name) else { return };
        let run = mxcert_read(&[&p], args);
        let f = findings(&run.findings, ip, "strict_validation");
        for role in roles {
            assert!(
                f.contains(&(role, "chain.self_signed", "fail")),
                "{name} {role}: {f:?}"
            );
            assert!(
                !f.contains(&(role, "chain.untrusted", "fail")),
                "{name} {role}: {f:?}"
            );
        }
    }
}

#[test]
fn ndpi_ipv6_sni_that_the_certificate_does_not_cover_is_a_name_mismatch() {
    let Some(p) = external("ndpi__smtp-starttls.pcap") else {
        return;
    };
    let run = mxcert_read(&[&p], &[]);
    let ip = "2003:de:2016:120::a08:53";
    let f = findings(&run.findings, ip, "strict_validation");
    assert!(f.contains(&("server", "name.mismatch", "fail")), "{f:?}");
    let detail = run
        .findings
        .iter()
        .find(|f| f["server_ip"] == ip && f["rule"] == "name.mismatch")
        .unwrap()["detail"]
        .as_str()
        .unwrap();
    assert!(detail.contains("dovecot.weberlab.de"), "{detail}");
    // The Google session in the same capture has no SNI; its banner names mx.google.com,
    // which the certificate covers.
    let f = findings(&run.findings, "173.194.68.26", "strict_validation");
    assert!(!f.iter().any(|(_, r, _)| r.starts_with("name.")), "{f:?}");
}
