//! Header parsing in the kernel: crafted frames (802.1Q and QinQ tags, IPv4 options and
//! fragments, an IPv6 extension-header chain, an unwatched port) sent through the hooked egress,
//! and real IPv6 TCP traffic whose every segment carries hop-by-hop and destination options.
//! What the program delivers must be exactly what the offline decoder accepts for a watched
//! port.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use mxcert_system_tests::ebpf::{
    collect, exchange_to, open_on_server, require_ebpf, stream, test_bytes,
};
use mxcert_system_tests::netns::{run, NetnsPair, Side};

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
    let mut t = Vec::new();
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend(1000u32.to_be_bytes());
    t.extend(0u32.to_be_bytes());
    t.extend([0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
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
    let mut delivered = Vec::new();
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(2) {
        use mxcert::capture::LiveSource;
        source
            .poll(std::time::Duration::from_millis(50), &mut |p| {
                if let mxcert::capture::DecodeOutcome::Tcp(t) =
                    mxcert::capture::decode(p.link, p.data)
                {
                    delivered.push(String::from_utf8_lossy(t.payload).into_owned());
                }
            })
            .expect("poll");
    }
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
