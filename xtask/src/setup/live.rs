//! Live capture (#5): libpcap for the `pcap` backend, and the real mail software the live
//! system tests run in network namespaces (tests/tests/live_*.rs): Postfix, swaks with TLS
//! (Net::SSLeay is only a Recommends of swaks), tcpdump for the reference capture, python3 for
//! a scripted SMTP client, and a private Exim (it conflicts with Postfix as a package; the
//! script that unpacks it is shared with pcaps/make.sh).

use std::process::Command;

use anyhow::Result;

use super::{apt_install, dpkg_installed};
use crate::run;

pub fn install() -> Result<()> {
    if !dpkg_installed("postfix") {
        // Postfix asks how it should be configured; the tests run private instances, so the
        // system one stays unconfigured ("No configuration").
        let _ = Command::new("sh")
            .args([
                "-c",
                "echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections",
            ])
            .status();
    }
    apt_install(&[
        "libpcap-dev",
        "postfix",
        "swaks",
        "libnet-ssleay-perl",
        "tcpdump",
        "openssl",
        "python3",
    ])?;
    let script = crate::repo_root().join("pcaps/mta/exim-install.sh");
    run(Command::new("bash").arg(script))?;
    Ok(())
}
