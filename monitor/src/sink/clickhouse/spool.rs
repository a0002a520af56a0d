//! On-disk spool: batches that could not be inserted (server down or slow, queue full) wait
//! here as one file each, named by a sequence number, and are replayed oldest first. A file is
//! a JSON header line (batch id, rows and bytes per table) followed by the RowBinary rows of
//! each table: the very bytes the INSERT sends. The
//! directory survives a crash or restart: a new process replays what the last one left.
//!
//! A file is written to `*.tmp` and renamed, so a crash mid-write leaves no half batch to
//! replay (rename is atomic within a directory, POSIX rename(2)); stale `*.tmp` files are
//! removed on open. The total size is bounded; a batch that would exceed the bound is dropped
//! and counted by the caller.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Batch, ClickHouseError};

#[derive(Serialize, Deserialize)]
struct Header {
    id: String,
    /// Rows and bytes of certificates, sessions, findings.
    tables: [(u64, u64); 3],
}

fn encode(b: &Batch) -> Vec<u8> {
    let h = Header {
        id: b.id.clone(),
        tables: b.tables().map(|(_, t)| (t.rows, t.data.len() as u64)),
    };
    let mut out = serde_json::to_vec(&h).unwrap_or_default();
    out.push(b'\n');
    for (_, t) in b.tables() {
        out.extend_from_slice(&t.data);
    }
    out
}

fn decode(data: &[u8]) -> Option<Batch> {
    let nl = data.iter().position(|&c| c == b'\n')?;
    let h: Header = serde_json::from_slice(&data[..nl]).ok()?;
    let mut rest = &data[nl + 1..];
    let mut b = Batch {
        id: h.id,
        ..Batch::default()
    };
    for (t, (rows, len)) in b.tables_mut().into_iter().zip(h.tables) {
        let len = usize::try_from(len).ok()?;
        if rest.len() < len {
            return None;
        }
        t.rows = rows;
        t.data = rest[..len].to_vec();
        rest = &rest[len..];
    }
    rest.is_empty().then_some(b)
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    next_seq: u64,
    bytes: u64,
    /// Spooled files, oldest first: (sequence, path, size, rows).
    files: std::collections::VecDeque<(u64, PathBuf, u64, u64)>,
}

impl Spool {
    /// Opens (creating) the directory and indexes the batches a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, ClickHouseError> {
        let io = |source| ClickHouseError::Spool {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".batch.json")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            files.push((seq, path, size, 0));
        }
        files.sort_by_key(|f| f.0);
        let next_seq = files.last().map_or(1, |f| f.0 + 1);
        let bytes = files.iter().map(|f| f.2).sum();
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            next_seq,
            bytes,
            files: files.into(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends a batch. `Ok(false)` when the size bound would be exceeded (nothing written).
    pub fn push(&mut self, batch: &Batch) -> Result<bool, ClickHouseError> {
        let data = encode(batch);
        let size = data.len() as u64;
        if self.bytes + size > self.max_bytes {
            return Ok(false);
        }
        let seq = self.next_seq;
        let path = self.dir.join(format!("{seq:020}.batch.json"));
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        let io = |source| ClickHouseError::Spool {
            path: tmp.clone(),
            source,
        };
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&data).map_err(io)?;
        // Data before the name: after a power loss the file is complete or absent.
        f.sync_data().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        self.next_seq += 1;
        self.bytes += size;
        self.files.push_back((seq, path, size, batch.rows()));
        Ok(true)
    }

    /// The oldest batch, read back (not removed). A file that no longer parses is moved
    /// aside as `*.bad` (never replayed, never deleted) and the next one is tried.
    pub fn oldest(&mut self) -> Option<Batch> {
        while let Some((_, path, size, _)) = self.files.front().cloned() {
            match fs::read(&path).ok().and_then(|d| decode(&d)) {
                Some(b) => return Some(b),
                None => {
                    eprintln!(
                        "mxcert: warning: spool file {} is unreadable; kept as .bad, not replayed",
                        path.display()
                    );
                    let _ = fs::rename(&path, path.with_extension("bad"));
                    self.files.pop_front();
                    self.bytes = self.bytes.saturating_sub(size);
                }
            }
        }
        None
    }

    /// Removes the oldest batch after it was inserted.
    pub fn pop(&mut self) {
        if let Some((_, path, size, _)) = self.files.pop_front() {
            let _ = fs::remove_file(&path);
            self.bytes = self.bytes.saturating_sub(size);
        }
    }

    /// Rows waiting (counted for batches spooled by this process; files left by an earlier
    /// run are counted when replayed).
    pub fn rows_known(&self) -> u64 {
        self.files.iter().map(|f| f.3).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_come_back_in_order_and_intact_after_a_restart() {
        let dir = std::env::temp_dir().join(format!("mxcert-spool-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let batch = |n: u8| {
            let mut b = Batch {
                id: format!("b{n}"),
                ..Batch::default()
            };
            b.sessions.rows = u64::from(n);
            b.sessions.data = vec![n; usize::from(n) * 10];
            b.findings.rows = 1;
            b.findings.data = vec![0xff, n];
            b
        };
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        for n in 1..=3 {
            assert!(s.push(&batch(n)).unwrap());
        }
        fs::write(dir.join("00000000000000000009.tmp"), b"half").unwrap();
        drop(s);
        let mut s = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(s.len(), 3, "stale .tmp ignored");
        for n in 1..=3 {
            assert_eq!(s.oldest(), Some(batch(n)));
            s.pop();
        }
        assert!(s.is_empty());
        assert!(s.push(&batch(4)).unwrap());
        let mut small = Spool::open(&dir, 10).unwrap();
        assert!(!small.push(&batch(5)).unwrap(), "over the bound: refused");
        let _ = fs::remove_dir_all(&dir);
    }
}
