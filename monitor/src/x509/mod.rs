//! X.509 stage: one [`CertificateRecord`] per distinct certificate DER seen on the wire.
//!
//! The record states facts read from the certificate (names, validity, SANs, key usage, key and
//! signature algorithms, whether it is self-signed); judging them (expired, weak, no clientAuth)
//! is policy and belongs to a later stage. A DER that does not parse still yields a record, with
//! `parse_error` set: malformed certificates on a mail gateway are something to report, not a
//! reason to stop.
//!
//! Field formats follow the record contract; names are RFC 4514 strings as python-cryptography
//! writes them ([`name`]), algorithm names are OpenSSL's ([`oids`]). The tests compare every
//! field with python-cryptography's reading of the fixtures in `testdata/` (see `make.sh`).

mod key;
mod name;
mod oids;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::{FromDer, Header, Length, Oid};
use x509_parser::certificate::{X509Certificate, X509CertificateParser};
use x509_parser::error::X509Error;
use x509_parser::extensions::{
    AuthorityKeyIdentifier, BasicConstraints, GeneralName, KeyIdentifier, KeyUsage,
    SubjectAlternativeName,
};
use x509_parser::nom::{Err as NomErr, Parser};
use x509_parser::time::ASN1Time;

use crate::timefmt::rfc3339_ms;

/// Value of the `record` field of every certificate record.
pub const RECORD_KIND: &str = "certificate";

/// SHA-256 of a certificate's DER, the identity of a certificate everywhere in mxcert.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Hashes the certificate's DER exactly as received (no re-encoding).
    pub fn of(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        push_hex(&mut s, &self.0);
        s
    }

    /// Hex into a stack buffer: Display and Serialize run once per record and need no heap.
    fn hex_buf(&self, buf: &mut [u8; 64]) {
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = HEX[usize::from(b >> 4)];
            buf[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        self.hex_buf(&mut buf);
        // Only ASCII hex digits were written, so this cannot fail.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One certificate as the record contract describes it. Field order is the serialized order.
///
/// When the DER did not parse, `parse_error` says why, every `Option` is `None` (null) and every
/// list is empty: lists stay lists so that sinks can type them as arrays.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct CertificateRecord {
    /// Always [`RECORD_KIND`].
    pub record: &'static str,
    /// SHA-256 of the DER; serialized as lowercase hex.
    pub sha256: Fingerprint,
    /// RFC 4514 string (RDNs in reverse encoding order), as python-cryptography writes it.
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// Lowercase hex without leading zeros; "0"; "-" and the magnitude for a negative serial.
    pub serial: Option<String>,
    /// RFC 3339 UTC with milliseconds.
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    /// dNSName SANs in certificate order.
    pub san_dns: Vec<String>,
    /// iPAddress SANs in certificate order; serialized as text (`IpAddr` Display).
    pub san_ip: Vec<IpAddr>,
    /// Whether an extendedKeyUsage extension is present (RFC 5280 §4.2.1.12: absent means
    /// any purpose, which is not the same as an empty list).
    pub eku_present: Option<bool>,
    /// Purposes in certificate order: serverAuth, clientAuth, emailProtection, codeSigning,
    /// timeStamping, OCSPSigning, any, else the dotted OID.
    pub eku: Vec<Cow<'static, str>>,
    /// Set keyUsage bits in bit order (RFC 5280 §4.2.1.3); empty when the extension is absent.
    pub key_usage: Vec<&'static str>,
    /// basicConstraints cA; false when the extension is absent.
    pub is_ca: Option<bool>,
    /// Subject == issuer (raw DER) and the signature verifies with the certificate's own key.
    pub self_signed: Option<bool>,
    /// "RSA", "EC", "Ed25519", "Ed448", "DSA", else the dotted OID of the key algorithm.
    pub key_type: Option<Cow<'static, str>>,
    pub key_bits: Option<u32>,
    /// OpenSSL name of the signature algorithm, else the dotted OID.
    pub signature_algorithm: Option<Cow<'static, str>>,
    /// First commonName in encoding order, unescaped.
    pub subject_cn: Option<String>,
    /// 1 for v1 .. 3 for v3 (the encoded value plus one).
    pub version: Option<u32>,
    /// Why the DER could not be read; `None` when it parsed.
    pub parse_error: Option<String>,
}

/// Why a certificate's DER could not be read. Carried as text in `parse_error`.
#[derive(Debug, thiserror::Error)]
enum CertParseError {
    /// The input ends inside the certificate: a cut capture or a short Certificate message.
    #[error("truncated certificate")]
    Truncated,
    /// x509-parser rejected the structure.
    #[error("malformed certificate: {0}")]
    Malformed(X509Error),
    /// Octets follow the certificate's outer SEQUENCE; the fingerprint would cover octets that
    /// are not the certificate, so nothing is claimed about it.
    #[error("{extra} octets after the certificate")]
    TrailingData { extra: usize },
}

impl CertificateRecord {
    /// Reads `der`. Never fails: a DER that x509-parser rejects still yields a record with
    /// `sha256` and `parse_error` set, every other field null/empty (bad traffic is data).
    pub fn from_der(der: &[u8]) -> CertificateRecord {
        let sha256 = Fingerprint::of(der);
        match parse(der) {
            Ok(cert) => Self::from_cert(sha256, &cert),
            Err(e) => Self::unparsed(sha256, e.to_string()),
        }
    }

    /// The certificate's identity (SHA-256 of its DER).
    pub fn fingerprint(&self) -> Fingerprint {
        self.sha256
    }

    fn unparsed(sha256: Fingerprint, why: String) -> CertificateRecord {
        CertificateRecord {
            record: RECORD_KIND,
            sha256,
            subject: None,
            issuer: None,
            serial: None,
            not_before: None,
            not_after: None,
            san_dns: Vec::new(),
            san_ip: Vec::new(),
            eku_present: None,
            eku: Vec::new(),
            key_usage: Vec::new(),
            is_ca: None,
            self_signed: None,
            key_type: None,
            key_bits: None,
            signature_algorithm: None,
            subject_cn: None,
            version: None,
            parse_error: Some(why),
        }
    }

    fn from_cert(sha256: Fingerprint, cert: &X509Certificate<'_>) -> CertificateRecord {
        let ext = Extensions::of(cert);
        let (san_dns, san_ip) = ext.san.map(subject_alt_names).unwrap_or_default();
        let (key_type, key_bits) = key::key_facts(cert.public_key());
        let ski = ext
            .ski
            .and_then(|v| KeyIdentifier::from_der(v).ok())
            .map(|(_, k)| k.0);
        let aki = ext
            .aki
            .and_then(|v| AuthorityKeyIdentifier::from_der(v).ok())
            .and_then(|(_, a)| a.key_identifier)
            .map(|k| k.0);
        CertificateRecord {
            record: RECORD_KIND,
            sha256,
            subject: Some(name::rfc4514(cert.subject())),
            issuer: Some(name::rfc4514(cert.issuer())),
            serial: Some(serial_hex(cert.raw_serial())),
            not_before: asn1_time(cert.validity().not_before),
            not_after: asn1_time(cert.validity().not_after),
            san_dns,
            san_ip,
            eku_present: Some(ext.eku.is_some()),
            eku: ext.eku.map(eku_names).unwrap_or_default(),
            key_usage: ext.ku.map(key_usage_names).unwrap_or_default(),
            is_ca: Some(
                ext.bc
                    .and_then(|v| BasicConstraints::from_der(v).ok())
                    .is_some_and(|(_, bc)| bc.ca),
            ),
            self_signed: Some(self_signed(cert, key_bits, ski, aki)),
            key_type: Some(key_type),
            key_bits,
            signature_algorithm: Some(oids::name_or_dotted(
                oids::SIGNATURE_ALGORITHMS,
                &cert.signature_algorithm.algorithm,
            )),
            subject_cn: name::first_common_name(cert.subject()),
            version: Some(cert.version().0.saturating_add(1)),
            parse_error: None,
        }
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertParseError> {
    // Extensions are left unparsed here and the few the record needs are parsed below: the
    // rest (SCT lists, policies, CRL distribution points) would only cost allocations, and a
    // malformed one of them must not cost the record.
    // A certificate cut short (a capture that missed a segment) is told apart from a broken
    // one by its outer SEQUENCE header alone; x509-parser reports it as whatever inner element
    // ran out first.
    if let Ok((rest, hdr)) = Header::from_der(der) {
        if matches!(hdr.length(), Length::Definite(len) if len > rest.len()) {
            return Err(CertParseError::Truncated);
        }
    }
    let mut parser = X509CertificateParser::new().with_deep_parse_extensions(false);
    match parser.parse(der) {
        Ok((rest, _)) if !rest.is_empty() => {
            Err(CertParseError::TrailingData { extra: rest.len() })
        }
        Ok((_, cert)) => Ok(cert),
        Err(NomErr::Incomplete(_)) => Err(CertParseError::Truncated),
        Err(NomErr::Error(e) | NomErr::Failure(e)) => Err(CertParseError::Malformed(e)),
    }
}

/// The raw values of the extensions the record reads. The first instance of each wins:
/// RFC 5280 §4.2 forbids repeats, and a repeat is bad data, not a reason to lose the record.
#[derive(Default)]
struct Extensions<'a> {
    san: Option<&'a [u8]>,
    eku: Option<&'a [u8]>,
    ku: Option<&'a [u8]>,
    bc: Option<&'a [u8]>,
    ski: Option<&'a [u8]>,
    aki: Option<&'a [u8]>,
}

impl<'a> Extensions<'a> {
    fn of(cert: &X509Certificate<'a>) -> Self {
        let mut e = Extensions::default();
        for ext in cert.extensions() {
            let slot = match ext.oid.as_bytes() {
                oids::EXT_SUBJECT_ALT_NAME => &mut e.san,
                oids::EXT_EXTENDED_KEY_USAGE => &mut e.eku,
                oids::EXT_KEY_USAGE => &mut e.ku,
                oids::EXT_BASIC_CONSTRAINTS => &mut e.bc,
                oids::EXT_SUBJECT_KEY_ID => &mut e.ski,
                oids::EXT_AUTHORITY_KEY_ID => &mut e.aki,
                _ => continue,
            };
            slot.get_or_insert(ext.value);
        }
        e
    }
}

/// dNSName and iPAddress entries of a subjectAltName (RFC 5280 §4.2.1.6), in order. An
/// unparseable extension contributes nothing; the other facts of the record still stand.
fn subject_alt_names(value: &[u8]) -> (Vec<String>, Vec<IpAddr>) {
    let Ok((_, san)) = SubjectAlternativeName::from_der(value) else {
        return (Vec::new(), Vec::new());
    };
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for gn in &san.general_names {
        match gn {
            GeneralName::DNSName(s) => dns.push((*s).to_owned()),
            // A dNSName that is not even UTF-8 (it should be IA5): keep what can be shown
            // rather than drop a name a client would still try to match.
            GeneralName::Invalid(tag, data) if tag.0 == 2 => {
                dns.push(String::from_utf8_lossy(data).into_owned())
            }
            // §4.2.1.6: four octets for IPv4, sixteen for IPv6. Other lengths (the
            // address+mask form belongs to name constraints) are not an address.
            GeneralName::IPAddress(b) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                    ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                    ips.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    (dns, ips)
}

/// Purposes of an extendedKeyUsage in certificate order, duplicates kept. Parsed here because
/// x509-parser's `ExtendedKeyUsage` is a set of flags and loses the order.
fn eku_names(value: &[u8]) -> Vec<Cow<'static, str>> {
    match <Vec<Oid<'_>>>::from_der(value) {
        Ok((_, oids)) => oids
            .iter()
            .map(|o| oids::name_or_dotted(oids::EKU_PURPOSES, o))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn key_usage_names(value: &[u8]) -> Vec<&'static str> {
    match KeyUsage::from_der(value) {
        Ok((_, ku)) => oids::KEY_USAGE_BITS
            .iter()
            .enumerate()
            .filter(|(bit, _)| ku.flags & (1 << bit) != 0)
            .map(|(_, name)| *name)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Subject == issuer (raw DER of the Name, RFC 5280 §7.1 allows nothing looser for this) and
/// the signature verifies under the certificate's own public key.
///
/// The verifier (x509-parser's `verify` feature, i.e. ring) covers RSA PKCS#1 v1.5 and PSS with
/// SHA-2 (SHA-1 only for PKCS#1), ECDSA P-256/P-384 with SHA-256/384, and Ed25519; it also
/// refuses RSA moduli outside 2048..=8192 bits (1024 for SHA-1). For everything else (DSA,
/// Ed448, P-521, brainpool, secp256k1, small RSA) the signature is NOT checked and we fall back
/// to key identifiers: self-signed unless an authorityKeyIdentifier keyIdentifier is present
/// and differs from the subjectKeyIdentifier (RFC 5280 §4.2.1.1 lets a self-signed certificate
/// omit the AKI). That fallback can call a same-name certificate signed by another key
/// self-signed when the issuer left out key identifiers.
fn self_signed(
    cert: &X509Certificate<'_>,
    key_bits: Option<u32>,
    ski: Option<&[u8]>,
    aki: Option<&[u8]>,
) -> bool {
    if cert.subject().as_raw() != cert.issuer().as_raw() {
        return false;
    }
    let key_ids_agree = || aki.is_none() || aki == ski;
    match cert.verify_signature(None) {
        Ok(()) => true,
        Err(X509Error::SignatureUnsupportedAlgorithm) => key_ids_agree(),
        Err(_) if rsa_size_refused_by_verifier(cert, key_bits) => key_ids_agree(),
        Err(_) => false,
    }
}

/// Whether ring refuses this RSA key for its size alone, whatever the signature: its
/// `RSA_PKCS1_2048_8192_*` / `RSA_PSS_2048_8192_*` verifiers want 2048..=8192 bits and
/// `RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY` 1024..=8192.
fn rsa_size_refused_by_verifier(cert: &X509Certificate<'_>, key_bits: Option<u32>) -> bool {
    if cert.public_key().algorithm.algorithm.as_bytes() != oids::RSA_ENCRYPTION {
        return false;
    }
    let Some(bits) = key_bits else {
        return false;
    };
    let min = match cert.signature_algorithm.algorithm.as_bytes() {
        oids::SHA1_WITH_RSA | oids::SHA1_WITH_RSA_OIW => 1024,
        _ => 2048,
    };
    !(min..=8192).contains(&bits)
}

/// RFC 3339 UTC with milliseconds. UTCTime and GeneralizedTime reach year 9999 (RFC 5280
/// §4.1.2.5 even gives 99991231235959Z a meaning), past the i64 nanoseconds that
/// [`rfc3339_ms`] takes (year 2262), so later times are formatted here in the same shape.
fn asn1_time(t: ASN1Time) -> Option<String> {
    let secs = t.timestamp();
    let ms = t.to_datetime().millisecond();
    let ns = secs
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(i64::from(ms) * 1_000_000));
    if let Some(ns) = ns {
        return Some(rfc3339_ms(ns));
    }
    let dt = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        ms
    ))
}

/// Serial number (RFC 5280 §4.1.2.2) from the INTEGER's content octets, which are two's
/// complement (X.690 §8.3): lowercase hex of the magnitude without leading zeros, "-" in front
/// when negative. RFC 5280 wants it positive; CAs have issued zero and negative ones.
fn serial_hex(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() * 2 + 1);
    if raw.first().is_some_and(|b| b & 0x80 != 0) {
        let mut magnitude: Vec<u8> = raw.iter().map(|b| !b).collect();
        for b in magnitude.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        out.push('-');
        push_hex_trimmed(&mut out, &magnitude);
    } else {
        push_hex_trimmed(&mut out, raw);
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends lowercase hex of `bytes`.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

/// Lowercase hex of a big-endian unsigned integer without leading zero digits; "0" for zero.
fn push_hex_trimmed(out: &mut String, be: &[u8]) {
    let Some(first) = be.iter().position(|&b| b != 0) else {
        out.push('0');
        return;
    };
    let top = be[first];
    if top >= 0x10 {
        out.push(char::from(HEX[usize::from(top >> 4)]));
    }
    out.push(char::from(HEX[usize::from(top & 0x0f)]));
    push_hex(out, &be[first + 1..]);
}

#[cfg(test)]
mod tests;
