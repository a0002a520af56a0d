//! The TC program loads, attaches to ingress and egress of a veth, and delivers the segments of
//! a watched port to user space as frames the offline decoder parses, with the payload bytes
//! exactly as sent in both directions; segments of other ports are not delivered.

use std::net::SocketAddr;

use mxcert::capture::{LinkType, LiveSource};
use mxcert_system_tests::ebpf::{
    collect, exchange, open_on_server, require_ebpf, stream, test_bytes,
};
use mxcert_system_tests::netns::NetnsPair;

#[test]
fn tc_program_delivers_watched_port_segments_whole_in_both_directions() {
    if !require_ebpf("tc_program_delivers_watched_port_segments_whole_in_both_directions") {
        return;
    }
    let pair = NetnsPair::create("mxeb1", 20).expect("namespaces");
    // Offloads off: plain MTU-sized segments (the GSO case has its own test).
    pair.set_offloads(false).expect("ethtool");
    let mut source = open_on_server(&pair, &[25]).expect("open");
    assert_eq!(source.backend(), "ebpf");

    let upload = test_bytes(10_000, 1);
    let download = test_bytes(5_000, 2);
    let watched = exchange(&pair, 25, upload.clone(), download.clone(), None);
    let other = exchange(
        &pair,
        2525,
        test_bytes(3_000, 3),
        test_bytes(3_000, 4),
        None,
    );
    let seen =
        collect(&mut source, || watched.is_finished() && other.is_finished()).expect("collect");
    let watched = watched.join().unwrap().expect("port 25 exchange");
    let other = other.join().unwrap().expect("port 2525 exchange");

    let server = SocketAddr::from((pair.server_ip, 25));
    assert_eq!(
        stream(&seen, watched.client, server),
        upload,
        "client→server bytes"
    );
    assert_eq!(
        stream(&seen, server, watched.client),
        download,
        "server→client bytes"
    );
    assert!(
        seen.iter().any(|s| s.syn) && seen.iter().any(|s| s.fin),
        "SYN and FIN delivered"
    );
    assert!(seen.iter().all(|s| s.link == LinkType::ETHERNET));
    assert!(
        seen.iter()
            .all(|s| s.src.port() != 2525 && s.dst.port() != 2525),
        "a segment of an unwatched port ({}) was delivered",
        other.client
    );
    // Timestamps are wall-clock nanoseconds: within a minute of now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        seen.iter().all(|s| (now - s.ts).abs() < 60_000_000_000),
        "timestamps off"
    );

    let c = source.counters();
    assert_eq!(c.packets, seen.len() as u64);
    assert_eq!(c.dropped, 0);
    let s = source.stats();
    assert_eq!(s.matched, s.delivered, "{s:?}");
    assert_eq!(s.truncated, 0);
}
