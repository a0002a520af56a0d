//! Stage 4: the TLS handshake (RFC 5246, RFC 8446; SSL 3.0 per RFC 6101), read from the byte
//! stream of each direction until both sides have switched to encrypted records.
//!
//! Record framing and handshake-message reassembly (a Certificate message often spans several
//! records and many TCP segments) are done here; the messages themselves are decoded with
//! `tls-parser`. Certificates go to a [`CertObserver`] as DER slices borrowed from the handshake
//! buffer, so a chain is hashed and parsed once without copying it around.

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_message_handshake,
    parse_tls_server_hello_extensions, TlsCipherSuite, TlsExtension, TlsMessage,
    TlsMessageHandshake,
};

use crate::x509::Fingerprint;

/// Largest record body accepted: 2^14 plaintext + 2048 expansion (RFC 5246 §6.2.3).
pub const MAX_RECORD: usize = (1 << 14) + 2048;
/// Largest handshake message reassembled. Real certificate chains stay far below 64 KiB; the
/// bound keeps a hostile peer from making mxcert buffer the protocol's 16 MiB maximum.
pub const MAX_HANDSHAKE_MSG: usize = 256 * 1024;
/// Certificates kept per chain.
pub const MAX_CHAIN: usize = 16;

/// RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Receives each certificate of a Certificate message and returns its identity.
pub trait CertObserver {
    fn certificate(&mut self, der: &[u8]) -> Fingerprint;
}

/// Which peer sent the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Whether `buf` starts a TLS (or SSLv2-compatible) ClientHello/record. `None`: too few bytes to
/// tell. Used to detect TLS by content: on port 465 from the first byte, after STARTTLS, and on
/// any port where a peer speaks TLS without asking.
pub fn looks_like_tls(buf: &[u8]) -> Option<bool> {
    let first = *buf.first()?;
    match first {
        // handshake, alert, change_cipher_spec, application_data: version major 3, minor 0..4.
        20..=23 => {
            let major = *buf.get(1)?;
            let minor = *buf.get(2)?;
            Some(major == 3 && minor <= 4)
        }
        // SSLv2-compatible ClientHello (RFC 5246 Appendix E.2): 2-byte length with the high bit
        // set, msg_type 1, version 3.x.
        0x80..=0xff => {
            let ty = *buf.get(2)?;
            let major = *buf.get(3)?;
            Some(ty == 1 && major == 3)
        }
        _ => Some(false),
    }
}

/// Protocol version names used in records.
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0002 => "SSL2.0",
        0x0300 => "SSL3.0",
        0x0301 => "TLS1.0",
        0x0302 => "TLS1.1",
        0x0303 => "TLS1.2",
        0x0304 => "TLS1.3",
        // Pre-RFC drafts of 1.3 (0x7fXX) negotiate what became TLS 1.3.
        v if v >> 8 == 0x7f => "TLS1.3",
        _ => "unknown",
    }
}

/// IANA name of a cipher suite, or its code as `0xXXXX` when tls-parser does not know it.
pub fn cipher_name(id: u16) -> String {
    match TlsCipherSuite::from_id(id) {
        Some(c) => c.name.to_string(),
        None => format!("0x{id:04X}"),
    }
}

/// RFC 8446 §6 / RFC 5246 §7.2 alert description names.
pub fn alert_name(code: u8) -> String {
    let n = match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        other => return format!("alert_{other}"),
    };
    n.to_string()
}

/// What the ClientHello said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    pub supported_versions: Vec<u16>,
    pub sni: Option<String>,
    pub ciphers: Vec<u16>,
    /// Sent in the SSL 2.0 compatible format.
    pub sslv2_format: bool,
}

/// What the handshake revealed, filled as messages arrive.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    pub client_hello: Option<ClientHello>,
    /// Negotiated version (ServerHello, supported_versions when present).
    pub version: Option<u16>,
    pub cipher: Option<u16>,
    pub hello_retry: bool,
    pub cert_requested: bool,
    /// Certificate types the CertificateRequest asked for (RFC 5246 §7.4.4).
    pub cert_request_types: Vec<u8>,
    pub server_chain: Vec<Fingerprint>,
    /// A server Certificate message was seen (possibly empty).
    pub server_cert_msg: bool,
    pub client_chain: Vec<Fingerprint>,
    /// A client Certificate message was seen; empty means "declined" (RFC 5246 §7.4.6).
    pub client_cert_msg: bool,
    /// First cleartext alert: (level, description).
    pub alert: Option<(u8, u8)>,
    pub alert_from: Option<Side>,
    /// Handshake messages that tls-parser could not decode (kept as data, not errors).
    pub undecodable_messages: u32,
}

impl TlsFacts {
    pub fn is_tls13(&self) -> bool {
        self.version.is_some_and(|v| v == 0x0304 || v >> 8 == 0x7f)
    }
}

/// Why a direction stopped being parsed before the handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Bytes that are not a TLS record header.
    BadRecord,
    /// Record or handshake message over the bounds.
    Oversize,
}

/// Framing state of one direction.
#[derive(Debug, Default)]
pub struct Direction {
    /// Partial handshake message bytes (across records).
    hs: Vec<u8>,
    /// This side has sent ChangeCipherSpec (TLS ≤ 1.2): its later records are encrypted.
    pub ccs: bool,
    /// Records after the switch to encryption (TLS ≤ 1.2: the first one is Finished).
    pub encrypted_records: u32,
    /// application_data records (TLS 1.3: encrypted handshake and data).
    pub app_data_records: u32,
    pub records: u32,
    pub invalid: Option<Invalid>,
}

/// Both directions plus what they revealed.
#[derive(Debug, Default)]
pub struct Tls {
    pub client: Direction,
    pub server: Direction,
    pub facts: TlsFacts,
}

/// Result of feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// `n` bytes consumed; call again with the rest once more data is there.
    Consumed(usize),
}

impl Tls {
    /// Consumes whole records from `buf` (bytes of `side`, starting at a record boundary).
    /// Returns how many bytes were used; the caller keeps the rest for the next call.
    pub fn feed(&mut self, side: Side, buf: &[u8], certs: &mut dyn CertObserver) -> usize {
        let mut used = 0;
        loop {
            let dir = match side {
                Side::Client => &self.client,
                Side::Server => &self.server,
            };
            if dir.invalid.is_some() {
                return buf.len();
            }
            let rest = &buf[used..];
            if rest.is_empty() {
                return used;
            }
            // SSLv2-compatible ClientHello (first record from a client only).
            if rest[0] & 0x80 != 0 && side == Side::Client && dir.records == 0 {
                if rest.len() < 2 {
                    return used;
                }
                let len = usize::from(u16::from_be_bytes([rest[0] & 0x7f, rest[1]]));
                if rest.len() < 2 + len {
                    return used;
                }
                self.sslv2_client_hello(&rest[2..2 + len]);
                self.client.records += 1;
                used += 2 + len;
                continue;
            }
            if rest.len() < 5 {
                return used;
            }
            let ctype = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            if !(20..=24).contains(&ctype) || rest[1] != 3 || rest[2] > 4 {
                self.dir_mut(side).invalid = Some(Invalid::BadRecord);
                return buf.len();
            }
            if len > MAX_RECORD {
                self.dir_mut(side).invalid = Some(Invalid::Oversize);
                return buf.len();
            }
            if rest.len() < 5 + len {
                return used;
            }
            let body = &rest[5..5 + len];
            used += 5 + len;
            self.record(side, ctype, body, certs);
        }
    }

    fn dir_mut(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// This direction's records are encrypted from now on.
    fn encrypted(&self, side: Side) -> bool {
        let tls13 = self.facts.is_tls13() && !self.facts.hello_retry;
        match side {
            Side::Client => self.client.ccs && !tls13 || tls13 && self.client.app_data_records > 0,
            Side::Server => self.server.ccs || tls13,
        }
    }

    fn record(&mut self, side: Side, ctype: u8, body: &[u8], certs: &mut dyn CertObserver) {
        let encrypted = self.encrypted(side);
        let first_alert = self.facts.alert.is_none();
        let dir = self.dir_mut(side);
        dir.records += 1;
        if encrypted && ctype != 20 {
            dir.encrypted_records += 1;
            if ctype == 23 {
                dir.app_data_records += 1;
            }
            return;
        }
        match ctype {
            20 => {
                // In TLS 1.3 the CCS is a middlebox-compatibility no-op (RFC 8446 §D.4);
                // encryption starts with the ServerHello (server) or the first encrypted
                // record (client), handled by `encrypted`.
                dir.ccs = true;
            }
            21 if body.len() >= 2 && first_alert => {
                self.facts.alert = Some((body[0], body[1]));
                self.facts.alert_from = Some(side);
            }
            22 => {
                if dir.hs.len() + body.len() > MAX_HANDSHAKE_MSG + 4 {
                    dir.invalid = Some(Invalid::Oversize);
                    dir.hs = Vec::new();
                    return;
                }
                if dir.hs.is_empty() {
                    // Fast path: whole messages straight from the record, copy the tail only.
                    let n = self.messages(side, body, certs);
                    let dir = self.dir_mut(side);
                    dir.hs.extend_from_slice(&body[n..]);
                } else {
                    dir.hs.extend_from_slice(body);
                    let hs = std::mem::take(&mut self.dir_mut(side).hs);
                    let n = self.messages(side, &hs, certs);
                    let mut hs = hs;
                    hs.drain(..n);
                    self.dir_mut(side).hs = hs;
                }
            }
            23 => {
                dir.app_data_records += 1;
            }
            _ => {}
        }
    }

    /// Handles the complete handshake messages at the start of `buf`; returns bytes used.
    fn messages(&mut self, side: Side, buf: &[u8], certs: &mut dyn CertObserver) -> usize {
        let mut used = 0;
        while buf.len() - used >= 4 {
            let h = &buf[used..];
            let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            if len > MAX_HANDSHAKE_MSG {
                self.dir_mut(side).invalid = Some(Invalid::Oversize);
                return buf.len();
            }
            if h.len() < 4 + len {
                break;
            }
            self.message(side, &h[..4 + len], certs);
            used += 4 + len;
            if self.encrypted(side) {
                // ServerHello of TLS 1.3: whatever follows in this record is not plaintext.
                break;
            }
        }
        used
    }

    fn message(&mut self, side: Side, msg: &[u8], certs: &mut dyn CertObserver) {
        let parsed = match parse_tls_message_handshake(msg) {
            Ok((_, TlsMessage::Handshake(m))) => m,
            _ => {
                self.facts.undecodable_messages += 1;
                return;
            }
        };
        match (side, parsed) {
            (Side::Client, TlsMessageHandshake::ClientHello(ch)) => {
                let mut hello = ClientHello {
                    legacy_version: ch.version.0,
                    ciphers: ch.ciphers.iter().map(|c| c.0).collect(),
                    ..ClientHello::default()
                };
                if let Some(Ok((_, exts))) = ch.ext.map(parse_tls_client_hello_extensions) {
                    for e in exts {
                        match e {
                            TlsExtension::SNI(names) => {
                                if let Some((_, name)) = names.iter().find(|(t, _)| t.0 == 0) {
                                    hello.sni = Some(crate::smtp::printable(name));
                                }
                            }
                            TlsExtension::SupportedVersions(v) => {
                                hello.supported_versions = v.iter().map(|v| v.0).collect();
                            }
                            _ => {}
                        }
                    }
                }
                // After a HelloRetryRequest the second ClientHello replaces the first.
                self.facts.client_hello = Some(hello);
            }
            (Side::Server, TlsMessageHandshake::ServerHello(sh)) => {
                let mut version = sh.version.0;
                if let Some(Ok((_, exts))) = sh.ext.map(parse_tls_server_hello_extensions) {
                    for e in exts {
                        if let TlsExtension::SupportedVersions(v) = e {
                            if let Some(v) = v.first() {
                                version = v.0;
                            }
                        }
                    }
                }
                self.facts.hello_retry = sh.random == HRR_RANDOM;
                self.facts.version = Some(version);
                self.facts.cipher = Some(sh.cipher.0);
            }
            (Side::Server, TlsMessageHandshake::ServerHelloV13Draft18(sh)) => {
                self.facts.version = Some(sh.version.0);
                self.facts.cipher = Some(sh.cipher.0);
            }
            (side, TlsMessageHandshake::Certificate(c)) => {
                let chain: Vec<Fingerprint> = c
                    .cert_chain
                    .iter()
                    .take(MAX_CHAIN)
                    .map(|raw| certs.certificate(raw.data))
                    .collect();
                match side {
                    Side::Server => {
                        self.facts.server_cert_msg = true;
                        self.facts.server_chain = chain;
                    }
                    Side::Client => {
                        self.facts.client_cert_msg = true;
                        self.facts.client_chain = chain;
                    }
                }
            }
            (Side::Server, TlsMessageHandshake::CertificateRequest(cr)) => {
                self.facts.cert_requested = true;
                self.facts.cert_request_types = cr.cert_types.clone();
            }
            _ => {}
        }
    }

    fn sslv2_client_hello(&mut self, body: &[u8]) {
        // RFC 5246 Appendix E.2: msg_type(1) version(2) cipher_spec_length(2)
        // session_id_length(2) challenge_length(2) cipher_specs(3 each) ...
        if body.len() < 9 || body[0] != 1 {
            self.client.invalid = Some(Invalid::BadRecord);
            return;
        }
        let version = u16::from_be_bytes([body[1], body[2]]);
        let spec_len = usize::from(u16::from_be_bytes([body[3], body[4]]));
        let specs = body.get(9..9 + spec_len).unwrap_or(&[]);
        let ciphers = specs
            .chunks_exact(3)
            .filter(|c| c[0] == 0)
            .map(|c| u16::from_be_bytes([c[1], c[2]]))
            .collect();
        self.facts.client_hello = Some(ClientHello {
            legacy_version: version,
            ciphers,
            sslv2_format: true,
            ..ClientHello::default()
        });
    }

    /// The handshake is over and nothing more can be learnt from this flow: TLS ≤ 1.2 when both
    /// sides sent ChangeCipherSpec and an encrypted record (Finished) after it; TLS 1.3 when the
    /// ServerHello was followed by encrypted records from both sides.
    pub fn handshake_done(&self) -> bool {
        if self.facts.is_tls13() && !self.facts.hello_retry {
            self.server.app_data_records > 0 && self.client.app_data_records > 0
        } else {
            self.client.ccs
                && self.server.ccs
                && self.client.encrypted_records > 0
                && self.server.encrypted_records > 0
        }
    }

    /// Drops buffers once the flow is finished with.
    pub fn release(&mut self) {
        self.client.hs = Vec::new();
        self.server.hs = Vec::new();
    }
}

/// Handshake message builders for unit tests (here and in the session stage).
#[cfg(test)]
pub(crate) mod testmsg {
    pub fn record(ctype: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![ctype, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    pub fn handshake(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend_from_slice(body);
        m
    }

    pub fn certificate_msg(certs: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for c in certs {
            list.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
            list.extend_from_slice(c);
        }
        let mut body = (list.len() as u32).to_be_bytes()[1..].to_vec();
        body.extend_from_slice(&list);
        handshake(11, &body)
    }

    pub fn server_hello(version: u16, cipher: u16, exts: &[u8]) -> Vec<u8> {
        server_hello_sid(version, cipher, &[], exts)
    }

    /// A ServerHello echoing (or not) a session id.
    pub fn server_hello_sid(version: u16, cipher: u16, sid: &[u8], exts: &[u8]) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend_from_slice(&[7u8; 32]);
        b.push(sid.len() as u8);
        b.extend_from_slice(sid);
        b.extend_from_slice(&cipher.to_be_bytes());
        b.push(0); // compression
        b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        b.extend_from_slice(exts);
        handshake(2, &b)
    }

    /// A ClientHello offering TLS_AES_128_GCM_SHA256 and ECDHE-RSA-AES128-GCM-SHA256, with a
    /// session id and extensions as given.
    pub fn client_hello(sid: &[u8], exts: &[u8]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[9u8; 32]);
        b.push(sid.len() as u8);
        b.extend_from_slice(sid);
        b.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]);
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        b.extend_from_slice(exts);
        handshake(1, &b)
    }

    /// server_name (RFC 6066 §3) for `host`.
    pub fn sni_ext(host: &str) -> Vec<u8> {
        let h = host.as_bytes();
        let mut e = vec![0, 0];
        e.extend_from_slice(&((h.len() + 5) as u16).to_be_bytes());
        e.extend_from_slice(&((h.len() + 3) as u16).to_be_bytes());
        e.push(0);
        e.extend_from_slice(&(h.len() as u16).to_be_bytes());
        e.extend_from_slice(h);
        e
    }

    /// supported_versions (43) in a ServerHello, selecting TLS 1.3.
    pub const SH_TLS13: [u8; 6] = [0, 43, 0, 2, 3, 4];
}

#[cfg(test)]
mod tests {
    use super::testmsg::*;
    use super::*;

    struct Certs(Vec<Vec<u8>>);
    impl CertObserver for Certs {
        fn certificate(&mut self, der: &[u8]) -> Fingerprint {
            self.0.push(der.to_vec());
            Fingerprint::of(der)
        }
    }

    fn feed_all(tls: &mut Tls, side: Side, bytes: &[u8], certs: &mut Certs) {
        let used = tls.feed(side, bytes, certs);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn detects_tls_by_content() {
        assert_eq!(looks_like_tls(b"\x16\x03\x01\x00\x05"), Some(true));
        assert_eq!(looks_like_tls(b"\x16\x03"), None);
        assert_eq!(looks_like_tls(b"220 mx"), Some(false));
        assert_eq!(looks_like_tls(b"EHLO x"), Some(false));
        assert_eq!(looks_like_tls(b"\x80\x2e\x01\x03\x01"), Some(true));
    }

    #[test]
    fn certificate_message_across_records_and_calls() {
        let cert_a = vec![0x30u8; 3000];
        let cert_b = vec![0x31u8; 1200];
        let msg = certificate_msg(&[&cert_a, &cert_b]);
        // Split the handshake message over three records, then the byte stream at every
        // 997 bytes, and feed it keeping unconsumed bytes like the session stage does.
        let mut stream = Vec::new();
        for part in msg.chunks(1500) {
            stream.extend(record(22, part));
        }
        let mut tls = Tls::default();
        let mut certs = Certs(Vec::new());
        let mut pending: Vec<u8> = Vec::new();
        for chunk in stream.chunks(997) {
            pending.extend_from_slice(chunk);
            let n = tls.feed(Side::Server, &pending, &mut certs);
            pending.drain(..n);
        }
        assert!(pending.is_empty());
        assert_eq!(certs.0, vec![cert_a.clone(), cert_b.clone()]);
        assert_eq!(
            tls.facts.server_chain,
            vec![Fingerprint::of(&cert_a), Fingerprint::of(&cert_b)]
        );
        assert!(tls.facts.server_cert_msg);
    }

    #[test]
    fn empty_client_certificate_means_declined() {
        let mut tls = Tls::default();
        let mut certs = Certs(Vec::new());
        feed_all(
            &mut tls,
            Side::Client,
            &record(22, &certificate_msg(&[])),
            &mut certs,
        );
        assert!(tls.facts.client_cert_msg);
        assert!(tls.facts.client_chain.is_empty());
    }

    #[test]
    fn tls12_done_after_both_finished() {
        let mut tls = Tls::default();
        let mut c = Certs(Vec::new());
        feed_all(
            &mut tls,
            Side::Server,
            &record(22, &server_hello(0x0303, 0xc02f, &[])),
            &mut c,
        );
        assert_eq!(tls.facts.version, Some(0x0303));
        assert_eq!(
            cipher_name(tls.facts.cipher.unwrap()),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        feed_all(&mut tls, Side::Client, &record(20, &[1]), &mut c);
        // The client's Finished is an encrypted handshake record, which must not be parsed.
        feed_all(&mut tls, Side::Client, &record(22, &[0xde; 40]), &mut c);
        assert!(!tls.handshake_done());
        feed_all(&mut tls, Side::Server, &record(20, &[1]), &mut c);
        feed_all(&mut tls, Side::Server, &record(22, &[0xad; 40]), &mut c);
        assert!(tls.handshake_done());
        assert_eq!(tls.facts.undecodable_messages, 0);
    }

    #[test]
    fn tls13_via_supported_versions() {
        let mut tls = Tls::default();
        let mut c = Certs(Vec::new());
        // supported_versions (43) selecting 0x0304.
        let ext = [0, 43, 0, 2, 3, 4];
        let mut rec = server_hello(0x0303, 0x1302, &ext);
        // Data after the ServerHello in the same flight is encrypted.
        let mut bytes = record(22, &rec);
        bytes.extend(record(20, &[1]));
        bytes.extend(record(23, &[0x55; 100]));
        feed_all(&mut tls, Side::Server, &bytes, &mut c);
        assert_eq!(tls.facts.version.map(version_name), Some("TLS1.3"));
        assert_eq!(cipher_name(0x1302), "TLS_AES_256_GCM_SHA384");
        feed_all(&mut tls, Side::Client, &record(20, &[1]), &mut c);
        assert!(!tls.handshake_done());
        feed_all(&mut tls, Side::Client, &record(23, &[0x66; 50]), &mut c);
        assert!(tls.handshake_done());
        rec.clear();
    }

    #[test]
    fn alert_and_garbage() {
        let mut tls = Tls::default();
        let mut c = Certs(Vec::new());
        feed_all(&mut tls, Side::Client, &record(21, &[2, 48]), &mut c);
        assert_eq!(tls.facts.alert, Some((2, 48)));
        assert_eq!(alert_name(48), "unknown_ca");
        let used = tls.feed(Side::Server, b"HTTP/1.1 400 Bad Request\r\n", &mut c);
        assert_eq!(used, 26);
        assert_eq!(tls.server.invalid, Some(Invalid::BadRecord));
    }

    #[test]
    fn oversize_handshake_is_bounded() {
        let mut tls = Tls::default();
        let mut c = Certs(Vec::new());
        let hdr = [11u8, 0xff, 0xff, 0xff];
        feed_all(&mut tls, Side::Server, &record(22, &hdr), &mut c);
        assert_eq!(tls.server.invalid, Some(Invalid::Oversize));
    }
}
