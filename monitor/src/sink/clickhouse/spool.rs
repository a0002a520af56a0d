//! On-disk spool: batches that could not be inserted (server down or slow, queue full) wait
//! here as one JSON file each, named by a sequence number, and are replayed oldest first. The
//! directory survives a crash or restart: a new process replays what the last one left.
//!
//! A file is written to `*.tmp` and renamed, so a crash mid-write leaves no half batch to
//! replay (rename is atomic within a directory, POSIX rename(2)); stale `*.tmp` files are
//! removed on open. The total size is bounded; a batch that would exceed the bound is dropped
//! and counted by the caller.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Batch, ClickHouseError};

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
        let data = serde_json::to_vec(batch).map_err(|e| ClickHouseError::Spool {
            path: self.dir.clone(),
            source: e.into(),
        })?;
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
            match fs::read(&path)
                .ok()
                .and_then(|d| serde_json::from_slice::<Batch>(&d).ok())
            {
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
