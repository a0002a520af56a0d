//! Link layer → IP → TCP segment, for the link types mail gateways are captured on.
//!
//! Hand-parsed rather than through etherparse: the monitor needs only the TCP 4-tuple, sequence
//! numbers, flags and payload, and a direct walk over the few headers involved is a handful of
//! bounds-checked loads with no intermediate structs. Every loop has a fixed bound
//! ([`MAX_VLAN_TAGS`], [`MAX_IPV6_EXT_HEADERS`]), nothing allocates, and any input, however
//! damaged, yields a [`DecodeOutcome`] rather than a panic. Checksums are not verified: captures
//! taken on the sending host with checksum offload carry wrong ones on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::LinkType;

/// Most VLAN tags (802.1Q, 802.1ad, pre-standard QinQ) we walk through in one frame. Real
/// networks stack two; past this the frame is treated as malformed.
pub const MAX_VLAN_TAGS: usize = 8;

/// Most IPv6 extension headers (RFC 8200 §4) walked before giving up. RFC 8200 §4.1 allows
/// each at most once (destination options twice), so a longer chain is malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 16;

/// EtherTypes and IP protocol numbers: one list, shared with the eBPF program's parser.
use mxcert_ebpf::wire::{
    ET_IPV4, ET_IPV6, ET_QINQ, ET_QINQ_OLD, ET_VLAN, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
    IPPROTO_HIP, IPPROTO_HOPOPTS, IPPROTO_MOBILITY, IPPROTO_ROUTING, IPPROTO_SHIM6, IPPROTO_TCP,
};

/// TCP flags byte (RFC 9293 §3.1, byte 13 of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    #[inline]
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    #[inline]
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    #[inline]
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    #[inline]
    pub fn psh(self) -> bool {
        self.0 & Self::PSH != 0
    }
    #[inline]
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// One TCP segment, borrowing its payload from the packet.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// TCP payload, trimmed to the IP length (never includes Ethernet padding or FCS).
    pub payload: &'a [u8],
    /// The capture cut the segment short (snaplen) — payload is shorter than the TCP length.
    pub truncated: bool,
}

/// What a packet turned out to be. Everything but `Tcp` is counted and dropped by the caller.
#[derive(Debug, Clone, Copy)]
pub enum DecodeOutcome<'a> {
    Tcp(TcpSegment<'a>),
    /// Well-formed, but not TCP over IP (ARP, UDP, ICMP, ESP, ...).
    NotTcp,
    /// An IP fragment that may carry TCP; fragments are not reassembled (SMTP senders set DF
    /// and use PMTUD, so these are rare).
    IpFragment,
    /// A header is shorter than its minimum, claims more bytes than there are, or the capture
    /// ends inside the headers.
    Malformed,
    /// A link type this decoder does not know.
    UnsupportedLink,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes one captured frame of link type `link` down to its TCP segment.
#[inline]
pub fn decode(link: LinkType, data: &[u8]) -> DecodeOutcome<'_> {
    match link {
        LinkType::ETHERNET => {
            if data.len() < 14 {
                return DecodeOutcome::Malformed;
            }
            ethertype(be16(data, 12), &data[14..])
        }
        LinkType::RAW | LinkType::RAW_BSD12 | LinkType::RAW_BSD14 => raw_ip(data),
        LinkType::IPV4 => ipv4(data),
        LinkType::IPV6 => ipv6(data),
        // Linux "cooked" capture v1: 16-byte header, protocol (an EtherType for IP) at 14
        // (tcpdump.org LINKTYPE_LINUX_SLL).
        LinkType::LINUX_SLL => {
            if data.len() < 16 {
                return DecodeOutcome::Malformed;
            }
            ethertype(be16(data, 14), &data[16..])
        }
        // Linux cooked capture v2: 20-byte header, protocol first (LINKTYPE_LINUX_SLL2).
        LinkType::LINUX_SLL2 => {
            if data.len() < 20 {
                return DecodeOutcome::Malformed;
            }
            ethertype(be16(data, 0), &data[20..])
        }
        // BSD loopback: a 4-byte address family in the byte order of the host that wrote the
        // file (LINKTYPE_NULL), which is not necessarily ours. Families are small numbers, so
        // exactly one byte order gives a value under 2^16.
        LinkType::NULL => {
            if data.len() < 4 {
                return DecodeOutcome::Malformed;
            }
            let le = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            let family = if le < 0x1_0000 { le } else { le.swap_bytes() };
            bsd_family(family, &data[4..])
        }
        // OpenBSD loopback: the same, always big-endian (LINKTYPE_LOOP).
        LinkType::LOOP => {
            if data.len() < 4 {
                return DecodeOutcome::Malformed;
            }
            bsd_family(be32(data, 0), &data[4..])
        }
        _ => DecodeOutcome::UnsupportedLink,
    }
}

/// AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD, BSD/OS), 28 (FreeBSD,
/// DragonFly) or 30 (macOS) — tcpdump.org's LINKTYPE_NULL notes.
fn bsd_family(family: u32, rest: &[u8]) -> DecodeOutcome<'_> {
    match family {
        2 => ipv4(rest),
        24 | 28 | 30 => ipv6(rest),
        _ => DecodeOutcome::NotTcp,
    }
}

/// Dispatches on an EtherType, first stepping over any stack of VLAN tags (4 bytes each: TCI,
/// then the next EtherType).
#[inline]
fn ethertype(mut et: u16, mut rest: &[u8]) -> DecodeOutcome<'_> {
    for _ in 0..=MAX_VLAN_TAGS {
        match et {
            ET_IPV4 => return ipv4(rest),
            ET_IPV6 => return ipv6(rest),
            ET_VLAN | ET_QINQ | ET_QINQ_OLD => {
                if rest.len() < 4 {
                    return DecodeOutcome::Malformed;
                }
                et = be16(rest, 2);
                rest = &rest[4..];
            }
            _ => return DecodeOutcome::NotTcp,
        }
    }
    DecodeOutcome::Malformed
}

fn raw_ip(data: &[u8]) -> DecodeOutcome<'_> {
    match data.first().map(|b| b >> 4) {
        Some(4) => ipv4(data),
        Some(6) => ipv6(data),
        _ => DecodeOutcome::Malformed,
    }
}

/// IPv4 (RFC 791 §3.1).
#[inline]
fn ipv4(d: &[u8]) -> DecodeOutcome<'_> {
    if d.len() < 20 || d[0] >> 4 != 4 {
        return DecodeOutcome::Malformed;
    }
    let ihl = usize::from(d[0] & 0x0f) * 4;
    if ihl < 20 || ihl > d.len() {
        return DecodeOutcome::Malformed;
    }
    let total = usize::from(be16(d, 2));
    // A total length of 0 is what captures on a host doing TCP segmentation offload show for
    // the oversized segments handed to the NIC; Wireshark then also takes the captured length.
    let end = if total == 0 { d.len() } else { total };
    if end < ihl {
        return DecodeOutcome::Malformed;
    }
    // Trim to the IP length: Ethernet pads short frames to 60 bytes and may carry the FCS, and
    // neither may reach the TCP payload.
    let truncated = end > d.len();
    let d = &d[..end.min(d.len())];
    let proto = d[9];
    // Flags and fragment offset (RFC 791 §3.1): MF is 0x2000, the offset the low 13 bits.
    if be16(d, 6) & 0x3fff != 0 {
        return if proto == IPPROTO_TCP || proto == IPPROTO_AH {
            DecodeOutcome::IpFragment
        } else {
            DecodeOutcome::NotTcp
        };
    }
    let src = IpAddr::V4(Ipv4Addr::new(d[12], d[13], d[14], d[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(d[16], d[17], d[18], d[19]));
    upper(proto, &d[ihl..], false, src, dst, truncated)
}

/// IPv6 (RFC 8200 §3).
#[inline]
fn ipv6(d: &[u8]) -> DecodeOutcome<'_> {
    if d.len() < 40 || d[0] >> 4 != 6 {
        return DecodeOutcome::Malformed;
    }
    let plen = usize::from(be16(d, 4));
    // Payload length 0 is a jumbogram (RFC 2675) or, as for IPv4, a segmentation-offload
    // capture: the captured length is all we have.
    let end = if plen == 0 { d.len() } else { 40 + plen };
    let truncated = end > d.len();
    let d = &d[..end.min(d.len())];
    let mut src = [0u8; 16];
    src.copy_from_slice(&d[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&d[24..40]);
    upper(
        d[6],
        &d[40..],
        true,
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
        truncated,
    )
}

/// IPv6 extension headers that share the "next header, length in 8-octet units beyond the
/// first" layout (RFC 8200 §4.3, §4.4, §4.6; RFC 6275 §6.1; RFC 7401 §5.1; RFC 5533 §5.1).
fn is_v6_generic_ext(p: u8) -> bool {
    matches!(
        p,
        IPPROTO_HOPOPTS
            | IPPROTO_ROUTING
            | IPPROTO_DSTOPTS
            | IPPROTO_MOBILITY
            | IPPROTO_HIP
            | IPPROTO_SHIM6
    )
}

/// Walks from the IP payload to TCP over the extension headers (IPv6) or AH (both families).
/// `rest` is already trimmed to the IP length.
#[inline]
fn upper<'a>(
    mut next: u8,
    mut rest: &'a [u8],
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    truncated: bool,
) -> DecodeOutcome<'a> {
    for _ in 0..=MAX_IPV6_EXT_HEADERS {
        if next == IPPROTO_TCP {
            return tcp(rest, src, dst, truncated);
        }
        let hdr_len = if next == IPPROTO_AH {
            // RFC 4302 §2.2: Payload Len is in 4-octet units, minus 2.
            if rest.len() < 2 {
                return DecodeOutcome::Malformed;
            }
            (usize::from(rest[1]) + 2) * 4
        } else if v6 && is_v6_generic_ext(next) {
            if rest.len() < 2 {
                return DecodeOutcome::Malformed;
            }
            (usize::from(rest[1]) + 1) * 8
        } else if v6 && next == IPPROTO_FRAGMENT {
            // RFC 8200 §4.5: fixed 8 bytes; offset in the upper 13 bits of bytes 2-3, M flag
            // in the lowest bit. Offset 0 without M is an atomic fragment (RFC 6946): the
            // whole packet, parsed on.
            if rest.len() < 8 {
                return DecodeOutcome::Malformed;
            }
            if be16(rest, 2) & 0xfff9 != 0 {
                let inner = rest[0];
                return if inner == IPPROTO_TCP
                    || inner == IPPROTO_AH
                    || inner == IPPROTO_FRAGMENT
                    || is_v6_generic_ext(inner)
                {
                    DecodeOutcome::IpFragment
                } else {
                    DecodeOutcome::NotTcp
                };
            }
            8
        } else {
            // UDP, ICMP, ESP (encrypted, RFC 4303), No Next Header (59), ...
            return DecodeOutcome::NotTcp;
        };
        if hdr_len > rest.len() {
            return DecodeOutcome::Malformed;
        }
        next = rest[0];
        rest = &rest[hdr_len..];
    }
    DecodeOutcome::Malformed
}

/// TCP header (RFC 9293 §3.1).
#[inline]
fn tcp<'a>(s: &'a [u8], src: IpAddr, dst: IpAddr, truncated: bool) -> DecodeOutcome<'a> {
    if s.len() < 20 {
        return DecodeOutcome::Malformed;
    }
    let off = usize::from(s[12] >> 4) * 4;
    if off < 20 || off > s.len() {
        return DecodeOutcome::Malformed;
    }
    DecodeOutcome::Tcp(TcpSegment {
        src,
        dst,
        sport: be16(s, 0),
        dport: be16(s, 2),
        seq: be32(s, 4),
        ack: be32(s, 8),
        flags: TcpFlags(s[13]),
        payload: &s[off..],
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const A4: [u8; 4] = [192, 0, 2, 1];
    const B4: [u8; 4] = [198, 51, 100, 7];
    const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const DATA: &[u8] = b"220 mx.example.org ESMTP\r\n";

    /// TCP header with `opt_words` 32-bit words of options (NOPs), then `payload`.
    fn tcp_seg(flags: u8, opt_words: usize, payload: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 20 + 4 * opt_words];
        t[0..2].copy_from_slice(&25u16.to_be_bytes());
        t[2..4].copy_from_slice(&40123u16.to_be_bytes());
        t[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        t[8..12].copy_from_slice(&0xa0b0_c0d0u32.to_be_bytes());
        t[12] = ((5 + opt_words) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        for b in &mut t[20..] {
            *b = 1; // NOP
        }
        t.extend_from_slice(payload);
        t
    }

    fn data_seg() -> Vec<u8> {
        tcp_seg(TcpFlags::PSH | TcpFlags::ACK, 3, DATA)
    }

    /// IPv4 packet with `opt_words` words of options and the given flags/fragment field.
    fn ipv4(proto: u8, opt_words: usize, frag: u16, body: &[u8]) -> Vec<u8> {
        let hl = 20 + 4 * opt_words;
        let mut p = vec![0u8; hl];
        p[0] = 0x40 | (5 + opt_words) as u8;
        p[2..4].copy_from_slice(&((hl + body.len()) as u16).to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[10..12].copy_from_slice(&[0xde, 0xad]); // wrong checksum on purpose: not verified
        p[12..16].copy_from_slice(&A4);
        p[16..20].copy_from_slice(&B4);
        for b in &mut p[20..] {
            *b = 1; // IPv4 NOP option
        }
        p.extend_from_slice(body);
        p
    }

    fn ipv6(next: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p[8..24].copy_from_slice(&A6);
        p[24..40].copy_from_slice(&B6);
        p.extend_from_slice(body);
        p
    }

    /// A generic IPv6 extension header of `units` 8-octet units beyond the first.
    fn ext(next: u8, units: u8, body: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 8 * (usize::from(units) + 1)];
        h[0] = next;
        h[1] = units;
        h.extend_from_slice(body);
        h
    }

    fn frag_hdr(next: u8, offset: u16, more: bool, body: &[u8]) -> Vec<u8> {
        let mut h = vec![next, 0, 0, 0, 0, 0, 0x12, 0x34];
        h[2..4].copy_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn ah(next: u8, body: &[u8]) -> Vec<u8> {
        // 12 fixed bytes + 12 bytes ICV = 24 bytes = (4 + 2) * 4.
        let mut h = vec![0u8; 24];
        h[0] = next;
        h[1] = 4;
        h.extend_from_slice(body);
        h
    }

    fn eth(et: u16, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn vlan(tpid: u16, vid: u16, inner_et: u16, body: &[u8]) -> (u16, Vec<u8>) {
        let mut t = vid.to_be_bytes().to_vec();
        t.extend_from_slice(&inner_et.to_be_bytes());
        t.extend_from_slice(body);
        (tpid, t)
    }

    fn tcp(link: LinkType, data: &[u8]) -> TcpSegment<'_> {
        match decode(link, data) {
            DecodeOutcome::Tcp(s) => s,
            other => panic!("expected TCP, got {other:?}"),
        }
    }

    fn check_v4(s: &TcpSegment<'_>) {
        assert_eq!(s.src, IpAddr::from(A4));
        assert_eq!(s.dst, IpAddr::from(B4));
        check_tcp(s);
    }

    fn check_v6(s: &TcpSegment<'_>) {
        assert_eq!(s.src, IpAddr::from(A6));
        assert_eq!(s.dst, IpAddr::from(B6));
        check_tcp(s);
    }

    fn check_tcp(s: &TcpSegment<'_>) {
        assert_eq!((s.sport, s.dport), (25, 40123));
        assert_eq!((s.seq, s.ack), (0x0102_0304, 0xa0b0_c0d0));
        assert!(s.flags.psh() && s.flags.ack());
        assert!(!s.flags.syn() && !s.flags.fin() && !s.flags.rst());
        assert_eq!(s.payload, DATA);
        assert!(!s.truncated);
    }

    #[test]
    fn ethernet_ipv4_with_options() {
        for opt_words in [0, 1, 10] {
            let f = eth(ET_IPV4, &ipv4(6, opt_words, 0x4000, &data_seg()));
            check_v4(&tcp(LinkType::ETHERNET, &f));
        }
    }

    #[test]
    fn ethernet_ipv6() {
        check_v6(&tcp(
            LinkType::ETHERNET,
            &eth(ET_IPV6, &ipv6(6, &data_seg())),
        ));
    }

    #[test]
    fn tcp_flags() {
        let f = eth(ET_IPV4, &ipv4(6, 0, 0, &tcp_seg(TcpFlags::SYN, 0, b"")));
        let s = tcp(LinkType::ETHERNET, &f);
        assert!(s.flags.syn() && !s.flags.ack());
        let f = eth(
            ET_IPV4,
            &ipv4(6, 0, 0, &tcp_seg(TcpFlags::FIN | TcpFlags::RST, 0, b"")),
        );
        let s = tcp(LinkType::ETHERNET, &f);
        assert!(s.flags.fin() && s.flags.rst() && !s.flags.psh());
        assert_eq!(s.flags, TcpFlags(0x05));
    }

    #[test]
    fn ethernet_padding_and_fcs_never_reach_payload() {
        // A bare ACK is 54 bytes: Ethernet pads it to 60, plus a 4-byte FCS.
        let mut f = eth(ET_IPV4, &ipv4(6, 0, 0, &tcp_seg(TcpFlags::ACK, 0, b"")));
        assert_eq!(f.len(), 54);
        f.extend_from_slice(&[0xee; 6 + 4]);
        let s = tcp(LinkType::ETHERNET, &f);
        assert!(s.payload.is_empty());
        assert!(!s.truncated);
        // Same over IPv6 with a short payload and an FCS.
        let mut f = eth(ET_IPV6, &ipv6(6, &tcp_seg(TcpFlags::ACK, 0, b"x")));
        f.extend_from_slice(&[0xee; 4]);
        assert_eq!(tcp(LinkType::ETHERNET, &f).payload, b"x");
    }

    #[test]
    fn vlan_and_qinq() {
        let ip = ipv4(6, 0, 0, &data_seg());
        let (et, body) = vlan(ET_VLAN, 100, ET_IPV4, &ip);
        check_v4(&tcp(LinkType::ETHERNET, &eth(et, &body)));
        // 802.1ad S-tag over a C-tag, and the pre-standard 0x9100 outer tag.
        for outer in [ET_QINQ, ET_QINQ_OLD] {
            let (et1, inner) = vlan(ET_VLAN, 100, ET_IPV6, &ipv6(6, &data_seg()));
            let (et0, outer_body) = vlan(outer, 7, et1, &inner);
            check_v6(&tcp(LinkType::ETHERNET, &eth(et0, &outer_body)));
        }
        // Up to the bound of stacked tags decodes; one more is malformed.
        let stack = |depth: usize| {
            let (mut et, mut body) = (ET_IPV4, ip.clone());
            for _ in 0..depth {
                (et, body) = vlan(ET_VLAN, 1, et, &body);
            }
            eth(et, &body)
        };
        check_v4(&tcp(LinkType::ETHERNET, &stack(MAX_VLAN_TAGS)));
        assert!(matches!(
            decode(LinkType::ETHERNET, &stack(MAX_VLAN_TAGS + 1)),
            DecodeOutcome::Malformed
        ));
        // A tag cut short.
        let f = eth(ET_VLAN, &[0, 1]);
        assert!(matches!(
            decode(LinkType::ETHERNET, &f),
            DecodeOutcome::Malformed
        ));
    }

    #[test]
    fn linux_cooked_v1_and_v2() {
        let ip = ipv4(6, 0, 0, &data_seg());
        // SLL: packet type, ARPHRD, address length, 8 address bytes, protocol.
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        check_v4(&tcp(LinkType::LINUX_SLL, &sll));
        sll[14..16].copy_from_slice(&0x0806u16.to_be_bytes()); // ARP
        assert!(matches!(
            decode(LinkType::LINUX_SLL, &sll),
            DecodeOutcome::NotTcp
        ));
        // SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address.
        let mut sll2 = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend_from_slice(&ipv6(6, &data_seg()));
        check_v6(&tcp(LinkType::LINUX_SLL2, &sll2));
        assert!(matches!(
            decode(LinkType::LINUX_SLL, &sll[..15]),
            DecodeOutcome::Malformed
        ));
        assert!(matches!(
            decode(LinkType::LINUX_SLL2, &sll2[..19]),
            DecodeOutcome::Malformed
        ));
    }

    #[test]
    fn raw_ip_link_types() {
        let v4 = ipv4(6, 0, 0, &data_seg());
        let v6 = ipv6(6, &data_seg());
        for link in [LinkType::RAW, LinkType::RAW_BSD12, LinkType::RAW_BSD14] {
            check_v4(&tcp(link, &v4));
            check_v6(&tcp(link, &v6));
            assert!(matches!(decode(link, &[]), DecodeOutcome::Malformed));
            assert!(matches!(
                decode(link, &[0x50; 40]),
                DecodeOutcome::Malformed
            ));
        }
        check_v4(&tcp(LinkType::IPV4, &v4));
        check_v6(&tcp(LinkType::IPV6, &v6));
        assert!(matches!(
            decode(LinkType::IPV4, &v6),
            DecodeOutcome::Malformed
        ));
        assert!(matches!(
            decode(LinkType::IPV6, &v4),
            DecodeOutcome::Malformed
        ));
    }

    #[test]
    fn bsd_null_either_byte_order_and_loop() {
        let v4 = ipv4(6, 0, 0, &data_seg());
        let v6 = ipv6(6, &data_seg());
        let framed = |family: [u8; 4], ip: &[u8]| [&family[..], ip].concat();
        check_v4(&tcp(LinkType::NULL, &framed(2u32.to_le_bytes(), &v4)));
        check_v4(&tcp(LinkType::NULL, &framed(2u32.to_be_bytes(), &v4)));
        for af6 in [24u32, 28, 30] {
            check_v6(&tcp(LinkType::NULL, &framed(af6.to_le_bytes(), &v6)));
            check_v6(&tcp(LinkType::NULL, &framed(af6.to_be_bytes(), &v6)));
            check_v6(&tcp(LinkType::LOOP, &framed(af6.to_be_bytes(), &v6)));
        }
        check_v4(&tcp(LinkType::LOOP, &framed(2u32.to_be_bytes(), &v4)));
        // LOOP is always big-endian: a little-endian 2 is some other family.
        let f = framed(2u32.to_le_bytes(), &v4);
        assert!(matches!(decode(LinkType::LOOP, &f), DecodeOutcome::NotTcp));
        let f = framed(7u32.to_le_bytes(), &v4);
        assert!(matches!(decode(LinkType::NULL, &f), DecodeOutcome::NotTcp));
        assert!(matches!(
            decode(LinkType::NULL, &[2, 0, 0]),
            DecodeOutcome::Malformed
        ));
        assert!(matches!(
            decode(LinkType::LOOP, &[0, 0]),
            DecodeOutcome::Malformed
        ));
    }

    #[test]
    fn ipv6_extension_headers() {
        let seg = data_seg();
        // Hop-by-hop, routing, destination options, AH, then TCP.
        let chain = ext(
            IPPROTO_ROUTING,
            0,
            &ext(
                IPPROTO_DSTOPTS,
                2,
                &ext(IPPROTO_AH, 1, &ah(IPPROTO_TCP, &seg)),
            ),
        );
        check_v6(&tcp(LinkType::RAW, &ipv6(IPPROTO_HOPOPTS, &chain)));
        // Atomic fragment (offset 0, no M flag; RFC 6946) is the whole packet.
        let p = ipv6(IPPROTO_FRAGMENT, &frag_hdr(IPPROTO_TCP, 0, false, &seg));
        check_v6(&tcp(LinkType::RAW, &p));
        // Real fragments, first or not.
        for (off, more) in [(0, true), (185, true), (185, false)] {
            let p = ipv6(IPPROTO_FRAGMENT, &frag_hdr(IPPROTO_TCP, off, more, &seg));
            assert!(matches!(
                decode(LinkType::RAW, &p),
                DecodeOutcome::IpFragment
            ));
            let p = ipv6(
                IPPROTO_FRAGMENT,
                &frag_hdr(IPPROTO_DSTOPTS, off, more, &ext(6, 0, &seg)),
            );
            assert!(matches!(
                decode(LinkType::RAW, &p),
                DecodeOutcome::IpFragment
            ));
            let p = ipv6(IPPROTO_FRAGMENT, &frag_hdr(17, off, more, &seg));
            assert!(matches!(decode(LinkType::RAW, &p), DecodeOutcome::NotTcp));
        }
        // ESP, No Next Header, UDP: not TCP.
        for next in [50, 59, 17, 58] {
            let p = ipv6(IPPROTO_HOPOPTS, &ext(next, 0, &seg));
            assert!(matches!(decode(LinkType::RAW, &p), DecodeOutcome::NotTcp));
        }
        // An extension header claiming more than the packet holds.
        let mut bad = ext(IPPROTO_TCP, 0, &seg);
        bad[1] = 200;
        let p = ipv6(IPPROTO_DSTOPTS, &bad);
        assert!(matches!(
            decode(LinkType::RAW, &p),
            DecodeOutcome::Malformed
        ));
        // A chain longer than the bound.
        let mut body = seg.clone();
        for _ in 0..=MAX_IPV6_EXT_HEADERS {
            body = ext(if body == seg { 6 } else { IPPROTO_DSTOPTS }, 0, &body);
        }
        let p = ipv6(IPPROTO_DSTOPTS, &body);
        assert!(matches!(
            decode(LinkType::RAW, &p),
            DecodeOutcome::Malformed
        ));
    }

    #[test]
    fn ipv4_fragments_and_ah() {
        let seg = data_seg();
        // DF alone is not a fragment.
        check_v4(&tcp(LinkType::RAW, &ipv4(6, 0, 0x4000, &seg)));
        for frag in [0x2000, 0x0001, 0x00b9, 0x1fff] {
            let p = ipv4(6, 0, frag, &seg);
            assert!(matches!(
                decode(LinkType::RAW, &p),
                DecodeOutcome::IpFragment
            ));
            let p = ipv4(17, 0, frag, &seg);
            assert!(matches!(decode(LinkType::RAW, &p), DecodeOutcome::NotTcp));
        }
        check_v4(&tcp(LinkType::RAW, &ipv4(IPPROTO_AH, 0, 0, &ah(6, &seg))));
        // IPv6 extension header numbers mean nothing special in IPv4.
        let p = ipv4(IPPROTO_DSTOPTS, 0, 0, &ext(6, 0, &seg));
        assert!(matches!(decode(LinkType::RAW, &p), DecodeOutcome::NotTcp));
    }

    #[test]
    fn not_tcp_and_unsupported() {
        let udp = eth(ET_IPV4, &ipv4(17, 0, 0, &[0; 8]));
        assert!(matches!(
            decode(LinkType::ETHERNET, &udp),
            DecodeOutcome::NotTcp
        ));
        let arp = eth(0x0806, &[0; 28]);
        assert!(matches!(
            decode(LinkType::ETHERNET, &arp),
            DecodeOutcome::NotTcp
        ));
        let llc = eth(0x0026, &[0; 38]); // 802.3 length field
        assert!(matches!(
            decode(LinkType::ETHERNET, &llc),
            DecodeOutcome::NotTcp
        ));
        let wifi = LinkType(105);
        assert!(matches!(decode(wifi, &udp), DecodeOutcome::UnsupportedLink));
    }

    #[test]
    fn snaplen_cut_payload_is_flagged_truncated() {
        let seg = tcp_seg(TcpFlags::ACK, 3, &[b'x'; 1000]);
        for (ip, hdrs) in [(ipv4(6, 2, 0, &seg), 28 + 32), (ipv6(6, &seg), 40 + 32)] {
            let f = eth(if hdrs == 60 { ET_IPV4 } else { ET_IPV6 }, &ip);
            let cut = &f[..14 + hdrs + 10];
            let s = tcp(LinkType::ETHERNET, cut);
            assert!(s.truncated);
            assert_eq!(s.payload, &[b'x'; 10]);
            // Cut exactly after the TCP header: no payload, still truncated.
            let s = tcp(LinkType::ETHERNET, &f[..14 + hdrs]);
            assert!(s.truncated && s.payload.is_empty());
            // Cut inside the TCP header or options: nothing usable.
            for end in 14..14 + hdrs {
                assert!(
                    matches!(
                        decode(LinkType::ETHERNET, &f[..end]),
                        DecodeOutcome::Malformed
                    ),
                    "cut at {end}"
                );
            }
        }
    }

    #[test]
    fn offload_zero_length_takes_captured_length() {
        // Segmentation offload: the capture on the sender shows IP length 0 (IPv4) or payload
        // length 0 (IPv6) for the oversized segment.
        let mut p = ipv4(6, 0, 0, &data_seg());
        p[2..4].copy_from_slice(&[0, 0]);
        check_v4(&tcp(LinkType::RAW, &p));
        let mut p = ipv6(6, &data_seg());
        p[4..6].copy_from_slice(&[0, 0]);
        check_v6(&tcp(LinkType::RAW, &p));
    }

    #[test]
    fn malformed_headers() {
        let seg = data_seg();
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut p = ipv4(6, 0, 0, &seg);
        p[0] = 0x44; // IHL 4
        cases.push(("ihl < 5", p));
        let mut p = ipv4(6, 0, 0, &seg);
        p[0] = 0x4f; // IHL 15: a 60-byte header, but the total length says 40
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        cases.push(("total < ihl", p));
        let mut p = ipv4(6, 0, 0, &seg);
        p[2..4].copy_from_slice(&30u16.to_be_bytes());
        cases.push(("total too short for TCP", p));
        let mut s = seg.clone();
        s[12] = 4 << 4;
        cases.push(("data offset 4", ipv4(6, 0, 0, &s)));
        let mut s = tcp_seg(TcpFlags::ACK, 0, b"");
        s[12] = 15 << 4;
        cases.push(("data offset past segment", ipv4(6, 0, 0, &s)));
        cases.push(("short tcp", ipv4(6, 0, 0, &seg[..19])));
        cases.push(("short ipv4", ipv4(6, 0, 0, &seg)[..19].to_vec()));
        cases.push(("short ipv6", ipv6(6, &seg)[..39].to_vec()));
        let mut s = seg.clone();
        s[12] = 0;
        cases.push(("ipv6 data offset 0", ipv6(6, &s)));
        for (what, p) in cases {
            assert!(
                matches!(decode(LinkType::RAW, &p), DecodeOutcome::Malformed),
                "{what}: {:?}",
                decode(LinkType::RAW, &p)
            );
        }
        assert!(matches!(
            decode(LinkType::ETHERNET, &[0; 13]),
            DecodeOutcome::Malformed
        ));
    }

    /// Cheap deterministic PRNG (xorshift64).
    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn any_bytes_never_panic() {
        let links = [
            LinkType::NULL,
            LinkType::ETHERNET,
            LinkType::RAW,
            LinkType::LOOP,
            LinkType::LINUX_SLL,
            LinkType::IPV4,
            LinkType::IPV6,
            LinkType::LINUX_SLL2,
            LinkType::RAW_BSD12,
            LinkType::RAW_BSD14,
        ];
        let seg = data_seg();
        let chain = ext(
            IPPROTO_ROUTING,
            0,
            &frag_hdr(IPPROTO_AH, 0, false, &ah(6, &seg)),
        );
        let (et, body) = vlan(
            ET_QINQ,
            1,
            ET_IPV6,
            &ipv6(IPPROTO_HOPOPTS, &ext(43, 0, &chain)),
        );
        let seeds = [
            eth(ET_IPV4, &ipv4(6, 2, 0, &seg)),
            eth(et, &body),
            ipv6(IPPROTO_HOPOPTS, &ext(43, 0, &chain)),
        ];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            let base = &seeds[(xorshift(&mut rng) % 3) as usize];
            let mut p = base.clone();
            for _ in 0..xorshift(&mut rng) % 4 {
                let i = (xorshift(&mut rng) as usize) % p.len();
                p[i] = xorshift(&mut rng) as u8;
            }
            let cut = (xorshift(&mut rng) as usize) % (p.len() + 1);
            let link = links[(xorshift(&mut rng) as usize) % links.len()];
            if let DecodeOutcome::Tcp(s) = decode(link, &p[..cut]) {
                assert!(s.payload.len() <= cut);
            }
        }
        // Pure noise, all lengths.
        for len in 0..120 {
            for _ in 0..200 {
                let p: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
                for link in links {
                    let _ = decode(link, &p);
                }
            }
        }
    }

    // ---- real files ----------------------------------------------------------------------

    /// Decodes every packet of a file; (TCP segments, captured payload bytes, truncated).
    fn decode_file(path: &std::path::Path) -> (usize, u64, usize) {
        let mut rd = super::super::FileReader::open(path).unwrap_or_else(|e| panic!("{e}"));
        let (mut n, mut bytes, mut cut) = (0, 0, 0);
        while let Some(p) = rd.next_packet().unwrap() {
            if let DecodeOutcome::Tcp(s) = decode(p.link, p.data) {
                n += 1;
                bytes += s.payload.len() as u64;
                cut += usize::from(s.truncated);
            }
        }
        (n, bytes, cut)
    }

    /// (file, TCP segments, TCP payload bytes). From
    /// `tshark -r FILE -Y 'tcp && !icmp && !icmpv6' -T fields -e tcp.len` (count of lines,
    /// sum), TShark 4.0.17. The ICMP exclusion matters for zeek__smtp.pcap: its four ICMP
    /// "fragmentation needed" messages quote a TCP header, which plain `-Y tcp` counts (122)
    /// and we, rightly, do not. None of these files has IP fragments or cut frames.
    const EXTERNAL_TCP: &[(&str, usize, u64)] = &[
        ("arkime__smtp-decrypted.pcap", 110, 29004),
        ("arkime__smtp-starttls.pcap", 36, 6011),
        ("arkime__ssl-selfsign.pcap", 20, 6715),
        ("certgrep__sess_smtps.pcapng", 20, 4128),
        ("ndpi__emotet.pcap", 169, 89856),
        ("ndpi__smtp-starttls.pcap", 69, 9842),
        ("ndpi__smtps.pcapng", 4, 696),
        (
            "ndpi__tls_client_certificate_with_missing_server_one.pcapng",
            17,
            4380,
        ),
        ("suricata-verify__smtp-startssl.pcap", 38, 4542),
        ("suricata-verify__smtp-tls-protodetect.pcap", 7, 206),
        ("suricata-verify__tls-client-auth.pcap", 22, 7800),
        ("wireshark-notes__smtp-ssl.pcapng", 38, 4632),
        ("wireshark-notes__smtp2525-ssl.pcapng", 37, 4759),
        ("zeek__certificate-request-failed.pcap", 12, 4091),
        ("zeek__client-certificate.pcap", 31, 13796),
        ("zeek__pop3-starttls.pcap", 33, 3441),
        ("zeek__smtp-starttls.pcap", 37, 5627),
        ("zeek__smtp.pcap", 118, 29126),
    ];

    #[test]
    fn external_captures_tcp_counts_match_tshark() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps-external");
        if !dir.is_dir() {
            eprintln!("skipping: {} not found", dir.display());
            return;
        }
        for &(name, segs, bytes) in EXTERNAL_TCP {
            let got = decode_file(&dir.join(name));
            assert_eq!(got, (segs, bytes, 0), "{name}");
        }
    }

    #[test]
    fn fixtures_tcp_counts_match_tshark() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/capture/testdata");
        // From testdata/make.sh's tshark output. For the snaplen-80 file the payload bytes are
        // what was captured: sum of min(frame.cap_len - 14, ip.len) - ip.hdr_len - tcp.hdr_len;
        // the 17 cut segments are `tshark -Y 'tcp && frame.cap_len < frame.len'`.
        for (name, want) in [
            ("merged-ether-null.pcapng", (57, 12342, 0)),
            ("smtp-starttls.nsec.pcap", (37, 5627, 0)),
            ("smtp-starttls.snap80.pcap", (37, 248, 17)),
        ] {
            assert_eq!(decode_file(&dir.join(name)), want, "{name}");
        }
    }
}
