//! Types shared between mxcert's eBPF programs and user space.
//!
//! The TC classifier itself arrives with the live-capture issue (#5); until then this crate only
//! fixes the constants both sides must agree on, so the offline pipeline and the future kernel
//! program filter the same ports.
#![no_std]

/// SMTP ports watched by default: 25 (MTA relay), 587 (submission), 465 (implicit TLS, RFC 8314).
pub const DEFAULT_PORTS: [u16; 3] = [25, 587, 465];
