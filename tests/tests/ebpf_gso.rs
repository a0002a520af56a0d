//! With TSO/GSO/GRO on, the TC hook sees super-packets of up to 64 KiB; the program must hand
//! them over whole (in chunks joined by user space), or TLS Certificate messages, which sit in
//! exactly such segments, would be lost. A 60 KB write must arrive complete: payload bytes
//! delivered == bytes sent, nothing truncated, nothing dropped.

use std::net::SocketAddr;

use mxcert::capture::LiveSource;
use mxcert_ebpf::CHUNK;
use mxcert_system_tests::ebpf::{
    collect, exchange, open_on_server, require_ebpf, stream, test_bytes,
};
use mxcert_system_tests::netns::NetnsPair;

#[test]
fn gso_super_packets_arrive_whole() {
    if !require_ebpf("gso_super_packets_arrive_whole") {
        return;
    }
    let pair = NetnsPair::create("mxeb2", 21).expect("namespaces");
    pair.set_offloads(true).expect("ethtool");
    pair.set_initial_windows(64).expect("route windows");
    let mut source = open_on_server(&pair, &[587]).expect("open");

    // One 60 KB write each way: the server's reply leaves through the hooked egress as GSO
    // super-packets, the client's upload enters through the hooked ingress.
    let upload = test_bytes(60_000, 5);
    let download = test_bytes(60_000, 6);
    let x = exchange(&pair, 587, upload.clone(), download.clone(), None);
    let seen = collect(&mut source, || x.is_finished()).expect("collect");
    let x = x.join().unwrap().expect("exchange");
    let server = SocketAddr::from((pair.server_ip, 587));

    let up = stream(&seen, x.client, server);
    let down = stream(&seen, server, x.client);
    assert_eq!(
        up.len(),
        upload.len(),
        "client→server payload bytes delivered"
    );
    assert_eq!(
        down.len(),
        download.len(),
        "server→client payload bytes delivered"
    );
    assert!(
        up == upload && down == download,
        "delivered payload differs from what was sent"
    );
    let biggest = seen.iter().map(|s| s.len).max().unwrap_or(0);
    eprintln!(
        "gso: {} frames, biggest {biggest} bytes, {} frames over one chunk",
        seen.len(),
        seen.iter().filter(|s| s.len > CHUNK as usize).count()
    );
    assert!(
        biggest > CHUNK as usize,
        "no frame bigger than one ring record ({CHUNK} B) was seen: offloads did not build \
         super-packets, so the chunk path was not exercised (biggest {biggest} B)"
    );
    assert!(
        seen.iter().all(|s| s.len as u32 == s.orig_len),
        "a frame arrived cut"
    );
    let s = source.stats();
    assert_eq!((s.truncated, s.ring_full, s.incomplete), (0, 0, 0), "{s:?}");
    assert_eq!(source.counters().dropped, 0);
}

/// When user space falls behind, the ring fills: what is lost is counted (`ring_full`, surfacing
/// as `dropped`), frames missing a chunk are discarded rather than handed over cut, and every
/// frame that is handed over is still whole and decodable. The mail flow itself is unaffected.
#[test]
fn a_full_ring_is_counted_never_silent() {
    if !require_ebpf("a_full_ring_is_counted_never_silent") {
        return;
    }
    // Same subnet as the test above, other namespaces: addresses never meet across namespaces.
    let pair = NetnsPair::create("mxebc", 21).expect("namespaces");
    pair.set_offloads(true).expect("ethtool");
    let mut source = open_on_server(&pair, &[587]).expect("open");
    // 24 MB with nobody reading: three times the 8 MiB ring.
    let upload = test_bytes(24 << 20, 41);
    let x = exchange(&pair, 587, upload.clone(), b"250 ok\r\n".to_vec(), None);
    let x = x.join().unwrap().expect("exchange");
    assert_eq!(x.server_got, mxcert_system_tests::ebpf::sha256(&upload));
    let seen = collect(&mut source, || true).expect("drain");
    let s = source.stats();
    eprintln!(
        "ring full: {} frames lost, {} incomplete discarded, {} delivered ({} MB)",
        s.ring_full,
        s.incomplete,
        seen.len(),
        s.frame_bytes >> 20
    );
    assert!(s.ring_full > 0, "the ring never filled: {s:?}");
    assert_eq!(source.counters().dropped, s.ring_full + s.load_errors);
    assert!(s.incomplete <= s.ring_full, "{s:?}");
    assert!(s.frame_bytes <= u64::from(mxcert_ebpf::RING_BYTES), "{s:?}");
    assert!(
        seen.iter().all(|f| f.len as u32 == f.orig_len),
        "a frame was handed over cut"
    );
}
