//! The OpenSSL path: chains per (process, `SSL*`) from the `d2i_X509` records whose return
//! address lies in libssl's text (checked by the caller, [`super::TlsProbes`]), tied to a
//! socket by `BIO_set_fd` (`EV_BIO_FD`) then `SSL_set_bio` (`EV_SET_BIO`), which both
//! `SSL_set_fd` and `BIO_new_socket` users go through, and mapped to the TCP 4-tuple by the
//! kernel (`EV_SOCK`) or, failing that, from the fd through /proc.
//!
//! A chain is handed out once per handshake: when the application asks for the peer's
//! certificate (`SSL_get0/1_peer_certificate` returned, `EV_PEER`; empty when it returned
//! NULL), when a new `SSL_set_bio` starts another connection on the same `SSL*`, when the
//! process ends, or, for applications that never ask, once no certificate arrived for it for
//! [`QUIET`].
//!
//! Everything here is a pure function of the decoded records (and the /proc lookup given to
//! [`Openssl::new`]), so it is unit-tested without a kernel.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use mxcert_ebpf::tls::TlsEvent;

use super::own::Own;
use super::{Endpoints, PeerChain, TlsCounters, MAX_CHAIN, MAX_TRACKED, QUIET};

/// The endpoints of socket fd of a process, looked up outside the kernel (/proc in the
/// daemon, [`super::socket_endpoints`]).
pub(super) type Lookup = fn(u32, i32) -> Option<(SocketAddr, SocketAddr)>;

/// Connection key: (tgid, `SSL*`).
type Key = (u32, u64);

#[derive(Default)]
struct Conn {
    comm: String,
    /// The socket fd its `SSL_set_bio` tied it to, and the endpoints.
    ends: Endpoints,
    ders: Vec<Vec<u8>>,
    truncated: bool,
    last_cert_ns: u64,
}

/// OpenSSL connections being assembled, and the chains ready to hand out.
pub(super) struct Openssl {
    /// (tgid, BIO) → socket fd.
    bios: HashMap<Key, i32>,
    conns: HashMap<Key, Conn>,
    /// (process, `SSL*`) whose chain was handed out: a second peer-certificate call of the
    /// same handshake hands out nothing. Cleared by the next handshake on that `SSL*`.
    handed: HashSet<Key>,
    /// Chains closed by a new `SSL_set_bio` on the same `SSL*`, by the end of the handshake or
    /// by the process's exit, handed out at the next [`Openssl::take_ready`].
    pending: Vec<PeerChain>,
    lookup: Lookup,
    /// The kernel maps connections (`EV_SOCK`): the /proc lookup (a read of the whole TCP
    /// table of the process's namespace, thousands of lines on a busy MTA) is only the
    /// fallback for a chain handed out without them. Without the socket tracepoints it runs
    /// at `SSL_set_bio`, while the connection is young and its fd still names it.
    kernel_sockets: bool,
    /// Our own chains as sent ([`super::own`]), handed out with the received ones.
    own: Own,
}

impl Openssl {
    pub(super) fn new(lookup: Lookup, kernel_sockets: bool) -> Openssl {
        Openssl {
            bios: HashMap::new(),
            conns: HashMap::new(),
            handed: HashSet::new(),
            pending: Vec::new(),
            lookup,
            kernel_sockets,
            own: Own::default(),
        }
    }

    /// `BIO_set_fd(bio, fd)` in process `tgid`.
    pub(super) fn bio_fd(&mut self, tgid: u32, bio: u64, fd: i32, counters: &mut TlsCounters) {
        if self.bios.len() >= MAX_TRACKED && !self.bios.contains_key(&(tgid, bio)) {
            counters.table_full += 1;
            return;
        }
        self.bios.insert((tgid, bio), fd);
    }

    /// `SSL_set_bio(ssl, bio, ...)` in process `tgid` (named `comm`): a new connection on
    /// this `SSL*`; what the old one had is complete.
    pub(super) fn set_bio(
        &mut self,
        (tgid, ssl): Key,
        bio: u64,
        comm: String,
        counters: &mut TlsCounters,
    ) {
        let key = (tgid, ssl);
        self.handed.remove(&key);
        self.own.reset(key);
        if let Some(old) = self.conns.remove(&key) {
            if !old.ders.is_empty() {
                let chain = self.finish(key, old, counters);
                self.pending.push(chain);
            }
        }
        if self.conns.len() >= MAX_TRACKED {
            counters.table_full += 1;
            return;
        }
        let mut conn = Conn {
            comm,
            ends: Endpoints {
                fd: self.bios.get(&(tgid, bio)).copied(),
                ..Endpoints::default()
            },
            ..Conn::default()
        };
        if !self.kernel_sockets {
            conn.ends.resolve(tgid, self.lookup);
        }
        self.conns.insert(key, conn);
    }

    /// A peer certificate libssl parsed for `key` (the caller checked the return address):
    /// `data` is its DER, cut when `ev.data_len < ev.der_len`.
    pub(super) fn cert(
        &mut self,
        key: Key,
        ev: &TlsEvent,
        data: &[u8],
        comm: &dyn Fn(u32) -> String,
        counters: &mut TlsCounters,
    ) {
        // A certificate after the chain was handed out: a new handshake on the same SSL*
        // (renegotiation, or `SSL_clear` reuse).
        self.handed.remove(&key);
        let Some(conn) = self.conn_mut(key, comm, counters) else {
            return;
        };
        if conn.ders.len() >= MAX_CHAIN {
            counters.chain_overflow += 1;
            return;
        }
        conn.truncated |= ev.data_len < ev.der_len;
        conn.ders.push(data.to_vec());
        conn.last_cert_ns = ev.ktime_ns;
    }

    /// A certificate libssl encoded into `key`'s own Certificate message (the caller checked
    /// the return address).
    pub(super) fn own_cert(
        &mut self,
        key: Key,
        ev: &TlsEvent,
        data: &[u8],
        counters: &mut TlsCounters,
    ) {
        self.own.cert(key, ev, data, counters);
    }

    /// The endpoints of `key`'s connection, taken in the kernel during its handshake: they
    /// win over the /proc lookup, which goes by fd number later, and a closed connection may
    /// have handed its number on to the next one.
    pub(super) fn set_endpoints(
        &mut self,
        key: Key,
        local: SocketAddr,
        remote: SocketAddr,
        comm: &dyn Fn(u32) -> String,
        counters: &mut TlsCounters,
    ) {
        let Some(conn) = self.conn_mut(key, comm, counters) else {
            return;
        };
        conn.ends.set_from_kernel(local, remote);
    }

    /// The application asked for the peer's certificate of `key`: the handshake is over.
    /// `x509` is what the call returned (0: the peer sent no certificate).
    pub(super) fn handshake_ended(&mut self, key: Key, x509: u64, counters: &mut TlsCounters) {
        if self.handed.contains(&key) {
            // Asked again in the same connection (Postfix asks during verification and for
            // logging): the chain went out with the first call.
            return;
        }
        // A connection whose `SSL_set_bio` was never seen (it began before mxcert) cannot be
        // tied to a socket: nothing to hand out.
        let Some(conn) = self.conns.remove(&key) else {
            return;
        };
        counters.handshakes_ended += 1;
        self.mark_handed(key, counters);
        if conn.ders.is_empty() && x509 != 0 {
            // The library has a peer certificate it did not parse in this handshake: the
            // session was resumed (RFC 8446 §2.2), its chain came with the original one,
            // and so did ours.
            counters.resumed += 1;
            self.own.take(key);
            return;
        }
        if conn.ders.is_empty() {
            counters.no_peer_certificate += 1;
        }
        self.hand_out(key, conn, true, counters);
    }

    /// Queues the chain `key` received and the one it sent. `ended`: the application signalled
    /// the end of the handshake, so an empty sent chain means "sent none"; on the [`QUIET`]
    /// timer it may only mean "not yet", and is not handed out.
    fn hand_out(&mut self, key: Key, conn: Conn, ended: bool, counters: &mut TlsCounters) {
        let sent = self.own.take(key);
        let chain = self.finish(key, conn, counters);
        let mine = (ended || !sent.ders.is_empty()).then(|| PeerChain {
            ders: sent.ders,
            truncated: sent.truncated,
            sent: true,
            leaf_only: false,
            ..chain.clone()
        });
        self.pending.push(chain);
        if let Some(mine) = mine {
            counters.own_chains += 1;
            self.pending.push(mine);
        }
    }

    /// Process `tgid` exited or replaced its image: the chains it had are complete, the rest
    /// of it is forgotten.
    pub(super) fn forget(&mut self, tgid: u32, counters: &mut TlsCounters) {
        let keys: Vec<Key> = self.conns.keys().filter(|k| k.0 == tgid).copied().collect();
        for k in keys {
            let c = self.conns.remove(&k).expect("listed above");
            if !c.ders.is_empty() {
                let chain = self.finish(k, c, counters);
                self.pending.push(chain);
            }
        }
        self.bios.retain(|k, _| k.0 != tgid);
        self.handed.retain(|k| k.0 != tgid);
        self.own.forget(tgid);
    }

    /// The chains complete at `now` (monotonic ns): those closed by a record, then those quiet
    /// for [`QUIET`] (applications that never ask for the peer certificate).
    pub(super) fn take_ready(&mut self, now: u64, counters: &mut TlsCounters) -> Vec<PeerChain> {
        let quiet = QUIET.as_nanos() as u64;
        let done: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.ders.is_empty() && now.saturating_sub(c.last_cert_ns) >= quiet)
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            let c = self.conns.remove(&k).expect("listed above");
            self.mark_handed(k, counters);
            self.hand_out(k, c, false, counters);
        }
        std::mem::take(&mut self.pending)
    }

    /// The connection `key`, added when new (`None`, counted, when the table is full).
    fn conn_mut(
        &mut self,
        key: Key,
        comm: &dyn Fn(u32) -> String,
        counters: &mut TlsCounters,
    ) -> Option<&mut Conn> {
        if !self.conns.contains_key(&key) {
            if self.conns.len() >= MAX_TRACKED {
                counters.table_full += 1;
                return None;
            }
            self.conns.insert(
                key,
                Conn {
                    comm: comm(key.0),
                    ..Conn::default()
                },
            );
        }
        self.conns.get_mut(&key)
    }

    fn mark_handed(&mut self, key: Key, counters: &mut TlsCounters) {
        if self.handed.len() >= MAX_TRACKED {
            // Bounded: losing the marks costs at most a duplicate empty chain for a
            // connection asked twice, which the join ignores after its record went out.
            counters.table_full += 1;
            self.handed.clear();
        }
        self.handed.insert(key);
    }

    fn finish(&mut self, (tgid, ssl): Key, mut c: Conn, counters: &mut TlsCounters) -> PeerChain {
        // The kernel sent no endpoints (a socket it cannot read, a kernel without the
        // tracepoints, a first I/O it missed): the fd, if the process still has it.
        if !c.ends.resolve(tgid, self.lookup) {
            counters.unmapped += 1;
        }
        PeerChain {
            tgid,
            comm: c.comm,
            ssl,
            local: c.ends.local,
            remote: c.ends.remote,
            ders: c.ders,
            truncated: c.truncated,
            kernel_mapped: c.ends.kernel_mapped,
            sent: false,
            leaf_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxcert_ebpf::tls::EV_CERT;

    const PID: u32 = 4242;
    const SSL: u64 = 0x5555_0000;
    const BIO: u64 = 0x6666_0000;
    const MS: u64 = 1_000_000;

    fn ends() -> (SocketAddr, SocketAddr) {
        (
            "198.18.90.1:25".parse().unwrap(),
            "198.18.90.2:40000".parse().unwrap(),
        )
    }

    /// The /proc lookup as a function of (tgid, fd): fd 7 of PID is the connection.
    fn proc_lookup(tgid: u32, fd: i32) -> Option<(SocketAddr, SocketAddr)> {
        (tgid == PID && fd == 7).then(ends)
    }

    fn no_proc(_: u32, _: i32) -> Option<(SocketAddr, SocketAddr)> {
        None
    }

    fn comm(_: u32) -> String {
        "smtpd".into()
    }

    fn cert(o: &mut Openssl, c: &mut TlsCounters, at_ms: u64, der: &[u8]) {
        let ev = TlsEvent {
            kind: EV_CERT,
            ktime_ns: at_ms * MS,
            der_len: der.len() as u32,
            data_len: der.len() as u32,
            ..Default::default()
        };
        o.cert((PID, SSL), &ev, der, &comm, c);
    }

    /// A connection through `BIO_set_fd(7)` + `SSL_set_bio`, its endpoints from the kernel.
    fn connected(lookup: Lookup) -> (Openssl, TlsCounters) {
        let (mut o, mut c) = (Openssl::new(lookup, true), TlsCounters::default());
        o.bio_fd(PID, BIO, 7, &mut c);
        o.set_bio((PID, SSL), BIO, "smtpd".into(), &mut c);
        let (l, r) = ends();
        o.set_endpoints((PID, SSL), l, r, &comm, &mut c);
        (o, c)
    }

    #[test]
    fn the_chain_goes_out_when_the_peer_certificate_call_returns() {
        let (mut o, mut c) = connected(no_proc);
        cert(&mut o, &mut c, 1, b"leaf");
        cert(&mut o, &mut c, 1, b"intermediate");
        // Before the end, well inside QUIET: nothing.
        assert!(o.take_ready(2 * MS, &mut c).is_empty());
        o.handshake_ended((PID, SSL), 0xdead, &mut c);
        let out = o.take_ready(2 * MS, &mut c);
        // The received chain, and the (empty) one this side sent.
        assert_eq!(out.len(), 2);
        assert!(!out[0].sent && out[1].sent && out[1].ders.is_empty());
        assert_eq!(
            out[0].ders,
            vec![b"leaf".to_vec(), b"intermediate".to_vec()]
        );
        assert!(out[0].kernel_mapped && !out[0].truncated);
        assert_eq!(
            (out[0].local, out[0].remote),
            (Some(ends().0), Some(ends().1))
        );
        assert_eq!(c.handshakes_ended, 1);
        // Asked again (Postfix asks twice), and later on the timer: once only.
        o.handshake_ended((PID, SSL), 0xdead, &mut c);
        assert!(o.take_ready(500 * MS, &mut c).is_empty());
        assert_eq!(c.handshakes_ended, 1);
    }

    #[test]
    fn a_null_peer_certificate_gives_an_empty_chain_and_a_resumption_none() {
        let (mut o, mut c) = connected(no_proc);
        o.handshake_ended((PID, SSL), 0, &mut c);
        let out = o.take_ready(0, &mut c);
        assert_eq!(out.len(), 2, "received and sent, both empty");
        assert!(out[0].ders.is_empty() && out[0].local.is_some());
        assert_eq!(c.no_peer_certificate, 1);
        // Next connection on the same SSL*: nothing parsed, but the library has a
        // certificate: resumed, no chain.
        o.set_bio((PID, SSL), BIO, "smtpd".into(), &mut c);
        o.handshake_ended((PID, SSL), 0xbeef, &mut c);
        assert!(o.take_ready(0, &mut c).is_empty());
        assert_eq!((c.resumed, c.handshakes_ended), (1, 2));
        // A connection begun before mxcert (no SSL_set_bio seen): nothing to hand out.
        o.handshake_ended((PID, SSL + 1), 0, &mut c);
        assert!(o.take_ready(0, &mut c).is_empty());
    }

    #[test]
    fn without_an_end_signal_the_chain_goes_out_once_quiet() {
        let (mut o, mut c) = connected(no_proc);
        cert(&mut o, &mut c, 10, b"leaf");
        let quiet_ms = QUIET.as_millis() as u64;
        assert!(o.take_ready((10 + quiet_ms - 1) * MS, &mut c).is_empty());
        let out = o.take_ready((10 + quiet_ms) * MS, &mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].ders, vec![b"leaf".to_vec()]);
        // The end signal after the timer handed it out adds nothing.
        o.handshake_ended((PID, SSL), 0xdead, &mut c);
        assert!(o.take_ready(u64::MAX, &mut c).is_empty());
    }

    #[test]
    fn a_new_connection_or_the_process_exit_closes_the_chain() {
        let (mut o, mut c) = connected(proc_lookup);
        cert(&mut o, &mut c, 1, b"first");
        o.set_bio((PID, SSL), BIO, "smtpd".into(), &mut c);
        let out = o.take_ready(MS, &mut c);
        assert_eq!(out.len(), 1, "closed by the next SSL_set_bio");
        assert_eq!(out[0].ders, vec![b"first".to_vec()]);
        cert(&mut o, &mut c, 2, b"second");
        o.forget(PID, &mut c);
        let out = o.take_ready(2 * MS, &mut c);
        assert_eq!(out.len(), 1, "closed by the exit");
        assert_eq!(out[0].ders, vec![b"second".to_vec()]);
        // No kernel endpoints for the second connection: its fd (BIO_set_fd before it) gave
        // them at hand-out.
        assert!(!out[0].kernel_mapped && out[0].local.is_some());
        // Its fds are forgotten too: a later SSL_set_bio of a new process with that pid
        // has no fd.
        o.set_bio((PID, SSL), BIO, "smtpd".into(), &mut c);
        o.handshake_ended((PID, SSL), 0, &mut c);
        assert_eq!(o.take_ready(3 * MS, &mut c)[0].local, None);
        assert_eq!(c.unmapped, 1);
    }

    #[test]
    fn proc_is_the_fallback_when_the_kernel_sent_no_endpoints() {
        let (mut o, mut c) = (Openssl::new(proc_lookup, true), TlsCounters::default());
        o.bio_fd(PID, BIO, 7, &mut c);
        o.set_bio((PID, SSL), BIO, "smtpd".into(), &mut c);
        cert(&mut o, &mut c, 1, b"leaf");
        o.handshake_ended((PID, SSL), 1, &mut c);
        let out = o.take_ready(MS, &mut c);
        assert_eq!(
            (out[0].local, out[0].remote),
            (Some(ends().0), Some(ends().1))
        );
        assert!(!out[0].kernel_mapped);
        assert_eq!(c.unmapped, 0);
        // The kernel's endpoints win over /proc's.
        let (mut o, mut c) = connected(proc_lookup);
        let other: SocketAddr = "[::1]:25".parse().unwrap();
        o.set_endpoints((PID, SSL), other, other, &comm, &mut c);
        o.handshake_ended((PID, SSL), 0, &mut c);
        assert_eq!(o.take_ready(0, &mut c)[0].local, Some(other));
    }

    #[test]
    fn long_certificates_and_chains_are_bounded_and_flagged() {
        let (mut o, mut c) = connected(no_proc);
        let ev = TlsEvent {
            kind: EV_CERT,
            der_len: 20_000,
            data_len: 4,
            ..Default::default()
        };
        o.cert((PID, SSL), &ev, b"cut!", &comm, &mut c);
        for _ in 0..MAX_CHAIN {
            cert(&mut o, &mut c, 0, b"more");
        }
        o.handshake_ended((PID, SSL), 1, &mut c);
        let out = o.take_ready(0, &mut c);
        assert!(out[0].truncated);
        assert_eq!(out[0].ders.len(), MAX_CHAIN);
        assert_eq!(c.chain_overflow, 1);
    }

    fn own(o: &mut Openssl, c: &mut TlsCounters, der: &[u8]) {
        let ev = TlsEvent {
            kind: mxcert_ebpf::tls::EV_OWN_CERT,
            ssl: SSL,
            der_len: der.len() as u32,
            data_len: der.len() as u32,
            ..Default::default()
        };
        o.own_cert((PID, SSL), &ev, der, c);
    }

    #[test]
    fn our_sent_chain_goes_out_with_the_received_one() {
        let (mut o, mut c) = connected(no_proc);
        own(&mut o, &mut c, b"our leaf");
        own(&mut o, &mut c, b"our intermediate");
        cert(&mut o, &mut c, 1, b"peer leaf");
        o.handshake_ended((PID, SSL), 0xdead, &mut c);
        let out = o.take_ready(2 * MS, &mut c);
        assert_eq!(out.len(), 2);
        let (got, sent) = (&out[0], &out[1]);
        assert!(!got.sent && sent.sent);
        assert_eq!(got.ders, [b"peer leaf".to_vec()]);
        assert_eq!(
            sent.ders,
            [b"our leaf".to_vec(), b"our intermediate".to_vec()]
        );
        // Same process, same endpoints: the daemon turns them around for a sent chain.
        assert_eq!((sent.local, sent.remote), (got.local, got.remote));
        assert_eq!((c.own_certs, c.own_chains), (2, 1));
        // A resumed handshake on the same SSL*: neither chain (both came with the original).
        o.set_bio((PID, SSL), BIO, "smtp".into(), &mut c);
        own(&mut o, &mut c, b"stale");
        o.handshake_ended((PID, SSL), 0xbeef, &mut c);
        assert!(o.take_ready(0, &mut c).is_empty());
        // A new connection drops what an earlier one left unsent.
        o.set_bio((PID, SSL), BIO, "smtp".into(), &mut c);
        o.handshake_ended((PID, SSL), 0, &mut c);
        let out = o.take_ready(0, &mut c);
        assert!(out.iter().all(|c| c.ders.is_empty()), "{out:?}");
    }

    #[test]
    fn on_the_quiet_timer_an_empty_sent_chain_is_not_handed_out() {
        let (mut o, mut c) = connected(no_proc);
        cert(&mut o, &mut c, 0, b"peer leaf");
        let out = o.take_ready(u64::MAX, &mut c);
        assert_eq!(
            out.len(),
            1,
            "no end signal: an empty sent chain may mean 'not yet'"
        );
        assert!(!out[0].sent);
    }
}
