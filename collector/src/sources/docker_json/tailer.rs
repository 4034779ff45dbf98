//! Follows one container's `<id>-json.log`.
//!
//! A file is identified by the XXH3-64 of its first line (its *fingerprint*), so it is
//! recognised after Docker renames it (`-json.log` → `-json.log.1` → …). On start the tailer
//! finds the file its checkpoint names, drains it and every newer rotated file, then follows
//! the live file. Rotation is noticed when the path's inode changes: the old file is read to
//! its end before the new one is opened, so no line is lost or read twice. Truncation
//! (`size < position`) restarts at offset 0.
//!
//! Each tailer runs on its own thread with blocking reads (as Vector's file source does) and
//! hands [`Chunk`]s to the sink through a bounded channel: when Kafka is slow, reading stops.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sightline_model::encode::{encode_resource, put_log_record_field};
use sightline_model::kafka::partition_for_key;

use crate::sinks::topics::{Partitions, UNASSIGNED};
use sightline_model::{Container, EventId, LogEvent, SourceKind, SourcePosition};
use tokio::sync::mpsc;

use crate::checkpoint::FileCheckpoint;
use crate::config::DockerConfig;
use crate::parse::app::Extractor;
use crate::parse::docker_json::{Reassembler, Record};
use crate::parse::multiline::{Multiline, MultilineRules};
use crate::parse::redact::Redactor;
use crate::parse::timestamp::now_ns;
use crate::sources::file_identity::{file_fingerprint, fingerprint, head_fingerprint, source_id};
use crate::sources::rate_limit::{RateLimitConfig, RateLimiter};
use crate::sources::{Chunk, Part};
use crate::stats::Stats;

/// Keep running.
pub const RUN: u8 = 0;
/// Stop now; keep the checkpoint (collector shutdown).
pub const SHUTDOWN: u8 = 1;
/// The container is gone: read what is left, then finish for good.
pub const REMOVED: u8 = 2;

/// Most rotated files (`-json.log.N`) looked at when resuming.
const MAX_ROTATED: usize = 20;

/// Everything a tailer needs to know about its container.
pub struct TailerContext {
    /// The container.
    pub container: Arc<Container>,
    /// Its service name.
    pub service: String,
    /// Host name stamped on events.
    pub host: String,
    /// The live log file, `<containers_dir>/<id>/<id>-json.log`.
    pub log_path: PathBuf,
    /// Compiled extraction rules.
    pub extractor: Arc<Extractor>,
    /// Source settings.
    pub cfg: DockerConfig,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Partitions of the Kafka topic (events are encoded per partition here; all
    /// [`UNASSIGNED`] while the count is unknown).
    pub partitions: Partitions,
    /// Largest encoded part, bytes (`batch.max_bytes`).
    pub max_part_bytes: usize,
    /// Multiline rules (`[multiline]`), `None` when off.
    pub multiline: Option<Arc<MultilineRules>>,
    /// Redaction rules (`[redaction]`), applied to each message before it is shipped.
    pub redactor: Arc<Redactor>,
    /// Read rate limits (`[rate_limit]`), per container.
    pub rate_limit: RateLimitConfig,
}

struct OpenFile {
    file: File,
    path: PathBuf,
    ino: (u64, u64),
    fingerprint: Option<u64>,
    source_id: u64,
    read_pos: u64,
    carry: Vec<u8>,
    carry_start: u64,
    reassembler: Reassembler,
    /// Multiline joining of this file's records, when configured.
    multiline: Option<Multiline>,
    /// No more bytes will be written: a rotated file, or the live one after a rename.
    finished: bool,
    /// A finished file read to its end and flushed: the next file may be opened.
    drained: bool,
}

/// `<log>.1` … `<log>.N` that exist, newest first.
fn rotated_files(log_path: &Path) -> Vec<PathBuf> {
    (1..=MAX_ROTATED)
        .map(|i| PathBuf::from(format!("{}.{i}", log_path.display())))
        .filter(|p| p.exists())
        .collect()
}

/// The files to read after the file with fingerprint `fp` was read to its end: every
/// rotated file newer than it, oldest first, then the live file. When that file cannot be
/// found any more (deleted by `max-file`), the live file.
pub fn files_after(log_path: &Path, fp: u64) -> Vec<(PathBuf, u64)> {
    let mut candidates = vec![log_path.to_path_buf()];
    candidates.extend(rotated_files(log_path));
    match candidates
        .iter()
        .position(|p| file_fingerprint(p) == Some(fp))
    {
        Some(k) => candidates[..k]
            .iter()
            .rev()
            .map(|p| (p.clone(), 0))
            .collect(),
        None => vec![(log_path.to_path_buf(), 0)],
    }
}

/// Which files to read, oldest first, to resume from `checkpoint`: the checkpointed file at
/// its offset, then every newer rotated file and the live file from 0. Without a checkpoint
/// (a container seen for the first time) every rotated file still on disk, oldest first, then
/// the live file. When the checkpointed file is gone (rotated away while the collector was
/// stopped), the same as without a checkpoint, with a warning.
pub fn resume_plan(log_path: &Path, checkpoint: Option<&FileCheckpoint>) -> Vec<(PathBuf, u64)> {
    // Newest first: the live file, then `.1`, `.2`, …
    let mut candidates = vec![log_path.to_path_buf()];
    // Every index: Docker renames `.1` to `.2` before the live file to `.1`, so a gap can be
    // seen mid-rotation.
    candidates.extend(rotated_files(log_path));
    let all = |c: &[PathBuf]| c.iter().rev().map(|p| (p.clone(), 0)).collect::<Vec<_>>();
    let Some(cp) = checkpoint else {
        return all(&candidates);
    };
    let want = u64::from_str_radix(&cp.fingerprint, 16).ok();
    match candidates
        .iter()
        .position(|p| want.is_some() && file_fingerprint(p) == want)
    {
        Some(k) => {
            let mut plan = vec![(candidates[k].clone(), cp.offset)];
            plan.extend(all(&candidates[..k]));
            plan
        }
        None => {
            tracing::warn!(path = %log_path.display(), "checkpointed file not found (rotated away while stopped?); reading every file still on disk");
            all(&candidates)
        }
    }
}

/// Follows one container's log until told to stop.
pub struct Tailer {
    ctx: TailerContext,
    limiter: RefCell<RateLimiter>,
    tx: mpsc::Sender<Chunk>,
    stop: Arc<AtomicU8>,
    key: Arc<str>,
    resource: Arc<Vec<u8>>,
}

enum Step {
    Continue,
    Exit,
}

impl Tailer {
    /// `stop` is read between reads: [`RUN`], [`SHUTDOWN`] or [`REMOVED`].
    pub fn new(ctx: TailerContext, tx: mpsc::Sender<Chunk>, stop: Arc<AtomicU8>) -> Self {
        let key: Arc<str> = Arc::from(ctx.container.id.as_str());
        let resource = Arc::new(encode_resource(&LogEvent {
            host: ctx.host.clone(),
            source_kind: SourceKind::DockerJsonFile,
            container: Some(ctx.container.clone()),
            service: ctx.service.clone(),
            ..Default::default()
        }));
        Tailer {
            limiter: RefCell::new(RateLimiter::new(&ctx.rate_limit)),
            ctx,
            tx,
            stop,
            key,
            resource,
        }
    }

    /// Runs on the calling thread until shutdown or until the container's files are done.
    pub fn run(self, checkpoint: Option<FileCheckpoint>) {
        let mut queue: VecDeque<(PathBuf, u64)> =
            resume_plan(&self.ctx.log_path, checkpoint.as_ref()).into();
        let mut cur: Option<OpenFile> = None;
        let mut buf = vec![0u8; self.ctx.cfg.read_buffer_bytes];
        let poll = Duration::from_millis(self.ctx.cfg.poll_interval_ms);
        loop {
            let stop = self.stop.load(Ordering::Acquire);
            if stop == SHUTDOWN {
                return;
            }
            if cur.is_none() {
                let (path, offset) = queue
                    .pop_front()
                    .unwrap_or_else(|| (self.ctx.log_path.clone(), 0));
                let is_live = queue.is_empty() && path == self.ctx.log_path;
                match self.open(&path, offset, !is_live) {
                    Ok(f) if offset > 0 && !self.is_checkpointed(&f, checkpoint.as_ref()) => {
                        // Renamed between planning and opening: plan again.
                        queue = resume_plan(&self.ctx.log_path, checkpoint.as_ref()).into();
                        if queue
                            .front()
                            .is_some_and(|(p, o)| *p == path && *o == offset)
                        {
                            cur = Some(f); // unchanged: it is the file after all
                            queue.pop_front();
                        }
                    }
                    Ok(f) => cur = Some(f),
                    Err(e) => {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!(path = %path.display(), error = %e, "cannot open log file");
                        }
                        if stop == REMOVED {
                            self.send(Vec::new(), None, true);
                            return;
                        }
                        if !is_live {
                            continue; // a rotated file vanished: go on with the next
                        }
                        std::thread::sleep(poll);
                        continue;
                    }
                }
            }
            let f = cur.as_mut().expect("opened above");
            match self.step(f, &mut buf, stop) {
                Ok(Step::Continue) => {}
                Ok(Step::Exit) => return,
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "read error; retrying");
                    std::thread::sleep(poll);
                }
            }
            if cur.as_ref().is_some_and(|f| f.drained) {
                cur = None; // read to its end and flushed: the next iteration opens the next file
            }
        }
    }

    /// Whether `f` is the file `cp` names (same first-line fingerprint).
    fn is_checkpointed(&self, f: &OpenFile, cp: Option<&FileCheckpoint>) -> bool {
        let want = cp.and_then(|c| u64::from_str_radix(&c.fingerprint, 16).ok());
        want.is_some() && fingerprint(&f.file).ok().flatten() == want
    }

    fn open(&self, path: &Path, offset: u64, finished: bool) -> std::io::Result<OpenFile> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        // Truncated while we were away: start over.
        let offset = if meta.len() < offset { 0 } else { offset };
        let mut f = OpenFile {
            file,
            path: path.to_path_buf(),
            ino: (meta.dev(), meta.ino()),
            fingerprint: None,
            source_id: 0,
            read_pos: offset,
            carry: Vec::new(),
            carry_start: offset,
            reassembler: Reassembler::new(self.ctx.cfg.max_line_bytes),
            multiline: self
                .ctx
                .multiline
                .as_ref()
                .map(|r| Multiline::from_rules(r, Box::new(std::time::Instant::now))),
            finished,
            drained: false,
        };
        use std::io::Seek;
        f.file.seek(std::io::SeekFrom::Start(offset))?;
        Ok(f)
    }

    /// One read (or one end-of-file check).
    fn step(&self, f: &mut OpenFile, buf: &mut [u8], stop: u8) -> std::io::Result<Step> {
        let poll = Duration::from_millis(self.ctx.cfg.poll_interval_ms);
        if f.fingerprint.is_none() {
            match fingerprint(&f.file)? {
                Some(fp) => {
                    f.fingerprint = Some(fp);
                    f.source_id = source_id(&self.ctx.container.id, fp);
                }
                None => {
                    if f.finished || stop == REMOVED {
                        // No complete first line and none will come: identify the file by
                        // what it holds, so those bytes are still shipped (marked).
                        if let Some(fp) = head_fingerprint(&f.file)? {
                            f.fingerprint = Some(fp);
                            f.source_id = source_id(&self.ctx.container.id, fp);
                            f.finished = true;
                            return Ok(Step::Continue);
                        }
                        f.finished = true;
                        f.drained = true;
                        if stop == REMOVED {
                            self.send(Vec::new(), None, true);
                            return Ok(Step::Exit);
                        }
                        return Ok(Step::Continue);
                    }
                    if self.renamed(f)? {
                        f.finished = true;
                    } else {
                        std::thread::sleep(poll);
                    }
                    return Ok(Step::Continue);
                }
            }
        }
        let n = f.file.read(buf)?;
        let mut records = Vec::with_capacity(n / 128);
        let timeout = Duration::from_millis(self.ctx.cfg.partial_flush_timeout_ms);
        if n > 0 {
            self.ctx.stats.add_bytes_read(n as u64);
            self.consume(f, &buf[..n], &mut records);
            f.reassembler.flush_stale(timeout, &mut records);
            let records = self.join(f, records, false);
            self.throttle(records.len() as u64, n as u64);
            let ok = self.emit(f, records, false);
            return Ok(if ok { Step::Continue } else { Step::Exit });
        }
        // End of file.
        let timeout = Duration::from_millis(self.ctx.cfg.partial_flush_timeout_ms);
        if f.finished || stop == REMOVED {
            self.drain(f, &mut records);
            let records = self.join(f, records, true);
            let done = stop == REMOVED && !f.finished;
            f.finished = true;
            let ok = self.emit(f, records, done);
            // Only now — every held record of this file emitted — may the next file open.
            f.drained = ok;
            return Ok(if !ok || done {
                Step::Exit
            } else {
                Step::Continue
            });
        }
        f.reassembler.flush_stale(timeout, &mut records);
        let records = self.join(f, records, false);
        if !records.is_empty() && !self.emit(f, records, false) {
            return Ok(Step::Exit);
        }
        if self.renamed(f)? {
            // Read the old file to its end once more before switching.
            f.finished = true;
            return Ok(Step::Continue);
        }
        let len = f.file.metadata()?.len();
        // Truncated (copytruncate, or Docker reopening with O_TRUNC): shorter than what was
        // read, or already rewritten past it with a different first line.
        let rewritten = len >= f.read_pos && fingerprint(&f.file)? != f.fingerprint;
        if len < f.read_pos || rewritten {
            tracing::info!(path = %f.path.display(), "file truncated; reading from the start");
            let mut records = Vec::new();
            self.drain(f, &mut records);
            let records = self.join(f, records, true);
            self.emit(f, records, false);
            *f = self.open(&f.path.clone(), 0, false)?;
            return Ok(Step::Continue);
        }
        std::thread::sleep(poll);
        Ok(Step::Continue)
    }

    /// True when the live path now names another file (Docker rotated ours away).
    fn renamed(&self, f: &OpenFile) -> std::io::Result<bool> {
        if f.path != self.ctx.log_path {
            return Ok(false);
        }
        match std::fs::metadata(&self.ctx.log_path) {
            Ok(m) => Ok((m.dev(), m.ino()) != f.ino),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Splits bytes into lines and feeds complete ones to the reassembler.
    fn consume(&self, f: &mut OpenFile, data: &[u8], out: &mut Vec<Record>) {
        let base = f.read_pos;
        let mut start = 0usize;
        let mut carry = std::mem::take(&mut f.carry);
        for nl in memchr::memchr_iter(b'\n', data) {
            let line: &[u8] = if carry.is_empty() {
                &data[start..nl]
            } else {
                carry.extend_from_slice(&data[start..nl]);
                &carry
            };
            if !line.iter().all(u8::is_ascii_whitespace) {
                f.reassembler.push_line(f.carry_start, line, out);
            }
            carry.clear();
            start = nl + 1;
            f.carry_start = base + start as u64;
        }
        carry.extend_from_slice(&data[start..]);
        // Not Docker framing (no newline for far too long): ship it in pieces of
        // `max_line_bytes`, cut at fixed positions so a re-read cuts the same way.
        let cap = self.ctx.cfg.max_line_bytes;
        let limit = cap.saturating_mul(4);
        if carry.len() > limit {
            let mut at = 0;
            while carry.len() - at >= cap {
                out.push(Record {
                    offset: f.carry_start,
                    text: String::from_utf8_lossy(&carry[at..at + cap]).into_owned(),
                    stream: String::new(),
                    time_ns: None,
                    attrs: Default::default(),
                    parse_error: Some(format!("more than {limit} bytes without a newline")),
                    split_part: None,
                    partial: true,
                });
                f.carry_start += cap as u64;
                at += cap;
            }
            carry.drain(..at);
        }
        f.carry = carry;
        f.read_pos = base + data.len() as u64;
    }

    /// Passes records through multiline joining (when configured): returns the records that
    /// are complete now; `all` flushes every held record (end of a file).
    fn join(&self, f: &mut OpenFile, records: Vec<Record>, all: bool) -> Vec<Record> {
        let Some(m) = f.multiline.as_mut() else {
            return records;
        };
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            // Docker's streams are `stdout` and `stderr`: no per-line copy of the name.
            let stream = match r.stream.as_str() {
                "stdout" => "stdout",
                "stderr" => "stderr",
                _ => "",
            };
            m.push(stream, r, &mut out);
        }
        if all {
            m.flush_all(&mut out);
        } else {
            let timeout = m.flush_timeout();
            m.flush_stale(timeout, &mut out);
        }
        out
    }

    /// Waits as the read rate limits require (`[rate_limit]`): delays, never drops.
    fn throttle(&self, lines: u64, bytes: u64) {
        let wait = match self.limiter.try_borrow_mut() {
            Ok(mut l) if !l.is_unlimited() => l.take(lines, bytes, std::time::Instant::now()),
            _ => return,
        };
        if !wait.is_zero() {
            self.ctx.stats.add_throttled(1, wait);
            // In slices, so a stop (shutdown, reload, removal) is not held up.
            let until = std::time::Instant::now() + wait;
            while self.stop.load(Ordering::Acquire) == RUN {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(100)));
            }
        }
    }

    /// Flushes everything still held for a file that will not grow any more.
    fn drain(&self, f: &mut OpenFile, out: &mut Vec<Record>) {
        if !f.carry.is_empty() {
            let carry = std::mem::take(&mut f.carry);
            // An unterminated last line: parse it as a line (it may be complete JSON).
            f.reassembler.push_line(f.carry_start, &carry, out);
            f.carry_start += carry.len() as u64;
        }
        f.reassembler.flush_stale(Duration::ZERO, out);
    }

    /// Builds events, encodes them per partition, and sends them with the checkpoint.
    /// Returns false when the sink is gone.
    fn emit(&self, f: &mut OpenFile, records: Vec<Record>, done: bool) -> bool {
        let Some(fp) = f.fingerprint else {
            // Nothing is read before the fingerprint is known, so there is nothing to send.
            return true;
        };
        let observed = now_ns();
        let count = self.ctx.partitions.get();
        let partitions = count.unwrap_or(1);
        let mut open: Vec<usize> = vec![usize::MAX; partitions as usize];
        let mut parts: Vec<Part> = Vec::new();
        let mut scratch = Vec::with_capacity(1024);
        // Encoded size is about the text plus ~200 B per record, spread over partitions.
        let text: usize = records.iter().map(|r| r.text.len() + 200).sum();
        let part_capacity = (text / partitions as usize + 4096).min(self.ctx.max_part_bytes);
        for r in records {
            let mut ev = self.event(f, r, observed);
            let key = ev.partition_key();
            let p = match count {
                Some(n) => partition_for_key(key.as_bytes(), n),
                None => UNASSIGNED,
            };
            let slot = &mut open[p.max(0) as usize];
            // A part stays under max_part_bytes (the message text plus 1 KiB bounds a record).
            let room = self
                .ctx
                .max_part_bytes
                .saturating_sub(ev.message.len() + 1024);
            if *slot == usize::MAX || parts[*slot].records.len() > room {
                *slot = parts.len();
                parts.push(Part {
                    partition: p,
                    records: Vec::with_capacity(part_capacity),
                    count: 0,
                    key: Some(key.to_string()),
                });
            }
            let part = &mut parts[*slot];
            if part.key.as_deref().is_some_and(|k| k != key) {
                part.key = None;
            }
            part.count += 1;
            put_log_record_field(&mut part.records, &mut scratch, &ev);
            // The text and stream buffers serve the next records read.
            let (text, stream) = (
                std::mem::take(&mut ev.message),
                std::mem::take(&mut ev.stream),
            );
            f.reassembler.recycle(text, stream);
        }
        let held = [
            f.reassembler.oldest_pending_offset(),
            f.multiline
                .as_ref()
                .and_then(Multiline::oldest_pending_offset),
        ];
        let safe = held.into_iter().flatten().fold(f.carry_start, u64::min);
        let checkpoint = FileCheckpoint {
            path: f.path.clone(),
            fingerprint: format!("{fp:016x}"),
            offset: safe,
        };
        self.send(parts, Some(checkpoint), done)
    }

    fn send(&self, parts: Vec<Part>, checkpoint: Option<FileCheckpoint>, done: bool) -> bool {
        self.ctx
            .stats
            .add_events_read(parts.iter().map(|p| p.count).sum());
        let chunk = Chunk {
            key: self.key.clone(),
            resource: self.resource.clone(),
            parts,
            checkpoint,
            done,
        };
        self.tx.blocking_send(chunk).is_ok()
    }

    /// The event of one record, for encoding. Resource-level fields (`host`, `service`) stay
    /// empty: they travel once per chunk in the encoded resource, not per event.
    fn event(&self, f: &OpenFile, r: Record, observed: u64) -> LogEvent {
        let mut attributes = r.attrs;
        let mut text = r.text;
        // Secrets are masked first, so no correlation ID or trace ID can carry one out.
        if !self.ctx.redactor.is_empty() {
            let (redacted, n) = self.ctx.redactor.redact(&text);
            if n > 0 {
                let redacted = redacted.into_owned();
                text = redacted;
                attributes.insert("sightline.redactions".into(), n.to_string());
                self.ctx.stats.add_redactions(n as u64);
            }
        }
        let ex = self.ctx.extractor.extract(&text);
        if let Some(p) = r.split_part {
            attributes.insert("sightline.split_part".into(), p.to_string());
        }
        if r.partial {
            attributes.insert("sightline.partial".into(), "true".into());
        }
        if r.parse_error.is_some() {
            self.ctx.stats.add_parse_errors(1);
        }
        LogEvent {
            event_id: EventId::derive(f.source_id, r.offset),
            timestamp_ns: r.time_ns.unwrap_or(observed),
            observed_ns: observed,
            host: String::new(),
            source_kind: SourceKind::DockerJsonFile,
            position: SourcePosition {
                source_id: f.source_id,
                offset: r.offset,
            },
            container: Some(self.ctx.container.clone()),
            service: String::new(),
            stream: r.stream,
            level: ex.level,
            message: text,
            correlation_ids: ex.correlation_ids,
            trace_id: ex.trace_id,
            span_id: ex.span_id,
            hop: ex.hop,
            parse_error: r.parse_error,
            attributes,
        }
    }
}
