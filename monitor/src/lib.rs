//! mxcert: passive SMTP/TLS certificate monitor.
//!
//! Stages follow the data path: [`capture`] → [`reassembly`] → [`smtp`] → [`tls`] → [`x509`]
//! → [`session`] (the per-flow state machine tying them together) → [`sink`]; [`report`] reads
//! the records back into the impact report. `main.rs` only
//! parses the command line and wires them; this library exposes them to tests and benches.

pub mod capture;
pub mod classify;
pub mod daemon;
pub mod progress;
pub mod reassembly;
pub mod report;
pub mod session;
pub mod sink;
pub mod smtp;
pub mod timefmt;
pub mod tls;
pub mod x509;
