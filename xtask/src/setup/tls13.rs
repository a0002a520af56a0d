//! TLS 1.3 through the TLS library (#8): the uprobe tests (tests/tests/uprobe_*.rs) run
//! `openssl s_server`/`s_client`, load the system CA bundle as noise, and check a tcpdump of the
//! traffic. The eBPF toolchain itself comes from `ebpf::install`.

use anyhow::Result;

use super::apt_install;

pub fn install() -> Result<()> {
    apt_install(&["openssl", "ca-certificates", "tcpdump"])
}
