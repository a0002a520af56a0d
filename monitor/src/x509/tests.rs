//! Fixture tests: every field of every certificate in `testdata/` against python-cryptography's
//! reading of it (`testdata/expected.json`, written by `testdata/make.sh`), and malformed input.

use super::*;

use std::path::PathBuf;

use serde_json::Value;

/// Serialized field order fixed by the record contract.
const FIELDS: [&str; 20] = [
    "record",
    "sha256",
    "subject",
    "issuer",
    "serial",
    "not_before",
    "not_after",
    "san_dns",
    "san_ip",
    "eku_present",
    "eku",
    "key_usage",
    "is_ca",
    "self_signed",
    "key_type",
    "key_bits",
    "signature_algorithm",
    "subject_cn",
    "version",
    "parse_error",
];

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/x509/testdata")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = testdata().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// All `*.der` fixtures, sorted by name.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(testdata())
        .expect("testdata directory")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".der"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let der = fixture(&n);
            (n, der)
        })
        .collect()
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(testdata().join("expected.json")).expect("expected.json");
    match serde_json::from_str(&text).expect("expected.json is JSON") {
        Value::Object(m) => m,
        other => panic!("expected.json is not an object: {other}"),
    }
}

#[test]
fn every_field_matches_python_cryptography() {
    let expected = expected();
    let fixtures = fixtures();
    assert!(fixtures.len() >= 20, "only {} fixtures", fixtures.len());
    for (file, der) in &fixtures {
        let want = expected
            .get(file)
            .unwrap_or_else(|| panic!("{file} missing from expected.json: rerun make.sh"));
        let got = serde_json::to_value(CertificateRecord::from_der(der)).expect("serializes");
        let (Value::Object(got), Value::Object(want)) = (&got, want) else {
            panic!("{file}: record is not a JSON object");
        };
        for field in FIELDS {
            assert_eq!(
                got.get(field),
                want.get(field),
                "{file}: field {field} differs (left: mxcert, right: python-cryptography)"
            );
        }
        assert_eq!(got.len(), FIELDS.len(), "{file}: unexpected extra fields");
    }
    assert_eq!(
        expected.len(),
        fixtures.len(),
        "expected.json names missing fixtures"
    );
}

#[test]
fn fields_serialize_in_contract_order() {
    let json = serde_json::to_string(&CertificateRecord::from_der(&fixture("leaf_rsa2048.der")))
        .expect("serializes");
    let mut last = 0;
    for field in FIELDS {
        let at = json
            .find(&format!("\"{field}\":"))
            .unwrap_or_else(|| panic!("{field} missing from {json}"));
        assert!(at >= last, "{field} out of order in {json}");
        last = at;
    }
    assert!(json.starts_with("{\"record\":\"certificate\",\"sha256\":\""));
}

#[test]
fn fingerprint_is_sha256_of_der_as_lowercase_hex() {
    let fp = Fingerprint::of(b"abc");
    let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(fp.to_hex(), hex);
    assert_eq!(fp.to_string(), hex);
    assert_eq!(format!("{fp:?}"), hex);
    assert_eq!(
        serde_json::to_string(&fp).expect("serializes"),
        format!("\"{hex}\"")
    );
    let der = fixture("ec_p256.der");
    let rec = CertificateRecord::from_der(&der);
    assert_eq!(rec.fingerprint(), Fingerprint::of(&der));
}

#[test]
fn typed_facts_of_the_rsa_leaf() {
    let rec = CertificateRecord::from_der(&fixture("leaf_rsa2048.der"));
    assert_eq!(
        rec.san_ip,
        vec![
            "192.0.2.25".parse::<IpAddr>().expect("ip"),
            "2001:db8::25".parse::<IpAddr>().expect("ip"),
        ]
    );
    assert_eq!(rec.eku, ["serverAuth", "clientAuth"]);
    assert_eq!(rec.is_ca, Some(false));
    assert_eq!(rec.self_signed, Some(false));
    assert_eq!(rec.parse_error, None);
}

/// The fixtures whose signature the verifier cannot check, so that `self_signed` came from the
/// key-identifier fallback; keeps the fallback's coverage from silently disappearing.
#[test]
fn fallback_cases_are_really_unverifiable() {
    for file in [
        "dsa.der",
        "ed448.der",
        "ec_p521.der",
        "ec_brainpool384.der",
        "ec_secp256k1.der",
        "rsa1024_sha256.der",
        "imposter_ed448.der",
    ] {
        let der = fixture(file);
        let (_, cert) = X509CertificateParser::new()
            .parse(&der)
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        let key_bits = key::key_facts(cert.public_key()).1;
        let unverifiable = matches!(
            cert.verify_signature(None),
            Err(X509Error::SignatureUnsupportedAlgorithm)
        ) || rsa_size_refused_by_verifier(&cert, key_bits);
        assert!(unverifiable, "{file} is verified by ring after all");
    }
}

#[test]
fn serial_hex_handles_sign_and_leading_zeros() {
    assert_eq!(serial_hex(&[]), "0");
    assert_eq!(serial_hex(&[0]), "0");
    assert_eq!(serial_hex(&[0x00, 0x80, 0xaa]), "80aa");
    assert_eq!(serial_hex(&[0x01, 0x02]), "102");
    assert_eq!(serial_hex(&[0xff]), "-1");
    assert_eq!(serial_hex(&[0xed, 0xcc]), "-1234");
    assert_eq!(serial_hex(&[0x80, 0x00]), "-8000");
    assert_eq!(serial_hex(&[0xff, 0x00]), "-100");
}

fn assert_unparsed(rec: &CertificateRecord, der: &[u8], what: &str) {
    assert!(rec.parse_error.is_some(), "{what}: parsed");
    let blank = CertificateRecord::unparsed(Fingerprint::of(der), String::new());
    assert_eq!(
        CertificateRecord {
            parse_error: Some(String::new()),
            ..rec.clone()
        },
        blank,
        "{what}: facts set despite parse error"
    );
}

#[test]
fn every_prefix_of_every_fixture_is_a_parse_error() {
    for (file, der) in fixtures() {
        for len in 0..der.len() {
            let prefix = &der[..len];
            let rec = CertificateRecord::from_der(prefix);
            assert_unparsed(&rec, prefix, &format!("{file}[..{len}]"));
        }
    }
}

#[test]
fn parse_errors_say_why() {
    let der = fixture("ec_p256.der");
    for (len, want) in [
        (0, "truncated certificate"),
        (1, "truncated certificate"),
        (100, "truncated certificate"),
    ] {
        let rec = CertificateRecord::from_der(&der[..len]);
        let why = rec.parse_error.unwrap_or_default();
        assert!(why.starts_with(want), "prefix {len}: {why:?}");
    }
    let rec = CertificateRecord::from_der(b"\x04\x00");
    assert!(rec.parse_error.is_some_and(|e| e.starts_with("malformed")));
}

#[test]
fn trailing_octets_are_a_parse_error() {
    let mut der = fixture("ed25519.der");
    der.push(0);
    let rec = CertificateRecord::from_der(&der);
    assert_unparsed(&rec, &der, "trailing zero");
    assert_eq!(
        rec.parse_error.as_deref(),
        Some("1 octets after the certificate")
    );
}

#[test]
fn garbage_never_panics() {
    assert_unparsed(&CertificateRecord::from_der(&[]), &[], "empty");
    // A fixed xorshift stream: reproducible garbage, some of it starting like a SEQUENCE.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..2000 {
        let len = round % 300;
        let mut buf = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(x as u8);
        }
        if round % 2 == 0 && len >= 4 {
            buf[0] = 0x30;
            buf[1] = 0x82;
        }
        let rec = CertificateRecord::from_der(&buf);
        assert_eq!(rec.fingerprint(), Fingerprint::of(&buf));
    }
}

#[test]
fn corrupting_any_octet_never_panics() {
    // Every octet of two certificates (one RSA-verified, one with exotic names) set to a few
    // values: structure, lengths, strings, extensions and signatures all get hit.
    for file in ["leaf_rsa2048.der", "names_exotic.der", "escaping.der"] {
        let der = fixture(file);
        for i in 0..der.len() {
            for v in [0x00, 0xff, der[i] ^ 0x01, der[i].wrapping_add(0x80)] {
                let mut bad = der.clone();
                bad[i] = v;
                let rec = CertificateRecord::from_der(&bad);
                if rec.parse_error.is_some() {
                    assert_unparsed(&rec, &bad, &format!("{file}[{i}]={v:#04x}"));
                }
            }
        }
    }
}

#[test]
fn far_future_not_after_is_formatted() {
    // 99991231235959Z, RFC 5280 §4.1.2.5's "no well-defined expiration date".
    let t = ASN1Time::from_timestamp(253_402_300_799).expect("valid time");
    assert_eq!(asn1_time(t).as_deref(), Some("9999-12-31T23:59:59.000Z"));
    let t = ASN1Time::from_timestamp(0).expect("valid time");
    assert_eq!(asn1_time(t).as_deref(), Some("1970-01-01T00:00:00.000Z"));
    let t = ASN1Time::from_timestamp(-631_152_000).expect("valid time");
    assert_eq!(asn1_time(t).as_deref(), Some("1950-01-01T00:00:00.000Z"));
}
