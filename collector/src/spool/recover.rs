//! [`Spool::open`]: reads the cursor, checks every segment header, scans the un-acknowledged
//! records, and repairs what a crash can leave behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use super::format::{
    self, CursorCheck, FrameHead, Position, SegmentHeaderCheck, FRAME_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use super::{
    create_segment, io_err, sync_dir, Segment, Spool, SpoolConfig, SpoolError, SpoolStats,
};

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and recovers it:
    /// - segments before the cursor (acknowledged, left by a crash before their deletion) are
    ///   deleted;
    /// - every record after the cursor is checked; damage is skipped and counted (see the
    ///   module documentation), an incomplete write at the end of the newest segment is
    ///   truncated;
    /// - the read position starts at the ack cursor.
    ///
    /// Errors: [`SpoolError::Config`] for an invalid `cfg`, [`SpoolError::Io`],
    /// [`SpoolError::UnsupportedVersion`] for files of another format version. `cfg.dir` is
    /// not consulted: `dir` is the directory used.
    pub fn open(dir: &Path, cfg: &SpoolConfig) -> Result<Spool, SpoolError> {
        cfg.validate()?;
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = dir.join(format::CURSOR_TMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(SpoolError::Io { path: tmp, source }),
        }
        let mut seqs = list_segments(dir)?;
        let mut stats = SpoolStats::default();
        let (mut cursor, stored_cursor) = load_cursor(dir, &seqs, &mut stats)?;

        // Segments before the cursor are acknowledged.
        let acked: Vec<u64> = seqs.range(..cursor.seq).copied().collect();
        for &seq in &acked {
            let path = dir.join(format::segment_file_name(seq));
            fs::remove_file(&path).map_err(io_err(&path))?;
            seqs.remove(&seq);
        }
        if !acked.is_empty() {
            sync_dir(dir)?;
        }
        cursor.offset = cursor.offset.max(SEGMENT_HEADER_LEN);
        if let Some(&first) = seqs.first() {
            if first != cursor.seq {
                tracing::error!(dir = %dir.display(), missing = cursor.seq, resume = first,
                    "spool: the segment holding the ack cursor is missing; resuming at the next one");
                cursor = Position::segment_start(first);
            }
        }

        let mut segments = BTreeMap::new();
        for &seq in &seqs {
            segments.insert(seq, check_segment(dir, seq)?);
        }
        let active = match segments.last_key_value().map(|(&s, &seg)| (s, seg)) {
            None => {
                create_segment(dir, cursor.seq)?;
                segments.insert(cursor.seq, intact(SEGMENT_HEADER_LEN));
                cursor.seq
            }
            Some((seq, seg)) if seg.readable => seq,
            Some((seq, seg)) if seg.len < SEGMENT_HEADER_LEN => {
                // Created, but the process stopped before its header was complete.
                stats.torn_tail_bytes += seg.len;
                tracing::warn!(dir = %dir.display(), segment = seq, bytes = seg.len,
                    "spool: newest segment has an incomplete header; rewritten");
                let path = dir.join(format::segment_file_name(seq));
                fs::remove_file(&path).map_err(io_err(&path))?;
                create_segment(dir, seq)?;
                segments.insert(seq, intact(SEGMENT_HEADER_LEN));
                seq
            }
            Some((seq, _)) => {
                // Damaged header over data: leave it (reported below) and write elsewhere.
                create_segment(dir, seq + 1)?;
                segments.insert(seq + 1, intact(SEGMENT_HEADER_LEN));
                seq + 1
            }
        };

        let mut records = 0u64;
        for (&seq, seg) in segments.iter_mut() {
            let start = if seq == cursor.seq {
                cursor.offset
            } else {
                SEGMENT_HEADER_LEN
            };
            if start >= seg.len {
                continue;
            }
            if !seg.readable {
                stats.lost_bytes += seg.len - start;
                tracing::error!(dir = %dir.display(), segment = seq, bytes = seg.len - start,
                    "spool: segment header is damaged; segment skipped");
                continue;
            }
            let scan = scan_segment(dir, seq, start, seg.len, seq == active, &mut stats)?;
            records += scan.records;
            if let Some(cut) = scan.truncate_at {
                let path = dir.join(format::segment_file_name(seq));
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| {
                        f.set_len(cut)?;
                        f.sync_all()
                    })
                    .map_err(io_err(&path))?;
                seg.len = cut;
            }
        }

        let write_end = segments.get(&active).map_or(SEGMENT_HEADER_LEN, |s| s.len);
        let path = dir.join(format::segment_file_name(active));
        let writer = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let verified = Position {
            seq: active,
            offset: write_end,
        };
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            segments,
            active,
            writer,
            write_broken: false,
            unsynced: false,
            last_sync: Instant::now(),
            reader: None,
            cursor,
            stored_cursor,
            ack_index: 0,
            read_pos: cursor,
            clear_from: cursor,
            read_index: 0,
            read_hwm_index: 0,
            verified,
            records,
            stats,
        };
        if cursor > verified {
            // Acknowledged records that never reached the disk (synced by interval): appending
            // here would put new records behind the cursor. Continue in a new segment.
            tracing::warn!(dir = %dir.display(), segment = cursor.seq, cursor = cursor.offset,
                end = write_end, "spool: ack cursor is past the end of the newest segment; starting a new one");
            spool.roll()?;
        }
        spool.commit_cursor(spool.cursor, 0)?;
        Ok(spool)
    }
}

fn intact(len: u64) -> Segment {
    Segment {
        len,
        readable: true,
    }
}

fn list_segments(dir: &Path) -> Result<BTreeSet<u64>, SpoolError> {
    let mut seqs = BTreeSet::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        match name.to_str().and_then(format::parse_segment_file_name) {
            Some(seq) => {
                seqs.insert(seq);
            }
            None if name == format::CURSOR_FILE => {}
            None => tracing::debug!(dir = %dir.display(), file = ?name, "spool: ignoring file"),
        }
    }
    Ok(seqs)
}

/// The stored cursor (and what the file holds, to know whether it must be rewritten); the
/// oldest segment's start when the file is missing or unreadable.
fn load_cursor(
    dir: &Path,
    seqs: &BTreeSet<u64>,
    stats: &mut SpoolStats,
) -> Result<(Position, Option<Position>), SpoolError> {
    let path = dir.join(format::CURSOR_FILE);
    let oldest = Position::segment_start(seqs.first().copied().unwrap_or(0));
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !seqs.is_empty() {
                tracing::warn!(dir = %dir.display(),
                    "spool: no ack cursor; reading from the oldest segment");
            }
            return Ok((oldest, None));
        }
        Err(source) => return Err(SpoolError::Io { path, source }),
    };
    match format::decode_cursor(&bytes) {
        CursorCheck::Ok(pos) => Ok((pos, Some(pos))),
        CursorCheck::Unsupported(version) => Err(SpoolError::UnsupportedVersion { path, version }),
        CursorCheck::Garbage(why) => {
            stats.cursor_resets += 1;
            tracing::error!(dir = %dir.display(), problem = why,
                "spool: ack cursor file is damaged; replaying from the oldest segment (duplicates possible)");
            Ok((oldest, None))
        }
    }
}

/// Length and header state of segment `seq`.
fn check_segment(dir: &Path, seq: u64) -> Result<Segment, SpoolError> {
    let path = dir.join(format::segment_file_name(seq));
    let file = File::open(&path).map_err(io_err(&path))?;
    let len = file.metadata().map_err(io_err(&path))?.len();
    let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
    let n = len.min(SEGMENT_HEADER_LEN) as usize;
    file.read_exact_at(&mut head[..n], 0)
        .map_err(io_err(&path))?;
    match format::check_segment_header(&head[..n], seq) {
        SegmentHeaderCheck::Ok => Ok(intact(len)),
        SegmentHeaderCheck::Unsupported(version) => {
            Err(SpoolError::UnsupportedVersion { path, version })
        }
        SegmentHeaderCheck::Short | SegmentHeaderCheck::Corrupt(_) => Ok(Segment {
            len,
            readable: false,
        }),
    }
}

struct Scan {
    records: u64,
    /// Where the newest segment's data must be cut (incomplete or unframeable tail).
    truncate_at: Option<u64>,
}

/// Checks the frames of segment `seq` from `start` to `len`, counting intact records and
/// reporting damage into `stats`.
fn scan_segment(
    dir: &Path,
    seq: u64,
    start: u64,
    len: u64,
    newest: bool,
    stats: &mut SpoolStats,
) -> Result<Scan, SpoolError> {
    let path = dir.join(format::segment_file_name(seq));
    let file = File::open(&path).map_err(io_err(&path))?;
    let mut scan = Scan {
        records: 0,
        truncate_at: None,
    };
    let mut buf = Vec::new();
    let mut pos = start;
    loop {
        match format::read_frame_head(&file, pos, len).map_err(io_err(&path))? {
            FrameHead::End => break,
            FrameHead::Record { len: n, crc } => {
                if format::read_payload(&file, pos, n, crc, &mut buf).map_err(io_err(&path))? {
                    scan.records += 1;
                } else {
                    stats.corrupt_records += 1;
                    tracing::error!(dir = %dir.display(), segment = seq, offset = pos, len = n,
                        "spool: record payload checksum mismatch; record skipped");
                }
                pos += FRAME_HEADER_LEN + u64::from(n);
            }
            FrameHead::Incomplete if newest => {
                stats.torn_tail_bytes += len - pos;
                tracing::warn!(dir = %dir.display(), segment = seq, offset = pos, bytes = len - pos,
                    "spool: incomplete write at the end of the newest segment; truncated");
                scan.truncate_at = Some(pos);
                break;
            }
            head => {
                let why = if head == FrameHead::Unframeable {
                    "frame header checksum mismatch"
                } else {
                    "segment ends inside a record"
                };
                stats.lost_bytes += len - pos;
                tracing::error!(dir = %dir.display(), segment = seq, offset = pos, bytes = len - pos,
                    "spool: {why}; the rest of the segment is skipped");
                if newest {
                    scan.truncate_at = Some(pos);
                }
                break;
            }
        }
    }
    Ok(scan)
}
