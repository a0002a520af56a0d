//! Helpers for the eBPF capture tests: a bounded TCP exchange between the two namespaces of a
//! [`NetnsPair`] (plain std sockets on threads moved into the namespaces), collection of what
//! an [`EbpfSource`] delivers meanwhile, and reconstruction of each direction's byte stream from
//! the delivered frames through mxcert's own decoder.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mxcert::capture::ebpf::EbpfSource;
use mxcert::capture::{decode, DecodeOutcome, LinkType, LiveSource};
use sha2::{Digest, Sha256};

use crate::netns::{NetnsPair, Side};

/// True when the test can load eBPF programs here; otherwise says why and returns false, except
/// under CI (`CI=true`), where a missing prerequisite fails the test.
pub fn require_ebpf(test: &str) -> bool {
    if !crate::netns::require_root(test) {
        return false;
    }
    match mxcert::capture::ebpf::available() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var_os("CI").is_some_and(|v| v == "true") {
                panic!("{test}: eBPF capture unavailable under CI: {why}");
            }
            eprintln!("{test}: SKIPPED: eBPF capture unavailable: {why}");
            false
        }
    }
}

/// Deterministic test bytes (an LCG: cheap, not compressible into a pattern TCP could hide).
pub fn test_bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect()
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// What each side of an exchange received, hashed, and the client's address.
#[derive(Debug)]
pub struct Exchange {
    pub server_got: [u8; 32],
    pub server_got_len: usize,
    pub client_got: [u8; 32],
    pub client_got_len: usize,
    pub client: SocketAddr,
}

/// Optional pause of the client after its first `first` bytes, until `go` is signalled (lets a
/// test mark the flow done between a "handshake" and the body).
pub struct Pause {
    pub first: usize,
    pub reached: mpsc::Sender<SocketAddr>,
    pub go: mpsc::Receiver<()>,
}

/// Runs one TCP connection from the client namespace to `server_ip:port`: the client sends
/// `upload` and shuts down its write side, the server reads everything, then sends `download`
/// and closes. Everything is bounded by a 60 s socket timeout.
pub fn exchange(
    pair: &NetnsPair,
    port: u16,
    upload: Vec<u8>,
    download: Vec<u8>,
    pause: Option<Pause>,
) -> JoinHandle<Result<Exchange>> {
    let server = SocketAddr::from((pair.server_ip, port));
    exchange_to(pair, server, upload, download, pause, Vec::new())
}

/// A socket option the client sets before connecting: (level, name, value).
pub type SockOpt = (libc::c_int, libc::c_int, Vec<u8>);

/// [`exchange`] to any server address in the server namespace (IPv6, a VLAN's address), the
/// client socket carrying `client_opts` (e.g. IPv6 extension headers) from its SYN on.
pub fn exchange_to(
    pair: &NetnsPair,
    server_addr: SocketAddr,
    upload: Vec<u8>,
    download: Vec<u8>,
    pause: Option<Pause>,
    client_opts: Vec<SockOpt>,
) -> JoinHandle<Result<Exchange>> {
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    // Bind in the server namespace on this thread, then hand the listener over.
    let listener = (|| -> Result<TcpListener> {
        let _ns = pair.enter(Side::Server)?;
        TcpListener::bind(server_addr).with_context(|| format!("bind {server_addr}"))
    })();
    let client_ns = format!("/run/netns/{}", pair.client_ns);
    std::thread::spawn(move || -> Result<Exchange> {
        let listener = listener?;
        let server = std::thread::spawn(move || -> Result<(Vec<u8>, ())> {
            let _ = ready_tx.send(());
            let (mut s, _) = listener.accept().context("accept")?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            let mut got = Vec::new();
            s.read_to_end(&mut got).context("server read")?;
            s.write_all(&download).context("server write")?;
            s.shutdown(Shutdown::Write)?;
            Ok((got, ()))
        });
        ready_rx.recv().context("server thread died")?;
        let _ns = crate::netns::NetnsGuard::enter_path(&client_ns)?;
        let mut c = connect_with(server_addr, &client_opts)
            .with_context(|| format!("connect {server_addr}"))?;
        c.set_read_timeout(Some(Duration::from_secs(60)))?;
        c.set_write_timeout(Some(Duration::from_secs(60)))?;
        let client = c.local_addr()?;
        let mut rest = &upload[..];
        if let Some(p) = pause {
            let first = p.first.min(upload.len());
            c.write_all(&upload[..first])?;
            rest = &upload[first..];
            p.reached.send(client).ok();
            p.go.recv_timeout(Duration::from_secs(30))
                .context("the test never released the client")?;
        }
        c.write_all(rest).context("client write")?;
        c.shutdown(Shutdown::Write)?;
        let mut got = Vec::new();
        c.read_to_end(&mut got).context("client read")?;
        let (server_got, ()) = server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))??;
        Ok(Exchange {
            server_got: sha256(&server_got),
            server_got_len: server_got.len(),
            client_got: sha256(&got),
            client_got_len: got.len(),
            client,
        })
    })
}

/// Connects a TCP socket after setting `opts` on it (std cannot set options before connect).
fn connect_with(addr: SocketAddr, opts: &[SockOpt]) -> std::io::Result<TcpStream> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if opts.is_empty() {
        return TcpStream::connect_timeout(&addr, Duration::from_secs(10));
    }
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    for (level, name, value) in opts {
        // SAFETY: value outlives the call; its length is passed.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                *level,
                *name,
                value.as_ptr().cast(),
                value.len() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a sockaddr of `len` bytes for the socket's family.
    let r = unsafe { libc::connect(sock.as_raw_fd(), (&raw const storage).cast(), len) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TcpStream::from(sock))
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// One delivered frame, decoded.
#[derive(Debug, Clone)]
pub struct Seen {
    pub ts: i64,
    pub link: LinkType,
    pub len: usize,
    pub orig_len: u32,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: Vec<u8>,
    /// The frame's first bytes (link and IP headers), for tests on header parsing.
    pub head: Vec<u8>,
}

/// Polls `source` until `done()` holds and nothing arrived for 300 ms (or 90 s in all), decoding
/// every frame; a frame the decoder rejects fails the test.
pub fn collect(source: &mut EbpfSource, mut done: impl FnMut() -> bool) -> Result<Vec<Seen>> {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut quiet_since = Instant::now();
    let mut bad = None;
    while start.elapsed() < Duration::from_secs(90) {
        let n = source.poll(
            Duration::from_millis(50),
            &mut |p| match decode(p.link, p.data) {
                DecodeOutcome::Tcp(t) => seen.push(Seen {
                    ts: p.ts,
                    link: p.link,
                    len: p.data.len(),
                    orig_len: p.orig_len,
                    src: SocketAddr::new(t.src, t.sport),
                    dst: SocketAddr::new(t.dst, t.dport),
                    seq: t.seq,
                    syn: t.flags.syn(),
                    fin: t.flags.fin(),
                    rst: t.flags.rst(),
                    payload: t.payload.to_vec(),
                    head: p.data[..p.data.len().min(128)].to_vec(),
                }),
                other => bad = Some(format!("{other:?} ({} bytes)", p.data.len())),
            },
        )?;
        if let Some(b) = bad.take() {
            bail!("the decoder rejected a delivered frame: {b}");
        }
        if n > 0 {
            quiet_since = Instant::now();
        } else if done() && quiet_since.elapsed() > Duration::from_millis(300) {
            return Ok(seen);
        }
    }
    bail!("collection did not finish within 90 s")
}

/// The bytes `from` sent to `to`, rebuilt from the delivered segments by sequence number
/// (relative to the SYN), so retransmissions and reordering do not matter.
pub fn stream(seen: &[Seen], from: SocketAddr, to: SocketAddr) -> Vec<u8> {
    let mine = || seen.iter().filter(|s| s.src == from && s.dst == to);
    let Some(isn) = mine().find(|s| s.syn).map(|s| s.seq.wrapping_add(1)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in mine().filter(|s| !s.payload.is_empty()) {
        let off = s.seq.wrapping_sub(isn) as usize;
        if off > 64 << 20 {
            continue;
        }
        let end = off + s.payload.len();
        if out.len() < end {
            out.resize(end, 0);
        }
        out[off..end].copy_from_slice(&s.payload);
    }
    out
}

/// Opens the eBPF source on the server end of `pair` (ingress and egress), from the calling
/// thread moved into the server namespace for the lookup; the links stay on the interface.
pub fn open_on_server(pair: &NetnsPair, ports: &[u16]) -> Result<EbpfSource> {
    let _ns = pair.enter(Side::Server)?;
    EbpfSource::open(std::slice::from_ref(&pair.server_if), ports).context("open the eBPF source")
}
