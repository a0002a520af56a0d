//! Pure-Rust reader for capture files: classic pcap and pcapng, no libpcap.
//!
//! Formats, as specified by the IETF OPSAWG drafts that document what libpcap and Wireshark
//! write:
//! - classic pcap: draft-ietf-opsawg-pcap (File Header §4, Packet Record §5), also pcap-savefile(5);
//! - pcapng: draft-ietf-opsawg-pcapng (General Block Structure §3.1, SHB §4.1, IDB §4.2,
//!   EPB §4.3, SPB §4.4, the obsolete Packet Block in Appendix A).
//!
//! All input is read through one reusable buffer ([`INITIAL_BUF`], grown for a single large
//! record up to [`MAX_RECORD`]) refilled from the underlying [`Read`]; [`Packet::data`] borrows
//! that buffer, so the per-packet path neither allocates nor copies. The only per-packet copy
//! is the `memmove` of a partial record to the front of the buffer when a refill is due, at most
//! once per buffer's worth of input.
//!
//! Anything the file says is checked against the bytes actually present and against the bounds
//! here before it is used: a damaged file yields [`CaptureError::Truncated`] or
//! [`CaptureError::Corrupt`], never a panic or an unbounded allocation.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::{LinkType, Nanos, Packet};

/// Size of the read buffer in the common case. Large enough that the refill `read` system call
/// and the tail `memmove` are amortised over hundreds of packets.
pub const INITIAL_BUF: usize = 1 << 20;

/// Largest single record (a pcap record with its header, or a whole pcapng block that we parse)
/// the buffer may grow to hold. Real packets are at most 256 KiB (libpcap's MAXIMUM_SNAPLEN),
/// so anything past this bound is a damaged length field, not a packet.
pub const MAX_RECORD: usize = 16 << 20;

/// Bound on interfaces per pcapng section. The obsolete Packet Block addresses interfaces with
/// 16 bits, and no capture host has more; an IDB past this is a damaged file.
pub const MAX_INTERFACES: usize = 1 << 16;

/// Classic pcap file header length (draft-ietf-opsawg-pcap §4).
const PCAP_HEADER_LEN: usize = 24;
/// Classic pcap per-packet record header length (draft-ietf-opsawg-pcap §5).
const PCAP_RECORD_LEN: usize = 16;

/// pcapng block types (draft-ietf-opsawg-pcapng §11.1, "Block Type Codes").
const BT_SHB: u32 = 0x0A0D_0D0A;
const BT_IDB: u32 = 0x0000_0001;
const BT_PB: u32 = 0x0000_0002;
const BT_SPB: u32 = 0x0000_0003;
const BT_EPB: u32 = 0x0000_0006;

/// Block Type + Block Total Length at the start of every pcapng block, the repeated length at
/// its end (§3.1).
const NG_HEAD: usize = 8;
const NG_TRAIL: usize = 4;
/// The smallest well-formed Section Header Block: head, byte-order magic, version, section
/// length, trailer (§4.1).
const NG_SHB_MIN: usize = 28;

/// The IDB options we interpret (§4.2): timestamp resolution and offset.
const OPT_ENDOFOPT: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// Why reading a capture file stopped. Malformed *packets* are not errors (the decoder reports
/// them as data); these are failures of the file itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be opened (missing, unreadable).
    #[error("cannot open capture {path}: {source}; check the path and its permissions")]
    Open { path: String, source: io::Error },

    /// The first four bytes are none of the pcap or pcapng magic numbers. `got` is how many of
    /// the four bytes the file had (0 for an empty file); `magic` is zero-padded past that.
    #[error(
        "{path} is not a pcap or pcapng capture ({}); write captures with tcpdump -w or tshark -w",
        describe_magic(.magic, *.got)
    )]
    NotACapture {
        path: String,
        magic: [u8; 4],
        got: usize,
    },

    /// The file ends inside a header or record, as when the writer was killed mid-write. Every
    /// complete packet before `offset` has been returned; the caller should report this and
    /// keep what it read.
    #[error(
        "{path} ends inside a record at byte {offset} (the capture was cut short, e.g. the \
         writer was killed); the packets before it were read"
    )]
    Truncated { path: String, offset: u64 },

    /// A length or header field is impossible (over a bound, inconsistent with its block), so
    /// the rest of the file cannot be framed.
    #[error(
        "{path} is corrupt at byte {offset}: {what}; the packets before it were read \
         (pcapfix may repair the file)"
    )]
    Corrupt {
        path: String,
        offset: u64,
        what: &'static str,
    },

    /// The underlying reader failed (disk error, broken pipe).
    #[error("reading capture {path} failed: {source}")]
    Io { path: String, source: io::Error },
}

fn describe_magic(magic: &[u8; 4], got: usize) -> String {
    if got == 0 {
        return "the file is empty".to_owned();
    }
    let mut s = if got < 4 {
        format!(
            "it is only {got} byte{} long:",
            if got == 1 { "" } else { "s" }
        )
    } else {
        "starts with".to_owned()
    };
    for b in &magic[..got.min(4)] {
        let _ = write!(s, " {b:02x}");
    }
    s
}

/// Counters over the whole file, for the run summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReaderStats {
    /// Packets returned by [`FileReader::next_packet`].
    pub packets: u64,
    /// pcapng blocks of types we do not interpret (name resolution, statistics, decryption
    /// secrets, custom, ...), skipped whole.
    pub skipped_blocks: u64,
    /// pcapng Section Header Blocks seen.
    pub sections: u64,
    /// pcapng Interface Description Blocks seen, over all sections.
    pub interfaces: u64,
    /// pcapng packets naming an interface no IDB of their section described (or, for a Simple
    /// Packet Block, a section without an IDB): there is no link type to decode them with, so
    /// they are skipped and counted here.
    pub orphan_packets: u64,
    /// Largest record held in the buffer at once, in bytes; [`MAX_RECORD`] is the bound.
    pub largest_record: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    #[inline(always)]
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        match self {
            Endian::Little => u16::from_le_bytes(v),
            Endian::Big => u16::from_be_bytes(v),
        }
    }

    #[inline(always)]
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self {
            Endian::Little => u32::from_le_bytes(v),
            Endian::Big => u32::from_be_bytes(v),
        }
    }

    fn i64(self, b: &[u8], at: usize) -> i64 {
        let hi_lo = (self.u32(b, at), self.u32(b, at + 4));
        match self {
            Endian::Little => ((u64::from(hi_lo.1) << 32) | u64::from(hi_lo.0)) as i64,
            Endian::Big => ((u64::from(hi_lo.0) << 32) | u64::from(hi_lo.1)) as i64,
        }
    }
}

/// How a pcapng interface's timestamp units become nanoseconds (`if_tsresol`, §4.2: most
/// significant bit clear → 10^-n seconds, set → 2^-n seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsScale {
    /// Units coarser than or equal to a nanosecond: multiply.
    Mul(u64),
    /// Decimal units finer than a nanosecond: divide.
    Div(u128),
    /// Binary units 2^-n s: `units * 1e9 >> n`.
    Pow2(u32),
}

impl TsScale {
    fn from_tsresol(r: u8) -> TsScale {
        if r & 0x80 == 0 {
            let p = u32::from(r);
            if p <= 9 {
                TsScale::Mul(10u64.pow(9 - p))
            } else {
                // 10^38 is the largest power of ten in a u128; a finer unit makes every
                // 64-bit timestamp round to 0 ns anyway.
                TsScale::Div(10u128.checked_pow(p - 9).unwrap_or(u128::MAX))
            }
        } else {
            TsScale::Pow2(u32::from(r & 0x7f))
        }
    }

    #[inline]
    fn to_nanos(self, units: u64) -> i128 {
        match self {
            // u64 * 1e9 < 2^94: no overflow in i128.
            TsScale::Mul(m) => i128::from(units) * i128::from(m),
            TsScale::Div(d) => (u128::from(units) / d) as i128,
            TsScale::Pow2(n) => ((u128::from(units) * 1_000_000_000) >> n) as i128,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    scale: TsScale,
    /// `if_tsoffset` (seconds, signed) in nanoseconds.
    offset_ns: i128,
}

impl Interface {
    #[inline]
    fn ts(&self, hi: u32, lo: u32) -> Nanos {
        let units = (u64::from(hi) << 32) | u64::from(lo);
        let ns = self.scale.to_nanos(units) + self.offset_ns;
        ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as Nanos
    }
}

#[derive(Debug)]
enum Format {
    Pcap {
        endian: Endian,
        /// 1000 for microsecond files, 1 for nanosecond files.
        frac_ns: i64,
        link: LinkType,
    },
    PcapNg {
        endian: Endian,
        interfaces: Vec<Interface>,
        /// Timestamp of the last EPB/PB, given to Simple Packet Blocks (see there).
        last_ts: Nanos,
    },
}

/// Where the next packet sits in the buffer; turned into a [`Packet`] only at the very end of
/// [`FileReader::next_packet`] so the buffer can be refilled freely while we look for it.
struct Loc {
    ts: Nanos,
    link: LinkType,
    at: usize,
    len: usize,
    orig_len: u32,
}

/// Streaming reader of one pcap or pcapng file.
pub struct FileReader {
    inner: Box<dyn Read + Send>,
    name: String,
    /// `buf[start..end]` holds bytes read but not yet consumed; `buf.len()` is the capacity
    /// (kept initialised so reads need no `unsafe`).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The underlying reader returned 0: never call it again (stdin may block otherwise).
    eof: bool,
    /// A clean end or an error was returned; later calls return `Ok(None)`.
    done: bool,
    read_total: u64,
    total_len: Option<u64>,
    format: Format,
    stats: ReaderStats,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("name", &self.name)
            .field("format", &self.format())
            .field("bytes_read", &self.read_total)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FileReader {
    /// Opens `path` and sniffs the format by its magic number. A file that is neither pcap nor
    /// pcapng gives [`CaptureError::NotACapture`].
    pub fn open(path: &Path) -> Result<FileReader, CaptureError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: name.clone(),
            source,
        })?;
        // A failing metadata call only costs the progress bar its total.
        let len = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        FileReader::from_reader(Box::new(file), &name, len)
    }

    /// Same as [`FileReader::open`] over any reader (tests, stdin). `name` is used in error
    /// messages; `total_len` is reported by [`FileReader::total_len`] for progress display.
    pub fn from_reader(
        r: Box<dyn Read + Send>,
        name: &str,
        total_len: Option<u64>,
    ) -> Result<FileReader, CaptureError> {
        let mut rd = FileReader {
            inner: r,
            name: name.to_owned(),
            buf: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            eof: false,
            done: false,
            read_total: 0,
            total_len,
            format: Format::Pcap {
                endian: Endian::Little,
                frac_ns: 1000,
                link: LinkType::ETHERNET,
            },
            stats: ReaderStats::default(),
        };
        if !rd.fill(4)? {
            let got = rd.avail();
            let mut magic = [0u8; 4];
            magic[..got].copy_from_slice(&rd.buf[rd.start..rd.end]);
            return Err(CaptureError::NotACapture {
                path: rd.name,
                magic,
                got,
            });
        }
        let magic = [rd.buf[0], rd.buf[1], rd.buf[2], rd.buf[3]];
        // Magic numbers: draft-ietf-opsawg-pcap §4 (0xA1B2C3D4 microseconds, 0xA1B23C4D
        // nanoseconds, written in the writer's byte order), pcapng §4.1 (the SHB block type
        // 0x0A0D0D0A reads the same in both byte orders; the byte-order magic follows).
        let (endian, frac_ns) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (Endian::Little, 1000),
            [0xa1, 0xb2, 0xc3, 0xd4] => (Endian::Big, 1000),
            [0x4d, 0x3c, 0xb2, 0xa1] => (Endian::Little, 1),
            [0xa1, 0xb2, 0x3c, 0x4d] => (Endian::Big, 1),
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                rd.format = Format::PcapNg {
                    endian: Endian::Little,
                    interfaces: Vec::new(),
                    last_ts: 0,
                };
                // Read the first SHB now so a file that only looks like pcapng fails at open.
                if !rd.fill(NG_HEAD + 4)? {
                    return Err(rd.truncated());
                }
                rd.pcapng_block()?;
                return Ok(rd);
            }
            _ => {
                return Err(CaptureError::NotACapture {
                    path: rd.name,
                    magic,
                    got: 4,
                })
            }
        };
        if !rd.fill(PCAP_HEADER_LEN)? {
            return Err(rd.truncated());
        }
        // The link-type field carries the FCS length and flag in its upper bits
        // (draft-ietf-opsawg-pcap §4, "LinkType and additional information"; libpcap's
        // LT_LINKTYPE() keeps the low 16 bits). Ethernet FCS bytes are harmless here: the
        // decoder trims to the IP total length.
        let link = LinkType(endian.u32(&rd.buf, 20) & 0xFFFF);
        rd.start += PCAP_HEADER_LEN;
        rd.format = Format::Pcap {
            endian,
            frac_ns,
            link,
        };
        Ok(rd)
    }

    /// Next packet, borrowing the reader's buffer until the next call. `Ok(None)` at a clean end
    /// of file. After an error the reader is fused: later calls return `Ok(None)`.
    #[inline]
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        let loc = match self.next_loc() {
            Ok(Some(loc)) => loc,
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        self.stats.packets += 1;
        Ok(Some(Packet {
            ts: loc.ts,
            link: loc.link,
            data: &self.buf[loc.at..loc.at + loc.len],
            orig_len: loc.orig_len,
        }))
    }

    /// Bytes taken from the underlying reader so far (runs ahead of the packets returned by at
    /// most one buffer), for a progress bar.
    pub fn bytes_read(&self) -> u64 {
        self.read_total
    }

    /// The file size, when known.
    pub fn total_len(&self) -> Option<u64> {
        self.total_len
    }

    /// `"pcap"` or `"pcapng"`.
    pub fn format(&self) -> &'static str {
        match self.format {
            Format::Pcap { .. } => "pcap",
            Format::PcapNg { .. } => "pcapng",
        }
    }

    pub fn stats(&self) -> &ReaderStats {
        &self.stats
    }

    #[inline]
    fn next_loc(&mut self) -> Result<Option<Loc>, CaptureError> {
        match self.format {
            Format::Pcap {
                endian,
                frac_ns,
                link,
            } => self.pcap_record(endian, frac_ns, link),
            Format::PcapNg { .. } => loop {
                if !self.fill(NG_HEAD + 4)? {
                    if self.avail() == 0 {
                        return Ok(None);
                    }
                    return Err(self.truncated());
                }
                // Each block consumes at least 12 bytes, so this loop ends with the file.
                if let Some(loc) = self.pcapng_block()? {
                    return Ok(Some(loc));
                }
            },
        }
    }

    /// One classic pcap record (draft-ietf-opsawg-pcap §5).
    #[inline]
    fn pcap_record(
        &mut self,
        e: Endian,
        frac_ns: i64,
        link: LinkType,
    ) -> Result<Option<Loc>, CaptureError> {
        if !self.fill(PCAP_RECORD_LEN)? {
            if self.avail() == 0 {
                return Ok(None);
            }
            return Err(self.truncated());
        }
        let h = &self.buf[self.start..self.start + PCAP_RECORD_LEN];
        let sec = e.u32(h, 0);
        let frac = e.u32(h, 4);
        let caplen = e.u32(h, 8) as usize;
        let orig_len = e.u32(h, 12);
        // Captured length may legitimately exceed orig_len in some writers' files; only the
        // buffer bound matters for framing.
        if caplen > MAX_RECORD - PCAP_RECORD_LEN {
            return Err(self.corrupt("record length over the 16 MiB bound"));
        }
        let total = PCAP_RECORD_LEN + caplen;
        if !self.fill(total)? {
            return Err(self.truncated());
        }
        self.note_record(total);
        let at = self.start + PCAP_RECORD_LEN;
        self.start += total;
        Ok(Some(Loc {
            // Seconds are unsigned 32-bit (§5): no overflow in i64.
            ts: i64::from(sec) * 1_000_000_000 + i64::from(frac) * frac_ns,
            link,
            at,
            len: caplen,
            orig_len,
        }))
    }

    /// Parses the pcapng block at `buf[start..]` (at least 12 bytes present) and consumes it.
    /// Returns the packet it carries, if any.
    fn pcapng_block(&mut self) -> Result<Option<Loc>, CaptureError> {
        let s = self.start;
        let raw_type = [
            self.buf[s],
            self.buf[s + 1],
            self.buf[s + 2],
            self.buf[s + 3],
        ];
        let shb = u32::from_le_bytes(raw_type) == BT_SHB;
        if shb {
            // §4.1: the byte-order magic 0x1A2B3C4D, written in the section's byte order,
            // decides how to read everything else in the section, the SHB's own length
            // included.
            let e = match [
                self.buf[s + 8],
                self.buf[s + 9],
                self.buf[s + 10],
                self.buf[s + 11],
            ] {
                [0x1a, 0x2b, 0x3c, 0x4d] => Endian::Big,
                [0x4d, 0x3c, 0x2b, 0x1a] => Endian::Little,
                _ => return Err(self.corrupt("section header byte-order magic is invalid")),
            };
            if let Format::PcapNg { endian, .. } = &mut self.format {
                *endian = e;
            }
        }
        let e = match &self.format {
            Format::PcapNg { endian, .. } => *endian,
            Format::Pcap { .. } => return Ok(None),
        };
        let btype = e.u32(&self.buf, s);
        let blen = e.u32(&self.buf, s + 4) as usize;
        // §3.1: Block Total Length counts head and trailer and is a multiple of 4.
        if blen < NG_HEAD + NG_TRAIL || blen % 4 != 0 {
            return Err(self.corrupt("block length is under 12 or not a multiple of 4"));
        }
        if !matches!(btype, BT_SHB | BT_IDB | BT_PB | BT_SPB | BT_EPB) {
            // Unknown or uninteresting blocks are skipped without buffering them, so their
            // size is not bounded by MAX_RECORD.
            self.stats.skipped_blocks += 1;
            let offset = self.offset_of_start();
            if !self.skip(blen)? {
                return Err(self.truncated_at(offset));
            }
            return Ok(None);
        }
        if blen > MAX_RECORD {
            return Err(self.corrupt("block length over the 16 MiB bound"));
        }
        if !self.fill(blen)? {
            return Err(self.truncated());
        }
        let s = self.start;
        if e.u32(&self.buf, s + blen - NG_TRAIL) as usize != blen {
            return Err(self.corrupt("block length in header and trailer differ"));
        }
        self.note_record(blen);
        let body = s + NG_HEAD..s + blen - NG_TRAIL;
        let loc = match btype {
            BT_SHB => {
                self.section_header(body, e)?;
                None
            }
            BT_IDB => {
                self.interface_description(body, e)?;
                None
            }
            BT_EPB => self.enhanced_packet(body, e, false)?,
            BT_PB => self.enhanced_packet(body, e, true)?,
            _ => self.simple_packet(body, e),
        };
        // The packet bytes stay in place: nothing writes to the buffer before the caller is
        // done with the returned packet.
        self.start += blen;
        Ok(loc)
    }

    /// §4.1. A new section starts afresh: its interfaces are numbered from 0 again.
    fn section_header(
        &mut self,
        body: std::ops::Range<usize>,
        e: Endian,
    ) -> Result<(), CaptureError> {
        if body.len() + NG_HEAD + NG_TRAIL < NG_SHB_MIN {
            return Err(self.corrupt("section header block too short"));
        }
        let major = e.u16(&self.buf, body.start + 4);
        // §4.1: a reader must not parse a section whose major version it does not know.
        if major != 1 {
            return Err(self.corrupt("unsupported pcapng major version (expected 1)"));
        }
        self.stats.sections += 1;
        if let Format::PcapNg { interfaces, .. } = &mut self.format {
            interfaces.clear();
        }
        Ok(())
    }

    /// §4.2. Interfaces are numbered by order of appearance within the section.
    fn interface_description(
        &mut self,
        body: std::ops::Range<usize>,
        e: Endian,
    ) -> Result<(), CaptureError> {
        if body.len() < 8 {
            return Err(self.corrupt("interface description block too short"));
        }
        let b = &self.buf[body];
        let mut iface = Interface {
            link: LinkType(u32::from(e.u16(b, 0))),
            snaplen: e.u32(b, 4),
            // §4.2: without if_tsresol, timestamps are in microseconds.
            scale: TsScale::Mul(1000),
            offset_ns: 0,
        };
        // Options (§3.5): code, length, value padded to 32 bits. A damaged option list only
        // loses the options after the damage; the link type is still good.
        let mut opts = &b[8..];
        while opts.len() >= 4 {
            let code = e.u16(opts, 0);
            let len = usize::from(e.u16(opts, 2));
            if code == OPT_ENDOFOPT || 4 + len > opts.len() {
                break;
            }
            let val = &opts[4..4 + len];
            match code {
                OPT_IF_TSRESOL if len >= 1 => iface.scale = TsScale::from_tsresol(val[0]),
                OPT_IF_TSOFFSET if len >= 8 => {
                    iface.offset_ns = i128::from(e.i64(val, 0)) * 1_000_000_000;
                }
                _ => {}
            }
            let padded = (4 + len + 3) & !3;
            opts = &opts[padded.min(opts.len())..];
        }
        let Format::PcapNg { interfaces, .. } = &mut self.format else {
            return Ok(());
        };
        if interfaces.len() >= MAX_INTERFACES {
            return Err(self.corrupt("more than 65536 interfaces in one section"));
        }
        interfaces.push(iface);
        self.stats.interfaces += 1;
        Ok(())
    }

    /// Enhanced Packet Block (§4.3) or, with `obsolete`, the Packet Block (Appendix A) whose
    /// interface ID is 16 bits followed by a 16-bit drop count.
    #[inline]
    fn enhanced_packet(
        &mut self,
        body: std::ops::Range<usize>,
        e: Endian,
        obsolete: bool,
    ) -> Result<Option<Loc>, CaptureError> {
        const FIXED: usize = 20;
        if body.len() < FIXED {
            return Err(self.corrupt("packet block too short"));
        }
        let b = &self.buf[body.clone()];
        let if_id = if obsolete {
            usize::from(e.u16(b, 0))
        } else {
            e.u32(b, 0) as usize
        };
        let ts_hi = e.u32(b, 4);
        let ts_lo = e.u32(b, 8);
        let caplen = e.u32(b, 12) as usize;
        let orig_len = e.u32(b, 16);
        if caplen > body.len() - FIXED {
            return Err(self.corrupt("captured length exceeds its block"));
        }
        let Format::PcapNg {
            interfaces,
            last_ts,
            ..
        } = &mut self.format
        else {
            return Ok(None);
        };
        let Some(iface) = interfaces.get(if_id) else {
            self.stats.orphan_packets += 1;
            return Ok(None);
        };
        let ts = iface.ts(ts_hi, ts_lo);
        *last_ts = ts;
        Ok(Some(Loc {
            ts,
            link: iface.link,
            at: body.start + FIXED,
            len: caplen,
            orig_len,
        }))
    }

    /// Simple Packet Block (§4.4): interface 0, captured length is the smaller of the original
    /// length, the interface snaplen and the block. It has no timestamp; we give it the last
    /// timestamp seen so later stages, which order and expire flows by time, never see time
    /// go backwards (0 when no timestamped packet came before).
    fn simple_packet(&mut self, body: std::ops::Range<usize>, e: Endian) -> Option<Loc> {
        if body.len() < 4 {
            // Too short to hold the original length: nothing to return. Not worth failing the
            // file over, the framing is intact.
            self.stats.orphan_packets += 1;
            return None;
        }
        let orig_len = e.u32(&self.buf, body.start);
        let Format::PcapNg {
            interfaces,
            last_ts,
            ..
        } = &self.format
        else {
            return None;
        };
        let Some(iface) = interfaces.first() else {
            self.stats.orphan_packets += 1;
            return None;
        };
        let mut len = (body.len() - 4).min(orig_len as usize);
        if iface.snaplen != 0 {
            len = len.min(iface.snaplen as usize);
        }
        Some(Loc {
            ts: *last_ts,
            link: iface.link,
            at: body.start + 4,
            len,
            orig_len,
        })
    }

    #[inline(always)]
    fn avail(&self) -> usize {
        self.end - self.start
    }

    fn offset_of_start(&self) -> u64 {
        self.read_total - self.avail() as u64
    }

    fn note_record(&mut self, len: usize) {
        if len as u64 > self.stats.largest_record {
            self.stats.largest_record = len as u64;
        }
    }

    fn truncated(&self) -> CaptureError {
        self.truncated_at(self.offset_of_start())
    }

    fn truncated_at(&self, offset: u64) -> CaptureError {
        CaptureError::Truncated {
            path: self.name.clone(),
            offset,
        }
    }

    fn corrupt(&self, what: &'static str) -> CaptureError {
        CaptureError::Corrupt {
            path: self.name.clone(),
            offset: self.offset_of_start(),
            what,
        }
    }

    /// Makes `buf[start..start + n]` valid, reading as much as fits. `Ok(false)` when the file
    /// ends first (what there was stays in the buffer). `n` must be at most [`MAX_RECORD`].
    #[inline(always)]
    fn fill(&mut self, n: usize) -> Result<bool, CaptureError> {
        if self.end - self.start >= n {
            return Ok(true);
        }
        self.refill(n)
    }

    #[cold]
    fn refill(&mut self, n: usize) -> Result<bool, CaptureError> {
        debug_assert!(n <= MAX_RECORD);
        if self.start + n > self.buf.len() {
            // Move the partial record to the front, then grow if it still cannot fit.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if n > self.buf.len() {
                let new_len = n.max(self.buf.len() * 2).min(MAX_RECORD.max(n));
                self.buf.resize(new_len, 0);
            }
        }
        while self.end - self.start < n {
            if self.eof {
                return Ok(false);
            }
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => {
                    self.end += k;
                    self.read_total += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Io {
                        path: self.name.clone(),
                        source,
                    })
                }
            }
        }
        Ok(true)
    }

    /// Consumes `n` bytes without keeping them. `Ok(false)` when the file ends first.
    fn skip(&mut self, n: usize) -> Result<bool, CaptureError> {
        let mut left = n;
        let take = left.min(self.avail());
        self.start += take;
        left -= take;
        while left > 0 {
            self.start = 0;
            self.end = 0;
            if self.eof {
                return Ok(false);
            }
            match self.inner.read(&mut self.buf[..]) {
                Ok(0) => self.eof = true,
                Ok(k) => {
                    self.read_total += k as u64;
                    let take = left.min(k);
                    self.start = take;
                    self.end = k;
                    left -= take;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Io {
                        path: self.name.clone(),
                        source,
                    })
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::path::PathBuf;

    /// A packet copied out of the reader, for comparison.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        ts: Nanos,
        link: u32,
        data: Vec<u8>,
        orig_len: u32,
    }

    fn owned(ts: Nanos, link: u32, data: &[u8], orig_len: u32) -> Owned {
        Owned {
            ts,
            link,
            data: data.to_vec(),
            orig_len,
        }
    }

    /// Hands out one byte per `read` call: the worst case for the refill logic.
    struct OneByte(Cursor<Vec<u8>>);

    impl Read for OneByte {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    fn reader(img: &[u8], one_byte: bool) -> Result<FileReader, CaptureError> {
        let r: Box<dyn Read + Send> = if one_byte {
            Box::new(OneByte(Cursor::new(img.to_vec())))
        } else {
            Box::new(Cursor::new(img.to_vec()))
        };
        FileReader::from_reader(r, "test.pcap", Some(img.len() as u64))
    }

    /// Reads everything; returns the packets and how it ended.
    fn read_all(img: &[u8], one_byte: bool) -> (Vec<Owned>, Result<(), CaptureError>) {
        let mut rd = match reader(img, one_byte) {
            Ok(rd) => rd,
            Err(e) => return (Vec::new(), Err(e)),
        };
        let mut out = Vec::new();
        loop {
            match rd.next_packet() {
                Ok(Some(p)) => out.push(owned(p.ts, p.link.0, p.data, p.orig_len)),
                Ok(None) => break,
                Err(e) => {
                    // Fused after an error.
                    assert!(matches!(rd.next_packet(), Ok(None)));
                    return (out, Err(e));
                }
            }
        }
        assert_eq!(rd.stats().packets, out.len() as u64);
        (out, Ok(()))
    }

    /// Both reader kinds must agree and end cleanly.
    fn read_ok(img: &[u8]) -> Vec<Owned> {
        let (a, ra) = read_all(img, false);
        let (b, rb) = read_all(img, true);
        ra.unwrap();
        rb.unwrap();
        assert_eq!(a, b);
        a
    }

    // ---- classic pcap images -------------------------------------------------------------

    fn put32(out: &mut Vec<u8>, big: bool, v: u32) {
        out.extend_from_slice(&if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn put16(out: &mut Vec<u8>, big: bool, v: u16) {
        out.extend_from_slice(&if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    /// A classic pcap image; packets are (seconds, fraction, data, orig_len).
    fn pcap(big: bool, nanos: bool, linktype: u32, pkts: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
        let mut o = Vec::new();
        put32(&mut o, big, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        put16(&mut o, big, 2);
        put16(&mut o, big, 4);
        put32(&mut o, big, 0); // thiszone
        put32(&mut o, big, 0); // sigfigs
        put32(&mut o, big, 262_144); // snaplen
        put32(&mut o, big, linktype);
        for (sec, frac, data, orig) in pkts {
            put32(&mut o, big, *sec);
            put32(&mut o, big, *frac);
            put32(&mut o, big, data.len() as u32);
            put32(&mut o, big, *orig);
            o.extend_from_slice(data);
        }
        o
    }

    const P1: &[u8] = b"first packet";
    const P2: &[u8] = b"";
    const P3: &[u8] = b"third packet, a little longer than the others";

    #[test]
    fn pcap_all_four_magics() {
        for big in [false, true] {
            for nanos in [false, true] {
                let img = pcap(
                    big,
                    nanos,
                    1,
                    &[
                        (1_700_000_000, 123_456, P1, 1514),
                        (1_700_000_001, 0, P2, 0),
                        (u32::MAX, 999_999, P3, P3.len() as u32),
                    ],
                );
                let m = if nanos { 1 } else { 1000 };
                let want = vec![
                    owned(1_700_000_000_000_000_000 + 123_456 * m, 1, P1, 1514),
                    owned(1_700_000_001_000_000_000, 1, P2, 0),
                    owned(
                        i64::from(u32::MAX) * 1_000_000_000 + 999_999 * m,
                        1,
                        P3,
                        P3.len() as u32,
                    ),
                ];
                assert_eq!(read_ok(&img), want, "big={big} nanos={nanos}");
                let rd = reader(&img, false).unwrap();
                assert_eq!(rd.format(), "pcap");
                assert_eq!(rd.total_len(), Some(img.len() as u64));
            }
        }
    }

    #[test]
    fn pcap_linktype_fcs_bits_are_masked() {
        // FCS length 4 bytes (2 16-bit words, P bit set) over Ethernet: draft-ietf-opsawg-pcap
        // §4, "LinkType and additional information".
        let lt = (2 << 28) | (1 << 26) | 1;
        let img = pcap(false, false, lt, &[(1, 2, P1, 12)]);
        assert_eq!(read_ok(&img)[0].link, 1);
    }

    #[test]
    fn pcap_large_record_grows_buffer_within_bound() {
        let big = vec![0xabu8; 3 * INITIAL_BUF + 17];
        let img = pcap(
            false,
            false,
            1,
            &[(1, 0, P1, 12), (2, 0, &big, 99), (3, 0, P3, 1)],
        );
        let got = read_ok(&img);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].data, big);
        assert_eq!(got[2].data, P3);
        let mut rd = reader(&img, false).unwrap();
        while rd.next_packet().unwrap().is_some() {}
        assert_eq!(rd.stats().largest_record, (big.len() + 16) as u64);
        assert_eq!(rd.bytes_read(), img.len() as u64);
    }

    #[test]
    fn pcap_record_over_bound_is_corrupt() {
        let mut img = pcap(false, false, 1, &[(1, 0, P1, 12)]);
        let hdr = img.len();
        put32(&mut img, false, 5);
        put32(&mut img, false, 0);
        put32(&mut img, false, u32::MAX);
        put32(&mut img, false, 60);
        let (pkts, end) = read_all(&img, false);
        assert_eq!(pkts.len(), 1);
        match end {
            Err(CaptureError::Corrupt { offset, .. }) => assert_eq!(offset, hdr as u64),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    // ---- pcapng images -------------------------------------------------------------------

    /// Builds pcapng images block by block in one byte order (which may change per section).
    struct Ng {
        big: bool,
        out: Vec<u8>,
        /// Byte offset where each packet-carrying block ends, for the truncation test.
        packet_ends: Vec<usize>,
    }

    impl Ng {
        fn new(big: bool) -> Ng {
            let mut ng = Ng {
                big,
                out: Vec::new(),
                packet_ends: Vec::new(),
            };
            ng.shb(big);
            ng
        }

        fn block(&mut self, btype: u32, body: &[u8]) {
            let pad = (4 - body.len() % 4) % 4;
            let len = (12 + body.len() + pad) as u32;
            let big = self.big;
            put32(&mut self.out, big, btype);
            put32(&mut self.out, big, len);
            self.out.extend_from_slice(body);
            self.out.extend(std::iter::repeat_n(0, pad));
            put32(&mut self.out, big, len);
        }

        fn shb(&mut self, big: bool) {
            self.big = big;
            let mut b = Vec::new();
            put32(&mut b, big, 0x1a2b_3c4d);
            put16(&mut b, big, 1);
            put16(&mut b, big, 0);
            b.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
                                                         // An shb_userappl option, to exercise option skipping in an SHB.
            put16(&mut b, big, 4);
            put16(&mut b, big, 5);
            b.extend_from_slice(b"test\0\0\0\0");
            put16(&mut b, big, 0);
            put16(&mut b, big, 0);
            self.block(BT_SHB, &b);
        }

        /// `opts` are (code, value); values are padded here.
        fn idb(&mut self, link: u16, snaplen: u32, opts: &[(u16, &[u8])]) {
            let big = self.big;
            let mut b = Vec::new();
            put16(&mut b, big, link);
            put16(&mut b, big, 0);
            put32(&mut b, big, snaplen);
            for (code, val) in opts {
                put16(&mut b, big, *code);
                put16(&mut b, big, val.len() as u16);
                b.extend_from_slice(val);
                b.extend(std::iter::repeat_n(0, (4 - val.len() % 4) % 4));
            }
            if !opts.is_empty() {
                put32(&mut b, big, 0);
            }
            self.block(BT_IDB, &b);
        }

        fn epb(&mut self, if_id: u32, units: u64, data: &[u8], orig: u32) {
            let big = self.big;
            let mut b = Vec::new();
            put32(&mut b, big, if_id);
            put32(&mut b, big, (units >> 32) as u32);
            put32(&mut b, big, units as u32);
            put32(&mut b, big, data.len() as u32);
            put32(&mut b, big, orig);
            b.extend_from_slice(data);
            // Pad, then an opt_comment, which must not be mistaken for packet data.
            b.extend(std::iter::repeat_n(0, (4 - data.len() % 4) % 4));
            put16(&mut b, big, 1);
            put16(&mut b, big, 2);
            b.extend_from_slice(b"hi\0\0");
            self.block(BT_EPB, &b);
            self.packet_ends.push(self.out.len());
        }

        fn pb(&mut self, if_id: u16, units: u64, data: &[u8], orig: u32) {
            let big = self.big;
            let mut b = Vec::new();
            put16(&mut b, big, if_id);
            put16(&mut b, big, 7); // drops count
            put32(&mut b, big, (units >> 32) as u32);
            put32(&mut b, big, units as u32);
            put32(&mut b, big, data.len() as u32);
            put32(&mut b, big, orig);
            b.extend_from_slice(data);
            self.block(BT_PB, &b);
            self.packet_ends.push(self.out.len());
        }

        fn spb(&mut self, data: &[u8], orig: u32) {
            let big = self.big;
            let mut b = Vec::new();
            put32(&mut b, big, orig);
            b.extend_from_slice(data);
            self.block(BT_SPB, &b);
            self.packet_ends.push(self.out.len());
        }
    }

    /// The image most tests share: two interfaces of different link types and resolutions,
    /// every packet block type, and blocks to skip.
    fn rich_ng(big: bool) -> (Ng, Vec<Owned>) {
        let mut ng = Ng::new(big);
        ng.idb(1, 0, &[]); // Ethernet, microseconds (default)
        ng.block(4, &[0; 8]); // Name Resolution Block: skipped
        ng.idb(0, 64, &[(OPT_IF_TSRESOL, &[9]), (2, b"lo0")]); // NULL, ns, if_name
        ng.epb(0, 1_700_000_000_123_456, P1, 1514);
        ng.epb(1, 1_700_000_000_123_456_789, P3, P3.len() as u32);
        ng.block(5, &[0; 20]); // Interface Statistics Block: skipped
        ng.spb(P3, P3.len() as u32); // interface 0, snaplen 0: whole packet
        ng.pb(1, 1_800_000_000_000_000_000, P1, 99);
        ng.block(0x4000_0BAD, &[1, 2, 3, 4, 5]); // custom block: skipped
        ng.spb(P3, 1000); // orig longer than what the block holds
        ng.epb(0, 5, P2, 0);
        let want = vec![
            owned(1_700_000_000_123_456_000, 1, P1, 1514),
            owned(1_700_000_000_123_456_789, 0, P3, P3.len() as u32),
            // SPB: the previous packet's timestamp, interface 0's link type.
            owned(1_700_000_000_123_456_789, 1, P3, P3.len() as u32),
            owned(1_800_000_000_000_000_000, 0, P1, 99),
            // Block holds P3 padded to 48: captured length is min(orig, block) = 48 bytes,
            // the padding included (the SPB has no captured-length field).
            owned(
                1_800_000_000_000_000_000,
                1,
                &[P3, &[0, 0, 0]].concat(),
                1000,
            ),
            owned(5_000, 1, P2, 0),
        ];
        (ng, want)
    }

    #[test]
    fn pcapng_every_packet_block_both_byte_orders() {
        for big in [false, true] {
            let (ng, want) = rich_ng(big);
            assert_eq!(read_ok(&ng.out), want, "big={big}");
            let mut rd = reader(&ng.out, false).unwrap();
            assert_eq!(rd.format(), "pcapng");
            while rd.next_packet().unwrap().is_some() {}
            let st = rd.stats();
            assert_eq!(st.packets, 6);
            assert_eq!(st.skipped_blocks, 3);
            assert_eq!(st.sections, 1);
            assert_eq!(st.interfaces, 2);
            assert_eq!(st.orphan_packets, 0);
        }
    }

    #[test]
    fn pcapng_spb_clipped_to_snaplen() {
        let mut ng = Ng::new(false);
        ng.idb(101, 4, &[]);
        ng.spb(P3, P3.len() as u32);
        assert_eq!(
            read_ok(&ng.out),
            vec![owned(0, 101, &P3[..4], P3.len() as u32)]
        );
    }

    /// IDB options, then the expected timestamp.
    type TsCase<'a> = (&'a [(u16, &'a [u8])], i64);

    #[test]
    fn pcapng_tsresol_and_tsoffset() {
        let units: u64 = 3_000_000_123;
        let cases: &[TsCase<'_>] = &[
            (&[], 3_000_000_123_000),                                   // default 10^-6
            (&[(OPT_IF_TSRESOL, &[3])], 3_000_000_123_000_000),         // ms
            (&[(OPT_IF_TSRESOL, &[9])], 3_000_000_123),                 // ns
            (&[(OPT_IF_TSRESOL, &[0])], 3_000_000_123_000_000_000),     // seconds
            (&[(OPT_IF_TSRESOL, &[12])], 3_000_000),                    // ps: divides
            (&[(OPT_IF_TSRESOL, &[100])], 0), // absurdly fine: 0, no panic
            (&[(OPT_IF_TSRESOL, &[0x80 | 10])], 2_929_687_620_117_187), // 2^-10 s
            (&[(OPT_IF_TSRESOL, &[0x80 | 30])], 2_793_967_838), // 2^-30 s
            (&[(OPT_IF_TSRESOL, &[0xff])], 0), // 2^-127 s
            (
                &[
                    (OPT_IF_TSRESOL, &[9]),
                    (OPT_IF_TSOFFSET, &100i64.to_le_bytes()),
                ],
                103_000_000_123,
            ),
            (
                &[(OPT_IF_TSOFFSET, &(-3000i64).to_le_bytes())],
                3_000_000_123_000 - 3_000_000_000_000,
            ),
        ];
        for (opts, want) in cases {
            let mut ng = Ng::new(false);
            ng.idb(1, 0, opts);
            ng.epb(0, units, P1, 12);
            assert_eq!(read_ok(&ng.out)[0].ts, *want, "opts {opts:?}");
        }
        // Seconds past i64 nanoseconds (year 2262) saturate instead of wrapping.
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[(OPT_IF_TSRESOL, &[0])]);
        ng.epb(0, u64::MAX, P1, 12);
        assert_eq!(read_ok(&ng.out)[0].ts, i64::MAX);
        // if_tsoffset is in the section's byte order.
        let mut ng = Ng::new(true);
        ng.idb(1, 0, &[(OPT_IF_TSOFFSET, &(-3000i64).to_be_bytes())]);
        ng.epb(0, units, P1, 12);
        assert_eq!(read_ok(&ng.out)[0].ts, 123_000);
    }

    #[test]
    fn pcapng_sections_reset_interfaces_and_may_switch_byte_order() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]);
        ng.idb(113, 0, &[]);
        ng.epb(1, 1, P1, 12);
        ng.shb(true); // second section, big-endian
        ng.idb(276, 0, &[(OPT_IF_TSRESOL, &[9])]);
        ng.epb(0, 2, P3, 45);
        ng.epb(1, 3, P1, 12); // interface 1 was in the first section only: orphan
        ng.shb(false);
        ng.spb(P1, 12); // no IDB yet in this section: orphan
        ng.idb(101, 0, &[]);
        ng.epb(0, 4, P2, 0);
        let want = vec![
            owned(1_000, 113, P1, 12),
            owned(2, 276, P3, 45),
            owned(4_000, 101, P2, 0),
        ];
        assert_eq!(read_ok(&ng.out), want);
        let mut rd = reader(&ng.out, false).unwrap();
        while rd.next_packet().unwrap().is_some() {}
        assert_eq!(rd.stats().sections, 3);
        assert_eq!(rd.stats().interfaces, 4);
        assert_eq!(rd.stats().orphan_packets, 2);
    }

    #[test]
    fn pcapng_damaged_framing_is_corrupt() {
        let good = {
            let mut ng = Ng::new(false);
            ng.idb(1, 0, &[]);
            ng.epb(0, 1, P1, 12);
            ng
        };
        let epb_at = good.out.len() - (12 + 20 + 12 + 8);
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        // Captured length larger than the block.
        let mut img = good.out.clone();
        img[epb_at + 8 + 12..epb_at + 8 + 16].copy_from_slice(&200u32.to_le_bytes());
        cases.push(("captured length", img));
        // Trailer disagrees with header.
        let mut img = good.out.clone();
        let n = img.len();
        img[n - 4] ^= 4;
        cases.push(("trailer", img));
        // Length not a multiple of 4.
        let mut img = good.out.clone();
        img[epb_at + 4] = 53;
        cases.push(("multiple of 4", img));
        // Length under 12.
        let mut img = good.out.clone();
        img[epb_at + 4..epb_at + 8].copy_from_slice(&8u32.to_le_bytes());
        cases.push(("under 12", img));
        // Packet block over the bound.
        let mut img = good.out.clone();
        img[epb_at + 4..epb_at + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        cases.push(("bound", img));
        // A second section with a bad byte-order magic.
        let mut img = good.out.clone();
        let shb_len = 28 + 12;
        img.extend_from_slice(&good.out[..shb_len]);
        img[n + 8] = 0x99;
        cases.push(("byte-order magic", img));
        // Unsupported major version.
        let mut img = good.out.clone();
        img[12] = 2;
        cases.push(("major version", img));

        for (what, img) in cases {
            for one_byte in [false, true] {
                let (_, end) = read_all(&img, one_byte);
                let err = end.expect_err(what);
                assert!(
                    matches!(err, CaptureError::Corrupt { .. }),
                    "{what}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn pcapng_huge_unknown_block_is_skipped_unbuffered() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, &[]);
        ng.block(0x0000_0BAD, &vec![7u8; MAX_RECORD + 4096]);
        ng.epb(0, 1, P1, 12);
        let got = read_ok(&ng.out);
        assert_eq!(got, vec![owned(1_000, 1, P1, 12)]);
    }

    // ---- truncation and garbage ----------------------------------------------------------

    /// Cutting a file at every byte offset never panics, returns every packet whose record
    /// ends before the cut, then Truncated (or a clean end when the cut falls on a boundary).
    fn check_every_cut(img: &[u8], header_len: usize, packet_ends: &[usize], boundaries: &[usize]) {
        for cut in 0..=img.len() {
            for one_byte in [false, true] {
                let (pkts, end) = read_all(&img[..cut], one_byte);
                let complete = packet_ends.iter().filter(|&&e| e <= cut).count();
                assert_eq!(pkts.len(), complete, "cut {cut}");
                match end {
                    Ok(()) => assert!(boundaries.contains(&cut), "clean end at cut {cut}"),
                    Err(CaptureError::NotACapture { got, .. }) => {
                        assert!(cut < 4, "cut {cut}");
                        assert_eq!(got, cut);
                    }
                    Err(CaptureError::Truncated { offset, .. }) => {
                        assert!(!boundaries.contains(&cut), "cut {cut}");
                        assert!(offset <= cut as u64, "cut {cut}");
                        if cut >= header_len {
                            // The offset names the start of the cut record.
                            assert!(boundaries.contains(&(offset as usize)), "cut {cut}");
                        }
                    }
                    Err(e) => panic!("cut {cut}: {e}"),
                }
            }
        }
    }

    #[test]
    fn pcap_truncated_at_every_offset() {
        for big in [false, true] {
            let img = pcap(
                big,
                true,
                1,
                &[(1, 2, P1, 12), (3, 4, P2, 0), (5, 6, P3, 45)],
            );
            let ends = [24 + 16 + P1.len(), 24 + 32 + P1.len(), img.len()];
            let mut boundaries = vec![24];
            boundaries.extend_from_slice(&ends);
            check_every_cut(&img, 24, &ends, &boundaries);
        }
    }

    #[test]
    fn pcapng_truncated_at_every_offset() {
        for big in [false, true] {
            let (ng, _) = rich_ng(big);
            // Every block boundary after the first SHB is a clean place to stop.
            let mut boundaries = Vec::new();
            let mut at = 0;
            while at < ng.out.len() {
                let len = if big {
                    u32::from_be_bytes(ng.out[at + 4..at + 8].try_into().unwrap())
                } else {
                    u32::from_le_bytes(ng.out[at + 4..at + 8].try_into().unwrap())
                };
                at += len as usize;
                boundaries.push(at);
            }
            check_every_cut(&ng.out, boundaries[0], &ng.packet_ends, &boundaries);
        }
    }

    #[test]
    fn not_a_capture_says_so() {
        let (_, end) = read_all(b"<!DOCTYPE html><html></html>", false);
        let err = end.unwrap_err();
        assert!(matches!(
            err,
            CaptureError::NotACapture {
                magic: [0x3c, 0x21, 0x44, 0x4f],
                got: 4,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "test.pcap is not a pcap or pcapng capture (starts with 3c 21 44 4f); write \
             captures with tcpdump -w or tshark -w"
        );
        let err = read_all(b"", true).1.unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.pcap is not a pcap or pcapng capture (the file is empty); write captures \
             with tcpdump -w or tshark -w"
        );
        let err = read_all(b"\xd4\xc3", false).1.unwrap_err();
        assert!(
            err.to_string().contains("only 2 bytes long: d4 c3"),
            "{err}"
        );
    }

    #[test]
    fn open_reports_missing_file() {
        let err = FileReader::open(Path::new("/nonexistent/x.pcap")).unwrap_err();
        assert!(matches!(err, CaptureError::Open { .. }), "{err:?}");
    }

    #[test]
    fn reader_errors_are_io() {
        struct Fails;
        impl Read for Fails {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = FileReader::from_reader(Box::new(Fails), "x", None).unwrap_err();
        assert!(matches!(err, CaptureError::Io { .. }), "{err:?}");
    }

    /// Cheap deterministic PRNG (xorshift64) for the mutation test: no dependency, same run
    /// every time.
    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn mutated_files_never_panic() {
        let (ng, _) = rich_ng(false);
        let pc = pcap(true, false, 1, &[(1, 2, P1, 12), (3, 4, P3, 45)]);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for base in [&ng.out, &pc] {
            for _ in 0..3000 {
                let mut img = base.clone();
                for _ in 0..(xorshift(&mut seed) % 4 + 1) {
                    let i = (xorshift(&mut seed) as usize) % img.len();
                    img[i] = xorshift(&mut seed) as u8;
                }
                let cut = (xorshift(&mut seed) as usize) % (img.len() + 1);
                let (pkts, _) = read_all(&img[..cut], false);
                assert!(pkts.len() <= 16);
            }
        }
    }

    // ---- real files ----------------------------------------------------------------------

    fn testdata(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/capture/testdata")
            .join(name)
    }

    /// shared/pcaps-external sits beside the repository (here and in CI); `None` if absent.
    pub(crate) fn external_dir() -> Option<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps-external");
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("skipping: {} not found", dir.display());
            None
        }
    }

    /// (file, packets, captured bytes, first ts, last ts). Packet counts from
    /// `tshark -r FILE | wc -l`; bytes, timestamps from
    /// `tshark -r FILE -T fields -e frame.cap_len -e frame.time_epoch` (TShark 4.0.17).
    const EXTERNAL: &[(&str, usize, u64, i64, i64)] = &[
        (
            "arkime__smtp-decrypted.pcap",
            110,
            35828,
            1733385184602048000,
            1733486838673849000,
        ),
        (
            "arkime__smtp-starttls.pcap",
            36,
            8403,
            1388017124762850000,
            1388017125239930000,
        ),
        (
            "arkime__ssl-selfsign.pcap",
            20,
            7847,
            1519400125658635000,
            1519400125663587000,
        ),
        (
            "certgrep__sess_smtps.pcapng",
            20,
            5254,
            1428097070814749000,
            1428097075948160000,
        ),
        (
            "ndpi__emotet.pcap",
            169,
            99244,
            1645830066121611000,
            1650905518385458000,
        ),
        (
            "ndpi__smtp-starttls.pcap",
            69,
            14832,
            1388017124762850000,
            1524746968663137000,
        ),
        (
            "ndpi__smtps.pcapng",
            4,
            936,
            1614938504972279000,
            1614938505439757000,
        ),
        (
            "ndpi__tls_client_certificate_with_missing_server_one.pcapng",
            17,
            5526,
            1663090549179486833,
            1663090549603905740,
        ),
        (
            "suricata-verify__smtp-startssl.pcap",
            38,
            7054,
            1636654421702930000,
            1636654421805943000,
        ),
        (
            "suricata-verify__smtp-tls-protodetect.pcap",
            7,
            600,
            1574370884020564000,
            1574370884488808000,
        ),
        (
            "suricata-verify__tls-client-auth.pcap",
            22,
            9496,
            1523912382151547000,
            1523912382275195000,
        ),
        (
            "wireshark-notes__smtp-ssl.pcapng",
            38,
            7156,
            1422617502005931161,
            1422617561025768841,
        ),
        (
            "wireshark-notes__smtp2525-ssl.pcapng",
            37,
            7217,
            1422654808667714265,
            1422654828220305000,
        ),
        (
            "zeek__certificate-request-failed.pcap",
            12,
            5139,
            1677605225547927000,
            1677605225569963000,
        ),
        (
            "zeek__client-certificate.pcap",
            31,
            15862,
            1677601192606743000,
            1677601197749454000,
        ),
        (
            "zeek__pop3-starttls.pcap",
            33,
            5289,
            1400173552423915000,
            1400173554912978000,
        ),
        (
            "zeek__smtp-starttls.pcap",
            37,
            8077,
            1400168396806011000,
            1400168404468437000,
        ),
        (
            "zeek__smtp.pcap",
            125,
            38919,
            1254722767492060000,
            1437831800217854000,
        ),
    ];

    /// Same columns for the fixtures made by testdata/make.sh.
    const FIXTURES: &[(&str, usize, u64, i64, i64)] = &[
        (
            "merged-ether-null.pcapng",
            57,
            15924,
            1400168396806011000,
            1519400125663587000,
        ),
        (
            "smtp-starttls.nsec.pcap",
            37,
            8077,
            1400168396806011000,
            1400168404468437000,
        ),
        (
            "smtp-starttls.snap80.pcap",
            37,
            2698,
            1400168396806011000,
            1400168404468437000,
        ),
    ];

    fn check_file(path: &Path, packets: usize, bytes: u64, first: i64, last: i64) {
        let mut rd = FileReader::open(path).unwrap_or_else(|e| panic!("{e}"));
        let (mut n, mut sum, mut ts0, mut ts1) = (0usize, 0u64, 0i64, 0i64);
        while let Some(p) = rd.next_packet().unwrap_or_else(|e| panic!("{e}")) {
            if n == 0 {
                ts0 = p.ts;
            }
            ts1 = p.ts;
            n += 1;
            sum += p.data.len() as u64;
        }
        let name = path.display();
        assert_eq!((n, sum, ts0, ts1), (packets, bytes, first, last), "{name}");
        assert_eq!(rd.bytes_read(), rd.total_len().unwrap(), "{name}");
    }

    #[test]
    fn fixtures_match_tshark() {
        for &(name, packets, bytes, first, last) in FIXTURES {
            check_file(&testdata(name), packets, bytes, first, last);
        }
        let mut rd = FileReader::open(&testdata("merged-ether-null.pcapng")).unwrap();
        let mut links = [0usize; 2];
        while let Some(p) = rd.next_packet().unwrap() {
            links[usize::from(p.link == LinkType::NULL)] += 1;
        }
        // `tshark -T fields -e frame.interface_id`: 37 on Ethernet, 20 on NULL.
        assert_eq!(links, [37, 20]);
    }

    #[test]
    fn external_captures_match_tshark() {
        let Some(dir) = external_dir() else { return };
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.contains(".pcap") {
                continue;
            }
            let Some(&(_, packets, bytes, first, last)) = EXTERNAL.iter().find(|e| e.0 == name)
            else {
                panic!("{name}: no tshark ground truth recorded; add it to EXTERNAL");
            };
            check_file(&path, packets, bytes, first, last);
            seen += 1;
        }
        assert_eq!(seen, EXTERNAL.len());
    }
}
