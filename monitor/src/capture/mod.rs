//! Stage 1: capture. Every packet source (capture files now; libpcap live and eBPF with the
//! live-capture issue) yields [`Packet`]s that borrow from the source's own buffer, so the
//! per-packet path allocates nothing. [`decode`] turns a packet into a [`TcpSegment`].

pub mod bpfobj;
pub mod caps;
pub mod decode;
pub mod ebpf;
pub mod file;
pub mod live;
pub mod pcap;
pub mod select;
pub mod synth;
pub mod tlslib;

pub use decode::{decode, DecodeOutcome, TcpFlags, TcpSegment};
pub use file::{CaptureError, FileReader};
pub use live::{FlowTuple, LiveError, LiveSource, SourceCounters};

/// Nanoseconds since the Unix epoch (UTC). i64 covers 1677..2262, wider than any capture.
pub type Nanos = i64;

/// Link-layer header type, as numbered by tcpdump.org's LINKTYPE_* registry (the value stored
/// in pcap headers and pcapng interface blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: 4-byte address family in the *writer's* byte order.
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IPv4 or IPv6, version taken from the first nibble.
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: like NULL but the family is always big-endian.
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
    /// Some old writers store DLT_RAW's platform value (12 on most BSDs, 14 on OpenBSD).
    pub const RAW_BSD12: LinkType = LinkType(12);
    pub const RAW_BSD14: LinkType = LinkType(14);
}

/// One captured frame, borrowed from the reader's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub ts: Nanos,
    pub link: LinkType,
    /// Captured bytes (may be shorter than `orig_len` when the snaplen cut the frame).
    pub data: &'a [u8],
    pub orig_len: u32,
}
