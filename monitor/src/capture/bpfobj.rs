//! The one eBPF object of a daemon: `monitor-ebpf` holds both the TC capture program
//! ([`super::ebpf`]) and the TLS-library probes ([`super::tlslib`]). Loading it creates every
//! map it declares, so it is loaded once and shared: each side takes its own programs and maps
//! from it, and the part not used gets its large maps shrunk to the minimum before they are
//! created (the TC ring is 8 MiB, the TLS ring 1 MiB; aya `EbpfLoader::map_max_entries`).
//!
//! Programs and their links stay inside the shared [`Ebpf`]; they are detached when the last
//! holder (source or probes) is dropped, and by the kernel when the process ends, even by
//! SIGKILL (TCX and perf-event links are owned by their file descriptors).

use std::sync::{Arc, Mutex, MutexGuard};

use aya::{Ebpf, EbpfLoader};

use super::ebpf::{load_error, object, NO_OBJECT};
use super::LiveError;

/// Which parts of the object will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The TC capture program (`--backend ebpf`).
    pub tc: bool,
    /// The TLS-library probes (`--tls-library auto`).
    pub tls: bool,
}

/// The loaded object, shared by the TC source and the TLS probes.
#[derive(Clone)]
pub struct BpfObject {
    ebpf: Arc<Mutex<Ebpf>>,
    parts: Parts,
}

impl BpfObject {
    /// Loads the object (maps only; each side loads its programs). The maps of an unused
    /// part are created at their smallest size.
    pub fn load(parts: Parts) -> Result<BpfObject, LiveError> {
        let data = object().ok_or_else(|| LiveError::unavailable("ebpf", NO_OBJECT.into()))?;
        // A ring buffer's size must be a power-of-two multiple of the page size
        // (kernel/bpf/ringbuf.c, `ringbuf_map_alloc`): one page is the least.
        let page = u32::try_from(page_size()).unwrap_or(4096);
        let mut loader = EbpfLoader::new();
        let btf = aya::Btf::from_sys_fs().ok();
        loader.btf(btf.as_ref());
        if !parts.tc {
            loader
                .map_max_entries(mxcert_ebpf::MAP_EVENTS, page)
                .map_max_entries(mxcert_ebpf::MAP_FLOWS, 1);
        }
        if !parts.tls {
            loader
                .map_max_entries(mxcert_ebpf::tls::MAP_EVENTS, page)
                .map_max_entries(mxcert_ebpf::tls::MAP_CURRENT, 1)
                .map_max_entries(mxcert_ebpf::tls::MAP_PEER_CALLS, 1);
        }
        let ebpf = loader
            .load(data)
            .map_err(|e| load_error("loading the BPF maps", &e))?;
        Ok(BpfObject {
            ebpf: Arc::new(Mutex::new(ebpf)),
            parts,
        })
    }

    /// The parts this object was loaded for.
    pub fn parts(&self) -> Parts {
        self.parts
    }

    /// The object, for taking maps and loading/attaching programs. A panic while it was held
    /// cannot leave it half-changed in a way that matters here, so a poisoned lock is used.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Ebpf> {
        self.ebpf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn page_size() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_can_move_to_a_capture_thread() {
        fn send<T: Send + Sync>() {}
        send::<BpfObject>();
    }
}
