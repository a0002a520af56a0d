//! Nothing lost, nothing double counted: a stream of more than 100,000 findings into a real
//! clickhouse-server (Debian's 18.16, private port and data directory) during which the server
//! is killed with SIGKILL and restarted, and mxcert itself is killed with SIGKILL and started
//! again on the rest of the capture. The capture is fed through a FIFO so the test decides
//! where in the stream each crash lands.
//!
//! Expected counts come from `mxcert read --out` of the same capture written as one file; the
//! stored counts are read with FINAL, as the schema intends (ReplacingMergeTree on natural
//! keys), and without it to show how many duplicates the crashes produced.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mxcert::capture::synth::Synth;
use mxcert_system_tests::clickhouse::{
    count, mkfifo, mxcert_bin, open_fifo_writer, read_jsonl, schema_apply, skip_or_fail,
    wait_with_deadline, Server,
};
use mxcert_system_tests::repo_root;

const PORT: u16 = 19120;
const SESSIONS: u64 = 4_000;
const CHUNK: u64 = 200;

fn sink_args(spool: &Path) -> Vec<String> {
    [
        "--all-findings",
        "--sensor",
        "fault",
        "--clickhouse-batch-rows",
        "2000",
        "--clickhouse-batch-ms",
        "100",
        "--clickhouse-drain-timeout",
        "60",
        "--spool-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([spool.display().to_string()])
    .collect()
}

fn spawn_reader(input: &Path, url: &str, spool: &Path, stderr: &Path) -> Child {
    Command::new(mxcert_bin())
        .arg("read")
        .arg(input)
        .args(["--clickhouse", url])
        .args(sink_args(spool))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("mxcert starts")
}

/// Writes chunks of sessions, pausing between them (not after the last: a crash that follows
/// lands while mxcert is still turning that chunk into rows and batches).
fn feed(w: &mut impl Write, synth: &Synth, chunks: std::ops::Range<u64>) {
    let last = chunks.end.saturating_sub(1);
    for c in chunks {
        synth
            .write_sessions(w, c * CHUNK, CHUNK, CHUNK as usize)
            .expect("mxcert reads the FIFO");
        if c != last {
            std::thread::sleep(Duration::from_millis(60));
        }
    }
}

fn spool_files(spool: &Path) -> usize {
    std::fs::read_dir(spool)
        .map(|d| d.filter(|e| e.is_ok()).count())
        .unwrap_or(0)
}

#[test]
fn kill_9_of_server_and_mxcert_mid_stream_loses_nothing_and_counts_nothing_twice() {
    if let Err(reason) = Server::binary() {
        return skip_or_fail(&reason);
    }
    let started = Instant::now();
    let mut server = Server::start(PORT).expect("private clickhouse-server starts");
    let url = server.url();
    schema_apply(&url);
    let dir = std::env::temp_dir().join(format!("mxch-fault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spool = dir.join("spool");
    let synth = Synth::from_fixture(&repo_root().join("pcaps/certreq_client_presents.pcap"), 0)
        .expect("template fixture");
    let chunks = SESSIONS / CHUNK;

    // What the stream must deliver: the same capture, read into JSON lines.
    let whole = dir.join("whole.pcap");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&whole).unwrap());
        Synth::write_header(&mut w).unwrap();
        for c in 0..chunks {
            synth
                .write_sessions(&mut w, c * CHUNK, CHUNK, CHUNK as usize)
                .unwrap();
        }
    }
    let expected_file = dir.join("expected.jsonl");
    let st = Command::new(mxcert_bin())
        .arg("read")
        .arg(&whole)
        .args(["--all-findings", "-q", "--out"])
        .arg(&expected_file)
        .status()
        .unwrap();
    assert!(st.success());
    let records = read_jsonl(&expected_file);
    let kind = |k: &str| records.iter().filter(|r| r["record"] == k).count() as u64;
    let (exp_sessions, exp_findings, exp_certs) =
        (kind("session"), kind("finding"), kind("certificate"));
    assert_eq!(exp_sessions, SESSIONS);
    assert!(exp_findings >= 100_000, "{exp_findings} findings");

    // Run A: streams, the server dies under it (SIGKILL) and stays down, A spools; then A
    // itself is killed (SIGKILL) with the spool full of batches.
    let fifo_a = dir.join("a.pcap");
    mkfifo(&fifo_a);
    let mut a = spawn_reader(&fifo_a, &url, &spool, &dir.join("a.stderr"));
    let mut w = open_fifo_writer(&fifo_a);
    Synth::write_header(&mut w).unwrap();
    let kill_at = chunks * 3 / 10;
    let a_until = chunks * 6 / 10;
    feed(&mut w, &synth, 0..kill_at);
    server.kill();
    feed(&mut w, &synth, kill_at..a_until);
    // Let A read what sits in the pipe and spool its last batches (batch interval 100 ms).
    std::thread::sleep(Duration::from_millis(1500));
    let spooled_files = spool_files(&spool);
    assert!(spooled_files > 0, "A spooled while the server was down");
    a.kill().unwrap();
    a.wait().unwrap();
    drop(w);
    let a_text = std::fs::read_to_string(dir.join("a.stderr")).unwrap_or_default();

    // The server comes back; run B replays A's spool first, then streams the rest.
    server.restart().expect("server restarts on its data");
    let stored_before_kill = count(
        &server,
        "SELECT count() FROM mxcert.findings WHERE sensor = 'fault'",
    );
    let fifo_b = dir.join("b.pcap");
    mkfifo(&fifo_b);
    let b_err = dir.join("b.stderr");
    let mut b = spawn_reader(&fifo_b, &url, &spool, &b_err);
    let mut w = open_fifo_writer(&fifo_b);
    Synth::write_header(&mut w).unwrap();
    feed(&mut w, &synth, a_until..chunks);
    drop(w);
    let st = wait_with_deadline(&mut b, Duration::from_secs(120), "mxcert run B");
    let b_text = std::fs::read_to_string(&b_err).unwrap_or_default();
    assert!(st.success(), "run B failed: {b_text}");

    let q = |table: &str, fin: &str| {
        count(
            &server,
            &format!("SELECT count() FROM mxcert.{table} {fin} WHERE sensor = 'fault'"),
        )
    };
    let (s_final, f_final, c_final) = (
        q("sessions", "FINAL"),
        q("findings", "FINAL"),
        q("certificates", "FINAL"),
    );
    let (s_raw, f_raw, c_raw) = (q("sessions", ""), q("findings", ""), q("certificates", ""));
    let distinct_findings = count(
        &server,
        "SELECT uniqExact(session_id, role, rule, scenario) FROM mxcert.findings WHERE sensor = 'fault'",
    );
    println!("fault test ({:.1} s):", started.elapsed().as_secs_f64());
    println!("  produced      sessions {exp_sessions}, findings {exp_findings}, certificates {exp_certs}");
    println!("  stored FINAL  sessions {s_final}, findings {f_final}, certificates {c_final}");
    println!("  stored raw    sessions {s_raw}, findings {f_raw}, certificates {c_raw} (duplicates from retries and restarts, removed by FINAL)");
    println!(
        "  findings lost {}, double counted {}",
        exp_findings.saturating_sub(f_final),
        f_final.saturating_sub(exp_findings)
    );
    println!("  findings that reached the server before its kill: {stored_before_kill}; spool files when mxcert was killed: {spooled_files}");
    for line in a_text.lines() {
        println!("  run A: {line}");
    }
    for line in b_text.lines() {
        println!("  run B: {line}");
    }
    assert_eq!(f_final, exp_findings, "findings: 0 lost, 0 double counted");
    assert_eq!(distinct_findings, exp_findings, "every finding is there");
    assert_eq!(s_final, exp_sessions, "sessions");
    assert_eq!(c_final, exp_certs, "one row per certificate");
    assert!(
        stored_before_kill > 0 && stored_before_kill < exp_findings,
        "the server was killed mid-stream ({stored_before_kill} of {exp_findings} stored)"
    );
    assert_eq!(spool_files(&spool), 0, "the spool was replayed");
    assert!(b_text.contains("replayed"), "run B reports its replay");
    assert!(
        a_text.contains("unreachable"),
        "run A said the server was unreachable: {a_text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
