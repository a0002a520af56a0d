//! The contract between live packet sources (the aya eBPF backend, the libpcap fallback) and
//! the daemon that feeds their packets to the same [`Pipeline`](crate::session::Pipeline) as
//! `mxcert read`. A source hands over whole frames (GSO/GRO super-packets included: a TLS
//! Certificate message often sits in one) and learns, through [`LiveSource::flow_done`], which
//! flows the pipeline no longer needs, so a source that can (eBPF) stops copying their payload
//! into user space.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Packet;

/// A TCP connection, direction-free: the lower (address, port) endpoint first, so both
/// directions of a connection give the same value (and the same eBPF map key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub lo: SocketAddr,
    pub hi: SocketAddr,
}

impl FlowTuple {
    pub fn new(a: SocketAddr, b: SocketAddr) -> FlowTuple {
        // IPv4 sorts before IPv6 (IpAddr's Ord); mixed families never share a connection.
        if (a.ip(), a.port()) <= (b.ip(), b.port()) {
            FlowTuple { lo: a, hi: b }
        } else {
            FlowTuple { lo: b, hi: a }
        }
    }

    /// Addresses as 16 bytes (IPv4 as `::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), for fixed-width
    /// kernel map keys.
    pub fn ip16(ip: IpAddr) -> [u8; 16] {
        match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }
}

/// What a source counted since it started. Every drop is counted somewhere: an operator must be
/// able to tell "no traffic" from "traffic lost".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounters {
    /// Frames handed to the pipeline.
    pub packets: u64,
    /// Bytes of those frames (what crossed into user space).
    pub bytes: u64,
    /// Frames the kernel side could not deliver (eBPF ring buffer full, libpcap `ps_drop`).
    pub dropped: u64,
    /// Frames dropped by the interface/driver before capture (libpcap `ps_ifdrop`).
    pub if_dropped: u64,
    /// Packets of flows marked done that were not copied to user space (eBPF cutoff).
    pub cut_off: u64,
}

/// Failures of a live source: real failures (cannot attach, interface gone), never bad traffic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The backend cannot run here; the message says why and what to do.
    #[error("{backend} capture unavailable: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    /// A running source failed (interface removed, ring buffer error).
    #[error("{backend} capture failed: {reason}")]
    Failed {
        backend: &'static str,
        reason: String,
    },
}

impl LiveError {
    pub fn unavailable(backend: &'static str, reason: String) -> LiveError {
        LiveError::Unavailable { backend, reason }
    }

    pub fn failed(backend: &'static str, reason: String) -> LiveError {
        LiveError::Failed { backend, reason }
    }
}

/// A live packet source. Implementations own their buffers; a [`Packet`] borrows from them only
/// for the duration of the callback, so the per-packet path allocates nothing.
pub trait LiveSource {
    /// `"ebpf"` or `"pcap"`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Waits up to `timeout` for packets and hands each to `f` in arrival order; returns how
    /// many were handed over (0 on timeout).
    fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(&Packet<'_>),
    ) -> Result<usize, LiveError>;

    /// The pipeline is done with this connection (handshake over, TLS 1.3, or no TLS). A source
    /// may stop delivering its payload; it must still deliver FIN/RST so the session closes.
    fn flow_done(&mut self, flow: &FlowTuple);

    /// The connection is closed: forget any per-flow state kept for it.
    fn flow_closed(&mut self, flow: &FlowTuple);

    fn counters(&self) -> SourceCounters;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_tuple_is_direction_free() {
        let a: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let b: SocketAddr = "198.18.0.1:25".parse().unwrap();
        assert_eq!(FlowTuple::new(a, b), FlowTuple::new(b, a));
        assert_eq!(FlowTuple::new(a, b).lo, b);
    }

    #[test]
    fn ipv4_maps_into_ipv6_space() {
        let ip16 = FlowTuple::ip16("198.18.0.1".parse().unwrap());
        assert_eq!(&ip16[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&ip16[12..], &[198, 18, 0, 1]);
    }
}
