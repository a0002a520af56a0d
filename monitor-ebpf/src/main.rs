//! mxcert's TC classifier: copies the TCP segments of the watched ports into a ring buffer for
//! user space, whole (GSO/GRO super-packets included, in chunks), and stops copying a flow's
//! payload once user space has marked it done (the in-kernel cutoff: encrypted mail bodies
//! never cross into user space).
//!
//! It only reads: both entry points return `TC_ACT_OK` on every path, and no helper that writes
//! to the packet is called. Headers are read with `bpf_skb_load_bytes` rather than direct packet
//! access, because at TC a GSO packet's headers may sit outside the linear area
//! (net/core/filter.c, `bpf_skb_load_bytes` handles paged data).
//!
//! Built only for `bpfel-unknown-none` (monitor/build.rs, through aya-build); for the host this
//! file compiles to an empty `main` so `cargo build --workspace` keeps working on stable.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "mxcert-ebpf is a BPF program: it is built for bpfel-unknown-none by monitor/build.rs"
    );
}

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::TC_ACT_OK,
        helpers::generated::{
            bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_ringbuf_output, bpf_skb_load_bytes,
        },
        macros::{classifier, map},
        maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
        programs::TcContext,
    };
    use mxcert_ebpf::wire::{
        ET_IPV4, ET_IPV6, ET_QINQ, ET_QINQ_OLD, ET_VLAN, IPPROTO_AH, IPPROTO_DSTOPTS,
        IPPROTO_FRAGMENT, IPPROTO_HIP, IPPROTO_HOPOPTS, IPPROTO_MOBILITY, IPPROTO_ROUTING,
        IPPROTO_SHIM6, IPPROTO_TCP, TCP_FIN, TCP_RST, TCP_SYN,
    };
    use mxcert_ebpf::{
        counter, ipv4_mapped, ChunkHeader, FlowKey, FlowState, CHUNK, FLAG_EGRESS,
        FLAG_HEADERS_ONLY, FLAG_RAW_IP, FLOW_DONE, HEADER_LEN, IFACE_RAW_IP, MAX_CHUNKS, MAX_FLOWS,
        MAX_FRAME, MAX_IFACES, MAX_IPV6_EXT_HEADERS, MAX_PORTS, MAX_VLAN_TAGS, RING_BYTES,
    };

    #[map]
    static MXCERT_EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

    /// Watched ports (host byte order) → 1.
    #[map]
    static MXCERT_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

    #[map]
    static MXCERT_FLOWS: LruHashMap<FlowKey, FlowState> =
        LruHashMap::with_max_entries(MAX_FLOWS, 0);

    /// ifindex → `IFACE_*` bits (absent: Ethernet).
    #[map]
    static MXCERT_IFACES: HashMap<u32, u32> = HashMap::with_max_entries(MAX_IFACES, 0);

    #[map]
    static MXCERT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

    /// Staging area of one record (header + chunk) and the CPU's frame counter. Per CPU: a TC
    /// program runs with BH disabled (egress: `__dev_queue_xmit`, ingress: softirq), so two
    /// runs never share a CPU's slot at once.
    #[repr(C)]
    struct Scratch {
        hdr: ChunkHeader,
        data: [u8; CHUNK as usize],
        next_frame: u32,
        _pad: u32,
    }

    #[map]
    static MXCERT_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

    // The entry points follow the template's `prog` → `try_prog` split, except that the verdict
    // is a constant: whatever the parse or copy did, the packet goes on unchanged.
    #[classifier]
    pub fn mxcert_tc_ingress(ctx: TcContext) -> i32 {
        let _ = try_mxcert_tc(&ctx, 0);
        TC_ACT_OK
    }

    #[classifier]
    pub fn mxcert_tc_egress(ctx: TcContext) -> i32 {
        let _ = try_mxcert_tc(&ctx, FLAG_EGRESS);
        TC_ACT_OK
    }

    #[inline(always)]
    fn count(idx: u32, n: u64) {
        if let Some(p) = MXCERT_COUNTERS.get_ptr_mut(idx) {
            // SAFETY: the map value of this CPU, exclusively ours for the run (see Scratch).
            unsafe { *p += n };
        }
    }

    #[inline(always)]
    fn be16(ctx: &TcContext, off: usize) -> Result<u16, i32> {
        ctx.load::<u16>(off).map(u16::from_be).map_err(|_| 0)
    }

    #[inline(always)]
    fn u8_at(ctx: &TcContext, off: usize) -> Result<u8, i32> {
        ctx.load::<u8>(off).map_err(|_| 0)
    }

    /// Where the TCP header starts and the flow's addresses (16-byte form).
    struct L3 {
        l4: usize,
        src: [u8; 16],
        dst: [u8; 16],
    }

    fn try_mxcert_tc(ctx: &TcContext, dir: u32) -> Result<(), i32> {
        // SAFETY: the context pointer the kernel handed us.
        let (ifindex, frame_len, skb_proto) = unsafe {
            let skb = &*ctx.skb.skb;
            (skb.ifindex, skb.len, skb.protocol)
        };
        // SAFETY: plain lookup; the value is only read.
        let raw_ip = unsafe { MXCERT_IFACES.get(ifindex) }.is_some_and(|v| *v & IFACE_RAW_IP != 0);
        let mut flags = dir;
        let (mut ethertype, mut off) = if raw_ip {
            flags |= FLAG_RAW_IP;
            // `__sk_buff.protocol` holds the big-endian EtherType (include/uapi/linux/bpf.h).
            (u16::from_be(skb_proto as u16), 0usize)
        } else {
            (be16(ctx, 12)?, 14usize)
        };
        for _ in 0..MAX_VLAN_TAGS {
            if ethertype != ET_VLAN && ethertype != ET_QINQ && ethertype != ET_QINQ_OLD {
                break;
            }
            ethertype = be16(ctx, off + 2)?;
            off += 4;
        }
        let l3 = match ethertype {
            ET_IPV4 => ipv4(ctx, off)?,
            ET_IPV6 => ipv6(ctx, off)?,
            _ => return Ok(()),
        };
        let sport = be16(ctx, l3.l4)?;
        let dport = be16(ctx, l3.l4 + 2)?;
        // SAFETY: plain lookups.
        let watched =
            unsafe { MXCERT_PORTS.get(sport).is_some() || MXCERT_PORTS.get(dport).is_some() };
        if !watched {
            return Ok(());
        }
        count(counter::MATCHED, 1);

        let mut cap_len = frame_len;
        let key = FlowKey::new(l3.src, sport, l3.dst, dport);
        // SAFETY: plain lookup; the value is only read.
        if unsafe { MXCERT_FLOWS.get(key) }.is_some_and(|s| s.flags & FLOW_DONE != 0) {
            let tcp_flags = u8_at(ctx, l3.l4 + 13)?;
            if tcp_flags & TCP_SYN != 0 {
                // A new connection on the same 4-tuple (the old one's close was never
                // reported): forget the mark and copy it like any other.
                let _ = MXCERT_FLOWS.remove(key);
            } else if tcp_flags & (TCP_FIN | TCP_RST) == 0 {
                count(counter::CUT_OFF, 1);
                count(counter::CUT_OFF_BYTES, u64::from(frame_len));
                return Ok(());
            } else {
                // FIN/RST of a done flow: the headers (so the session closes), not the payload.
                let doff = u32::from(u8_at(ctx, l3.l4 + 12)? >> 4) * 4;
                cap_len = (l3.l4 as u32 + doff).min(frame_len);
                flags |= FLAG_HEADERS_ONLY;
                count(counter::HEADERS_ONLY, 1);
                // A FIN often rides on the last data of a super-packet: its payload is cut too.
                count(counter::CUT_OFF_BYTES, u64::from(frame_len - cap_len));
            }
        }
        if cap_len > MAX_FRAME {
            cap_len = MAX_FRAME;
            count(counter::TRUNCATED, 1);
        }
        emit(ctx, ifindex, frame_len, cap_len, flags)
    }

    fn ipv4(ctx: &TcContext, off: usize) -> Result<L3, i32> {
        let vihl = u8_at(ctx, off)?;
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < 20 {
            return Err(0);
        }
        // Flags + fragment offset (RFC 791 §3.1): MF set or a non-zero offset is a fragment;
        // only the first one has the TCP header, and the decoder does not reassemble IP.
        if be16(ctx, off + 6)? & 0x3fff != 0 {
            count(counter::FRAGMENTS, 1);
            return Err(0);
        }
        if u8_at(ctx, off + 9)? != IPPROTO_TCP {
            return Err(0);
        }
        let s: [u8; 4] = ctx.load(off + 12).map_err(|_| 0)?;
        let d: [u8; 4] = ctx.load(off + 16).map_err(|_| 0)?;
        Ok(L3 {
            l4: off + ihl,
            src: ipv4_mapped(s),
            dst: ipv4_mapped(d),
        })
    }

    fn ipv6(ctx: &TcContext, off: usize) -> Result<L3, i32> {
        if u8_at(ctx, off)? >> 4 != 6 {
            return Err(0);
        }
        let mut next = u8_at(ctx, off + 6)?;
        let src: [u8; 16] = ctx.load(off + 8).map_err(|_| 0)?;
        let dst: [u8; 16] = ctx.load(off + 24).map_err(|_| 0)?;
        let mut l4 = off + 40;
        // Extension headers (RFC 8200 §4), bounded.
        for _ in 0..MAX_IPV6_EXT_HEADERS {
            match next {
                IPPROTO_TCP => {
                    return Ok(L3 { l4, src, dst });
                }
                IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_MOBILITY
                | IPPROTO_HIP | IPPROTO_SHIM6 => {
                    next = u8_at(ctx, l4)?;
                    l4 += (usize::from(u8_at(ctx, l4 + 1)?) + 1) * 8;
                }
                // AH counts its length in 4-octet units, minus 2 (RFC 4302 §2.2).
                IPPROTO_AH => {
                    next = u8_at(ctx, l4)?;
                    l4 += (usize::from(u8_at(ctx, l4 + 1)?) + 2) * 4;
                }
                IPPROTO_FRAGMENT => {
                    // Offset + M flag (RFC 8200 §4.5); an atomic fragment (both 0) is whole.
                    if be16(ctx, l4 + 2)? & 0xfff9 != 0 {
                        count(counter::FRAGMENTS, 1);
                        return Err(0);
                    }
                    next = u8_at(ctx, l4)?;
                    l4 += 8;
                }
                _ => return Err(0),
            }
        }
        Err(0)
    }

    /// Copies `cap_len` bytes of the frame into the ring, `CHUNK` bytes per record.
    fn emit(
        ctx: &TcContext,
        ifindex: u32,
        frame_len: u32,
        cap_len: u32,
        flags: u32,
    ) -> Result<(), i32> {
        let scratch = MXCERT_SCRATCH.get_ptr_mut(0).ok_or(0)?;
        // SAFETY: this CPU's slot, exclusively ours for the run (see Scratch).
        let scratch = unsafe { &mut *scratch };
        scratch.next_frame = scratch.next_frame.wrapping_add(1);
        scratch.hdr = ChunkHeader {
            // SAFETY: helpers without preconditions.
            ktime_ns: unsafe { bpf_ktime_get_ns() },
            frame_id: scratch.next_frame,
            cpu: unsafe { bpf_get_smp_processor_id() },
            ifindex,
            frame_len,
            cap_len,
            offset: 0,
            chunk_len: 0,
            flags,
        };
        let mut off: u32 = 0;
        for _ in 0..MAX_CHUNKS {
            if off >= cap_len {
                break;
            }
            let mut len = cap_len - off;
            if len > CHUNK {
                len = CHUNK;
            }
            // The verifier must see 1 <= len <= CHUNK on this path (bpf_skb_load_bytes takes
            // ARG_CONST_SIZE, kernel/bpf/verifier.c rejects a possibly-zero size). LLVM knows
            // len >= 1 from `off < cap_len` and would drop a plain check, so hide the value from
            // it first (black_box spills it to the stack, where the verifier keeps its bounds).
            let len = core::hint::black_box(len);
            if len == 0 || len > CHUNK {
                break;
            }
            scratch.hdr.offset = off;
            scratch.hdr.chunk_len = len;
            // SAFETY: `data` is CHUNK bytes and len <= CHUNK.
            let ret = unsafe {
                bpf_skb_load_bytes(
                    ctx.skb.skb as *const _,
                    off,
                    scratch.data.as_mut_ptr().cast(),
                    len,
                )
            };
            if ret != 0 {
                count(counter::LOAD_ERRORS, 1);
                return Err(0);
            }
            // SAFETY: the record is the first HEADER_LEN + len bytes of the scratch value.
            let ret = unsafe {
                bpf_ringbuf_output(
                    (&raw const MXCERT_EVENTS).cast_mut().cast(),
                    (scratch as *mut Scratch).cast(),
                    HEADER_LEN as u64 + u64::from(len),
                    0,
                )
            };
            if ret != 0 {
                count(counter::RING_FULL, 1);
                return Err(0);
            }
            off += len;
        }
        count(counter::DELIVERED, 1);
        count(counter::DELIVERED_BYTES, u64::from(cap_len));
        Ok(())
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        // SAFETY: the verifier rejects a program with a reachable infinite loop, so no panic
        // path may survive into the object; this tells the compiler so.
        unsafe { core::hint::unreachable_unchecked() }
    }
}

/// The TLS-library uprobes (issue #8, ../shared/notes/tls13-uprobes.md). They only read: no
/// helper that writes to user memory is called, so the MTA runs unchanged.
#[cfg(target_arch = "bpf")]
mod tls_probes {
    use aya_ebpf::{
        bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
        helpers::generated::{bpf_ktime_get_ns, bpf_probe_read_user, bpf_ringbuf_output},
        helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel},
        macros::{map, raw_tracepoint, uprobe, uretprobe},
        maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
        programs::{ProbeContext, RawTracePointContext, RetProbeContext},
    };
    use mxcert_ebpf::tls::{
        counter, SockEndpoints, SockOffsets, TlsEvent, AF_INET, AF_INET6, BIO_C_SET_FD, COMM_LEN,
        EVENT_LEN, EV_BIO_FD, EV_CERT, EV_EXEC, EV_EXIT, EV_GNUTLS_CERT, EV_GNUTLS_DEINIT,
        EV_GNUTLS_OURS, EV_GNUTLS_TRANSPORT, EV_OWN_CERT, EV_PEER, EV_SET_BIO, EV_SOCK,
        GNUTLS_DATUM_LEN, MAX_CERT, MAX_COMMS, MAX_GNUTLS_CHAIN, MAX_THREADS, RING_BYTES, SOCK_LEN,
    };

    #[map]
    static MXCERT_TLS_EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

    /// Allow-listed process names (`comm`, NUL-padded) → 1. Checked in the kernel before
    /// anything is copied, so certificate loads of unrelated programs never leave it.
    #[map]
    static MXCERT_TLS_COMMS: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(MAX_COMMS, 0);

    /// Thread id → the `SSL*` of the libssl call it is in (set on entry, overwritten by the
    /// next call; a stale entry is harmless because libssl only parses peer certificates
    /// inside such a call).
    #[map]
    static MXCERT_TLS_CURRENT: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_THREADS, 0);

    /// Thread (pid_tgid) → (session, `unsigned *list_size`) of the `gnutls_certificate_get_peers`
    /// call it is in, for the return probe (a uretprobe sees no arguments). Only allow-listed
    /// threads are entered; the return probe removes the entry.
    #[map]
    static MXCERT_TLS_GNUTLS_CALLS: LruHashMap<u64, [u64; 2]> =
        LruHashMap::with_max_entries(MAX_THREADS, 0);

    /// (tgid, `SSL*`) whose socket was sent as `EV_SOCK` (or found `AF_INET6`) → 1, so the
    /// tracepoint programs send one record per connection. `SSL_set_bio` removes the key: an
    /// `SSL*` given a new socket (or a freed one's address reused for the next session) is
    /// looked at again.
    #[map]
    static MXCERT_TLS_SOCK_SEEN: LruHashMap<[u64; 2], u8> =
        LruHashMap::with_max_entries(MAX_THREADS, 0);

    /// The `struct sock_common` offsets ([`SockOffsets`]), written by user space from the
    /// kernel's BTF before the socket tracepoints attach.
    #[map]
    static MXCERT_TLS_SOCK_OFFSETS: Array<SockOffsets> = Array::with_max_entries(1, 0);

    #[map]
    static MXCERT_TLS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

    /// Staging area of one certificate record. Per CPU: a uprobe program runs with migration
    /// disabled and is not preempted by another BPF program of this type on the CPU
    /// (kernel/trace/bpf_trace.c, `bpf_prog_active` guard).
    #[repr(C)]
    struct CertScratch {
        hdr: TlsEvent,
        data: [u8; MAX_CERT as usize],
    }

    #[map]
    static MXCERT_TLS_SCRATCH: PerCpuArray<CertScratch> = PerCpuArray::with_max_entries(1, 0);

    #[inline(always)]
    fn count(idx: u32, n: u64) {
        if let Some(p) = MXCERT_TLS_COUNTERS.get_ptr_mut(idx) {
            // SAFETY: this CPU's value, exclusively ours for the run.
            unsafe { *p += n };
        }
    }

    /// (tgid, tid) of the caller, if its name is on the allow-list.
    #[inline(always)]
    fn allowed() -> Option<(u32, u32)> {
        let comm = bpf_get_current_comm().ok()?;
        // SAFETY: plain lookup.
        unsafe { MXCERT_TLS_COMMS.get(&comm) }?;
        let id = bpf_get_current_pid_tgid();
        Some(((id >> 32) as u32, id as u32))
    }

    #[inline(always)]
    fn event(kind: u32, tgid: u32, tid: u32) -> TlsEvent {
        TlsEvent {
            // SAFETY: helper without preconditions.
            ktime_ns: unsafe { bpf_ktime_get_ns() },
            ssl: 0,
            bio: 0,
            caller: 0,
            tgid,
            tid,
            kind,
            fd: -1,
            der_len: 0,
            data_len: 0,
            index: 0,
            count: 0,
        }
    }

    /// Whether a record wakes the reader. A wakeup is an IRQ work item raised in the MTA's
    /// context (kernel/bpf/ringbuf.c, `bpf_ringbuf_commit` → `irq_work_queue`): a self-IPI,
    /// exits to the hypervisor in a VM, then the reader's wakeup, possibly on the MTA's CPU
    /// (a uprobe program runs preemptible, migration disabled). Measured with
    /// `cargo xtask bench tls-library`: 4-12 µs per record, ten times what everything else a
    /// probe does costs. The kernel's default wakes whenever the reader had caught up, which
    /// for a handshake's sparse records is nearly every record. So records do not wake the
    /// reader: the daemon polls this ring without blocking after every poll of its packet
    /// source, and `TlsProbes::poll` waits in short ticks. The exception is an exec (once per
    /// process): the new process's maps are read best while it runs. `FORCE` there, because
    /// the default wakes only when the reader consumed everything before the record, which the
    /// unannounced records prevent.
    #[derive(Clone, Copy)]
    enum Wake {
        No,
        Now,
    }

    impl Wake {
        #[inline(always)]
        fn flags(self) -> u64 {
            match self {
                Wake::No => u64::from(BPF_RB_NO_WAKEUP),
                Wake::Now => u64::from(BPF_RB_FORCE_WAKEUP),
            }
        }
    }

    #[inline(always)]
    fn output(ev: &TlsEvent, wake: Wake) {
        // SAFETY: `ev` is EVENT_LEN readable bytes.
        let ret = unsafe {
            bpf_ringbuf_output(
                (&raw const MXCERT_TLS_EVENTS).cast_mut().cast(),
                (ev as *const TlsEvent).cast_mut().cast(),
                EVENT_LEN as u64,
                wake.flags(),
            )
        };
        if ret != 0 {
            count(counter::RING_FULL, 1);
        }
    }

    #[uprobe]
    pub fn mxcert_ssl_enter(ctx: ProbeContext) -> u32 {
        if let (Some((_, tid)), Some(ssl)) = (allowed(), ctx.arg::<u64>(0)) {
            // Most calls are on the thread's current `SSL*` already (SSL_read/SSL_write of one
            // session): the value is written in place, without the LRU insert's list and
            // bucket locks (kernel/bpf/hashtab.c, `htab_lru_map_update_elem`).
            match MXCERT_TLS_CURRENT.get_ptr_mut(&tid) {
                // SAFETY: the entry of this thread, written only by this thread.
                Some(p) => unsafe {
                    if *p != ssl {
                        *p = ssl;
                    }
                },
                None => {
                    let _ = MXCERT_TLS_CURRENT.insert(&tid, &ssl, 0);
                }
            }
        }
        0
    }

    /// Clears the "socket sent" mark of (`tgid`, `ssl`): its next socket I/O is looked at.
    /// Looked up first: a new `SSL*` has none, and a lookup costs less than the LRU delete's
    /// locks.
    #[inline(always)]
    fn forget_sock(tgid: u32, ssl: u64) {
        let key = [u64::from(tgid), ssl];
        // SAFETY: plain lookup.
        if unsafe { MXCERT_TLS_SOCK_SEEN.get(&key) }.is_some() {
            let _ = MXCERT_TLS_SOCK_SEEN.remove(&key);
        }
    }

    #[uprobe]
    pub fn mxcert_ssl_set_bio(ctx: ProbeContext) -> u32 {
        if let Some((tgid, tid)) = allowed() {
            let mut ev = event(EV_SET_BIO, tgid, tid);
            ev.ssl = ctx.arg::<u64>(0).unwrap_or(0);
            forget_sock(tgid, ev.ssl);
            ev.bio = ctx.arg::<u64>(1).unwrap_or(0);
            output(&ev, Wake::No);
        }
        0
    }

    #[uprobe]
    pub fn mxcert_bio_int_ctrl(ctx: ProbeContext) -> u32 {
        if ctx.arg::<i32>(1) != Some(BIO_C_SET_FD) {
            return 0;
        }
        if let Some((tgid, tid)) = allowed() {
            let mut ev = event(EV_BIO_FD, tgid, tid);
            ev.bio = ctx.arg::<u64>(0).unwrap_or(0);
            ev.fd = ctx.arg::<i32>(3).unwrap_or(-1);
            output(&ev, Wake::No);
        }
        0
    }

    /// Tracepoints `sock_send_length(struct sock *sk, int ret, int flags)` and
    /// `sock_recv_length(...)` (include/trace/events/sock.h, Linux 6.4+), fired by
    /// `sock_sendmsg_nosec`/`sock_recvmsg_nosec` (net/socket.c) for every socket send/receive,
    /// in the context of the thread doing the I/O. Raw tracepoints, not kprobe/fentry: they
    /// also exist on kernels built without kprobes or BPF trampolines (Firecracker guests).
    ///
    /// An allow-listed thread with a current `SSL*` not yet reported does this I/O for that
    /// `SSL*`: the current `SSL*` is set on entry of every libssl call that can handshake, and
    /// the first TCP I/O after a new `SSL*` (or after `SSL_set_bio`, which clears the reported
    /// mark) is the handshake's, inside that call. The previous session's `SSL*`, left current
    /// after its last call, was reported during its own handshake, so the plaintext I/O of the
    /// next session (SMTP before STARTTLS) is not taken for it. Postfix smtpd/smtp and Exim run
    /// one session at a time per process, single-threaded. I/O on non-IP sockets inside a
    /// libssl call (Postfix's session cache through tlsmgr, a UNIX socket) is skipped.
    #[raw_tracepoint(tracepoint = "sock_send_length")]
    pub fn mxcert_sock_send(ctx: RawTracePointContext) -> u32 {
        let _ = tcp_msg(ctx.arg(0));
        0
    }

    #[raw_tracepoint(tracepoint = "sock_recv_length")]
    pub fn mxcert_sock_recv(ctx: RawTracePointContext) -> u32 {
        let _ = tcp_msg(ctx.arg(0));
        0
    }

    #[inline(always)]
    fn tcp_msg(sk: u64) -> Result<(), i32> {
        // Host-wide, on every socket I/O: the cheapest test comes first. Only allow-listed
        // threads get a current `SSL*`, so one lookup by thread id ends most calls; an
        // allow-listed thread's I/O after its connection was sent ends at the second. The name
        // check (a 16-byte key hashed) runs once per connection: a thread id reused by another
        // program after an allow-listed thread's exit is stopped there.
        let id = bpf_get_current_pid_tgid();
        let (tgid, tid) = ((id >> 32) as u32, id as u32);
        // SAFETY: plain lookup.
        let Some(ssl) = (unsafe { MXCERT_TLS_CURRENT.get(&tid) }).copied() else {
            return Ok(());
        };
        let key = [u64::from(tgid), ssl];
        // SAFETY: plain lookup.
        if unsafe { MXCERT_TLS_SOCK_SEEN.get(&key) }.is_some() {
            return Ok(());
        }
        if allowed().is_none() {
            return Ok(());
        }
        // `struct sock` starts with `struct sock_common` (include/net/sock.h). Its offsets come
        // from the kernel's BTF through user space (`SockOffsets`; its defaults are the IPv4
        // layout every kernel with these tracepoints has); the IPv6 addresses only with BTF.
        // An array entry exists from the start, zeroed: a zero family offset (impossible,
        // skc_daddr is at 0) means user space wrote nothing, and the defaults hold.
        let off = match MXCERT_TLS_SOCK_OFFSETS.get(0) {
            Some(o) if o.family != 0 => *o,
            _ => SockOffsets::default(),
        };
        let family = read_kernel::<u16>(sk + u64::from(off.family))?;
        if family != AF_INET && family != AF_INET6 {
            // A UNIX socket (Postfix's tlsmgr cache): the TCP one comes next.
            return Ok(());
        }
        if family == AF_INET6 && off.v6_daddr == 0 {
            let _ = MXCERT_TLS_SOCK_SEEN.insert(&key, &1, 0);
            count(counter::SOCK_NOT_INET, 1);
            return Ok(());
        }
        let _ = MXCERT_TLS_SOCK_SEEN.insert(&key, &1, 0);
        let mut rec = SockRecord {
            hdr: event(EV_SOCK, tgid, tid),
            ep: SockEndpoints {
                family: AF_INET,
                // skc_num in host order, skc_dport in network order.
                local_port: read_kernel::<u16>(sk + u64::from(off.num))?,
                remote_port: u16::from_be(read_kernel::<u16>(sk + u64::from(off.dport))?),
                ..SockEndpoints::default()
            },
        };
        rec.hdr.ssl = ssl;
        rec.hdr.data_len = SOCK_LEN as u32;
        if family == AF_INET6 {
            let remote = read_kernel::<[u8; 16]>(sk + u64::from(off.v6_daddr))?;
            let local = read_kernel::<[u8; 16]>(sk + u64::from(off.v6_rcv_saddr))?;
            match (v4_mapped(&remote), v4_mapped(&local)) {
                // A dual-stack socket's IPv4 peer (net/ipv6/tcp_ipv6.c, `tcp_v6_syn_recv_sock`
                // and `tcp_v6_connect` give both addresses the ::ffff: form): what the wire
                // and the session keys show is IPv4.
                (Some(r), Some(l)) => {
                    rec.ep.remote[..4].copy_from_slice(&r);
                    rec.ep.local[..4].copy_from_slice(&l);
                    count(counter::SOCKETS_V4_MAPPED, 1);
                }
                _ => {
                    rec.ep.family = AF_INET6;
                    rec.ep.remote = remote;
                    rec.ep.local = local;
                    count(counter::SOCKETS_V6, 1);
                }
            }
        } else {
            let remote = read_kernel::<[u8; 4]>(sk + u64::from(off.daddr))?;
            let local = read_kernel::<[u8; 4]>(sk + u64::from(off.rcv_saddr))?;
            rec.ep.remote[..4].copy_from_slice(&remote);
            rec.ep.local[..4].copy_from_slice(&local);
        }
        // SAFETY: `rec` is EVENT_LEN + SOCK_LEN readable bytes.
        let ret = unsafe {
            bpf_ringbuf_output(
                (&raw const MXCERT_TLS_EVENTS).cast_mut().cast(),
                (&raw mut rec).cast(),
                (EVENT_LEN + SOCK_LEN) as u64,
                Wake::No.flags(),
            )
        };
        if ret != 0 {
            count(counter::RING_FULL, 1);
            return Err(0);
        }
        count(counter::SOCKETS, 1);
        Ok(())
    }

    /// A kernel read through the checked helper (a fault is counted, not fatal).
    #[inline(always)]
    fn read_kernel<T>(addr: u64) -> Result<T, i32> {
        // SAFETY: the helper checks the read.
        unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(|_| {
            count(counter::READ_ERRORS, 1);
            0
        })
    }

    /// The IPv4 address of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2).
    #[inline(always)]
    fn v4_mapped(a: &[u8; 16]) -> Option<[u8; 4]> {
        let prefix = a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff;
        prefix.then(|| [a[12], a[13], a[14], a[15]])
    }

    #[repr(C)]
    struct SockRecord {
        hdr: TlsEvent,
        ep: SockEndpoints,
    }

    /// `d2i_X509(X509 **a, const unsigned char **in, long len)`: at entry `*in` points at the
    /// DER and `len` is its length.
    #[uprobe]
    pub fn mxcert_d2i_x509(ctx: ProbeContext) -> u32 {
        let _ = try_d2i_x509(&ctx);
        0
    }

    fn try_d2i_x509(ctx: &ProbeContext) -> Result<(), i32> {
        let Some((tgid, tid)) = allowed() else {
            count(counter::FILTERED, 1);
            return Ok(());
        };
        // A peer's chain is parsed inside a libssl call; a thread that never entered one (a
        // CA-bundle load, `openssl x509`) is dropped here, before anything is copied, so such
        // loads cannot fill the ring. User space then checks the return address.
        // SAFETY: plain lookup.
        let Some(ssl) = (unsafe { MXCERT_TLS_CURRENT.get(&tid) }).copied() else {
            count(counter::OUTSIDE_SSL, 1);
            return Ok(());
        };
        let inp: u64 = ctx.arg(1).ok_or(0)?;
        let len: i64 = ctx.arg(2).ok_or(0)?;
        if len <= 0 || inp == 0 {
            return Ok(());
        }
        // SAFETY: the probed thread's own registers; reads of user memory go through the
        // checked helper.
        let sp = unsafe { (*ctx.regs).rsp };
        let caller = read_u64(sp)?;
        let der = read_u64(inp)?;
        let der_len = if len > u32::MAX as i64 {
            u32::MAX
        } else {
            len as u32
        };
        let mut hdr = event(EV_CERT, tgid, tid);
        hdr.ssl = ssl;
        hdr.caller = caller;
        send_cert(hdr, der, der_len, Wake::No)
    }

    /// Sends `hdr` followed by up to `MAX_CERT` bytes of the DER at `der` (user memory) as one
    /// ring record, through the per-CPU scratch (a 16 KiB copy does not fit the 512-byte BPF
    /// stack), exactly as long as the copy. `der_len` 0 sends the header alone.
    #[inline(always)]
    fn send_cert(mut hdr: TlsEvent, der: u64, der_len: u32, wake: Wake) -> Result<(), i32> {
        let scratch = MXCERT_TLS_SCRATCH.get_ptr_mut(0).ok_or(0)?;
        // SAFETY: this CPU's slot, exclusively ours for the run.
        let scratch = unsafe { &mut *scratch };
        let mut copy = der_len;
        if copy > MAX_CERT {
            copy = MAX_CERT;
            count(counter::TRUNCATED, 1);
        }
        // The verifier must see copy <= MAX_CERT (see the TC program's `emit`).
        let copy = core::hint::black_box(copy);
        if copy > MAX_CERT {
            return Ok(());
        }
        if copy > 0 {
            // SAFETY: `data` is MAX_CERT bytes and copy <= MAX_CERT.
            let ret = unsafe {
                bpf_probe_read_user(scratch.data.as_mut_ptr().cast(), copy, der as *const _)
            };
            if ret != 0 {
                count(counter::READ_ERRORS, 1);
                return Err(0);
            }
        }
        hdr.der_len = der_len;
        hdr.data_len = copy;
        scratch.hdr = hdr;
        // SAFETY: the record is the first EVENT_LEN + copy bytes of the scratch value.
        let ret = unsafe {
            bpf_ringbuf_output(
                (&raw const MXCERT_TLS_EVENTS).cast_mut().cast(),
                (scratch as *mut CertScratch).cast(),
                EVENT_LEN as u64 + u64::from(copy),
                wake.flags(),
            )
        };
        if ret != 0 {
            count(counter::RING_FULL, 1);
            return Err(0);
        }
        count(counter::CERTS, 1);
        count(counter::CERT_BYTES, u64::from(copy));
        Ok(())
    }

    /// `gnutls_certificate_get_peers(gnutls_session_t session, unsigned int *list_size)` entry
    /// (lib/cert-session.c): the arguments, kept for the return probe.
    #[uprobe]
    pub fn mxcert_gnutls_peers(ctx: ProbeContext) -> u32 {
        if allowed().is_some() {
            let args = [
                ctx.arg::<u64>(0).unwrap_or(0),
                ctx.arg::<u64>(1).unwrap_or(0),
            ];
            let _ = MXCERT_TLS_GNUTLS_CALLS.insert(&bpf_get_current_pid_tgid(), &args, 0);
        }
        0
    }

    /// Thread id → the `SSL*` of its `SSL_get0/1_peer_certificate` call in progress, for the
    /// return probe (0: none in progress). LRU: the entries of threads gone are evicted.
    #[map]
    static MXCERT_TLS_PEER_CALLS: LruHashMap<u32, u64> =
        LruHashMap::with_max_entries(MAX_THREADS, 0);

    #[uprobe]
    pub fn mxcert_peer_cert_enter(ctx: ProbeContext) -> u32 {
        if let (Some((_, tid)), Some(ssl)) = (allowed(), ctx.arg::<u64>(0)) {
            if ssl == 0 {
                return 0;
            }
            // A thread's entry stays, 0 between calls (see the return probe): written in
            // place, without the LRU insert's locks.
            match MXCERT_TLS_PEER_CALLS.get_ptr_mut(&tid) {
                // SAFETY: the entry of this thread, written only by this thread.
                Some(p) => unsafe { *p = ssl },
                None => {
                    let _ = MXCERT_TLS_PEER_CALLS.insert(&tid, &ssl, 0);
                }
            }
        }
        0
    }

    /// Its return: a `const gnutls_datum_t *` to `*list_size` raw DER certificates, the peer's
    /// chain in wire order, or NULL when the peer sent none (or the session has no
    /// certificate credentials).
    #[uretprobe]
    pub fn mxcert_gnutls_peers_ret(ctx: RetProbeContext) -> u32 {
        let _ = try_gnutls_peers_ret(&ctx);
        0
    }

    fn try_gnutls_peers_ret(ctx: &RetProbeContext) -> Result<(), i32> {
        let id = bpf_get_current_pid_tgid();
        // SAFETY: plain lookup; the value is copied out before the entry is removed.
        let Some(args) = (unsafe { MXCERT_TLS_GNUTLS_CALLS.get(&id) }).copied() else {
            return Ok(());
        };
        let _ = MXCERT_TLS_GNUTLS_CALLS.remove(&id);
        count(counter::GNUTLS_PEERS, 1);
        let (tgid, tid) = ((id >> 32) as u32, id as u32);
        let list: u64 = ctx.ret();
        let mut hdr = event(EV_GNUTLS_CERT, tgid, tid);
        hdr.ssl = args[0];
        let n = if list == 0 || args[1] == 0 {
            0
        } else {
            read_u32(args[1])?
        };
        if n == 0 {
            output(&hdr, Wake::No);
            return Ok(());
        }
        hdr.count = n;
        // Bounded for the verifier; user space sees `count` > MAX_GNUTLS_CHAIN as overflow.
        for i in 0..MAX_GNUTLS_CHAIN {
            if i >= n {
                break;
            }
            let datum = list + u64::from(i) * GNUTLS_DATUM_LEN;
            let data = read_u64(datum)?;
            let size = read_u32(datum + 8)?;
            hdr.index = i;
            send_cert(hdr, data, if data == 0 { 0 } else { size }, Wake::No)?;
        }
        Ok(())
    }

    /// `gnutls_transport_set_int2(session, int recv_fd, int send_fd)` entry (lib/state.c).
    #[uprobe]
    pub fn mxcert_gnutls_transport_int(ctx: ProbeContext) -> u32 {
        transport(ctx.arg::<u64>(0), ctx.arg::<i32>(1));
        0
    }

    /// `gnutls_transport_set_ptr{,2}(session, gnutls_transport_ptr_t recv, ...)` entry: the
    /// pointer is an fd cast for applications using the default push/pull functions (Exim);
    /// a value beyond any fd is a real pointer and is sent as fd -1.
    #[uprobe]
    pub fn mxcert_gnutls_transport(ctx: ProbeContext) -> u32 {
        let ptr = ctx.arg::<u64>(1).unwrap_or(u64::MAX);
        transport(
            ctx.arg::<u64>(0),
            Some(if ptr > i32::MAX as u64 {
                -1
            } else {
                ptr as i32
            }),
        );
        0
    }

    #[inline(always)]
    fn transport(session: Option<u64>, fd: Option<i32>) {
        if let Some((tgid, tid)) = allowed() {
            let mut ev = event(EV_GNUTLS_TRANSPORT, tgid, tid);
            ev.ssl = session.unwrap_or(0);
            // A new connection on this session object: its socket is looked at again.
            forget_sock(tgid, ev.ssl);
            ev.fd = fd.unwrap_or(-1);
            output(&ev, Wake::No);
        }
    }

    /// `gnutls_deinit(session)` entry.
    #[uprobe]
    pub fn mxcert_gnutls_deinit(ctx: ProbeContext) -> u32 {
        if let Some((tgid, tid)) = allowed() {
            let mut ev = event(EV_GNUTLS_DEINIT, tgid, tid);
            ev.ssl = ctx.arg::<u64>(0).unwrap_or(0);
            output(&ev, Wake::No);
        }
        0
    }

    /// The handshake of this `SSL*` is over: the application asks for the peer's certificate
    /// (NULL: the peer sent none). Tells user space the chain is complete.
    #[uretprobe]
    pub fn mxcert_peer_cert_ret(ctx: RetProbeContext) -> u32 {
        let Some((tgid, tid)) = allowed() else {
            return 0;
        };
        let Some(p) = MXCERT_TLS_PEER_CALLS.get_ptr_mut(&tid) else {
            return 0;
        };
        // SAFETY: the entry of this thread, written only by this thread. Reset to 0 rather
        // than removed (no LRU delete per call): 0 means "no call in progress".
        let ssl = unsafe { core::mem::replace(&mut *p, 0) };
        if ssl == 0 {
            return 0;
        }
        let mut ev = event(EV_PEER, tgid, tid);
        ev.ssl = ssl;
        ev.caller = ctx.ret::<u64>();
        output(&ev, Wake::No);
        0
    }

    /// `sched_process_exec` fires after the new image replaced the old one, its name included
    /// (fs/exec.c: `begin_new_exec` sets the comm, `exec_binprm` then traces), so the
    /// allow-list sees the new program's name. A raw tracepoint: attached through bpf(2) by
    /// name, it needs no tracefs mount.
    #[raw_tracepoint(tracepoint = "sched_process_exec")]
    pub fn mxcert_sched_exec(_ctx: RawTracePointContext) -> i32 {
        if let Some((tgid, tid)) = allowed() {
            output(&event(EV_EXEC, tgid, tid), Wake::Now);
        }
        0
    }

    /// `sched_process_exit` fires for every exiting thread (kernel/exit.c `do_exit`); only the
    /// main thread's exit (tid == tgid) is sent, the process's end for user space.
    #[raw_tracepoint(tracepoint = "sched_process_exit")]
    pub fn mxcert_sched_exit(_ctx: RawTracePointContext) -> i32 {
        if let Some((tgid, tid)) = allowed() {
            if tgid == tid {
                output(&event(EV_EXIT, tgid, tid), Wake::No);
            }
        }
        0
    }

    /// Thread (pid_tgid) → (DER start, return address, `SSL*`) of the `i2d_X509` call in
    /// progress, for the return probe. LRU: an entry whose return was never seen is evicted.
    #[map]
    static MXCERT_TLS_I2D_CALLS: LruHashMap<u64, [u64; 3]> =
        LruHashMap::with_max_entries(MAX_THREADS, 0);

    /// `i2d_X509(const X509 *x, unsigned char **out)` entry. libssl encodes each certificate of
    /// its own Certificate message with it (`ssl_add_cert_to_wpacket`, ssl/statem/statem_lib.c:
    /// once with `out` NULL for the length, once into the handshake buffer); those two are the
    /// only calls of `i2d_X509` in OpenSSL 3.0's libssl (`objdump -d`: the session
    /// serialisation, `i2d_SSL_SESSION`, goes through ASN.1 templates inside libcrypto). Only
    /// the second is remembered: the DER is complete at the return.
    #[uprobe]
    pub fn mxcert_i2d_x509(ctx: ProbeContext) -> u32 {
        let _ = try_i2d_x509(&ctx);
        0
    }

    fn try_i2d_x509(ctx: &ProbeContext) -> Result<(), i32> {
        let Some((_, tid)) = allowed() else {
            return Ok(());
        };
        // Our chain is encoded inside a libssl call, like the peer's is parsed in one.
        // SAFETY: plain lookup.
        let Some(ssl) = (unsafe { MXCERT_TLS_CURRENT.get(&tid) }).copied() else {
            return Ok(());
        };
        let out: u64 = ctx.arg(1).ok_or(0)?;
        if out == 0 {
            return Ok(());
        }
        let start = read_u64(out)?;
        if start == 0 {
            // i2d allocates the buffer itself: not libssl's way of writing a message.
            return Ok(());
        }
        // SAFETY: the probed thread's own registers; the stack word is read through the
        // checked helper.
        let sp = unsafe { (*ctx.regs).rsp };
        let caller = read_u64(sp)?;
        let _ = MXCERT_TLS_I2D_CALLS.insert(&bpf_get_current_pid_tgid(), &[start, caller, ssl], 0);
        Ok(())
    }

    /// Its return: the `int` result is the length written at the remembered start (negative:
    /// an error, nothing sent).
    #[uretprobe]
    pub fn mxcert_i2d_ret(ctx: RetProbeContext) -> u32 {
        let id = bpf_get_current_pid_tgid();
        // SAFETY: plain lookup; the value is copied out before the entry is removed.
        let Some(call) = (unsafe { MXCERT_TLS_I2D_CALLS.get(&id) }).copied() else {
            return 0;
        };
        let _ = MXCERT_TLS_I2D_CALLS.remove(&id);
        // An `int` in eax: the upper half of rax is undefined (SysV x86-64 ABI).
        let len = ctx.ret::<u64>() as u32 as i32;
        if len <= 0 {
            return 0;
        }
        let mut hdr = event(EV_OWN_CERT, (id >> 32) as u32, id as u32);
        hdr.ssl = call[2];
        hdr.caller = call[1];
        let _ = send_cert(hdr, call[0], len as u32, Wake::No);
        0
    }

    /// Thread (pid_tgid) → the session of its `gnutls_certificate_get_ours` call in progress.
    #[map]
    static MXCERT_TLS_GNUTLS_OURS: LruHashMap<u64, u64> =
        LruHashMap::with_max_entries(MAX_THREADS, 0);

    /// `gnutls_certificate_get_ours(gnutls_session_t session)` entry (lib/cert-session.c);
    /// Exim calls it after each handshake.
    #[uprobe]
    pub fn mxcert_ours(ctx: ProbeContext) -> u32 {
        if let (Some(_), Some(session)) = (allowed(), ctx.arg::<u64>(0)) {
            let _ = MXCERT_TLS_GNUTLS_OURS.insert(&bpf_get_current_pid_tgid(), &session, 0);
        }
        0
    }

    /// Its return: a `const gnutls_datum_t *`, the certificate we sent in the session's last
    /// handshake (the leaf only), NULL when we sent none.
    #[uretprobe]
    pub fn mxcert_ours_ret(ctx: RetProbeContext) -> u32 {
        let _ = try_gnutls_ours_ret(&ctx);
        0
    }

    fn try_gnutls_ours_ret(ctx: &RetProbeContext) -> Result<(), i32> {
        let id = bpf_get_current_pid_tgid();
        // SAFETY: plain lookup; the value is copied out before the entry is removed.
        let Some(session) = (unsafe { MXCERT_TLS_GNUTLS_OURS.get(&id) }).copied() else {
            return Ok(());
        };
        let _ = MXCERT_TLS_GNUTLS_OURS.remove(&id);
        let datum: u64 = ctx.ret();
        let mut hdr = event(EV_GNUTLS_OURS, (id >> 32) as u32, id as u32);
        hdr.ssl = session;
        if datum == 0 {
            output(&hdr, Wake::No);
            return Ok(());
        }
        let data = read_u64(datum)?;
        let size = read_u32(datum + 8)?;
        hdr.count = 1;
        send_cert(hdr, data, if data == 0 { 0 } else { size }, Wake::No)
    }

    #[inline(always)]
    fn read_u32(addr: u64) -> Result<u32, i32> {
        let mut v: u32 = 0;
        // SAFETY: 4 bytes into a local.
        let ret = unsafe { bpf_probe_read_user((&raw mut v).cast(), 4, addr as *const _) };
        if ret != 0 {
            count(counter::READ_ERRORS, 1);
            return Err(ret as i32);
        }
        Ok(v)
    }

    #[inline(always)]
    fn read_u64(addr: u64) -> Result<u64, i32> {
        let mut v: u64 = 0;
        // SAFETY: 8 bytes into a local.
        let ret = unsafe { bpf_probe_read_user((&raw mut v).cast(), 8, addr as *const _) };
        if ret != 0 {
            count(counter::READ_ERRORS, 1);
            return Err(ret as i32);
        }
        Ok(v)
    }
}
