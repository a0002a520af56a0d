//! Real mail software in a [`NetnsPair`]: a private Postfix instance (its own config, queue and
//! data directories, no chroot), swaks as the client, tcpdump as the reference capture. The
//! settings follow pcaps/make.sh, which makes the fixture captures with the same programs; the
//! Postfix master.cf is shared with it (pcaps/mta/master.cf). Every process started here is
//! stopped by a Drop guard, so a failing test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::{run, NetnsPair, Side};

/// True when root and the mail tools (Postfix, swaks, tcpdump, python3; installed by
/// `cargo xtask setup`) are present. Otherwise prints why the calling test is skipped, except
/// under CI, where a missing prerequisite is a failure.
pub fn require_mta(test: &str) -> bool {
    if !crate::netns::require_root(test) {
        return false;
    }
    let missing: Vec<&str> = ["postfix", "swaks", "tcpdump", "python3", "ss"]
        .into_iter()
        .filter(|t| {
            !std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|d| d.join(t).is_file())
                    || Path::new("/usr/sbin").join(t).is_file()
            })
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(&format!(
        "{test}: needs {} (run `cargo xtask setup`)",
        missing.join(", ")
    ))
}

/// [`require_mta`] plus the private Exim of `cargo xtask setup`.
pub fn require_exim(test: &str) -> bool {
    if !require_mta(test) {
        return false;
    }
    let bin = exim_root().join("usr/sbin/exim4");
    bin.is_file()
        || skip_or_fail(&format!(
            "{test}: needs Exim at {} (run `cargo xtask setup`)",
            bin.display()
        ))
}

/// A missing prerequisite: a failure under CI, else a printed skip.
fn skip_or_fail(msg: &str) -> bool {
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("{msg}: SKIPPED");
    false
}

/// The fixture PKI (pcaps/certs, made by pcaps/certs.sh).
pub fn certs_dir() -> PathBuf {
    crate::repo_root().join("pcaps/certs")
}

/// A fresh directory for one test's files under the system temp dir, removed on drop unless the
/// test failed (then kept for inspection and its path printed).
pub struct WorkDir {
    pub path: PathBuf,
}

impl WorkDir {
    pub fn new(name: &str) -> Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("mxcert-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        // Postfix's unprivileged children (and the pipe delivery as nobody) walk this path.
        set_mode(&path, 0o755)?;
        Ok(WorkDir { path })
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("work dir kept for inspection: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", p.display()))
}

/// Waits until `f` holds, polling every 50 ms, at most `limit`.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

/// Sends `sig` (e.g. "TERM") to `pid`.
pub fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Waits for a child to exit, at most `limit`; kills it (SIGKILL) when it does not.
pub fn wait_child(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Something listens on `ip:port` inside the namespace of `side`.
pub fn wait_listen(pair: &NetnsPair, side: Side, ip: &str, port: u16) -> Result<()> {
    wait_for(
        &format!("a listener on {ip}:{port}"),
        Duration::from_secs(10),
        || {
            pair.command(side, "ss")
                .args(["-Hltn", &format!("src {ip}:{port}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("LISTEN"))
                .unwrap_or(false)
        },
    )
}

/// No TCP connection of the namespace is open any more (bounded): the traffic is over.
pub fn wait_quiet(pair: &NetnsPair, side: Side) -> Result<()> {
    wait_for("connections to close", Duration::from_secs(10), || {
        pair.command(side, "ss")
            .args([
                "-Htn",
                "state",
                "established",
                "state",
                "syn-sent",
                "state",
                "syn-recv",
                "state",
                "fin-wait-1",
                "state",
                "fin-wait-2",
                "state",
                "close-wait",
                "state",
                "last-ack",
                "state",
                "closing",
            ])
            .output()
            .map(|o| o.stdout.iter().all(|b| b.is_ascii_whitespace()))
            .unwrap_or(false)
    })
}

/// A private Postfix server instance in one namespace. Mail to `@test.example` is delivered
/// by a pipe transport into `mail/<queue id>` files, so a test can compare what arrived.
pub struct Postfix {
    pub dir: PathBuf,
    ns: String,
    pub ip: String,
}

/// How the server is set up.
#[derive(Default)]
pub struct PostfixOpts {
    /// `smtpd_tls_chain_files` (key first); empty: no TLS.
    pub chain_files: Vec<PathBuf>,
    /// A different chain for smtps (465) only, e.g. a large one.
    pub smtps_chain_files: Vec<PathBuf>,
    /// Extra main.cf lines (`key = value`), replacing defaults of the same key.
    pub main_cf: Vec<String>,
    /// Run as a sending MTA in the client namespace, relaying all mail to this server over
    /// mandatory TLS (`chain_files` are then its client certificate); no listener.
    pub relay_to: Option<std::net::Ipv4Addr>,
    /// With `relay_to`: keep the smtpd listeners too (a host that sends and receives; its
    /// smtpd TLS settings then come from `main_cf`).
    pub listen: bool,
}

impl PostfixOpts {
    /// TLS with the fixture certificate `name` (pcaps/certs/<name>.key + <name>.chain.pem).
    pub fn cert(name: &str) -> PostfixOpts {
        let c = certs_dir();
        PostfixOpts {
            chain_files: vec![
                c.join(format!("{name}.key")),
                c.join(format!("{name}.chain.pem")),
            ],
            ..PostfixOpts::default()
        }
    }
}

impl Postfix {
    pub fn start(pair: &NetnsPair, dir: PathBuf, opts: &PostfixOpts) -> Result<Postfix> {
        let side = if opts.relay_to.is_some() {
            Side::Client
        } else {
            Side::Server
        };
        let ip = match side {
            Side::Server => pair.server_ip.to_string(),
            Side::Client => pair.client_ip.to_string(),
        };
        let pf = Postfix {
            dir,
            ns: pair.ns(side).to_string(),
            ip: ip.clone(),
        };
        let d = &pf.dir;
        for sub in ["etc", "spool", "data", "mail"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        set_mode(d, 0o755)?;
        set_mode(&d.join("spool"), 0o755)?;
        set_mode(&d.join("mail"), 0o777)?;
        run(Command::new("chown").arg("postfix").arg(d.join("data")))?;
        let mail = d.join("mail");
        let mut main = vec![
            "compatibility_level = 3.6".to_string(),
            format!("queue_directory = {}", d.join("spool").display()),
            format!("data_directory = {}", d.join("data").display()),
            "mail_owner = postfix".into(),
            "myhostname = mx.test.example".into(),
            "mydomain = test.example".into(),
            "myorigin = $myhostname".into(),
            "mydestination = test.example, $myhostname".into(),
            format!("inet_interfaces = {ip}"),
            "inet_protocols = ipv4".into(),
            "mynetworks = 198.18.0.0/15".into(),
            "local_transport = mxdeliver:".into(),
            "local_recipient_maps =".into(),
            "smtpd_peername_lookup = no".into(),
            "smtp_dns_support_level = disabled".into(),
            "message_size_limit = 52428800".into(),
            format!("maillog_file = {}", d.join("maillog").display()),
            format!("maillog_file_prefixes = {}", d.display()),
            "smtpd_banner = $myhostname ESMTP Postfix".into(),
            "smtpd_tls_loglevel = 1".into(),
            "smtpd_tls_session_cache_database =".into(),
        ];
        if let Some(relay) = opts.relay_to {
            main.extend([
                "myhostname = mx.client.example".into(),
                "mydestination =".into(),
                format!("relayhost = [{relay}]:25"),
                "smtp_tls_security_level = encrypt".into(),
                "smtp_tls_loglevel = 1".into(),
                "smtp_tls_session_cache_database =".into(),
            ]);
            if !opts.chain_files.is_empty() {
                main.push(format!(
                    "smtp_tls_chain_files = {}",
                    join_paths(&opts.chain_files)
                ));
            }
        } else if !opts.chain_files.is_empty() {
            main.push("smtpd_tls_security_level = may".into());
            main.push(format!(
                "smtpd_tls_chain_files = {}",
                join_paths(&opts.chain_files)
            ));
        }
        let mut seen = std::collections::HashSet::new();
        // Later lines replace earlier ones of the same key (as Postfix itself reads main.cf).
        main.reverse();
        main.retain(|m| seen.insert(m.split('=').next().unwrap_or("").trim().to_string()));
        main.reverse();
        for l in &opts.main_cf {
            let key = l.split('=').next().unwrap_or("").trim();
            main.retain(|m| m.split('=').next().unwrap_or("").trim() != key);
            main.push(l.clone());
        }
        std::fs::write(d.join("etc/main.cf"), main.join("\n") + "\n")?;
        let mut master = std::fs::read_to_string(crate::repo_root().join("pcaps/mta/master.cf"))
            .context("reading pcaps/mta/master.cf")?;
        if !opts.smtps_chain_files.is_empty() {
            master = master.replace(
                "-o smtpd_tls_wrappermode=yes",
                &format!(
                    "-o smtpd_tls_wrappermode=yes -o smtpd_tls_chain_files={}",
                    opts.smtps_chain_files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            );
        }
        // Delivery into files, as an unprivileged user (pipe(8) refuses root).
        master.push_str(&format!(
            "mxdeliver  unix  - n n - - pipe flags= user=nobody argv=/bin/dd of={}/${{queue_id}} status=none\n",
            mail.display()
        ));
        if opts.relay_to.is_some() && !opts.listen {
            // A sender only: no smtpd listeners.
            master = master
                .lines()
                .filter(|l| !l.contains(" inet "))
                .map(|l| format!("{l}\n"))
                .collect();
        }
        std::fs::write(d.join("etc/master.cf"), master)?;
        let st = pf.postfix(&["start"])?;
        if !st.status.success() {
            let log = std::fs::read_to_string(d.join("maillog")).unwrap_or_default();
            bail!(
                "postfix did not start: {}\n{log}",
                String::from_utf8_lossy(&st.stderr)
            );
        }
        if side == Side::Server || opts.listen {
            for port in [25, 465, 587] {
                wait_listen(pair, side, &ip, port)?;
            }
        }
        Ok(pf)
    }

    fn postfix(&self, args: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "postfix", "-c"])
            .arg(self.dir.join("etc"))
            .args(args)
            .output()
            .context("running postfix")
    }

    /// Submits a message (sendmail(1) of this instance) to `to`; a client instance relays it.
    pub fn sendmail(&self, to: &str, message: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "sendmail", "-C"])
            .arg(self.dir.join("etc"))
            .args(["-f", "sender@client.example", to])
            .stdin(Stdio::piped())
            .spawn()
            .context("running sendmail")?;
        child.stdin.take().context("stdin")?.write_all(message)?;
        let st = wait_child(&mut child, Duration::from_secs(20))?;
        if !st.success() {
            bail!("sendmail failed: {st}");
        }
        Ok(())
    }

    /// Waits (bounded) until the maillog says a message was relayed (`status=sent`).
    pub fn wait_sent(&self, n: usize, limit: Duration) -> Result<()> {
        let log = self.dir.join("maillog");
        wait_for(&format!("{n} message(s) sent"), limit, || {
            std::fs::read_to_string(&log)
                .map(|l| l.matches("status=sent").count() >= n)
                .unwrap_or(false)
        })
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// Delivered messages (file contents), waiting until `n` have arrived (bounded).
    pub fn delivered(&self, n: usize, limit: Duration) -> Result<Vec<Vec<u8>>> {
        let mail = self.dir.join("mail");
        let count = || std::fs::read_dir(&mail).map(|d| d.count()).unwrap_or(0);
        wait_for(&format!("{n} delivered message(s)"), limit, || count() >= n).with_context(
            || std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default(),
        )?;
        // The pipe writes while delivering: wait for the queue to empty.
        wait_for("the queue to empty", limit, || {
            std::fs::read_dir(self.dir.join("spool/active"))
                .map(|d| d.count() == 0)
                .unwrap_or(true)
        })?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&mail)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        files.iter().map(|f| Ok(std::fs::read(f)?)).collect()
    }
}

fn join_paths(p: &[PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.dir.join("spool/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let _ = self.postfix(&["stop"]);
        if let Some(pid) = pid {
            let gone = wait_for("postfix master to exit", Duration::from_secs(5), || {
                !Path::new(&format!("/proc/{pid}")).exists()
            });
            if gone.is_err() {
                kill(pid, "KILL");
            }
        }
    }
}

/// swaks in the client namespace against the server; returns its output (a failed delivery is
/// the caller's to judge). Bounded by `timeout 60`.
pub fn swaks(pair: &NetnsPair, args: &[&str]) -> Result<Output> {
    swaks_from(pair, Side::Client, &pair.server_ip.to_string(), args)
}

/// swaks from the namespace of `side` to `server`.
pub fn swaks_from(pair: &NetnsPair, side: Side, server: &str, args: &[&str]) -> Result<Output> {
    pair.command(side, "timeout")
        .args(["60", "swaks", "--server", server, "--timeout", "20"])
        .args([
            "--from",
            "sender@client.example",
            "--to",
            "user@test.example",
        ])
        .args(args)
        .output()
        .context("running swaks")
}

/// swaks that must deliver (exit 0).
pub fn swaks_ok(pair: &NetnsPair, args: &[&str]) -> Result<()> {
    swaks_from_ok(pair, Side::Client, &pair.server_ip.to_string(), args)
}

/// [`swaks_from`] that must deliver (exit 0).
pub fn swaks_from_ok(pair: &NetnsPair, side: Side, server: &str, args: &[&str]) -> Result<()> {
    let out = swaks_from(pair, side, server, args)?;
    if !out.status.success() {
        bail!(
            "swaks {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
}

/// tcpdump writing a nanosecond pcap of everything on the server's interface: the reference
/// `mxcert read` is compared with.
pub struct Tcpdump {
    child: Option<Child>,
    pub file: PathBuf,
}

impl Tcpdump {
    pub fn start(pair: &NetnsPair, side: Side, file: PathBuf) -> Result<Tcpdump> {
        Tcpdump::start_on(pair, side, pair.ifname(side), file)
    }

    /// tcpdump on interface `ifname` of the namespace of `side`.
    pub fn start_on(pair: &NetnsPair, side: Side, ifname: &str, file: PathBuf) -> Result<Tcpdump> {
        let log = file.with_extension("tcpdump.log");
        let child = pair
            .command(side, "tcpdump")
            .args(["-i", ifname, "-s", "0", "-U", "--immediate-mode"])
            // A 16 MiB kernel buffer (default 2 MiB): a loaded machine otherwise drops packets
            // of a fast veth transfer ("dropped by kernel").
            .args(["-B", "16384"])
            .args(["--time-stamp-precision=nano", "-Z", "root", "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting tcpdump")?;
        let t = Tcpdump {
            child: Some(child),
            file,
        };
        wait_for("tcpdump to listen", Duration::from_secs(10), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("listening on"))
        })?;
        Ok(t)
    }

    /// Stops the capture (SIGINT lets tcpdump flush) and returns the file.
    pub fn stop(mut self) -> Result<PathBuf> {
        if let Some(mut c) = self.child.take() {
            kill(c.id(), "INT");
            wait_child(&mut c, Duration::from_secs(10))?;
        }
        Ok(self.file.clone())
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Frame lengths of a classic pcap file (any byte order), to check what the capture holds
/// (e.g. that offloads produced super-packets).
pub fn pcap_frame_lengths(file: &Path) -> Result<Vec<u32>> {
    Ok(pcap_frames(file)?
        .1
        .into_iter()
        .map(|(len, _)| len)
        .collect())
}

/// A pcap frame: (original length, captured bytes).
pub type PcapFrame = (u32, Vec<u8>);

/// The link type of a classic pcap file (any byte order) and its frames.
pub fn pcap_frames(file: &Path) -> Result<(u32, Vec<PcapFrame>)> {
    let b = std::fs::read(file)?;
    if b.len() < 24 {
        bail!("{}: not a pcap file", file.display());
    }
    let le = matches!(&b[..4], [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]);
    let u32at = |i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= b.len() {
        let incl = u32at(i + 8) as usize;
        let data = b[i + 16..(i + 16 + incl).min(b.len())].to_vec();
        out.push((u32at(i + 12), data));
        i += 16 + incl;
    }
    Ok((u32at(20), out))
}

/// Where `cargo xtask setup` (pcaps/mta/exim-install.sh) unpacked the private Exim.
pub fn exim_root() -> PathBuf {
    std::env::var_os("EXIM_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/mxcert-pcaps-exim"))
}

/// A private Exim 4 server (GnuTLS) on `ip` in the server namespace, configured from
/// pcaps/mta/exim.conf (shared with pcaps/make.sh): STARTTLS with the srv_exim chain, asks
/// every client for a certificate, discards the mail.
pub struct Exim {
    dir: PathBuf,
}

impl Exim {
    pub fn start(pair: &NetnsPair, dir: PathBuf, ip: &str) -> Result<Exim> {
        Exim::start_with(pair, dir, ip, &[])
    }

    /// [`Exim::start`] with `main` lines added to the main configuration section (e.g.
    /// `tls_resumption_hosts = *`).
    pub fn start_with(pair: &NetnsPair, dir: PathBuf, ip: &str, main: &[&str]) -> Result<Exim> {
        let root = exim_root();
        let bin = root.join("usr/sbin/exim4");
        if !bin.is_file() {
            bail!("no Exim at {} (run `cargo xtask setup`)", bin.display());
        }
        for sub in ["spool", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let c = certs_dir();
        // Exim reads the key after dropping to its own user.
        for f in ["srv_exim.chain.pem", "srv_exim.key", "root-ca.crt"] {
            std::fs::copy(c.join(f), dir.join(f))?;
        }
        let conf = std::fs::read_to_string(crate::repo_root().join("pcaps/mta/exim.conf"))?
            .replace("@DIR@", &dir.display().to_string())
            .replace("@IP@", ip)
            .replace("@EXIM_ROOT@", &root.display().to_string());
        // The main section ends where the first `begin` section starts.
        let Some(end) = conf.find("\nbegin ") else {
            bail!("pcaps/mta/exim.conf has no `begin` section");
        };
        let conf = format!("{}\n{}{}", &conf[..end], main.join("\n"), &conf[end..]);
        run(Command::new("chown").args(["-R", "Debian-exim"]).arg(&dir))?;
        set_mode(&dir, 0o755)?;
        // Exim refuses a configuration not owned by root (or its own user) or writable by
        // others: written after the chown, as root, mode 644.
        std::fs::write(dir.join("exim.conf"), conf)?;
        set_mode(&dir.join("exim.conf"), 0o644)?;
        let exim = Exim { dir };
        let out = pair
            .command(Side::Server, &bin.display().to_string())
            .arg("-C")
            .arg(exim.dir.join("exim.conf"))
            .arg("-bd")
            .output()
            .context("starting exim")?;
        if !out.status.success() {
            bail!(
                "exim did not start: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(exim.dir.join("log/paniclog")).unwrap_or_default()
            );
        }
        wait_listen(pair, Side::Server, ip, 25)?;
        Ok(exim)
    }

    /// Waits (bounded) until Exim's mainlog shows `n` messages received (`<=` lines).
    pub fn wait_received(&self, n: usize, limit: Duration) -> Result<()> {
        let log = self.dir.join("log/mainlog");
        wait_for(&format!("{n} message(s) received by Exim"), limit, || {
            std::fs::read_to_string(&log)
                .map(|l| l.lines().filter(|l| l.contains(" <= ")).count() >= n)
                .unwrap_or(false)
        })
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())
    }
}

impl Drop for Exim {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.dir.join("exim.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            kill(pid, "TERM");
            let gone = wait_for("exim to exit", Duration::from_secs(5), || {
                !Path::new(&format!("/proc/{pid}")).exists()
            });
            if gone.is_err() {
                kill(pid, "KILL");
            }
        }
    }
}

/// A private Exim 4 (GnuTLS) in the client namespace that sends all mail to one server over
/// mandatory TLS through its smtp transport (manualroute), presenting a fixture chain
/// (leaf + intermediate, `tls_certificate`) when the server asks for a client certificate.
pub struct EximClient {
    /// Its configuration file (`exim4 -C`).
    pub conf: PathBuf,
    ns: String,
}

impl EximClient {
    /// Writes the configuration into `dir` (spool, log, copies of the `cli` chain and key):
    /// delivery to `server` port 25.
    pub fn new(pair: &NetnsPair, dir: &Path, server: &str, cli: &str) -> Result<EximClient> {
        let certs = certs_dir();
        for sub in ["spool", "log"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for (from, to) in [
            (format!("{cli}.chain.pem"), "cli.chain.pem"),
            (format!("{cli}.key"), "cli.key"),
            ("root-ca.crt".into(), "root-ca.crt"),
        ] {
            std::fs::copy(certs.join(&from), dir.join(to))
                .with_context(|| format!("copying {from}"))?;
        }
        let d = dir.display();
        let conf = format!(
            "primary_hostname = client.test.example
exim_path = {root}/usr/sbin/exim4
keep_environment =
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
exim_user = Debian-exim
exim_group = Debian-exim
never_users = root
host_lookup =
rfc1413_hosts =
begin routers
to_server:
  driver = manualroute
  route_list = * {server}
  transport = remote_smtp
begin transports
remote_smtp:
  driver = smtp
  port = 25
  hosts_require_tls = *
  tls_certificate = {d}/cli.chain.pem
  tls_privatekey = {d}/cli.key
  tls_verify_certificates = {d}/root-ca.crt
begin retry
* * F,1h,10m
",
            root = exim_root().display(),
        );
        run(Command::new("chown").args(["-R", "Debian-exim"]).arg(dir))?;
        set_mode(dir, 0o755)?;
        // Exim refuses a configuration writable by others or not owned by root: written after
        // the chown, as root, mode 644.
        let file = dir.join("exim.conf");
        std::fs::write(&file, conf)?;
        set_mode(&file, 0o644)?;
        Ok(EximClient {
            conf: file,
            ns: pair.client_ns.clone(),
        })
    }

    /// Delivers `message` from sender@client.example to `to` in the foreground (`-odf`: when
    /// the process exits, the message was sent or failed), which must succeed (bounded).
    pub fn send(&self, to: &str, message: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(exim_root().join("usr/sbin/exim4"))
            .arg("-C")
            .arg(&self.conf)
            .args(["-odf", "-f", "sender@client.example", to])
            .stdin(Stdio::piped())
            .spawn()
            .context("running exim4")?;
        child.stdin.take().context("stdin")?.write_all(message)?;
        let st = wait_child(&mut child, Duration::from_secs(30))?;
        if !st.success() {
            bail!("exim delivery to {to} failed: {st}");
        }
        Ok(())
    }
}
