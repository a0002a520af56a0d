//! `mxcert capture` as a process in a namespace, for the live-capture tests: started with its
//! log in a file, waited for until it captures, stopped with a signal, killed on drop.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::mta::{kill, wait_child, wait_for};
use crate::netns::{NetnsPair, Side};

/// The `mxcert` binary of this workspace, built (debug) on first use so a test never runs a
/// stale one.
pub fn mxcert_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = crate::repo_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "-q", "-p", "mxcert", "--bin", "mxcert"])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !st.success() {
            return Err(format!("cargo build -p mxcert failed: {st}"));
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Ok(target.join("debug/mxcert"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A running `mxcert capture` in the server namespace.
pub struct Capture {
    child: Option<Child>,
    pub log: PathBuf,
    pub out: PathBuf,
}

impl Capture {
    /// Starts `mxcert capture --iface <server if> --out <out> <args>` in the server namespace
    /// and waits (bounded) until it logs that capture started.
    pub fn start<S: AsRef<OsStr>>(
        pair: &NetnsPair,
        out: &Path,
        log: &Path,
        args: &[S],
    ) -> Result<Capture> {
        let mut cmd = Capture::command(pair, &[], &mxcert_bin()?);
        cmd.args(["capture", "--iface", &pair.server_if, "--out"])
            .arg(out)
            .args(args);
        Capture::spawn(cmd, out, log)
    }

    /// `mxcert` in the server namespace behind `wrapper` (e.g. `setpriv ...`), with its
    /// RUST_LOG set; the caller adds the arguments.
    pub fn command(pair: &NetnsPair, wrapper: &[&str], bin: &Path) -> Command {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = pair.command(Side::Server, first);
                c.args(rest).arg(bin);
                c
            }
            None => pair.command(Side::Server, &bin.display().to_string()),
        };
        cmd.env(
            "RUST_LOG",
            std::env::var("MXCERT_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd
    }

    /// Spawns a prepared `mxcert capture` command with stderr to `log` and waits (bounded)
    /// until it logs that capture started.
    pub fn spawn(mut cmd: Command, out: &Path, log: &Path) -> Result<Capture> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("starting mxcert capture")?;
        let mut c = Capture {
            child: Some(child),
            log: log.to_path_buf(),
            out: out.to_path_buf(),
        };
        let started = wait_for("mxcert to start capturing", Duration::from_secs(30), || {
            c.log_text().contains("capture started")
                || c.child
                    .as_mut()
                    .is_some_and(|ch| matches!(ch.try_wait(), Ok(Some(_))))
        });
        if started.is_err() || !c.log_text().contains("capture started") {
            bail!("mxcert capture did not start:\n{}", c.log_text());
        }
        Ok(c)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        kill(self.pid(), sig);
    }

    /// Sends `sig` and waits (bounded) for the exit; returns the exit status.
    pub fn stop(mut self, sig: &str) -> Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("already stopped")?;
        kill(c.id(), sig);
        wait_child(&mut c, Duration::from_secs(30))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Serialises the tests of one binary that share a namespace pair (the same test run with each
/// backend): a poisoned lock (an earlier test failed) still serialises.
pub fn serial(lock: &'static std::sync::Mutex<()>) -> std::sync::MutexGuard<'static, ()> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

/// `mxcert read FILE... --out OUT ARGS`, which must succeed.
pub fn read<S: AsRef<OsStr>>(files: &[PathBuf], out: &Path, args: &[S]) -> Result<()> {
    let o = Command::new(mxcert_bin()?)
        .arg("read")
        .args(files)
        .arg("--out")
        .arg(out)
        .args(args)
        .arg("--quiet")
        .output()?;
    if !o.status.success() {
        bail!("mxcert read failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(())
}

/// The records of a JSON lines file, one string per line, sorted (live and offline runs may
/// finish flows in a different order; the records themselves must be identical).
pub fn sorted_records(file: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    Ok(v)
}

/// A session's 4-tuple key with its start and end (milliseconds of the day).
pub type SessionTimes = (String, i64, i64);

/// Records of a live run and of `mxcert read` of a reference capture taken at the same time,
/// made comparable. Two packet sockets timestamp the same packet separately (af_packet's
/// `tpacket_rcv` falls back to `ktime_get_real` when the skb carries no timestamp), so
/// nanoseconds differ, and with them `session_id` (derived from the start time). Sessions are
/// keyed by their 4-tuple instead, `ts`/`end_ts` are checked to agree within 10 ms by
/// [`assert_same_records`] and then removed; everything else must be byte-identical.
pub fn comparable(lines: &[String]) -> Result<(Vec<String>, Vec<SessionTimes>)> {
    use serde_json::Value;
    let mut recs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect::<Result<_>>()?;
    let mut ids = std::collections::HashMap::new();
    let mut times = Vec::new();
    for r in recs.iter().filter(|r| r["record"] == "session") {
        let key = format!(
            "{}:{}>{}:{}",
            r["client_ip"].as_str().unwrap_or(""),
            r["client_port"],
            r["server_ip"].as_str().unwrap_or(""),
            r["server_port"]
        );
        ids.insert(
            r["session_id"].as_str().unwrap_or("").to_string(),
            key.clone(),
        );
        let ms = |f: &str| r[f].as_str().map(ms_of_day).unwrap_or(-1);
        times.push((key, ms("ts"), ms("end_ts")));
    }
    for r in recs.iter_mut() {
        let Some(o) = r.as_object_mut() else { continue };
        if let Some(Value::String(id)) = o.get("session_id") {
            let key = ids
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("unknown {id}"));
            o.insert("session_id".into(), Value::String(key));
        }
        if o.get("record").and_then(Value::as_str) != Some("certificate") {
            o.remove("ts");
            o.remove("end_ts");
        }
    }
    let mut out: Vec<String> = recs.iter().map(|r| r.to_string()).collect();
    out.sort();
    times.sort();
    Ok((out, times))
}

/// Milliseconds since midnight of an RFC 3339 time `...THH:MM:SS.mmmZ`.
fn ms_of_day(t: &str) -> i64 {
    let Some((_, clock)) = t.split_once('T') else {
        return -1;
    };
    let clock = clock.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let (Some(h), Some(m), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return -1;
    };
    let secs: f64 = s.parse().unwrap_or(-1.0);
    let h: i64 = h.parse().unwrap_or(0);
    let m: i64 = m.parse().unwrap_or(0);
    (h * 3600 + m * 60) * 1000 + (secs * 1000.0).round() as i64
}

/// Asserts that a live run's records equal the reference's (see [`comparable`]), with a
/// readable difference when they do not. Returns the number of records compared.
pub fn assert_same_records(live: &Path, reference: &Path, what: &str) -> usize {
    let got = sorted_records(live).expect("live records");
    let want = sorted_records(reference).expect("reference records");
    let (g, gt) = comparable(&got).expect("live records parse");
    let (w, wt) = comparable(&want).expect("reference records parse");
    assert_eq!(gt.len(), wt.len(), "{what}: session counts differ");
    for ((gk, gts, gend), (wk, wts, wend)) in gt.iter().zip(&wt) {
        assert_eq!(gk, wk, "{what}: sessions differ");
        assert!(
            (gts - wts).abs() <= 10 && (gend - wend).abs() <= 10,
            "{what}: session {gk} times differ by more than 10 ms: live {gts}/{gend}, reference {wts}/{wend}"
        );
    }
    if g != w {
        let only_live: Vec<&String> = g.iter().filter(|l| !w.contains(l)).collect();
        let only_ref: Vec<&String> = w.iter().filter(|l| !g.contains(l)).collect();
        panic!(
            "{what}: live and reference records differ\nonly live:\n{}\nonly reference:\n{}",
            only_live
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            only_ref
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    g.len()
}

/// `GET /metrics` from inside the server namespace (the daemon listens on its loopback), via
/// bash's /dev/tcp so no HTTP client is needed.
pub fn scrape(pair: &NetnsPair, port: u16) -> Result<String> {
    let o = pair
        .command(Side::Server, "timeout")
        .args([
            "10",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    if !text.starts_with("HTTP/1.1 200") {
        bail!("metrics scrape failed: {text}");
    }
    Ok(text)
}

/// Scrapes until `ready` holds for the exposition (the daemon re-renders it once a second), at
/// most 10 s; returns the last scrape either way, for the caller's assertions.
pub fn scrape_when(pair: &NetnsPair, port: u16, ready: impl Fn(&str) -> bool) -> Result<String> {
    let start = std::time::Instant::now();
    loop {
        let text = scrape(pair, port)?;
        if ready(&text) || start.elapsed() > Duration::from_secs(10) {
            return Ok(text);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of one sample (`name{labels}` exactly as exposed) in a scrape.
pub fn metric(text: &str, sample: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Sum of all samples of a family (e.g. every `mxcert_sessions_total{outcome=...}`).
pub fn metric_sum(text: &str, family: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// What an equivalence run saw.
pub struct Equivalence {
    /// The reference records (`mxcert read` of tcpdump's capture), sorted.
    pub reference: Vec<String>,
    /// Records found identical.
    pub compared: usize,
    /// The largest frame in the capture (above 1514: offloads produced super-packets).
    pub largest_frame: u32,
    /// The last metrics scrape before the stop.
    pub scrape: String,
}

impl Equivalence {
    pub fn count(&self, kind: &str) -> usize {
        let p = format!("{{\"record\":\"{kind}\"");
        self.reference.iter().filter(|l| l.starts_with(&p)).count()
    }
}

/// Runs `traffic` while `mxcert capture --backend <backend> <flags>` and tcpdump both watch
/// the server interface, stops both (mxcert with SIGTERM, which must exit 0), reads tcpdump's
/// file with `mxcert read <flags>` and asserts that the records are the same (see
/// [`assert_same_records`]). `sessions` is how many sessions the traffic makes; the metrics
/// must show them all before the stop.
pub fn equivalence(
    pair: &NetnsPair,
    work: &Path,
    backend: &str,
    flags: &[String],
    metrics_port: u16,
    sessions: u64,
    traffic: impl FnOnce(),
) -> Equivalence {
    equivalence_on(
        pair,
        work,
        backend,
        &[],
        flags,
        metrics_port,
        sessions,
        traffic,
    )
}

/// [`equivalence`] on the server interface plus `more_ifaces` of the server namespace (one
/// tcpdump each; `mxcert read` reads their files one after the other).
#[allow(clippy::too_many_arguments)]
pub fn equivalence_on(
    pair: &NetnsPair,
    work: &Path,
    backend: &str,
    more_ifaces: &[&str],
    flags: &[String],
    metrics_port: u16,
    sessions: u64,
    traffic: impl FnOnce(),
) -> Equivalence {
    let tcpdump =
        crate::mta::Tcpdump::start(pair, Side::Server, work.join("ref.pcap")).expect("tcpdump");
    let more: Vec<crate::mta::Tcpdump> = more_ifaces
        .iter()
        .map(|i| {
            let file = work.join(format!("ref-{i}.pcap"));
            crate::mta::Tcpdump::start_on(pair, Side::Server, i, file).expect("tcpdump")
        })
        .collect();
    let mut live_args = flags.to_vec();
    for i in more_ifaces {
        live_args.extend(["--iface".to_string(), i.to_string()]);
    }
    // The wire path is what is compared: a tcpdump cannot see what the TLS library adds
    // (tests/tests/capture_tls_library.rs and uprobe_postfix.rs cover that).
    live_args.extend([
        "--tls-library".into(),
        "off".into(),
        "--backend".into(),
        backend.into(),
        "--metrics-addr".into(),
        format!("127.0.0.1:{metrics_port}"),
    ]);
    let live = work.join("live.jsonl");
    let cap =
        Capture::start(pair, &live, &work.join("mxcert.log"), &live_args).expect("mxcert capture");
    traffic();
    let scrape = scrape_when(pair, metrics_port, |t| {
        metric_sum(t, "mxcert_sessions_total") >= sessions
    })
    .expect("metrics");
    assert_eq!(
        metric_sum(&scrape, "mxcert_sessions_total"),
        sessions,
        "metrics:\n{scrape}"
    );
    let status = cap.stop("TERM").expect("mxcert stops on SIGTERM");
    let log = std::fs::read_to_string(work.join("mxcert.log")).unwrap_or_default();
    assert!(status.success(), "mxcert exit {status}:\n{log}");
    assert!(log.contains("capture stopped"), "{log}");
    let mut pcaps = vec![tcpdump.stop().expect("tcpdump stops")];
    for t in more {
        pcaps.push(t.stop().expect("tcpdump stops"));
    }
    let largest_frame = pcaps
        .iter()
        .flat_map(|p| crate::mta::pcap_frame_lengths(p).expect("read pcap"))
        .max()
        .unwrap_or(0);
    let reference = work.join("read.jsonl");
    read(&pcaps, &reference, flags).expect("mxcert read");
    let compared = assert_same_records(&live, &reference, &format!("equivalence[{backend}]"));
    Equivalence {
        reference: sorted_records(&reference).expect("reference"),
        compared,
        largest_frame,
        scrape,
    }
}

/// Ids of the TCX links in the system (`bpftool -j link show`; Debian's bpftool 7.1 predates
/// TCX and shows them as `"type": 11`, without the interface, so a test compares the sets before
/// and after it attaches).
pub fn tcx_links() -> Result<Vec<u64>> {
    let out = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()?;
    if !out.status.success() {
        bail!(
            "bpftool link show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).context("bpftool JSON")?;
    Ok(links
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l["type"] == "tcx" || l["type"] == 11)
                .filter_map(|l| l["id"].as_u64())
                .collect()
        })
        .unwrap_or_default())
}
