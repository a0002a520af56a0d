//! Mail flow untouched: with the classifier attached to both directions (and user space
//! consuming its ring), the bytes each TCP peer receives are byte-identical (sha256) to what the
//! other sent, with offloads on (super-packets) and off (MTU-sized segments).

use std::net::SocketAddr;

use mxcert::capture::LiveSource;
use mxcert_system_tests::ebpf::{
    collect, exchange, open_on_server, require_ebpf, sha256, stream, test_bytes,
};
use mxcert_system_tests::netns::NetnsPair;

const SIZE: usize = 4 * 1024 * 1024;

fn transfer_is_byte_identical(pair: &NetnsPair, offloads: bool) {
    pair.set_offloads(offloads).expect("ethtool");
    let mut source = open_on_server(pair, &[465]).expect("open");
    let upload = test_bytes(SIZE, 11);
    let download = test_bytes(SIZE, 12);
    let x = exchange(pair, 465, upload.clone(), download.clone(), None);
    let seen = collect(&mut source, || x.is_finished()).expect("collect");
    let x = x.join().unwrap().expect("exchange");
    assert_eq!((x.server_got_len, x.client_got_len), (SIZE, SIZE));
    assert_eq!(
        x.server_got,
        sha256(&upload),
        "server received altered bytes"
    );
    assert_eq!(
        x.client_got,
        sha256(&download),
        "client received altered bytes"
    );

    // What user space saw is the same stream, unless the ring overflowed (then it says so).
    let server = SocketAddr::from((pair.server_ip, 465));
    let c = source.counters();
    eprintln!(
        "integrity (offloads {offloads}): {} frames, {} bytes to user space, {} dropped",
        c.packets, c.bytes, c.dropped
    );
    if c.dropped == 0 {
        assert!(
            stream(&seen, x.client, server) == upload,
            "captured upload differs"
        );
        assert!(
            stream(&seen, server, x.client) == download,
            "captured download differs"
        );
    }
}

#[test]
fn peers_receive_identical_bytes_with_the_program_attached() {
    if !require_ebpf("peers_receive_identical_bytes_with_the_program_attached") {
        return;
    }
    let pair = NetnsPair::create("mxeb6", 25).expect("namespaces");
    transfer_is_byte_identical(&pair, true);
    transfer_is_byte_identical(&pair, false);
}
