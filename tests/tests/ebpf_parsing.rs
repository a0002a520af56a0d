//! Header parsing in the kernel: crafted frames (802.1Q and QinQ tags, IPv4 options and
//! fragments, an IPv6 extension-header chain, an unwatched port) sent through the hooked egress,
//! and real IPv6 TCP traffic whose every segment carries hop-by-hop and destination options.
//! What the program delivers must be exactly what the offline decoder accepts for a watched
//! port.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::process::Command;

use mxcert::capture::{decode, DecodeOutcome, FlowTuple, LinkType, LiveSource};

use mxcert_system_tests::ebpf::{
    collect, exchange_to, open_on_server, require_ebpf, stream, test_bytes,
};
use mxcert_system_tests::netns::{run, NetnsGuard, NetnsPair, Side};

fn ip(pair: &NetnsPair, side: Side, args: &[&str]) {
    run(pair.command(side, "ip").args(args)).expect("ip");
}

/// Sends `frames` out of `ifname` through an AF_PACKET socket created in the calling thread's
/// network namespace: they pass the TC egress hook exactly as written.
fn send_raw(ifname: &str, frames: &[Vec<u8>]) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: plain libc calls with valid arguments; the fd is owned at once.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert_ne!(ifindex, 0, "no interface {ifname}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let sock = OwnedFd::from_raw_fd(fd);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        for f in frames {
            let n = libc::sendto(
                sock.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            );
            assert_eq!(
                n,
                f.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Ethernet header (broadcast destination) followed by `tags` (TPID, VLAN id) and `ethertype`.
fn eth(tags: &[(u16, u16)], ethertype: u16, l3: Vec<u8>) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend([0x02, 0, 0, 0, 0, 1]);
    for (tpid, vid) in tags {
        f.extend(tpid.to_be_bytes());
        f.extend(vid.to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(l3);
    f
}

/// TCP header (no options, PSH|ACK) + payload; checksums are not checked at TC.
fn tcp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    tcp_flags(sport, dport, 0x18, payload)
}

/// TCP header with the given flags byte (RFC 9293 §3.1) + payload.
fn tcp_flags(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend(1000u32.to_be_bytes());
    t.extend(0u32.to_be_bytes());
    t.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(payload);
    t
}

/// IPv4 header with `opt_words` words of NOP options and the flags/fragment field `frag`.
fn ipv4(opt_words: usize, frag: u16, l4: Vec<u8>) -> Vec<u8> {
    let ihl = 5 + opt_words;
    let total = (ihl * 4 + l4.len()) as u16;
    let mut h = vec![(0x40 | ihl) as u8, 0];
    h.extend(total.to_be_bytes());
    h.extend([0, 1]);
    h.extend(frag.to_be_bytes());
    h.extend([64, 6, 0, 0, 198, 18, 27, 1, 198, 18, 27, 2]);
    h.extend(std::iter::repeat_n(1u8, opt_words * 4));
    h.extend(l4);
    h
}

/// IPv6 header whose chain is `ext` (each: next-header value announcing it, its bytes), then TCP.
fn ipv6(ext: &[(u8, Vec<u8>)], l4: Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (_, bytes)) in ext.iter().enumerate() {
        let mut b = bytes.clone();
        b[0] = ext.get(i + 1).map_or(6, |e| e.0);
        body.extend(b);
    }
    body.extend(l4);
    let mut h = vec![0x60, 0, 0, 0];
    h.extend((body.len() as u16).to_be_bytes());
    h.push(ext.first().map_or(6, |e| e.0));
    h.push(64);
    h.extend(Ipv6Addr::new(0x2001, 2, 0, 0x1d, 0, 0, 0, 1).octets());
    h.extend(Ipv6Addr::new(0x2001, 2, 0, 0x1d, 0, 0, 0, 2).octets());
    h.extend(body);
    h
}

#[test]
fn crafted_frames_are_parsed_like_the_offline_decoder() {
    if !require_ebpf("crafted_frames_are_parsed_like_the_offline_decoder") {
        return;
    }
    // This kernel may lack 802.1Q devices (CONFIG_VLAN_8021Q), so tagged and unusual frames
    // are written with AF_PACKET on the server side: they cross the hooked egress as written.
    let pair = NetnsPair::create("mxeb8", 27).expect("namespaces");
    let mut source = open_on_server(&pair, &[25]).expect("open");
    let ah = vec![0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]; // RFC 4302: len 1 → (1+2)*4 = 12 bytes
    let atomic_frag = vec![0, 0, 0, 0, 0, 0, 0, 7]; // offset 0, M=0 (RFC 6946)
    let hop = vec![0, 0, 1, 4, 0, 0, 0, 0];
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "vlan",
            eth(
                &[(0x8100, 7)],
                0x0800,
                ipv4(0, 0x4000, tcp(40001, 25, b"vlan")),
            ),
            true,
        ),
        (
            "qinq",
            eth(
                &[(0x88a8, 100), (0x8100, 7)],
                0x0800,
                ipv4(0, 0, tcp(25, 40002, b"qinq")),
            ),
            true,
        ),
        (
            "ipv4-options",
            eth(&[], 0x0800, ipv4(2, 0, tcp(40003, 25, b"ipv4-options"))),
            true,
        ),
        (
            "ipv4-fragment",
            eth(
                &[],
                0x0800,
                ipv4(0, 0x2000, tcp(40004, 25, b"ipv4-fragment")),
            ),
            false,
        ),
        (
            "port-80",
            eth(&[], 0x0800, ipv4(0, 0, tcp(40005, 80, b"port-80"))),
            false,
        ),
        (
            "ipv6-chain",
            eth(
                &[(0x8100, 7)],
                0x86dd,
                ipv6(
                    &[(0, hop), (44, atomic_frag), (51, ah)],
                    tcp(40006, 25, b"ipv6-chain"),
                ),
            ),
            true,
        ),
    ];
    {
        let _ns = pair.enter(Side::Server).expect("enter");
        let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.1.clone()).collect();
        send_raw(&pair.server_if, &frames);
    }
    let mut delivered: Vec<String> = drain(&mut source)
        .into_iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect();
    let mut expected: Vec<String> = cases
        .iter()
        .filter(|c| c.2)
        .map(|c| c.0.to_string())
        .collect();
    expected.sort();
    delivered.sort();
    assert_eq!(delivered, expected);
    let s = source.stats();
    assert_eq!(s.fragments, 1, "{s:?}");
    assert_eq!(s.matched, expected.len() as u64, "{s:?}");

    // The cutoff on one flow: data is not copied, a FIN comes as headers only, and a SYN on
    // the same 4-tuple (a new connection whose predecessor's close was never reported) clears
    // the mark, so the new connection is copied again.
    let flow = FlowTuple::new(
        "198.18.27.1:40010".parse().unwrap(),
        "198.18.27.2:25".parse().unwrap(),
    );
    source.flow_done(&flow);
    assert!(source.is_marked(&flow));
    let seg = |flags: u8, payload: &[u8]| {
        eth(
            &[],
            0x0800,
            ipv4(0, 0, tcp_flags(40010, 25, flags, payload)),
        )
    };
    {
        let _ns = pair.enter(Side::Server).expect("enter");
        send_raw(&pair.server_if, &[seg(0x18, b"cut-body")]);
        send_raw(&pair.server_if, &[seg(0x11, b"fin-payload")]);
    }
    let got = drain(&mut source);
    assert_eq!(got.len(), 1, "only the FIN: {got:?}");
    assert!(
        got[0].flags & 0x01 != 0 && got[0].payload.is_empty(),
        "FIN without its payload: {got:?}"
    );
    {
        let _ns = pair.enter(Side::Server).expect("enter");
        send_raw(
            &pair.server_if,
            &[seg(0x02, b""), seg(0x18, b"new-connection")],
        );
    }
    let got = drain(&mut source);
    assert!(!source.is_marked(&flow), "the SYN did not clear the mark");
    let payloads: Vec<&[u8]> = got.iter().map(|g| g.payload.as_slice()).collect();
    assert_eq!(payloads, [b"".as_slice(), b"new-connection".as_slice()]);
    let s = source.stats();
    assert_eq!((s.cut_off, s.headers_only), (1, 1), "{s:?}");
}

/// One delivered frame, decoded.
#[derive(Debug)]
struct Delivered {
    link: LinkType,
    flags: u8,
    payload: Vec<u8>,
}

/// Every frame delivered within 500 ms.
fn drain(source: &mut mxcert::capture::ebpf::EbpfSource) -> Vec<Delivered> {
    let mut got = Vec::new();
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(500) {
        source
            .poll(std::time::Duration::from_millis(50), &mut |p| {
                if let DecodeOutcome::Tcp(t) = decode(p.link, p.data) {
                    got.push(Delivered {
                        link: p.link,
                        flags: t.flags.0,
                        payload: t.payload.to_vec(),
                    });
                }
            })
            .expect("poll");
    }
    got
}

#[test]
fn ipv6_extension_headers_are_walked() {
    if !require_ebpf("ipv6_extension_headers_are_walked") {
        return;
    }
    let pair = NetnsPair::create("mxeb9", 28).expect("namespaces");
    // 2001:2::/48 is IPv6's benchmarking range (RFC 5180), the analogue of 198.18.0.0/15.
    for (side, addr) in [
        (Side::Server, "2001:2:0:1c::1/64"),
        (Side::Client, "2001:2:0:1c::2/64"),
    ] {
        ip(
            &pair,
            side,
            &["-6", "addr", "add", addr, "dev", pair.ifname(side), "nodad"],
        );
    }
    let mut source = open_on_server(&pair, &[587]).expect("open");
    let server = SocketAddr::new(
        IpAddr::V6("2001:2:0:1c::1".parse::<Ipv6Addr>().unwrap()),
        587,
    );
    // Hop-by-hop and destination options headers, each one PadN option filling 8 bytes
    // (RFC 8200 §4.2/§4.3/§4.6); the kernel fills in the next-header bytes.
    let padn = vec![0u8, 0, 1, 4, 0, 0, 0, 0];
    let opts = vec![
        (libc::IPPROTO_IPV6, libc::IPV6_HOPOPTS, padn.clone()),
        (libc::IPPROTO_IPV6, libc::IPV6_DSTOPTS, padn),
    ];
    let upload = test_bytes(20_000, 33);
    let x = exchange_to(
        &pair,
        server,
        upload.clone(),
        b"250 ok\r\n".to_vec(),
        None,
        opts,
    );
    let seen = collect(&mut source, || x.is_finished()).expect("collect");
    let x = x.join().unwrap().expect("exchange over IPv6");
    // Ethernet (14) + IPv6 next header at byte 6: 0 = hop-by-hop options.
    let with_ext = seen
        .iter()
        .filter(|s| s.head[12..14] == [0x86, 0xdd] && s.head[14 + 6] == 0)
        .count();
    eprintln!(
        "ipv6: {} frames, {with_ext} with extension headers",
        seen.len()
    );
    assert!(
        with_ext > 0,
        "no frame with extension headers was delivered"
    );
    assert_eq!(stream(&seen, x.client, server), upload);
}

/// A network namespace of its own (for the tun test), deleted on drop.
struct Netns(&'static str);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", self.0]).output();
    }
}

#[test]
fn l3_interface_frames_arrive_as_raw_ip() {
    if !require_ebpf("l3_interface_frames_arrive_as_raw_ip") {
        return;
    }
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd};

    // A tun device (ARPHRD_NONE: no link header at TC) in a namespace of its own; the test holds
    // its file descriptor, so it reads what the kernel sends out and writes what it receives.
    let ns = Netns("mxebt-tun");
    let _ = Command::new("ip").args(["netns", "del", ns.0]).output();
    run(Command::new("ip").args(["netns", "add", ns.0])).expect("netns");
    let _inside = NetnsGuard::enter_path(&format!("/run/netns/{}", ns.0)).expect("enter");
    // SAFETY: open(2) + TUNSETIFF on an ifreq we own (include/uapi/linux/if_tun.h).
    let mut tun = unsafe {
        let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        assert!(fd >= 0, "/dev/net/tun: {}", std::io::Error::last_os_error());
        let file = std::fs::File::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"mxebt0") {
            *d = *s as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        let r = libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req);
        assert_eq!(r, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        file
    };
    for args in [
        &["addr", "add", "198.18.28.129/25", "dev", "mxebt0"][..],
        &["link", "set", "mxebt0", "up"],
    ] {
        run(Command::new("ip").args(args)).expect("ip");
    }
    let mut source =
        mxcert::capture::ebpf::EbpfSource::open(&["mxebt0".to_string()], &[25]).expect("open");

    // Egress: a SYN to a peer behind the tun (nobody answers; the connect times out).
    let connect = std::thread::spawn(|| {
        let _inside = NetnsGuard::enter_path("/run/netns/mxebt-tun").expect("enter");
        let to: SocketAddr = "198.18.28.130:25".parse().unwrap();
        let _ = std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_millis(300));
    });
    // Read what leaves through the tun (IPv6 router solicitations too) until the IPv4 SYN.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(tun.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut buf = [0u8; 1500];
    let start = std::time::Instant::now();
    let n = loop {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "no SYN left the tun"
        );
        match tun.read(&mut buf) {
            Ok(n) if n >= 20 && buf[0] >> 4 == 4 && buf[9] == 6 => break n,
            Ok(_) => {}
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    };
    // Ingress: a segment from the peer, written into the tun.
    let mut pkt = ipv4(0, 0, tcp(25, 40000, b"tun-in"));
    pkt[12..20].copy_from_slice(&[198, 18, 28, 130, 198, 18, 28, 129]);
    tun.write_all(&pkt).expect("write into the tun");
    connect.join().unwrap();

    let got = drain(&mut source);
    assert!(
        got.iter()
            .any(|g| g.link == LinkType::RAW && g.flags & 0x02 != 0),
        "the SYN ({n} bytes) was not delivered as raw IP: {got:?}"
    );
    assert!(
        got.iter()
            .any(|g| g.link == LinkType::RAW && g.payload == b"tun-in"),
        "the incoming segment was not delivered as raw IP: {got:?}"
    );
}
