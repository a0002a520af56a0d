//! The GnuTLS path (Exim): chains per (process, session) from the records of the
//! `gnutls_certificate_get_peers` return probe, tied to a socket by
//! `gnutls_transport_set_{int2,ptr,ptr2}` and ended by `gnutls_deinit`. The endpoints come from
//! the kernel (`EV_SOCK`, taken at the first socket I/O inside `gnutls_handshake`) or, failing
//! that, from the fd through /proc.
//!
//! `gnutls_certificate_get_peers` returns the raw peer chain in wire order, complete, after the
//! handshake (lib/cert-session.c); applications call it once the handshake is over, Exim several
//! times per session (verification, then the peer's DN for the log). So the first complete
//! result of a handshake is the chain, later ones are repeats (counted, dropped), and a NULL
//! result is the "handshake over, the peer sent no certificate" signal: a chain with no DER.
//! A new `gnutls_transport_set_*` on the same session pointer, or `gnutls_deinit`, starts over
//! (the allocator reuses freed session pointers).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use mxcert_ebpf::tls::{
    TlsEvent, EV_GNUTLS_CERT, EV_GNUTLS_DEINIT, EV_GNUTLS_OURS, EV_GNUTLS_TRANSPORT,
};

use super::{socket_endpoints, Endpoints, PeerChain, TlsCounters, MAX_CHAIN, MAX_TRACKED};

/// One GnuTLS session of one process.
#[derive(Default)]
struct Session {
    comm: String,
    ends: Endpoints,
    /// Certificates of the result being assembled (records arrive in index order).
    ders: Vec<Vec<u8>>,
    truncated: bool,
    /// The chain of this handshake was handed out: further results are repeats.
    done: bool,
    /// Our own certificate (`gnutls_certificate_get_ours`) was handed out for this handshake.
    ours_done: bool,
}

impl Session {
    /// Looks the endpoints up through the fd if still unknown (the transport may have been set
    /// before this tgid was seen, or the socket was not yet connected: look again while the
    /// process still has the fd). False: still unknown.
    fn map(&mut self, tgid: u32) -> bool {
        self.ends.resolve(tgid, socket_endpoints)
    }

    fn chain(&self, key: (u32, u64), ders: Vec<Vec<u8>>, truncated: bool, sent: bool) -> PeerChain {
        // `gnutls_certificate_get_ours` gives the leaf it sent, never the rest.
        let leaf_only = sent && !ders.is_empty();
        PeerChain {
            tgid: key.0,
            comm: self.comm.clone(),
            ssl: key.1,
            local: self.ends.local,
            remote: self.ends.remote,
            ders,
            truncated,
            kernel_mapped: self.ends.kernel_mapped,
            sent,
            leaf_only,
        }
    }
}

/// GnuTLS sessions by (tgid, session pointer), and the chains ready to hand out.
#[derive(Default)]
pub(super) struct Gnutls {
    sessions: HashMap<(u32, u64), Session>,
    ready: Vec<PeerChain>,
}

impl Gnutls {
    /// Handles one GnuTLS record (`ev.kind` one of `EV_GNUTLS_*`); `comm` names the process.
    pub(super) fn handle(
        &mut self,
        ev: &TlsEvent,
        data: &[u8],
        comm: &dyn Fn(u32) -> String,
        counters: &mut TlsCounters,
    ) {
        let key = (ev.tgid, ev.ssl);
        match ev.kind {
            EV_GNUTLS_TRANSPORT => {
                // A (re)set transport is a new connection on this session object.
                self.sessions.remove(&key);
                let Some(s) = self.entry(key, comm, counters) else {
                    return;
                };
                if ev.fd >= 0 {
                    s.ends.fd = Some(ev.fd);
                    s.ends.resolve(ev.tgid, socket_endpoints);
                }
            }
            EV_GNUTLS_DEINIT => {
                if let Some(s) = self.sessions.remove(&key) {
                    if !s.done && !s.ders.is_empty() {
                        counters.incomplete += 1;
                    }
                }
            }
            EV_GNUTLS_CERT => self.cert(key, ev, data, comm, counters),
            EV_GNUTLS_OURS => self.ours(key, ev, data, comm, counters),
            _ => counters.bad_records += 1,
        }
    }

    /// Sets the endpoints of session `key` taken in the kernel during its handshake (they win
    /// over the /proc lookup, which goes by fd number later); false when `key` is no GnuTLS
    /// session known here.
    pub(super) fn set_endpoints(
        &mut self,
        key: (u32, u64),
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let Some(s) = self.sessions.get_mut(&key) else {
            return false;
        };
        s.ends.set_from_kernel(local, remote);
        true
    }

    fn cert(
        &mut self,
        key: (u32, u64),
        ev: &TlsEvent,
        data: &[u8],
        comm: &dyn Fn(u32) -> String,
        counters: &mut TlsCounters,
    ) {
        let Some(s) = self.entry(key, comm, counters) else {
            return;
        };
        if s.done {
            if ev.index == 0 {
                counters.repeats += 1;
            }
            return;
        }
        if ev.count > 0 {
            if ev.index == 0 {
                // A new result: whatever an earlier, broken one left is discarded.
                s.ders.clear();
                s.truncated = false;
            }
            if ev.index as usize != s.ders.len() || s.ders.len() >= MAX_CHAIN {
                // A record lost to a full ring or a read error: wait for the next call.
                counters.incomplete += 1;
                s.ders.clear();
                return;
            }
            s.truncated |= ev.data_len < ev.der_len;
            s.ders.push(data.to_vec());
            let expect = (ev.count as usize).min(MAX_CHAIN);
            if s.ders.len() < expect {
                return;
            }
            if ev.count as usize > MAX_CHAIN {
                counters.chain_overflow += 1;
            }
        }
        // Complete (or NULL: no certificate from the peer).
        s.done = true;
        if !s.map(key.0) {
            counters.unmapped += 1;
        }
        let (ders, truncated) = (std::mem::take(&mut s.ders), s.truncated);
        let chain = s.chain(key, ders, truncated, false);
        self.ready.push(chain);
    }

    /// The result of `gnutls_certificate_get_ours` (Exim asks after each handshake): our leaf
    /// as sent in the session's last handshake (GnuTLS keeps only that one, lib/cert-session.c),
    /// or none (`count` 0: NULL, we sent no certificate). Handed out once per handshake as a
    /// sent chain.
    fn ours(
        &mut self,
        key: (u32, u64),
        ev: &TlsEvent,
        data: &[u8],
        comm: &dyn Fn(u32) -> String,
        counters: &mut TlsCounters,
    ) {
        let Some(s) = self.entry(key, comm, counters) else {
            return;
        };
        if s.ours_done {
            counters.repeats += 1;
            return;
        }
        s.ours_done = true;
        s.map(key.0);
        counters.own_chains += 1;
        let ders = if ev.count > 0 {
            counters.own_certs += 1;
            vec![data.to_vec()]
        } else {
            Vec::new()
        };
        let chain = s.chain(key, ders, ev.data_len < ev.der_len, true);
        self.ready.push(chain);
    }

    fn entry(
        &mut self,
        key: (u32, u64),
        comm: &dyn Fn(u32) -> String,
        counters: &mut TlsCounters,
    ) -> Option<&mut Session> {
        if !self.sessions.contains_key(&key) && self.sessions.len() >= MAX_TRACKED {
            counters.table_full += 1;
            return None;
        }
        Some(self.sessions.entry(key).or_insert_with(|| Session {
            comm: comm(key.0),
            ..Session::default()
        }))
    }

    /// The chains complete since the last call, empty ones ("no certificate") included.
    pub(super) fn take_ready(&mut self) -> Vec<PeerChain> {
        std::mem::take(&mut self.ready)
    }

    /// Forgets the sessions of processes no longer alive (no `gnutls_deinit` when killed).
    pub(super) fn retain_procs(&mut self, alive: &HashSet<u32>) {
        self.sessions.retain(|(tgid, _), _| alive.contains(tgid));
    }

    /// Forgets the sessions of one process (it exited or exec'd another image).
    pub(super) fn forget(&mut self, tgid: u32) {
        self.sessions.retain(|(t, _), _| *t != tgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxcert_ebpf::tls::MAX_CERT;

    fn ev(kind: u32, ssl: u64, index: u32, count: u32, len: u32) -> TlsEvent {
        TlsEvent {
            kind,
            ssl,
            tgid: u32::MAX, // no such process: no /proc lookups succeed
            index,
            count,
            der_len: len,
            data_len: len.min(MAX_CERT),
            fd: -1,
            ..TlsEvent::default()
        }
    }

    fn feed(g: &mut Gnutls, c: &mut TlsCounters, e: TlsEvent, data: &[u8]) {
        g.handle(&e, data, &|_| "exim4".to_string(), c);
    }

    #[test]
    fn first_complete_result_is_the_chain_and_repeats_are_dropped() {
        let (mut g, mut c) = (Gnutls::default(), TlsCounters::default());
        feed(&mut g, &mut c, ev(EV_GNUTLS_TRANSPORT, 7, 0, 0, 0), &[]);
        for round in 0..3 {
            feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 7, 0, 2, 3), b"lea");
            if round == 0 {
                assert!(g.ready.is_empty(), "half a chain is not handed out");
            }
            feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 7, 1, 2, 2), b"in");
        }
        let out = g.take_ready();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].ders, vec![b"lea".to_vec(), b"in".to_vec()]);
        assert_eq!((out[0].ssl, out[0].comm.as_str()), (7, "exim4"));
        assert_eq!(c.repeats, 2);
        // A new handshake on the same session object (after deinit) yields a new chain.
        feed(&mut g, &mut c, ev(EV_GNUTLS_DEINIT, 7, 0, 0, 0), &[]);
        feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 7, 0, 1, 3), b"new");
        assert_eq!(g.take_ready()[0].ders, vec![b"new".to_vec()]);
    }

    #[test]
    fn kernel_endpoints_map_a_session_whose_fd_is_gone() {
        let (mut g, mut c) = (Gnutls::default(), TlsCounters::default());
        let (l, r): (SocketAddr, SocketAddr) = (
            "198.18.75.1:25".parse().unwrap(),
            "198.18.75.2:40000".parse().unwrap(),
        );
        assert!(!g.set_endpoints((u32::MAX, 5), l, r), "unknown session");
        feed(&mut g, &mut c, ev(EV_GNUTLS_TRANSPORT, 5, 0, 0, 0), &[]);
        assert!(g.set_endpoints((u32::MAX, 5), l, r));
        feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 5, 0, 1, 3), b"crt");
        let out = g.take_ready();
        assert_eq!((out[0].local, out[0].remote), (Some(l), Some(r)));
        assert_eq!(c.unmapped, 0);
    }

    #[test]
    fn null_result_is_an_empty_chain_once() {
        let (mut g, mut c) = (Gnutls::default(), TlsCounters::default());
        feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 9, 0, 0, 0), &[]);
        feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 9, 0, 0, 0), &[]);
        let out = g.take_ready();
        assert_eq!(out.len(), 1);
        assert!(out[0].ders.is_empty() && !out[0].truncated);
    }

    #[test]
    fn a_lost_record_waits_for_the_next_complete_result() {
        let (mut g, mut c) = (Gnutls::default(), TlsCounters::default());
        // Index 0 lost: index 1 alone is not a chain.
        feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 5, 1, 2, 2), b"in");
        assert!(g.take_ready().is_empty());
        assert_eq!(c.incomplete, 1);
        feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 5, 0, 2, 3), b"lea");
        feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 5, 1, 2, 2), b"in");
        assert_eq!(g.take_ready()[0].ders.len(), 2);
    }

    #[test]
    fn long_chains_and_cut_certificates_are_flagged() {
        let (mut g, mut c) = (Gnutls::default(), TlsCounters::default());
        for i in 0..MAX_CHAIN as u32 {
            let len = if i == 3 { MAX_CERT + 10 } else { 1 };
            feed(&mut g, &mut c, ev(EV_GNUTLS_CERT, 1, i, 20, len), b"x");
        }
        let out = g.take_ready();
        assert_eq!(out[0].ders.len(), MAX_CHAIN);
        assert!(out[0].truncated);
        assert_eq!(c.chain_overflow, 1);
    }

    #[test]
    fn sessions_of_gone_processes_are_forgotten() {
        let (mut g, mut c) = (Gnutls::default(), TlsCounters::default());
        feed(&mut g, &mut c, ev(EV_GNUTLS_TRANSPORT, 1, 0, 0, 0), &[]);
        g.retain_procs(&HashSet::new());
        assert!(g.sessions.is_empty());
    }
}
