//! `--format html`: one self-contained file (inline CSS, inline SVG charts drawn here, a little
//! inline JS to sort tables; no network fetch), for the change meeting.
//!
//! Charts: failing sessions by rule over time (stacked bars), share of traffic at risk per
//! section (bars, with the coverage split), and the break-date timeline. Every number has the
//! command (and the ClickHouse query of `schema/queries/`) that reproduces it.

use std::fmt::Write;

use super::model::{CertView, Report, SectionView};
use super::text::pct;
use crate::classify::policy::parse_date;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const PALETTE: &[&str] = &[
    "#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
    "#e6550d", "#31a354",
];

/// The page may load nothing: every style and script is inline, charts are inline SVG. A
/// fetch (a link someone adds later) is then blocked and reported as a console error, which
/// the rendering test catches.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:";

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px;font-size:22px}
header .meta{opacity:.85;font-size:13px}
main{padding:18px 28px;max-width:1280px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:16px 20px;margin:0 0 18px}
h2{font-size:18px;margin:0 0 10px}
h3{font-size:15px;margin:14px 0 6px}
.kpis{display:flex;gap:14px;flex-wrap:wrap;margin-bottom:18px}
.kpi{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:12px 16px;min-width:170px;max-width:250px}
.kpi small{display:block;color:#666;font-size:12px;margin-top:2px}
.kpi b{display:block;font-size:24px}
.kpi.bad b{color:#c62828}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:18px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e4e6eb;vertical-align:top}
td.detail{overflow-wrap:anywhere;min-width:280px}
section{overflow-x:auto}
th{background:#f0f2f5;cursor:pointer;user-select:none;white-space:nowrap}
th.sorted-asc::after{content:" \25B2"} th.sorted-desc::after{content:" \25BC"}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.st-no_client_auth,.st-expired,.st-client_auth_lost,.rt{color:#c62828;font-weight:600}
.st-loses_client_auth,.st-unknown_certificate{color:#b26a00;font-weight:600}
details{margin-top:8px;font-size:12px}
details pre{background:#1d2330;color:#e6e6e6;padding:8px 10px;border-radius:6px;overflow-x:auto;white-space:pre-wrap}
.note{color:#555;font-size:13px}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
svg text{font:11px system-ui,sans-serif;fill:#333}
code{font-size:12px}
"#;

/// Sorts a table by the clicked column: numbers numerically (cells carry `data-v` when the
/// shown text is not the value), everything else as text.
const JS: &str = r#"
(function(){
  function val(td){var v=td.getAttribute('data-v');return v===null?td.textContent.trim():v;}
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('th').forEach(function(th,i){
      th.addEventListener('click',function(){
        var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        var asc=!th.classList.contains('sorted-asc');
        t.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
        th.classList.add(asc?'sorted-asc':'sorted-desc');
        var num=rows.every(function(r){var x=val(r.cells[i]);return x===''||!isNaN(Number(x));});
        rows.sort(function(a,b){
          var x=val(a.cells[i]),y=val(b.cells[i]);
          var c=num?(Number(x)-Number(y)):x.localeCompare(y);
          return asc?c:-c;
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  // Self-check for automated rendering tests: every chart must have drawn marks.
  var charts=document.querySelectorAll('svg.chart'),drawn=0;
  charts.forEach(function(s){if(s.querySelectorAll('rect,circle,path,line,polyline').length>0){drawn++;}});
  document.body.setAttribute('data-charts',String(charts.length));
  document.body.setAttribute('data-charts-drawn',String(drawn));
  document.body.setAttribute('data-tables',String(document.querySelectorAll('table.sortable').length));
  // With #selftest, sort the first numeric column and check the order (rendering tests
  // cannot click).
  if(location.hash==='#selftest'){
    var ok='no-table';
    var th=document.querySelector('table.sortable th.n');
    if(th){
      var t=th.closest('table'),i=Array.prototype.indexOf.call(th.parentNode.children,th);
      th.click();
      var v=Array.prototype.map.call(t.tBodies[0].rows,function(r){return Number(val(r.cells[i]));});
      ok=v.every(function(x,k){return k===0||v[k-1]<=x;})?'1':'0';
    }
    document.body.setAttribute('data-sort-ok',ok);
  }
  document.body.setAttribute('data-ready','1');
})();
"#;

struct Table {
    head: Vec<(&'static str, bool)>,
    rows: Vec<Vec<Cell>>,
}

enum Cell {
    Text(String),
    /// Long free text (webpki's reasons): may wrap anywhere.
    Detail(String),
    Num(u64),
    Share(f64),
    Status(&'static str),
}

impl Table {
    fn new(head: &[(&'static str, bool)]) -> Table {
        Table {
            head: head.to_vec(),
            rows: Vec::new(),
        }
    }
    fn write(&self, o: &mut String) {
        if self.rows.is_empty() {
            o.push_str("<p class=\"note\">No rows.</p>");
            return;
        }
        o.push_str("<table class=\"sortable\"><thead><tr>");
        for (h, num) in &self.head {
            let _ = write!(
                o,
                "<th{}>{}</th>",
                if *num { " class=\"n\"" } else { "" },
                esc(h)
            );
        }
        o.push_str("</tr></thead><tbody>");
        for r in self.rows.iter().take(MAX_HTML_ROWS) {
            o.push_str("<tr>");
            for c in r {
                let _ = match c {
                    Cell::Text(t) => write!(o, "<td>{}</td>", esc(t)),
                    Cell::Detail(t) => write!(o, "<td class=\"detail\">{}</td>", esc(t)),
                    Cell::Num(n) => write!(o, "<td class=\"n\">{n}</td>"),
                    Cell::Share(s) => write!(o, "<td class=\"n\" data-v=\"{s}\">{}</td>", pct(*s)),
                    Cell::Status(s) => write!(o, "<td class=\"st-{s}\">{}</td>", esc(s)),
                };
            }
            o.push_str("</tr>");
        }
        o.push_str("</tbody></table>");
        if self.rows.len() > MAX_HTML_ROWS {
            let _ = write!(
                o,
                "<p class=\"note\">{} more rows: see <code>--format json</code>.</p>",
                self.rows.len() - MAX_HTML_ROWS
            );
        }
    }
}

/// Rows per table in the page: a browser stays responsive, the file small enough to mail;
/// `--format json` has every row.
pub const MAX_HTML_ROWS: usize = 1000;

fn t(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn opt(s: &Option<String>) -> Cell {
    t(s.clone().unwrap_or_else(|| "-".into()))
}

fn section_counts(o: &mut String, v: &SectionView) {
    if let Some(e) = v.empty {
        let _ = write!(o, "<p class=\"note\">{}</p>", esc(e));
        return;
    }
    let _ = write!(o, "<p class=\"note\">{}.</p>", esc(&v.summary));
    let mut tb = Table::new(&[
        ("", false),
        ("sessions", true),
        (v.peers, true),
        ("share", true),
    ]);
    for (label, c) in &v.counts {
        tb.rows.push(vec![
            t(label.trim()),
            Cell::Num(c.sessions),
            Cell::Num(c.peers),
            Cell::Share(c.share),
        ]);
    }
    tb.write(o);
}

fn cert_cells(c: &CertView) -> Vec<Cell> {
    vec![
        opt(&c.certificate),
        opt(&c.eku),
        opt(&c.not_after),
        opt(&c.loses_client_auth_on),
        Cell::Status(c.status),
    ]
}

/// The command line and SQL that reproduce a section's numbers.
fn reproduce(o: &mut String, r: &Report, jq: &str, sql: &[&str]) {
    // Inputs as the report names them: a file path, or `URL (database D)[ (sensor S)]`.
    let from: Vec<String> = r
        .inputs
        .iter()
        .map(|i| {
            if !i.starts_with("http://") && !i.starts_with("https://") {
                return format!("--from {i}");
            }
            let url = i.split(' ').next().unwrap_or(i);
            let field = |k: &str| {
                i.split_once(&format!("({k} "))
                    .and_then(|(_, rest)| rest.split(')').next())
            };
            let mut a = format!("--clickhouse {url}");
            if let Some(d) = field("database").filter(|d| *d != "mxcert") {
                let _ = write!(a, " --clickhouse-database {d}");
            }
            if let Some(s) = field("sensor") {
                let _ = write!(a, " --sensor {s}");
            }
            a
        })
        .collect();
    let mut cmd = format!(
        "mxcert report {} --at {}",
        from.join(" "),
        r.at.get(..19).map_or(r.at.clone(), |s| format!("{s}Z"))
    );
    if let Some(s) = &r.window.since {
        let _ = write!(cmd, " --since {s}");
    }
    if let Some(u) = &r.window.until {
        let _ = write!(cmd, " --until {u}");
    }
    let _ = write!(
        o,
        "<details><summary>Reproduce these numbers</summary><pre>{} --format json | jq '{}'",
        esc(&cmd),
        esc(jq)
    );
    for q in sql {
        let _ = write!(
            o,
            "\n\n# ClickHouse (query pack): clickhouse-client --queries-file schema/queries/{}",
            esc(q)
        );
    }
    o.push_str("</pre></details>");
}

/// Stacked bars: failing sessions per rule per time bucket.
fn trend_chart(r: &Report) -> String {
    let tr = &r.trend;
    let (w, h, l, b, top) = (640.0, 260.0, 44.0, 40.0, 12.0);
    let n = tr.buckets.len().max(1);
    let totals: Vec<u64> = (0..n)
        .map(|i| {
            tr.series
                .iter()
                .map(|s| s.counts.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg class=\"chart\" id=\"chart-trend\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"failing sessions by rule over time\">"
    );
    let ph = h - b - top;
    let pw = w - l - 10.0;
    // Axes and a few gridlines.
    for k in 0..=4 {
        let y = top + ph - ph * f64::from(k) / 4.0;
        let v = max * f64::from(k) / 4.0;
        let _ = write!(
            o,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e4e6eb\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            w - 10.0,
            l - 4.0,
            y + 4.0
        );
    }
    let bw = pw / n as f64;
    for i in 0..n {
        let mut y = top + ph;
        for (si, s) in tr.series.iter().enumerate() {
            let c = s.counts.get(i).copied().unwrap_or(0);
            if c == 0 {
                continue;
            }
            let hh = ph * c as f64 / max;
            y -= hh;
            let _ = write!(
                o,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{hh:.1}\" fill=\"{}\"><title>{} {}: {c}</title></rect>",
                l + bw * i as f64 + bw * 0.1,
                (bw * 0.8).max(1.0),
                PALETTE[si % PALETTE.len()],
                esc(&s.rule),
                esc(tr.buckets.get(i).map_or("", String::as_str))
            );
        }
    }
    let _ = write!(
        o,
        "<line x1=\"{l}\" x2=\"{l}\" y1=\"{top}\" y2=\"{}\" stroke=\"#888\"/><line x1=\"{l}\" x2=\"{}\" y1=\"{0}\" y2=\"{0}\" stroke=\"#888\"/>",
        top + ph,
        w - 10.0
    );
    // First and last bucket labels.
    if let (Some(f), Some(z)) = (tr.buckets.first(), tr.buckets.last()) {
        let _ = write!(
            o,
            "<text x=\"{l}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            h - b + 16.0,
            esc(&f[..16.min(f.len())]),
            w - 10.0,
            h - b + 16.0,
            esc(&z[..16.min(z.len())])
        );
    }
    let _ = write!(
        o,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">bucket {}</text></svg>",
        l + pw / 2.0,
        h - 6.0,
        human_secs(tr.bucket_seconds)
    );
    o.push_str("<div class=\"legend\">");
    for (si, s) in tr.series.iter().enumerate() {
        let total: u64 = s.counts.iter().sum();
        let _ = write!(
            o,
            "<span><i style=\"background:{}\"></i>{} ({total})</span>",
            PALETTE[si % PALETTE.len()],
            esc(&s.rule)
        );
    }
    if tr.series.is_empty() {
        o.push_str("<span>no failing finding in the input</span>");
    }
    o.push_str("</div>");
    o
}

fn human_secs(s: i64) -> String {
    match s {
        60 => "1 minute".into(),
        300 => "5 minutes".into(),
        3_600 => "1 hour".into(),
        86_400 => "1 day".into(),
        604_800 => "1 week".into(),
        s => format!("{} days", s / 86_400),
    }
}

/// Horizontal bars: share of each section's traffic at risk at AT, and the coverage split.
fn risk_chart(r: &Report) -> String {
    let bars: [(&str, f64, u64, u64); 3] = [
        (
            "inbound senders rejected under clientAuth enforcement",
            r.inbound_client_certs.at_risk.share,
            r.inbound_client_certs.at_risk.sessions,
            r.inbound_client_certs.base_sessions,
        ),
        (
            "outbound: our certificate at risk",
            r.outbound_our_certificate.at_risk.share,
            r.outbound_our_certificate.at_risk.sessions,
            r.outbound_our_certificate.base_sessions,
        ),
        (
            "outbound: would fail strict validation / MTA-STS",
            r.outbound_strict_validation.at_risk.share,
            r.outbound_strict_validation.at_risk.sessions,
            r.outbound_strict_validation.sessions,
        ),
    ];
    let (w, l, bh) = (640.0, 10.0, 18.0);
    let pw = w - 2.0 * l;
    let h = 40.0 + bars.len() as f64 * 44.0 + 60.0;
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg class=\"chart\" id=\"chart-risk\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"share of traffic at risk\">"
    );
    let mut y = 14.0;
    for (label, share, n, base) in bars {
        let _ = write!(
            o,
            "<text x=\"{l}\" y=\"{y}\">{} — {n} of {base} sessions ({})</text>",
            esc(label),
            pct(share)
        );
        let _ = write!(
            o,
            "<rect x=\"{l}\" y=\"{:.1}\" width=\"{pw}\" height=\"{bh}\" fill=\"#e8eaee\"/><rect x=\"{l}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh}\" fill=\"#d62728\"><title>{}</title></rect>",
            y + 6.0,
            y + 6.0,
            pw * share,
            pct(share)
        );
        y += 44.0;
    }
    // Coverage: one stacked bar of the four categories.
    let cov = &r.coverage;
    let _ = write!(
        o,
        "<text x=\"{l}\" y=\"{y}\">coverage of all {} sessions: what the sections above can see</text>",
        cov.sessions
    );
    let mut x = l;
    let colors = ["#2ca02c", "#ff7f0e", "#7f7f7f", "#bcbd22"];
    for (row, color) in cov.rows.iter().zip(colors) {
        let ww = pw * row.share;
        let _ = write!(
            o,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{ww:.1}\" height=\"{bh}\" fill=\"{color}\"><title>{} {} ({})</title></rect>",
            y + 6.0,
            row.category,
            row.sessions,
            pct(row.share)
        );
        x += ww;
    }
    let mut lx = l;
    for (row, color) in cov.rows.iter().zip(colors) {
        let label = format!("{} {}", row.category.replace('_', " "), pct(row.share));
        let _ = write!(
            o,
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{:.1}\">{}</text>",
            y + 32.0,
            lx + 14.0,
            y + 41.0,
            esc(&label)
        );
        // ~6 px per character of the 11 px font, plus the swatch and a gap.
        lx += 14.0 + 6.2 * label.chars().count() as f64 + 18.0;
    }
    o.push_str("</svg>");
    o
}

/// Break dates on a time axis, with AT marked.
fn timeline_chart(r: &Report) -> String {
    let (w, h, l, rgt) = (640.0, 200.0, 20.0, 20.0);
    let evs: Vec<(i64, &super::model::TimelineEvent)> = r
        .timeline
        .iter()
        .filter_map(|e| parse_date(&e.date).map(|d| (d, e)))
        .collect();
    let lo = evs
        .iter()
        .map(|(d, _)| *d)
        .min()
        .unwrap_or(r.at_s)
        .min(r.at_s);
    let hi = evs
        .iter()
        .map(|(d, _)| *d)
        .max()
        .unwrap_or(r.at_s)
        .max(r.at_s);
    let span = (hi - lo).max(86_400) as f64;
    let x = |d: i64| l + (w - l - rgt) * (d - lo) as f64 / span;
    let axis = 120.0;
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg class=\"chart\" id=\"chart-timeline\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"break-date timeline\">"
    );
    let _ = write!(
        o,
        "<line x1=\"{l}\" x2=\"{}\" y1=\"{axis}\" y2=\"{axis}\" stroke=\"#888\"/>",
        w - rgt
    );
    // Year ticks when the span is long, else the two ends.
    let (y0, y1) = (year_of(lo), year_of(hi));
    if y1 > y0 {
        for y in y0 + 1..=y1 {
            let d = crate::timefmt::unix_seconds(y, 1, 1, 0, 0, 0);
            let xx = x(d);
            let _ = write!(
                o,
                "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#bbb\"/><text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"middle\">{y}</text>",
                axis - 4.0,
                axis + 4.0,
                axis + 18.0
            );
        }
    }
    let ax = x(r.at_s);
    // Keep the AT label inside the chart when AT is near an end.
    let anchor = if ax > w - 90.0 {
        "end"
    } else if ax < 90.0 {
        "start"
    } else {
        "middle"
    };
    let _ = write!(
        o,
        "<line x1=\"{ax:.1}\" x2=\"{ax:.1}\" y1=\"20\" y2=\"{}\" stroke=\"#1d2330\" stroke-dasharray=\"4 3\"/><text x=\"{ax:.1}\" y=\"14\" text-anchor=\"{anchor}\">AT {}</text>",
        axis + 30.0,
        esc(&r.at[..10.min(r.at.len())])
    );
    for (i, (d, e)) in evs.iter().enumerate() {
        let xx = x(*d);
        let color = match (e.event, e.past) {
            (_, true) => "#d62728",
            ("client_auth_lost", false) => "#ff7f0e",
            _ => "#1f77b4",
        };
        let yy = axis - 14.0 - (i % 5) as f64 * 16.0;
        let rad = 4.0 + (e.sessions as f64).sqrt().min(6.0);
        let _ = write!(
            o,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{yy:.1}\" y2=\"{axis}\" stroke=\"{color}\" stroke-opacity=\".4\"/><circle cx=\"{xx:.1}\" cy=\"{yy:.1}\" r=\"{rad:.1}\" fill=\"{color}\"><title>{} {} {} ({}, {} sessions, {} peers)</title></circle>",
            esc(&e.date[..10.min(e.date.len())]),
            esc(&e.certificate),
            e.event.replace('_', " "),
            e.section.replace('_', " "),
            e.sessions,
            e.peers
        );
    }
    if evs.is_empty() {
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no certificate dates in the input</text>",
            w / 2.0,
            axis - 30.0
        );
    }
    let _ = write!(
        o,
        "<text x=\"{l}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        axis + 44.0,
        esc(&crate::timefmt::rfc3339_ms(lo * 1_000_000_000)[..10]),
        w - rgt,
        axis + 44.0,
        esc(&crate::timefmt::rfc3339_ms(hi * 1_000_000_000)[..10])
    );
    let _ = write!(
        o,
        "<circle cx=\"{l}\" cy=\"{}\" r=\"5\" fill=\"#d62728\"/><text x=\"{}\" y=\"{}\">on or before AT</text><circle cx=\"{}\" cy=\"{}\" r=\"5\" fill=\"#1f77b4\"/><text x=\"{}\" y=\"{}\">certificate expires</text><circle cx=\"{}\" cy=\"{}\" r=\"5\" fill=\"#ff7f0e\"/><text x=\"{}\" y=\"{}\">clientAuth lost</text>",
        h - 14.0,
        l + 10.0,
        h - 10.0,
        l + 140.0,
        h - 14.0,
        l + 150.0,
        h - 10.0,
        l + 300.0,
        h - 14.0,
        l + 310.0,
        h - 10.0
    );
    o.push_str("</svg>");
    o
}

fn year_of(s: i64) -> i64 {
    crate::timefmt::rfc3339_ms(s * 1_000_000_000)[..4]
        .parse()
        .unwrap_or(1970)
}

fn kpi(o: &mut String, label: &str, value: String, detail: &str, bad: bool) {
    let _ = write!(
        o,
        "<div class=\"kpi{}\"><b>{}</b>{}<small>{}</small></div>",
        if bad { " bad" } else { "" },
        esc(&value),
        esc(label),
        esc(detail)
    );
}

pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"><title>mxcert impact report — {}</title><style>{CSS}</style></head><body>",
        esc(&r.at[..10.min(r.at.len())])
    );
    let _ = write!(
        o,
        "<header><h1>mxcert impact report</h1><div class=\"meta\">assessed at <b>{}</b> ({}) · sessions {} .. {} · inputs {} · policy {}</div></header><main>",
        esc(&r.at),
        esc(r.at_from),
        esc(r.window.first_session.as_deref().unwrap_or("-")),
        esc(r.window.last_session.as_deref().unwrap_or("-")),
        esc(&r.inputs.join(", ")),
        esc(&r.policy)
    );

    let cov = &r.coverage;
    o.push_str("<div class=\"kpis\">");
    kpi(
        &mut o,
        "sessions",
        cov.sessions.to_string(),
        &format!("{} peer(s)", cov.peers),
        false,
    );
    kpi(
        &mut o,
        "inspected (certificates seen)",
        pct(cov.rows.first().map_or(0.0, |c| c.share)),
        &format!(
            "{} TLS 1.3 via the TLS library, {} TLS 1.3 not seen, {} without TLS, {} incomplete",
            cov.tls13_library, cov.tls13_uninspectable, cov.no_tls, cov.incomplete
        ),
        false,
    );
    for (label, c) in [
        (
            "inbound senders rejected under clientAuth enforcement",
            &r.inbound_client_certs.at_risk,
        ),
        (
            "destinations at risk from our certificate",
            &r.outbound_our_certificate.at_risk,
        ),
        (
            "destinations failing strict validation / MTA-STS",
            &r.outbound_strict_validation.at_risk,
        ),
    ] {
        kpi(
            &mut o,
            label,
            format!("{} sessions", c.sessions),
            &format!(
                "{} peer(s), {} of the section's traffic",
                c.peers,
                pct(c.share)
            ),
            c.sessions > 0,
        );
    }
    o.push_str("</div>");

    o.push_str("<div class=\"charts\">");
    let _ = write!(
        o,
        "<section><h2>Failing sessions by rule over time</h2>{}",
        trend_chart(r)
    );
    reproduce(
        &mut o,
        r,
        ".trend",
        &["6_daily_failing_sessions_by_rule.sql"],
    );
    o.push_str("</section>");
    let _ = write!(
        o,
        "<section><h2>Share of traffic at risk at AT</h2>{}</section>",
        risk_chart(r)
    );
    let _ = write!(o, "<section><h2>Break dates</h2>{}", timeline_chart(r));
    reproduce(&mut o, r, ".timeline", &["2_inbound_clientauth_sunset.sql"]);
    o.push_str("</section></div>");

    // Coverage.
    let _ = write!(
        o,
        "<section id=\"coverage\"><h2>Coverage</h2><p class=\"note\">{} sessions, {} peers ({}). Only inspected sessions can be assessed by the sections below.</p>",
        cov.sessions,
        cov.peers,
        esc(&cov
            .by_direction
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "))
    );
    let mut tb = Table::new(&[
        ("category", false),
        ("sessions", true),
        ("peers", true),
        ("share", true),
    ]);
    for c in &cov.rows {
        tb.rows.push(vec![
            t(c.category),
            Cell::Num(c.sessions),
            Cell::Num(c.peers),
            Cell::Share(c.share),
        ]);
    }
    tb.write(&mut o);
    reproduce(&mut o, r, ".coverage", &["5_coverage.sql"]);
    o.push_str("</section>");

    // Inbound.
    let s = &r.inbound_client_certs;
    let _ = write!(
        o,
        "<section id=\"inbound\"><h2>Inbound: client certificates</h2>"
    );
    section_counts(&mut o, &s.view());
    let mut tb = Table::new(&[
        ("sender", false),
        ("EHLO", false),
        ("certificate", false),
        ("EKU", false),
        ("not after", false),
        ("loses clientAuth", false),
        ("status", false),
        ("sessions", true),
        ("last seen", false),
    ]);
    for x in &s.rows {
        let mut row = vec![t(x.sender_ip.clone()), opt(&x.sender_name)];
        row.extend(cert_cells(&x.cert));
        row.push(Cell::Num(x.sessions));
        row.push(t(x.last_seen.clone()));
        tb.rows.push(row);
    }
    tb.write(&mut o);
    reproduce(
        &mut o,
        r,
        ".inbound_client_certs | {sessions, peers, without_client_auth, losing_client_auth, at_risk}",
        &[
            "1_inbound_client_certs_without_clientauth.sql",
            "2_inbound_clientauth_sunset.sql",
        ],
    );
    o.push_str("</section>");

    // Our certificate.
    let s = &r.outbound_our_certificate;
    let _ = write!(
        o,
        "<section id=\"our-certificate\"><h2>Outbound: our client certificate</h2>"
    );
    section_counts(&mut o, &s.view());
    if !s.our_certificates.is_empty() {
        o.push_str("<h3>What we present</h3>");
        let mut tb = Table::new(&[
            ("certificate", false),
            ("EKU", false),
            ("not after", false),
            ("loses clientAuth", false),
            ("status", false),
            ("sessions", true),
            ("destinations", true),
        ]);
        for c in &s.our_certificates {
            let mut row = cert_cells(&c.cert);
            row.push(Cell::Num(c.sessions));
            row.push(Cell::Num(c.destinations));
            tb.rows.push(row);
        }
        tb.write(&mut o);
    }
    let mut tb = Table::new(&[
        ("destination", false),
        ("address", false),
        ("presented", false),
        ("our certificate", false),
        ("status", false),
        ("affected after renewal", false),
        ("sessions", true),
        ("last seen", false),
    ]);
    for x in &s.rows {
        tb.rows.push(vec![
            t(x.destination_name.clone()),
            t(x.destination_ip.clone()),
            t(if x.presented { "yes" } else { "no" }),
            opt(&x.cert.certificate),
            Cell::Status(x.cert.status),
            t(if x.affected_after_renewal {
                "yes"
            } else {
                "no"
            }),
            Cell::Num(x.sessions),
            t(x.last_seen.clone()),
        ]);
    }
    tb.write(&mut o);
    reproduce(
        &mut o,
        r,
        ".outbound_our_certificate | {sessions, peers, presented, affected_after_renewal, at_risk}",
        &["3_outbound_destinations_requesting_client_certs.sql"],
    );
    o.push_str("</section>");

    // Strict validation.
    let s = &r.outbound_strict_validation;
    let _ = write!(
        o,
        "<section id=\"strict\"><h2>Outbound: strict validation / MTA-STS enforce (what if)</h2>"
    );
    section_counts(&mut o, &s.view());
    o.push_str("<h3>By RFC 8460 result type</h3>");
    let mut tb = Table::new(&[
        ("result type", false),
        ("sessions", true),
        ("destinations", true),
        ("share", true),
        ("failing rules (sessions)", false),
    ]);
    for x in &s.by_result_type {
        tb.rows.push(vec![
            t(x.result_type),
            Cell::Num(x.sessions),
            Cell::Num(x.peers),
            Cell::Share(x.share),
            t(x.rules
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")),
        ]);
    }
    tb.write(&mut o);
    o.push_str("<h3>Offenders</h3>");
    let mut tb = Table::new(&[
        ("destination", false),
        ("address", false),
        ("result type", false),
        ("rule", false),
        ("sessions", true),
        ("detail", false),
        ("last seen", false),
    ]);
    for x in &s.rows {
        tb.rows.push(vec![
            t(x.destination_name.clone()),
            t(x.destination_ip.clone()),
            t(x.result_type),
            t(x.rule.clone()),
            Cell::Num(x.sessions),
            Cell::Detail(x.detail.clone()),
            t(x.last_seen.clone()),
        ]);
    }
    tb.write(&mut o);
    reproduce(
        &mut o,
        r,
        ".outbound_strict_validation | {sessions, peers, at_risk, by_result_type}",
        &["4_outbound_strict_validation_failures.sql"],
    );
    o.push_str("</section>");

    // Timeline table.
    o.push_str("<section id=\"timeline\"><h2>Break dates</h2>");
    let mut tb = Table::new(&[
        ("date", false),
        ("event", false),
        ("certificate", false),
        ("section", false),
        ("sessions", true),
        ("peers", true),
        ("on or before AT", false),
    ]);
    for e in &r.timeline {
        tb.rows.push(vec![
            t(e.date.clone()),
            t(e.event.replace('_', " ")),
            t(e.certificate.clone()),
            t(e.section.replace('_', " ")),
            Cell::Num(e.sessions),
            Cell::Num(e.peers),
            t(if e.past { "yes" } else { "no" }),
        ]);
    }
    tb.write(&mut o);
    o.push_str("</section>");

    o.push_str("<section id=\"notes\"><h2>Notes</h2><ul>");
    for c in &r.caveats {
        let _ = write!(o, "<li>{}</li>", esc(c));
    }
    let _ = writeln!(
        o,
        "</ul></section></main><script>{JS}</script></body></html>"
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_bounded_and_escaped() {
        let mut tb = Table::new(&[("name", false), ("n", true)]);
        for i in 0..MAX_HTML_ROWS + 5 {
            tb.rows
                .push(vec![t(format!("<x{i}>")), Cell::Num(i as u64)]);
        }
        let mut o = String::new();
        tb.write(&mut o);
        assert_eq!(
            o.matches("<tr>").count(),
            MAX_HTML_ROWS + 1,
            "header + bound"
        );
        assert!(o.contains("5 more rows"));
        assert!(o.contains("&lt;x0&gt;") && !o.contains("<x0>"));
        let mut o = String::new();
        Table::new(&[("a", false)]).write(&mut o);
        assert!(o.contains("No rows."));
    }
}
