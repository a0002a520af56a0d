//! Rows of the ClickHouse tables (`schema/001_init.sql`), encoded as RowBinary straight from
//! the records.
//!
//! Column order and encodings are those of the modern schema, which the 18.16 variant
//! reproduces byte for byte (`schema/compat-18.16/`): timestamps are `Int64` milliseconds
//! (DateTime64(3) on the wire), addresses 16 bytes (IPv4 mapped as `::ffff:a.b.c.d`), enums
//! their `Enum8` code, absent text the empty string. The spool stores the same bytes.

use std::net::{IpAddr, Ipv6Addr};

use crate::classify::{Finding, Verdict};
use crate::session::{Outcome, SessionRecord};
use crate::timefmt::unix_seconds;
use crate::x509::{CertificateRecord, Fingerprint};

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
    // Digits only, no allocation: this runs for every row on the packet path.
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let secs = unix_seconds(
        i64::from(num(0..4)?),
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut ms = 0i64;
    if b.get(19) == Some(&b'.') {
        let mut scale = 100;
        for &c in b[20..].iter().take_while(|c| c.is_ascii_digit()).take(3) {
            ms += i64::from(c - b'0') * scale;
            scale /= 10;
        }
    }
    Some(secs * 1000 + ms)
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

/// RowBinary (https://clickhouse.com/docs/interfaces/formats/RowBinary): integers little
/// endian, strings as LEB128 length + bytes, Nullable as a 0/1 byte before the value, Array
/// as LEB128 count + elements, IPv6 as 16 bytes in network order. Written straight from the
/// records into the batch buffer: no per-row allocation on the packet path.
struct Rb<'a>(&'a mut Vec<u8>);

impl Rb<'_> {
    fn uvarint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn str(&mut self, s: &str) {
        self.uvarint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        self.str(s.unwrap_or(""));
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn i8(&mut self, v: i8) {
        self.0.push(v as u8);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn null_u8(&mut self, v: Option<u8>) {
        match v {
            Some(x) => {
                self.u8(0);
                self.u8(x);
            }
            None => self.u8(1),
        }
    }
    fn null_u16(&mut self, v: Option<u16>) {
        match v {
            Some(x) => {
                self.u8(0);
                self.u16(x);
            }
            None => self.u8(1),
        }
    }
    fn null_u32(&mut self, v: Option<u32>) {
        match v {
            Some(x) => {
                self.u8(0);
                self.u32(x);
            }
            None => self.u8(1),
        }
    }
    fn null_i64(&mut self, v: Option<i64>) {
        match v {
            Some(x) => {
                self.u8(0);
                self.i64(x);
            }
            None => self.u8(1),
        }
    }
    fn ip(&mut self, ip: IpAddr) {
        self.0.extend_from_slice(&ipv6(ip).octets());
    }
    /// A fingerprint as its 64-character lowercase hex String.
    fn fp(&mut self, f: &Fingerprint) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (i, b) in f.0.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        self.uvarint(64);
        self.0.extend_from_slice(&hex);
    }
    fn fps(&mut self, v: &[Fingerprint]) {
        self.uvarint(v.len() as u64);
        for f in v {
            self.fp(f);
        }
    }
    fn strs<S: AsRef<str>>(&mut self, v: &[S]) {
        self.uvarint(v.len() as u64);
        for s in v {
            self.str(s.as_ref());
        }
    }
    fn time(&mut self, s: &str) {
        self.i64(rfc3339_to_ms(s).unwrap_or(0));
    }
}

/// One `sessions` row, columns in the order of schema/001_init.sql then the columns later
/// migrations append.
pub fn encode_session(out: &mut Vec<u8>, r: &SessionRecord, sensor: &str) -> i64 {
    let mut w = Rb(out);
    let t = &r.tls;
    let ts = rfc3339_to_ms(&r.ts).unwrap_or(0);
    w.str(sensor);
    w.str(&r.session_id);
    w.i64(ts);
    w.time(&r.end_ts);
    w.ip(r.client_ip);
    w.u16(r.client_port);
    w.ip(r.server_ip);
    w.u16(r.server_port);
    w.i8(direction_code(r.direction));
    w.opt_str(r.smtp.banner_host.as_deref());
    w.opt_str(r.smtp.ehlo.as_deref());
    w.null_u8(r.smtp.starttls_offered.map(flag));
    w.u8(flag(r.smtp.starttls));
    w.u8(flag(r.smtp.implicit_tls));
    w.null_u16(r.smtp.starttls_reply_code);
    w.opt_str(t.version);
    w.opt_str(t.cipher.as_deref());
    w.opt_str(t.sni.as_deref());
    w.null_u8(t.cert_requested.map(flag));
    w.null_u8(t.client_cert_presented.map(flag));
    w.fps(&t.server_chain);
    w.fps(&t.client_chain);
    w.opt_str(t.alert.as_deref());
    w.opt_str(t.alert_from);
    w.opt_str(t.client_version);
    w.u8(flag(t.hello_retry));
    w.i8(outcome_code(r.outcome));
    w.u8(flag(r.midstream));
    w.u64(r.packets);
    w.u64(r.bytes);
    // 002_library_chains.sql
    w.opt_str(t.chain_source);
    w.u8(flag(t.resumed));
    w.opt_str(t.resumed_from.as_deref());
    ts
}

/// One `certificates` row; `seen`: start of the first session presenting it in this run.
pub fn encode_certificate(out: &mut Vec<u8>, r: &CertificateRecord, sensor: &str, seen: i64) {
    let mut w = Rb(out);
    w.fp(&r.sha256);
    w.i64(seen);
    w.i64(seen);
    w.str(sensor);
    w.opt_str(r.subject.as_deref());
    w.opt_str(r.issuer.as_deref());
    w.opt_str(r.serial.as_deref());
    w.null_i64(r.not_before.as_deref().and_then(rfc3339_to_ms));
    w.null_i64(r.not_after.as_deref().and_then(rfc3339_to_ms));
    w.strs(&r.san_dns);
    w.uvarint(r.san_ip.len() as u64);
    for ip in &r.san_ip {
        w.str(&ip.to_string());
    }
    w.null_u8(r.eku_present.map(flag));
    w.strs(&r.eku);
    w.strs(&r.key_usage);
    w.null_u8(r.is_ca.map(flag));
    w.null_u8(r.self_signed.map(flag));
    w.opt_str(r.key_type.as_deref());
    w.null_u32(r.key_bits);
    w.opt_str(r.signature_algorithm.as_deref());
    w.opt_str(r.subject_cn.as_deref());
    w.null_u8(r.version.and_then(|v| u8::try_from(v).ok()));
    w.opt_str(r.parse_error.as_deref());
}

/// One `findings` row.
pub fn encode_finding(out: &mut Vec<u8>, f: &Finding, sensor: &str) {
    let mut w = Rb(out);
    w.str(sensor);
    w.time(&f.ts);
    w.str(&f.session_id);
    w.i8(role_code(f.role));
    match &f.cert_sha256 {
        Some(c) => w.fp(c),
        None => w.str(""),
    }
    w.str(&f.scenario);
    w.str(f.rule);
    w.i8(verdict_code(f.verdict));
    w.null_i64(f.effective.as_deref().and_then(rfc3339_to_ms));
    w.str(&f.detail);
    w.i8(direction_code(f.direction));
    w.ip(f.client_ip);
    w.ip(f.server_ip);
    w.u16(f.server_port);
    w.opt_str(f.peer_name.as_deref());
    w.time(&f.validation_time);
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
    fn rowbinary_primitives_follow_the_format() {
        let mut v = Vec::new();
        let mut w = Rb(&mut v);
        w.str("ab");
        w.uvarint(300);
        w.null_u16(None);
        w.null_u16(Some(2));
        w.i8(-1);
        assert_eq!(v, [2, b'a', b'b', 0xac, 0x02, 1, 0, 2, 0, 0xff]);
        let mut v = Vec::new();
        Rb(&mut v).ip("198.18.0.2".parse().unwrap());
        assert_eq!(v, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 2]);
    }

    #[test]
    fn ipv4_is_stored_mapped() {
        let ip: IpAddr = "198.18.0.2".parse().unwrap();
        assert_eq!(ipv6(ip).to_string(), "::ffff:198.18.0.2");
    }
}
