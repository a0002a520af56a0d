//! `--format text`: the report for a terminal, aligned tables, colour only when asked (a TTY).

use std::fmt::Write;

use super::model::{CertView, Report, SectionView};

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn head(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn warn(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// A percentage as the reader wants it: one decimal.
pub fn pct(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// Column widths count characters, not bytes; numbers (columns in `right`) are right-aligned.
/// Cells are painted after padding so escape codes do not break the alignment.
fn table(
    st: &Style,
    out: &mut String,
    headers: &[&str],
    rows: &[Vec<String>],
    right: &[usize],
    paint: &dyn Fn(usize, usize, &str) -> Option<&'static str>,
) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
        }
        s.trim_end().to_string()
    };
    let pad = |i: usize, c: &str| {
        let n = w[i].saturating_sub(c.chars().count());
        if right.contains(&i) {
            format!("{}{c}", " ".repeat(n))
        } else {
            format!("{c}{}", " ".repeat(n))
        }
    };
    let hdr: Vec<String> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| st.dim(&pad(i, h)))
        .collect();
    let _ = writeln!(out, "{}", line(hdr));
    for (ri, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let p = pad(i, c);
                match paint(ri, i, c) {
                    Some(code) => st.paint(code, &p),
                    None => p,
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line(cells));
    }
}

fn section_counts(st: &Style, out: &mut String, v: &SectionView) {
    if let Some(e) = v.empty {
        let _ = writeln!(out, "  {}", st.dim(e));
        return;
    }
    let _ = writeln!(out, "  {}", v.summary);
    let rows: Vec<Vec<String>> = v
        .counts
        .iter()
        .map(|(label, c)| {
            vec![
                label.to_string(),
                c.sessions.to_string(),
                c.peers.to_string(),
                pct(c.share),
            ]
        })
        .collect();
    table(
        st,
        out,
        &["", "sessions", v.peers, "share"],
        &rows,
        &[1, 2, 3],
        &|_, col, v| (col == 1 && v != "0").then_some("1"),
    );
}

fn status_code(status: &str) -> Option<&'static str> {
    match status {
        "no_client_auth" | "expired" | "client_auth_lost" => Some("31"),
        "loses_client_auth" | "unknown_certificate" => Some("33"),
        _ => None,
    }
}

/// Long details (webpki's debug output) are cut in the terminal; json and html keep them whole.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(max).collect();
        c.push('…');
        c
    }
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

fn day(s: &Option<String>) -> String {
    s.as_deref()
        .map(|d| d.get(..10).unwrap_or(d).to_string())
        .unwrap_or_else(|| "-".into())
}

/// The certificate's name and the start of its fingerprint: several certificates often share
/// a name.
fn cert_name(c: &CertView) -> String {
    match (&c.certificate, &c.cert_sha256) {
        (Some(n), Some(fp)) => format!("{n} [{}]", fp.get(..8).unwrap_or(fp)),
        (None, Some(fp)) => format!("[{}]", fp.get(..8).unwrap_or(fp)),
        _ => "-".into(),
    }
}

fn cert_cells(c: &CertView) -> Vec<String> {
    vec![
        cert_name(c),
        opt(&c.eku),
        day(&c.not_after),
        day(&c.loses_client_auth_on),
        c.status.to_string(),
    ]
}

fn more(st: &Style, out: &mut String, shown: usize, total: usize) {
    if total > shown {
        let _ = writeln!(
            out,
            "  {}",
            st.dim(&format!(
                "… {} more row(s): --top N, or --format json for all",
                total - shown
            ))
        );
    }
}

pub fn render(r: &Report, color: bool) -> String {
    let st = Style { color };
    let mut o = String::new();
    let _ = writeln!(o, "{}", st.head("mxcert impact report"));
    let _ = writeln!(o, "  inputs    {}", r.inputs.join(", "));
    let _ = writeln!(
        o,
        "  sessions  {} .. {}{}",
        opt(&r.window.first_session),
        opt(&r.window.last_session),
        match (&r.window.since, &r.window.until) {
            (None, None) => String::new(),
            (s, u) => format!("  (window {} .. {})", opt(s), opt(u)),
        }
    );
    let _ = writeln!(o, "  at        {} ({})", r.at, r.at_from);
    let _ = writeln!(o, "  policy    {}", r.policy);

    // 1. Coverage first: it says how much the other sections can see.
    let c = &r.coverage;
    let _ = writeln!(o, "\n{}", st.head("Coverage: what mxcert could inspect"));
    let dirs: Vec<String> = c
        .by_direction
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        o,
        "  {} sessions, {} peers ({})",
        c.sessions,
        c.peers,
        dirs.join(", ")
    );
    let rows: Vec<Vec<String>> = c
        .rows
        .iter()
        .map(|r| {
            vec![
                r.category.to_string(),
                r.sessions.to_string(),
                r.peers.to_string(),
                pct(r.share),
            ]
        })
        .collect();
    table(
        &st,
        &mut o,
        &["category", "sessions", "peers", "share"],
        &rows,
        &[1, 2, 3],
        &|_, _, _| None,
    );

    // 2. Inbound client certificates.
    let s = &r.inbound_client_certs;
    let _ = writeln!(o, "\n{}", st.head("Inbound: client certificates"));
    section_counts(&st, &mut o, &s.view());
    if !s.rows.is_empty() {
        let _ = writeln!(o);
        let rows: Vec<Vec<String>> = s
            .rows
            .iter()
            .take(r.top)
            .map(|x| {
                let mut v = vec![x.sender_ip.clone(), opt(&x.sender_name)];
                v.extend(cert_cells(&x.cert));
                v.push(x.sessions.to_string());
                v.push(x.last_seen.clone());
                v
            })
            .collect();
        table(
            &st,
            &mut o,
            &[
                "sender",
                "EHLO",
                "certificate",
                "EKU",
                "not after",
                "loses clientAuth",
                "status",
                "sessions",
                "last seen",
            ],
            &rows,
            &[7],
            &|_, col, v| if col == 6 { status_code(v) } else { None },
        );
        more(&st, &mut o, rows.len(), s.rows.len());
    }

    // 3. Outbound: our certificate.
    let s = &r.outbound_our_certificate;
    let _ = writeln!(o, "\n{}", st.head("Outbound: our client certificate"));
    section_counts(&st, &mut o, &s.view());
    if !s.our_certificates.is_empty() {
        let _ = writeln!(o, "\n  what we present:");
        let rows: Vec<Vec<String>> = s
            .our_certificates
            .iter()
            .map(|c| {
                let mut v = cert_cells(&c.cert);
                v.push(c.sessions.to_string());
                v.push(c.destinations.to_string());
                v
            })
            .collect();
        table(
            &st,
            &mut o,
            &[
                "certificate",
                "EKU",
                "not after",
                "loses clientAuth",
                "status",
                "sessions",
                "destinations",
            ],
            &rows,
            &[5, 6],
            &|_, col, v| if col == 4 { status_code(v) } else { None },
        );
    }
    if !s.rows.is_empty() {
        let _ = writeln!(o);
        let rows: Vec<Vec<String>> = s
            .rows
            .iter()
            .take(r.top)
            .map(|x| {
                vec![
                    x.destination_name.clone(),
                    x.destination_ip.clone(),
                    if x.presented { "yes" } else { "no" }.into(),
                    cert_name(&x.cert),
                    opt(&x.cert.eku),
                    x.cert.status.to_string(),
                    if x.affected_after_renewal {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                    x.sessions.to_string(),
                ]
            })
            .collect();
        table(
            &st,
            &mut o,
            &[
                "destination",
                "address",
                "presented",
                "our certificate",
                "EKU",
                "status",
                "after renewal",
                "sessions",
            ],
            &rows,
            &[7],
            &|_, col, v| match col {
                5 => status_code(v),
                6 if v == "yes" => Some("33"),
                _ => None,
            },
        );
        more(&st, &mut o, rows.len(), s.rows.len());
    }

    // 4. Outbound strict validation / MTA-STS.
    let s = &r.outbound_strict_validation;
    let _ = writeln!(
        o,
        "\n{}",
        st.head("Outbound: strict validation / MTA-STS enforce (what if)")
    );
    section_counts(&st, &mut o, &s.view());
    if !s.by_result_type.is_empty() {
        let _ = writeln!(
            o,
            "\n  by RFC 8460 result type (each session under its first failure):"
        );
        let rows: Vec<Vec<String>> = s
            .by_result_type
            .iter()
            .map(|t| {
                vec![
                    t.result_type.to_string(),
                    t.sessions.to_string(),
                    t.peers.to_string(),
                    pct(t.share),
                    t.rules
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        table(
            &st,
            &mut o,
            &[
                "result type",
                "sessions",
                "destinations",
                "share",
                "failing rules (sessions)",
            ],
            &rows,
            &[1, 2, 3],
            &|_, col, _| (col == 0).then_some("31"),
        );
    }
    if !s.rows.is_empty() {
        let _ = writeln!(o, "\n  top offenders:");
        let rows: Vec<Vec<String>> = s
            .rows
            .iter()
            .take(r.top)
            .map(|x| {
                vec![
                    x.destination_name.clone(),
                    x.destination_ip.clone(),
                    x.result_type.to_string(),
                    x.rule.clone(),
                    x.sessions.to_string(),
                    clip(&x.detail, 200),
                ]
            })
            .collect();
        table(
            &st,
            &mut o,
            &[
                "destination",
                "address",
                "result type",
                "rule",
                "sessions",
                "detail",
            ],
            &rows,
            &[4],
            &|_, _, _| None,
        );
        more(&st, &mut o, rows.len(), s.rows.len());
    }

    // Break dates still ahead of AT.
    let ahead: Vec<_> = r.timeline.iter().filter(|e| !e.past).collect();
    if !ahead.is_empty() {
        let _ = writeln!(o, "\n{}", st.head("Break dates after AT"));
        let rows: Vec<Vec<String>> = ahead
            .iter()
            .take(r.top)
            .map(|e| {
                vec![
                    day(&Some(e.date.clone())),
                    e.event.replace('_', " "),
                    format!(
                        "{} [{}]",
                        e.certificate,
                        e.cert_sha256.get(..8).unwrap_or("")
                    ),
                    e.section.replace('_', " "),
                    e.sessions.to_string(),
                    e.peers.to_string(),
                ]
            })
            .collect();
        table(
            &st,
            &mut o,
            &[
                "date",
                "event",
                "certificate",
                "section",
                "sessions",
                "peers",
            ],
            &rows,
            &[4, 5],
            &|_, _, _| None,
        );
        more(&st, &mut o, rows.len(), ahead.len());
    }

    let _ = writeln!(o, "\n{}", st.head("Notes"));
    for c in &r.caveats {
        let _ = writeln!(o, "  - {}", st.warn(c));
    }
    o
}
