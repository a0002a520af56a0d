//! `cargo xtask bench clickhouse`: throughput of the ClickHouse sink into a private local
//! clickhouse-server (Debian's 18.16), and what `--clickhouse` costs `mxcert read` compared with
//! JSON lines, on the largest fixture and on a synthetic capture.
//!
//! Each mode runs the code `mxcert read` runs (FileReader → Pipeline with the default policy →
//! sink), in this process. "packet path" is the time until the pipeline has handed over its
//! last record (what a capture feels); "with drain" adds waiting for the server to take the
//! last batches. JSON lines go to /dev/null. Each figure is the best of 3 alternating rounds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mxcert::capture::synth::Synth;
use mxcert::capture::FileReader;
use mxcert::classify::{Classifier, ClassifyConfig};
use mxcert::session::{Config, Pipeline};
use mxcert::sink::clickhouse::schema::Ttl;
use mxcert::sink::clickhouse::{apply_schema, preflight, ClickHouseSink, Config as ChConfig};
use mxcert::sink::{JsonlSink, Sink};
use mxcert_system_tests::clickhouse::Server;
use mxcert_system_tests::repo_root;

const PORT: u16 = 19130;

struct Run {
    packet_path: Duration,
    total: Duration,
    /// CPU time of the reading thread (user + system), what the packet path pays.
    cpu: Duration,
    records: u64,
}

/// CPU time of the calling thread from /proc/thread-self/stat (utime + stime, clock ticks of
/// 10 ms; proc(5)).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of the file; `after` starts at field 3.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn read_into(files: &[PathBuf], reps: usize, sink: &mut dyn Sink) -> (Duration, u64) {
    let t = Instant::now();
    let mut records = 0;
    for _ in 0..reps {
        for f in files {
            let mut p = Pipeline::with_classifier(
                Config::default(),
                Some(Classifier::new(ClassifyConfig::default())),
            );
            let mut r = FileReader::open(f).expect("capture opens");
            while let Some(pkt) = r.next_packet().expect("capture reads") {
                p.packet(&pkt, sink).unwrap();
            }
            p.finish(sink).unwrap();
            records += p.stats.sessions
                + p.stats.certificates
                + p.classifier().map_or(0, |c| c.stats.findings);
        }
    }
    (t.elapsed(), records)
}

fn jsonl(files: &[PathBuf], reps: usize) -> Run {
    let cpu0 = thread_cpu();
    let mut sink = JsonlSink::create(Path::new("/dev/null")).unwrap();
    let (d, records) = read_into(files, reps, &mut sink);
    sink.flush().unwrap();
    Run {
        packet_path: d,
        total: d,
        cpu: thread_cpu() - cpu0,
        records,
    }
}

fn clickhouse(files: &[PathBuf], reps: usize, cfg: &ChConfig) -> (Run, u64) {
    let info = preflight(cfg).expect("server answers");
    let t = Instant::now();
    let cpu0 = thread_cpu();
    let mut sink = ClickHouseSink::start(cfg.clone(), Some(info)).unwrap();
    let (_, records) = read_into(files, reps, &mut sink);
    sink.flush().unwrap();
    let packet_path = t.elapsed();
    let cpu = thread_cpu() - cpu0;
    let st = sink.close();
    assert_eq!(
        st.rows_dropped + st.rows_spooled,
        0,
        "bench runs with the server up"
    );
    (
        Run {
            packet_path,
            total: t.elapsed(),
            cpu,
            records,
        },
        st.rows_sent,
    )
}

fn compare(label: &str, files: &[PathBuf], reps: usize, cfg: &ChConfig) {
    let mut best_j: Option<Run> = None;
    let mut best_c: Option<(Run, u64)> = None;
    for _ in 0..3 {
        let j = jsonl(files, reps);
        if best_j.as_ref().is_none_or(|b| j.cpu < b.cpu) {
            best_j = Some(j);
        }
        let c = clickhouse(files, reps, cfg);
        if best_c.as_ref().is_none_or(|b| c.0.cpu < b.0.cpu) {
            best_c = Some(c);
        }
    }
    let (j, (c, rows)) = (best_j.unwrap(), best_c.unwrap());
    let pct = |a: Duration, b: Duration| 100.0 * (a.as_secs_f64() / b.as_secs_f64() - 1.0);
    println!(
        "{label}: {} records; reading-thread CPU: JSON lines {:.2} s, --clickhouse {:.2} s ({:+.1} %)",
        j.records,
        j.cpu.as_secs_f64(),
        c.cpu.as_secs_f64(),
        pct(c.cpu, j.cpu)
    );
    println!(
        "  wall: JSON lines {:.3} s; --clickhouse packet path {:.3} s ({:+.1} %), with drain {:.3} s ({:+.1} %); {} rows sent = {:.0} rows/s end to end",
        j.total.as_secs_f64(),
        c.packet_path.as_secs_f64(),
        pct(c.packet_path, j.total),
        c.total.as_secs_f64(),
        pct(c.total, j.total),
        rows,
        rows as f64 / c.total.as_secs_f64()
    );
}

/// The sink alone: pre-built rows (one synthetic read kept in memory) pushed as fast as the
/// writer takes them.
fn sink_throughput(capture: &Path, cfg: &ChConfig) {
    let mut mem = mxcert::sink::VecSink::default();
    read_into(&[capture.to_path_buf()], 1, &mut mem);
    // Thread CPU over 4 passes: wall time on a busy machine says little about 1 µs.
    let mut n = 0;
    let mut buf = Vec::new();
    let mut t = thread_cpu();
    for pass in 0..5 {
        // The first pass grows the buffer (as the sink's first batches do), then it is reused.
        if pass == 1 {
            t = thread_cpu();
        }
        buf.clear();
        for s in &mem.sessions {
            mxcert::sink::clickhouse::rows::encode_session(&mut buf, s, "bench");
        }
        for f in &mem.findings {
            mxcert::sink::clickhouse::rows::encode_finding(&mut buf, f, "bench");
        }
        n = std::hint::black_box(buf.len());
    }
    let conv = (thread_cpu() - t) / 4;
    let t = thread_cpu();
    for _ in 0..4 {
        let mut j = JsonlSink::create(Path::new("/dev/null")).unwrap();
        for s in &mem.sessions {
            j.session(s).unwrap();
        }
        for f in &mem.findings {
            j.finding(f).unwrap();
        }
        j.flush().unwrap();
    }
    let js = (thread_cpu() - t) / 4;
    println!(
        "per record on the reading thread: RowBinary row {:.0} ns, JSON line {:.0} ns ({n} bytes of rows)",
        conv.as_nanos() as f64 / (mem.sessions.len() + mem.findings.len()) as f64,
        js.as_nanos() as f64 / (mem.sessions.len() + mem.findings.len()) as f64
    );
    let info = preflight(cfg).expect("server answers");
    let t = Instant::now();
    let mut sink = ClickHouseSink::start(cfg.clone(), Some(info)).unwrap();
    for s in &mem.sessions {
        sink.session(s).unwrap();
    }
    for f in &mem.findings {
        sink.finding(f).unwrap();
    }
    let st = sink.close();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "sink throughput: {} rows in {} batches of <= {} in {secs:.2} s = {:.0} rows/s ({} sessions + {} findings; spooled {})",
        st.rows_sent,
        st.batches_sent,
        cfg.batch_rows,
        st.rows_sent as f64 / secs,
        mem.sessions.len(),
        mem.findings.len(),
        st.rows_spooled
    );
}

fn main() {
    let mut server = Server::start(PORT)
        .expect("private clickhouse-server starts (cargo xtask setup installs it)");
    let mut cfg = ChConfig::new(&server.url());
    cfg.sensor = "bench".into();
    let dir = std::env::temp_dir().join(format!("mxch-bench-{}", std::process::id()));
    cfg.spool_dir = dir.join("spool");
    let a = apply_schema(&cfg, Ttl::default(), None).expect("schema applies");
    println!("server {} ({} schema variant)", a.server_version, a.variant);

    let root = repo_root();
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(root.join("pcaps"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    fixtures.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    let largest = fixtures[0].clone();
    compare(
        &format!(
            "largest fixture {} x 2000",
            largest.file_name().unwrap().to_string_lossy()
        ),
        &[largest],
        2000,
        &cfg,
    );

    std::fs::create_dir_all(&dir).unwrap();
    let synth_path = dir.join("synth.pcap");
    let synth = Synth::from_fixture(&root.join("pcaps/certreq_client_presents.pcap"), 0).unwrap();
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&synth_path).unwrap());
        Synth::write_header(&mut w).unwrap();
        synth.write_sessions(&mut w, 0, 50_000, 1000).unwrap();
    }
    compare(
        "synthetic 50,000 sessions (445 MB)",
        std::slice::from_ref(&synth_path),
        1,
        &cfg,
    );
    sink_throughput(&synth_path, &cfg);
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
