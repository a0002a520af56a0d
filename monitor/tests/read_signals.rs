//! `mxcert read` stopped by SIGTERM: it must not die with records in its buffers. It stops
//! reading, records the sessions open at that point, flushes its outputs and exits 130. The
//! capture comes through a FIFO that is never closed, so the run can only end by the signal.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mxcert::capture::synth::Synth;

const SESSIONS_PER_CHUNK: u64 = 200;

#[test]
fn sigterm_flushes_what_was_read_and_exits_130() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let synth = Synth::from_fixture(&root.join("pcaps/certreq_client_presents.pcap"), 0)
        .expect("template fixture");
    let dir = std::env::temp_dir().join(format!("mxcert-read-signals-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("in.pcap");
    let out = dir.join("records.jsonl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");

    let mut child = Command::new(env!("CARGO_BIN_EXE_mxcert"))
        .arg("read")
        .arg(&fifo)
        .arg("--out")
        .arg(&out)
        .args(["--local-net", "198.18.0.1/32", "--progress", "never"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mxcert read");
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the FIFO");
    Synth::write_header(&mut w).unwrap();
    synth
        .write_sessions(&mut w, 0, SESSIONS_PER_CHUNK, 1)
        .unwrap();
    w.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };

    // mxcert notices at its next packets; keep feeding (bounded) until it exits, never closing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut chunk = 1;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "mxcert read did not stop on SIGTERM"
        );
        if chunk < 50 {
            // A write can fail once mxcert has closed the FIFO: that is the expected end.
            let _ = synth.write_sessions(&mut w, chunk * SESSIONS_PER_CHUNK, SESSIONS_PER_CHUNK, 1);
            let _ = w.flush();
            chunk += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(w);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "exit code; stderr: {stderr}");
    assert!(
        stderr.contains("interrupted"),
        "says why it stopped: {stderr}"
    );
    assert!(
        stderr.contains("mxcert summary"),
        "prints its summary: {stderr}"
    );

    // Every line written is a whole record, and the sessions read before the signal are there.
    let file = std::fs::File::open(&out).unwrap();
    let mut sessions = 0u64;
    for line in std::io::BufReader::new(file).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).expect("a whole JSON line");
        if v["record"] == "session" {
            sessions += 1;
        }
    }
    let written = chunk * SESSIONS_PER_CHUNK;
    println!("{sessions} session records of {written} sessions written to the FIFO");
    assert!(
        sessions >= SESSIONS_PER_CHUNK,
        "the first chunk's sessions were flushed"
    );
    assert!(sessions <= written);
    let _ = std::fs::remove_dir_all(&dir);
}
