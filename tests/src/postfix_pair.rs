//! Two hosts, each with its own Postfix (issue #8's acceptance with real MTAs): host A in the
//! client namespace (domain client.example, chain cli_mta), host B in the server namespace
//! (domain test.example, chain srv_both). Each relays mail for the other's domain to the other
//! over mandatory TLS 1.3 and presents its leaf + intermediate chain from pcaps/certs both as
//! server and as client certificate (`smtpd_tls_ask_ccert = yes` on both). Plus what the tests
//! around them need: deterministic messages, and a noise process named like an MTA process
//! loading the system CA bundle.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::mta::{certs_dir, Postfix, PostfixOpts, WorkDir};
use crate::netns::NetnsPair;
use crate::uprobe::pem_ders;

/// The system CA bundle the noise process loads (~140 certificates per run).
pub const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Host A's chain (pcaps/certs/<name>.chain.pem), as server and as client.
pub const CHAIN_A: &str = "cli_mta";
/// Host B's chain.
pub const CHAIN_B: &str = "srv_both";

/// A host's Postfix and the chain it presents (as server and as client).
pub struct Host {
    pub postfix: Postfix,
    /// The fixture chain's name (for `records::chain_hex`).
    pub chain_name: &'static str,
    /// Its certificates, DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    pub ip: IpAddr,
}

/// Starts B, then A (see the module documentation). `extra` main.cf lines go to both.
pub fn mtas(pair: &NetnsPair, work: &WorkDir, extra: &[String]) -> (Host, Host) {
    let certs = certs_dir();
    let list = |name: &str| -> String {
        [
            certs.join(format!("{name}.key")),
            certs.join(format!("{name}.chain.pem")),
        ]
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
    };
    let common = |own: &str, peer_ip: IpAddr| -> Vec<String> {
        let mut m = vec![
            "smtpd_tls_security_level = may".to_string(),
            format!("smtpd_tls_chain_files = {}", list(own)),
            "smtpd_tls_ask_ccert = yes".into(),
            "smtpd_tls_protocols = >=TLSv1.3".into(),
            "smtpd_tls_mandatory_protocols = >=TLSv1.3".into(),
            format!("relayhost = [{peer_ip}]:25"),
            "smtp_tls_security_level = encrypt".into(),
            format!("smtp_tls_chain_files = {}", list(own)),
            "smtp_tls_protocols = >=TLSv1.3".into(),
            "smtp_tls_mandatory_protocols = >=TLSv1.3".into(),
            "smtp_tls_loglevel = 1".into(),
        ];
        m.extend(extra.iter().cloned());
        m
    };
    let b = Postfix::start(
        pair,
        work.join("b"),
        &PostfixOpts {
            main_cf: common(CHAIN_B, IpAddr::V4(pair.client_ip)),
            ..PostfixOpts::cert(CHAIN_B)
        },
    )
    .expect("Postfix B");
    let mut a_cf = common(CHAIN_A, IpAddr::V4(pair.server_ip));
    a_cf.push("mydestination = client.example, $myhostname".into());
    a_cf.retain(|l| !l.starts_with("relayhost"));
    let a = Postfix::start(
        pair,
        work.join("a"),
        &PostfixOpts {
            main_cf: a_cf,
            relay_to: Some(pair.server_ip),
            listen: true,
            ..PostfixOpts::cert(CHAIN_A)
        },
    )
    .expect("Postfix A");
    let chain = |name: &str| pem_ders(&certs.join(format!("{name}.chain.pem"))).unwrap();
    (
        Host {
            postfix: a,
            chain_name: CHAIN_A,
            chain: chain(CHAIN_A),
            ip: IpAddr::V4(pair.client_ip),
        },
        Host {
            postfix: b,
            chain_name: CHAIN_B,
            chain: chain(CHAIN_B),
            ip: IpAddr::V4(pair.server_ip),
        },
    )
}

/// A process named `smtpd` (a copy of the openssl binary, so it passes the kernel's
/// allow-list) loading the system CA bundle through libcrypto's PEM code in a loop, at most 50
/// runs and 20 s, until `stop`. Returns the number of runs.
pub fn noise(dir: &Path, stop: Arc<AtomicBool>) -> JoinHandle<u32> {
    let bin = dir.join("smtpd");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(which("openssl"), &bin).expect("copy openssl as smtpd");
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut runs = 0;
        while !stop.load(Ordering::Relaxed) && runs < 50 && start.elapsed().as_secs() < 20 {
            let st = Command::new(&bin)
                .args(["crl2pkcs7", "-nocrl", "-certfile", BUNDLE])
                .stdout(Stdio::null())
                .status()
                .expect("smtpd crl2pkcs7");
            assert!(st.success());
            runs += 1;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        runs
    })
}

/// The path of `name` in PATH.
pub fn which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not in PATH"))
}

/// A message of about `size` bytes: headers and lines of 76 printable characters (no line
/// Postfix would rewrite), deterministic. Returns the message and its body.
pub fn message(from: &str, to: &str, subject: &str, size: usize) -> (Vec<u8>, Vec<u8>) {
    let head = format!("From: {from}\nTo: {to}\nSubject: {subject}\n\n");
    let mut body = Vec::with_capacity(size + 80);
    let mut x: u32 = 0x2545_f491;
    while body.len() < size {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            body.push(b'A' + (x % 26) as u8);
        }
        body.push(b'\n');
    }
    let mut m = head.into_bytes();
    m.extend_from_slice(&body);
    (m, body)
}

/// The body of a delivered message (after the header block).
pub fn body_of(delivered: &[u8]) -> &[u8] {
    let at = delivered
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a header block");
    &delivered[at + 2..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_deterministic_and_their_body_is_found_again() {
        let (m, body) = message("a@x", "b@y", "s", 1000);
        assert!(body.len() >= 1000 && body.len() < 1100);
        assert_eq!(message("a@x", "b@y", "s", 1000).0, m);
        assert_eq!(body_of(&m), body.as_slice());
        assert!(body.iter().all(|&c| c == b'\n' || c.is_ascii_uppercase()));
    }
}
