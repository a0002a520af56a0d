//! Choosing and opening a live backend: `ebpf`, `pcap`, or `auto` (eBPF when it loads, else
//! libpcap), with the reason for the choice, which the daemon logs at start.

use super::bpfobj::{BpfObject, Parts};
use super::caps::{self, CapSet, EBPF_CAPS, PCAP_CAPS};
use super::live::{LiveError, LiveSource};
use super::pcap::PcapSource;

/// Which backend the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Auto,
    Ebpf,
    Pcap,
}

/// An open source and why it was chosen.
pub struct Opened {
    pub source: Box<dyn LiveSource>,
    pub reason: String,
    /// The eBPF object the source was loaded from (eBPF backend), for the TLS-library probes
    /// to share.
    pub object: Option<BpfObject>,
}

/// Opens the requested backend on `ifaces`. `caps` is the effective capability set (None:
/// unknown, try anyway). An explicit backend whose capabilities are missing fails with a
/// message naming them; `auto` falls back to libpcap and says why.
pub fn open(
    backend: Backend,
    ifaces: &[String],
    ports: &[u16],
    caps: Option<CapSet>,
) -> Result<Opened, LiveError> {
    open_with(backend, ifaces, ports, caps, false)
}

/// As [`open`]; with `tls`, an eBPF source's object is loaded with the TLS-library part too
/// (returned in [`Opened::object`]), so the probes need no second object.
pub fn open_with(
    backend: Backend,
    ifaces: &[String],
    ports: &[u16],
    caps: Option<CapSet>,
    tls: bool,
) -> Result<Opened, LiveError> {
    let mut object = None;
    let missing = |need: &[caps::Cap]| caps.map(|c| c.missing(need)).unwrap_or_default();
    let mut ebpf = || -> Result<Box<dyn LiveSource>, LiveError> {
        let m = missing(&EBPF_CAPS);
        if !m.is_empty() {
            return Err(LiveError::Unavailable {
                backend: "ebpf",
                reason: format!(
                    "missing {} (run as root, or grant them: AmbientCapabilities in monitor/dist/mxcert.service, or setcap cap_bpf,cap_net_admin,cap_perfmon+ep on the binary)",
                    caps::names(&m)
                ),
            });
        }
        super::ebpf::available().map_err(|reason| LiveError::Unavailable {
            backend: "ebpf",
            reason,
        })?;
        let obj = BpfObject::load(Parts { tc: true, tls })?;
        let source = super::ebpf::EbpfSource::from_object(&obj, ifaces, ports)?;
        object = Some(obj);
        Ok(Box::new(source))
    };
    let pcap = || -> Result<Box<dyn LiveSource>, LiveError> {
        let m = missing(&PCAP_CAPS);
        if !m.is_empty() {
            return Err(LiveError::Unavailable {
                backend: "pcap",
                reason: format!(
                    "missing {} (run as root, or grant it: AmbientCapabilities=CAP_NET_RAW in the systemd unit, or setcap cap_net_raw+ep on the binary)",
                    caps::names(&m)
                ),
            });
        }
        Ok(Box::new(PcapSource::open(ifaces, ports)?))
    };
    let (source, reason) = match backend {
        Backend::Ebpf => (ebpf()?, "requested with --backend ebpf".into()),
        Backend::Pcap => (pcap()?, "requested with --backend pcap".into()),
        Backend::Auto => match ebpf() {
            Ok(source) => (source, "auto: the eBPF program loaded".into()),
            Err(e) => (
                pcap()?,
                format!("auto: falling back to libpcap because {e}"),
            ),
        },
    };
    Ok(Opened {
        source,
        reason,
        object,
    })
}

/// The interfaces' own addresses as host networks (/32, /128): the default `--local-net` of a
/// gateway, so sessions to this host are inbound and from it outbound. IPv6 link-local
/// addresses are left out (they never carry SMTP between hosts).
pub fn interface_nets(ifaces: &[String]) -> Result<Vec<ipnet::IpNet>, LiveError> {
    let devs = ::pcap::Device::list().map_err(|e| LiveError::Unavailable {
        backend: "pcap",
        reason: format!("cannot list interfaces: {e}"),
    })?;
    let mut nets = Vec::new();
    for d in devs.iter().filter(|d| ifaces.contains(&d.name)) {
        for a in &d.addresses {
            let link_local =
                matches!(a.addr, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
            if !link_local {
                nets.push(ipnet::IpNet::from(a.addr));
            }
        }
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::caps::CAP_NET_RAW;

    fn err(backend: Backend, caps: CapSet) -> String {
        match open(backend, &["lo".into()], &[25], Some(caps)) {
            Ok(o) => panic!("opened {} without the capabilities", o.source.backend()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn explicit_backends_name_the_missing_capabilities() {
        let e = err(Backend::Pcap, CapSet(0));
        assert!(
            e.starts_with("pcap capture unavailable: missing CAP_NET_RAW"),
            "{e}"
        );
        let e = err(Backend::Ebpf, CapSet(1 << CAP_NET_RAW.bit));
        assert!(
            e.contains("missing CAP_BPF and CAP_NET_ADMIN and CAP_PERFMON"),
            "{e}"
        );
    }

    #[test]
    fn auto_without_any_capability_reports_the_fallback_failure() {
        let e = err(Backend::Auto, CapSet(0));
        assert!(e.contains("missing CAP_NET_RAW"), "{e}");
    }
}
