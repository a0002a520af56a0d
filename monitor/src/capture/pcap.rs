//! The libpcap live backend: the fallback when the eBPF program cannot load (older kernel,
//! missing capabilities, a build without the eBPF object). It hands every packet of the watched
//! ports to user space, so it cannot cut flows off the way the kernel program does:
//! [`LiveSource::flow_done`] is only remembered for the counters, and the pipeline's own
//! tombstones keep a decided flow at one hash lookup per packet.
//!
//! One capture handle per interface, each non-blocking; [`PcapSource::poll`] drains them in
//! turn and sleeps in `poll(2)` on their descriptors when all are empty.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use pcap::{Active, Capture, Precision};

use super::live::{FlowTuple, LiveError, LiveSource, SourceCounters};
use super::{LinkType, Packet};

const BACKEND: &str = "pcap";

/// Bytes kept per packet. A GSO/GRO super-packet on a veth or a NIC with offloads is up to
/// 64 KiB of TCP payload plus headers (`GSO_MAX_SIZE`, include/linux/netdevice.h), and a TLS
/// Certificate message often sits in one: cutting it would lose the chain. 256 KiB is
/// libpcap's own maximum snaplen (MAXIMUM_SNAPLEN in pcap-int.h) and covers BIG TCP too.
pub const SNAPLEN: i32 = 262_144;

/// Kernel ring size per interface. libpcap's default (2 MB) fills in well under a second of a
/// busy gateway's 1 Gbit/s; 32 MiB absorbs bursts while the pipeline validates a new chain.
pub const BUFFER_SIZE: i32 = 32 * 1024 * 1024;

/// Packets read from one interface before the next gets its turn, so one busy interface cannot
/// starve another.
const BATCH: usize = 1024;

/// How often libpcap's kernel drop counters are refreshed (pcap_stats costs a getsockopt).
const STATS_EVERY: Duration = Duration::from_secs(1);

struct Iface {
    name: String,
    cap: Capture<Active>,
    link: LinkType,
    /// Last values read from pcap_stats (32-bit, wrapping), and the 64-bit totals built from
    /// their deltas.
    last_drop: u32,
    last_ifdrop: u32,
}

/// A libpcap capture on one or more interfaces.
pub struct PcapSource {
    ifaces: Vec<Iface>,
    counters: SourceCounters,
    stats_at: Instant,
    /// Flows the pipeline declared done (counted only: libpcap cannot stop copying them).
    done_flows: u64,
}

/// The BPF filter (pcap-filter(7)) passing TCP segments of the given ports, with or without
/// one 802.1Q/802.1ad tag. libpcap's `vlan` keyword also matches a tag the NIC stripped into
/// packet metadata (Linux auxdata, libpcap >= 1.10), and shifts the offsets of what follows.
/// IPv6 segments behind extension headers are not matched: `ip6 protochain` needs backward
/// jumps, which the kernel's classic BPF verifier rejects, and libpcap would then filter every
/// packet in user space.
pub fn filter_for(ports: &[u16]) -> String {
    let ports = if ports.is_empty() {
        &mxcert_ebpf::DEFAULT_PORTS[..]
    } else {
        ports
    };
    let p = ports
        .iter()
        .map(|p| format!("port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    format!("(tcp and ({p})) or (vlan and tcp and ({p}))")
}

impl PcapSource {
    /// Opens every interface (non-promiscuous: a gateway sees its own traffic), with the port
    /// filter, nanosecond timestamps, immediate delivery and a large kernel buffer.
    pub fn open(ifaces: &[String], ports: &[u16]) -> Result<PcapSource, LiveError> {
        if ifaces.is_empty() {
            return Err(unavailable("no interface given (pass --iface IF)".into()));
        }
        let filter = filter_for(ports);
        let mut out = Vec::new();
        for name in ifaces {
            let inactive = Capture::from_device(name.as_str()).map_err(|e| {
                unavailable(format!("interface {name}: {e} (list them with `ip link`)"))
            })?;
            let cap = inactive
                .promisc(false)
                .snaplen(SNAPLEN)
                .immediate_mode(true)
                .buffer_size(BUFFER_SIZE)
                .precision(Precision::Nano)
                .timeout(100)
                .open()
                .map_err(|e| unavailable(open_hint(name, &e.to_string())))?;
            let mut cap = cap
                .setnonblock()
                .map_err(|e| unavailable(format!("interface {name}: {e}")))?;
            cap.filter(&filter, true)
                .map_err(|e| unavailable(format!("interface {name}: filter {filter:?}: {e}")))?;
            let link = LinkType(cap.get_datalink().0 as u32);
            out.push(Iface {
                name: name.clone(),
                cap,
                link,
                last_drop: 0,
                last_ifdrop: 0,
            });
        }
        Ok(PcapSource {
            ifaces: out,
            counters: SourceCounters::default(),
            stats_at: Instant::now(),
            done_flows: 0,
        })
    }

    /// Interfaces captured on, in the order given.
    pub fn interfaces(&self) -> Vec<&str> {
        self.ifaces.iter().map(|i| i.name.as_str()).collect()
    }

    /// Flows the pipeline declared done since start.
    pub fn done_flows(&self) -> u64 {
        self.done_flows
    }

    fn refresh_stats(&mut self) -> Result<(), LiveError> {
        for i in &mut self.ifaces {
            let st = i.cap.stats().map_err(|e| LiveError::Failed {
                backend: BACKEND,
                reason: format!("interface {}: pcap_stats: {e}", i.name),
            })?;
            self.counters.dropped += u64::from(st.dropped.wrapping_sub(i.last_drop));
            self.counters.if_dropped += u64::from(st.if_dropped.wrapping_sub(i.last_ifdrop));
            i.last_drop = st.dropped;
            i.last_ifdrop = st.if_dropped;
        }
        self.stats_at = Instant::now();
        Ok(())
    }

    /// Reads what is ready on every interface without waiting.
    fn drain(&mut self, f: &mut dyn FnMut(&Packet<'_>)) -> Result<usize, LiveError> {
        let mut n = 0;
        for i in &mut self.ifaces {
            for _ in 0..BATCH {
                match i.cap.next_packet() {
                    Ok(p) => {
                        let ts = p.header.ts.tv_sec * 1_000_000_000 + p.header.ts.tv_usec; // nanoseconds: Precision::Nano
                        let pkt = Packet {
                            ts,
                            link: i.link,
                            data: p.data,
                            orig_len: p.header.len,
                        };
                        self.counters.packets += 1;
                        self.counters.bytes += u64::from(p.header.caplen);
                        f(&pkt);
                        n += 1;
                    }
                    Err(pcap::Error::TimeoutExpired) => break,
                    Err(e) => {
                        return Err(LiveError::Failed {
                            backend: BACKEND,
                            reason: format!("interface {}: {e}", i.name),
                        })
                    }
                }
            }
        }
        Ok(n)
    }
}

fn unavailable(reason: String) -> LiveError {
    LiveError::Unavailable {
        backend: BACKEND,
        reason,
    }
}

fn open_hint(name: &str, err: &str) -> String {
    if err.contains("ermission") || err.contains("not permitted") {
        format!("interface {name}: {err} (needs CAP_NET_RAW: run as root or give the binary the capability, see the systemd unit in monitor/dist/)")
    } else {
        format!("interface {name}: {err}")
    }
}

impl LiveSource for PcapSource {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(&Packet<'_>),
    ) -> Result<usize, LiveError> {
        if self.stats_at.elapsed() >= STATS_EVERY {
            self.refresh_stats()?;
        }
        let n = self.drain(f)?;
        if n > 0 {
            return Ok(n);
        }
        let mut fds: Vec<libc::pollfd> = self
            .ifaces
            .iter()
            .map(|i| libc::pollfd {
                fd: i.cap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the whole call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                // A signal (SIGTERM, SIGHUP): let the caller look at its flags.
                return Ok(0);
            }
            return Err(LiveError::Failed {
                backend: BACKEND,
                reason: format!("poll: {e}"),
            });
        }
        // An interface that went away reports POLLERR; next_packet then says which.
        self.drain(f)
    }

    fn flow_done(&mut self, _flow: &FlowTuple) {
        // libpcap has no per-flow kernel filter to update; the pipeline's tombstone already
        // makes the flow's remaining packets cost one lookup each.
        self.done_flows += 1;
    }

    fn flow_closed(&mut self, _flow: &FlowTuple) {}

    fn counters(&self) -> SourceCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_covers_every_port_with_and_without_vlan() {
        let f = filter_for(&[25, 587]);
        assert_eq!(
            f,
            "(tcp and (port 25 or port 587)) or (vlan and tcp and (port 25 or port 587))"
        );
        assert!(filter_for(&[]).contains("port 465"));
    }

    #[test]
    fn filter_compiles_for_ethernet() {
        // A dead handle compiles filters without touching an interface or needing privileges.
        let dead = Capture::dead(pcap::Linktype::ETHERNET).expect("dead pcap handle");
        let prog = dead
            .compile(&filter_for(&[25, 587, 465]), true)
            .expect("filter compiles");
        assert!(!prog.get_instructions().is_empty());
        let accept = |frame: &[u8]| prog.filter(frame);
        // Ethernet + IPv4 + TCP to port 25, and the same behind one 802.1Q tag.
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let ip_tcp = |dport: u16| {
            let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
            ip.extend_from_slice(&[198, 18, 30, 2, 198, 18, 30, 1]);
            let mut tcp = vec![0x9c, 0x40];
            tcp.extend_from_slice(&dport.to_be_bytes());
            tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
            ip.extend_from_slice(&tcp);
            ip
        };
        let mut smtp = f.clone();
        smtp.extend_from_slice(&ip_tcp(25));
        assert!(accept(&smtp));
        let mut http = f.clone();
        http.extend_from_slice(&ip_tcp(80));
        assert!(!accept(&http));
        let mut vlan = vec![0u8; 12];
        vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x08, 0x00]);
        vlan.extend_from_slice(&ip_tcp(587));
        assert!(accept(&vlan));
    }
}
