//! Stage 6: classification. Validates every chain and turns sessions into findings: what a
//! receiving or sending rule would do with this session, today and at a future date.
//!
//! Each rule is evaluated once per session (and role); every scenario of the policy that lists
//! the rule gets its own finding. Chain verdicts are cached by (chain, usage, day), so a
//! gateway that sees the same peers all day validates each chain once.

pub mod policy;
pub mod validate;

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::session::SessionRecord;
use crate::timefmt::rfc3339_ms;
use crate::x509::{CertificateRecord, Fingerprint};
use policy::{parse_date, Policy};
use validate::{
    name_matches_relaxed, name_matches_strict, validate_chain, ChainVerdict, TrustFact, TrustStore,
    Usage,
};

/// Chain verdicts kept before the cache is cleared.
pub const MAX_CACHED_VERDICTS: usize = 65_536;

/// A certificate as classification needs it: the DER (for webpki) and its parsed record.
#[derive(Debug, Clone)]
pub struct KnownCert {
    pub der: Vec<u8>,
    pub rec: CertificateRecord,
}

/// Verdict of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Warn,
    Unknown,
}

/// One finding record (the contract: `record`, `ts`, `session_id`, `role`, `cert_sha256`,
/// `scenario`, `rule`, `verdict`, `effective`, `detail`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub record: &'static str,
    pub ts: String,
    pub session_id: String,
    /// `server` or `client`: whose certificate or behaviour the finding is about.
    pub role: &'static str,
    pub cert_sha256: Option<Fingerprint>,
    pub scenario: String,
    pub rule: &'static str,
    pub verdict: Verdict,
    /// From when it fails (RFC 3339), or null.
    pub effective: Option<String>,
    pub detail: String,
    /// Extra context for queries without a join.
    pub direction: &'static str,
    pub client_ip: IpAddr,
    pub server_ip: IpAddr,
    pub server_port: u16,
    /// The name the server certificate was checked against, and where it came from.
    pub peer_name: Option<String>,
    pub validation_time: String,
}

/// Result of one rule before it is fanned out to scenarios.
struct Outcome {
    rule: &'static str,
    role: &'static str,
    cert: Option<Fingerprint>,
    verdict: Verdict,
    effective: Option<i64>,
    detail: String,
}

/// Counters for the summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ClassifyStats {
    pub chains_validated: u64,
    pub cache_hits: u64,
    pub cache_resets: u64,
    pub certificates_missing: u64,
    pub findings: u64,
    pub by_rule: std::collections::BTreeMap<&'static str, u64>,
}

/// Classification settings.
#[derive(Debug, Clone)]
pub struct ClassifyConfig {
    pub policy: Policy,
    pub trust: TrustStore,
    /// Validation time override (Unix seconds); default: each session's own start time.
    pub at: Option<i64>,
    /// Expected names of servers by IP (`--mx-name ip=name`, hosts files).
    pub mx_names: HashMap<IpAddr, String>,
    /// Emit passing findings too.
    pub all_findings: bool,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            policy: Policy::default_policy(),
            trust: TrustStore::mozilla(),
            at: None,
            mx_names: HashMap::new(),
            all_findings: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    chain: Vec<Fingerprint>,
    usage: Usage,
    day: i64,
}

/// Turns sessions into findings.
pub struct Classifier {
    cfg: ClassifyConfig,
    cache: HashMap<CacheKey, ChainVerdict>,
    pub stats: ClassifyStats,
}

impl Classifier {
    pub fn new(cfg: ClassifyConfig) -> Classifier {
        Classifier {
            cfg,
            cache: HashMap::new(),
            stats: ClassifyStats::default(),
        }
    }

    pub fn config(&self) -> &ClassifyConfig {
        &self.cfg
    }

    /// Swaps the policy (SIGHUP reload in the daemon); cached chain verdicts stay valid.
    pub fn set_policy(&mut self, policy: Policy) {
        self.cfg.policy = policy;
    }

    /// Validates a chain for a usage at a time, through the cache. `day` granularity: a
    /// verdict computed at 00:00 holds for the day (expiry is checked to the second by the
    /// validity rules, not by this cache).
    pub fn chain_verdict(
        &mut self,
        chain: &[Fingerprint],
        ders: &[&[u8]],
        usage: Usage,
        at: i64,
    ) -> ChainVerdict {
        let key = CacheKey {
            chain: chain.to_vec(),
            usage,
            day: at.div_euclid(86_400),
        };
        if let Some(v) = self.cache.get(&key) {
            self.stats.cache_hits += 1;
            return v.clone();
        }
        if self.cache.len() >= MAX_CACHED_VERDICTS {
            self.cache.clear();
            self.stats.cache_resets += 1;
        }
        self.stats.chains_validated += 1;
        let v = validate_chain(&self.cfg.trust, ders, usage, at);
        self.cache.insert(key, v.clone());
        v
    }

    /// Findings for one session. `certs` looks certificates up by fingerprint; `start` is the
    /// session's first packet (Unix seconds), the default validation time.
    pub fn classify(
        &mut self,
        s: &SessionRecord,
        start: i64,
        certs: &dyn Fn(&Fingerprint) -> Option<KnownCert>,
    ) -> Vec<Finding> {
        let at = self.cfg.at.unwrap_or(start);
        let mut out: Vec<Outcome> = Vec::new();
        let peer_name = self.expected_name(s);

        // Session-level rules: the server's behaviour.
        let offered_none = s.smtp.starttls_offered == Some(false) && !s.smtp.implicit_tls;
        out.push(Outcome {
            rule: "tls.not_offered",
            role: "server",
            cert: None,
            verdict: if offered_none {
                Verdict::Fail
            } else if s.smtp.starttls_offered == Some(true) || s.smtp.implicit_tls {
                Verdict::Pass
            } else {
                Verdict::Unknown
            },
            effective: offered_none.then_some(at),
            detail: if offered_none {
                format!(
                    "{} did not advertise STARTTLS in its EHLO reply",
                    s.smtp.banner_host.as_deref().unwrap_or("the server")
                )
            } else {
                "STARTTLS offered or implicit TLS".into()
            },
        });
        if let Some(code) = s.smtp.starttls_reply_code {
            let refused = !(200..300).contains(&code);
            out.push(Outcome {
                rule: "tls.refused",
                role: "server",
                cert: None,
                verdict: if refused {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                },
                effective: refused.then_some(at),
                detail: format!("server answered STARTTLS with {code}"),
            });
        }
        if let Some(v) = s.tls.version {
            let legacy = matches!(v, "SSL2.0" | "SSL3.0" | "TLS1.0" | "TLS1.1");
            out.push(Outcome {
                rule: "tls.legacy_version",
                role: "server",
                cert: None,
                verdict: if legacy { Verdict::Fail } else { Verdict::Pass },
                effective: legacy.then_some(at),
                detail: format!("negotiated {v}"),
            });
            if v == "TLS1.3" {
                // Only a session neither path saw a chain for is blind; a resumed one carrying
                // its full handshake's chain is judged on that chain (at its own start time).
                let t = &s.tls;
                out.push(Outcome {
                    rule: "tls.v13_uninspectable",
                    role: "server",
                    cert: None,
                    verdict: if t.chain_source.is_none() {
                        Verdict::Warn
                    } else {
                        Verdict::Pass
                    },
                    effective: None,
                    detail: match (t.chain_source, t.resumed_from.as_deref()) {
                        (None, _) if t.resumed => "TLS 1.3 resumed session whose full handshake mxcert did not see; its chains are not assessed".into(),
                        (None, _) => "TLS 1.3: certificates are encrypted on the wire and the TLS library did not report them; this session's chains are not assessed".into(),
                        (Some("uprobe"), _) => "TLS 1.3 chains read in the MTA's TLS library".into(),
                        (Some("resumed"), Some(from)) => format!("TLS 1.3 resumed session: chains of its full handshake, session {from}"),
                        (Some(src), _) => format!("TLS 1.3 chains from {src}"),
                    },
                });
            }
        }
        if s.direction == "outbound" && s.tls.cert_requested == Some(true) {
            out.push(Outcome {
                rule: "client_cert.requested_outbound",
                role: "client",
                cert: s.tls.client_chain.first().copied(),
                verdict: Verdict::Warn,
                effective: None,
                detail: format!(
                    "{} asked us for a client certificate ({}); it is at risk when our certificate loses clientAuth",
                    s.smtp.banner_host.as_deref().unwrap_or(&s.server_ip.to_string()),
                    if s.tls.client_chain.is_empty() { "we sent none" } else { "we sent one" }
                ),
            });
        }

        // Certificate rules, per role.
        for (role, chain, usage) in [
            ("server", &s.tls.server_chain, Usage::ServerAuth),
            ("client", &s.tls.client_chain, Usage::ClientAuth),
        ] {
            if chain.is_empty() {
                continue;
            }
            let known: Vec<Option<KnownCert>> = chain.iter().map(certs).collect();
            if known.iter().any(Option::is_none) {
                self.stats.certificates_missing += 1;
                out.push(Outcome {
                    rule: "chain.untrusted",
                    role,
                    cert: chain.first().copied(),
                    verdict: Verdict::Unknown,
                    effective: None,
                    detail: "certificate no longer in mxcert's cache; chain not assessed".into(),
                });
                continue;
            }
            let known: Vec<KnownCert> = known.into_iter().flatten().collect();
            self.cert_rules(role, chain, &known, usage, at, peer_name.as_ref(), &mut out);
        }

        // Fan out to scenarios.
        let mut findings = Vec::new();
        for o in out {
            for sc in &self.cfg.policy.scenarios {
                if !sc.rules.contains(&o.rule) || !sc.applies_to(s.direction) {
                    continue;
                }
                if o.verdict == Verdict::Pass && !self.cfg.all_findings {
                    continue;
                }
                *self.stats.by_rule.entry(o.rule).or_default() += 1;
                self.stats.findings += 1;
                findings.push(Finding {
                    record: "finding",
                    ts: s.ts.clone(),
                    session_id: s.session_id.clone(),
                    role: o.role,
                    cert_sha256: o.cert,
                    scenario: sc.name.clone(),
                    rule: o.rule,
                    verdict: o.verdict,
                    effective: o.effective.map(|e| rfc3339_ms(e * 1_000_000_000)),
                    detail: o.detail.clone(),
                    direction: s.direction,
                    client_ip: s.client_ip,
                    server_ip: s.server_ip,
                    server_port: s.server_port,
                    peer_name: peer_name.as_ref().map(|(n, src)| format!("{n} ({src})")),
                    validation_time: rfc3339_ms(at * 1_000_000_000),
                });
            }
        }
        findings
    }

    /// The name a server certificate must match: SNI, else the banner host, else the
    /// configured MX name for the server's address.
    fn expected_name(&self, s: &SessionRecord) -> Option<(String, &'static str)> {
        if let Some(sni) = &s.tls.sni {
            return Some((sni.clone(), "SNI"));
        }
        if let Some(b) = &s.smtp.banner_host {
            // Some banners carry an address literal or a bare word; only a dotted name helps.
            if b.contains('.') && !b.starts_with('[') {
                return Some((b.clone(), "banner"));
            }
        }
        self.cfg
            .mx_names
            .get(&s.server_ip)
            .map(|n| (n.clone(), "mx-name"))
    }

    #[allow(clippy::too_many_arguments)]
    fn cert_rules(
        &mut self,
        role: &'static str,
        chain: &[Fingerprint],
        known: &[KnownCert],
        usage: Usage,
        at: i64,
        peer_name: Option<&(String, &'static str)>,
        out: &mut Vec<Outcome>,
    ) {
        let leaf = &known[0];
        let leaf_fp = Some(chain[0]);
        let ders: Vec<&[u8]> = known.iter().map(|k| k.der.as_slice()).collect();
        let v = self.chain_verdict(chain, &ders, usage, at);
        let leaf_name = leaf
            .rec
            .subject_cn
            .clone()
            .or_else(|| leaf.rec.subject.clone())
            .unwrap_or_else(|| chain[0].to_hex());
        let webpki = v
            .webpki_error
            .as_deref()
            .map(|e| format!(" (webpki: {e})"))
            .unwrap_or_default();

        // Chain trust: exactly one chain rule describes the chain.
        let (rule, verdict) = match v.trust {
            TrustFact::Trusted => ("chain.untrusted", Verdict::Pass),
            TrustFact::SelfSigned => ("chain.self_signed", Verdict::Fail),
            TrustFact::Incomplete => ("chain.incomplete", Verdict::Fail),
            _ => ("chain.untrusted", Verdict::Fail),
        };
        let last_issuer = known
            .last()
            .and_then(|k| k.rec.issuer.clone())
            .unwrap_or_default();
        out.push(Outcome {
            rule,
            role,
            cert: leaf_fp,
            verdict,
            effective: (verdict == Verdict::Fail).then_some(at),
            detail: match v.trust {
                TrustFact::Trusted => format!("{role} chain for {leaf_name} chains to a trusted root"),
                TrustFact::Incomplete => format!(
                    "{role} chain for {leaf_name} ({} certificate(s)) stops at issuer {last_issuer}, which was not sent and is not a trusted root{webpki}",
                    known.len()
                ),
                ref t => format!("{role} certificate {leaf_name}: {}{webpki}", t.describe()),
            },
        });

        // Validity of every certificate sent, except self-issued roots (the trust anchor in
        // the store is what counts for those).
        let window: Vec<(&KnownCert, i64, i64)> = known
            .iter()
            .enumerate()
            .filter(|(i, k)| *i == 0 || !is_self_issued(k))
            .filter_map(|(_, k)| {
                let nb = parse_date(k.rec.not_before.as_deref()?)?;
                let na = parse_date(k.rec.not_after.as_deref()?)?;
                Some((k, nb, na))
            })
            .collect();
        let name_of = |k: &KnownCert| {
            k.rec
                .subject_cn
                .clone()
                .or_else(|| k.rec.subject.clone())
                .unwrap_or_default()
        };
        let earliest_end = window.iter().min_by_key(|(_, _, na)| *na);
        let expired = earliest_end.filter(|(_, _, na)| *na < at);
        out.push(Outcome {
            rule: "validity.expired",
            role,
            cert: leaf_fp,
            verdict: if expired.is_some() {
                Verdict::Fail
            } else {
                Verdict::Pass
            },
            effective: earliest_end
                .map(|(_, _, na)| *na + 1)
                .filter(|_| expired.is_some()),
            detail: match expired {
                Some((k, _, na)) => format!(
                    "{role} certificate {} expired on {} (validation time {})",
                    name_of(k),
                    rfc3339_ms(na * 1_000_000_000),
                    rfc3339_ms(at * 1_000_000_000)
                ),
                None => "every certificate within its validity".into(),
            },
        });
        let not_yet = window
            .iter()
            .filter(|(_, nb, _)| *nb > at)
            .max_by_key(|(_, nb, _)| *nb);
        out.push(Outcome {
            rule: "validity.not_yet_valid",
            role,
            cert: leaf_fp,
            verdict: if not_yet.is_some() {
                Verdict::Fail
            } else {
                Verdict::Pass
            },
            effective: not_yet.map(|_| at),
            detail: match not_yet {
                Some((k, nb, _)) => format!(
                    "{role} certificate {} is valid only from {}",
                    name_of(k),
                    rfc3339_ms(nb * 1_000_000_000)
                ),
                None => "every certificate already valid".into(),
            },
        });
        if expired.is_none() {
            let soon = i64::from(self.cfg.policy.expires_soon_days) * 86_400;
            let expiring = earliest_end.filter(|(_, _, na)| *na <= at + soon);
            out.push(Outcome {
                rule: "validity.expires_soon",
                role,
                cert: leaf_fp,
                verdict: if expiring.is_some() {
                    Verdict::Warn
                } else {
                    Verdict::Pass
                },
                effective: expiring.map(|(_, _, na)| na + 1),
                detail: match expiring {
                    Some((k, _, na)) => format!(
                        "{role} certificate {} expires on {}, within {} days",
                        name_of(k),
                        rfc3339_ms(na * 1_000_000_000),
                        self.cfg.policy.expires_soon_days
                    ),
                    None => format!(
                        "no certificate expires within {} days",
                        self.cfg.policy.expires_soon_days
                    ),
                },
            });
        }

        // Keys and signatures of the certificates sent (a self-signed root's own signature
        // is never checked by anyone, so SHA-1 there is harmless).
        let weak = known.iter().find(|k| is_weak_key(&k.rec));
        out.push(Outcome {
            rule: "key.weak",
            role,
            cert: leaf_fp,
            verdict: if weak.is_some() {
                Verdict::Fail
            } else {
                Verdict::Pass
            },
            effective: weak.map(|_| at),
            detail: match weak {
                Some(k) => format!(
                    "{role} certificate {} has a {} {}-bit key",
                    name_of(k),
                    k.rec.key_type.as_deref().unwrap_or("?"),
                    k.rec.key_bits.unwrap_or(0)
                ),
                None => "all keys at least RSA 2048 / EC 256".into(),
            },
        });
        let sha1 = known.iter().enumerate().find(|(i, k)| {
            (*i == 0 || !is_self_issued(k))
                && k.rec
                    .signature_algorithm
                    .as_deref()
                    .is_some_and(|a| a.to_ascii_lowercase().contains("sha1"))
        });
        out.push(Outcome {
            rule: "signature.sha1",
            role,
            cert: leaf_fp,
            verdict: if sha1.is_some() {
                Verdict::Fail
            } else {
                Verdict::Pass
            },
            effective: sha1.map(|_| at),
            detail: match sha1 {
                Some((_, k)) => format!(
                    "{role} certificate {} is signed with {}",
                    name_of(k),
                    k.rec.signature_algorithm.as_deref().unwrap_or("?")
                ),
                None => "no SHA-1 signatures".into(),
            },
        });

        let eku = &leaf.rec.eku;
        let has = |p: &str| eku.iter().any(|e| e == p || e == "any");
        let eku_list = if leaf.rec.eku_present == Some(true) {
            format!("[{}]", eku.join(", "))
        } else {
            "no EKU extension (any purpose)".into()
        };
        match usage {
            Usage::ServerAuth => {
                let missing = leaf.rec.eku_present == Some(true) && !has("serverAuth");
                out.push(Outcome {
                    rule: "eku.server_auth_missing",
                    role,
                    cert: leaf_fp,
                    verdict: if missing {
                        Verdict::Fail
                    } else {
                        Verdict::Pass
                    },
                    effective: missing.then_some(at),
                    detail: format!("server certificate {leaf_name} EKU: {eku_list}"),
                });
                if let Some((name, source)) = peer_name {
                    let strict = name_matches_strict(&leaf.der, name);
                    let relaxed = strict || name_matches_relaxed(&leaf.rec.san_dns, name);
                    let sans = if leaf.rec.san_dns.is_empty() {
                        "no DNS SAN".to_string()
                    } else {
                        leaf.rec.san_dns.join(", ")
                    };
                    out.push(Outcome {
                        rule: "name.mismatch",
                        role,
                        cert: leaf_fp,
                        verdict: if relaxed {
                            Verdict::Pass
                        } else {
                            Verdict::Fail
                        },
                        effective: (!relaxed).then_some(at),
                        detail: format!(
                            "certificate for {sans} {} {name} (expected name from {source})",
                            if relaxed { "covers" } else { "does not cover" }
                        ),
                    });
                    if relaxed {
                        out.push(Outcome {
                            rule: "name.wildcard_depth",
                            role,
                            cert: leaf_fp,
                            verdict: if strict { Verdict::Pass } else { Verdict::Fail },
                            effective: (!strict).then_some(at),
                            detail: if strict {
                                format!("certificate for {sans} covers {name} in strict mode")
                            } else {
                                format!(
                                    "certificate for {sans} does not cover {name} in strict mode (a wildcard covers exactly one label); it passes only in relaxed mode"
                                )
                            },
                        });
                    }
                } else {
                    out.push(Outcome {
                        rule: "name.mismatch",
                        role,
                        cert: leaf_fp,
                        verdict: Verdict::Unknown,
                        effective: None,
                        detail: "no expected name: no SNI, no usable banner host, no --mx-name for this address".into(),
                    });
                }
            }
            Usage::ClientAuth => {
                let explicit_client = leaf.rec.eku_present == Some(true) && has("clientAuth");
                let missing = leaf.rec.eku_present == Some(true) && !has("clientAuth");
                out.push(Outcome {
                    rule: "eku.client_auth_missing",
                    role,
                    cert: leaf_fp,
                    verdict: if missing {
                        Verdict::Fail
                    } else {
                        Verdict::Pass
                    },
                    effective: missing.then_some(at),
                    detail: format!(
                        "client certificate {leaf_name} EKU: {eku_list}{}",
                        if missing {
                            "; a receiver enforcing clientAuth rejects it"
                        } else {
                            ""
                        }
                    ),
                });
                if explicit_client && v.public_root {
                    let not_after = leaf.rec.not_after.as_deref().and_then(parse_date);
                    let issuer = leaf.rec.issuer.clone().unwrap_or_default();
                    let cutoff = self.cfg.policy.cutoff_for(&issuer);
                    let eff = not_after.map_or(cutoff, |na| na.min(cutoff));
                    out.push(Outcome {
                        rule: "eku.client_auth_sunset",
                        role,
                        cert: leaf_fp,
                        verdict: Verdict::Warn,
                        effective: Some(eff),
                        detail: format!(
                            "client certificate {leaf_name} has clientAuth and chains to a public root (issuer {issuer}); public CAs stop issuing clientAuth from {}, so it is lost at renewal",
                            rfc3339_ms(cutoff * 1_000_000_000)
                        ),
                    });
                }
            }
        }
    }
}

fn is_self_issued(k: &KnownCert) -> bool {
    k.rec.subject.is_some() && k.rec.subject == k.rec.issuer
}

/// RSA/DSA under 2048 bits, EC under 256 (key.weak).
fn is_weak_key(rec: &CertificateRecord) -> bool {
    match (rec.key_type.as_deref(), rec.key_bits) {
        (Some("RSA") | Some("DSA"), Some(b)) => b < 2048,
        (Some("EC"), Some(b)) => b < 256,
        _ => false,
    }
}
