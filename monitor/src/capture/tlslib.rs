//! Peer certificates from the MTA's TLS library (issue #8): TLS 1.3 encrypts the Certificate
//! messages, so where the wire shows nothing, uprobes on OpenSSL 3 read each certificate of the
//! peer's chain as libssl hands it to `d2i_X509`, and of our own as it encodes it with
//! `i2d_X509` (GnuTLS: `tlslib/gnutls.rs`; facts: ../shared/notes/tls13-uprobes.md).
//!
//! The kernel side (`monitor-ebpf/src/main.rs`, module `tls_probes`) filters by process name
//! before copying anything, and sends one ring record per certificate (bounded copy, truncation
//! visible as `data_len < der_len`) plus the records that tie an `SSL*` to its socket
//! (`BIO_set_fd` then `SSL_set_bio`, which both `SSL_set_fd` and `BIO_new_socket` users go
//! through). This side keeps the records whose `d2i_X509` returns into libssl's text (the
//! peer's chain; own-chain and CA-bundle loads return into libcrypto's PEM code or the
//! application), assembles chains per (process, `SSL*`), ties each to its TCP 4-tuple, and
//! hands out [`PeerChain`]s keyed by that 4-tuple. The 4-tuple comes from the kernel
//! (`EV_SOCK`: the socket endpoints read at the handshake's first socket I/O, in the MTA's own
//! context, through the `sock_send_length`/`sock_recv_length` tracepoints; IPv6 at the
//! `struct sock_common` offsets read from the kernel's BTF, [`btf`](self::btf)), so a
//! connection closed before this side reads the ring still maps; failing that, from the socket
//! fd through `/proc/PID/fd` and the process's own `/proc/PID/net/tcp{,6}` (so an MTA in
//! another network namespace works).
//!
//! This file is the shared part: loading, attaching, following processes, reading the ring.
//! The OpenSSL chains are assembled in [`openssl`](self::openssl), the GnuTLS ones in
//! [`gnutls`](self::gnutls); both are pure functions of the decoded records.
//!
//! Probes attach per library *file* found in the allow-listed processes' `/proc/PID/maps`
//! (through `/proc/PID/root`, so a process in another mount namespace works too): one attach
//! covers every process mapping that file. They are perf-event links owned by this process and
//! vanish when it exits, even by SIGKILL.
//!
//! The end of a handshake is the application asking for the peer's certificate
//! (`SSL_get0_peer_certificate` / `SSL_get1_peer_certificate`, uretprobes): the chain of that
//! `SSL*` is handed out then, empty when the call returned NULL (the peer sent none). For
//! applications that never ask, a chain is handed out once no certificate arrived for it for
//! [`QUIET`]. Either way each handshake's chain is handed out once.
//!
//! The GnuTLS path (Exim) reads the chain `gnutls_certificate_get_peers` returns.
//!
//! Processes are followed through the raw tracepoints `sched_process_exec` / `_exit`
//! (filtered by the same allow-list in the kernel): a new MTA process is adopted at once (its
//! maps read, new library files attached), an exited one forgotten (what it had complete is
//! handed out). [`TlsProbes::refresh`] is the start-up scan and a slow safety net.
//!
//! The programs and maps come from the daemon's one [`BpfObject`] (shared with the TC source).
//!
//! Known limit: statically linked copies (symbols in the executable) are not probed; such a
//! process is reported once, by name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::uprobe::UProbeScope;
use aya::programs::{RawTracePoint, UProbe};
use aya::Ebpf;
use mxcert_ebpf::tls::{
    comm_key, counter, SockEndpoints, SockOffsets, TlsEvent, AF_INET, AF_INET6, COMM_LEN,
    EVENT_LEN, EV_BIO_FD, EV_CERT, EV_EXEC, EV_EXIT, EV_GNUTLS_CERT, EV_GNUTLS_DEINIT,
    EV_GNUTLS_OURS, EV_GNUTLS_TRANSPORT, EV_OWN_CERT, EV_PEER, EV_SET_BIO, EV_SOCK, MAP_COMMS,
    MAP_COUNTERS, MAP_EVENTS, MAP_SOCK_OFFSETS, MAX_CERT, MAX_COMMS, PEER_CERT_FUNCTIONS,
    PROGS_SOCK_IO, PROG_BIO_INT_CTRL, PROG_D2I_X509, PROG_GNUTLS_DEINIT, PROG_GNUTLS_OURS,
    PROG_GNUTLS_OURS_RET, PROG_GNUTLS_PEERS, PROG_GNUTLS_PEERS_RET, PROG_GNUTLS_TRANSPORT,
    PROG_GNUTLS_TRANSPORT_INT, PROG_I2D_X509, PROG_I2D_X509_RET, PROG_PEER_CERT_ENTER,
    PROG_PEER_CERT_RET, PROG_SCHED_EXEC, PROG_SCHED_EXIT, PROG_SSL_ENTER, PROG_SSL_SET_BIO,
    SOCK_LEN, SSL_ENTRY_POINTS,
};

use super::bpfobj::{BpfObject, Parts};
use super::ebpf::{clock_ns, load_error};
use super::{FlowTuple, LiveError};

mod btf;
mod gnutls;
mod openssl;
mod own;

const BACKEND: &str = "tls-library";

/// Process names probed by default: Postfix's TLS-speaking daemons and Exim.
pub const DEFAULT_COMMS: [&str; 5] = ["smtpd", "smtp", "exim", "exim4", "tlsmgr"];

/// A chain is complete when no certificate arrived for it for this long: libssl parses the
/// whole chain in one loop (`tls_process_server_certificate` /
/// `tls_process_client_certificate`), microseconds apart.
pub const QUIET: Duration = Duration::from_millis(100);

/// Most certificates kept per chain; more are counted in [`TlsCounters::chain_overflow`].
pub const MAX_CHAIN: usize = 16;
/// Most (process, `SSL*`) connections and (process, BIO) fds tracked at once; beyond, new
/// ones are counted in [`TlsCounters::table_full`] and dropped.
pub const MAX_TRACKED: usize = 65_536;
/// Most ring records handled per poll.
pub const MAX_RECORDS_PER_POLL: usize = 65_536;
/// How often [`TlsProbes::poll`] looks at the ring while it waits: the kernel side does not
/// wake the reader per record. Bounds the delay a waiting caller adds to a chain.
pub const POLL_TICK: Duration = Duration::from_millis(10);
/// How long a process that just exec'd is watched for its libssl mapping: the dynamic loader
/// maps the libraries after the exec returns (the tracepoint fires before), within
/// milliseconds; a program still without libssl then is adopted as it is (and reported).
pub const ADOPT_WAIT: Duration = Duration::from_secs(2);
/// Most processes waiting for adoption at once; beyond, they are left to the periodic
/// [`TlsProbes::refresh`] and counted in [`TlsCounters::table_full`].
pub const MAX_ADOPTING: usize = 4096;
/// Least time between two /proc scans for processes forked by one that ended before it was
/// adopted (see [`Rescan`]).
pub const RESCAN_GAP: Duration = Duration::from_secs(1);

/// Where a library connection's socket is: the fd the application tied it to (for the /proc
/// fallback) and its endpoints as the process sees them, from the kernel (`EV_SOCK`) or that
/// lookup. Shared by the OpenSSL and GnuTLS paths.
#[derive(Debug, Default, Clone, Copy)]
struct Endpoints {
    fd: Option<i32>,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    /// `local`/`remote` came from the kernel.
    kernel_mapped: bool,
}

impl Endpoints {
    /// The endpoints the kernel took at the handshake's socket I/O: they win over a /proc
    /// lookup, which goes by fd number and may name a later connection.
    fn set_from_kernel(&mut self, local: SocketAddr, remote: SocketAddr) {
        self.local = Some(local);
        self.remote = Some(remote);
        self.kernel_mapped = true;
    }

    /// Looks the endpoints up through the fd (`lookup`: /proc) when still unknown. True when
    /// they are known.
    fn resolve(
        &mut self,
        tgid: u32,
        lookup: impl Fn(u32, i32) -> Option<(SocketAddr, SocketAddr)>,
    ) -> bool {
        if self.local.is_none() {
            if let Some((l, r)) = self.fd.and_then(|fd| lookup(tgid, fd)) {
                self.local = Some(l);
                self.remote = Some(r);
            }
        }
        self.local.is_some()
    }
}

/// The chain a process received from its peer on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChain {
    pub tgid: u32,
    pub comm: String,
    /// The `SSL*` (identity of the connection inside the process).
    pub ssl: u64,
    /// The connection's endpoints as the receiving process sees them (`None` when its socket
    /// was gone before it could be looked up, or the `SSL*` was never tied to an fd).
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// DER certificates, leaf first (the order libssl parsed them, the wire order).
    pub ders: Vec<Vec<u8>>,
    /// Some certificate was longer than `MAX_CERT` and is cut.
    pub truncated: bool,
    /// `local`/`remote` were taken in the kernel at the handshake's socket I/O (`EV_SOCK`),
    /// not looked up in /proc.
    pub kernel_mapped: bool,
    /// The chain this process SENT on the connection (its own, read as libssl encodes it, or
    /// GnuTLS's `gnutls_certificate_get_ours`: the leaf only), not the one it received; empty:
    /// it sent none. `local`/`remote` are still the sending process's endpoints.
    pub sent: bool,
    /// Only the leaf of a longer chain is known (GnuTLS's own-certificate answer): the
    /// intermediates the process sent are missing.
    pub leaf_only: bool,
}

impl PeerChain {
    /// The flow key shared with the wire-side pipeline.
    pub fn flow(&self) -> Option<FlowTuple> {
        Some(FlowTuple::new(self.local?, self.remote?))
    }
}

/// Kernel and user-side counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsCounters {
    /// Kernel: certificates of allow-listed processes delivered, and their bytes.
    pub certs: u64,
    pub cert_bytes: u64,
    /// Kernel: certificates cut at `MAX_CERT`.
    pub truncated: u64,
    /// Kernel: records lost to a full ring.
    pub ring_full: u64,
    /// Kernel: user memory not readable.
    pub read_errors: u64,
    /// Kernel: `d2i_X509` calls of other processes (not copied).
    pub filtered: u64,
    /// Kernel: `d2i_X509` calls of allow-listed processes outside any libssl call (not
    /// copied).
    pub outside_ssl: u64,
    /// User: certificates not parsed by libssl (own chain, CA bundles): dropped.
    pub not_peer: u64,
    /// User: peer certificates parsed outside any known `SSL*` call: dropped.
    pub no_ssl: u64,
    /// User: chains handed out.
    pub chains: u64,
    /// User: chains whose socket could not be mapped to a 4-tuple.
    pub unmapped: u64,
    pub chain_overflow: u64,
    pub table_full: u64,
    pub bad_records: u64,
    /// Kernel: `gnutls_certificate_get_peers` returns seen (allow-listed processes).
    pub gnutls_peers: u64,
    /// User (GnuTLS): further results for a handshake whose chain was handed out (Exim asks
    /// more than once per session): dropped.
    pub repeats: u64,
    /// User (GnuTLS): results with a record missing (ring full, read error): dropped.
    pub incomplete: u64,
    /// User: handshakes whose end the application signalled (`SSL_get0/1_peer_certificate`
    /// returned): the chain was handed out then, not on the [`QUIET`] timer.
    pub handshakes_ended: u64,
    /// User: of those, chains handed out empty (the peer sent no certificate).
    pub no_peer_certificate: u64,
    /// User: of those, handshakes that parsed no certificate although the library had one for
    /// the peer (a resumed session): no chain handed out.
    pub resumed: u64,
    /// User: allow-listed processes started (exec) and ended (exit) while running.
    pub execs: u64,
    pub exits: u64,
    /// Kernel: connection endpoints taken at the handshake's TCP I/O (`EV_SOCK`).
    pub sockets: u64,
    /// Kernel: connections on an IPv6 socket whose address offsets are unknown (no kernel
    /// BTF): left to the /proc lookup.
    pub sock_not_inet: u64,
    /// Kernel: of `sockets`, those with IPv6 endpoints, and those of an IPv6 socket carrying
    /// IPv4-mapped addresses (a dual-stack listener's IPv4 peer), sent as IPv4.
    pub sockets_v6: u64,
    pub sockets_v4_mapped: u64,
    /// User: chains handed out whose endpoints came from the kernel (`EV_SOCK`), and from the
    /// /proc lookup by fd (the fallback; `unmapped` counts those with neither).
    pub kernel_mapped: u64,
    pub proc_mapped: u64,
    /// User: certificates of our own chains (as sent) kept, and own chains handed out (not
    /// in `chains`).
    pub own_certs: u64,
    pub own_chains: u64,
}

/// What we know of an allow-listed process.
struct Proc {
    comm: String,
    /// Executable mappings of libssl: a `d2i_X509` returning in here parses a peer's chain.
    ssl_text: Vec<(u64, u64)>,
    /// When its maps were read (monotonic ns): an exec record older than this is of the
    /// image already read (the ring is read later than the scan of /proc ran).
    read_ns: u64,
}

/// The loaded TLS-library probes. Dropping it detaches them.
pub struct TlsProbes {
    ring: RingBuf<MapData>,
    // The allow-list map stays alive with the programs that read it.
    _comms: BpfHashMap<MapData, [u8; COMM_LEN], u8>,
    kcounters: PerCpuArray<MapData, u64>,
    allow: Vec<String>,
    /// Library files attached, by (device, inode).
    attached: HashSet<(u64, u64)>,
    /// Links made, by (device, inode, program, symbol) ([`links_to_make`]).
    links: HashSet<Link>,
    procs: HashMap<u32, Proc>,
    /// Allow-listed processes seen mapping no TLS library (not adopted).
    bare: HashSet<u32>,
    openssl: openssl::Openssl,
    reported: HashSet<String>,
    reports: Vec<String>,
    gnutls: gnutls::Gnutls,
    /// Processes that just exec'd, waiting for their libssl mapping, with the deadline
    /// (monotonic ns).
    adopting: Vec<(u32, u64)>,
    rescan: Rescan,
    program_ids: Vec<u32>,
    counters: TlsCounters,
    object: BpfObject,
}

impl TlsProbes {
    /// Loads the programs and the allow-list `comms` (process names; the kernel compares the
    /// first 15 bytes) from an object of their own. Library files are attached when
    /// [`TlsProbes::refresh`] or an exec finds a process.
    pub fn open(comms: &[String]) -> Result<TlsProbes, LiveError> {
        let parts = Parts {
            tc: false,
            tls: true,
        };
        let object = BpfObject::load(parts).map_err(|e| match e {
            LiveError::Unavailable { reason, .. } => unavailable(reason),
            LiveError::Failed { reason, .. } => failed(reason),
        })?;
        TlsProbes::from_object(&object, comms)
    }

    /// As [`TlsProbes::open`], taking the programs and maps from the daemon's shared object.
    /// The exec/exit tracepoints are attached here.
    pub fn from_object(object: &BpfObject, comms: &[String]) -> Result<TlsProbes, LiveError> {
        if comms.is_empty() || comms.len() > MAX_COMMS as usize {
            return Err(failed(format!(
                "give between 1 and {MAX_COMMS} process names (got {})",
                comms.len()
            )));
        }
        if !object.parts().tls {
            return Err(failed(
                "the BPF object was loaded without the TLS-library part".into(),
            ));
        }
        let shared = object.clone();
        let mut guard = shared.lock();
        let ebpf: &mut Ebpf = &mut guard;
        let mut program_ids = Vec::new();
        for name in [
            PROG_D2I_X509,
            PROG_SSL_ENTER,
            PROG_SSL_SET_BIO,
            PROG_BIO_INT_CTRL,
            PROG_GNUTLS_PEERS,
            PROG_GNUTLS_PEERS_RET,
            PROG_GNUTLS_TRANSPORT,
            PROG_GNUTLS_TRANSPORT_INT,
            PROG_GNUTLS_DEINIT,
            PROG_PEER_CERT_ENTER,
            PROG_PEER_CERT_RET,
            PROG_I2D_X509,
            PROG_I2D_X509_RET,
            PROG_GNUTLS_OURS,
            PROG_GNUTLS_OURS_RET,
        ] {
            let prog = uprobe(ebpf, name)?;
            prog.load()
                .map_err(|e| load_error(&format!("loading {name}"), &e))?;
            if let Ok(info) = prog.info() {
                program_ids.push(info.id());
            }
        }
        attach_raw_tracepoints(
            ebpf,
            &[
                (PROG_SCHED_EXEC, "sched_process_exec"),
                (PROG_SCHED_EXIT, "sched_process_exit"),
            ],
            &mut program_ids,
        )?;
        // Host-wide tracepoint programs (they run for every socket send/receive; the program
        // checks the allow-list first), attached now: the endpoints must be taken while the
        // connection is in use, however short it is. Without them (a kernel before 6.4) the
        // /proc lookup alone maps connections, and the operator is told. Loaded last: the
        // tests read their ids at the end of `program_ids`.
        let mut reports = Vec::new();
        if let Err(e) = set_sock_offsets(ebpf) {
            reports.push(format!(
                "{e}: IPv6 TLS connections are mapped to their TCP endpoints through /proc \
                 only (those closed before the lookup lack them); IPv4 ones in the kernel"
            ));
        }
        let kernel_sockets = attach_raw_tracepoints(ebpf, &PROGS_SOCK_IO, &mut program_ids);
        if let Err(e) = &kernel_sockets {
            reports.push(format!(
                "{e}: TLS connections closed before their socket is looked up in /proc will \
                 lack their TCP endpoints"
            ));
        }
        let mut comm_map: BpfHashMap<MapData, [u8; COMM_LEN], u8> = BpfHashMap::try_from(
            ebpf.take_map(MAP_COMMS)
                .ok_or_else(|| failed(format!("the object has no map {MAP_COMMS}")))?,
        )
        .map_err(|e| failed(format!("{MAP_COMMS}: {e}")))?;
        for c in comms {
            comm_map
                .insert(comm_key(c), 1, 0)
                .map_err(|e| failed(format!("cannot add {c:?} to {MAP_COMMS}: {e}")))?;
        }
        let ring = RingBuf::try_from(
            ebpf.take_map(MAP_EVENTS)
                .ok_or_else(|| failed(format!("the object has no map {MAP_EVENTS}")))?,
        )
        .map_err(|e| failed(format!("{MAP_EVENTS}: {e}")))?;
        let kcounters = PerCpuArray::try_from(
            ebpf.take_map(MAP_COUNTERS)
                .ok_or_else(|| failed(format!("the object has no map {MAP_COUNTERS}")))?,
        )
        .map_err(|e| failed(format!("{MAP_COUNTERS}: {e}")))?;
        drop(guard);
        Ok(TlsProbes {
            ring,
            _comms: comm_map,
            kcounters,
            allow: comms.iter().map(|c| comm_of(&comm_key(c))).collect(),
            attached: HashSet::new(),
            links: HashSet::new(),
            procs: HashMap::new(),
            bare: HashSet::new(),
            openssl: openssl::Openssl::new(socket_endpoints, kernel_sockets.is_ok()),
            reported: HashSet::new(),
            reports,
            gnutls: gnutls::Gnutls::default(),
            adopting: Vec::new(),
            rescan: Rescan::default(),
            program_ids,
            counters: TlsCounters::default(),
            object: shared,
        })
    }

    /// Kernel IDs of the loaded programs.
    pub fn program_ids(&self) -> &[u32] {
        &self.program_ids
    }

    /// Number of library files attached.
    pub fn attached_files(&self) -> usize {
        self.attached.len()
    }

    /// Messages for the operator, each said once (a process whose library cannot be probed,
    /// by name). Taking them empties the queue.
    pub fn take_reports(&mut self) -> Vec<String> {
        std::mem::take(&mut self.reports)
    }

    /// Attaches to the host's shared TLS libraries as the dynamic linker resolves them
    /// (`ldconfig -p`: libssl, libcrypto, libgnutls of this machine's ABI), before any MTA
    /// process maps them. Otherwise a file is attached when the first allow-listed process
    /// mapping it is adopted, ~0.2 s after its exec: a handshake done sooner (an MTA's first
    /// smtp/smtpd after a start, whose long-lived processes do not map libssl) is missed.
    /// The probes filter by process name in the kernel, so other programs using these files
    /// pay the uprobe trap and that check (see `cargo xtask bench tls-library`), as they do
    /// once any MTA process maps them. Returns the paths newly attached; a failure is logged
    /// and leaves adoption as it was.
    pub fn attach_system_libraries(&mut self) -> Vec<String> {
        let out = ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]
            .iter()
            .find_map(|b| std::process::Command::new(b).arg("-p").output().ok());
        let Some(out) = out.filter(|o| o.status.success()) else {
            tracing::debug!("TLS library: no ldconfig -p; libraries attached as MTAs map them");
            return Vec::new();
        };
        let mut newly = Vec::new();
        for (kind, path) in ldconfig_tls_libraries(&String::from_utf8_lossy(&out.stdout)) {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            if self.attached.contains(&id) {
                continue;
            }
            match self.attach_file(&path, id, kind) {
                Ok(()) => {
                    self.attached.insert(id);
                    newly.push(path);
                }
                Err(e) => tracing::warn!(%path, error = %e, "TLS library: cannot probe"),
            }
        }
        newly
    }

    /// Scans /proc for allow-listed processes, attaches to the libssl/libcrypto/libgnutls files
    /// they map
    /// (each file once) and forgets processes that are gone. Returns how many files were newly
    /// attached.
    pub fn refresh(&mut self) -> Result<usize, LiveError> {
        let entries =
            std::fs::read_dir("/proc").map_err(|e| failed(format!("cannot list /proc: {e}")))?;
        let mut alive = HashSet::new();
        let mut newly = 0;
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                continue;
            };
            let comm = comm.trim_end_matches('\n');
            if !self.allow.iter().any(|a| a == comm) {
                continue;
            }
            alive.insert(pid);
            if self.procs.contains_key(&pid) {
                continue;
            }
            newly += self.adopt(pid, comm);
        }
        // Exits missed (a full ring) are caught here.
        let gone: Vec<u32> = self
            .procs
            .keys()
            .filter(|pid| !alive.contains(pid))
            .copied()
            .collect();
        for pid in gone {
            self.forget(pid);
        }
        self.gnutls.retain_procs(&alive);
        self.bare.retain(|pid| alive.contains(pid));
        Ok(newly)
    }

    /// Reads a process's maps, attaches its libraries, remembers its libssl text. Returns
    /// the number of files newly attached.
    fn adopt(&mut self, pid: u32, comm: &str) -> usize {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return 0;
        };
        let libs = parse_maps(&maps);
        if !libs
            .iter()
            .any(|l| matches!(l.kind, LibKind::Ssl | LibKind::Gnutls))
        {
            // Not adopted: a process caught between execve and the dynamic loader's mapping of
            // its libraries looks the same, so it is looked at again at the next refresh, and
            // reported when it still maps neither library then.
            if !self.bare.insert(pid) {
                self.report_once(
                    comm,
                    format!(
                        "process {comm} (pid {pid}) maps neither a shared libssl nor \
                         libgnutls: its TLS certificates (statically linked or another \
                         library) are not read through the library"
                    ),
                );
            }
            return 0;
        }
        let mut newly = 0;
        let mut ssl_text = Vec::new();
        let mut files = BTreeMap::new();
        for l in &libs {
            if l.kind == LibKind::Ssl && l.exec {
                ssl_text.push((l.start, l.end));
            }
            files.insert(l.path.clone(), l.kind);
        }
        for (path, kind) in files {
            let full = format!("/proc/{pid}/root{path}");
            let meta = match std::fs::metadata(&full) {
                Ok(m) => m,
                Err(e) => {
                    // Gone meanwhile is fine; a permission error means mxcert lacks ptrace
                    // access to the process (CAP_SYS_PTRACE) and would silently probe nothing.
                    if e.kind() == io::ErrorKind::PermissionDenied {
                        self.report_once(
                            comm,
                            format!(
                                "cannot open {path} of process {comm} (pid {pid}) through \
                                 /proc/{pid}/root: {e}; grant CAP_SYS_PTRACE or run as root"
                            ),
                        );
                    }
                    continue;
                }
            };
            if self.attached.contains(&(meta.dev(), meta.ino())) {
                continue;
            }
            // Attached through this process's own descriptor: the process behind
            // /proc/PID/root may exit during the attach (a short-lived one does), which left
            // the file attached without the optional end-of-handshake probes (their failure
            // reads as "not exported").
            let Ok(file) = std::fs::File::open(&full) else {
                continue;
            };
            let via = format!("/proc/self/fd/{}", file.as_raw_fd());
            match self.attach_file(&via, (meta.dev(), meta.ino()), kind) {
                Ok(()) => {
                    self.attached.insert((meta.dev(), meta.ino()));
                    newly += 1;
                }
                Err(e) => self.report_once(
                    comm,
                    format!("cannot probe {path} of process {comm} (pid {pid}): {e}"),
                ),
            }
        }
        self.procs.insert(
            pid,
            Proc {
                comm: comm.to_string(),
                ssl_text,
                read_ns: monotonic_ns(),
            },
        );
        newly
    }

    fn attach_file(
        &mut self,
        path: &str,
        (dev, ino): (u64, u64),
        kind: LibKind,
    ) -> Result<(), LiveError> {
        let mut guard = self.object.lock();
        for (prog, symbol, required) in links_to_make(&self.links, (dev, ino), kind) {
            match uprobe(&mut guard, prog)?.attach(symbol, path, UProbeScope::AllProcesses) {
                Ok(_) => {
                    self.links.insert((dev, ino, prog, symbol));
                }
                Err(e) if required => {
                    return Err(load_error(
                        &format!("attaching {prog} to {symbol} in {path}"),
                        &e,
                    ));
                }
                Err(e) => {
                    tracing::debug!(%symbol, %path, error = %e, "no end-of-handshake probe")
                }
            }
        }
        Ok(())
    }

    fn report_once(&mut self, comm: &str, msg: String) {
        if self.reported.insert(comm.to_string()) {
            self.reports.push(msg);
        }
    }

    /// All counters.
    pub fn stats(&self) -> TlsCounters {
        let get = |idx: u32| -> u64 {
            self.kcounters
                .get(&idx, 0)
                .map(|v| v.iter().copied().sum())
                .unwrap_or(0)
        };
        TlsCounters {
            certs: get(counter::CERTS),
            cert_bytes: get(counter::CERT_BYTES),
            truncated: get(counter::TRUNCATED),
            ring_full: get(counter::RING_FULL),
            read_errors: get(counter::READ_ERRORS),
            filtered: get(counter::FILTERED),
            outside_ssl: get(counter::OUTSIDE_SSL),
            gnutls_peers: get(counter::GNUTLS_PEERS),
            sockets: get(counter::SOCKETS),
            sock_not_inet: get(counter::SOCK_NOT_INET),
            sockets_v6: get(counter::SOCKETS_V6),
            sockets_v4_mapped: get(counter::SOCKETS_V4_MAPPED),
            ..self.counters
        }
    }

    /// Reads the records, then hands every complete chain to `f`; returns how many chains
    /// were handed out. While none is, waits up to `timeout` (`Duration::ZERO`: not at all)
    /// in ticks of [`POLL_TICK`]: the kernel side does not wake the reader (a wakeup costs
    /// the MTA more than the probe itself, see `Wake` in monitor-ebpf), so the ring is looked
    /// at again each tick, and at once when an exec record wakes it.
    pub fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(PeerChain),
    ) -> Result<usize, LiveError> {
        let start = std::time::Instant::now();
        loop {
            self.drain();
            let now = monotonic_ns();
            if !self.adopting.is_empty() {
                self.adopt_new(now);
            }
            if self.rescan.take(now) {
                // A failure here is the periodic scan's to report (the daemon logs it).
                if let Err(e) = self.refresh() {
                    tracing::debug!(error = %e, "TLS library: /proc scan after an early exit");
                }
            }
            let n = self.flush(now, f);
            let left = timeout.saturating_sub(start.elapsed());
            if n > 0 || left.is_zero() {
                return Ok(n);
            }
            let mut pfd = libc::pollfd {
                fd: self.ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.min(POLL_TICK).as_millis().max(1);
            let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd for the duration of the call.
            if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(failed(format!("poll on the ring buffer: {e}")));
                }
            }
        }
    }

    fn drain(&mut self) -> usize {
        let mut n = 0;
        for _ in 0..MAX_RECORDS_PER_POLL {
            let Some(item) = self.ring.next() else { break };
            let rec: Vec<u8> = item.to_vec();
            drop(item);
            self.handle(&rec);
            n += 1;
        }
        n
    }

    fn handle(&mut self, rec: &[u8]) {
        let Some((ev, data)) = parse_event(rec) else {
            self.counters.bad_records += 1;
            return;
        };
        match ev.kind {
            EV_BIO_FD => self
                .openssl
                .bio_fd(ev.tgid, ev.bio, ev.fd, &mut self.counters),
            EV_SET_BIO => {
                let comm = self.comm(ev.tgid);
                self.openssl
                    .set_bio((ev.tgid, ev.ssl), ev.bio, comm, &mut self.counters);
            }
            EV_CERT => {
                if !self.in_libssl_text(ev.tgid, ev.caller) {
                    self.counters.not_peer += 1;
                    return;
                }
                if ev.ssl == 0 {
                    self.counters.no_ssl += 1;
                    return;
                }
                let procs = &self.procs;
                let comm = |tgid| comm_of_proc(procs, tgid);
                self.openssl
                    .cert((ev.tgid, ev.ssl), &ev, data, &comm, &mut self.counters);
            }
            EV_SOCK => {
                let Some((local, remote)) = sock_endpoints(data) else {
                    self.counters.bad_records += 1;
                    return;
                };
                if self.gnutls.set_endpoints((ev.tgid, ev.ssl), local, remote) {
                    return;
                }
                let procs = &self.procs;
                let comm = |tgid| comm_of_proc(procs, tgid);
                self.openssl.set_endpoints(
                    (ev.tgid, ev.ssl),
                    local,
                    remote,
                    &comm,
                    &mut self.counters,
                );
            }
            EV_OWN_CERT => {
                // Our chain is encoded by libssl; other `i2d_X509` callers inside an SSL call
                // (libcrypto's own use) return elsewhere.
                if !self.in_libssl_text(ev.tgid, ev.caller) || ev.ssl == 0 {
                    self.counters.not_peer += 1;
                    return;
                }
                self.openssl
                    .own_cert((ev.tgid, ev.ssl), &ev, data, &mut self.counters);
            }
            EV_GNUTLS_CERT | EV_GNUTLS_TRANSPORT | EV_GNUTLS_DEINIT | EV_GNUTLS_OURS => {
                let procs = &self.procs;
                let comm = |tgid| comm_of_proc(procs, tgid);
                self.gnutls.handle(&ev, data, &comm, &mut self.counters);
            }
            EV_PEER => {
                self.openssl
                    .handshake_ended((ev.tgid, ev.ssl), ev.caller, &mut self.counters)
            }
            EV_EXEC => {
                self.counters.execs += 1;
                let Some(deadline) = exec_adoption(self.procs.get(&ev.tgid), ev.ktime_ns) else {
                    return;
                };
                // The old image is gone: so are its connections and mappings.
                self.forget(ev.tgid);
                if self.adopting.len() >= MAX_ADOPTING {
                    self.counters.table_full += 1;
                    return;
                }
                self.adopting.push((ev.tgid, deadline));
            }
            EV_EXIT => {
                self.counters.exits += 1;
                if self.adopting.iter().any(|a| a.0 == ev.tgid) {
                    self.rescan.ended_unadopted();
                }
                self.forget(ev.tgid);
            }
            _ => self.counters.bad_records += 1,
        }
    }

    /// Process `tgid` exited or replaced its image: hands out the chains it had complete and
    /// forgets the rest of it.
    fn forget(&mut self, tgid: u32) {
        self.openssl.forget(tgid, &mut self.counters);
        self.adopting.retain(|a| a.0 != tgid);
        self.gnutls.forget(tgid);
        self.procs.remove(&tgid);
    }

    /// Adopts the processes that exec'd once their libssl is mapped (or their wait is over).
    fn adopt_new(&mut self, now: u64) {
        let waiting = std::mem::take(&mut self.adopting);
        for (pid, deadline) in waiting {
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
            if ready_for_adoption(&parse_maps(&maps)) || now >= deadline {
                let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                    self.rescan.ended_unadopted();
                    continue;
                };
                let comm = comm.trim_end_matches('\n').to_string();
                if self.allow.contains(&comm) {
                    self.adopt(pid, &comm);
                }
            } else {
                self.adopting.push((pid, deadline));
            }
        }
    }

    /// Whether `addr` lies in libssl's text in process `tgid` (maps read on first sight, for
    /// processes started since the last refresh; a process already gone keeps nothing).
    fn in_libssl_text(&mut self, tgid: u32, addr: u64) -> bool {
        let proc = self.procs.entry(tgid).or_insert_with(|| {
            let ssl_text = std::fs::read_to_string(format!("/proc/{tgid}/maps"))
                .map(|maps| {
                    parse_maps(&maps)
                        .into_iter()
                        .filter(|l| l.kind == LibKind::Ssl && l.exec)
                        .map(|l| (l.start, l.end))
                        .collect()
                })
                .unwrap_or_default();
            let comm = std::fs::read_to_string(format!("/proc/{tgid}/comm")).unwrap_or_default();
            Proc {
                comm: comm.trim_end_matches('\n').to_string(),
                ssl_text,
                read_ns: monotonic_ns(),
            }
        });
        if proc.ssl_text.is_empty() {
            // Adopted before its loader mapped libssl's text (or never seen mapping it): look
            // again, this is rare and cheap.
            if let Ok(maps) = std::fs::read_to_string(format!("/proc/{tgid}/maps")) {
                proc.ssl_text = parse_maps(&maps)
                    .into_iter()
                    .filter(|l| l.kind == LibKind::Ssl && l.exec)
                    .map(|l| (l.start, l.end))
                    .collect();
            }
        }
        proc.ssl_text
            .iter()
            .any(|&(lo, hi)| (lo..hi).contains(&addr))
    }

    fn comm(&self, tgid: u32) -> String {
        comm_of_proc(&self.procs, tgid)
    }

    /// Hands out the chains complete at `now` (monotonic ns): those whose end was signalled
    /// or whose process ended, then, for applications that never ask for the peer
    /// certificate, those quiet for [`QUIET`].
    fn flush(&mut self, now: u64, f: &mut dyn FnMut(PeerChain)) -> usize {
        let mut out = self.openssl.take_ready(now, &mut self.counters);
        // GnuTLS chains are complete when handed over, empty ones included: the library
        // returned NULL after the handshake, the peer sent no certificate.
        out.extend(self.gnutls.take_ready());
        let n = out.len();
        for c in out.iter().filter(|c| !c.sent) {
            self.counters.chains += 1;
            match (c.local.is_some(), c.kernel_mapped) {
                (true, true) => self.counters.kernel_mapped += 1,
                (true, false) => self.counters.proc_mapped += 1,
                (false, _) => {}
            }
        }
        for c in out {
            f(c);
        }
        n
    }
}

/// What an exec record of a process at `exec_ns` means, given what is known of it: `None`
/// when a /proc scan read its maps after the exec (they are the new image's, and the process
/// may be gone by now, a short one, so they are kept), else the deadline of the wait for the
/// new image's libssl mapping ([`ADOPT_WAIT`]); the caller forgets the old image then.
fn exec_adoption(known: Option<&Proc>, exec_ns: u64) -> Option<u64> {
    if known.is_some_and(|p| p.read_ns > exec_ns && !p.ssl_text.is_empty()) {
        return None;
    }
    Some(exec_ns.saturating_add(ADOPT_WAIT.as_nanos() as u64))
}

/// Whether a process's maps show what adoption needs: both libssl's and libcrypto's text
/// (ld.so maps a library's whole range read-only first and its executable segment after,
/// elf/dl-map-segments.h, and libssl's text is what tells a peer's chain from other loads),
/// or libgnutls's (Exim needs only that one).
fn ready_for_adoption(libs: &[LibMap]) -> bool {
    let mapped = |k: LibKind| libs.iter().any(|l| l.kind == k && l.exec);
    (mapped(LibKind::Ssl) && mapped(LibKind::Crypto)) || mapped(LibKind::Gnutls)
}

/// The probes of one library file: (program, symbol, required). Optional ones (the
/// end-of-handshake signal) may be missing from the library (before OpenSSL 3): its chains
/// then go out on the [`QUIET`] timer.
fn probe_points(kind: LibKind) -> Vec<(&'static str, &'static str, bool)> {
    match kind {
        LibKind::Ssl => SSL_ENTRY_POINTS
            .iter()
            .map(|s| (PROG_SSL_ENTER, *s, true))
            .chain([(PROG_SSL_SET_BIO, "SSL_set_bio", true)])
            .chain(PEER_CERT_FUNCTIONS.iter().flat_map(|s| {
                [
                    (PROG_PEER_CERT_ENTER, *s, false),
                    (PROG_PEER_CERT_RET, *s, false),
                ]
            }))
            .collect(),
        LibKind::Crypto => vec![
            (PROG_D2I_X509, "d2i_X509", true),
            (PROG_BIO_INT_CTRL, "BIO_int_ctrl", true),
            (PROG_I2D_X509, "i2d_X509", true),
            (PROG_I2D_X509_RET, "i2d_X509", true),
        ],
        LibKind::Gnutls => vec![
            (PROG_GNUTLS_PEERS, "gnutls_certificate_get_peers", true),
            (PROG_GNUTLS_PEERS_RET, "gnutls_certificate_get_peers", true),
            (PROG_GNUTLS_TRANSPORT_INT, "gnutls_transport_set_int2", true),
            (PROG_GNUTLS_TRANSPORT, "gnutls_transport_set_ptr", true),
            (PROG_GNUTLS_TRANSPORT, "gnutls_transport_set_ptr2", true),
            (PROG_GNUTLS_DEINIT, "gnutls_deinit", true),
            (PROG_GNUTLS_OURS, "gnutls_certificate_get_ours", true),
            (PROG_GNUTLS_OURS_RET, "gnutls_certificate_get_ours", true),
            (PROG_SSL_ENTER, "gnutls_handshake", true),
        ],
    }
}

/// A link made: (device, inode, program, symbol).
type Link = (u64, u64, &'static str, &'static str);

/// The probes of file (`dev`, `ino`) still to attach: those of `kind` without a link yet. A
/// file whose attach failed part-way (the process whose /proc/PID/root led to it exited) is
/// retried through another process without probing a function twice, which would send each
/// certificate twice; the same file reached through another path (another mount namespace)
/// is the same (device, inode).
fn links_to_make(
    links: &HashSet<Link>,
    (dev, ino): (u64, u64),
    kind: LibKind,
) -> Vec<(&'static str, &'static str, bool)> {
    probe_points(kind)
        .into_iter()
        .filter(|&(prog, symbol, _)| !links.contains(&(dev, ino, prog, symbol)))
        .collect()
}

/// A process that exec'd and ended before it was adopted may have forked the one that lives
/// on: a daemon starting in the background (`exim -bd` forks, its parent exits; measured with
/// Exim 4.96 started after mxcert: libgnutls stayed unattached until the 30 s rescan). A fork
/// is no exec, so no record tells of the child (same name, same libraries): a /proc scan finds
/// it, at most once per [`RESCAN_GAP`] (a host running short allow-listed programs in a loop
/// would otherwise scan /proc on every poll).
#[derive(Debug, Default)]
struct Rescan {
    due: bool,
    /// When the last one ran (monotonic ns).
    last_ns: Option<u64>,
}

impl Rescan {
    fn ended_unadopted(&mut self) {
        self.due = true;
    }

    /// Whether to scan now (`now`: monotonic ns); a scan not run yet stays due.
    fn take(&mut self, now: u64) -> bool {
        let gap = RESCAN_GAP.as_nanos() as u64;
        if !self.due || self.last_ns.is_some_and(|l| now.saturating_sub(l) < gap) {
            return false;
        }
        self.due = false;
        self.last_ns = Some(now);
        true
    }
}

fn comm_of_proc(procs: &HashMap<u32, Proc>, tgid: u32) -> String {
    procs
        .get(&tgid)
        .map(|p| p.comm.clone())
        .or_else(|| std::fs::read_to_string(format!("/proc/{tgid}/comm")).ok())
        .map(|c| c.trim_end_matches('\n').to_string())
        .unwrap_or_default()
}

/// Writes the `struct sock_common` offsets of the running kernel, read from its BTF, for the
/// socket tracepoints. Without BTF the IPv4-only defaults are written (and the program falls
/// back to them when nothing could be written) and the reason is returned.
fn set_sock_offsets(ebpf: &mut Ebpf) -> Result<(), LiveError> {
    let from_btf = btf::Btf::vmlinux()
        .and_then(|b| btf::sock_offsets(&b))
        .map_err(|e| failed(format!("no socket offsets from the kernel's BTF ({e})")));
    let map = ebpf
        .map_mut(MAP_SOCK_OFFSETS)
        .ok_or_else(|| failed(format!("the object has no map {MAP_SOCK_OFFSETS}")))?;
    let mut array: Array<&mut MapData, SockOffsets> =
        Array::try_from(map).map_err(|e| failed(format!("{MAP_SOCK_OFFSETS}: {e}")))?;
    let offsets = from_btf.as_ref().copied().unwrap_or_default();
    array
        .set(0, offsets, 0)
        .map_err(|e| failed(format!("writing {MAP_SOCK_OFFSETS}: {e}")))?;
    from_btf.map(drop)
}

/// Loads and attaches the raw tracepoint programs `progs` (name, tracepoint), adding their
/// ids to `ids`.
fn attach_raw_tracepoints(
    ebpf: &mut Ebpf,
    progs: &[(&str, &str)],
    ids: &mut Vec<u32>,
) -> Result<(), LiveError> {
    for &(name, tracepoint) in progs {
        let prog: &mut RawTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| failed(format!("the object has no program {name}")))?
            .try_into()
            .map_err(|e| failed(format!("{name} is not a raw tracepoint: {e}")))?;
        prog.load()
            .map_err(|e| load_error(&format!("loading {name}"), &e))?;
        if let Ok(info) = prog.info() {
            ids.push(info.id());
        }
        prog.attach(tracepoint)
            .map_err(|e| load_error(&format!("attaching {name} to {tracepoint}"), &e))?;
    }
    Ok(())
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, LiveError> {
    ebpf.program_mut(name)
        .ok_or_else(|| failed(format!("the object has no program {name}")))?
        .try_into()
        .map_err(|e| failed(format!("{name} is not a uprobe: {e}")))
}

fn comm_of(key: &[u8; COMM_LEN]) -> String {
    let end = key.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&key[..end]).into_owned()
}

fn parse_event(rec: &[u8]) -> Option<(TlsEvent, &[u8])> {
    if rec.len() < EVENT_LEN {
        return None;
    }
    // SAFETY: TlsEvent is plain old data (aya::Pod) and rec holds EVENT_LEN bytes; the read is
    // unaligned-safe.
    let ev: TlsEvent = unsafe { std::ptr::read_unaligned(rec.as_ptr().cast()) };
    let len = ev.data_len as usize;
    let ok = ev.data_len <= MAX_CERT && len <= rec.len() - EVENT_LEN;
    ok.then(|| (ev, &rec[EVENT_LEN..EVENT_LEN + len]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LibKind {
    Ssl,
    Crypto,
    Gnutls,
}

#[derive(Debug, PartialEq, Eq)]
struct LibMap {
    start: u64,
    end: u64,
    exec: bool,
    kind: LibKind,
    path: String,
}

/// Which TLS library a file name is: `libssl.so*`, `libcrypto.so*`, `libgnutls.so*` (not
/// NSS's libssl3.so, not libgnutlsxx or libgnutls-openssl).
fn lib_kind(name: &str) -> Option<LibKind> {
    [
        ("libssl.so", LibKind::Ssl),
        ("libcrypto.so", LibKind::Crypto),
        ("libgnutls.so", LibKind::Gnutls),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| name.starts_with(prefix).then_some(kind))
}

/// The TLS library files of an `ldconfig -p` listing ("\tlibssl.so.3 (libc6,x86-64) =>
/// /lib/x86_64-linux-gnu/libssl.so.3"), for this machine's ABI only (a 32-bit copy is
/// listed as "(libc6)" and never mapped by a 64-bit MTA), each file once by its canonical path
/// (/lib and /usr/lib name one file on merged-/usr systems; the unversioned libssl.so of the
/// -dev package is a link to the same file).
fn ldconfig_tls_libraries(listing: &str) -> Vec<(LibKind, String)> {
    #[cfg(target_arch = "x86_64")]
    const ABI: Option<&str> = Some("x86-64");
    #[cfg(target_arch = "aarch64")]
    const ABI: Option<&str> = Some("AArch64");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    const ABI: Option<&str> = None;
    let mut out: Vec<(LibKind, String)> = Vec::new();
    for line in listing.lines() {
        let Some((left, path)) = line.split_once(" => ") else {
            continue;
        };
        let mut f = left.split_whitespace();
        let (Some(name), Some(tags)) = (f.next(), f.next()) else {
            continue;
        };
        if ABI.is_some_and(|abi| !tags.contains(abi)) {
            continue;
        }
        let Some(kind) = lib_kind(name) else {
            continue;
        };
        let path = std::fs::canonicalize(path.trim())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.trim().to_string());
        if !out.iter().any(|(_, p)| *p == path) {
            out.push((kind, path));
        }
    }
    out
}

/// The libssl/libcrypto/libgnutls mappings of a `/proc/PID/maps` text (proc(5)): any file
/// named `libssl.so*` / `libcrypto.so*` / `libgnutls.so*`, shared or a private copy.
fn parse_maps(maps: &str) -> Vec<LibMap> {
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(_ino), Some(path)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        let Some(kind) = lib_kind(name) else {
            continue;
        };
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        out.push(LibMap {
            start,
            end,
            exec: perms.as_bytes().get(2) == Some(&b'x'),
            kind,
            path: path.to_string(),
        });
    }
    out
}

/// The (local, remote) endpoints of an `EV_SOCK` payload.
fn sock_endpoints(data: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    if data.len() != SOCK_LEN {
        return None;
    }
    // SAFETY: SockEndpoints is plain old data (aya::Pod) and data holds SOCK_LEN bytes; the
    // read is unaligned-safe.
    let ep: SockEndpoints = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
    let ip = |a: [u8; 16]| match ep.family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        // The kernel sends IPv4-mapped addresses as AF_INET; should one come as AF_INET6
        // anyway, it is keyed as IPv4 all the same, like the wire side.
        AF_INET6 => {
            let v6 = Ipv6Addr::from(a);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    };
    Some((
        SocketAddr::new(ip(ep.local)?, ep.local_port),
        SocketAddr::new(ip(ep.remote)?, ep.remote_port),
    ))
}

/// The (local, remote) endpoints of TCP socket `fd` of process `tgid`, looked up in the
/// process's own network namespace.
fn socket_endpoints(tgid: u32, fd: i32) -> Option<(SocketAddr, SocketAddr)> {
    let link = std::fs::read_link(format!("/proc/{tgid}/fd/{fd}")).ok()?;
    let inode = link
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .to_string();
    ["tcp", "tcp6"].iter().find_map(|t| {
        let table = std::fs::read_to_string(format!("/proc/{tgid}/net/{t}")).ok()?;
        find_inode(&table, &inode)
    })
}

/// The endpoints of the socket with `inode` in a `/proc/net/tcp{,6}` table.
fn find_inode(table: &str, inode: &str) -> Option<(SocketAddr, SocketAddr)> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(9) != Some(&inode) {
            return None;
        }
        Some((hex_endpoint(f.get(1)?)?, hex_endpoint(f.get(2)?)?))
    })
}

/// `0100007F:0019` or the IPv6 form: the address as the kernel's 32-bit words printed in host
/// byte order (net/ipv4/tcp_ipv4.c `get_tcp4_sock`, net/ipv6/tcp_ipv6.c `get_tcp6_sock`), the
/// port in host order.
fn hex_endpoint(s: &str) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let words: Option<Vec<[u8; 4]>> = (0..a.len() / 8)
        .map(|i| {
            u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16)
                .ok()
                .map(u32::to_ne_bytes)
        })
        .collect();
    let bytes: Vec<u8> = words?.concat();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            let v6 = Ipv6Addr::from(b);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn monotonic_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}

fn unavailable(reason: String) -> LiveError {
    LiveError::unavailable(BACKEND, reason)
}

fn failed(reason: String) -> LiveError {
    LiveError::failed(BACKEND, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_ended_before_adoption_asks_for_one_scan_per_gap() {
        let mut r = Rescan::default();
        assert!(!r.take(5), "nothing ended: no scan");
        r.ended_unadopted();
        assert!(r.take(10), "the first scan runs at once");
        assert!(!r.take(11), "done: not again");
        r.ended_unadopted();
        let gap = RESCAN_GAP.as_nanos() as u64;
        assert!(!r.take(10 + gap - 1), "within the gap: waits");
        assert!(r.take(10 + gap), "still due after the gap");
        assert!(!r.take(10 + 3 * gap));
    }

    #[test]
    fn ldconfig_listing_gives_this_abis_tls_libraries_once() {
        let listing = "1234 libs found in cache `/etc/ld.so.cache'
\tlibssl.so.3 (libc6,x86-64) => /nonexistent/x86_64-linux-gnu/libssl.so.3
\tlibssl.so.3 (libc6) => /nonexistent/i386-linux-gnu/libssl.so.3
\tlibssl.so.3 (libc6,AArch64) => /nonexistent/aarch64-linux-gnu/libssl.so.3
\tlibssl.so (libc6,x86-64) => /nonexistent/x86_64-linux-gnu/libssl.so.3
\tlibsqlite3.so.0 (libc6,x86-64) => /nonexistent/libsqlite3.so.0
\tlibgnutls.so.30 (libc6,x86-64) => /nonexistent/libgnutls.so.30
\tlibcrypto.so.3 (libc6,x86-64) => /nonexistent/libcrypto.so.3
Cache generated by: ldconfig (GNU libc) stable release version 2.36
";
        let libs = ldconfig_tls_libraries(listing);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            libs,
            [
                (
                    LibKind::Ssl,
                    "/nonexistent/x86_64-linux-gnu/libssl.so.3".to_string()
                ),
                (LibKind::Gnutls, "/nonexistent/libgnutls.so.30".to_string()),
                (LibKind::Crypto, "/nonexistent/libcrypto.so.3".to_string()),
            ]
        );
        assert!(libs.iter().all(|(_, p)| !p.contains("sqlite")));
    }

    #[test]
    fn maps_lines_give_libssl_text_and_both_files() {
        let maps = "\
7f10a0000000-7f10a0020000 r--p 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f10a0020000-7f10a0080000 r-xp 00020000 08:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f10b0000000-7f10b0300000 r-xp 00000000 08:01 99 /opt/app/lib/libcrypto.so.3
7f10c0000000-7f10c0001000 rw-p 00000000 00:00 0
7f10d0000000-7f10d0100000 r-xp 00000000 08:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
7f10e0000000-7f10e0100000 r-xp 00000000 08:01 8 /usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3
7f10f0000000-7f10f0100000 r-xp 00000000 08:01 9 /usr/lib/x86_64-linux-gnu/libgnutls-dane.so.0
";
        let libs = parse_maps(maps);
        assert_eq!(libs.len(), 4);
        assert_eq!(libs[3].kind, LibKind::Gnutls);
        assert!(!libs[0].exec && libs[1].exec);
        assert_eq!(libs[1].kind, LibKind::Ssl);
        assert_eq!(
            (libs[1].start, libs[1].end),
            (0x7f10a0020000, 0x7f10a0080000)
        );
        assert_eq!(libs[2].kind, LibKind::Crypto);
        assert_eq!(libs[2].path, "/opt/app/lib/libcrypto.so.3");
    }

    #[test]
    fn proc_net_tcp_endpoints_are_decoded() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 012812C6:0019 022812C6:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1
";
        let (l, r) = find_inode(v4, "4242").unwrap();
        assert_eq!(l, "198.18.40.1:25".parse().unwrap());
        assert_eq!(r, "198.18.40.2:40000".parse().unwrap());
        assert_eq!(find_inode(v4, "4243"), None);
        // IPv6 ::1 port 587.
        let a = hex_endpoint("00000000000000000000000001000000:024B").unwrap();
        assert_eq!(a, "[::1]:587".parse().unwrap());
        // IPv4-mapped in a tcp6 table is reported as IPv4, like the wire side.
        let m = hex_endpoint("0000000000000000FFFF0000012812C6:0019").unwrap();
        assert_eq!(m, "198.18.40.1:25".parse().unwrap());
    }

    #[test]
    fn records_are_checked_before_use() {
        let ev = TlsEvent {
            kind: EV_CERT,
            der_len: 10,
            data_len: 4,
            ..Default::default()
        };
        let mut rec = vec![0u8; EVENT_LEN + 4];
        // SAFETY: rec holds EVENT_LEN bytes.
        unsafe { std::ptr::write_unaligned(rec.as_mut_ptr().cast(), ev) };
        assert_eq!(parse_event(&rec).unwrap().1.len(), 4);
        assert!(parse_event(&rec[..EVENT_LEN + 3]).is_none());
        assert!(parse_event(&rec[..8]).is_none());
    }

    #[test]
    fn socket_records_give_ipv4_and_ipv6_endpoints() {
        let mut ep = SockEndpoints {
            family: AF_INET,
            local_port: 25,
            remote_port: 40000,
            ..Default::default()
        };
        ep.local[..4].copy_from_slice(&[198, 18, 40, 1]);
        ep.remote[..4].copy_from_slice(&[198, 18, 40, 2]);
        let mut data = vec![0u8; SOCK_LEN];
        // SAFETY: data holds SOCK_LEN bytes.
        unsafe { std::ptr::write_unaligned(data.as_mut_ptr().cast(), ep) };
        let (l, r) = sock_endpoints(&data).unwrap();
        assert_eq!(l, "198.18.40.1:25".parse().unwrap());
        assert_eq!(r, "198.18.40.2:40000".parse().unwrap());
        assert!(sock_endpoints(&data[..SOCK_LEN - 1]).is_none());
        let put = |ep: SockEndpoints| {
            let mut data = vec![0u8; SOCK_LEN];
            // SAFETY: data holds SOCK_LEN bytes.
            unsafe { std::ptr::write_unaligned(data.as_mut_ptr().cast(), ep) };
            sock_endpoints(&data)
        };
        ep.family = 1; // AF_UNIX: never sent, refused.
        assert!(put(ep).is_none());
        ep.family = AF_INET6;
        ep.local = "::1".parse::<Ipv6Addr>().unwrap().octets();
        ep.remote = "::1".parse::<Ipv6Addr>().unwrap().octets();
        let (l, r) = put(ep).unwrap();
        assert_eq!(l, "[::1]:25".parse().unwrap());
        assert_eq!(r, "[::1]:40000".parse().unwrap());
        ep.remote = "::ffff:198.18.90.2".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(put(ep).unwrap().1, "198.18.90.2:40000".parse().unwrap());
    }

    fn proc_read_at(read_ns: u64, ssl_text: Vec<(u64, u64)>) -> Proc {
        Proc {
            comm: "smtpd".into(),
            ssl_text,
            read_ns,
        }
    }

    #[test]
    fn an_exec_record_readopts_unless_the_new_image_was_read_after_it() {
        let wait = ADOPT_WAIT.as_nanos() as u64;
        // Unknown process: adopted once its libraries are mapped, within ADOPT_WAIT.
        assert_eq!(exec_adoption(None, 1_000), Some(1_000 + wait));
        // Maps read before the exec are the old image's.
        let old = proc_read_at(500, vec![(1, 2)]);
        assert_eq!(exec_adoption(Some(&old), 1_000), Some(1_000 + wait));
        // Read after it (a /proc scan ran before the ring was read): kept, even if the
        // process is gone by now.
        let new = proc_read_at(2_000, vec![(1, 2)]);
        assert_eq!(exec_adoption(Some(&new), 1_000), None);
        // Read after it but before its loader mapped libssl: looked at again.
        let early = proc_read_at(2_000, Vec::new());
        assert_eq!(exec_adoption(Some(&early), 1_000), Some(1_000 + wait));
    }

    #[test]
    fn adoption_waits_for_both_openssl_libraries_or_gnutls() {
        let line = |kind: &str, perms: &str| {
            format!("7f10a0020000-7f10a0080000 {perms} 00020000 08:01 1 /usr/lib/{kind}\n")
        };
        let ready = |maps: &str| ready_for_adoption(&parse_maps(maps));
        // ld.so maps a library read-only first, its text after.
        let ssl_ro = line("libssl.so.3", "r--p");
        let ssl_x = line("libssl.so.3", "r-xp");
        let crypto_x = line("libcrypto.so.3", "r-xp");
        assert!(!ready(""));
        assert!(!ready(&(ssl_ro.clone() + &crypto_x)));
        assert!(!ready(&ssl_x));
        assert!(ready(&(ssl_ro + &ssl_x + &crypto_x)));
        assert!(ready(&line("libgnutls.so.30", "r-xp")));
    }

    #[test]
    fn each_function_of_a_file_is_probed_once_per_program() {
        let mut links = HashSet::new();
        let file = (8, 1234);
        let all = links_to_make(&links, file, LibKind::Ssl);
        // The SSL entry points, SSL_set_bio, and both peer-certificate functions' entry and
        // return (optional: a libssl before OpenSSL 3 lacks them).
        assert_eq!(all.len(), SSL_ENTRY_POINTS.len() + 1 + 4);
        assert_eq!(all.iter().filter(|p| !p.2).count(), 4);
        // An attach that failed part-way: the retry (through another process's
        // /proc/PID/root, same device and inode) makes only the missing links.
        for &(prog, symbol, _) in &all[..3] {
            links.insert((file.0, file.1, prog, symbol));
        }
        let rest = links_to_make(&links, file, LibKind::Ssl);
        assert_eq!(rest, all[3..].to_vec());
        for &(prog, symbol, _) in &rest {
            links.insert((file.0, file.1, prog, symbol));
        }
        assert!(links_to_make(&links, file, LibKind::Ssl).is_empty());
        // Another file (a container's copy) gets its own links; the same program on two
        // symbols (gnutls_transport_set_ptr/_ptr2) is two links.
        assert_eq!(links_to_make(&links, (8, 99), LibKind::Ssl), all);
        let gnutls = links_to_make(&links, file, LibKind::Gnutls);
        let transport = gnutls
            .iter()
            .filter(|p| p.0 == PROG_GNUTLS_TRANSPORT)
            .count();
        assert_eq!(transport, 2);
    }

    #[test]
    fn allow_list_names_are_cut_like_the_kernel_does() {
        assert_eq!(comm_of(&comm_key("smtpd")), "smtpd");
        assert_eq!(
            comm_of(&comm_key("a-very-long-process-name")),
            "a-very-long-pro"
        );
    }
}
