//! The in-kernel cutoff: once user space marks a flow done (as the pipeline does after the TLS
//! handshake), the program stops copying that flow; a >= 5 MB body then puts less than 64 KiB
//! into user space, the kernel counts what it did not copy, and the FIN still arrives so the
//! session can close. `flow_closed` forgets the flow.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mxcert::capture::{FlowTuple, LiveSource};
use mxcert_system_tests::ebpf::{
    collect, exchange, open_on_server, require_ebpf, test_bytes, Pause,
};
use mxcert_system_tests::netns::NetnsPair;

const BODY: usize = 5 * 1024 * 1024 + 4096;
const HANDSHAKE: usize = 4096;

#[test]
fn flow_marked_done_stops_payload_but_fin_still_arrives() {
    if !require_ebpf("flow_marked_done_stops_payload_but_fin_still_arrives") {
        return;
    }
    let pair = NetnsPair::create("mxeb3", 22).expect("namespaces");
    pair.set_offloads(true).expect("ethtool");
    let mut source = open_on_server(&pair, &[25]).expect("open");
    let server = SocketAddr::from((pair.server_ip, 25));

    let (reached_tx, reached_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let upload = test_bytes(HANDSHAKE + BODY, 7);
    let x = exchange(
        &pair,
        25,
        upload.clone(),
        b"250 ok\r\n".to_vec(),
        Some(Pause {
            first: HANDSHAKE,
            reached: reached_tx,
            go: go_rx,
        }),
    );

    // The "handshake": wait until its bytes have crossed, as the pipeline would.
    let client = reached_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("client connected");
    let mut before = 0u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while before < HANDSHAKE as u64 && Instant::now() < deadline {
        source
            .poll(Duration::from_millis(50), &mut |p| {
                if let mxcert::capture::DecodeOutcome::Tcp(t) =
                    mxcert::capture::decode(p.link, p.data)
                {
                    before += t.payload.len() as u64;
                }
            })
            .expect("poll");
    }
    assert_eq!(
        before, HANDSHAKE as u64,
        "handshake bytes delivered before the cutoff"
    );
    let flow = FlowTuple::new(client, server);
    source.flow_done(&flow);
    let bytes_at_done = source.counters().bytes;
    go_tx.send(()).unwrap();

    let seen = collect(&mut source, || x.is_finished()).expect("collect");
    let x = x.join().unwrap().expect("exchange");
    assert_eq!(
        x.server_got_len,
        upload.len(),
        "the server got the whole message"
    );
    assert_eq!(x.server_got, mxcert_system_tests::ebpf::sha256(&upload));

    let after = source.counters().bytes - bytes_at_done;
    let s = source.stats();
    eprintln!(
        "cutoff: {after} bytes delivered after flow_done for a {BODY}-byte body; kernel cut off \
         {} segments / {} bytes; {} FIN/RST headers",
        s.cut_off, s.cut_off_bytes, s.headers_only
    );
    assert!(after < 64 * 1024, "{after} bytes crossed after the cutoff");
    assert!(s.cut_off > 0 && s.cut_off_bytes >= BODY as u64, "{s:?}");
    assert_eq!(source.counters().cut_off, s.cut_off);
    let payload_after: usize = seen.iter().map(|f| f.payload.len()).sum();
    assert_eq!(
        payload_after, 0,
        "payload of a done flow crossed into user space"
    );
    assert!(
        seen.iter().any(|f| f.fin && f.src == client),
        "the client's FIN did not arrive"
    );
    assert!(
        seen.iter().any(|f| f.fin && f.src == server),
        "the server's FIN did not arrive"
    );

    // Forgetting the flow removes the kernel entry: a new connection on the same 4-tuple would
    // be copied again (checked through the map directly, not through traffic).
    assert!(source.is_marked(&flow));
    source.flow_closed(&flow);
    assert!(!source.is_marked(&flow));
}
