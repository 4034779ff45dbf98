//! [`AuditStore`]: the append-only writer, its recovery on open, and the in-memory state
//! rebuilt from disk (event IDs already stored, per-segment statistics for queries).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sightline_model::audit::AuditEvent;

use super::head::{remove_stale_tmp, sync_dir, write_head, Head};
use super::record::{encode_line, ChainHash};
use super::verify::{segment_name, walk, SegmentFile, Visited};
use super::{io_err, AuditError, TopicPartition};

/// Name of the lock file that keeps a second writer out.
pub const LOCK_FILE: &str = "LOCK";

/// Audit store settings (the `[audit]` table of the aggregator config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A segment is closed and a new one started once it reaches this size, in bytes
    /// (default 64 MiB; at least 4 KiB).
    pub max_segment_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            max_segment_bytes: 64 << 20,
        }
    }
}

impl AuditConfig {
    /// Smallest accepted `max_segment_bytes`.
    pub const MIN_SEGMENT_BYTES: u64 = 4096;

    /// Checks the settings.
    ///
    /// Errors: [`AuditError::Config`] naming the bad key.
    pub fn validate(&self) -> Result<(), AuditError> {
        if self.max_segment_bytes < Self::MIN_SEGMENT_BYTES {
            return Err(AuditError::Config(format!(
                "audit.max_segment_bytes = {} is below the minimum of {}",
                self.max_segment_bytes,
                Self::MIN_SEGMENT_BYTES
            )));
        }
        Ok(())
    }
}

/// What [`AuditStore::append_batch`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Records written.
    pub appended: usize,
    /// Events skipped because their `event_id` was already stored (or repeated in the
    /// batch).
    pub duplicates: usize,
    /// Committed sequence number after the call.
    pub head_seq: u64,
    /// Committed hash after the call.
    pub head_hash: ChainHash,
}

/// Per-segment facts kept in memory (for appends and to skip segments in queries).
#[derive(Clone, Debug)]
pub(crate) struct SegmentInfo {
    pub file: SegmentFile,
    /// Committed bytes.
    pub bytes: u64,
    pub records: u64,
    /// Smallest and largest `event.time_ns` in the segment (`u64::MAX`, 0 when empty).
    pub min_time_ns: u64,
    pub max_time_ns: u64,
}

impl SegmentInfo {
    fn new(file: SegmentFile) -> Self {
        SegmentInfo {
            file,
            bytes: 0,
            records: 0,
            min_time_ns: u64::MAX,
            max_time_ns: 0,
        }
    }

    fn add(&mut self, time_ns: u64, end: u64) {
        self.records += 1;
        self.bytes = end;
        self.min_time_ns = self.min_time_ns.min(time_ns);
        self.max_time_ns = self.max_time_ns.max(time_ns);
    }
}

struct Inner {
    dir: PathBuf,
    config: AuditConfig,
    head: Head,
    seen: HashSet<u128>,
    segments: Vec<SegmentInfo>,
    active: Option<File>,
    poisoned: Option<String>,
    _lock: File,
}

/// The tamper-evident, append-only audit store in one directory. Cheap to clone (a shared
/// handle); all methods take `&self` and serialize on an internal mutex.
///
/// Only one process may have a store open for writing (a `LOCK` file, `flock`ed);
/// [`super::verify()`] needs no lock.
#[derive(Clone)]
pub struct AuditStore {
    inner: Arc<Mutex<Inner>>,
    dir: Arc<PathBuf>,
}

impl std::fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStore")
            .field("dir", &self.dir)
            .finish()
    }
}

impl AuditStore {
    /// Opens (creating it if needed) the store in `dir`, e.g. `<data_dir>/audit`.
    ///
    /// Walks and verifies the whole chain, rebuilding the set of stored event IDs. Crash
    /// repair, each with a `tracing` warning: an incomplete last record (a write cut short)
    /// is truncated away; complete records written after the last head commit are kept and
    /// the head advanced over them (their consumer positions were not committed, so the
    /// source redelivers them and de-duplication skips them).
    ///
    /// Errors: [`AuditError::Config`], [`AuditError::Io`], [`AuditError::Locked`] (another
    /// process has it open), [`AuditError::Corrupt`] (the chain does not verify: run
    /// [`super::verify()`] for the details; the store is not modified).
    pub fn open(dir: impl AsRef<Path>, config: AuditConfig) -> Result<Self, AuditError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(AuditError::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path, e)),
        }
        remove_stale_tmp(&dir);

        let mut seen = HashSet::new();
        let mut stats: Vec<SegmentInfo> = Vec::new();
        let w = walk(&dir, &mut |v: Visited<'_>| {
            seen.insert(v.payload.event.event_id.0);
            if stats.len() <= v.segment {
                stats.resize_with(v.segment + 1, || SegmentInfo::new(SegmentFile::default()));
            }
            stats[v.segment].add(v.payload.event.time_ns, v.end);
        })?;
        if let Some(p) = w.problem {
            return Err(AuditError::Corrupt(Box::new(p)));
        }
        let mut segments: Vec<SegmentInfo> = w
            .segments
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut s = stats
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| SegmentInfo::new(f.clone()));
                s.file = f.clone();
                s.bytes = w.segment_ends.get(i).copied().unwrap_or(0);
                s
            })
            .collect();
        if let Some((i, tail)) = &w.torn_tail {
            tracing::warn!(
                file = %tail.file, offset = tail.offset, bytes = tail.bytes,
                "audit store: incomplete last record (interrupted write); truncating it"
            );
            let path = &segments[*i].file.path;
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io_err(path, e))?;
            f.set_len(tail.offset)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err(path, e))?;
        }
        // Empty segments are only valid as the place of the next record.
        let next_seq = w.last_seq + 1;
        segments.retain(|s| {
            if s.records == 0 && s.file.first_seq != next_seq {
                tracing::warn!(file = %s.file.name, "audit store: removing an empty, misplaced segment");
                let _ = fs::remove_file(&s.file.path);
                return false;
            }
            true
        });
        let fresh = w.head.is_none();
        let mut head = w.head.clone().unwrap_or_default();
        if w.last_seq > head.seq || fresh {
            if w.last_seq > head.seq {
                tracing::warn!(
                    head_seq = head.seq,
                    last_seq = w.last_seq,
                    "audit store: records written after the last head commit; keeping them"
                );
            }
            head.seq = w.last_seq;
            head.hash = w.last_hash;
            if let Some(s) = segments.iter().rev().find(|s| s.records > 0) {
                head.segment = Some(s.file.name.clone());
                head.segment_bytes = s.bytes;
            }
            write_head(&dir, &head)?;
        }
        let active = match segments.last() {
            Some(s) => Some(
                OpenOptions::new()
                    .append(true)
                    .open(&s.file.path)
                    .map_err(|e| io_err(&s.file.path, e))?,
            ),
            None => None,
        };
        Ok(AuditStore {
            dir: Arc::new(dir.clone()),
            inner: Arc::new(Mutex::new(Inner {
                dir,
                config,
                head,
                seen,
                segments,
                active,
                poisoned: None,
                _lock: lock,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The committed head: sequence number of the last record (0 when empty) and its hash.
    pub fn head(&self) -> (u64, ChainHash) {
        let g = self.lock();
        (g.head.seq, g.head.hash)
    }

    /// The committed consumer positions: next Kafka offset to read, per topic partition.
    /// Seek to these on partition assignment to resume exactly after the stored records.
    pub fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.lock().head.positions.clone()
    }

    /// Whether an event with this ID is stored.
    pub fn contains(&self, event_id: sightline_model::event::EventId) -> bool {
        self.lock().seen.contains(&event_id.0)
    }

    /// Appends one event (no position change). See [`AuditStore::append_batch`].
    pub fn append(&self, event: AuditEvent) -> Result<AppendOutcome, AuditError> {
        self.append_batch(std::slice::from_ref(&event), &BTreeMap::new())
    }

    /// Appends `events` in order, skipping those whose `event_id` is already stored (or
    /// repeats within the batch), and commits `positions` (merged into the stored ones)
    /// atomically with them: records are fsynced, then `head.json` is replaced atomically.
    /// After a crash either both the records and the positions are committed, or the
    /// positions are the old ones (and the redelivered events are skipped as duplicates).
    ///
    /// Errors: [`AuditError::InvalidPosition`] (a negative offset; nothing written),
    /// [`AuditError::Io`] (the partial write is rolled back and the store stays usable),
    /// [`AuditError::Poisoned`] (an earlier roll-back failed: reopen the store).
    pub fn append_batch(
        &self,
        events: &[AuditEvent],
        positions: &BTreeMap<TopicPartition, i64>,
    ) -> Result<AppendOutcome, AuditError> {
        let mut g = self.lock();
        if let Some(why) = &g.poisoned {
            return Err(AuditError::Poisoned(why.clone()));
        }
        if let Some(((topic, partition), offset)) = positions.iter().find(|(_, o)| **o < 0) {
            return Err(AuditError::InvalidPosition {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
            });
        }
        let mut batch_ids = HashSet::new();
        let fresh: Vec<&AuditEvent> = events
            .iter()
            .filter(|e| !g.seen.contains(&e.event_id.0) && batch_ids.insert(e.event_id.0))
            .collect();
        let duplicates = events.len() - fresh.len();
        let positions_change = positions
            .iter()
            .any(|(k, v)| g.head.positions.get(k) != Some(v));
        if fresh.is_empty() && !positions_change {
            return Ok(AppendOutcome {
                appended: 0,
                duplicates,
                head_seq: g.head.seq,
                head_hash: g.head.hash,
            });
        }
        let chunks = plan(&g, &fresh)?;
        let mut new_head = g.head.clone();
        new_head
            .positions
            .extend(positions.iter().map(|(k, v)| (k.clone(), *v)));
        if let Some(last) = chunks.last() {
            new_head.seq = last.last_seq;
            new_head.hash = last.last_hash;
            new_head.segment = Some(segment_name(last.first_seq_of_file));
            new_head.segment_bytes = last.base + last.buf.len() as u64;
        }
        let written = write_chunks(&mut g, &chunks)
            .and_then(|new_active| write_head(&g.dir, &new_head).map(|()| new_active));
        let new_active = match written {
            Ok(a) => a,
            Err(e) => {
                if let Err(re) = rollback(&g, &chunks) {
                    g.poisoned = Some(format!("{e}; roll-back failed: {re}"));
                }
                // The old active handle stays valid (append mode, truncated back).
                return Err(e);
            }
        };
        // Committed: update the in-memory state.
        for c in &chunks {
            if c.new_file {
                let path = g.dir.join(segment_name(c.first_seq_of_file));
                g.segments.push(SegmentInfo::new(SegmentFile {
                    name: segment_name(c.first_seq_of_file),
                    path,
                    first_seq: c.first_seq_of_file,
                }));
            }
            let seg = g
                .segments
                .last_mut()
                .expect("a segment exists after a write");
            for &(t, end) in &c.times {
                seg.add(t, c.base + end);
            }
        }
        for e in &fresh {
            g.seen.insert(e.event_id.0);
        }
        if let Some(f) = new_active {
            g.active = Some(f);
        }
        g.head = new_head;
        Ok(AppendOutcome {
            appended: fresh.len(),
            duplicates,
            head_seq: g.head.seq,
            head_hash: g.head.hash,
        })
    }

    /// The committed segments (file, committed bytes, time bounds) for readers: bytes up to
    /// `bytes` never change (append-only).
    pub(crate) fn snapshot(&self) -> Vec<SegmentInfo> {
        self.lock().segments.clone()
    }
}

/// Records bound for one segment file.
struct Chunk {
    /// First sequence number of the file (its name).
    first_seq_of_file: u64,
    new_file: bool,
    /// Committed bytes of the file before this chunk.
    base: u64,
    buf: Vec<u8>,
    /// (event time, end offset within `buf`) per record.
    times: Vec<(u64, u64)>,
    last_seq: u64,
    last_hash: ChainHash,
}

fn plan(g: &Inner, events: &[&AuditEvent]) -> Result<Vec<Chunk>, AuditError> {
    let max = g.config.max_segment_bytes;
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut seq = g.head.seq;
    let mut prev = g.head.hash;
    for ev in events {
        seq += 1;
        let start_new = match chunks.last() {
            Some(c) => c.base + c.buf.len() as u64 >= max,
            None => match g.segments.last() {
                None => true,
                Some(s) => s.bytes >= max && s.records > 0,
            },
        };
        if start_new {
            chunks.push(Chunk {
                first_seq_of_file: seq,
                new_file: true,
                base: 0,
                buf: Vec::new(),
                times: Vec::new(),
                last_seq: seq,
                last_hash: prev,
            });
        } else if chunks.is_empty() {
            let s = g.segments.last().expect("checked above");
            chunks.push(Chunk {
                first_seq_of_file: s.file.first_seq,
                new_file: false,
                base: s.bytes,
                buf: Vec::new(),
                times: Vec::new(),
                last_seq: seq,
                last_hash: prev,
            });
        }
        let (line, hash) = encode_line(seq, &prev, ev).map_err(AuditError::Encode)?;
        let c = chunks.last_mut().expect("pushed above");
        c.buf.extend_from_slice(&line);
        c.times.push((ev.time_ns, c.buf.len() as u64));
        c.last_seq = seq;
        c.last_hash = hash;
        prev = hash;
    }
    Ok(chunks)
}

/// Writes and fsyncs the chunks; returns the handle of a newly created last file.
fn write_chunks(g: &mut Inner, chunks: &[Chunk]) -> Result<Option<File>, AuditError> {
    let mut new_active = None;
    for c in chunks {
        let path = g.dir.join(segment_name(c.first_seq_of_file));
        if c.new_file {
            let mut f = OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_err(&path, e))?;
            f.write_all(&c.buf)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err(&path, e))?;
            sync_dir(&g.dir)?;
            new_active = Some(f);
        } else {
            let f = g.active.as_mut().ok_or_else(|| {
                io_err(
                    &path,
                    std::io::Error::other("no open handle on the active segment"),
                )
            })?;
            f.write_all(&c.buf)
                .and_then(|()| f.sync_data())
                .map_err(|e| io_err(&path, e))?;
        }
    }
    Ok(new_active)
}

/// Undoes a failed batch: truncates the appended segment back and removes new files.
fn rollback(g: &Inner, chunks: &[Chunk]) -> Result<(), AuditError> {
    for c in chunks {
        let path = g.dir.join(segment_name(c.first_seq_of_file));
        if c.new_file {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        } else if let Some(f) = &g.active {
            f.set_len(c.base)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err(&path, e))?;
        }
    }
    Ok(())
}
