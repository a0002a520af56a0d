//! The eBPF live source: loads mxcert's TC classifier (`monitor-ebpf`, embedded at build time by
//! `build.rs`), attaches it to ingress and egress of each interface through TCX links, and turns
//! its ring-buffer records back into whole frames for the pipeline.
//!
//! What the kernel side guarantees (see `monitor-ebpf/src/main.rs`): it never drops, delays or
//! changes a packet (`TC_ACT_OK` on every path, no writing helper); it copies only TCP segments
//! of the watched ports; a frame longer than one ring record (a GSO/GRO super-packet) arrives in
//! chunks that [`EbpfSource::poll`] joins; once [`LiveSource::flow_done`] marks a flow, only its
//! FIN/RST headers are copied, so encrypted mail bodies never reach user space.
//!
//! TCX links only (Linux 6.6+): they belong to this process and vanish when it exits, even by
//! SIGKILL. The older netlink attachment would leave the filter on the interface after a crash,
//! so on an older kernel this backend reports itself unavailable and `auto` picks libpcap.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::util::KernelVersion;
use aya::Ebpf;
use mxcert_ebpf::{
    counter, ChunkHeader, FlowKey, FlowState, FLAG_RAW_IP, FLOW_DONE, HEADER_LEN, IFACE_RAW_IP,
    MAP_COUNTERS, MAP_EVENTS, MAP_FLOWS, MAP_IFACES, MAP_PORTS, MAX_FRAME, MAX_IFACES, MAX_PORTS,
    PROG_EGRESS, PROG_INGRESS,
};

use super::bpfobj::{BpfObject, Parts};
use super::{FlowTuple, LinkType, LiveError, LiveSource, Packet, SourceCounters};

const BACKEND: &str = "ebpf";

/// Most ring records handled by one [`EbpfSource::poll`] call, so a flood cannot keep the
/// caller from its other work (flushing, signals); the rest waits for the next call.
pub const MAX_RECORDS_PER_POLL: usize = 65_536;

/// Why this build has no program, and what to do.
pub const NO_OBJECT: &str = "built without the eBPF object: install nightly rust-src and \
     bpf-linker with `cargo xtask setup`, then rebuild (or use --backend pcap)";

/// The program object, when `build.rs` could build it.
pub(crate) fn object() -> Option<&'static [u8]> {
    #[cfg(mxcert_ebpf)]
    {
        Some(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/mxcert-ebpf"
        )))
    }
    #[cfg(not(mxcert_ebpf))]
    {
        None
    }
}

/// Whether this build and kernel can run the eBPF backend; the error says why not and what to
/// do. Cheap: it loads nothing (privileges are checked by [`EbpfSource::open`]).
pub fn available() -> Result<(), String> {
    if object().is_none() {
        return Err(NO_OBJECT.into());
    }
    let kernel =
        KernelVersion::current().map_err(|e| format!("cannot read kernel version: {e}"))?;
    if kernel < KernelVersion::new(6, 6, 0) {
        return Err(format!(
            "kernel {kernel} has no TCX links (Linux 6.6+); a TC program attached through \
             netlink would outlive a crashed mxcert, so use --backend pcap"
        ));
    }
    Ok(())
}

/// Everything the kernel program and the reassembly counted (the full picture behind
/// [`LiveSource::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EbpfCounters {
    /// Kernel: TCP segments of a watched port.
    pub matched: u64,
    /// Kernel: frames written completely to the ring buffer, and their bytes.
    pub delivered: u64,
    pub delivered_bytes: u64,
    /// Kernel: frames lost (wholly or partly) because the ring buffer was full.
    pub ring_full: u64,
    /// Kernel: frames longer than [`MAX_FRAME`], delivered cut to it.
    pub truncated: u64,
    /// Kernel: segments of done flows not copied, and the bytes not copied (theirs, plus the
    /// payload of FIN/RST segments delivered as headers only): the cutoff at work.
    pub cut_off: u64,
    pub cut_off_bytes: u64,
    /// Kernel: FIN/RST segments of done flows delivered as headers only.
    pub headers_only: u64,
    /// Kernel: IP fragments skipped.
    pub fragments: u64,
    /// Kernel: copy failures (frame shorter than its headers claimed).
    pub load_errors: u64,
    /// User space: frames handed to the pipeline, and their bytes.
    pub frames: u64,
    pub frame_bytes: u64,
    /// User space: frames discarded because a chunk was missing (the ring was full mid-frame).
    pub incomplete: u64,
    /// User space: records that made no sense (never expected; counted rather than trusted).
    pub bad_records: u64,
    /// User space: map updates for [`LiveSource::flow_done`] that failed.
    pub flow_mark_errors: u64,
}

/// A frame being joined from its chunks, one per CPU (chunks of one frame come from one CPU,
/// back to back).
#[derive(Default)]
struct Partial {
    active: bool,
    frame_id: u32,
    buf: Vec<u8>,
}

/// The eBPF live source. Dropping it detaches the programs, unless the TLS probes still hold
/// the shared object (the links are owned by it).
pub struct EbpfSource {
    ring: RingBuf<MapData>,
    flows: BpfHashMap<MapData, FlowKey, FlowState>,
    counters: PerCpuArray<MapData, u64>,
    joiner: Joiner,
    program_ids: Vec<u32>,
    flow_mark_errors: u64,
    // Maps the programs reference stay alive with them; dropped last (fields drop in order).
    _ports: BpfHashMap<MapData, u16, u8>,
    _ifaces: BpfHashMap<MapData, u32, u32>,
    // The object owns the programs and their links (shared with the TLS probes).
    _object: BpfObject,
}

impl EbpfSource {
    /// Loads the program, fills the port map and attaches to ingress and egress of every
    /// interface in `ifaces`. Interfaces are looked up in the calling thread's network namespace.
    pub fn open(ifaces: &[String], ports: &[u16]) -> Result<EbpfSource, LiveError> {
        available().map_err(unavailable)?;
        let parts = Parts {
            tc: true,
            tls: false,
        };
        EbpfSource::from_object(&BpfObject::load(parts)?, ifaces, ports)
    }

    /// As [`EbpfSource::open`], taking the TC programs and maps from an object loaded once for
    /// the daemon (which may also hold the TLS-library probes).
    pub fn from_object(
        object: &BpfObject,
        ifaces: &[String],
        ports: &[u16],
    ) -> Result<EbpfSource, LiveError> {
        available().map_err(unavailable)?;
        if !object.parts().tc {
            return Err(failed(
                "the BPF object was loaded without the TC part".into(),
            ));
        }
        if ifaces.is_empty() || ifaces.len() > MAX_IFACES as usize {
            return Err(failed(format!(
                "give between 1 and {MAX_IFACES} interfaces (got {})",
                ifaces.len()
            )));
        }
        if ports.is_empty() || ports.len() > MAX_PORTS as usize {
            return Err(failed(format!(
                "give between 1 and {MAX_PORTS} ports (got {})",
                ports.len()
            )));
        }
        let shared = object.clone();
        let mut guard = shared.lock();
        let ebpf: &mut Ebpf = &mut guard;

        let mut port_map: BpfHashMap<MapData, u16, u8> = take_map(ebpf, MAP_PORTS)?;
        for &p in ports {
            port_map
                .insert(p, 1, 0)
                .map_err(|e| failed(format!("cannot add port {p} to {MAP_PORTS}: {e}")))?;
        }
        let mut iface_map: BpfHashMap<MapData, u32, u32> = take_map(ebpf, MAP_IFACES)?;
        for name in ifaces {
            if link_kind(name)? == LinkKind::RawIp {
                let index = ifindex(name)?;
                iface_map
                    .insert(index, IFACE_RAW_IP, 0)
                    .map_err(|e| failed(format!("cannot add {name} to {MAP_IFACES}: {e}")))?;
            }
        }

        let mut program_ids = Vec::with_capacity(2);
        for (prog_name, attach) in [
            (PROG_INGRESS, TcAttachType::Ingress),
            (PROG_EGRESS, TcAttachType::Egress),
        ] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(prog_name)
                .ok_or_else(|| failed(format!("the object has no program {prog_name}")))?
                .try_into()
                .map_err(|e| failed(format!("{prog_name} is not a TC classifier: {e}")))?;
            prog.load()
                .map_err(|e| load_error(&format!("loading {prog_name}"), &e))?;
            if let Ok(info) = prog.info() {
                program_ids.push(info.id());
            }
            for name in ifaces {
                prog.attach(name, attach)
                    .map_err(|e| load_error(&format!("attaching {prog_name} to {name}"), &e))?;
            }
        }

        let ring = RingBuf::try_from(
            ebpf.take_map(MAP_EVENTS)
                .ok_or_else(|| failed(format!("the object has no map {MAP_EVENTS}")))?,
        )
        .map_err(|e| failed(format!("{MAP_EVENTS}: {e}")))?;
        let flows = take_map(ebpf, MAP_FLOWS)?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map(MAP_COUNTERS)
                .ok_or_else(|| failed(format!("the object has no map {MAP_COUNTERS}")))?,
        )
        .map_err(|e| failed(format!("{MAP_COUNTERS}: {e}")))?;
        // Chunk records carry the CPU number; one partial frame per possible CPU.
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| failed(format!("{what}: {e}")))?;
        drop(guard);
        Ok(EbpfSource {
            ring,
            flows,
            counters,
            joiner: Joiner::new(cpus),
            program_ids,
            flow_mark_errors: 0,
            _ports: port_map,
            _ifaces: iface_map,
            _object: shared,
        })
    }

    /// The object the programs come from, for the TLS probes to share.
    pub fn object(&self) -> &BpfObject {
        &self._object
    }

    /// Kernel IDs of the loaded programs (for `bpftool prog show id N` and the detach tests).
    pub fn program_ids(&self) -> &[u32] {
        &self.program_ids
    }

    /// Whether the kernel map holds `flow` as done (for tests and debugging).
    pub fn is_marked(&self, flow: &FlowTuple) -> bool {
        self.flows.get(&flow_key(flow), 0).is_ok()
    }

    /// All counters, kernel and user side.
    pub fn stats(&self) -> EbpfCounters {
        let get = |idx: u32| -> u64 {
            self.counters
                .get(&idx, 0)
                .map(|v| v.iter().copied().sum())
                .unwrap_or(0)
        };
        EbpfCounters {
            matched: get(counter::MATCHED),
            delivered: get(counter::DELIVERED),
            delivered_bytes: get(counter::DELIVERED_BYTES),
            ring_full: get(counter::RING_FULL),
            truncated: get(counter::TRUNCATED),
            cut_off: get(counter::CUT_OFF),
            cut_off_bytes: get(counter::CUT_OFF_BYTES),
            headers_only: get(counter::HEADERS_ONLY),
            fragments: get(counter::FRAGMENTS),
            load_errors: get(counter::LOAD_ERRORS),
            frames: self.joiner.frames,
            frame_bytes: self.joiner.frame_bytes,
            incomplete: self.joiner.incomplete,
            bad_records: self.joiner.bad_records,
            flow_mark_errors: self.flow_mark_errors,
        }
    }

    /// Hands over every complete frame now in the ring (at most [`MAX_RECORDS_PER_POLL`]
    /// records).
    fn drain(&mut self, f: &mut dyn FnMut(&Packet<'_>)) -> usize {
        // bpf_ktime_get_ns() is CLOCK_MONOTONIC (kernel/bpf/helpers.c); re-read the offset to
        // the wall clock on every call so NTP steps are followed.
        let to_epoch = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
        let mut handed = 0;
        for _ in 0..MAX_RECORDS_PER_POLL {
            let Some(item) = self.ring.next() else { break };
            handed += usize::from(self.joiner.push(&item, to_epoch, f));
        }
        handed
    }
}

/// Joins ring records back into frames. Chunks of one frame come from one CPU, back to back,
/// so one partial frame per CPU suffices; a gap (a chunk lost to a full ring) discards the frame.
struct Joiner {
    partials: Vec<Partial>,
    frames: u64,
    frame_bytes: u64,
    incomplete: u64,
    bad_records: u64,
}

impl Joiner {
    fn new(cpus: usize) -> Joiner {
        Joiner {
            partials: (0..cpus).map(|_| Partial::default()).collect(),
            frames: 0,
            frame_bytes: 0,
            incomplete: 0,
            bad_records: 0,
        }
    }

    /// Takes one record; hands the frame to `f` when this record completes one (returns true).
    fn push(&mut self, rec: &[u8], to_epoch: i64, f: &mut dyn FnMut(&Packet<'_>)) -> bool {
        let Some(hdr) = parse_header(rec) else {
            self.bad_records += 1;
            return false;
        };
        let data = &rec[HEADER_LEN..HEADER_LEN + hdr.chunk_len as usize];
        let link = if hdr.flags & FLAG_RAW_IP != 0 {
            LinkType::RAW
        } else {
            LinkType::ETHERNET
        };
        let ts = i64::try_from(hdr.ktime_ns).unwrap_or(i64::MAX) + to_epoch;
        let frame = if hdr.offset == 0 && hdr.chunk_len == hdr.cap_len {
            // The common case, one record per frame: no copy. A new frame from a CPU means
            // its unfinished one, if any, lost its tail.
            if let Some(p) = self.partials.get_mut(hdr.cpu as usize) {
                self.incomplete += u64::from(p.active);
                p.active = false;
            }
            data
        } else {
            let Some(p) = self.partials.get_mut(hdr.cpu as usize) else {
                self.bad_records += 1;
                return false;
            };
            if hdr.offset == 0 {
                self.incomplete += u64::from(p.active);
                p.active = true;
                p.frame_id = hdr.frame_id;
                p.buf.clear();
                p.buf.reserve(hdr.cap_len as usize);
            } else if !p.active || p.frame_id != hdr.frame_id || p.buf.len() != hdr.offset as usize
            {
                // A chunk of this frame was lost (ring full); the kernel counted it.
                self.incomplete += u64::from(p.active);
                p.active = false;
                return false;
            }
            p.buf.extend_from_slice(data);
            if p.buf.len() < hdr.cap_len as usize {
                return false;
            }
            p.active = false;
            &p.buf
        };
        f(&Packet {
            ts,
            link,
            data: frame,
            orig_len: hdr.frame_len,
        });
        self.frames += 1;
        self.frame_bytes += frame.len() as u64;
        true
    }
}

/// The header of a ring record, if the record is consistent with it.
fn parse_header(rec: &[u8]) -> Option<ChunkHeader> {
    if rec.len() < HEADER_LEN {
        return None;
    }
    // SAFETY: ChunkHeader is plain old data (aya::Pod) and rec holds HEADER_LEN bytes; the
    // read is unaligned-safe.
    let hdr: ChunkHeader = unsafe { std::ptr::read_unaligned(rec.as_ptr().cast()) };
    let end = u64::from(hdr.offset) + u64::from(hdr.chunk_len);
    let ok = hdr.chunk_len as usize <= rec.len() - HEADER_LEN
        && hdr.chunk_len > 0
        && hdr.cap_len <= MAX_FRAME
        && hdr.cap_len <= hdr.frame_len
        && end <= u64::from(hdr.cap_len);
    ok.then_some(hdr)
}

impl LiveSource for EbpfSource {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(&Packet<'_>),
    ) -> Result<usize, LiveError> {
        let n = self.drain(f);
        if n > 0 {
            return Ok(n);
        }
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(LiveError::Failed {
                    backend: BACKEND,
                    reason: format!("poll on the ring buffer: {e}"),
                });
            }
        }
        Ok(self.drain(f))
    }

    fn flow_done(&mut self, flow: &FlowTuple) {
        let state = FlowState {
            flags: FLOW_DONE,
            _pad: 0,
        };
        if self.flows.insert(flow_key(flow), state, 0).is_err() {
            self.flow_mark_errors += 1;
        }
    }

    fn flow_closed(&mut self, flow: &FlowTuple) {
        // Absent (never marked, or evicted by the LRU) is fine.
        let _ = self.flows.remove(&flow_key(flow));
    }

    fn counters(&self) -> SourceCounters {
        let s = self.stats();
        SourceCounters {
            packets: s.frames,
            bytes: s.frame_bytes,
            // Frames lost whole or in part: ring full, a failed copy, a record that made no
            // sense. (Frames cut at MAX_FRAME are delivered, and counted in `stats().truncated`.)
            dropped: s.ring_full + s.load_errors + s.bad_records,
            if_dropped: 0,
            cut_off: s.cut_off,
        }
    }
}

/// The kernel map key of a flow (the same bytes the program builds from a segment).
pub fn flow_key(flow: &FlowTuple) -> FlowKey {
    FlowKey::new(
        FlowTuple::ip16(flow.lo.ip()),
        flow.lo.port(),
        FlowTuple::ip16(flow.hi.ip()),
        flow.hi.port(),
    )
}

fn unavailable(reason: String) -> LiveError {
    LiveError::Unavailable {
        backend: BACKEND,
        reason,
    }
}

fn failed(reason: String) -> LiveError {
    LiveError::Failed {
        backend: BACKEND,
        reason,
    }
}

/// A load/attach error: lack of privilege makes the backend unavailable (so `auto` falls back
/// to libpcap), anything else is a failure. The message carries the whole error chain
/// (including the verifier log).
pub(crate) fn load_error(what: &str, e: &(dyn std::error::Error + 'static)) -> LiveError {
    let mut chain = e.to_string();
    let mut permission = false;
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            // EPERM is a missing capability; EACCES is the verifier's rejection (a bug).
            permission |= io.raw_os_error() == Some(libc::EPERM);
        }
        let text = err.to_string();
        // aya's messages often repeat their source; keep each text once.
        if !std::ptr::eq(err, e) && !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        src = err.source();
    }
    if permission {
        unavailable(format!(
            "{what}: {chain}; run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"
        ))
    } else {
        failed(format!("{what}: {chain}"))
    }
}

fn take_map<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
) -> Result<BpfHashMap<MapData, K, V>, LiveError> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| failed(format!("the object has no map {name}")))?;
    BpfHashMap::try_from(map).map_err(|e| failed(format!("{name}: {e}")))
}

pub(crate) fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// ARPHRD values the libc crate lacks (include/uapi/linux/if_arp.h).
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_IP6GRE: u16 = 823;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkKind {
    Ethernet,
    RawIp,
}

/// What the frames of an interface start with, from its ARPHRD type (include/uapi/linux/
/// if_arp.h): an Ethernet header, or the IP header directly (tun, WireGuard, ipip, sit, GRE).
fn link_kind(name: &str) -> Result<LinkKind, LiveError> {
    let hw = arphrd(name).map_err(|e| failed(format!("interface {name}: {e}")))?;
    match hw {
        libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => Ok(LinkKind::Ethernet),
        libc::ARPHRD_NONE
        | ARPHRD_RAWIP
        | libc::ARPHRD_TUNNEL
        | libc::ARPHRD_TUNNEL6
        | libc::ARPHRD_SIT
        | libc::ARPHRD_IPGRE
        | ARPHRD_IP6GRE => Ok(LinkKind::RawIp),
        other => Err(unavailable(format!(
            "interface {name} has link type {other} (ARPHRD), whose frames the eBPF program \
             does not parse; use --backend pcap"
        ))),
    }
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= req.ifr_name.len() || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an interface name",
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn arphrd(name: &str) -> io::Result<u16> {
    let mut req = ifreq(name)?;
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCGIFHWADDR fills the ifreq we pass (netdevice(7)).
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR set the hwaddr member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}

fn ifindex(name: &str) -> Result<u32, LiveError> {
    let c = std::ffi::CString::new(name).map_err(|_| failed(format!("bad interface {name:?}")))?;
    // SAFETY: a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(failed(format!(
            "interface {name}: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_kernel_build_the_same_flow_key() {
        let a = "198.18.20.2:40000".parse().unwrap();
        let b = "198.18.20.1:25".parse().unwrap();
        let k = flow_key(&FlowTuple::new(a, b));
        // What the program computes from a segment in either direction.
        let (ip_a, ip_b) = (
            mxcert_ebpf::ipv4_mapped([198, 18, 20, 2]),
            mxcert_ebpf::ipv4_mapped([198, 18, 20, 1]),
        );
        assert_eq!(k, FlowKey::new(ip_a, 40000, ip_b, 25));
        assert_eq!(k, FlowKey::new(ip_b, 25, ip_a, 40000));
        let v6a = "[2001:db8::2]:40000".parse().unwrap();
        let v6b = "[2001:db8::1]:587".parse().unwrap();
        let k = flow_key(&FlowTuple::new(v6a, v6b));
        assert_eq!(k.lo_port, 587);
        assert_eq!(k.lo_addr[15], 1);
    }

    #[test]
    fn record_headers_are_checked_before_use() {
        let hdr = ChunkHeader {
            frame_len: 100,
            cap_len: 100,
            chunk_len: 60,
            offset: 40,
            ..Default::default()
        };
        let mut rec = vec![0u8; HEADER_LEN + 60];
        // SAFETY: rec is HEADER_LEN + 60 bytes.
        unsafe { std::ptr::write_unaligned(rec.as_mut_ptr().cast(), hdr) };
        assert_eq!(parse_header(&rec), Some(hdr));
        // Claims more bytes than the record holds.
        assert_eq!(parse_header(&rec[..HEADER_LEN + 59]), None);
        assert_eq!(parse_header(&rec[..10]), None);
        // Chunk past the captured length.
        let bad = ChunkHeader { offset: 41, ..hdr };
        unsafe { std::ptr::write_unaligned(rec.as_mut_ptr().cast(), bad) };
        assert_eq!(parse_header(&rec), None);
    }

    /// A record as the kernel writes it: header + `data` (the frame bytes at `offset`).
    fn record(cpu: u32, frame_id: u32, cap_len: u32, offset: u32, data: &[u8]) -> Vec<u8> {
        let hdr = ChunkHeader {
            ktime_ns: 1_000,
            frame_id,
            cpu,
            frame_len: cap_len,
            cap_len,
            offset,
            chunk_len: data.len() as u32,
            ..Default::default()
        };
        let mut rec = vec![0u8; HEADER_LEN];
        // SAFETY: rec holds HEADER_LEN bytes.
        unsafe { std::ptr::write_unaligned(rec.as_mut_ptr().cast(), hdr) };
        rec.extend_from_slice(data);
        rec
    }

    fn push_all(j: &mut Joiner, recs: &[Vec<u8>]) -> Vec<(i64, Vec<u8>)> {
        let mut out = Vec::new();
        for r in recs {
            j.push(r, 5, &mut |p| out.push((p.ts, p.data.to_vec())));
        }
        out
    }

    #[test]
    fn chunks_of_interleaved_cpus_are_joined_per_cpu() {
        let a: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
        let mut j = Joiner::new(2);
        let recs = [
            record(0, 1, 40_000, 0, &a[..16_384]),
            record(1, 9, 20_000, 0, &b[..16_384]),
            record(0, 1, 40_000, 16_384, &a[16_384..32_768]),
            record(1, 9, 20_000, 16_384, &b[16_384..]),
            record(0, 1, 40_000, 32_768, &a[32_768..]),
            record(1, 10, 3, 0, b"one"),
        ];
        let out = push_all(&mut j, &recs);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].1, b);
        assert_eq!(out[1].1, a);
        assert_eq!(out[2].1, b"one");
        assert_eq!(out[0].0, 1_005, "ktime + offset to the epoch");
        assert_eq!((j.frames, j.incomplete, j.bad_records), (3, 0, 0));
    }

    #[test]
    fn a_lost_chunk_discards_the_frame_and_counts_it() {
        let a = vec![1u8; 40_000];
        let mut j = Joiner::new(1);
        let recs = [
            record(0, 1, 40_000, 0, &a[..16_384]),
            // chunk at 16 384 lost to a full ring
            record(0, 1, 40_000, 32_768, &a[32_768..]),
            // next frame starts over cleanly
            record(0, 2, 5, 0, b"hello"),
            // a frame whose tail is lost, then a new frame from the same CPU
            record(0, 3, 40_000, 0, &a[..16_384]),
            record(0, 4, 2, 0, b"ok"),
            // a record from a CPU that does not exist, and a short one
            record(7, 5, 40_000, 0, &a[..16_384]),
            vec![0u8; 10],
        ];
        let out = push_all(&mut j, &recs);
        let frames: Vec<&[u8]> = out.iter().map(|(_, d)| d.as_slice()).collect();
        assert_eq!(frames, [b"hello".as_slice(), b"ok".as_slice()]);
        assert_eq!((j.incomplete, j.bad_records), (2, 2));
    }

    #[test]
    fn the_source_can_move_to_a_capture_thread() {
        fn send<T: Send>() {}
        send::<EbpfSource>();
    }

    #[test]
    fn availability_names_its_reason() {
        if let Err(why) = available() {
            assert!(!why.is_empty());
            if object().is_none() {
                assert!(why.contains("cargo xtask setup"));
                // open() reports the same reason as Unavailable, so `auto` falls back.
                match EbpfSource::open(&["lo".into()], &[25]) {
                    Err(LiveError::Unavailable { backend, reason }) => {
                        assert_eq!((backend, reason.as_str()), (BACKEND, NO_OBJECT));
                    }
                    Err(e) => panic!("expected Unavailable, got {e}"),
                    Ok(_) => panic!("opened without an object"),
                }
            }
        }
    }

    #[test]
    fn unknown_interface_is_an_error_not_a_panic() {
        assert!(link_kind("mxeb-no-such0").is_err());
        assert!(ifreq("a-name-much-longer-than-ifnamsiz").is_err());
    }
}
