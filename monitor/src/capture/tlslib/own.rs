//! Our own chain as the MTA sends it (OpenSSL 3). TLS 1.3 encrypts the Certificate messages
//! of both sides, and on a gateway the peer MTA is on another host: the peer-side probes give
//! the chain we receive, never the one we send (our client certificate outbound, our server
//! chain inbound). libssl encodes each certificate of its own Certificate message with
//! libcrypto's `i2d_X509` straight into the handshake buffer (`ssl_add_cert_to_wpacket`,
//! ssl/statem/statem_lib.c); the kernel copies what was written at the call's return
//! (`EV_OWN_CERT`), and this side keeps the records whose call returns into libssl's text, in
//! the order they were encoded (leaf first, the wire order), per (process, `SSL*`).
//!
//! The chain is handed out with the received one at the end of the handshake: empty when
//! libssl encoded none (a client asked for no certificate, or with none configured: TLS 1.3
//! then sends an empty Certificate message, RFC 8446 §4.4.2.4).

use std::collections::HashMap;

use mxcert_ebpf::tls::TlsEvent;

use super::{TlsCounters, MAX_CHAIN, MAX_TRACKED};

/// The chain one connection sent, being assembled.
#[derive(Debug, Default)]
pub(super) struct Sent {
    pub(super) ders: Vec<Vec<u8>>,
    pub(super) truncated: bool,
}

/// Sent chains by (tgid, `SSL*`).
#[derive(Default)]
pub(super) struct Own {
    conns: HashMap<(u32, u64), Sent>,
}

impl Own {
    /// One certificate libssl encoded for `key` (the caller checked it came from libssl).
    pub(super) fn cert(
        &mut self,
        key: (u32, u64),
        ev: &TlsEvent,
        data: &[u8],
        counters: &mut TlsCounters,
    ) {
        if !self.conns.contains_key(&key) && self.conns.len() >= MAX_TRACKED {
            counters.table_full += 1;
            return;
        }
        let s = self.conns.entry(key).or_default();
        if s.ders.len() >= MAX_CHAIN {
            counters.chain_overflow += 1;
            return;
        }
        s.truncated |= ev.data_len < ev.der_len;
        s.ders.push(data.to_vec());
        counters.own_certs += 1;
    }

    /// The chain `key` sent in the handshake that just ended (empty: none), forgotten here.
    pub(super) fn take(&mut self, key: (u32, u64)) -> Sent {
        self.conns.remove(&key).unwrap_or_default()
    }

    /// A new connection on `key` (`SSL_set_bio`): what an earlier one left is dropped.
    pub(super) fn reset(&mut self, key: (u32, u64)) {
        self.conns.remove(&key);
    }

    /// Forgets the connections of one process (it exited or exec'd).
    pub(super) fn forget(&mut self, tgid: u32) {
        self.conns.retain(|(t, _), _| *t != tgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxcert_ebpf::tls::EV_OWN_CERT;

    fn ev(len: u32, copied: u32) -> TlsEvent {
        TlsEvent {
            kind: EV_OWN_CERT,
            ssl: 7,
            der_len: len,
            data_len: copied,
            ..TlsEvent::default()
        }
    }

    #[test]
    fn sent_certificates_make_one_chain_per_connection_in_order() {
        let (mut o, mut c) = (Own::default(), TlsCounters::default());
        o.cert((1, 7), &ev(3, 3), b"leaf", &mut c);
        o.cert((1, 7), &ev(5, 3), b"int", &mut c);
        o.cert((2, 7), &ev(1, 1), b"x", &mut c);
        let s = o.take((1, 7));
        assert_eq!(s.ders, [b"leaf".to_vec(), b"int".to_vec()]);
        assert!(s.truncated, "a cut certificate is flagged");
        assert!(o.take((1, 7)).ders.is_empty(), "handed out once");
        assert_eq!(c.own_certs, 3);
        o.reset((2, 7));
        assert!(
            o.take((2, 7)).ders.is_empty(),
            "a new connection starts empty"
        );
    }

    #[test]
    fn long_chains_are_bounded_and_processes_forgotten() {
        let (mut o, mut c) = (Own::default(), TlsCounters::default());
        for _ in 0..MAX_CHAIN + 2 {
            o.cert((1, 7), &ev(1, 1), b"x", &mut c);
        }
        o.cert((2, 7), &ev(1, 1), b"y", &mut c);
        assert_eq!(c.chain_overflow, 2);
        o.forget(2);
        assert_eq!(o.take((1, 7)).ders.len(), MAX_CHAIN);
        assert!(o.take((2, 7)).ders.is_empty());
    }
}
