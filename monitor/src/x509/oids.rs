//! Object identifiers the certificate record names, and the names the record contract gives them.
//!
//! Tables hold the DER content octets of each OID (X.690 §8.19), so a lookup is a byte
//! comparison with no allocation; only an OID missing from a table is rendered as dotted text.

use std::borrow::Cow;

use x509_parser::asn1_rs::{oid, Oid};

/// A table row: DER content octets of an OID and the name the record uses for it.
type Row = (&'static [u8], &'static str);

/// Looks `oid` up in `table`, falling back to its dotted form (the record contract's
/// "else the dotted OID").
pub(crate) fn name_or_dotted(table: &[Row], oid: &Oid<'_>) -> Cow<'static, str> {
    match lookup(table, oid) {
        Some(name) => Cow::Borrowed(name),
        None => {
            let mut s = String::new();
            push_dotted(&mut s, oid);
            Cow::Owned(s)
        }
    }
}

/// Appends the dotted form of `oid` (X.690 §8.19), arcs of any size in decimal as
/// python-cryptography's `dotted_string` prints them. asn1-rs's `to_id_string` falls back to hex
/// for arcs beyond u64 (UUID OIDs under 2.25, RFC 4122 §4) unless its `bigint` feature is on.
pub(crate) fn push_dotted(out: &mut String, oid: &Oid<'_>) {
    use std::fmt::Write;
    // Each arc: base-128 digits, high bit = more follow. A final arc cut short is still shown.
    let mut arcs = oid.as_bytes().split_inclusive(|b| b & 0x80 == 0);
    let Some(first) = arcs.next() else {
        return;
    };
    // The first subidentifier packs two arcs: 40 * X + Y with X in 0..=2 (X.690 §8.19.4).
    match arc_u64(first) {
        Some(v) if v < 80 => {
            let _ = write!(out, "{}.{}", v / 40, v % 40);
        }
        Some(v) => {
            let _ = write!(out, "2.{}", v - 80);
        }
        None => {
            out.push_str("2.");
            let mut big = arc_big(first);
            big_sub_small(&mut big, 80);
            push_big(out, &big);
        }
    }
    for arc in arcs {
        out.push('.');
        match arc_u64(arc) {
            Some(v) => {
                let _ = write!(out, "{v}");
            }
            None => push_big(out, &arc_big(arc)),
        }
    }
}

/// An arc's value if it fits in u64.
fn arc_u64(arc: &[u8]) -> Option<u64> {
    arc.iter().try_fold(0u64, |acc, b| {
        acc.checked_mul(128)?.checked_add(u64::from(b & 0x7f))
    })
}

/// Base 10^9 limbs, least significant first: enough arithmetic for the rare arc past u64.
const LIMB: u64 = 1_000_000_000;

fn arc_big(arc: &[u8]) -> Vec<u32> {
    let mut limbs = vec![0u32];
    for b in arc {
        let mut carry = u64::from(b & 0x7f);
        for limb in limbs.iter_mut() {
            let v = u64::from(*limb) * 128 + carry;
            *limb = (v % LIMB) as u32;
            carry = v / LIMB;
        }
        while carry > 0 {
            limbs.push((carry % LIMB) as u32);
            carry /= LIMB;
        }
    }
    limbs
}

/// `big -= n` for `big >= n` (only used on values past u64, so it cannot underflow).
fn big_sub_small(big: &mut [u32], n: u32) {
    let mut borrow = u64::from(n);
    for limb in big.iter_mut() {
        let v = u64::from(*limb);
        if v >= borrow {
            *limb = (v - borrow) as u32;
            return;
        }
        *limb = (v + LIMB - borrow) as u32;
        borrow = 1;
    }
}

fn push_big(out: &mut String, big: &[u32]) {
    use std::fmt::Write;
    let mut limbs = big.iter().rev().skip_while(|&&l| l == 0);
    match limbs.next() {
        Some(top) => {
            let _ = write!(out, "{top}");
        }
        None => out.push('0'),
    }
    for l in limbs {
        let _ = write!(out, "{l:09}");
    }
}

pub(crate) fn lookup(table: &[Row], oid: &Oid<'_>) -> Option<&'static str> {
    let der = oid.as_bytes();
    table.iter().find(|(o, _)| *o == der).map(|(_, n)| *n)
}

/// Attribute types with an RFC 4514 §3 short name, exactly the set python-cryptography's
/// `_NAMEOID_TO_NAME` prints (so emailAddress is NOT here and prints as its dotted OID).
pub(crate) const ATTRIBUTE_TYPES: &[Row] = &[
    (&oid!(raw 2.5.4.3), "CN"),
    (&oid!(raw 2.5.4.7), "L"),
    (&oid!(raw 2.5.4.8), "ST"),
    (&oid!(raw 2.5.4.10), "O"),
    (&oid!(raw 2.5.4.11), "OU"),
    (&oid!(raw 2.5.4.6), "C"),
    (&oid!(raw 2.5.4.9), "STREET"),
    (&oid!(raw 0.9.2342.19200300.100.1.25), "DC"),
    (&oid!(raw 0.9.2342.19200300.100.1.1), "UID"),
];

/// id-at-commonName (X.520).
pub(crate) const COMMON_NAME: &[u8] = &oid!(raw 2.5.4.3);

/// Signature algorithms by their OpenSSL names (as `openssl x509 -text` prints them).
pub(crate) const SIGNATURE_ALGORITHMS: &[Row] = &[
    (&oid!(raw 1.2.840.113549.1.1.11), "sha256WithRSAEncryption"),
    (&oid!(raw 1.2.840.113549.1.1.5), "sha1WithRSAEncryption"),
    (&oid!(raw 1.2.840.113549.1.1.14), "sha224WithRSAEncryption"),
    (&oid!(raw 1.2.840.113549.1.1.12), "sha384WithRSAEncryption"),
    (&oid!(raw 1.2.840.113549.1.1.13), "sha512WithRSAEncryption"),
    (&oid!(raw 1.2.840.113549.1.1.4), "md5WithRSAEncryption"),
    (&oid!(raw 1.2.840.113549.1.1.10), "rsassaPss"),
    (&oid!(raw 1.2.840.10045.4.1), "ecdsa-with-SHA1"),
    (&oid!(raw 1.2.840.10045.4.3.2), "ecdsa-with-SHA256"),
    (&oid!(raw 1.2.840.10045.4.3.3), "ecdsa-with-SHA384"),
    (&oid!(raw 1.2.840.10045.4.3.4), "ecdsa-with-SHA512"),
    (&oid!(raw 2.16.840.1.101.3.4.3.2), "dsa_with_SHA256"),
    (&oid!(raw 1.3.101.112), "ED25519"),
    (&oid!(raw 1.3.101.113), "ED448"),
];

/// sha1WithRSAEncryption: the one RSA PKCS#1 v1.5 signature ring still verifies with a
/// 1024-bit key (`RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY`).
pub(crate) const SHA1_WITH_RSA: &[u8] = &oid!(raw 1.2.840.113549.1.1.5);
/// sha1WithRSA from OIW, which x509-parser's verifier maps to the same legacy algorithm.
pub(crate) const SHA1_WITH_RSA_OIW: &[u8] = &oid!(raw 1.3.14.3.2.29);

/// SubjectPublicKeyInfo algorithms (RFC 3279 §2.3, RFC 8410 §3).
pub(crate) const RSA_ENCRYPTION: &[u8] = &oid!(raw 1.2.840.113549.1.1.1);
/// id-RSASSA-PSS used as a key algorithm: the key is still an RSAPublicKey (RFC 4055 §1.2).
pub(crate) const RSASSA_PSS: &[u8] = &oid!(raw 1.2.840.113549.1.1.10);
pub(crate) const EC_PUBLIC_KEY: &[u8] = &oid!(raw 1.2.840.10045.2.1);
pub(crate) const ED25519: &[u8] = &oid!(raw 1.3.101.112);
pub(crate) const ED448: &[u8] = &oid!(raw 1.3.101.113);
pub(crate) const DSA: &[u8] = &oid!(raw 1.2.840.10040.4.1);

pub(crate) const KEY_TYPES: &[Row] = &[
    (RSA_ENCRYPTION, "RSA"),
    (EC_PUBLIC_KEY, "EC"),
    (ED25519, "Ed25519"),
    (ED448, "Ed448"),
    (DSA, "DSA"),
];

/// Named curves (RFC 5480 §2.1.1.1, RFC 5639 §4.1 for brainpool) and their field size in bits.
pub(crate) const CURVE_BITS: &[(&[u8], u32)] = &[
    (&oid!(raw 1.2.840.10045.3.1.7), 256),   // P-256 / prime256v1
    (&oid!(raw 1.3.132.0.34), 384),          // P-384
    (&oid!(raw 1.3.132.0.35), 521),          // P-521
    (&oid!(raw 1.3.132.0.10), 256),          // secp256k1
    (&oid!(raw 1.3.132.0.33), 224),          // P-224
    (&oid!(raw 1.2.840.10045.3.1.1), 192),   // P-192 / prime192v1
    (&oid!(raw 1.3.36.3.3.2.8.1.1.1), 160),  // brainpoolP160r1
    (&oid!(raw 1.3.36.3.3.2.8.1.1.3), 192),  // brainpoolP192r1
    (&oid!(raw 1.3.36.3.3.2.8.1.1.5), 224),  // brainpoolP224r1
    (&oid!(raw 1.3.36.3.3.2.8.1.1.7), 256),  // brainpoolP256r1
    (&oid!(raw 1.3.36.3.3.2.8.1.1.9), 320),  // brainpoolP320r1
    (&oid!(raw 1.3.36.3.3.2.8.1.1.11), 384), // brainpoolP384r1
    (&oid!(raw 1.3.36.3.3.2.8.1.1.13), 512), // brainpoolP512r1
];

/// Extended key usage purposes (RFC 5280 §4.2.1.12) by the record contract's names.
pub(crate) const EKU_PURPOSES: &[Row] = &[
    (&oid!(raw 1.3.6.1.5.5.7.3.1), "serverAuth"),
    (&oid!(raw 1.3.6.1.5.5.7.3.2), "clientAuth"),
    (&oid!(raw 1.3.6.1.5.5.7.3.4), "emailProtection"),
    (&oid!(raw 1.3.6.1.5.5.7.3.3), "codeSigning"),
    (&oid!(raw 1.3.6.1.5.5.7.3.8), "timeStamping"),
    (&oid!(raw 1.3.6.1.5.5.7.3.9), "OCSPSigning"),
    (&oid!(raw 2.5.29.37.0), "any"),
];

/// Certificate extensions read by the record (RFC 5280 §4.2.1).
pub(crate) const EXT_SUBJECT_KEY_ID: &[u8] = &oid!(raw 2.5.29.14);
pub(crate) const EXT_KEY_USAGE: &[u8] = &oid!(raw 2.5.29.15);
pub(crate) const EXT_SUBJECT_ALT_NAME: &[u8] = &oid!(raw 2.5.29.17);
pub(crate) const EXT_BASIC_CONSTRAINTS: &[u8] = &oid!(raw 2.5.29.19);
pub(crate) const EXT_AUTHORITY_KEY_ID: &[u8] = &oid!(raw 2.5.29.35);
pub(crate) const EXT_EXTENDED_KEY_USAGE: &[u8] = &oid!(raw 2.5.29.37);

/// keyUsage bit names in bit order (RFC 5280 §4.2.1.3), bit 0 first.
pub(crate) const KEY_USAGE_BITS: [&str; 9] = [
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_oid_uses_table_name_without_allocating() {
        let o = oid!(1.2.840 .113549 .1 .1 .11);
        assert!(matches!(
            name_or_dotted(SIGNATURE_ALGORITHMS, &o),
            Cow::Borrowed("sha256WithRSAEncryption")
        ));
    }

    #[test]
    fn unknown_oid_falls_back_to_dotted_text() {
        let o = oid!(1.2.840 .10045 .4 .3 .1); // ecdsa-with-SHA224: not in the contract's list
        assert_eq!(
            name_or_dotted(SIGNATURE_ALGORITHMS, &o),
            "1.2.840.10045.4.3.1"
        );
        let big = oid!(2.25.329800735698586629295641978511506172918);
        assert_eq!(
            name_or_dotted(EKU_PURPOSES, &big),
            "2.25.329800735698586629295641978511506172918"
        );
    }

    #[test]
    fn dotted_form_of_edge_arcs() {
        let dotted = |o: &Oid<'_>| {
            let mut s = String::new();
            push_dotted(&mut s, o);
            s
        };
        assert_eq!(
            dotted(&oid!(0.9.2342 .19200300 .100 .1 .25)),
            "0.9.2342.19200300.100.1.25"
        );
        assert_eq!(dotted(&oid!(1.39)), "1.39");
        // The oid! macro refuses first arcs past 2.39, so these are written as DER octets.
        let raw = |der: &'static [u8]| Oid::new(Cow::Borrowed(der));
        assert_eq!(dotted(&raw(&[0x88, 0x37, 0x03])), "2.999.3");
        assert_eq!(
            dotted(&oid!(1.2.18446744073709551615)),
            "1.2.18446744073709551615"
        );
        assert_eq!(
            dotted(&oid!(1.2.18446744073709551616)),
            "1.2.18446744073709551616"
        );
        // First subidentifier itself past u64: 2.(X - 80).
        let der = &[
            0xa8, 0xb1, 0xf0, 0xbe, 0xdc, 0xed, 0xb9, 0x85, 0xf9, 0xaa, 0x80, 0x80, 0x80, 0x50,
        ];
        assert_eq!(dotted(&raw(der)), "2.100000000000000000000000000000");
        assert_eq!(dotted(&raw(&[])), "");
    }

    #[test]
    fn email_address_has_no_short_name() {
        assert_eq!(
            lookup(ATTRIBUTE_TYPES, &oid!(1.2.840 .113549 .1 .9 .1)),
            None
        );
        assert_eq!(lookup(ATTRIBUTE_TYPES, &oid!(2.5.4 .3)), Some("CN"));
    }
}
