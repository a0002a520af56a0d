//! The policy file: rules grouped into named scenarios (TOML). The shipped default is
//! `policy/default.toml`, embedded in the binary.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// Every rule mxcert knows; codes are part of the record contract.
pub const RULES: &[&str] = &[
    "eku.client_auth_missing",
    "eku.client_auth_sunset",
    "eku.server_auth_missing",
    "validity.expired",
    "validity.not_yet_valid",
    "validity.expires_soon",
    "name.mismatch",
    "name.wildcard_depth",
    "chain.untrusted",
    "chain.self_signed",
    "chain.incomplete",
    "key.weak",
    "signature.sha1",
    "tls.not_offered",
    "tls.refused",
    "tls.legacy_version",
    "tls.v13_uninspectable",
    "client_cert.requested_outbound",
];

pub const DEFAULT_POLICY: &str = include_str!("../../../policy/default.toml");

/// Problems with a policy file, each saying where and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("policy {path} is not valid TOML for mxcert: {message}")]
    Syntax { path: String, message: String },
    #[error("policy {path}: scenario {scenario:?} names unknown rule {rule:?}; known rules: {}", RULES.join(", "))]
    UnknownRule {
        path: String,
        scenario: String,
        rule: String,
    },
    #[error("policy {path}: {what} {value:?} is not a date (write YYYY-MM-DD)")]
    BadDate {
        path: String,
        what: String,
        value: String,
    },
    #[error("policy {path}: scenario {scenario:?} has direction {value:?}; use inbound, outbound or unknown")]
    BadDirection {
        path: String,
        scenario: String,
        value: String,
    },
    #[error("policy {path} defines no scenario; add at least one [scenarios.NAME] with rules")]
    NoScenario { path: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    settings: RawSettings,
    #[serde(default)]
    issuer_cutoffs: Vec<RawCutoff>,
    #[serde(default)]
    scenarios: BTreeMap<String, RawScenario>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    expires_soon_days: Option<u32>,
    client_auth_cutoff: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCutoff {
    issuer_contains: String,
    date: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    description: String,
    rules: Vec<String>,
    #[serde(default)]
    directions: Vec<String>,
}

/// A scenario: a named set of rules, optionally limited to some session directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub rules: Vec<&'static str>,
    /// Empty: all sessions. Otherwise the listed directions, and always `unknown` ones (no
    /// `--local-net` means mxcert cannot tell, and hiding them would hide risk).
    pub directions: Vec<String>,
}

impl Scenario {
    pub fn applies_to(&self, direction: &str) -> bool {
        self.directions.is_empty()
            || direction == "unknown"
            || self.directions.iter().any(|d| d == direction)
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub source: String,
    pub expires_soon_days: u32,
    /// Unix seconds.
    pub client_auth_cutoff: i64,
    /// (lowercased issuer substring, unix seconds).
    pub issuer_cutoffs: Vec<(String, i64)>,
    pub scenarios: Vec<Scenario>,
}

impl Policy {
    pub fn default_policy() -> Policy {
        Policy::parse(DEFAULT_POLICY, "built-in default policy").expect("shipped policy is valid")
    }

    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, source: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            path: source.to_string(),
            message: e.to_string(),
        })?;
        let date = |what: &str, v: &str| {
            parse_date(v).ok_or_else(|| PolicyError::BadDate {
                path: source.to_string(),
                what: what.to_string(),
                value: v.to_string(),
            })
        };
        let cutoff = match &raw.settings.client_auth_cutoff {
            Some(v) => date("settings.client_auth_cutoff", v)?,
            None => crate::timefmt::unix_seconds(2026, 6, 15, 0, 0, 0),
        };
        let mut issuer_cutoffs = Vec::new();
        for c in &raw.issuer_cutoffs {
            issuer_cutoffs.push((
                c.issuer_contains.to_lowercase(),
                date("issuer_cutoffs.date", &c.date)?,
            ));
        }
        let mut scenarios = Vec::new();
        for (name, s) in raw.scenarios {
            let mut rules = Vec::new();
            for r in &s.rules {
                match RULES.iter().find(|k| **k == r) {
                    Some(k) => rules.push(*k),
                    None => {
                        return Err(PolicyError::UnknownRule {
                            path: source.to_string(),
                            scenario: name,
                            rule: r.clone(),
                        })
                    }
                }
            }
            for d in &s.directions {
                if !["inbound", "outbound", "unknown"].contains(&d.as_str()) {
                    return Err(PolicyError::BadDirection {
                        path: source.to_string(),
                        scenario: name,
                        value: d.clone(),
                    });
                }
            }
            scenarios.push(Scenario {
                name,
                description: s.description,
                rules,
                directions: s.directions,
            });
        }
        if scenarios.is_empty() {
            return Err(PolicyError::NoScenario {
                path: source.to_string(),
            });
        }
        Ok(Policy {
            source: source.to_string(),
            expires_soon_days: raw.settings.expires_soon_days.unwrap_or(30),
            client_auth_cutoff: cutoff,
            issuer_cutoffs,
            scenarios,
        })
    }

    /// The clientAuth cutoff for a certificate issued by `issuer`.
    pub fn cutoff_for(&self, issuer: &str) -> i64 {
        let issuer = issuer.to_lowercase();
        self.issuer_cutoffs
            .iter()
            .find(|(needle, _)| issuer.contains(needle.as_str()))
            .map_or(self.client_auth_cutoff, |(_, d)| *d)
    }

    /// Whether any scenario uses the rule (rules no scenario lists are not evaluated).
    pub fn uses(&self, rule: &str) -> bool {
        self.scenarios.iter().any(|s| s.rules.contains(&rule))
    }
}

/// `YYYY-MM-DD` (midnight UTC) or a full RFC 3339 timestamp, to Unix seconds.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |r: std::ops::Range<usize>| -> Option<u32> { s.get(r)?.parse().ok() };
    if s.len() < 10 || s.as_bytes()[4] != b'-' || s.as_bytes()[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (mut hh, mut mm, mut ss) = (0, 0, 0);
    if s.len() > 10 {
        let t = s.as_bytes()[10];
        if t != b'T' && t != b' ' && t != b't' {
            return None;
        }
        hh = num(11..13)?;
        mm = num(14..16)?;
        ss = num(17..19)?;
        // Only UTC ("Z") or a zero offset: policy dates are UTC by definition.
        let rest = s.get(19..)?;
        let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
        if !matches!(rest, "Z" | "z" | "+00:00" | "") {
            return None;
        }
    }
    Some(crate::timefmt::unix_seconds(i64::from(y), m, d, hh, mm, ss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid_and_uses_every_rule() {
        let p = Policy::default_policy();
        for r in RULES {
            assert!(p.uses(r), "default policy does not use {r}");
        }
        assert_eq!(p.expires_soon_days, 30);
        assert_eq!(
            p.cutoff_for("CN=R3,O=Let's Encrypt,C=US"),
            parse_date("2026-05-13").unwrap()
        );
        assert_eq!(
            p.cutoff_for("CN=Other CA"),
            parse_date("2026-06-15").unwrap()
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Policy::parse("[scenarios.x]\nrules = [\"eku.nope\"]\n", "p.toml").unwrap_err();
        assert!(e.to_string().contains("eku.nope"), "{e}");
        let e = Policy::parse(
            "[settings]\nclient_auth_cutoff = \"soon\"\n[scenarios.x]\nrules=[]\n",
            "p.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
        let e = Policy::parse("[settings]\nbogus = 1\n", "p.toml").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Policy::parse("", "p.toml").unwrap_err();
        assert!(matches!(e, PolicyError::NoScenario { .. }));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-02"), Some(86_400));
        assert_eq!(parse_date("2026-12-01T00:00:00Z"), parse_date("2026-12-01"));
        assert_eq!(
            parse_date("2026-12-01T00:00:01.500Z"),
            Some(parse_date("2026-12-01").unwrap() + 1)
        );
        assert_eq!(parse_date("2026-12-01T00:00:00+02:00"), None);
        assert_eq!(parse_date("12/01/2026"), None);
    }
}
