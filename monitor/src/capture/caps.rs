//! Which Linux capabilities the process holds, so the daemon can say which one is missing
//! instead of failing later with a bare EPERM. Numbers from include/uapi/linux/capability.h.

/// One capability bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub bit: u32,
    pub name: &'static str,
}

pub const CAP_NET_ADMIN: Cap = Cap {
    bit: 12,
    name: "CAP_NET_ADMIN",
};
pub const CAP_NET_RAW: Cap = Cap {
    bit: 13,
    name: "CAP_NET_RAW",
};
pub const CAP_SYS_ADMIN: Cap = Cap {
    bit: 21,
    name: "CAP_SYS_ADMIN",
};
pub const CAP_PERFMON: Cap = Cap {
    bit: 38,
    name: "CAP_PERFMON",
};
pub const CAP_BPF: Cap = Cap {
    bit: 39,
    name: "CAP_BPF",
};

/// What the eBPF backend needs: loading programs and maps (CAP_BPF), attaching to TC
/// (CAP_NET_ADMIN), and pointer arithmetic on packet data by the verifier's rules for
/// "perfmon" programs (CAP_PERFMON; kernel/bpf/syscall.c, `bpf_token_capable`). Before 5.8
/// all of this was CAP_SYS_ADMIN, which still implies CAP_BPF and CAP_PERFMON.
pub const EBPF_CAPS: [Cap; 3] = [CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON];
pub const CAP_DAC_READ_SEARCH: Cap = Cap {
    bit: 2,
    name: "CAP_DAC_READ_SEARCH",
};
pub const CAP_SYS_PTRACE: Cap = Cap {
    bit: 19,
    name: "CAP_SYS_PTRACE",
};

/// What the TLS-library probes need, measured as a non-root user on Linux 6.18 (tls-hold
/// under `setpriv --ambient-caps`): loading programs and maps and reading user memory from BPF
/// (CAP_BPF, CAP_PERFMON); a system-wide uprobe `perf_event_open` fails with EACCES without
/// CAP_SYS_ADMIN; the library file is opened through `/proc/PID/root` (ptrace access:
/// CAP_SYS_PTRACE); the socket behind an fd is read in `/proc/PID/fd`, a 0500 directory of the
/// MTA's user (CAP_DAC_READ_SEARCH, plus ptrace access for the links).
pub const TLS_LIBRARY_CAPS: [Cap; 5] = [
    CAP_BPF,
    CAP_PERFMON,
    CAP_SYS_ADMIN,
    CAP_SYS_PTRACE,
    CAP_DAC_READ_SEARCH,
];
/// What the libpcap backend needs: an AF_PACKET socket (net/packet/af_packet.c,
/// `packet_create`).
pub const PCAP_CAPS: [Cap; 1] = [CAP_NET_RAW];

/// The effective capability set (`CapEff` of /proc/self/status, a 64-bit hex mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    /// Reads the current process's effective set; `None` when /proc is not mounted (then the
    /// daemon tries anyway and reports the kernel's error).
    pub fn current() -> Option<CapSet> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        CapSet::parse_status(&status)
    }

    pub fn parse_status(status: &str) -> Option<CapSet> {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))?
            .trim();
        u64::from_str_radix(hex, 16).ok().map(CapSet)
    }

    pub fn has(self, cap: Cap) -> bool {
        self.0 & (1u64 << cap.bit) != 0
    }

    /// The capabilities of `needed` that are missing. CAP_SYS_ADMIN stands in for CAP_BPF and
    /// CAP_PERFMON (kernel/bpf/syscall.c `bpf_capable`, include/linux/capability.h
    /// `perfmon_capable`).
    pub fn missing(self, needed: &[Cap]) -> Vec<Cap> {
        needed
            .iter()
            .copied()
            .filter(|&c| {
                !(self.has(c) || ((c == CAP_BPF || c == CAP_PERFMON) && self.has(CAP_SYS_ADMIN)))
            })
            .collect()
    }
}

/// "CAP_BPF and CAP_PERFMON" for messages.
pub fn names(caps: &[Cap]) -> String {
    caps.iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capeff_and_names_what_is_missing() {
        let status = "Name:\tmxcert\nCapInh:\t0000000000000000\nCapPrm:\t0000000000003000\nCapEff:\t0000000000002000\n";
        let set = CapSet::parse_status(status).unwrap();
        assert!(set.has(CAP_NET_RAW));
        assert!(!set.has(CAP_NET_ADMIN));
        assert!(set.missing(&PCAP_CAPS).is_empty());
        assert_eq!(
            names(&set.missing(&EBPF_CAPS)),
            "CAP_BPF and CAP_NET_ADMIN and CAP_PERFMON"
        );
    }

    #[test]
    fn sys_admin_implies_bpf_and_perfmon() {
        let set = CapSet((1 << CAP_SYS_ADMIN.bit) | (1 << CAP_NET_ADMIN.bit));
        assert!(set.missing(&EBPF_CAPS).is_empty());
    }

    #[test]
    fn root_has_everything() {
        // A full set as root has it (CapEff 000001ffffffffff on 6.x kernels).
        assert!(CapSet(0x1ff_ffff_ffff).missing(&EBPF_CAPS).is_empty());
    }
}
