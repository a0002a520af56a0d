//! Flat rows of the ClickHouse tables (`schema/001_init.sql`), built from the records.
//!
//! Field order and types are the column order and the RowBinary encoding of the modern schema,
//! which the 18.16 variant reproduces byte for byte (`schema/compat-18.16/`): timestamps are
//! `i64` milliseconds (DateTime64(3) on the wire), addresses `Ipv6Addr` (IPv4 mapped as
//! `::ffff:a.b.c.d`, 16 bytes), enums their `Enum8` code. The same rows serialize to JSON for
//! the on-disk spool.

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::classify::{Finding, Verdict};
use crate::session::{Outcome, SessionRecord};
use crate::timefmt::unix_seconds;
use crate::x509::CertificateRecord;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct SessionRow {
    pub sensor: String,
    pub session_id: String,
    pub ts: i64,
    pub end_ts: i64,
    pub client_ip: Ipv6Addr,
    pub client_port: u16,
    pub server_ip: Ipv6Addr,
    pub server_port: u16,
    pub direction: i8,
    pub banner_host: String,
    pub ehlo: String,
    pub starttls_offered: Option<u8>,
    pub starttls: u8,
    pub implicit_tls: u8,
    pub starttls_reply_code: Option<u16>,
    pub tls_version: String,
    pub cipher: String,
    pub sni: String,
    pub cert_requested: Option<u8>,
    pub client_cert_presented: Option<u8>,
    pub server_chain: Vec<String>,
    pub client_chain: Vec<String>,
    pub alert: String,
    pub alert_from: String,
    pub client_version: String,
    pub hello_retry: u8,
    pub outcome: i8,
    pub midstream: u8,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct CertificateRow {
    pub sha256: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub sensor: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub san_dns: Vec<String>,
    pub san_ip: Vec<String>,
    pub eku_present: Option<u8>,
    pub eku: Vec<String>,
    pub key_usage: Vec<String>,
    pub is_ca: Option<u8>,
    pub self_signed: Option<u8>,
    pub key_type: String,
    pub key_bits: Option<u32>,
    pub signature_algorithm: String,
    pub subject_cn: String,
    pub version: Option<u8>,
    pub parse_error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct FindingRow {
    pub sensor: String,
    pub ts: i64,
    pub session_id: String,
    pub role: i8,
    pub cert_sha256: String,
    pub scenario: String,
    pub rule: String,
    pub verdict: i8,
    pub effective: Option<i64>,
    pub detail: String,
    pub direction: i8,
    pub client_ip: Ipv6Addr,
    pub server_ip: Ipv6Addr,
    pub server_port: u16,
    pub peer_name: String,
    pub validation_time: i64,
}

/// `Enum8('unknown' = 0, 'inbound' = 1, 'outbound' = 2)`.
pub fn direction_code(d: &str) -> i8 {
    match d {
        "inbound" => 1,
        "outbound" => 2,
        _ => 0,
    }
}

/// `Enum8('established' = 1, 'alert' = 2, 'reset' = 3, 'closed' = 4, 'incomplete' = 5, 'no_tls' = 6)`.
pub fn outcome_code(o: Outcome) -> i8 {
    match o {
        Outcome::Established => 1,
        Outcome::Alert => 2,
        Outcome::Reset => 3,
        Outcome::Closed => 4,
        Outcome::Incomplete => 5,
        Outcome::NoTls => 6,
    }
}

/// `Enum8('pass' = 1, 'fail' = 2, 'warn' = 3, 'unknown' = 4)`.
pub fn verdict_code(v: Verdict) -> i8 {
    match v {
        Verdict::Pass => 1,
        Verdict::Fail => 2,
        Verdict::Warn => 3,
        Verdict::Unknown => 4,
    }
}

/// `Enum8('server' = 1, 'client' = 2)`.
pub fn role_code(r: &str) -> i8 {
    if r == "client" {
        2
    } else {
        1
    }
}

/// One column type for both address families: IPv4 as the IPv4-mapped IPv6 address
/// (RFC 4291 §2.5.5.2), which ClickHouse's IPv6 type prints and compares as such.
pub fn ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Milliseconds since the epoch from the records' RFC 3339 text (`2026-11-23T12:09:19.756Z`,
/// as `timefmt::rfc3339_ms` writes it; fractional digits and the `Z` are optional). `None` for
/// anything else.
pub fn rfc3339_to_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> { s.get(r)?.parse().ok() };
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let secs = unix_seconds(
        y,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut ms = 0i64;
    if b.get(19) == Some(&b'.') {
        let frac: String = s[20..].chars().take_while(char::is_ascii_digit).collect();
        let mut digits = frac.chars().chain(std::iter::repeat('0')).take(3);
        for _ in 0..3 {
            ms = ms * 10 + i64::from(digits.next()?.to_digit(10)?);
        }
    }
    Some(secs * 1000 + ms)
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

impl SessionRow {
    pub fn from_record(r: &SessionRecord, sensor: &str) -> SessionRow {
        let t = &r.tls;
        SessionRow {
            sensor: sensor.to_string(),
            session_id: r.session_id.clone(),
            ts: rfc3339_to_ms(&r.ts).unwrap_or(0),
            end_ts: rfc3339_to_ms(&r.end_ts).unwrap_or(0),
            client_ip: ipv6(r.client_ip),
            client_port: r.client_port,
            server_ip: ipv6(r.server_ip),
            server_port: r.server_port,
            direction: direction_code(r.direction),
            banner_host: r.smtp.banner_host.clone().unwrap_or_default(),
            ehlo: r.smtp.ehlo.clone().unwrap_or_default(),
            starttls_offered: r.smtp.starttls_offered.map(flag),
            starttls: flag(r.smtp.starttls),
            implicit_tls: flag(r.smtp.implicit_tls),
            starttls_reply_code: r.smtp.starttls_reply_code,
            tls_version: t.version.unwrap_or_default().to_string(),
            cipher: t.cipher.clone().unwrap_or_default(),
            sni: t.sni.clone().unwrap_or_default(),
            cert_requested: t.cert_requested.map(flag),
            client_cert_presented: t.client_cert_presented.map(flag),
            server_chain: t.server_chain.iter().map(|f| f.to_hex()).collect(),
            client_chain: t.client_chain.iter().map(|f| f.to_hex()).collect(),
            alert: t.alert.clone().unwrap_or_default(),
            alert_from: t.alert_from.unwrap_or_default().to_string(),
            client_version: t.client_version.unwrap_or_default().to_string(),
            hello_retry: flag(t.hello_retry),
            outcome: outcome_code(r.outcome),
            midstream: flag(r.midstream),
            packets: r.packets,
            bytes: r.bytes,
        }
    }
}

impl CertificateRow {
    /// `seen`: the start of the first session that presented the certificate in this run.
    pub fn from_record(r: &CertificateRecord, sensor: &str, seen: i64) -> CertificateRow {
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        CertificateRow {
            sha256: r.sha256.to_hex(),
            first_seen: seen,
            last_seen: seen,
            sensor: sensor.to_string(),
            subject: s(&r.subject),
            issuer: s(&r.issuer),
            serial: s(&r.serial),
            not_before: r.not_before.as_deref().and_then(rfc3339_to_ms),
            not_after: r.not_after.as_deref().and_then(rfc3339_to_ms),
            san_dns: r.san_dns.clone(),
            san_ip: r.san_ip.iter().map(ToString::to_string).collect(),
            eku_present: r.eku_present.map(flag),
            eku: r.eku.iter().map(|e| e.to_string()).collect(),
            key_usage: r.key_usage.iter().map(|k| k.to_string()).collect(),
            is_ca: r.is_ca.map(flag),
            self_signed: r.self_signed.map(flag),
            key_type: r.key_type.as_deref().unwrap_or_default().to_string(),
            key_bits: r.key_bits,
            signature_algorithm: r
                .signature_algorithm
                .as_deref()
                .unwrap_or_default()
                .to_string(),
            subject_cn: s(&r.subject_cn),
            version: r.version.and_then(|v| u8::try_from(v).ok()),
            parse_error: s(&r.parse_error),
        }
    }
}

impl FindingRow {
    pub fn from_record(f: &Finding, sensor: &str) -> FindingRow {
        FindingRow {
            sensor: sensor.to_string(),
            ts: rfc3339_to_ms(&f.ts).unwrap_or(0),
            session_id: f.session_id.clone(),
            role: role_code(f.role),
            cert_sha256: f.cert_sha256.map(|c| c.to_hex()).unwrap_or_default(),
            scenario: f.scenario.clone(),
            rule: f.rule.to_string(),
            verdict: verdict_code(f.verdict),
            effective: f.effective.as_deref().and_then(rfc3339_to_ms),
            detail: f.detail.clone(),
            direction: direction_code(f.direction),
            client_ip: ipv6(f.client_ip),
            server_ip: ipv6(f.server_ip),
            server_port: f.server_port,
            peer_name: f.peer_name.clone().unwrap_or_default(),
            validation_time: rfc3339_to_ms(&f.validation_time).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_text_becomes_epoch_milliseconds() {
        assert_eq!(rfc3339_to_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            rfc3339_to_ms("2026-11-23T12:09:19.756Z"),
            Some(1_795_435_759_756)
        );
        assert_eq!(
            rfc3339_to_ms("2026-11-23T12:09:19Z"),
            Some(1_795_435_759_000)
        );
        assert_eq!(
            rfc3339_to_ms("2026-11-23T12:09:19.7Z"),
            Some(1_795_435_759_700)
        );
        assert_eq!(rfc3339_to_ms("yesterday"), None);
    }

    #[test]
    fn ipv4_is_stored_mapped() {
        let ip: IpAddr = "198.18.0.2".parse().unwrap();
        assert_eq!(ipv6(ip).to_string(), "::ffff:198.18.0.2");
    }
}
