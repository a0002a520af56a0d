//! The HTML report rendered by a real browser: headless Chromium (Debian's `chromium`, installed
//! by `cargo xtask setup`) loads the file of `mxcert report --format html` over the fixture
//! records. Asserted: no console message at all (the page logs nothing by design, so any line
//! is an error, a CSP violation from a fetch, or an uncaught exception), the page's script ran,
//! all three charts drew marks, a table sorts; a screenshot is kept as a test artefact in
//! `target/test-artifacts/report.png`.
//!
//! Console messages are read from Chromium's own log (`--enable-logging=stderr --v=0` prints
//! every console message as `CONSOLE`); a control page with a console.error, an uncaught
//! exception and a blocked fetch proves that the check sees them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::repo_root;

/// Chromium's binary, or a reason to skip (a failure when CI=true: CI must have it).
fn chromium() -> Option<PathBuf> {
    for c in ["chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(c);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let reason =
        "chromium not installed (run `cargo xtask setup`, which installs Debian's chromium)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason}");
    }
    eprintln!("SKIP: {reason}");
    None
}

fn artifacts() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Rendered {
    stdout: String,
    /// Console messages Chromium logged.
    console: Vec<String>,
}

/// Runs headless Chromium once with `args` on `url`, bounded in time.
fn chrome(bin: &Path, url: &str, args: &[&str], tag: &str) -> Rendered {
    let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-{tag}"));
    let _ = std::fs::remove_dir_all(&profile);
    let out_path = profile.with_extension("stdout");
    let err_path = profile.with_extension("stderr");
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(
                st.success(),
                "chromium {tag} exited with {st}: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {tag} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    Rendered {
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        console: stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(String::from)
            .collect(),
    }
}

fn attr<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let i = dom.find(&key)? + key.len();
    dom[i..].split('"').next()
}

#[test]
fn console_check_sees_errors_exceptions_and_fetches() {
    let Some(bin) = chromium() else { return };
    let page = artifacts().join("control.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body><img src=\"fetched.png\"><script>console.error('control-error'); nosuchfunction();</script></body></html>",
    )
    .unwrap();
    let r = chrome(
        &bin,
        &format!("file://{}", page.display()),
        &["--dump-dom"],
        "control",
    );
    let all = r.console.join("\n");
    assert!(
        all.contains("control-error"),
        "console.error not seen:\n{all}"
    );
    assert!(
        all.contains("nosuchfunction"),
        "uncaught exception not seen:\n{all}"
    );
    assert!(
        all.contains("fetched.png"),
        "blocked fetch not seen:\n{all}"
    );
}

#[test]
fn html_report_renders_in_chromium() {
    let Some(bin) = chromium() else { return };
    let root = repo_root();
    let records = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-html.jsonl");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("pcaps"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    let st = Command::new(env!("CARGO_BIN_EXE_mxcert"))
        .current_dir(&root)
        .arg("read")
        .args(&files)
        .args([
            "--local-net",
            "198.18.0.2/32",
            "--trust-anchors",
            "pcaps/certs/root-ca.crt",
            "--quiet",
            "--out",
        ])
        .arg(&records)
        .status()
        .unwrap();
    assert!(st.success());
    let html = artifacts().join("report.html");
    let st = Command::new(env!("CARGO_BIN_EXE_mxcert"))
        .args(["report", "--format", "html", "--at", "2030-12-15", "--from"])
        .arg(&records)
        .arg("--out")
        .arg(&html)
        .status()
        .unwrap();
    assert!(st.success());
    let url = format!("file://{}#selftest", html.display());

    let r = chrome(&bin, &url, &["--dump-dom"], "dom");
    assert!(
        r.console.is_empty(),
        "console messages:\n{}",
        r.console.join("\n")
    );
    let dom = &r.stdout;
    assert_eq!(
        attr(dom, "data-ready"),
        Some("1"),
        "the page's script did not run"
    );
    assert_eq!(attr(dom, "data-charts"), Some("3"));
    assert_eq!(
        attr(dom, "data-charts-drawn"),
        Some("3"),
        "a chart drew nothing"
    );
    assert_eq!(
        attr(dom, "data-sort-ok"),
        Some("1"),
        "sorting a numeric column"
    );
    let tables: u32 = attr(dom, "data-tables").unwrap().parse().unwrap();
    assert!(tables >= 6, "{tables} tables");

    let png = artifacts().join("report.png");
    let _ = std::fs::remove_file(&png);
    let r = chrome(
        &bin,
        &url,
        &[
            "--window-size=1280,4200",
            &format!("--screenshot={}", png.display()),
        ],
        "shot",
    );
    assert!(
        r.console.is_empty(),
        "console messages:\n{}",
        r.console.join("\n")
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        bytes.len() > 50_000,
        "screenshot suspiciously small: {} bytes",
        bytes.len()
    );
    eprintln!("screenshot: {} ({} bytes)", png.display(), bytes.len());
}
