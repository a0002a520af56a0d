//! Subject public key type and size.

use std::borrow::Cow;

use x509_parser::asn1_rs::{FromDer, Integer, Oid, Tag};
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::oids;

/// Key type name and size in bits; the size is `None` when the key cannot be measured
/// (unknown algorithm, unnamed or unknown curve, malformed key).
pub(crate) fn key_facts(spki: &SubjectPublicKeyInfo<'_>) -> (Cow<'static, str>, Option<u32>) {
    let alg = &spki.algorithm.algorithm;
    let ty = oids::name_or_dotted(oids::KEY_TYPES, alg);
    let bits = match alg.as_bytes() {
        // A PSS-restricted key is an RSAPublicKey all the same (RFC 4055 §1.2).
        oids::RSA_ENCRYPTION | oids::RSASSA_PSS => {
            RSAPublicKey::from_der(&spki.subject_public_key.data)
                .ok()
                .and_then(|(_, k)| bit_length(k.modulus))
        }
        // RFC 5480 §2.1.1: namedCurve; implicitCurve and specifiedCurve are not measured.
        oids::EC_PUBLIC_KEY => spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .and_then(|curve| curve_bits(&curve)),
        // RFC 8410 §3: fixed sizes, as the record contract counts them (Ed448 keys are 57 octets).
        oids::ED25519 => Some(256),
        oids::ED448 => Some(456),
        // RFC 3279 §2.3.2: Dss-Parms ::= SEQUENCE { p INTEGER, q INTEGER, g INTEGER }; the size
        // of a DSA key is that of p.
        oids::DSA => spki
            .algorithm
            .parameters
            .as_ref()
            .filter(|p| p.tag() == Tag::Sequence)
            .and_then(|p| Integer::from_der(p.data).ok())
            .and_then(|(_, p)| bit_length(p.as_ref())),
        _ => None,
    };
    (ty, bits)
}

fn curve_bits(curve: &Oid<'_>) -> Option<u32> {
    let der = curve.as_bytes();
    oids::CURVE_BITS
        .iter()
        .find(|(o, _)| *o == der)
        .map(|(_, bits)| *bits)
}

/// Bit length of a big-endian unsigned integer, ignoring leading zero octets (DER puts one in
/// front of a modulus whose top bit is set, X.690 §8.3.2). Exact, like python-cryptography's
/// `key_size`, so an odd 2047-bit modulus reads 2047.
pub(crate) fn bit_length(be: &[u8]) -> Option<u32> {
    let first = be.iter().position(|&b| b != 0)?;
    let bytes = u32::try_from(be.len() - first).ok()?;
    let top = be[first];
    bytes.checked_mul(8).map(|b| b - top.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_strips_sign_octet_and_counts_exact_bits() {
        assert_eq!(bit_length(&[]), None);
        assert_eq!(bit_length(&[0, 0]), None);
        assert_eq!(bit_length(&[1]), Some(1));
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), Some(16));
        assert_eq!(bit_length(&[0x7f, 0xff]), Some(15));
        let mut m = vec![0u8; 257];
        m[1] = 0xc3;
        assert_eq!(bit_length(&m), Some(2048));
    }
}
