//! Chain and name validation through rustls-webpki (no hand-rolled path building), plus the
//! facts an operator needs beside webpki's error: was it expired, self-signed, missing an
//! intermediate, ending at an untrusted root?
//!
//! Validation time is always an argument (rustls-webpki's own rule): an assessment can be
//! replayed for any date.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter, KeyUsage};

/// Which role a chain is checked for (RFC 5280 §4.2.1.12 purposes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    ServerAuth,
    ClientAuth,
}

/// Failures loading trust anchors (real errors, not verdicts).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The PEM file could not be read or holds no certificate.
    #[error(
        "cannot read trust anchors from {path}: {reason} (give a PEM file of CA certificates)"
    )]
    Pem { path: String, reason: String },
    /// A certificate in the file is not usable as a trust anchor.
    #[error("{path}: certificate {index} is not a usable trust anchor: {reason}")]
    Anchor {
        path: String,
        index: usize,
        reason: String,
    },
}

/// The roots chains are validated against.
#[derive(Debug, Clone)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    /// How many came from Mozilla's root program (the "public" roots).
    public: usize,
}

impl TrustStore {
    /// Mozilla's root program, as shipped by webpki-roots.
    pub fn mozilla() -> TrustStore {
        TrustStore {
            anchors: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            public: webpki_roots::TLS_SERVER_ROOTS.len(),
        }
    }

    pub fn empty() -> TrustStore {
        TrustStore {
            anchors: Vec::new(),
            public: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Adds one DER certificate as a trust anchor (a private CA).
    pub fn add_der(&mut self, der: &[u8]) -> Result<(), webpki::Error> {
        let cert = CertificateDer::from(der);
        let anchor = webpki::anchor_from_trusted_cert(&cert)?.to_owned();
        self.anchors.push(anchor);
        Ok(())
    }

    /// Adds every certificate of a PEM file; returns how many.
    pub fn add_pem_file(&mut self, path: &Path) -> Result<usize, TrustError> {
        let name = path.display().to_string();
        let iter = CertificateDer::pem_file_iter(path).map_err(|e| TrustError::Pem {
            path: name.clone(),
            reason: e.to_string(),
        })?;
        let mut n = 0;
        for (index, cert) in iter.enumerate() {
            let cert = cert.map_err(|e| TrustError::Pem {
                path: name.clone(),
                reason: e.to_string(),
            })?;
            self.add_der(&cert).map_err(|e| TrustError::Anchor {
                path: name.clone(),
                index,
                reason: format!("{e:?}"),
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(TrustError::Pem {
                path: name,
                reason: "no CERTIFICATE block found".into(),
            });
        }
        Ok(n)
    }

    fn public_anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors[..self.public]
    }
}

/// What is wrong with a chain's trust, independent of time and key purpose.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrustFact {
    /// A path to a trust anchor exists.
    Trusted,
    /// One certificate, issued by itself, not a trust anchor.
    SelfSigned,
    /// The chain ends at a self-issued root that is not a trust anchor.
    UntrustedRoot,
    /// The last certificate's issuer was not sent and is not a trust anchor (a missing
    /// intermediate, or a private CA).
    Incomplete,
    /// A signature in the chain does not verify.
    BadSignature,
    /// A name constraint of an issuing CA excludes the leaf.
    NameConstraint,
    /// The leaf is not usable at all (bad DER, unsupported algorithm, ...).
    Unusable(String),
}

impl TrustFact {
    pub fn describe(&self) -> String {
        match self {
            TrustFact::Trusted => "chains to a trusted root".into(),
            TrustFact::SelfSigned => "self-signed certificate, not a trusted root".into(),
            TrustFact::UntrustedRoot => "chain ends at a root that is not trusted".into(),
            TrustFact::Incomplete => {
                "issuer of the last certificate sent is neither in the chain nor a trusted root (missing intermediate or private CA)".into()
            }
            TrustFact::BadSignature => "a signature in the chain does not verify".into(),
            TrustFact::NameConstraint => "an issuing CA's name constraints exclude the leaf".into(),
            TrustFact::Unusable(why) => format!("certificate not usable: {why}"),
        }
    }
}

/// Result of validating one chain for one usage at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerdict {
    /// rustls-webpki accepted the chain for the usage at the validation time.
    pub valid: bool,
    /// rustls-webpki's error at the validation time (Debug form, stable enough for logs).
    pub webpki_error: Option<String>,
    /// Trust independent of time and key purpose.
    pub trust: TrustFact,
    /// The chain reaches one of Mozilla's public roots (independent of time and purpose).
    pub public_root: bool,
}

/// Accepts any EKU: used to separate "is there a trusted path" from "is it for this purpose".
struct AnyEku;
impl ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}

struct Facts {
    not_before: i64,
    not_after: i64,
    self_issued: bool,
}

fn facts(der: &[u8]) -> Option<Facts> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(Facts {
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        self_issued: c.subject().as_raw() == c.issuer().as_raw(),
    })
}

fn unix(secs: i64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0) as u64))
}

/// Full rustls-webpki verification of `leaf` (plus `intermediates`) for `usage` at `at`
/// (seconds since the epoch), and, when `name` is given, RFC 6125 strict name matching (a
/// wildcard covers exactly one leftmost label). This is mxcert's validation entry point;
/// [`validate_chain`] adds the diagnosis on top.
pub fn verify(
    store: &TrustStore,
    leaf: &[u8],
    intermediates: &[&[u8]],
    usage: Usage,
    at: i64,
    name: Option<&str>,
) -> Result<(), webpki::Error> {
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(*d))
        .collect();
    let ku = match usage {
        Usage::ServerAuth => KeyUsage::server_auth(),
        Usage::ClientAuth => KeyUsage::client_auth(),
    };
    let leaf_der = CertificateDer::from(leaf);
    let ee = EndEntityCert::try_from(&leaf_der)?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &store.anchors,
        &inter,
        unix(at),
        ku,
        None,
        None,
    )?;
    if let Some(name) = name {
        let sn = ServerName::try_from(name).map_err(|_| webpki::Error::MalformedDnsIdentifier)?;
        ee.verify_is_valid_for_subject_name(&sn)?;
    }
    Ok(())
}

/// Validates a chain as sent (leaf first) and diagnoses it.
pub fn validate_chain(store: &TrustStore, chain: &[&[u8]], usage: Usage, at: i64) -> ChainVerdict {
    let Some((leaf, rest)) = chain.split_first() else {
        return ChainVerdict {
            valid: false,
            webpki_error: Some("no certificate".into()),
            trust: TrustFact::Unusable("no certificate".into()),
            public_root: false,
        };
    };
    let full = verify(store, leaf, rest, usage, at, None);
    let inter: Vec<CertificateDer<'_>> = rest.iter().map(|d| CertificateDer::from(*d)).collect();

    // Trust independent of time and purpose: try moments inside the certificates' validity
    // (the overlap of all, the leaf's start and end, the validation time), accepting any
    // purpose. A path found at any of them is a trusted path; expiry is the validity rules'
    // business, not trust's.
    let all: Vec<Facts> = chain.iter().filter_map(|d| facts(d)).collect();
    let latest_start = all.iter().map(|f| f.not_before).max();
    let earliest_end = all.iter().map(|f| f.not_after).min();
    let mut moments = Vec::new();
    if let (Some(s), Some(e)) = (latest_start, earliest_end) {
        if s <= e {
            moments.push(s);
        }
    }
    if let Some(leaf) = all.first() {
        moments.extend([leaf.not_before, leaf.not_after]);
    }
    moments.push(at);
    let leaf_der = CertificateDer::from(*leaf);
    let with = |anchors: &[TrustAnchor<'_>], t: i64| -> Result<(), webpki::Error> {
        let ee = EndEntityCert::try_from(&leaf_der)?;
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            anchors,
            &inter,
            unix(t),
            AnyEku,
            None,
            None,
        )
        .map(|_| ())
    };
    let path_at = |anchors: &[TrustAnchor<'_>]| -> Result<(), webpki::Error> {
        let mut other = None;
        for &t in &moments {
            match with(anchors, t) {
                Ok(()) => return Ok(()),
                // Time errors mean the path was found but some certificate is out of its
                // validity at that moment: keep looking, the path itself is fine.
                Err(webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }) => {}
                Err(e) => {
                    other.get_or_insert(e);
                }
            }
        }
        // Only time errors: a trusted path whose validity periods never all overlap.
        other.map_or(Ok(()), Err)
    };
    let trust = match path_at(&store.anchors) {
        Ok(()) => TrustFact::Trusted,
        // A lone self-issued certificate is "self-signed" whatever else webpki objects to
        // first (a v1 certificate, CA:TRUE on a leaf): that is the fact an operator acts on.
        Err(_) if all.len() == 1 && chain.len() == 1 && all[0].self_issued => TrustFact::SelfSigned,
        Err(e) => diagnose(&e, &all),
    };
    let public_root = trust == TrustFact::Trusted && path_at(store.public_anchors()).is_ok();
    ChainVerdict {
        valid: full.is_ok(),
        webpki_error: full.err().as_ref().map(webpki_error_text),
        trust,
        public_root,
    }
}

/// webpki's error as a finding detail can carry it: the Debug form, except that the `*Context`
/// variants embed every supported algorithm identifier as byte lists (kilobytes an operator
/// cannot act on), so a long form is cut back to the variant name.
fn webpki_error_text(e: &webpki::Error) -> String {
    const MAX: usize = 120;
    let full = format!("{e:?}");
    if full.len() <= MAX {
        return full;
    }
    match full.find(['(', '{']) {
        Some(i) => format!("{}(…)", full[..i].trim_end()),
        None => full.chars().take(MAX).collect(),
    }
}

fn diagnose(e: &webpki::Error, chain: &[Facts]) -> TrustFact {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => {
            if chain.len() == 1 && chain[0].self_issued {
                TrustFact::SelfSigned
            } else if chain.last().is_some_and(|f| f.self_issued) {
                TrustFact::UntrustedRoot
            } else {
                TrustFact::Incomplete
            }
        }
        E::InvalidSignatureForPublicKey | E::SignatureAlgorithmMismatch => TrustFact::BadSignature,
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => TrustFact::Unusable(
            "signature algorithm not accepted by WebPKI validation (e.g. SHA-1, or RSA under 2048 bits)".into(),
        ),
        E::NameConstraintViolation => TrustFact::NameConstraint,
        other => TrustFact::Unusable(format!("{other:?}")),
    }
}

/// Relaxed name matching, as some MTAs offer it (e.g. Postfix's `.domain` style or Exim's
/// wildcard options): `*.b.example` covers any number of leading labels (`mx.a.b.example`).
/// Only DNS SANs are considered, like strict mode (CN fallback is obsolete: RFC 6125 §6.4.4).
pub fn name_matches_relaxed(san_dns: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    san_dns.iter().any(|pattern| {
        let p = pattern.trim_end_matches('.').to_ascii_lowercase();
        match p.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(&suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    // A wildcard must leave at least two labels of its own (no `*.com`).
                    && suffix.contains('.')
            }
            None => p == host,
        }
    })
}

/// Strict name matching (RFC 6125 / RFC 8461 §3.2) through rustls-webpki.
pub fn name_matches_strict(leaf: &[u8], host: &str) -> bool {
    let der = CertificateDer::from(leaf);
    let Ok(ee) = EndEntityCert::try_from(&der) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(host.trim_end_matches('.')) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_wildcard_covers_several_labels_strict_does_not_need_to() {
        let sans = vec!["*.b.example".to_string(), "mx.test.example".to_string()];
        assert!(name_matches_relaxed(&sans, "mx.a.b.example"));
        assert!(name_matches_relaxed(&sans, "a.b.example"));
        assert!(!name_matches_relaxed(&sans, "b.example"));
        assert!(!name_matches_relaxed(&sans, "xb.example"));
        assert!(name_matches_relaxed(&sans, "MX.Test.Example."));
        assert!(!name_matches_relaxed(&["*.com".to_string()], "a.com"));
    }

    #[test]
    fn empty_store_trusts_nothing_and_mozilla_has_roots() {
        assert!(TrustStore::mozilla().len() > 100);
        assert!(TrustStore::empty().is_empty());
        let v = validate_chain(
            &TrustStore::empty(),
            &[b"not a certificate"],
            Usage::ServerAuth,
            0,
        );
        assert!(!v.valid);
        assert!(matches!(v.trust, TrustFact::Unusable(_)));
    }
}
