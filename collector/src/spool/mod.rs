//! Bounded on-disk spool for encoded Kafka messages: opaque byte records (up to
//! `segment_bytes − 36` bytes each) that wait here while Kafka is unreachable or slow.
//!
//! Guarantees:
//! - **Durable and ordered.** Records are appended to segment files and read back oldest first.
//!   With `fsync = "always"` an `Ok` from [`Spool::append`] means the record is on disk.
//! - **Removed only after acknowledgement.** [`Spool::read_next`] does not remove anything;
//!   [`Spool::ack`] moves the persisted ack cursor and deletes segment files it has passed.
//!   Records that were read but not acknowledged are returned again after [`Spool::rewind`] or
//!   a restart (at-least-once: a record delivered just before a crash can come twice).
//! - **Bounded, never lossy by choice.** An append that would take the segment files past
//!   `max_bytes` fails with [`SpoolError::Full`]; the caller stops reading its source
//!   (backpressure) and retries after acknowledgements freed space. Nothing is dropped to make
//!   room.
//! - **Damage is reported, not fatal.** Every record carries CRC-32 checksums of its frame
//!   header and payload (format in [`format`](mod@format)). [`Spool::open`] scans the un-acknowledged data:
//!   - a write cut short at the end of the newest segment (crash, power loss) is truncated and
//!     counted in [`SpoolStats::torn_tail_bytes`];
//!   - a record whose payload checksum fails is skipped, counted in
//!     [`SpoolStats::corrupt_records`] and logged at error level; the records around it come
//!     back;
//!   - a frame header whose checksum fails (its length cannot be trusted) makes the rest of
//!     that segment unreadable: reading continues with the next segment and the skipped bytes
//!     are counted in [`SpoolStats::lost_bytes`] (in the newest segment they are truncated so
//!     appends continue on a clean frame boundary);
//!   - a damaged segment header makes that whole segment unreadable (counted in `lost_bytes`);
//!   - a damaged ack cursor file is not trusted: reading restarts at the oldest segment still on
//!     disk, which replays acknowledged records (duplicates) but never skips un-acknowledged
//!     ones, because segments are deleted only after a cursor past them was made durable.
//!     Counted in [`SpoolStats::cursor_resets`].
//!   - A segment or cursor of another format version (a newer collector) is an error,
//!     [`SpoolError::UnsupportedVersion`]: the spool does not guess at data it cannot read.
//!
//!   Damage that appears while the spool is open is handled the same way when
//!   [`Spool::read_next`] meets it (a damaged active segment is closed, so new records go to a
//!   fresh one). Each damaged place is counted once, however often it is re-read.
//!
//! Layout of the directory: `spool-<16 hex seq>.seg` segment files, appended to until
//! `segment_bytes`, and `spool.cursor`, the position up to which every record is acknowledged,
//! replaced atomically (temp file, fsync, rename, fsync of the directory). Segment files are
//! deleted once the cursor is past them (cursor first, then unlink, then fsync of the
//! directory), so a crash in between only leaves an acknowledged segment that the next open
//! deletes. Opening scans every un-acknowledged record once (about one read of the spool).
//!
//! The API is synchronous (`&mut self`, blocking file I/O) and [`Spool`] is `Send`: use it from
//! a dedicated thread, or from tokio inside `spawn_blocking` (e.g. behind a
//! `std::sync::Mutex`). One `Spool` per directory; nothing guards against two processes.
//!
//! Why not a crate: `yaque` has no payload checksum and panics on a damaged header by design;
//! `queue-file` (a port of Square's Tape) is a single ring-buffer file without checksums or a
//! size bound, relying on atomic sector writes; the young write-ahead-log crates (`walogs`,
//! `wal-db`, `open-wal`) treat damage in the middle of the log as fatal on open and have no
//! acknowledgement cursor or byte bound. The requirements here (per-record checksums that skip
//! and count damage, a byte bound with backpressure, acknowledgement after delivery) were the
//! lesson of Vector's disk-buffer corruption reports (vectordotdev/vector#17644, #18130,
//! #16231, PR #25570) and Fluent Bit's chunk corruption on power loss (fluent/fluent-bit#6995).

mod config;
pub mod format;
mod read;
mod recover;

#[cfg(test)]
mod model_tests;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::{
    FsyncPolicy, SpoolConfig, SpoolConfigError, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
};
use format::{Position, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The configuration is out of range.
    #[error(transparent)]
    Config(#[from] SpoolConfigError),
    /// A file operation failed.
    #[error("spool I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The append would take the segment files past `max_bytes`: read, deliver and acknowledge
    /// records, then retry. Nothing was written.
    #[error("spool full: {needed} bytes needed, bound is {max_bytes} ({disk_bytes} in use)")]
    Full {
        /// Current size of the segment files, bytes.
        disk_bytes: u64,
        /// Size the segment files would have after the append, bytes.
        needed: u64,
        /// The configured bound, bytes.
        max_bytes: u64,
    },
    /// The record is larger than a segment can hold (`segment_bytes − 36`). Nothing was
    /// written.
    #[error("record of {len} bytes exceeds the spool's largest record ({max} bytes)")]
    RecordTooLarge {
        /// The record's size, bytes.
        len: usize,
        /// The largest accepted size, bytes.
        max: u64,
    },
    /// A segment or the cursor file was written by another format version.
    #[error(
        "{path} has spool format version {version}; this collector reads version {}",
        format::FORMAT_VERSION
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        version: u32,
    },
    /// [`Spool::ack`] was given an ID that this `Spool` has not returned from
    /// [`Spool::read_next`] (IDs do not survive a reopen).
    #[error("cannot acknowledge {id:?}: {reason}")]
    UnknownRecord {
        /// The ID given.
        id: RecordId,
        /// Why it is rejected.
        reason: &'static str,
    },
}

/// Identifies one spooled record. Ordered like the records: a later record has a greater ID.
/// Valid only for the [`Spool`] that returned it (a reopen numbers records afresh).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    seq: u64,
    end: u64,
    index: u64,
}

impl RecordId {
    /// Sequence number of the segment holding the record.
    pub fn segment(&self) -> u64 {
        self.seq
    }

    /// Byte offset just past the record in its segment file.
    pub fn end_offset(&self) -> u64 {
        self.end
    }
}

/// Damage found since the spool was opened (for metrics). Each damaged place is counted once,
/// however often it is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records skipped because their payload checksum failed.
    pub corrupt_records: u64,
    /// Bytes skipped because they could not be framed (damaged frame or segment header, or a
    /// sealed segment ending inside a record).
    pub lost_bytes: u64,
    /// Bytes of incomplete writes truncated from the end of the newest segment on open.
    pub torn_tail_bytes: u64,
    /// Times the cursor file was unreadable and reading restarted at the oldest segment.
    pub cursor_resets: u64,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    /// Bytes of the file that hold segment data (header and whole frames).
    len: u64,
    /// The segment header is intact.
    readable: bool,
}

/// The spool over one directory. See the module documentation.
pub struct Spool {
    dir: PathBuf,
    cfg: SpoolConfig,
    /// Every segment on disk, by sequence number; the last one is `active`.
    segments: BTreeMap<u64, Segment>,
    active: u64,
    /// The active segment, opened for appending.
    writer: File,
    /// Set when a failed write could not be undone or a sync failed: the next append starts a
    /// new segment.
    write_broken: bool,
    unsynced: bool,
    last_sync: Instant,
    /// Cached read handle.
    reader: Option<(u64, Arc<File>)>,
    /// Everything before it is acknowledged.
    cursor: Position,
    /// The cursor as last written to the cursor file.
    stored_cursor: Option<Position>,
    /// Ordinal of the first un-acknowledged record (ordinals start at 0 on open).
    ack_index: u64,
    /// Where the next read starts.
    read_pos: Position,
    /// `[clear_from, read_pos)` has been read and holds no valid record.
    clear_from: Position,
    /// Ordinal of the record at `read_pos`.
    read_index: u64,
    /// One past the greatest ordinal ever returned by `read_next`.
    read_hwm_index: u64,
    /// Damage before this position has been counted.
    verified: Position,
    /// Un-acknowledged valid records.
    records: u64,
    stats: SpoolStats,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates segment `seq` with its header, synced with its directory entry; returns it opened
/// for appending.
fn create_segment(dir: &Path, seq: u64) -> Result<File, SpoolError> {
    let path = dir.join(format::segment_file_name(seq));
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(&format::encode_segment_header(seq))
        .and_then(|()| f.sync_all())
        .map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok(f)
}

impl Spool {
    /// Appends one record. `Err(Full)` when the segment files would pass `max_bytes` (nothing
    /// written; retry after [`ack`](Self::ack)); `Err(RecordTooLarge)` when `record` exceeds
    /// `segment_bytes − 36` bytes. An `Err(Io)` from the sync after the write leaves it open
    /// whether the record is spooled: retrying it gives at most a duplicate.
    pub fn append(&mut self, record: &[u8]) -> Result<RecordId, SpoolError> {
        let max = self.cfg.max_record_bytes();
        if record.len() as u64 > max {
            return Err(SpoolError::RecordTooLarge {
                len: record.len(),
                max,
            });
        }
        let frame = FRAME_HEADER_LEN + record.len() as u64;
        let end = self.write_end();
        let fully_acked = self.cursor == self.end_position();
        let disk = self.disk_bytes();
        // A new segment costs a header; it gives back the old one when everything in it is
        // acknowledged (the cursor then moves past it and it is deleted).
        let after = |roll: bool| {
            let reclaimed = if roll && fully_acked { end } else { 0 };
            disk - reclaimed + frame + if roll { SEGMENT_HEADER_LEN } else { 0 }
        };
        let roll = self.write_broken || end + frame > self.cfg.segment_bytes;
        let needed = after(roll);
        if needed > self.cfg.max_bytes {
            return Err(SpoolError::Full {
                disk_bytes: disk,
                needed,
                max_bytes: self.cfg.max_bytes,
            });
        }
        if roll {
            self.roll()?;
        }
        let end = self.write_end();
        let header = format::encode_frame_header(record);
        let written = self
            .writer
            .write_all(&header)
            .and_then(|()| self.writer.write_all(record));
        if let Err(source) = written {
            // Cut the partial frame off so the next append starts on a frame boundary.
            if self.writer.set_len(end).is_err() {
                self.write_broken = true;
            }
            return Err(SpoolError::Io {
                path: self.segment_path(self.active),
                source,
            });
        }
        let id = RecordId {
            seq: self.active,
            end: end + frame,
            index: self.ack_index + self.records,
        };
        self.set_write_end(end + frame);
        self.records += 1;
        self.unsynced = true;
        let due = match self.cfg.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::IntervalMs(ms) => self.last_sync.elapsed() >= Duration::from_millis(ms),
        };
        if due {
            self.sync()?;
        }
        Ok(id)
    }

    /// Forces appended records to disk (`fdatasync` of the active segment); a no-op when
    /// nothing was appended since the last sync.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if !self.unsynced {
            return Ok(());
        }
        if let Err(source) = self.writer.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: do not append
            // to this file again.
            self.write_broken = true;
            return Err(SpoolError::Io {
                path: self.segment_path(self.active),
                source,
            });
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Acknowledges every record up to and including `upto` (delivered): persists the cursor
    /// and deletes segment files that are wholly acknowledged. Acknowledging an already
    /// acknowledged ID is a no-op; an ID not returned by this spool's `read_next` is
    /// [`SpoolError::UnknownRecord`].
    pub fn ack(&mut self, upto: RecordId) -> Result<(), SpoolError> {
        let pos = Position {
            seq: upto.seq,
            offset: upto.end,
        };
        if pos <= self.cursor {
            return Ok(());
        }
        if upto.index >= self.read_hwm_index {
            return Err(SpoolError::UnknownRecord {
                id: upto,
                reason: "not returned by read_next yet",
            });
        }
        let known = upto.index >= self.ack_index
            && self
                .segments
                .get(&upto.seq)
                .is_some_and(|s| upto.end <= s.len);
        if !known {
            return Err(SpoolError::UnknownRecord {
                id: upto,
                reason: "not a record of this spool",
            });
        }
        let acked = upto.index + 1 - self.ack_index;
        self.commit_cursor(pos, upto.index + 1)?;
        self.records = self.records.saturating_sub(acked);
        Ok(())
    }

    /// Delivery failed: the next [`read_next`](Self::read_next) starts again at the oldest
    /// un-acknowledged record.
    pub fn rewind(&mut self) {
        self.read_pos = self.cursor;
        self.clear_from = self.cursor;
        self.read_index = self.ack_index;
    }

    /// Un-acknowledged bytes: frame headers and payloads after the ack cursor (damaged regions
    /// included until they are walked over), bytes.
    pub fn bytes(&self) -> u64 {
        self.segments
            .range(self.cursor.seq..)
            .map(|(&seq, s)| {
                let start = if seq == self.cursor.seq {
                    self.cursor.offset
                } else {
                    SEGMENT_HEADER_LEN
                };
                s.len.saturating_sub(start)
            })
            .sum()
    }

    /// Un-acknowledged intact records.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// True when nothing after the ack cursor remains: every record acknowledged, and any
    /// damaged bytes walked over by [`read_next`](Self::read_next).
    pub fn is_empty(&self) -> bool {
        self.cursor == self.end_position()
    }

    /// Total size of the segment files, bytes: what `max_bytes` bounds.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.len).sum()
    }

    /// Damage counters since open.
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format::segment_file_name(seq))
    }

    fn write_end(&self) -> u64 {
        self.segments
            .get(&self.active)
            .map_or(SEGMENT_HEADER_LEN, |s| s.len)
    }

    fn set_write_end(&mut self, end: u64) {
        if let Some(s) = self.segments.get_mut(&self.active) {
            s.len = end;
        }
    }

    fn end_position(&self) -> Position {
        Position {
            seq: self.active,
            offset: self.write_end(),
        }
    }

    fn next_segment_start(&self, seq: u64) -> Option<Position> {
        self.segments
            .range(seq.saturating_add(1)..)
            .next()
            .map(|(&s, _)| Position::segment_start(s))
    }

    fn read_file(&mut self, seq: u64) -> Result<Arc<File>, SpoolError> {
        if let Some((s, f)) = &self.reader {
            if *s == seq {
                return Ok(Arc::clone(f));
            }
        }
        let path = self.segment_path(seq);
        let f = Arc::new(File::open(&path).map_err(io_err(&path))?);
        self.reader = Some((seq, Arc::clone(&f)));
        Ok(f)
    }

    /// Closes the active segment and starts the next one.
    fn roll(&mut self) -> Result<(), SpoolError> {
        if let Err(e) = self.sync() {
            if !self.write_broken {
                return Err(e);
            }
        }
        let seq = self.active + 1;
        self.writer = create_segment(&self.dir, seq)?;
        self.segments.insert(
            seq,
            Segment {
                len: SEGMENT_HEADER_LEN,
                readable: true,
            },
        );
        self.active = seq;
        self.write_broken = false;
        self.unsynced = false;
        self.commit_cursor(self.cursor, self.ack_index)
    }

    /// Where the cursor can go from `c` without passing a valid un-acknowledged record: over
    /// stretches the reader found empty of records, and past the end of closed segments.
    fn settle(&self, mut c: Position) -> Position {
        loop {
            if c >= self.clear_from && c < self.read_pos {
                c = self.read_pos;
            }
            if c.seq >= self.active {
                return c;
            }
            let inside = self
                .segments
                .get(&c.seq)
                .is_some_and(|s| s.readable && c.offset < s.len);
            if inside {
                return c;
            }
            match self.next_segment_start(c.seq) {
                Some(next) => c = next,
                None => return c,
            }
        }
    }

    /// Moves the ack cursor to `target` (settled), persisting it first, then deletes the
    /// segments before it.
    fn commit_cursor(&mut self, target: Position, ack_index: u64) -> Result<(), SpoolError> {
        let new = self.settle(target);
        if self.stored_cursor != Some(new) {
            self.store_cursor(new)?;
        }
        self.cursor = new;
        self.ack_index = ack_index;
        if self.read_pos < new {
            self.read_pos = new;
            self.clear_from = new;
            self.read_index = ack_index;
        }
        self.delete_acked_segments()
    }

    fn store_cursor(&mut self, pos: Position) -> Result<(), SpoolError> {
        let tmp = self.dir.join(format::CURSOR_TMP_FILE);
        let path = self.dir.join(format::CURSOR_FILE);
        File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&format::encode_cursor(pos))?;
                f.sync_all()
            })
            .map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.stored_cursor = Some(pos);
        Ok(())
    }

    fn delete_acked_segments(&mut self) -> Result<(), SpoolError> {
        let done: Vec<u64> = self
            .segments
            .range(..self.cursor.seq)
            .map(|(&s, _)| s)
            .collect();
        if done.is_empty() {
            return Ok(());
        }
        for seq in done {
            if self.reader.as_ref().is_some_and(|(s, _)| *s == seq) {
                self.reader = None;
            }
            let path = self.segment_path(seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(SpoolError::Io { path, source }),
            }
            self.segments.remove(&seq);
        }
        sync_dir(&self.dir)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "spool: final sync failed");
        }
    }
}
