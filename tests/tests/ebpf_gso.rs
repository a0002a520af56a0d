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
