//! Distinguished names as RFC 4514 strings, byte for byte as python-cryptography's
//! `Name.rfc4514_string()` writes them, so records compare with what operators see in Python
//! tooling.

use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use super::oids;

/// Formats `name` per RFC 4514 §2.1: RDNs in REVERSE order of the encoding joined by ',',
/// the attributes of a multi-valued RDN (§2.2) joined by '+' in encoding order.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    // The escaped text is rarely longer than the DER it came from.
    let mut out = String::with_capacity(name.as_raw().len());
    // x509-parser's RDN iterator runs forwards only; names have a handful of RDNs.
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.into_iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            push_attribute(&mut out, atv);
        }
    }
    out
}

/// The first commonName in encoding order, unescaped, or `None` when the name has none.
pub(crate) fn first_common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_attributes()
        .find(|atv| atv.attr_type().as_bytes() == oids::COMMON_NAME)
        .map(|atv| {
            let mut s = String::new();
            match decode_string(atv.attr_value()) {
                Some(v) => s.push_str(&v),
                None => push_der_hex(&mut s, atv.attr_value()),
            }
            s
        })
}

fn push_attribute(out: &mut String, atv: &AttributeTypeAndValue<'_>) {
    match oids::lookup(oids::ATTRIBUTE_TYPES, atv.attr_type()) {
        Some(short) => out.push_str(short),
        None => oids::push_dotted(out, atv.attr_type()),
    }
    out.push('=');
    match decode_string(atv.attr_value()) {
        Some(v) => push_escaped(out, &v),
        // RFC 4514 §2.4: a value that is not a string is written as '#' and the hex of its
        // BER (here DER) encoding. Undecodable "strings" take the same form rather than
        // failing the record: bad traffic is data.
        None => push_der_hex(out, atv.attr_value()),
    }
}

/// Decodes a directory string the way python-cryptography does (src/rust/src/x509/common.rs,
/// `parse_name_attribute`): BMPString as UTF-16BE, UniversalString as UTF-32BE, every other
/// string type as UTF-8 whatever its tag claims (TeletexString, PrintableString with '*', ...).
/// `None` for non-string types and for octets that do not decode.
fn decode_string<'a>(value: &Any<'a>) -> Option<std::borrow::Cow<'a, str>> {
    let data = value.data;
    match value.tag() {
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
                .map(Into::into)
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .map(Into::into)
        }
        Tag::Utf8String
        | Tag::NumericString
        | Tag::PrintableString
        | Tag::TeletexString
        | Tag::VideotexString
        | Tag::Ia5String
        | Tag::GraphicString
        | Tag::VisibleString
        | Tag::GeneralString => std::str::from_utf8(data).ok().map(Into::into),
        _ => None,
    }
}

/// RFC 4514 §2.4 escaping, reproducing python-cryptography's `_escape_dn_value` exactly,
/// including its quirks: NUL becomes `\00`, a leading '#' is always escaped, a leading space
/// only when the (escaped) value is longer than one character, and a trailing space always.
fn push_escaped(out: &mut String, value: &str) {
    if value.is_empty() {
        return;
    }
    let start = out.len();
    for c in value.chars() {
        match c {
            '\\' | '"' | '+' | ',' | ';' | '<' | '>' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    let escaped = &out[start..];
    // Python tests the ESCAPED string: " " alone is not "leading" (len 1), but it is trailing.
    // Byte length works for the `> 1` test because a leading ' ' is a single byte.
    if escaped.starts_with('#') || (escaped.starts_with(' ') && escaped.len() > 1) {
        out.insert(start, '\\');
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
}

/// '#' followed by the lowercase hex of the value's DER encoding (RFC 4514 §2.4).
fn push_der_hex(out: &mut String, value: &Any<'_>) {
    out.push('#');
    // Re-encoding an `Any` parsed from DER gives back the same octets; should it fail, the
    // content octets alone still say what was there.
    match value.to_der_vec() {
        Ok(der) => super::push_hex(out, &der),
        Err(_) => super::push_hex(out, value.data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::asn1_rs::FromDer;

    fn escaped(v: &str) -> String {
        let mut s = String::new();
        push_escaped(&mut s, v);
        s
    }

    /// Expected strings are what python-cryptography 48's `_escape_dn_value` returns.
    #[test]
    fn escaping_matches_python_cryptography() {
        let cases = [
            ("", ""),
            ("plain", "plain"),
            (" ", "\\ "),
            ("  ", "\\ \\ "),
            (" a", "\\ a"),
            ("a ", "a\\ "),
            ("#", "\\#"),
            ("a#", "a#"),
            ("#a ", "\\#a\\ "),
            ("a,b+c;d", "a\\,b\\+c\\;d"),
            ("\"q\" <x>", "\\\"q\\\" \\<x\\>"),
            ("back\\slash", "back\\\\slash"),
            ("nul\0byte", "nul\\00byte"),
            ("=", "="),
            ("Zürich", "Zürich"),
        ];
        for (input, want) in cases {
            assert_eq!(escaped(input), want, "escaping {input:?}");
        }
    }

    fn name(der: &[u8]) -> X509Name<'_> {
        let (rest, n) = X509Name::from_der(der).expect("test name parses");
        assert!(rest.is_empty());
        n
    }

    #[test]
    fn non_string_value_is_hex_of_its_der() {
        // SEQUENCE { SET { SEQUENCE { OID 2.5.4.45 (x500UniqueIdentifier), BIT STRING 00 ab } } }
        let der = [
            0x30, 0x0e, 0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x2d, 0x03, 0x03, 0x00,
            0xab, 0xcd,
        ];
        assert_eq!(rfc4514(&name(&der)), "2.5.4.45=#030300abcd");
    }

    #[test]
    fn undecodable_string_is_hex_of_its_der() {
        // CN as UTF8String holding 0xff (not UTF-8), then CN as an odd-length BMPString.
        let der = [
            0x30, 0x18, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, 0xff,
            0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x1e, 0x01, 0x41,
        ];
        let n = name(&der);
        assert_eq!(rfc4514(&n), "CN=#1e0141,CN=#0c01ff");
        assert_eq!(first_common_name(&n).as_deref(), Some("#0c01ff"));
    }

    #[test]
    fn empty_name_is_empty_string() {
        let n = name(&[0x30, 0x00]);
        assert_eq!(rfc4514(&n), "");
        assert_eq!(first_common_name(&n), None);
    }
}
