//! Types and constants shared between mxcert's TC classifier (`src/main.rs`, built for
//! `bpfel-unknown-none`) and user space (`mxcert::capture::ebpf`, with the `user` feature).
//!
//! Everything that crosses the kernel/user boundary is a `#[repr(C)]`, `Copy` type with
//! fixed-width fields and explicit padding, so both compilers lay it out identically; map names
//! and sizes are constants here so neither side can drift.
//!
//! The data path: the program copies each selected frame into the [`MAP_EVENTS`] ring buffer as
//! one or more records, each a [`ChunkHeader`] followed by `chunk_len` frame bytes. A frame
//! longer than [`CHUNK`] (a GSO/GRO super-packet of up to 64 KiB) is split into chunks that user
//! space joins again; the chunks of one frame are written back to back by one CPU, so they
//! arrive in order, never interleaved with another frame of the same CPU.
#![no_std]

/// SMTP ports watched by default: 25 (MTA relay), 587 (submission), 465 (implicit TLS, RFC 8314).
pub const DEFAULT_PORTS: [u16; 3] = [25, 587, 465];

/// Program names in the object (the function names of the two entry points).
pub const PROG_INGRESS: &str = "mxcert_tc_ingress";
pub const PROG_EGRESS: &str = "mxcert_tc_egress";

/// Map names in the object (the names of the `static`s in `src/main.rs`).
pub const MAP_EVENTS: &str = "MXCERT_EVENTS";
pub const MAP_PORTS: &str = "MXCERT_PORTS";
pub const MAP_FLOWS: &str = "MXCERT_FLOWS";
pub const MAP_IFACES: &str = "MXCERT_IFACES";
pub const MAP_COUNTERS: &str = "MXCERT_COUNTERS";

/// Ring buffer size. 8 MiB holds ~120 full 64 KiB super-packets or ~100 000 small segments:
/// enough for user space to fall a few hundred milliseconds behind on a busy gateway before
/// anything is dropped (and counted in [`counter::RING_FULL`]). Must be a power-of-two multiple
/// of the page size (kernel/bpf/ringbuf.c, `ringbuf_map_alloc`).
pub const RING_BYTES: u32 = 8 << 20;

/// Most watched ports (entries of [`MAP_PORTS`]).
pub const MAX_PORTS: u32 = 64;

/// Most flows marked done at once ([`MAP_FLOWS`], an LRU hash: when full, the kernel evicts the
/// least recently used entry, i.e. an idle flow, whose packets are then copied again).
pub const MAX_FLOWS: u32 = 65_536;

/// Most interfaces one source attaches to ([`MAP_IFACES`]).
pub const MAX_IFACES: u32 = 64;

/// Frame bytes per ring-buffer record. The program stages a record in a per-CPU array value,
/// which the kernel limits to 32 KiB (`PCPU_MIN_UNIT_SIZE`, include/linux/percpu.h); 16 KiB
/// keeps a 64 KiB super-packet to five records.
pub const CHUNK: u32 = 16 * 1024;

/// Most chunks per frame. The program's copy loop runs at most this many times (the verifier
/// needs a bound).
pub const MAX_CHUNKS: u32 = 5;

/// Longest frame delivered whole: 80 KiB covers the largest GSO/GRO packet of a standard stack
/// (IP total length ≤ 65 535, plus link headers and VLAN tags). Longer frames (BIG TCP, which
/// raises `gso_max_size` past 64 KiB) are cut here and counted in [`counter::TRUNCATED`].
pub const MAX_FRAME: u32 = CHUNK * MAX_CHUNKS;

/// Most VLAN tags (802.1Q / 802.1ad / pre-standard QinQ) the program walks through; the same
/// bound as the offline decoder's `MAX_VLAN_TAGS`.
pub const MAX_VLAN_TAGS: u32 = 8;

/// Most IPv6 extension headers walked (RFC 8200 §4.1 allows each once, destination options
/// twice; a longer chain is not a segment we can follow).
pub const MAX_IPV6_EXT_HEADERS: u32 = 8;

/// [`ChunkHeader::flags`]: the frame was seen on egress (else ingress).
pub const FLAG_EGRESS: u32 = 1;
/// [`ChunkHeader::flags`]: the frame starts with the IP header (an L3 interface: tun,
/// WireGuard, ipip), else with an Ethernet header.
pub const FLAG_RAW_IP: u32 = 2;
/// [`ChunkHeader::flags`]: only the headers were copied (FIN/RST of a flow marked done).
pub const FLAG_HEADERS_ONLY: u32 = 4;

/// [`MAP_IFACES`] value bit: the interface has no link-layer header (ARPHRD_NONE and friends).
pub const IFACE_RAW_IP: u32 = 1;

/// Header of one ring-buffer record; `chunk_len` frame bytes follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkHeader {
    /// `bpf_ktime_get_ns()` when the frame was seen: CLOCK_MONOTONIC (kernel/bpf/helpers.c).
    pub ktime_ns: u64,
    /// Per-CPU frame counter: the chunks of one frame share it.
    pub frame_id: u32,
    /// CPU that wrote the frame (chunks of one frame come from one CPU).
    pub cpu: u32,
    pub ifindex: u32,
    /// Length of the frame on the wire side (`skb->len`, the whole super-packet).
    pub frame_len: u32,
    /// Bytes of the frame delivered over all chunks (`< frame_len` when cut at [`MAX_FRAME`]
    /// or for a headers-only record).
    pub cap_len: u32,
    /// Offset in the frame of this record's bytes.
    pub offset: u32,
    /// Frame bytes following this header.
    pub chunk_len: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
}

/// Size of [`ChunkHeader`] in a record.
pub const HEADER_LEN: usize = core::mem::size_of::<ChunkHeader>();

/// Key of [`MAP_FLOWS`]: a TCP connection, direction-free. The lower (address, port) endpoint
/// comes first (addresses compared as 16 big-endian bytes, then ports), the same order as
/// `mxcert::capture::FlowTuple::new`; IPv4 addresses are IPv4-mapped (`::ffff:a.b.c.d`,
/// RFC 4291 §2.5.5.2). Ports in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo_addr: [u8; 16],
    pub hi_addr: [u8; 16],
    pub lo_port: u16,
    pub hi_port: u16,
}

impl FlowKey {
    /// The key of the connection between (`a`, `a_port`) and (`b`, `b_port`), in either
    /// direction. Used by the kernel program on every segment and by user space when it marks a
    /// flow, so both build the same bytes.
    #[inline(always)]
    pub fn new(a: [u8; 16], a_port: u16, b: [u8; 16], b_port: u16) -> FlowKey {
        // Two big-endian u64 halves compare like the 16 bytes, in two instructions each.
        let half = |x: &[u8; 16], i: usize| {
            u64::from_be_bytes([
                x[i],
                x[i + 1],
                x[i + 2],
                x[i + 3],
                x[i + 4],
                x[i + 5],
                x[i + 6],
                x[i + 7],
            ])
        };
        if ((half(&a, 0), half(&a, 8)), a_port) <= ((half(&b, 0), half(&b, 8)), b_port) {
            FlowKey {
                lo_addr: a,
                hi_addr: b,
                lo_port: a_port,
                hi_port: b_port,
            }
        } else {
            FlowKey {
                lo_addr: b,
                hi_addr: a,
                lo_port: b_port,
                hi_port: a_port,
            }
        }
    }
}

/// IPv4 address as IPv4-mapped IPv6 (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2).
#[inline(always)]
pub fn ipv4_mapped(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

/// Value of [`MAP_FLOWS`]: present means user space is done with the flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    /// `FLOW_DONE` once the pipeline has all it needs from the flow.
    pub flags: u32,
    pub _pad: u32,
}

/// [`FlowState::flags`]: copy only FIN/RST headers from now on.
pub const FLOW_DONE: u32 = 1;

/// Wire constants both parsers (the kernel program and the offline decoder) use.
pub mod wire {
    /// EtherTypes (IEEE registry).
    pub const ET_IPV4: u16 = 0x0800;
    pub const ET_IPV6: u16 = 0x86DD;
    /// 802.1Q C-tag.
    pub const ET_VLAN: u16 = 0x8100;
    /// 802.1ad S-tag.
    pub const ET_QINQ: u16 = 0x88A8;
    /// Pre-standard QinQ outer tag, still common in switches.
    pub const ET_QINQ_OLD: u16 = 0x9100;

    /// IP protocol numbers (IANA).
    pub const IPPROTO_HOPOPTS: u8 = 0;
    pub const IPPROTO_TCP: u8 = 6;
    pub const IPPROTO_ROUTING: u8 = 43;
    pub const IPPROTO_FRAGMENT: u8 = 44;
    pub const IPPROTO_AH: u8 = 51;
    pub const IPPROTO_DSTOPTS: u8 = 60;
    pub const IPPROTO_MOBILITY: u8 = 135;
    pub const IPPROTO_HIP: u8 = 139;
    pub const IPPROTO_SHIM6: u8 = 140;

    /// TCP flag bits (RFC 9293 §3.1, byte 13 of the header).
    pub const TCP_FIN: u8 = 0x01;
    pub const TCP_SYN: u8 = 0x02;
    pub const TCP_RST: u8 = 0x04;
}

/// Indexes of [`MAP_COUNTERS`], a per-CPU array of `u64` (user space sums the CPUs).
pub mod counter {
    /// TCP segments of a watched port seen by the program.
    pub const MATCHED: u32 = 0;
    /// Frames written completely to the ring buffer.
    pub const DELIVERED: u32 = 1;
    /// Frame bytes written to the ring buffer.
    pub const DELIVERED_BYTES: u32 = 2;
    /// Frames lost (wholly or partly) because the ring buffer was full.
    pub const RING_FULL: u32 = 3;
    /// Frames longer than `MAX_FRAME`, delivered cut.
    pub const TRUNCATED: u32 = 4;
    /// Segments of flows marked done that were not copied (the in-kernel cutoff).
    pub const CUT_OFF: u32 = 5;
    /// Frame bytes not copied because of the cutoff: those segments, plus the payload of the
    /// FIN/RST segments delivered as headers only.
    pub const CUT_OFF_BYTES: u32 = 6;
    /// FIN/RST segments of done flows delivered as headers only.
    pub const HEADERS_ONLY: u32 = 7;
    /// IP fragments skipped (no TCP header to match; the offline decoder skips them too).
    pub const FRAGMENTS: u32 = 8;
    /// `bpf_skb_load_bytes` failures while copying (a frame shorter than its headers said).
    pub const LOAD_ERRORS: u32 = 9;
    /// Number of counters.
    pub const COUNT: u32 = 10;
}

/// The TLS-library uprobes (issue #8): peer certificates read where the MTA's TLS library
/// parses them, for TLS 1.3 sessions whose Certificate messages are encrypted on the wire.
/// Facts behind the design: ../shared/notes/tls13-uprobes.md.
///
/// The programs live in the same object as the TC classifier (one nested build). Each writes
/// [`TlsEvent`] records into their own ring buffer; a certificate record carries up to
/// [`MAX_CERT`] DER bytes after the header.
pub mod tls {
    /// `d2i_X509` (libcrypto) entry: copies the DER of a certificate being parsed.
    pub const PROG_D2I_X509: &str = "mxcert_d2i_x509";
    /// Entry of every libssl call that can run a handshake (`SSL_connect`, `SSL_accept`,
    /// `SSL_do_handshake`, `SSL_read`, `SSL_write`, ...; all take the `SSL*` first): remembers
    /// the thread's current `SSL*`. Also on `gnutls_handshake(session)`, for the socket
    /// tracepoints only (GnuTLS certificates come from `gnutls_certificate_get_peers`).
    pub const PROG_SSL_ENTER: &str = "mxcert_ssl_enter";
    /// `SSL_set_bio(ssl, rbio, wbio)` entry: ties an `SSL*` to a BIO.
    pub const PROG_SSL_SET_BIO: &str = "mxcert_ssl_set_bio";
    /// `BIO_int_ctrl(bio, BIO_C_SET_FD, close, fd)` entry (what `BIO_set_fd` expands to, used by
    /// both `SSL_set_fd` and `BIO_new_socket`): ties a BIO to a socket fd.
    pub const PROG_BIO_INT_CTRL: &str = "mxcert_bio_int_ctrl";

    /// `gnutls_certificate_get_peers(session, unsigned *list_size)` entry (GnuTLS): remembers
    /// the call's arguments per thread for [`PROG_GNUTLS_PEERS_RET`].
    pub const PROG_GNUTLS_PEERS: &str = "mxcert_gnutls_peers";
    /// Its return: copies each certificate of the returned array of `gnutls_datum_t` (the raw
    /// peer chain in wire order), or sends [`EV_GNUTLS_CERT`] with `count` 0 for NULL (the peer
    /// sent no certificate).
    pub const PROG_GNUTLS_PEERS_RET: &str = "mxcert_gnutls_peers_ret";
    /// `gnutls_transport_set_ptr(session, ptr)` and `gnutls_transport_set_ptr2(session, recv,
    /// send)` entry: ties a session to its socket (the pointer is an fd cast for applications
    /// using the default push/pull functions, Exim included; Exim 4.96 calls these two).
    pub const PROG_GNUTLS_TRANSPORT: &str = "mxcert_gnutls_transport";
    /// `gnutls_transport_set_int2(session, recv_fd, send_fd)` entry (an `int`, whose upper
    /// register half the ABI leaves undefined, hence its own program).
    /// `gnutls_transport_set_int` is a macro over it (gnutls/gnutls.h, 3.7): Debian 12's
    /// libgnutls.so.30 exports `_int2`, `_ptr` and `_ptr2` only (`nm -D`).
    pub const PROG_GNUTLS_TRANSPORT_INT: &str = "mxcert_gnutls_transport_int";
    /// `gnutls_deinit(session)` entry: the session is over.
    pub const PROG_GNUTLS_DEINIT: &str = "mxcert_gnutls_deinit";
    /// Raw tracepoint programs on `sock_send_length` and `sock_recv_length` (Linux 6.4+; both
    /// take `struct sock *sk` first), with the tracepoint each attaches to: the TCP endpoints
    /// of the socket a thread does I/O on while inside a libssl call, sent once per (process,
    /// `SSL*`) as [`EV_SOCK`], so a connection closed before user space looks at /proc still
    /// maps to its 4-tuple.
    pub const PROGS_SOCK_IO: [(&str, &str); 2] = [
        ("mxcert_sock_send", "sock_send_length"),
        ("mxcert_sock_recv", "sock_recv_length"),
    ];
    /// Most certificates copied per `gnutls_certificate_get_peers` return (a bounded loop for
    /// the verifier); user space counts longer chains as overflowing.
    pub const MAX_GNUTLS_CHAIN: u32 = 16;
    /// Size of a `gnutls_datum_t { unsigned char *data; unsigned int size; }` on x86-64.
    pub const GNUTLS_DATUM_LEN: u64 = 16;

    /// libssl entry points [`PROG_SSL_ENTER`] attaches to. `openssl s_client` runs its
    /// handshake inside `SSL_read`/`SSL_write`, Postfix inside `SSL_connect`/`SSL_accept`.
    pub const SSL_ENTRY_POINTS: [&str; 9] = [
        "SSL_connect",
        "SSL_accept",
        "SSL_do_handshake",
        "SSL_read",
        "SSL_read_ex",
        "SSL_write",
        "SSL_write_ex",
        "SSL_peek",
        "SSL_peek_ex",
    ];

    /// `BIO_C_SET_FD` (include/openssl/bio.h.in).
    pub const BIO_C_SET_FD: i32 = 104;

    pub const MAP_EVENTS: &str = "MXCERT_TLS_EVENTS";
    pub const MAP_COMMS: &str = "MXCERT_TLS_COMMS";
    pub const MAP_CURRENT: &str = "MXCERT_TLS_CURRENT";
    pub const MAP_COUNTERS: &str = "MXCERT_TLS_COUNTERS";

    /// Ring buffer size: 1 MiB holds ~60 full-size certificates, more than a few hundred
    /// handshakes' worth of typical 1-2 KiB certificates in flight.
    pub const RING_BYTES: u32 = 1 << 20;
    /// Most allow-listed process names ([`MAP_COMMS`]).
    pub const MAX_COMMS: u32 = 64;
    /// Most threads with a current `SSL*` at once ([`MAP_CURRENT`], LRU).
    pub const MAX_THREADS: u32 = 16_384;
    /// DER bytes copied per certificate; longer ones are cut and flagged
    /// (`data_len < der_len`). Real certificates are 1-3 KiB; post-quantum ones stay below.
    pub const MAX_CERT: u32 = 16 * 1024;
    /// Length of a kernel task name (`TASK_COMM_LEN`, include/linux/sched.h), NUL included.
    pub const COMM_LEN: usize = 16;

    /// [`TlsEvent::kind`] values.
    pub const EV_CERT: u32 = 1;
    pub const EV_SET_BIO: u32 = 2;
    pub const EV_BIO_FD: u32 = 3;
    /// GnuTLS: certificate `index` of `count` returned by `gnutls_certificate_get_peers` for
    /// session `ssl` (`count` 0, no data: it returned NULL).
    pub const EV_GNUTLS_CERT: u32 = 4;
    /// GnuTLS: session `ssl` reads from `fd` (`bio` holds the send side's value).
    pub const EV_GNUTLS_TRANSPORT: u32 = 5;
    /// GnuTLS: `gnutls_deinit` of session `ssl`.
    pub const EV_GNUTLS_DEINIT: u32 = 6;
    /// The socket of `ssl`'s connection, taken in the kernel during the handshake: a
    /// [`SockEndpoints`] follows the header (`data_len` = its size). 32: clear of the kinds
    /// other branches add.
    pub const EV_SOCK: u32 = 32;

    /// `AF_INET`, `AF_INET6` (include/linux/socket.h).
    pub const AF_INET: u16 = 2;
    pub const AF_INET6: u16 = 10;

    /// Payload of an [`EV_SOCK`] record: the endpoints as the process sees them. `AF_INET`:
    /// the addresses use the first 4 bytes; `AF_INET6`: all 16. An `AF_INET6` socket carrying
    /// IPv4-mapped addresses (`::ffff:a.b.c.d`, a dual-stack listener's IPv4 peer) is sent as
    /// `AF_INET`, as the wire shows it. IPv6 sockets are sent only when user space gave the
    /// offsets of their addresses ([`MAP_SOCK_OFFSETS`]).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct SockEndpoints {
        pub family: u16,
        pub local_port: u16,
        pub remote_port: u16,
        pub _pad: u16,
        pub local: [u8; 16],
        pub remote: [u8; 16],
    }

    /// Size of [`SockEndpoints`] in a record.
    pub const SOCK_LEN: usize = core::mem::size_of::<SockEndpoints>();

    /// Byte offsets of the `struct sock_common` members the socket tracepoints read (the
    /// start of `struct sock`, include/net/sock.h), from the kernel's BTF, written by user
    /// space into [`MAP_SOCK_OFFSETS`] before the programs attach. The IPv6 addresses follow
    /// pointer-sized and configuration-dependent members; `v6_daddr` 0 means "not known"
    /// (no BTF): IPv6 sockets are then left to user space's /proc lookup. The IPv4 fields
    /// default to the layout every kernel with these tracepoints (6.4+) has.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SockOffsets {
        pub daddr: u32,
        pub rcv_saddr: u32,
        pub dport: u32,
        pub num: u32,
        pub family: u32,
        pub v6_daddr: u32,
        pub v6_rcv_saddr: u32,
        pub _pad: u32,
    }

    impl Default for SockOffsets {
        /// `skc_daddr` at 0, `skc_rcv_saddr` at 4, `skc_dport` at 12, `skc_num` at 14,
        /// `skc_family` at 16: no pointer or optional member precedes them, and the socket
        /// lookup compares the address and port pairs as single words (`skc_addrpair`,
        /// `skc_portpair` in `inet_match`), which pins their order. No IPv6.
        fn default() -> SockOffsets {
            SockOffsets {
                daddr: 0,
                rcv_saddr: 4,
                dport: 12,
                num: 14,
                family: 16,
                v6_daddr: 0,
                v6_rcv_saddr: 0,
                _pad: 0,
            }
        }
    }

    /// One-entry array holding the [`SockOffsets`].
    pub const MAP_SOCK_OFFSETS: &str = "MXCERT_TLS_SOCK_OFFSETS";

    /// Header of one TLS ring record; `data_len` DER bytes follow an [`EV_CERT`] header.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TlsEvent {
        /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
        pub ktime_ns: u64,
        /// The `SSL*`: the thread's current one for [`EV_CERT`], the argument
        /// for [`EV_SET_BIO`].
        pub ssl: u64,
        /// The BIO for [`EV_SET_BIO`] (the read BIO) and [`EV_BIO_FD`].
        pub bio: u64,
        /// [`EV_CERT`]: the return address of `d2i_X509` (the word at the stack pointer on
        /// entry). User space keeps the record only when it lies in libssl's text: the peer's
        /// chain is parsed by libssl, own-chain and CA-bundle loads return into libcrypto's PEM
        /// code or the application.
        pub caller: u64,
        pub tgid: u32,
        pub tid: u32,
        pub kind: u32,
        /// [`EV_BIO_FD`]: the socket fd.
        pub fd: i32,
        /// [`EV_CERT`]: the DER length the library was given.
        pub der_len: u32,
        /// [`EV_CERT`]: DER bytes following this header (`< der_len`: truncated).
        pub data_len: u32,
        /// [`EV_GNUTLS_CERT`]: position in the chain (0 = leaf).
        pub index: u32,
        /// [`EV_GNUTLS_CERT`]: certificates the library returned (0: none from the peer).
        pub count: u32,
    }

    /// Size of [`TlsEvent`] in a record.
    pub const EVENT_LEN: usize = core::mem::size_of::<TlsEvent>();

    /// Indexes of [`MAP_COUNTERS`] (per-CPU `u64`).
    pub mod counter {
        /// `d2i_X509` calls by allow-listed processes, delivered.
        pub const CERTS: u32 = 0;
        /// DER bytes delivered.
        pub const CERT_BYTES: u32 = 1;
        /// Certificates longer than `MAX_CERT`, delivered cut.
        pub const TRUNCATED: u32 = 2;
        /// Records lost to a full ring.
        pub const RING_FULL: u32 = 3;
        /// `bpf_probe_read_user` failures (DER or argument not readable).
        pub const READ_ERRORS: u32 = 4;
        /// `d2i_X509` calls by processes not on the allow-list (not copied).
        pub const FILTERED: u32 = 5;
        /// `d2i_X509` calls of allow-listed processes outside any libssl call (the thread has
        /// no current `SSL*`: CA-bundle and own-chain loads, `openssl x509`): not copied.
        pub const OUTSIDE_SSL: u32 = 6;
        /// `gnutls_certificate_get_peers` returns of allow-listed processes seen.
        pub const GNUTLS_PEERS: u32 = 7;
        /// [`super::EV_SOCK`] records sent.
        pub const SOCKETS: u32 = 8;
        /// IPv6 sockets of a connection not sent because their offsets are unknown (no BTF):
        /// user space falls back to /proc.
        pub const SOCK_NOT_INET: u32 = 9;
        /// [`super::EV_SOCK`] records with IPv6 endpoints.
        pub const SOCKETS_V6: u32 = 10;
        /// [`super::EV_SOCK`] records of `AF_INET6` sockets with IPv4-mapped addresses, sent
        /// as IPv4.
        pub const SOCKETS_V4_MAPPED: u32 = 11;
        pub const COUNT: u32 = 12;
    }

    /// The allow-list key of a process name: the name cut to 15 bytes and NUL-padded, as
    /// `bpf_get_current_comm` returns it.
    pub fn comm_key(name: &str) -> [u8; COMM_LEN] {
        let mut k = [0u8; COMM_LEN];
        let b = name.as_bytes();
        let n = if b.len() < COMM_LEN {
            b.len()
        } else {
            COMM_LEN - 1
        };
        k[..n].copy_from_slice(&b[..n]);
        k
    }

    // End of handshake and process lifetime (the daemon's part of issue #8). Kind values
    // start at 16 so other paths can add theirs below without renumbering.

    /// `SSL_get0_peer_certificate(ssl)` / `SSL_get1_peer_certificate(ssl)` entry: remembers the
    /// thread's `SSL*` for the return probe (a uretprobe sees no arguments).
    pub const PROG_PEER_CERT_ENTER: &str = "mxcert_peer_cert_enter";
    /// The same functions' return: sends [`EV_PEER`] (the `SSL*` and the returned `X509*`).
    /// Applications ask for the peer certificate once the handshake is over (Postfix on both
    /// sides, `openssl s_client`/`s_server`), so the chain of that `SSL*` is complete then.
    pub const PROG_PEER_CERT_RET: &str = "mxcert_peer_cert_ret";
    /// Both exported by OpenSSL 3 (`SSL_get_peer_certificate` is a macro for the get1 one).
    pub const PEER_CERT_FUNCTIONS: [&str; 2] =
        ["SSL_get0_peer_certificate", "SSL_get1_peer_certificate"];
    /// Raw tracepoint `sched_process_exec`: an allow-listed program started ([`EV_EXEC`]).
    pub const PROG_SCHED_EXEC: &str = "mxcert_sched_exec";
    /// Raw tracepoint `sched_process_exit`: an allow-listed process ended ([`EV_EXIT`]).
    pub const PROG_SCHED_EXIT: &str = "mxcert_sched_exit";
    /// Thread id → the `SSL*` given to the peer-certificate call in progress (LRU).
    pub const MAP_PEER_CALLS: &str = "MXCERT_TLS_PEER_CALLS";

    /// [`TlsEvent::kind`]: the peer-certificate call of `ssl` returned `caller` (the `X509*`,
    /// 0 when the peer sent no certificate).
    pub const EV_PEER: u32 = 16;
    /// [`TlsEvent::kind`]: process `tgid` exec'd into an allow-listed program.
    pub const EV_EXEC: u32 = 17;
    /// [`TlsEvent::kind`]: process `tgid` (its main thread) exited.
    pub const EV_EXIT: u32 = 18;

    // Our own chain as the MTA sends it (TLS 1.3 encrypts both Certificate messages, so on a
    // gateway whose peer is remote the peer-side probes never see our side's chain).

    /// `i2d_X509(const X509 *x, unsigned char **out)` entry (libcrypto): inside a libssl call
    /// of an allow-listed process, with `out` and `*out` set (the second of the two calls in
    /// `ssl_add_cert_to_wpacket`, ssl/statem/statem_lib.c: the first, with NULL, only measures),
    /// remembers per thread where the DER is written, the return address and the `SSL*`.
    pub const PROG_I2D_X509: &str = "mxcert_i2d_x509";
    /// Its return (names distinct within the kernel's 15-byte program names, so the per-program
    /// run-time figures of `cargo xtask bench tls-library` tell entry and return apart): the
    /// return value is the length written; sends [`EV_OWN_CERT`] with that
    /// many bytes (bounded by [`MAX_CERT`]) from the remembered start.
    pub const PROG_I2D_X509_RET: &str = "mxcert_i2d_ret";
    /// Thread (pid_tgid) → (DER start, return address, `SSL*`) of the `i2d_X509` call in
    /// progress (LRU).
    pub const MAP_I2D_CALLS: &str = "MXCERT_TLS_I2D_CALLS";
    /// [`TlsEvent::kind`]: a certificate `ssl`'s process encoded into its own Certificate
    /// message (`caller` = the return address, kept when in libssl's text; DER follows as for
    /// [`EV_CERT`]). 48: clear of the kinds other branches add.
    pub const EV_OWN_CERT: u32 = 48;
    /// GnuTLS: `gnutls_certificate_get_ours(session)` entry (remembers the session per thread).
    pub const PROG_GNUTLS_OURS: &str = "mxcert_ours";
    /// Its return: a `const gnutls_datum_t *`, our leaf as sent in the session's last
    /// handshake (NULL: none sent); sends [`EV_GNUTLS_OURS`] (`count` 0 for NULL, else 1 with
    /// the DER).
    pub const PROG_GNUTLS_OURS_RET: &str = "mxcert_ours_ret";
    /// [`TlsEvent::kind`]: the result of `gnutls_certificate_get_ours` for session `ssl`.
    pub const EV_GNUTLS_OURS: u32 = 49;
}

// SAFETY: plain `#[repr(C)]` data with no padding holes the kernel could leave uninitialised
// (every field is written), valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ChunkHeader {}
// SAFETY: as above; 16 + 16 + 2 + 2 bytes, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above; the padding is an explicit field.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowState {}

// SAFETY: plain `#[repr(C)]` data, every field written by the program, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for tls::TlsEvent {}
// SAFETY: as above; the padding is an explicit field.
#[cfg(feature = "user")]
unsafe impl aya::Pod for tls::SockEndpoints {}
// SAFETY: eight `u32`, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for tls::SockOffsets {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_fixed() {
        assert_eq!(HEADER_LEN, 40);
        assert_eq!(core::mem::align_of::<ChunkHeader>(), 8);
        assert_eq!(core::mem::size_of::<FlowKey>(), 36);
        assert_eq!(core::mem::size_of::<FlowState>(), 8);
        assert_eq!(tls::EVENT_LEN, 64);
        assert_eq!(tls::SOCK_LEN, 40);
        assert!(tls::EVENT_LEN + tls::MAX_CERT as usize <= 32 * 1024);
        assert_eq!(&tls::comm_key("smtpd")[..6], b"smtpd\0");
        assert_eq!(tls::comm_key("a-very-long-process-name")[15], 0);
    }

    #[test]
    fn flow_key_is_direction_free_and_orders_lower_endpoint_first() {
        let a = ipv4_mapped([198, 18, 0, 2]);
        let b = ipv4_mapped([198, 18, 0, 1]);
        let k = FlowKey::new(a, 40000, b, 25);
        assert_eq!(k, FlowKey::new(b, 25, a, 40000));
        assert_eq!((k.lo_addr, k.lo_port), (b, 25));
        // Same address: the port decides.
        let k = FlowKey::new(a, 40000, a, 25);
        assert_eq!((k.lo_port, k.hi_port), (25, 40000));
        // The high half decides before the low half.
        let mut hi = [0u8; 16];
        hi[0] = 1;
        let mut lo = [0xffu8; 16];
        lo[0] = 0;
        assert_eq!(FlowKey::new(hi, 1, lo, 1).lo_addr, lo);
    }

    #[test]
    fn a_max_size_ip_packet_fits_whole() {
        // IPv4/IPv6 length fields are 16 bits; add Ethernet + two VLAN tags + IPv6 header.
        let largest = 65_535 + 14 + 8 + 40;
        assert!(largest <= MAX_FRAME as usize);
        assert!(MAX_FRAME.div_ceil(CHUNK) <= MAX_CHUNKS);
        assert!(HEADER_LEN + CHUNK as usize <= 32 * 1024);
    }
}
