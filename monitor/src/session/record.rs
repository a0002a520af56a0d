//! The session record (the contract every later stage reads) and the run summary.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::capture::Nanos;
use crate::smtp::SmtpFacts;
use crate::timefmt::rfc3339_ms;
use crate::tls::{alert_name, cipher_name, version_name, TlsFacts};
use crate::x509::Fingerprint;

/// How a session ended, as far as the handshake is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The TLS handshake completed (both Finished messages, or TLS 1.3 encrypted flights).
    Established,
    /// A cleartext fatal alert ended the handshake.
    Alert,
    /// RST before the handshake completed.
    Reset,
    /// FIN before the handshake completed.
    Closed,
    /// The capture ended or the flow timed out mid-handshake, or its start was not captured.
    Incomplete,
    /// TLS never started: not offered, not issued, or refused.
    NoTls,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Established => "established",
            Outcome::Alert => "alert",
            Outcome::Reset => "reset",
            Outcome::Closed => "closed",
            Outcome::Incomplete => "incomplete",
            Outcome::NoTls => "no_tls",
        }
    }
}

/// `inbound` when the server is ours and the client is not, `outbound` the other way round.
pub fn direction(local: &[ipnet::IpNet], client: IpAddr, server: IpAddr) -> &'static str {
    let ours = |ip: IpAddr| local.iter().any(|n| n.contains(&ip));
    match (ours(client), ours(server)) {
        (false, true) => "inbound",
        (true, false) => "outbound",
        _ => "unknown",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmtpPart {
    pub banner_host: Option<String>,
    pub ehlo: Option<String>,
    pub starttls_offered: Option<bool>,
    pub starttls: bool,
    pub implicit_tls: bool,
    pub starttls_reply_code: Option<u16>,
    pub greeting_code: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsPart {
    pub version: Option<&'static str>,
    pub cipher: Option<String>,
    pub sni: Option<String>,
    pub cert_requested: Option<bool>,
    pub client_cert_presented: Option<bool>,
    pub server_chain: Vec<Fingerprint>,
    pub client_chain: Vec<Fingerprint>,
    pub alert: Option<String>,
    /// Who sent the alert: `client` | `server`.
    pub alert_from: Option<&'static str>,
    /// ClientHello legacy_version.
    pub client_version: Option<&'static str>,
    /// ClientHello supported_versions (RFC 8446 §4.2.1), empty when absent.
    pub client_supported_versions: Vec<&'static str>,
    /// ClientHello cipher suites, IANA names in the client's order.
    pub client_ciphers: Vec<String>,
    /// Certificate types asked for by the CertificateRequest.
    pub cert_request_types: Vec<u8>,
    pub hello_retry: bool,
    /// Where the chains came from: `wire` (cleartext handshake), `uprobe` (read in the MTA's
    /// TLS library, TLS 1.3), `resumed` (carried over from the full handshake this session
    /// resumed); `None` when no chain was seen at all.
    pub chain_source: Option<&'static str>,
    /// The handshake resumed an earlier session (no certificates are sent in it).
    pub resumed: bool,
    /// `session_id` of the full handshake whose chains a resumed session carries.
    pub resumed_from: Option<String>,
}

/// One SMTP session. Field names are the record contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRecord {
    pub record: &'static str,
    pub ts: String,
    pub end_ts: String,
    pub session_id: String,
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub server_ip: IpAddr,
    pub server_port: u16,
    pub direction: &'static str,
    pub smtp: SmtpPart,
    pub tls: TlsPart,
    pub outcome: Outcome,
    /// The connection's start was not captured.
    pub midstream: bool,
    pub packets: u64,
    pub bytes: u64,
}

/// Inputs for [`SessionRecord::build`].
pub struct SessionParts<'a> {
    pub first_ts: Nanos,
    pub last_ts: Nanos,
    pub session_id: String,
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub direction: &'static str,
    pub smtp: &'a SmtpFacts,
    pub implicit_tls: bool,
    pub tls: &'a TlsFacts,
    pub outcome: Outcome,
    pub midstream: bool,
    pub packets: u64,
    pub bytes: u64,
}

impl SessionRecord {
    pub fn build(p: SessionParts<'_>) -> SessionRecord {
        let t = p.tls;
        let tls13 = t.is_tls13();
        // CertificateRequest and client Certificate are encrypted in TLS 1.3: unknown, not
        // "no". Without a ServerHello they are unknown too, unless the message was seen.
        let cert_requested = if tls13 || (t.version.is_none() && !t.cert_requested) {
            None
        } else {
            Some(t.cert_requested)
        };
        let client_cert_presented = if tls13 || (t.version.is_none() && !t.client_cert_msg) {
            None
        } else {
            Some(!t.client_chain.is_empty())
        };
        let hello = t.client_hello.as_ref();
        SessionRecord {
            record: "session",
            ts: rfc3339_ms(p.first_ts),
            end_ts: rfc3339_ms(p.last_ts),
            session_id: p.session_id,
            client_ip: p.client.0,
            client_port: p.client.1,
            server_ip: p.server.0,
            server_port: p.server.1,
            direction: p.direction,
            smtp: SmtpPart {
                banner_host: p.smtp.banner_host.clone(),
                ehlo: p.smtp.ehlo.clone(),
                starttls_offered: p.smtp.starttls_offered,
                starttls: p.smtp.starttls_accepted(),
                implicit_tls: p.implicit_tls,
                starttls_reply_code: p.smtp.starttls_reply_code,
                greeting_code: p.smtp.greeting_code.filter(|&c| c != 0),
            },
            tls: TlsPart {
                version: t.version.map(version_name),
                cipher: t.cipher.map(cipher_name),
                sni: hello.and_then(|h| h.sni.clone()),
                cert_requested,
                client_cert_presented,
                server_chain: t.server_chain.clone(),
                client_chain: t.client_chain.clone(),
                alert: t.alert.map(|(_, d)| alert_name(d)),
                alert_from: t.alert_from.map(|s| match s {
                    crate::tls::Side::Client => "client",
                    crate::tls::Side::Server => "server",
                }),
                client_version: hello.map(|h| version_name(h.legacy_version)),
                client_supported_versions: hello
                    .map(|h| {
                        h.supported_versions
                            .iter()
                            // GREASE values (RFC 8701) are noise, not versions.
                            .filter(|&&v| v & 0x0f0f != 0x0a0a)
                            .map(|&v| version_name(v))
                            .collect()
                    })
                    .unwrap_or_default(),
                client_ciphers: hello
                    .map(|h| {
                        h.ciphers
                            .iter()
                            .filter(|&&c| c & 0x0f0f != 0x0a0a)
                            .map(|&c| cipher_name(c))
                            .collect()
                    })
                    .unwrap_or_default(),
                cert_request_types: t.cert_request_types.clone(),
                hello_retry: t.hello_retry,
                chain_source: (!t.server_chain.is_empty() || !t.client_chain.is_empty())
                    .then_some("wire"),
                resumed: t.resumed,
                resumed_from: None,
            },
            outcome: p.outcome,
            midstream: p.midstream,
            packets: p.packets,
            bytes: p.bytes,
        }
    }
}

/// Counts for the one-screen summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub outcomes: BTreeMap<&'static str, u64>,
    pub versions: BTreeMap<&'static str, u64>,
    pub directions: BTreeMap<&'static str, u64>,
    pub cert_requested: u64,
    pub client_cert_presented: u64,
    pub client_cert_declined: u64,
    pub implicit_tls: u64,
    pub starttls: u64,
}

impl Summary {
    pub fn add(&mut self, r: &SessionRecord) {
        *self.outcomes.entry(r.outcome.as_str()).or_default() += 1;
        *self
            .versions
            .entry(r.tls.version.unwrap_or("none"))
            .or_default() += 1;
        *self.directions.entry(r.direction).or_default() += 1;
        if r.tls.cert_requested == Some(true) {
            self.cert_requested += 1;
        }
        match r.tls.client_cert_presented {
            Some(true) => self.client_cert_presented += 1,
            Some(false) if r.tls.cert_requested == Some(true) => self.client_cert_declined += 1,
            _ => {}
        }
        if r.smtp.implicit_tls {
            self.implicit_tls += 1;
        }
        if r.smtp.starttls {
            self.starttls += 1;
        }
    }
}
