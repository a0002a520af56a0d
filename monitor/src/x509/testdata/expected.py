#!/usr/bin/env python3
"""Writes names_exotic.der and expected.json for every *.der beside this file.

Run by make.sh. The record fields are computed with python-cryptography, independently of
x509-parser, so monitor/src/x509 is checked against a second reader of the same DER.
"""

import datetime
import hashlib
import ipaddress
import json
import pathlib
import warnings

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtensionOID, NameOID

HERE = pathlib.Path(__file__).resolve().parent

# OpenSSL's short names (OBJ_nid2ln / OBJ_nid2sn as `openssl x509 -text` prints them); the
# record contract lists exactly these, anything else is the dotted OID.
SIG_NAMES = {
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.14": "sha224WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "2.16.840.1.101.3.4.3.2": "dsa_with_SHA256",
    "1.3.101.112": "ED25519",
    "1.3.101.113": "ED448",
}
KEY_NAMES = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.10045.2.1": "EC",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
    "1.2.840.10040.4.1": "DSA",
}
EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "serverAuth",
    "1.3.6.1.5.5.7.3.2": "clientAuth",
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.8": "timeStamping",
    "1.3.6.1.5.5.7.3.9": "OCSPSigning",
    "2.5.29.37.0": "any",
}
KU_BITS = [
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
]
KU_NAMES = [
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
]


def make_names_exotic() -> None:
    """A certificate whose names use encodings and values openssl's -subj cannot express."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.COUNTRY_NAME, "CH")]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, " ")]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.LOCALITY_NAME, "Genève", _ASN1Type.BMPString)]
            ),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(
                        NameOID.ORGANIZATION_NAME, "Univ 𝄞", _ASN1Type.UniversalString
                    )
                ]
            ),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(
                        NameOID.ORGANIZATIONAL_UNIT_NAME, "nul\x00byte", _ASN1Type.UTF8String
                    ),
                    x509.NameAttribute(NameOID.TITLE, "t61", _ASN1Type.T61String),
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, "0042", _ASN1Type.PrintableString),
                ]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.COMMON_NAME, "BMP ünï", _ASN1Type.BMPString)]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.COMMON_NAME, "second cn")]
            ),
        ]
    )
    issuer = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "  two  "),
            x509.NameAttribute(NameOID.COMMON_NAME, "#", _ASN1Type.IA5String),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "a,b+c;d", _ASN1Type.IA5String),
        ]
    )
    start = datetime.datetime(2024, 2, 29, 12, 34, 56, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(0x0102030405060708090A0B0C0D0E0F1011121314)
        .not_valid_before(start)
        .not_valid_after(datetime.datetime(2050, 1, 1, tzinfo=datetime.timezone.utc))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("fe80::1:2"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None)
    )
    (HERE / "names_exotic.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))


def rfc3339_ms(t: datetime.datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond // 1000:03d}Z"


def ext(cert: x509.Certificate, oid):
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def self_signed(cert: x509.Certificate) -> bool:
    """Subject == issuer and the signature verifies under the certificate's own key.

    Verifies with the key directly rather than verify_directly_issued_by, which refuses
    SHA-1 signatures by policy; the record states a fact about the signature, not a policy.
    """
    if cert.subject.public_bytes() != cert.issuer.public_bytes():
        return False
    pk = cert.public_key()
    sig, tbs = cert.signature, cert.tbs_certificate_bytes
    try:
        if isinstance(pk, rsa.RSAPublicKey):
            pk.verify(sig, tbs, cert.signature_algorithm_parameters, cert.signature_hash_algorithm)
        elif isinstance(pk, ec.EllipticCurvePublicKey):
            pk.verify(sig, tbs, cert.signature_algorithm_parameters)
        elif isinstance(pk, dsa.DSAPublicKey):
            pk.verify(sig, tbs, cert.signature_hash_algorithm)
        else:
            pk.verify(sig, tbs)
        return True
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False


def key_bits(pk) -> int | None:
    if isinstance(pk, (rsa.RSAPublicKey, dsa.DSAPublicKey)):
        return pk.key_size
    if isinstance(pk, ec.EllipticCurvePublicKey):
        return pk.curve.key_size
    if isinstance(pk, ed25519.Ed25519PublicKey):
        return 256
    if isinstance(pk, ed448.Ed448PublicKey):
        return 456
    return None


def record(der: bytes) -> dict:
    cert = x509.load_der_x509_certificate(der)
    serial = cert.serial_number
    san = ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    eku = ext(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    ku = ext(cert, ExtensionOID.KEY_USAGE)
    bc = ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    key_usage = []
    if ku is not None:
        for attr, name in zip(KU_BITS, KU_NAMES):
            try:
                if getattr(ku, attr):
                    key_usage.append(name)
            except ValueError:
                # encipher_only/decipher_only raise unless keyAgreement is set.
                pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    key_oid = cert.public_key_algorithm_oid.dotted_string
    sig_oid = cert.signature_algorithm_oid.dotted_string
    return {
        "record": "certificate",
        "sha256": hashlib.sha256(der).hexdigest(),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": ("-" if serial < 0 else "") + format(abs(serial), "x"),
        "not_before": rfc3339_ms(cert.not_valid_before_utc),
        "not_after": rfc3339_ms(cert.not_valid_after_utc),
        "san_dns": san.get_values_for_type(x509.DNSName) if san else [],
        "san_ip": [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] if san else [],
        "eku_present": eku is not None,
        "eku": [EKU_NAMES.get(o.dotted_string, o.dotted_string) for o in eku] if eku else [],
        "key_usage": key_usage,
        "is_ca": bool(bc and bc.ca),
        "self_signed": self_signed(cert),
        "key_type": KEY_NAMES.get(key_oid, key_oid),
        "key_bits": key_bits(cert.public_key()),
        "signature_algorithm": SIG_NAMES.get(sig_oid, sig_oid),
        "subject_cn": cns[0].value if cns else None,
        "version": cert.version.value + 1,
        "parse_error": None,
    }


def main() -> None:
    make_names_exotic()
    out = {}
    with warnings.catch_warnings():
        # Zero and negative serials are parsed with a deprecation warning; that is the point.
        warnings.simplefilter("ignore")
        for path in sorted(HERE.glob("*.der")):
            out[path.name] = record(path.read_bytes())
    text = json.dumps(out, indent=2, ensure_ascii=False) + "\n"
    (HERE / "expected.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
