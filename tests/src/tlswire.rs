//! What a reference capture shows of STARTTLS sessions, read independently of mxcert: the TCP
//! connections of a classic pcap (Ethernet, IPv4), each direction's bytes reassembled, and the
//! TLS records after STARTTLS with the handshake messages that travelled in cleartext. The
//! acceptance tests of issue #8 use it to show that TLS 1.3 left no Certificate message (and no
//! certificate byte) on the wire, so the chains mxcert reports came through the library.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use anyhow::{bail, Result};

/// One TCP connection: `client` sent the SYN.
#[derive(Debug, Default)]
pub struct Connection {
    pub client: Option<SocketAddrV4>,
    pub server: Option<SocketAddrV4>,
    /// Bytes each way, reassembled by sequence number (retransmissions dropped), up to the
    /// first byte missing from the capture (a loaded machine's tcpdump drops packets of a fast
    /// transfer: "dropped by kernel").
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
    /// Bytes missing from the capture, both directions (everything after the first gap is
    /// left out of the streams above).
    pub gaps: usize,
}

/// The TLS view of one direction of a STARTTLS session.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TlsDirection {
    /// Handshake message types sent in cleartext (record type 22), in order (RFC 8446 §4:
    /// 1 ClientHello, 2 ServerHello, 11 Certificate, ...).
    pub clear_handshakes: Vec<u8>,
    /// Records of type 23 (application_data: in TLS 1.3 every encrypted record, RFC 8446 §5.2).
    pub encrypted_records: usize,
    /// The version a ServerHello selected (supported_versions extension, RFC 8446 §4.2.1;
    /// else its legacy_version), when this direction carried one.
    pub selected_version: Option<u16>,
    /// The ServerHello carried pre_shared_key (type 41): the server accepted a PSK, i.e. a
    /// TLS 1.3 resumption (RFC 8446 §4.2.11).
    pub psk_selected: bool,
}

/// The TCP connections of a classic pcap, keyed by (client, server) in order of their SYN.
pub fn connections(file: &Path) -> Result<Vec<Connection>> {
    let (link, frames) = crate::mta::pcap_frames(file)?;
    if link != 1 {
        bail!("{}: link type {link} is not Ethernet", file.display());
    }
    // Per direction (src, dst): initial sequence number and segments by sequence number.
    type Dir = (SocketAddrV4, SocketAddrV4);
    let mut isn: BTreeMap<Dir, u32> = BTreeMap::new();
    let mut segs: BTreeMap<Dir, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    let mut order: Vec<Dir> = Vec::new();
    for (_, frame) in &frames {
        let Some((src, dst, seq, flags, payload)) = tcp_of(frame) else {
            continue;
        };
        let syn = flags & 0x02 != 0;
        if syn {
            isn.insert((src, dst), seq);
            if flags & 0x10 == 0 {
                order.push((src, dst));
            }
        }
        if !payload.is_empty() {
            segs.entry((src, dst))
                .or_default()
                .entry(seq)
                .or_insert_with(|| payload.to_vec());
        }
    }
    let mut out = Vec::new();
    for (client, server) in order {
        let mut c = Connection {
            client: Some(client),
            server: Some(server),
            ..Connection::default()
        };
        for (dir, buf) in [
            ((client, server), &mut c.to_server),
            ((server, client), &mut c.to_client),
        ] {
            let (Some(&first), Some(s)) = (isn.get(&dir), segs.get(&dir)) else {
                continue;
            };
            // Offsets from the first payload byte (the captures are far below 4 GiB).
            let base = first.wrapping_add(1);
            let mut by_offset: Vec<(u32, &Vec<u8>)> = s
                .iter()
                .map(|(seq, p)| (seq.wrapping_sub(base), p))
                .collect();
            by_offset.sort_by_key(|(off, _)| *off);
            let mut cursor = 0usize;
            let mut gap = false;
            for (off, p) in by_offset {
                let off = off as usize;
                if off > cursor {
                    c.gaps += off - cursor;
                    gap = true;
                } else if gap {
                    // Left out after the first gap.
                } else if off + p.len() > cursor {
                    buf.extend_from_slice(&p[cursor - off..]);
                } else {
                    continue;
                }
                cursor = off + p.len();
            }
        }
        out.push(c);
    }
    Ok(out)
}

/// (source, destination, sequence number, flags, payload) of an Ethernet/IPv4/TCP frame.
fn tcp_of(f: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, u32, u8, &[u8])> {
    if f.len() < 14 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &f[14..];
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let tcp = ip.get(ihl..total)?;
    if tcp.len() < 20 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let off = usize::from(tcp[12] >> 4) * 4;
    Some((
        SocketAddrV4::new(src, sport),
        SocketAddrV4::new(dst, dport),
        seq,
        tcp[13],
        tcp.get(off..)?,
    ))
}

/// The TLS records of one direction of a STARTTLS session: they start with the first
/// handshake record (type 22, version 3.x) that begins a line, i.e. right after the client's
/// `STARTTLS` command or the server's `220` reply to it (RFC 3207 §4). `None` when the session
/// never started TLS.
pub fn tls_direction(bytes: &[u8]) -> Option<TlsDirection> {
    let start = (0..bytes.len().saturating_sub(2))
        .find(|&i| bytes[i] == 22 && bytes[i + 1] == 3 && i > 0 && bytes[i - 1] == b'\n')?;
    let mut d = TlsDirection::default();
    let mut handshake = Vec::new();
    let mut i = start;
    while i + 5 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[i + 3], bytes[i + 4]]));
        let body = &bytes[i + 5..(i + 5 + len).min(bytes.len())];
        match bytes[i] {
            22 => handshake.extend_from_slice(body),
            23 => d.encrypted_records += 1,
            _ => {}
        }
        i += 5 + len;
    }
    // Handshake messages: type (1 byte), length (3 bytes), body (RFC 8446 §4).
    let mut j = 0;
    while j + 4 <= handshake.len() {
        let t = handshake[j];
        let len = usize::from(handshake[j + 1]) << 16
            | usize::from(handshake[j + 2]) << 8
            | usize::from(handshake[j + 3]);
        let body = &handshake[j + 4..(j + 4 + len).min(handshake.len())];
        d.clear_handshakes.push(t);
        if t == 2 {
            let exts = server_hello_extensions(body);
            d.selected_version = exts.as_ref().map(|(legacy, e)| {
                e.iter()
                    .find(|(t, v)| *t == 43 && v.len() == 2)
                    .map_or(*legacy, |(_, v)| u16::from_be_bytes([v[0], v[1]]))
            });
            d.psk_selected = exts.is_some_and(|(_, e)| e.iter().any(|(t, _)| *t == 41));
        }
        j += 4 + len;
    }
    Some(d)
}

/// An extension: type and data.
type Extension<'a> = (u16, &'a [u8]);

/// A ServerHello's legacy_version and extensions: legacy_version, random, session id, cipher
/// suite, compression, extensions (RFC 8446 §4.1.3).
fn server_hello_extensions(b: &[u8]) -> Option<(u16, Vec<Extension<'_>>)> {
    let legacy = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    let sid = usize::from(*b.get(34)?);
    let mut i = 35 + sid + 3;
    let ext_end = i + 2 + usize::from(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
    let ext_end = ext_end.min(b.len());
    i += 2;
    let mut exts = Vec::new();
    while i + 4 <= ext_end {
        let t = u16::from_be_bytes([b[i], b[i + 1]]);
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        exts.push((t, b.get(i + 4..(i + 4 + len).min(ext_end))?));
        i += 4 + len;
    }
    Some((legacy, exts))
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pcaps/resumed_tls13: a full TLS 1.3 handshake, then one resuming it with a PSK.
    #[test]
    fn the_fixture_resumption_is_told_from_its_full_handshake() {
        let pcap = crate::repo_root().join("pcaps/resumed_tls13.pcap");
        let conns = connections(&pcap).unwrap();
        assert_eq!(conns.len(), 2, "{conns:?}");
        let servers: Vec<TlsDirection> = conns
            .iter()
            .map(|c| tls_direction(&c.to_client).expect("STARTTLS"))
            .collect();
        assert!(servers.iter().all(|d| d.selected_version == Some(0x0304)));
        assert!(!servers[0].psk_selected, "{:?}", servers[0]);
        assert!(servers[1].psk_selected, "{:?}", servers[1]);
    }
}
