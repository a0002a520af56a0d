//! `--format json`: the report model as one JSON document with stable keys (`report_version`
//! says which layout). Top level: `coverage`, `inbound_client_certs`,
//! `outbound_our_certificate`, `outbound_strict_validation` (each with `sessions`, `peers`,
//! `share` and `rows`), `timeline`, `trend`, `caveats`.

use super::Report;

pub fn render(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("the report model always serializes");
    s.push('\n');
    s
}
