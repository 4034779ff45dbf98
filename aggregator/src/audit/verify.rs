//! Chain verification: walks every segment in order, recomputes each record's hash and its
//! link to the previous one, then checks the tail against `head.json`. Shared by
//! [`verify`] (read-only, safe while a writer runs) and by [`super::AuditStore::open`]
//! (which also rebuilds its in-memory state from the walk).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::head::{read_head, Head, HEAD_FILE};
use super::record::{parse_payload, split_line, ChainHash, Payload, RECORD_VERSION};
use super::{io_err, AuditError};

/// Segment file names: `segment-<first sequence number, 20 digits>.jsonl`.
pub const SEGMENT_PREFIX: &str = "segment-";
/// Segment file extension.
pub const SEGMENT_SUFFIX: &str = ".jsonl";

/// The file name of the segment whose first record has sequence number `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}")
}

/// A segment file found in the store directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentFile {
    /// File name (no directory).
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// The first sequence number, from the name.
    pub first_seq: u64,
}

/// Lists the segment files of `dir`, ordered by first sequence number. Other files are
/// ignored.
///
/// Errors: [`AuditError::Io`].
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, AuditError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(num) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        else {
            continue;
        };
        let Ok(first_seq) = num.parse::<u64>() else {
            continue;
        };
        out.push(SegmentFile {
            path: entry.path(),
            name,
            first_seq,
        });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// What is wrong with the store, at the first place it goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A record's bytes changed: its hash does not match its content, or it no longer
    /// parses.
    Tampered,
    /// A line is not framed as a record (bytes inserted, a newline removed, …).
    Malformed,
    /// Records are missing: the next record found has a higher sequence number.
    Missing,
    /// Records are out of order or duplicated, or a record links to the wrong previous hash.
    Reordered,
    /// The store ends before the record `head.json` says was committed last.
    Truncated,
    /// The record at the head's sequence number has another hash than `head.json`.
    HeadMismatch,
    /// `head.json` is missing although records exist, or does not parse.
    HeadMissing,
    /// A record was written by a build with another record format.
    UnsupportedVersion,
}

/// The first problem found: which record, where, expected versus found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{kind:?} at record {seq} ({file}, byte {offset}): expected {expected}, found {found}")]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// Sequence number of the first affected record (the first missing one for gaps).
    pub seq: u64,
    /// File name in the store directory.
    pub file: String,
    /// Byte offset in `file` where the affected record starts (or would start).
    pub offset: u64,
    /// What the chain required there.
    pub expected: String,
    /// What is there.
    pub found: String,
}

/// An incomplete last line of the last segment (a write cut short by a crash). Not a
/// problem while it lies beyond the committed head: [`super::AuditStore::open`] truncates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TornTail {
    /// File name.
    pub file: String,
    /// Byte offset where the incomplete record starts.
    pub offset: u64,
    /// Its length in bytes.
    pub bytes: u64,
}

/// Result of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// `true` when the chain and the head check out (`problem` is `None`).
    pub ok: bool,
    /// Complete, chain-valid records walked before any problem.
    pub records: u64,
    /// Sequence number of the last chain-valid record.
    pub last_seq: u64,
    /// Hash of that record (64 hex; zeros when there is none).
    pub last_hash: String,
    /// Committed sequence number from `head.json` (0 when absent).
    pub head_seq: u64,
    /// Committed hash from `head.json`.
    pub head_hash: String,
    /// Segment files walked.
    pub segments: usize,
    /// Complete records beyond the head: written but not yet committed (a writer in
    /// flight, or a crash between the two; open keeps them).
    pub unsealed_records: u64,
    /// An incomplete last record beyond the head, if any.
    pub torn_tail: Option<TornTail>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl std::fmt::Display for VerifyReport {
    /// One line per fact, for the CLI: `OK: 60 records, head 60 <hash>, 3 segments` or
    /// `FAILED: <problem>`, then notes on unsealed records and a torn tail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.problem {
            None => write!(
                f,
                "OK: {} records, head {} {}, {} segments",
                self.records, self.head_seq, self.head_hash, self.segments
            )?,
            Some(p) => write!(f, "FAILED after {} valid records: {p}", self.records)?,
        }
        if self.unsealed_records > 0 {
            write!(
                f,
                "\nnote: {} records after the head (a write in progress, or a crash before \
                 its commit; the next open keeps them)",
                self.unsealed_records
            )?;
        }
        if let Some(t) = &self.torn_tail {
            write!(
                f,
                "\nnote: incomplete record of {} bytes at {} byte {} (an interrupted write; \
                 the next open truncates it)",
                t.bytes, t.file, t.offset
            )?;
        }
        Ok(())
    }
}

/// A chain-valid record met during a walk.
pub(crate) struct Visited<'a> {
    pub segment: usize,
    pub end: u64,
    pub payload: &'a Payload,
}

/// Everything a walk learned.
pub(crate) struct Walk {
    pub head: Option<Head>,
    pub segments: Vec<SegmentFile>,
    /// Bytes of complete records per segment.
    pub segment_ends: Vec<u64>,
    pub records: u64,
    pub last_seq: u64,
    pub last_hash: ChainHash,
    pub torn_tail: Option<(usize, TornTail)>,
    pub problem: Option<Problem>,
}

impl Walk {
    pub fn report(&self) -> VerifyReport {
        let head = self.head.clone().unwrap_or_default();
        VerifyReport {
            ok: self.problem.is_none(),
            records: self.records,
            last_seq: self.last_seq,
            last_hash: self.last_hash.to_hex(),
            head_seq: head.seq,
            head_hash: head.hash.to_hex(),
            segments: self.segments.len(),
            unsealed_records: self.last_seq.saturating_sub(head.seq),
            torn_tail: self.torn_tail.as_ref().map(|(_, t)| t.clone()),
            problem: self.problem.clone(),
        }
    }
}

/// Verifies the store in `dir` without modifying it (safe while a writer appends: the head
/// is read first, and records beyond it are reported as unsealed, not as problems).
///
/// Errors: [`AuditError::Io`] when a file cannot be read. Integrity problems, including a
/// malformed `head.json`, are reported in [`VerifyReport::problem`].
pub fn verify(dir: &Path) -> Result<VerifyReport, AuditError> {
    Ok(walk(dir, &mut |_| {})?.report())
}

fn problem(
    kind: ProblemKind,
    seq: u64,
    file: &str,
    offset: u64,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> Option<Problem> {
    Some(Problem {
        kind,
        seq,
        file: file.to_string(),
        offset,
        expected: expected.into(),
        found: found.into(),
    })
}

/// Walks the store, calling `visit` for each chain-valid record, and stops at the first
/// problem.
pub(crate) fn walk(dir: &Path, visit: &mut dyn FnMut(Visited<'_>)) -> Result<Walk, AuditError> {
    let mut w = Walk {
        head: None,
        segments: list_segments(dir)?,
        segment_ends: Vec::new(),
        records: 0,
        last_seq: 0,
        last_hash: ChainHash::GENESIS,
        torn_tail: None,
        problem: None,
    };
    // Head first: a writer commits records before the head, so everything the head names
    // is on disk when the segments are read afterwards.
    match read_head(dir) {
        Ok(h) => w.head = h,
        Err(AuditError::Head(e)) => {
            w.problem = problem(
                ProblemKind::HeadMissing,
                0,
                HEAD_FILE,
                0,
                "a valid head file",
                e.to_string(),
            );
            return Ok(w);
        }
        Err(e) => return Err(e),
    }
    let head_seq = w.head.as_ref().map_or(0, |h| h.seq);
    let mut hash_at_head = (head_seq == 0).then_some(ChainHash::GENESIS);
    let nsegs = w.segments.len();
    for i in 0..nsegs {
        let seg = w.segments[i].clone();
        let bytes = fs::read(&seg.path).map_err(|e| io_err(&seg.path, e))?;
        let mut pos = 0usize;
        while pos < bytes.len() {
            let expected_seq = w.last_seq + 1;
            let Some(nl) = memchr_nl(&bytes[pos..]) else {
                let tail = TornTail {
                    file: seg.name.clone(),
                    offset: pos as u64,
                    bytes: (bytes.len() - pos) as u64,
                };
                if i + 1 == nsegs {
                    w.torn_tail = Some((i, tail));
                } else {
                    w.problem = problem(
                        ProblemKind::Malformed,
                        expected_seq,
                        &seg.name,
                        pos as u64,
                        "a complete record ending in a newline",
                        format!(
                            "{} bytes without a newline before the next segment",
                            tail.bytes
                        ),
                    );
                }
                break;
            };
            let line = &bytes[pos..pos + nl];
            let offset = pos as u64;
            let end = (pos + nl + 1) as u64;
            if let Some(p) = check_line(line, expected_seq, &w.last_hash, &seg.name, offset) {
                w.problem = Some(classify(p, &w.segments, i, &bytes, pos + nl + 1)?);
                break;
            }
            // check_line succeeded, so these cannot fail.
            let raw = split_line(line).ok();
            let payload = raw.as_ref().and_then(|r| parse_payload(r.payload).ok());
            let (Some(raw), Some(payload)) = (raw, payload) else {
                break;
            };
            visit(Visited {
                segment: i,
                end,
                payload: &payload,
            });
            w.records += 1;
            w.last_seq = payload.seq;
            w.last_hash = raw.stored_hash;
            if payload.seq == head_seq {
                hash_at_head = Some(raw.stored_hash);
            }
            pos += nl + 1;
        }
        w.segment_ends.push(pos as u64);
        if w.problem.is_some() {
            return Ok(w);
        }
    }
    check_tail(&mut w, hash_at_head);
    Ok(w)
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Checks one record line against the chain; `None` when it is the expected record.
fn check_line(
    line: &[u8],
    expected_seq: u64,
    prev: &ChainHash,
    file: &str,
    offset: u64,
) -> Option<Problem> {
    let raw = match split_line(line) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                ProblemKind::Malformed,
                expected_seq,
                file,
                offset,
                "a record line",
                e.to_string(),
            )
        }
    };
    let payload = match parse_payload(raw.payload) {
        Ok(p) => p,
        Err(e) => {
            return problem(
                ProblemKind::Tampered,
                expected_seq,
                file,
                offset,
                "a record payload that parses",
                format!("unparsable payload ({e})"),
            )
        }
    };
    if payload.v != RECORD_VERSION {
        return problem(
            ProblemKind::UnsupportedVersion,
            expected_seq,
            file,
            offset,
            format!("record version {RECORD_VERSION}"),
            format!("version {}", payload.v),
        );
    }
    let Some(linked) = ChainHash::parse(&payload.prev) else {
        return problem(
            ProblemKind::Tampered,
            expected_seq,
            file,
            offset,
            format!("prev hash {prev}"),
            format!("prev {:?}", payload.prev),
        );
    };
    let computed = ChainHash::chain(&linked, raw.payload);
    if computed != raw.stored_hash {
        // Named by its position in the chain, not by its (possibly altered) own number.
        return problem(
            ProblemKind::Tampered,
            expected_seq,
            file,
            offset,
            format!("hash {computed} (recomputed from the record's bytes)"),
            format!("stored hash {}", raw.stored_hash),
        );
    }
    if payload.seq > expected_seq {
        return problem(
            ProblemKind::Missing,
            expected_seq,
            file,
            offset,
            format!("record {expected_seq}"),
            format!(
                "record {} (records {expected_seq}..={} missing)",
                payload.seq,
                payload.seq - 1
            ),
        );
    }
    if payload.seq < expected_seq {
        return problem(
            ProblemKind::Reordered,
            expected_seq,
            file,
            offset,
            format!("record {expected_seq}"),
            format!("record {} again or out of order", payload.seq),
        );
    }
    if linked != *prev {
        return problem(
            ProblemKind::Reordered,
            expected_seq,
            file,
            offset,
            format!("prev hash {prev}"),
            format!("prev hash {linked} (the record links to another chain)"),
        );
    }
    None
}

/// A gap whose first missing record shows up later is a reordering, not a loss.
fn classify(
    mut p: Problem,
    segments: &[SegmentFile],
    seg: usize,
    bytes: &[u8],
    rest: usize,
) -> Result<Problem, AuditError> {
    if p.kind != ProblemKind::Missing {
        return Ok(p);
    }
    let wanted = p.seq;
    let found_in = |b: &[u8]| {
        b.split(|&c| c == b'\n').any(|line| {
            split_line(line)
                .ok()
                .and_then(|r| parse_payload(r.payload).ok())
                .is_some_and(|pl| pl.seq == wanted)
        })
    };
    let mut later = found_in(&bytes[rest..]);
    for s in &segments[seg + 1..] {
        if later {
            break;
        }
        later = found_in(&fs::read(&s.path).map_err(|e| io_err(&s.path, e))?);
    }
    if later {
        p.kind = ProblemKind::Reordered;
        p.found = format!("{} (record {wanted} appears later)", p.found);
    } else if p.offset == 0 {
        p.found = format!("{} (a whole segment is missing?)", p.found);
    }
    Ok(p)
}

/// Compares the end of the chain with `head.json`.
fn check_tail(w: &mut Walk, hash_at_head: Option<ChainHash>) {
    let last_file = w
        .segments
        .last()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let last_end = w.segment_ends.last().copied().unwrap_or(0);
    let Some(head) = w.head.clone() else {
        if w.records > 0 || w.torn_tail.is_some() {
            w.problem = problem(
                ProblemKind::HeadMissing,
                1,
                HEAD_FILE,
                0,
                "head.json (written when the store was created)",
                format!("no head.json, but {} records", w.records),
            );
        }
        return;
    };
    if head.seq > w.last_seq {
        let file = head.segment.clone().unwrap_or(last_file);
        let offset = if w.segments.last().map(|s| &s.name) == Some(&file) {
            last_end
        } else {
            0
        };
        w.problem = problem(
            ProblemKind::Truncated,
            w.last_seq + 1,
            &file,
            offset,
            format!(
                "records up to {} ending in hash {} (head.json)",
                head.seq, head.hash
            ),
            format!("the store ends at record {}", w.last_seq),
        );
        return;
    }
    if let Some(h) = hash_at_head.filter(|h| *h != head.hash) {
        w.problem = problem(
            ProblemKind::HeadMismatch,
            head.seq,
            head.segment.as_deref().unwrap_or(HEAD_FILE),
            0,
            format!("hash {} (head.json)", head.hash),
            format!("record {} has hash {h}", head.seq),
        );
    }
}
