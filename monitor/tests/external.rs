//! Third-party captures in `../shared/pcaps-external/` (zeek, nDPI, arkime, suricata-verify,
//! wireshark-notes, certgrep) yield the sessions and leaf fingerprints their `MANIFEST.md` states.
//!
//! Ground truth, never taken from mxcert:
//! - streams, ports, STARTTLS, TLS versions, cipher hex codes, SNI, CertificateRequest, chain
//!   lengths and leaf subject/issuer/dates/SAN/EKU/CA: `MANIFEST.md` (tshark 4.0.17 +
//!   python-cryptography), copied here as it is written there;
//! - certificate fingerprints: MANIFEST gives none, so every chain below was obtained with
//!   TShark 4.0.17 on this machine:
//!   `tshark -r FILE -o tls.desegment_ssl_records:TRUE -o tcp.desegment_tcp_streams:TRUE
//!    [-d tcp.port==587,tls (certgrep) | -d tcp.port==2525,smtp (smtp2525)]
//!    -Y tls.handshake.certificate -T fields -e tcp.stream -e tcp.srcport -e tls.handshake.certificate`,
//!   then each comma-separated hex DER of the field `| xxd -r -p | sha256sum`, in message order
//!   (leaf first); the server chain is the one sent from the server port, the client chain the
//!   one sent from the client port;
//! - session `ts`: tshark `frame.time_epoch` of the stream's first packet, truncated to ms;
//! - `banner_host`: first word of the server's 220 greeting, from tshark (`smtp.rsp.parameter`,
//!   or `-z follow,tcp,ascii` for the 465 captures tshark does not dissect as SMTP).
//!
//! Asserted as mxcert defines them (README, section Records), not from MANIFEST: `outcome`,
//! `midstream` (neither the client's SYN nor the server's SYN-ACK was captured: a SYN-ACK
//! gives both initial sequence numbers, so the byte streams are complete), `implicit_tls`
//! (the client's first payload is TLS rather than SMTP), and `cert_requested` /
//! `client_cert_presented` being null for TLS 1.3.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{compare, mxcert_read, shared_dir};
use serde_json::{json, Value};

/// Names from the IANA "TLS Cipher Suites" registry
/// (https://www.iana.org/assignments/tls-parameters/, tls-parameters-4) for the hex codes
/// MANIFEST prints (tshark's `tls.handshake.ciphersuite`); written by hand from the registry.
const IANA_CIPHERS: &[(u16, &str)] = &[
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x006b, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
    (0x009f, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0x1302, "TLS_AES_256_GCM_SHA384"),
    (0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
];

fn iana_cipher(code: u16) -> &'static str {
    IANA_CIPHERS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("cipher 0x{code:04x} missing from IANA_CIPHERS"))
}

/// MANIFEST writes versions as `TLS 1.2` / `SSL 3.0`; mxcert's spelling is the same without the
/// space (`TLS1.2`, `SSL3.0`).
fn mxcert_version(manifest: &str) -> String {
    manifest.replace(' ', "")
}

/// MANIFEST's dates have seconds (`2013-09-09T11:32:35Z`); records have milliseconds.
fn record_date(manifest: &str) -> String {
    format!(
        "{}.000Z",
        manifest.strip_suffix('Z').expect("MANIFEST date ends in Z")
    )
}

/// A handshake fact (CertificateRequest sent / client Certificate sent) as MANIFEST shows it.
#[derive(Clone, Copy, Debug)]
enum Seen {
    Yes,
    No,
    /// No ServerHello in the capture: MANIFEST says "no" (nothing visible); mxcert may say
    /// false or null (unknown), but never true.
    NoServerHello,
    /// TLS 1.3: the messages are encrypted; mxcert defines the field as null.
    Tls13,
}

/// A leaf certificate as MANIFEST describes it.
struct Cert {
    /// tshark DER → sha256sum (see the module comment).
    sha256: &'static str,
    subject: &'static str,
    /// MANIFEST's "issuer CN=…"; None where it says `CN=None`.
    issuer_cn: Option<&'static str>,
    not_before: &'static str,
    not_after: &'static str,
    san_dns: &'static [&'static str],
    /// MANIFEST's EKU names (the parenthesised names after the OIDs).
    eku: &'static [&'static str],
    /// MANIFEST's `CA=`; `CA=None` (no basicConstraints) is false.
    is_ca: bool,
}

/// One TCP stream MANIFEST lists on a watched port.
struct Session {
    /// tshark tcp.stream, for messages.
    stream: u32,
    ts: &'static str,
    client: (&'static str, u16),
    server: (&'static str, u16),
    banner_host: Option<&'static str>,
    starttls: bool,
    implicit_tls: bool,
    /// MANIFEST's negotiated version (`TLS 1.2`), None when no ServerHello.
    version: Option<&'static str>,
    /// MANIFEST's cipher suite hex code.
    cipher: Option<u16>,
    sni: Option<&'static str>,
    cert_requested: Seen,
    client_cert_presented: Seen,
    server_chain: &'static [&'static str],
    server_leaf: Option<&'static Cert>,
    client_chain: &'static [&'static str],
    client_leaf: Option<&'static Cert>,
    alert: Option<&'static str>,
    outcome: &'static str,
    midstream: bool,
}

// ---- certificates (MANIFEST leaf descriptions + tshark fingerprints) ----

/// zeek__smtp-starttls stream 0, ndpi__smtp-starttls stream 0, arkime__smtp-starttls stream 0.
const GOOGLE_CHAIN: &[&str] = &[
    "4f0a1ac1c6e873c8805fe2fc56c7aac77025f1dcbbbf907e768f1ec88c3485db",
    "a047a37fa2d2e118a4f5095fe074d6cfe0e352425a7632bf8659c03919a6c81d",
    "3c35cc963eb004451323d3275d05b353235053490d9cd83729a2faf5e7ca1cc0",
];
const GOOGLE_MX: Cert = Cert {
    sha256: "4f0a1ac1c6e873c8805fe2fc56c7aac77025f1dcbbbf907e768f1ec88c3485db",
    subject: "CN=mx.google.com,O=Google Inc,L=Mountain View,ST=California,C=US",
    issuer_cn: Some("Google Internet Authority G2"),
    not_before: "2013-09-09T11:32:35Z",
    not_after: "2014-09-09T11:32:35Z",
    san_dns: &[
        "aspmx.l.google.com",
        "alt1.aspmx.l.google.com",
        "alt2.aspmx.l.google.com",
        "alt3.aspmx.l.google.com",
        "alt4.aspmx.l.google.com",
        "gmail-smtp-in.l.google.com",
        "alt1.gmail-smtp-in.l.google.com",
        "alt2.gmail-smtp-in.l.google.com",
        "alt3.gmail-smtp-in.l.google.com",
        "alt4.gmail-smtp-in.l.google.com",
        "gmr-smtp-in.l.google.com",
        "alt1.gmr-smtp-in.l.google.com",
        "alt2.gmr-smtp-in.l.google.com",
        "alt3.gmr-smtp-in.l.google.com",
        "alt4.gmr-smtp-in.l.google.com",
        "mx.google.com",
        "aspmx2.googlemail.com",
        "aspmx3.googlemail.com",
        "aspmx4.googlemail.com",
        "aspmx5.googlemail.com",
    ],
    eku: &["serverAuth", "clientAuth"],
    is_ca: false,
};

/// ndpi__smtp-starttls stream 1.
const JW_VM08_CHAIN: &[&str] =
    &["f1fe9ce4b1564275b5ff0de318cf4c570ce2da99df5a8412564ac29c6cf21381"];
const JW_VM08: Cert = Cert {
    sha256: "f1fe9ce4b1564275b5ff0de318cf4c570ce2da99df5a8412564ac29c6cf21381",
    subject: "CN=jw-vm08-int-dns",
    issuer_cn: Some("jw-vm08-int-dns"),
    not_before: "2016-08-16T09:33:19Z",
    not_after: "2026-08-14T09:33:19Z",
    san_dns: &[],
    eku: &[],
    is_ca: false,
};

/// wireshark-notes__smtp-ssl and __smtp2525-ssl stream 0.
const MAIL_EXAMPLE_CHAIN: &[&str] =
    &["2acc49c6edf8be8f4b2ac2383518654d26da26af04803e5b938469bf29ad029d"];
const MAIL_EXAMPLE: Cert = Cert {
    sha256: "2acc49c6edf8be8f4b2ac2383518654d26da26af04803e5b938469bf29ad029d",
    subject: "CN=mail.example.com,C=NL",
    issuer_cn: Some("mail.example.com"),
    not_before: "2015-01-30T11:27:08Z",
    not_after: "2018-01-29T11:27:08Z",
    san_dns: &[],
    eku: &[],
    is_ca: false, // CA=None
};

/// certgrep__sess_smtps stream 0 (tshark with `-d tcp.port==587,tls`).
const CHARTER_CHAIN: &[&str] = &[
    "7f56cfeb7492b37ede77a130b09b3558e79909c4b74993db859c341ff110f3b5",
    "0855414af5f5fd7e264f8b002a39cced67e5952e89b61b680cc847baa34944de",
    "c99157df28d28ebd87b8b041aaccf023cf1c9ad0d21fd7116149d7f96484fa51",
];
const CHARTER: Cert = Cert {
    sha256: "7f56cfeb7492b37ede77a130b09b3558e79909c4b74993db859c341ff110f3b5",
    subject: "CN=mobile.charter.net,OU=Charter Communications Holding Company LLC,\
O=Charter Communications Holding Company LLC,L=St. Louis,ST=Missouri,C=US",
    issuer_cn: Some("Thawte SSL CA"),
    not_before: "2013-06-21T00:00:00Z",
    not_after: "2016-08-10T23:59:59Z",
    san_dns: &["mobile.charter.net"],
    eku: &["serverAuth", "clientAuth"],
    is_ca: false,
};

/// zeek__smtp stream 5 (port 443).
const ICLOUD_CHAIN: &[&str] = &[
    "f94f3f5bf51899148fa4c51a1b39bd98cd0bf053f2e838eb68a2a96d0359ed56",
    "ac2b922ecfd5e01711772fea8ed372de9d1e2245fce3f57a9cdbec77296a424b",
];
const ICLOUD: Cert = Cert {
    sha256: "f94f3f5bf51899148fa4c51a1b39bd98cd0bf053f2e838eb68a2a96d0359ed56",
    subject: "C=US,ST=California,O=Apple Inc.,OU=management:idms.group.506364,CN=*.icloud.com",
    issuer_cn: Some("Apple IST CA 2 - G1"),
    not_before: "2015-02-17T14:45:31Z",
    not_after: "2017-03-18T14:45:31Z",
    san_dns: &["*.icloud.com"],
    eku: &["serverAuth", "clientAuth"],
    is_ca: false,
};

/// ndpi__emotet stream 4 (port 443).
const EXAMPLE_COM_CHAIN: &[&str] =
    &["1c72f7ddc0062687e13e6657e8266a0bfae2b403324a4dacb492a0919f3d3830"];
const EXAMPLE_COM: Cert = Cert {
    sha256: "1c72f7ddc0062687e13e6657e8266a0bfae2b403324a4dacb492a0919f3d3830",
    subject: "CN=example.com,OU=IT Department,O=Global Security,L=London,ST=London,C=GB",
    issuer_cn: Some("example.com"),
    not_before: "2022-04-21T10:08:46Z",
    not_after: "2023-04-21T10:08:46Z",
    san_dns: &[],
    eku: &[],
    is_ca: true,
};

/// zeek__client-certificate stream 0 (port 443), server side.
const IDRIX_CHAIN: &[&str] = &[
    "4983a8a16d7e3954eceffda10e1a198388b334f71ba311acd99f89984739297e",
    "67add1166b020ae61b8f5fc96813c04c2aa589960796865572a3c7e737613dfd",
    "6d99fb265eb1c5b3744765fcbc648f3cd8e1bffafdc4c2f99b9d47cf7ff1c24f",
];
const IDRIX: Cert = Cert {
    sha256: "4983a8a16d7e3954eceffda10e1a198388b334f71ba311acd99f89984739297e",
    subject: "CN=certauth.idrix.fr",
    issuer_cn: Some("R3"),
    not_before: "2023-01-04T16:14:07Z",
    not_after: "2023-04-04T16:14:06Z",
    san_dns: &["certauth.idrix.fr"],
    eku: &["serverAuth", "clientAuth"],
    is_ca: false,
};
/// zeek__client-certificate stream 0, client side.
const JOHANNA_CHAIN: &[&str] = &[
    "a1f55d76849597ea678caa765fddf967cb1d9150a29c4e4479c58e0bafaaedc3",
    "bb4d3ee661e5029409db6740b9951494a7f22a7bc0fdc1a1900c07a4781f1419",
];
const JOHANNA: Cert = Cert {
    sha256: "a1f55d76849597ea678caa765fddf967cb1d9150a29c4e4479c58e0bafaaedc3",
    subject: "CN=johanna@corelight.com",
    issuer_cn: Some("Actalis Client Authentication CA G3"),
    not_before: "2023-02-28T15:59:27Z",
    not_after: "2024-02-28T15:59:27Z",
    san_dns: &[], // only an rfc822Name
    eku: &["clientAuth", "emailProtection"],
    is_ca: false,
};

/// zeek__certificate-request-failed stream 0 (port 3000).
const ZEEK_TESTING_CHAIN: &[&str] = &[
    "0a171ee771a26530c650fe8b8a6bf205177bfb64fbb3e5303ba348c13ffc7dfa",
    "c628dd5aae1f216da6ce4f8f914fb7141c2b0afd3522cce5900bcc4840657bfd",
];
const ZEEK_TESTING: Cert = Cert {
    sha256: "0a171ee771a26530c650fe8b8a6bf205177bfb64fbb3e5303ba348c13ffc7dfa",
    subject: "CN=testing.zeek.org,O=SomeOrg,ST=Some-State,C=US",
    issuer_cn: None,
    not_before: "2023-02-28T17:19:05Z",
    not_after: "2027-09-05T17:19:05Z",
    san_dns: &[],
    eku: &["serverAuth"],
    is_ca: false,
};

/// zeek__pop3-starttls stream 0 (port 110).
const LILAWELT_CHAIN: &[&str] =
    &["5f262710f31214ecdb6ffbfe4b45a8d1c7042e7c87c3eae9bc317035dafeb7ac"];
const LILAWELT: Cert = Cert {
    sha256: "5f262710f31214ecdb6ffbfe4b45a8d1c7042e7c87c3eae9bc317035dafeb7ac",
    subject: "1.2.840.113549.1.9.1=postmaster@lilawelt.de,CN=chimaera.lilawelt.de,OU=Servers,\
O=Lilawelt,L=Munich,C=DE",
    issuer_cn: Some("Lilawelt"),
    not_before: "2007-05-05T17:23:08Z",
    not_after: "2017-05-02T17:23:08Z",
    san_dns: &[],
    eku: &[],
    is_ca: false,
};

/// suricata-verify__tls-client-auth stream 0 (port 8081), server side.
const SAMPLE_SERVER_CHAIN: &[&str] = &[
    "d061196de0be0925d949192619eafe97746f245c1f775f9b3fbc3ec033d7d07a",
    "0c1c9d8b40698f48fbc32b1d750c069df7f61019cde5099daf46a5d86c1cffcf",
];
const SAMPLE_SERVER: Cert = Cert {
    sha256: "d061196de0be0925d949192619eafe97746f245c1f775f9b3fbc3ec033d7d07a",
    subject: "CN=SampleServer,O=TLSClientAuthSampleServer,L=Budapest,ST=Budapest,C=HU",
    issuer_cn: Some("SampleRoot"),
    not_before: "2018-04-14T20:55:27Z",
    not_after: "2018-05-14T20:55:27Z",
    san_dns: &["localhost"],
    eku: &[],
    is_ca: false,
};
/// suricata-verify__tls-client-auth stream 0, client side.
const SAMPLE_JANE_CHAIN: &[&str] =
    &["a25ade469b6a611ba6668f46210b3b3f001b51b1d2bc9f0c152812b32c0c4b42"];
const SAMPLE_JANE: Cert = Cert {
    sha256: "a25ade469b6a611ba6668f46210b3b3f001b51b1d2bc9f0c152812b32c0c4b42",
    subject: "CN=SampleClientJane,O=TLSClientAuthSampleClient,L=Budapest,ST=Budapest,C=HU",
    issuer_cn: Some("SampleRoot"),
    not_before: "2018-04-14T20:55:27Z",
    not_after: "2018-05-14T20:55:27Z",
    san_dns: &[],
    eku: &[],
    is_ca: false,
};

/// arkime__ssl-selfsign stream 0 (port 4443), server side.
const MOLOCH_CHAIN: &[&str] = &["a8364f9035b2931c1b14697b7ede7f897e6dcd06553716bebd8b9953e937cb4a"];
const MOLOCH: Cert = Cert {
    sha256: "a8364f9035b2931c1b14697b7ede7f897e6dcd06553716bebd8b9953e937cb4a",
    subject: "CN=molochftw",
    issuer_cn: Some("molochftw"),
    not_before: "2018-02-23T15:26:38Z",
    not_after: "2018-03-25T15:26:38Z",
    san_dns: &[],
    eku: &[],
    is_ca: true,
};
/// arkime__ssl-selfsign stream 0, client side.
const MO_CHAIN: &[&str] = &["28ab6f96a4eb1bba1c72fb980c07fc83d5816a6629ee1ebd9613b9e62d4a6805"];
const MO: Cert = Cert {
    sha256: "28ab6f96a4eb1bba1c72fb980c07fc83d5816a6629ee1ebd9613b9e62d4a6805",
    subject: "C=CH,O=LO,CN=MO",
    issuer_cn: Some("MO"),
    not_before: "2018-02-23T15:25:00Z",
    not_after: "2018-03-25T15:25:00Z",
    san_dns: &[],
    eku: &[],
    is_ca: true,
};

/// ndpi__tls_client_certificate_with_missing_server_one streams 0 and 1, client side.
const ANYDESK_CHAIN: &[&str] =
    &["f441a000a570c9283d039bb93bbfe7f351425bc2224b63cbe315ea98584a54bd"];
const ANYDESK: Cert = Cert {
    sha256: "f441a000a570c9283d039bb93bbfe7f351425bc2224b63cbe315ea98584a54bd",
    subject: "CN=AnyDesk Client",
    issuer_cn: Some("AnyDesk Client"),
    not_before: "2022-09-13T17:24:01Z",
    not_after: "2072-08-31T17:24:01Z",
    san_dns: &[],
    eku: &[],
    is_ca: false, // CA=None
};

// ---- the checker ----

/// The capture's path, or None (with a reason printed) when `../shared` is not there.
fn external(name: &str) -> Option<PathBuf> {
    let dir = shared_dir().join("pcaps-external");
    if !dir.is_dir() {
        eprintln!(
            "skipping: {} does not exist (CI always has it)",
            dir.display()
        );
        return None;
    }
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    Some(path)
}

/// Runs `mxcert read PCAP --out - ARGS` and lists every difference from `want` (all sessions
/// mxcert should emit for those ports) and from the certificate records those imply.
fn check(pcap: &Path, args: &[&str], want: &[Session]) -> Vec<String> {
    let name = pcap.file_name().unwrap().to_string_lossy().into_owned();
    let ctx = if args.is_empty() {
        name.clone()
    } else {
        format!("{name} {}", args.join(" "))
    };
    let run = mxcert_read(&[pcap], args);
    let mut errs = Vec::new();
    if run.code != 0 {
        errs.push(format!(
            "{ctx}: exit code {}, stderr: {}",
            run.code, run.stderr
        ));
    }
    if run.sessions.len() != want.len() {
        errs.push(format!(
            "{ctx}: {} sessions, expected {} (got: {:?})",
            run.sessions.len(),
            want.len(),
            run.sessions.iter().map(tuple).collect::<Vec<_>>()
        ));
    }

    let mut want_certs = BTreeSet::new();
    for w in want {
        want_certs.extend(w.server_chain.iter().map(|s| s.to_string()));
        want_certs.extend(w.client_chain.iter().map(|s| s.to_string()));
        let key = format!(
            "{}:{} -> {}:{}",
            w.client.0, w.client.1, w.server.0, w.server.1
        );
        let here = format!("{ctx} stream {} ({key})", w.stream);
        let got: Vec<&Value> = run.sessions.iter().filter(|s| tuple(s) == key).collect();
        match got.len() {
            0 => errs.push(format!("{here}: no session")),
            1 => check_session(&here, w, got[0], &mut errs),
            n => {
                errs.push(format!("{here}: {n} sessions for this one TCP stream"));
                for (i, g) in got.iter().enumerate() {
                    check_session(&format!("{here} [session {i}]"), w, g, &mut errs);
                }
            }
        }
        for (side, leaf, chain) in [
            ("server", w.server_leaf, w.server_chain),
            ("client", w.client_leaf, w.client_chain),
        ] {
            // Test data sanity: the leaf described is the first certificate tshark saw.
            assert_eq!(
                leaf.map(|c| c.sha256),
                chain.first().copied(),
                "{here}: {side} leaf vs chain in the test data"
            );
            if let Some(leaf) = leaf {
                check_leaf(
                    &format!("{here} {side} leaf"),
                    leaf,
                    &run.certificates,
                    &mut errs,
                );
            }
        }
    }

    let got_certs: BTreeSet<String> = run
        .certificates
        .iter()
        .map(|c| c["sha256"].as_str().unwrap_or("?").to_string())
        .collect();
    if got_certs != want_certs || got_certs.len() != run.certificates.len() {
        errs.push(format!(
            "{ctx}: certificate records {:?} ({} records), expected one per distinct certificate {want_certs:?}",
            got_certs,
            run.certificates.len()
        ));
    }
    errs
}

fn tuple(s: &Value) -> String {
    format!(
        "{}:{} -> {}:{}",
        s["client_ip"].as_str().unwrap_or("?"),
        s["client_port"],
        s["server_ip"].as_str().unwrap_or("?"),
        s["server_port"]
    )
}

fn seen_value(s: Seen) -> Option<Value> {
    match s {
        Seen::Yes => Some(json!(true)),
        Seen::No => Some(json!(false)),
        Seen::Tls13 => Some(Value::Null),
        Seen::NoServerHello => None,
    }
}

fn check_session(here: &str, w: &Session, got: &Value, errs: &mut Vec<String>) {
    let mut tls = json!({
        "version": w.version.map(mxcert_version),
        "cipher": w.cipher.map(iana_cipher),
        "sni": w.sni,
        "server_chain": w.server_chain,
        "client_chain": w.client_chain,
        "alert": w.alert,
    });
    for (field, seen) in [
        ("cert_requested", w.cert_requested),
        ("client_cert_presented", w.client_cert_presented),
    ] {
        match seen_value(seen) {
            Some(v) => {
                tls[field] = v;
            }
            None => {
                if got["tls"][field] == json!(true) {
                    errs.push(format!(
                        "{here}.tls.{field}: true, but no ServerHello/message in the capture"
                    ));
                }
            }
        }
    }
    let want = json!({
        "ts": w.ts,
        "client_ip": w.client.0,
        "client_port": w.client.1,
        "server_ip": w.server.0,
        "server_port": w.server.1,
        "smtp": {
            "banner_host": w.banner_host,
            "starttls": w.starttls,
            "implicit_tls": w.implicit_tls,
        },
        "tls": tls,
        "outcome": w.outcome,
        "midstream": w.midstream,
    });
    compare(here, &want, got, errs);
}

/// The CN of an RFC 4514 name (commas inside values are escaped as `\,`).
fn cn_of(dn: &str) -> Option<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .find_map(|p| p.strip_prefix("CN=").map(str::to_string))
}

fn check_leaf(here: &str, leaf: &Cert, certs: &[Value], errs: &mut Vec<String>) {
    let Some(got) = certs.iter().find(|c| c["sha256"] == json!(leaf.sha256)) else {
        errs.push(format!("{here}: no certificate record {}", leaf.sha256));
        return;
    };
    let want = json!({
        "subject": leaf.subject,
        "not_before": record_date(leaf.not_before),
        "not_after": record_date(leaf.not_after),
        "san_dns": leaf.san_dns,
        "eku": leaf.eku,
        "is_ca": leaf.is_ca,
        "parse_error": null,
    });
    compare(&format!("{here} {}", &leaf.sha256[..12]), &want, got, errs);
    let issuer_cn = got["issuer"].as_str().and_then(cn_of);
    if issuer_cn.as_deref() != leaf.issuer_cn {
        errs.push(format!(
            "{here}.issuer: CN {:?} expected, got {}",
            leaf.issuer_cn, got["issuer"]
        ));
    }
}

fn assert_no_errors(errs: Vec<String>) {
    assert!(
        errs.is_empty(),
        "{} difference(s) from the ground truth:\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

// ---- SMTP ports: STARTTLS positives ----

#[test]
fn zeek_smtp_starttls_yields_one_tls12_session_with_google_chain() {
    let Some(pcap) = external("zeek__smtp-starttls.pcap") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &[],
        &[Session {
            stream: 0,
            ts: "2014-05-15T15:39:56.806Z",
            client: ("192.168.4.149", 54170),
            server: ("74.125.142.26", 25),
            banner_host: Some("mx.google.com"),
            starttls: true,
            implicit_tls: false,
            version: Some("TLS 1.2"),
            cipher: Some(0xc02f),
            sni: None,
            cert_requested: Seen::No,
            client_cert_presented: Seen::No,
            server_chain: GOOGLE_CHAIN,
            server_leaf: Some(&GOOGLE_MX),
            client_chain: &[],
            client_leaf: None,
            alert: None,
            outcome: "established",
            midstream: false,
        }],
    ));
}

/// Stream 0 of ndpi__smtp-starttls, which arkime__smtp-starttls duplicates packet for packet.
const GOOGLE_TLS10_SESSION: Session = Session {
    stream: 0,
    ts: "2013-12-26T00:18:44.762Z",
    client: ("10.0.0.1", 57406),
    server: ("173.194.68.26", 25),
    banner_host: Some("mx.google.com"),
    starttls: true,
    implicit_tls: false,
    version: Some("TLS 1.0"),
    cipher: Some(0x0005),
    sni: None,
    cert_requested: Seen::No,
    client_cert_presented: Seen::No,
    server_chain: GOOGLE_CHAIN,
    server_leaf: Some(&GOOGLE_MX),
    client_chain: &[],
    client_leaf: None,
    alert: None,
    outcome: "established",
    midstream: false,
};

#[test]
fn ndpi_smtp_starttls_yields_tls10_google_and_ipv6_tls12_self_signed_sessions() {
    let Some(pcap) = external("ndpi__smtp-starttls.pcap") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &[],
        &[
            GOOGLE_TLS10_SESSION,
            Session {
                stream: 1,
                ts: "2018-04-26T12:49:28.365Z",
                client: ("2003:de:2016:125:fc36:8317:4e86:cb72", 7562),
                server: ("2003:de:2016:120::a08:53", 25),
                banner_host: Some("jw-vm08-int-dns.webernetz.net"),
                starttls: true,
                implicit_tls: false,
                version: Some("TLS 1.2"),
                cipher: Some(0xc02f),
                sni: Some("dovecot.weberlab.de"),
                cert_requested: Seen::No,
                client_cert_presented: Seen::No,
                server_chain: JW_VM08_CHAIN,
                server_leaf: Some(&JW_VM08),
                client_chain: &[],
                client_leaf: None,
                alert: None,
                outcome: "established",
                midstream: false,
            },
        ],
    ));
}

#[test]
fn arkime_smtp_starttls_yields_the_same_tls10_rc4_google_session_as_ndpi() {
    let Some(pcap) = external("arkime__smtp-starttls.pcap") else {
        return;
    };
    assert_no_errors(check(&pcap, &[], &[GOOGLE_TLS10_SESSION]));
}

#[test]
fn wireshark_smtp_ssl_yields_one_tls12_dhe_session_despite_a_bogus_synack_timestamp() {
    // The SYN-ACK (frame 2) carries a 2063 timestamp; tshark still sees one TCP stream.
    let Some(pcap) = external("wireshark-notes__smtp-ssl.pcapng") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &[],
        &[Session {
            stream: 0,
            ts: "2015-01-30T11:31:42.005Z",
            client: ("127.0.0.1", 58778),
            server: ("127.0.0.1", 25),
            banner_host: Some("ubuntu"),
            starttls: true,
            implicit_tls: false,
            version: Some("TLS 1.2"),
            cipher: Some(0x006b),
            sni: None,
            cert_requested: Seen::No,
            client_cert_presented: Seen::No,
            server_chain: MAIL_EXAMPLE_CHAIN,
            server_leaf: Some(&MAIL_EXAMPLE),
            client_chain: &[],
            client_leaf: None,
            alert: None,
            outcome: "established",
            midstream: false,
        }],
    ));
}

#[test]
fn wireshark_smtp_on_2525_is_ignored_by_default_and_seen_with_ports_2525() {
    let Some(pcap) = external("wireshark-notes__smtp2525-ssl.pcapng") else {
        return;
    };
    let mut errs = check(&pcap, &[], &[]);
    errs.extend(check(
        &pcap,
        &["--ports", "2525"],
        &[Session {
            stream: 0,
            ts: "2015-01-30T21:53:28.667Z",
            client: ("127.0.0.1", 58961),
            server: ("127.0.0.1", 2525),
            banner_host: Some("ubuntu"),
            starttls: true,
            implicit_tls: false,
            version: Some("TLS 1.2"),
            cipher: Some(0x006b),
            sni: None,
            cert_requested: Seen::No,
            client_cert_presented: Seen::No,
            server_chain: MAIL_EXAMPLE_CHAIN,
            server_leaf: Some(&MAIL_EXAMPLE),
            client_chain: &[],
            client_leaf: None,
            alert: None,
            outcome: "established",
            midstream: false,
        }],
    ));
    assert_no_errors(errs);
}

#[test]
fn certgrep_implicit_tls_on_587_is_detected_by_content_with_charter_chain() {
    let Some(pcap) = external("certgrep__sess_smtps.pcapng") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &[],
        &[Session {
            stream: 0,
            ts: "2015-04-03T21:37:50.814Z",
            client: ("10.74.5.100", 1212),
            server: ("68.114.188.72", 587),
            banner_host: None,
            starttls: false,
            implicit_tls: true,
            version: Some("TLS 1.0"),
            cipher: Some(0x0004),
            sni: None,
            cert_requested: Seen::No,
            client_cert_presented: Seen::No,
            server_chain: CHARTER_CHAIN,
            server_leaf: Some(&CHARTER),
            client_chain: &[],
            client_leaf: None,
            alert: None,
            outcome: "established",
            midstream: false,
        }],
    ));
}

#[test]
fn suricata_smtp_startssl_yields_tls13_session_with_no_visible_certificates() {
    let Some(pcap) = external("suricata-verify__smtp-startssl.pcap") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &[],
        &[Session {
            stream: 0,
            ts: "2021-11-11T18:13:41.702Z",
            client: ("10.16.1.11", 34634),
            server: ("142.250.123.27", 25),
            banner_host: Some("firewall.unx.ca"),
            starttls: true,
            implicit_tls: false,
            version: Some("TLS 1.3"),
            cipher: Some(0x1302),
            sni: None,
            cert_requested: Seen::Tls13,
            client_cert_presented: Seen::Tls13,
            server_chain: &[],
            server_leaf: None,
            client_chain: &[],
            client_leaf: None,
            alert: None,
            outcome: "established",
            midstream: false,
        }],
    ));
}

// ---- SMTP ports: no TLS / edge ----

#[test]
fn ndpi_smtps_client_hello_to_plaintext_465_is_implicit_tls_without_server_hello() {
    let Some(pcap) = external("ndpi__smtps.pcapng") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &[],
        &[Session {
            stream: 0,
            ts: "2021-03-05T10:01:44.972Z",
            client: ("62.43.36.99", 37682),
            server: ("21.65.95.132", 465),
            // "220-gator4223.hostgator.com ESMTP Exim 4.93 #2 …"
            banner_host: Some("gator4223.hostgator.com"),
            starttls: false,
            implicit_tls: true,
            version: None,
            cipher: None,
            sni: None,
            cert_requested: Seen::NoServerHello,
            client_cert_presented: Seen::NoServerHello,
            server_chain: &[],
            server_leaf: None,
            client_chain: &[],
            client_leaf: None,
            alert: None,
            outcome: "incomplete", // 4 packets, capture ends: no FIN/RST
            midstream: false,
        }],
    ));
}

#[test]
fn suricata_tls_protodetect_client_hello_to_plaintext_465_ends_in_reset_without_tls() {
    let Some(pcap) = external("suricata-verify__smtp-tls-protodetect.pcap") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &[],
        &[Session {
            stream: 0,
            ts: "2019-11-21T21:14:44.020Z",
            client: ("10.11.21.101", 62353),
            server: ("46.41.156.4", 465),
            // "220 poczta.home-whs.pl ESMTP"
            banner_host: Some("poczta.home-whs.pl"),
            starttls: false,
            implicit_tls: true,
            version: None,
            cipher: None,
            sni: None,
            cert_requested: Seen::NoServerHello,
            client_cert_presented: Seen::NoServerHello,
            server_chain: &[],
            server_leaf: None,
            client_chain: &[],
            client_leaf: None,
            alert: None,
            outcome: "reset", // the client RSTs
            midstream: false,
        }],
    ));
}

/// One of arkime__smtp-decrypted's sessions: STARTTLS accepted (220), then plaintext again.
const fn decrypted(
    stream: u32,
    ts: &'static str,
    client: (&'static str, u16),
    port: u16,
) -> Session {
    Session {
        stream,
        ts,
        client,
        server: ("45.0.0.15", port),
        banner_host: Some("PCIAT-MX.shewa.intradef.gouv.fr"),
        starttls: true,
        implicit_tls: false,
        version: None,
        cipher: None,
        sni: None,
        cert_requested: Seen::NoServerHello,
        client_cert_presented: Seen::NoServerHello,
        server_chain: &[],
        server_leaf: None,
        client_chain: &[],
        client_leaf: None,
        alert: None,
        outcome: "no_tls",
        midstream: false,
    }
}

#[test]
fn arkime_smtp_decrypted_starttls_then_plaintext_is_no_tls_on_25_and_2525() {
    let Some(pcap) = external("arkime__smtp-decrypted.pcap") else {
        return;
    };
    let s0 = || decrypted(0, "2024-12-05T07:53:04.602Z", ("185.25.10.15", 49475), 25);
    let s3 = || decrypted(3, "2024-12-06T12:07:18.269Z", ("185.25.10.15", 41347), 25);
    let s1 = decrypted(1, "2024-12-06T11:59:40.138Z", ("45.0.10.15", 28120), 2525);
    let s2 = decrypted(2, "2024-12-06T11:59:41.079Z", ("45.0.10.15", 28134), 2525);
    let mut errs = check(&pcap, &[], &[s0(), s3()]);
    errs.extend(check(&pcap, &["--ports", "25,2525"], &[s0(), s1, s2, s3()]));
    assert_no_errors(errs);
}

#[test]
fn zeek_smtp_plaintext_sessions_are_no_tls_and_its_https_stays_out_by_default() {
    let Some(pcap) = external("zeek__smtp.pcap") else {
        return;
    };
    let plain = |stream, ts, client, server, banner| Session {
        stream,
        ts,
        client,
        server,
        banner_host: Some(banner),
        starttls: false,
        implicit_tls: false,
        version: None,
        cipher: None,
        sni: None,
        cert_requested: Seen::NoServerHello,
        client_cert_presented: Seen::NoServerHello,
        server_chain: &[],
        server_leaf: None,
        client_chain: &[],
        client_leaf: None,
        alert: None,
        outcome: "no_tls",
        midstream: false,
    };
    let mut errs = check(
        &pcap,
        &[],
        &[
            plain(
                0,
                "2009-10-05T06:06:07.529Z",
                ("10.10.1.4", 1470),
                ("74.53.140.153", 25),
                "xc90.websitewelcome.com",
            ),
            plain(
                2,
                "2015-07-25T13:43:07.856Z",
                ("192.168.133.100", 49648),
                ("192.168.133.102", 25),
                "uprise",
            ),
        ],
    );
    // Stream 0's server advertises STARTTLS; the client does not use it (MANIFEST).
    let run = mxcert_read(&[pcap.as_path()], &[]);
    if let Some(s) = run
        .sessions
        .iter()
        .find(|s| s["client_port"] == json!(1470))
    {
        compare(
            "zeek__smtp.pcap stream 0",
            &json!({"smtp": {"starttls_offered": true}}),
            s,
            &mut errs,
        );
    }
    // With 443 watched: stream 3 (picked up mid-stream, application data only) and stream 5
    // (the *.icloud.com handshake).
    errs.extend(check(
        &pcap,
        &["--ports", "443"],
        &[
            Session {
                stream: 3,
                ts: "2015-07-25T13:43:18.533Z",
                client: ("192.168.133.100", 49336),
                server: ("74.125.71.189", 443),
                banner_host: None,
                starttls: false,
                implicit_tls: false,
                version: None,
                cipher: None,
                sni: None,
                cert_requested: Seen::NoServerHello,
                client_cert_presented: Seen::NoServerHello,
                server_chain: &[],
                server_leaf: None,
                client_chain: &[],
                client_leaf: None,
                alert: None,
                outcome: "incomplete",
                midstream: true,
            },
            Session {
                stream: 5,
                ts: "2015-07-25T13:43:19.461Z",
                client: ("192.168.133.100", 49655),
                server: ("17.167.150.73", 443),
                banner_host: None,
                starttls: false,
                implicit_tls: true,
                version: Some("TLS 1.2"),
                cipher: Some(0x0004),
                sni: Some("p31-keyvalueservice.icloud.com"),
                cert_requested: Seen::No,
                client_cert_presented: Seen::No,
                server_chain: ICLOUD_CHAIN,
                server_leaf: Some(&ICLOUD),
                client_chain: &[],
                client_leaf: None,
                alert: None,
                outcome: "established",
                midstream: false,
            },
        ],
    ));
    assert_no_errors(errs);
}

#[test]
fn ndpi_emotet_plaintext_submission_on_587_is_no_tls_and_its_https_stays_out_by_default() {
    let Some(pcap) = external("ndpi__emotet.pcap") else {
        return;
    };
    let mut errs = check(
        &pcap,
        &[],
        &[Session {
            stream: 0,
            ts: "2022-02-25T23:01:06.121Z",
            client: ("10.2.25.102", 57309),
            server: ("193.252.22.84", 587),
            banner_host: Some("opmta1mto02nd1"),
            starttls: false,
            implicit_tls: false,
            version: None,
            cipher: None,
            sni: None,
            cert_requested: Seen::NoServerHello,
            client_cert_presented: Seen::NoServerHello,
            server_chain: &[],
            server_leaf: None,
            client_chain: &[],
            client_leaf: None,
            alert: None,
            outcome: "no_tls",
            midstream: false,
        }],
    );
    // No STARTTLS advertised (MANIFEST).
    let run = mxcert_read(&[pcap.as_path()], &[]);
    if let Some(s) = run.sessions.first() {
        compare(
            "ndpi__emotet.pcap stream 0",
            &json!({"smtp": {"starttls_offered": false}}),
            s,
            &mut errs,
        );
    }
    // With 443 watched: stream 4 (full handshake) and stream 5 (abbreviated: ServerHello only,
    // resuming stream 4's session, so it carries stream 4's chain).
    let https = |stream, ts, port, chain: &'static [&'static str], leaf| Session {
        stream,
        ts,
        client: ("10.4.25.101", port),
        server: ("138.197.147.101", 443),
        banner_host: None,
        starttls: false,
        implicit_tls: true,
        version: Some("TLS 1.2"),
        cipher: Some(0xc030),
        sni: None,
        cert_requested: Seen::No,
        client_cert_presented: Seen::No,
        server_chain: chain,
        server_leaf: leaf,
        client_chain: &[],
        client_leaf: None,
        alert: None,
        outcome: "established",
        midstream: false,
    };
    errs.extend(check(
        &pcap,
        &["--ports", "443"],
        &[
            https(
                4,
                "2022-04-25T16:51:07.542Z",
                49803,
                EXAMPLE_COM_CHAIN,
                Some(&EXAMPLE_COM),
            ),
            https(
                5,
                "2022-04-25T16:51:09.778Z",
                49804,
                EXAMPLE_COM_CHAIN,
                Some(&EXAMPLE_COM),
            ),
        ],
    ));
    let run = mxcert_read(&[pcap.as_path()], &["--ports", "443"]);
    let port = |p: u16| run.sessions.iter().find(|s| s["client_port"] == json!(p));
    if let (Some(full), Some(resumed)) = (port(49803), port(49804)) {
        let here = "ndpi__emotet.pcap --ports 443 stream";
        let want = json!({"tls": {"resumed": false, "chain_source": "wire", "resumed_from": null}});
        compare(&format!("{here} 4"), &want, full, &mut errs);
        let want = json!({"tls": {"resumed": true, "chain_source": "resumed",
            "resumed_from": full["session_id"]}});
        compare(&format!("{here} 5"), &want, resumed, &mut errs);
    }
    assert_no_errors(errs);
}

// ---- client certificates on other ports (via --ports) ----

#[test]
fn zeek_client_certificate_on_443_yields_requested_and_presented_two_cert_client_chain() {
    let Some(pcap) = external("zeek__client-certificate.pcap") else {
        return;
    };
    let mut errs = check(&pcap, &[], &[]);
    errs.extend(check(
        &pcap,
        &["--ports", "443"],
        &[Session {
            stream: 0,
            ts: "2023-02-28T16:19:52.606Z",
            client: ("192.168.0.64", 49480),
            server: ("54.36.191.227", 443),
            banner_host: None,
            starttls: false,
            implicit_tls: true,
            version: Some("TLS 1.2"),
            cipher: Some(0xc030),
            sni: Some("certauth.idrix.fr"),
            cert_requested: Seen::Yes,
            client_cert_presented: Seen::Yes,
            server_chain: IDRIX_CHAIN,
            server_leaf: Some(&IDRIX),
            client_chain: JOHANNA_CHAIN,
            client_leaf: Some(&JOHANNA),
            alert: None,
            outcome: "established",
            midstream: false,
        }],
    ));
    assert_no_errors(errs);
}

#[test]
fn zeek_certificate_request_failed_on_ipv6_3000_yields_empty_client_chain_and_alert() {
    let Some(pcap) = external("zeek__certificate-request-failed.pcap") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &["--ports", "3000"],
        &[Session {
            stream: 0,
            ts: "2023-02-28T17:27:05.547Z",
            client: ("fd42:496a:d659:bb85::1", 52464),
            server: ("fd42:496a:d659:bb85:216:3eff:fe6a:a257", 3000),
            banner_host: None,
            starttls: false,
            implicit_tls: true,
            version: Some("TLS 1.2"),
            cipher: Some(0xc030),
            sni: None,
            cert_requested: Seen::Yes,
            // An empty Certificate message: nothing presented.
            client_cert_presented: Seen::No,
            server_chain: ZEEK_TESTING_CHAIN,
            server_leaf: Some(&ZEEK_TESTING),
            client_chain: &[],
            client_leaf: None,
            // Cleartext alert 40 (IANA AlertDescription handshake_failure), fatal, from the server.
            alert: Some("handshake_failure"),
            outcome: "alert",
            midstream: false,
        }],
    ));
}

#[test]
fn zeek_pop3_starttls_on_110_yields_requested_but_declined_client_certificate() {
    let Some(pcap) = external("zeek__pop3-starttls.pcap") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &["--ports", "110"],
        &[Session {
            stream: 0,
            ts: "2014-05-15T17:05:52.423Z",
            client: ("192.168.4.149", 54775),
            server: ("192.168.4.149", 110),
            banner_host: None, // "+OK … Cyrus POP3": no SMTP greeting
            starttls: false,   // POP3 STLS, not SMTP STARTTLS
            implicit_tls: false,
            version: Some("TLS 1.2"),
            cipher: Some(0x009f),
            sni: None,
            cert_requested: Seen::Yes,
            client_cert_presented: Seen::No,
            server_chain: LILAWELT_CHAIN,
            server_leaf: Some(&LILAWELT),
            client_chain: &[],
            client_leaf: None,
            alert: None,
            outcome: "established",
            midstream: false,
        }],
    ));
}

#[test]
fn suricata_tls_client_auth_on_ipv6_loopback_8081_yields_server_and_client_chains() {
    let Some(pcap) = external("suricata-verify__tls-client-auth.pcap") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &["--ports", "8081"],
        &[Session {
            stream: 0,
            ts: "2018-04-16T20:59:42.151Z",
            client: ("::1", 58606),
            server: ("::1", 8081),
            banner_host: None,
            starttls: false,
            implicit_tls: true,
            version: Some("TLS 1.2"),
            cipher: Some(0xc030),
            sni: Some("localhost"),
            cert_requested: Seen::Yes,
            client_cert_presented: Seen::Yes,
            server_chain: SAMPLE_SERVER_CHAIN,
            server_leaf: Some(&SAMPLE_SERVER),
            client_chain: SAMPLE_JANE_CHAIN,
            client_leaf: Some(&SAMPLE_JANE),
            alert: None,
            outcome: "established",
            midstream: false,
        }],
    ));
}

#[test]
fn arkime_ssl_selfsign_on_4443_yields_ssl3_session_with_self_signed_client_certificate() {
    let Some(pcap) = external("arkime__ssl-selfsign.pcap") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &["--ports", "4443"],
        &[Session {
            stream: 0,
            ts: "2018-02-23T15:35:25.658Z",
            client: ("10.180.152.137", 60101),
            server: ("10.180.152.137", 4443),
            banner_host: None,
            starttls: false,
            implicit_tls: true,
            version: Some("SSL 3.0"),
            cipher: Some(0x0035),
            sni: None,
            cert_requested: Seen::Yes,
            client_cert_presented: Seen::Yes,
            server_chain: MOLOCH_CHAIN,
            server_leaf: Some(&MOLOCH),
            client_chain: MO_CHAIN,
            client_leaf: Some(&MO),
            alert: None,
            outcome: "established",
            midstream: false,
        }],
    ));
}

#[test]
fn ndpi_client_certificate_without_server_flight_yields_two_incomplete_sessions_with_anydesk() {
    let Some(pcap) = external("ndpi__tls_client_certificate_with_missing_server_one.pcapng") else {
        return;
    };
    assert_no_errors(check(
        &pcap,
        &["--ports", "443,7070"],
        &[
            // The capture starts at the server's SYN-ACK: the client's SYN is missing, but the
            // SYN-ACK carries both initial sequence numbers, so nothing of the streams is lost
            // and mxcert does not call it midstream.
            Session {
                stream: 0,
                ts: "2022-09-13T17:35:49.179Z",
                client: ("192.168.1.128", 48260),
                server: ("195.181.174.176", 443),
                banner_host: None,
                starttls: false,
                implicit_tls: true,
                version: Some("TLS 1.2"),
                cipher: Some(0xc02c),
                sni: None,
                cert_requested: Seen::No,
                client_cert_presented: Seen::Yes,
                server_chain: &[],
                server_leaf: None,
                client_chain: ANYDESK_CHAIN,
                client_leaf: Some(&ANYDESK),
                alert: None,
                outcome: "incomplete",
                midstream: false,
            },
            // No ServerHello at all.
            Session {
                stream: 1,
                ts: "2022-09-13T17:35:49.527Z",
                client: ("192.168.1.128", 59754),
                server: ("192.168.1.181", 7070),
                banner_host: None,
                starttls: false,
                implicit_tls: true,
                version: None,
                cipher: None,
                sni: None,
                cert_requested: Seen::NoServerHello,
                client_cert_presented: Seen::Yes,
                server_chain: &[],
                server_leaf: None,
                client_chain: ANYDESK_CHAIN,
                client_leaf: Some(&ANYDESK),
                alert: None,
                outcome: "incomplete",
                midstream: false,
            },
        ],
    ));
}
