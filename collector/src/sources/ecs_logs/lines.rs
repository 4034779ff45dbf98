//! Follows one plain-text log family (`<dir>/<name>` and its rotated copies, see
//! [`family_files`]) line by line, on its own thread with blocking reads.
//!
//! - **Resume.** The first file read is the checkpointed one (found by fingerprint) at its
//!   offset, followed by every newer file of the family from 0 ([`resume_plan`]).
//! - **Rotation.** The newest file is followed. It is *superseded* when a newer file of the
//!   family appears (seelog renamed `<name>` to `<name>.2026-11-21-07` and created a new
//!   `<name>`, or wrote a new `<name>.<timestamp>`): it is then read to its end — its last
//!   unterminated line included — before the next file is opened ([`files_after`]), so no
//!   line is lost or read twice.
//! - **Truncation.** A followed file shorter than what was read, or whose first line changed,
//!   is read again from 0 (it is a new file for event IDs: its fingerprint changed).
//! - **Missing directory or file.** The tailer waits, polling, and says so once.
//! - **Long lines** (more than `max_line_bytes` without a newline) are cut into parts of at
//!   most `max_line_bytes` bytes, on a UTF-8 character boundary when there is one within the
//!   last 3 bytes; parts are numbered from 1 and never dropped. Cuts depend only on the
//!   line's bytes, so a re-read cuts the same way.
//! - **Invalid UTF-8** is kept, lossily converted (U+FFFD), and flagged.
//!
//! Lines made of whitespace only are skipped. What becomes of a line is up to the
//! [`LineHandler`]; after every read the handler is flushed with the checkpoint: the
//! offset of the first line not yet complete.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::checkpoint::FileCheckpoint;
use crate::sources::file_identity::{
    family_files, file_id, files_after, fingerprint, head_fingerprint, resume_plan, source_id,
    Drained, PlanEntry,
};
use crate::stats::Stats;

/// Bytes read per read call.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The file a line comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileIdent {
    /// Path when it was opened (it may have been renamed since).
    pub path: PathBuf,
    /// First-line fingerprint.
    pub fingerprint: u64,
    /// [`source_id`] of (owner, fingerprint).
    pub source_id: u64,
}

impl FileIdent {
    /// The checkpoint "resume at `offset` of this file".
    pub fn checkpoint(&self, offset: u64) -> FileCheckpoint {
        FileCheckpoint {
            path: self.path.clone(),
            fingerprint: format!("{:016x}", self.fingerprint),
            offset,
        }
    }
}

/// One line, or one part of a line longer than `max_line_bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// Byte offset of this piece's first byte.
    pub offset: u64,
    /// Byte offset of the line's first byte (differs from `offset` for parts after the first).
    pub line_start: u64,
    /// Byte offset just after this piece, and after its `\n` when it ends the line.
    pub end: u64,
    /// This piece ends the line (it was followed by `\n`, or it is the unterminated last line
    /// of a file that will not grow any more).
    pub complete: bool,
    /// The text, without `\n` and, on the line's last piece, without one trailing `\r`.
    pub text: Cow<'a, str>,
    /// The bytes were not valid UTF-8: `text` has U+FFFD in their place.
    pub invalid_utf8: bool,
    /// 1-based part number when the line was cut.
    pub split_part: Option<u32>,
}

/// What is done with the lines of a family.
pub trait LineHandler {
    /// One line (or part) of `file`, in file order.
    fn line(&mut self, file: &FileIdent, line: Line<'_>);
    /// Ships what [`LineHandler::line`] gathered. `checkpoint` is where reading of `file`
    /// resumes once everything up to here is acknowledged. Returns false when the receiver
    /// is gone (the tailer then stops).
    fn flush(&mut self, file: &FileIdent, checkpoint: FileCheckpoint) -> bool;
}

/// The log family a tailer follows.
#[derive(Clone, Debug)]
pub struct Family {
    /// Directory holding the files.
    pub dir: PathBuf,
    /// Live file name, e.g. `ecs-agent.log`.
    pub name: String,
    /// Owner string for [`source_id`]: host and name, so two hosts' files never share IDs.
    pub owner: String,
}

/// Settings of one tailer.
#[derive(Clone, Debug)]
pub struct TailSettings {
    /// Sleep at end of file (and while waiting for the directory).
    pub poll: Duration,
    /// Longest line piece, bytes (≥ 4).
    pub max_line_bytes: usize,
}

/// The current line being assembled.
#[derive(Default)]
struct LineState {
    /// Bytes of the current line not yet handed out.
    carry: Vec<u8>,
    /// File offset of `carry[0]`.
    carry_start: u64,
    /// File offset of the current line's first byte.
    line_start: u64,
    /// Parts of the current line already handed out.
    parts: u32,
}

struct OpenFile {
    file: File,
    path: PathBuf,
    id: (u64, u64),
    ident: Option<FileIdent>,
    read_pos: u64,
    state: LineState,
    /// No more bytes will be written (superseded or planned as an older file).
    finished: bool,
    /// Finished and read to its end.
    drained: bool,
}

/// Where to cut a piece of at most `cap` bytes off `bytes` (`bytes.len() > cap`): before the
/// character that straddles `cap`, when it starts at most 3 bytes earlier, else at `cap`.
fn cut_point(bytes: &[u8], cap: usize) -> usize {
    let is_cont = |b: u8| b & 0xC0 == 0x80;
    let mut cut = cap;
    while cut > 0 && cap - cut < 3 && is_cont(bytes[cut]) {
        cut -= 1;
    }
    if cut == 0 || is_cont(bytes[cut]) {
        cap
    } else {
        cut
    }
}

fn text_of(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Cow::Borrowed(s), false),
        Err(_) => (String::from_utf8_lossy(bytes), true),
    }
}

/// Hands `bytes` (starting at `st.carry_start`) out in parts while longer than `cap`; when
/// `complete` the rest ends the line (`newline`: a `\n` followed it).
fn hand_out<H: LineHandler>(
    h: &mut H,
    id: &FileIdent,
    st: &mut LineState,
    mut bytes: &[u8],
    cap: usize,
    complete: bool,
    newline: bool,
) -> usize {
    let start_len = bytes.len();
    while bytes.len() > cap {
        let cut = cut_point(bytes, cap);
        st.parts += 1;
        let (text, invalid_utf8) = text_of(&bytes[..cut]);
        h.line(
            id,
            Line {
                offset: st.carry_start,
                line_start: st.line_start,
                end: st.carry_start + cut as u64,
                complete: false,
                text,
                invalid_utf8,
                split_part: Some(st.parts),
            },
        );
        st.carry_start += cut as u64;
        bytes = &bytes[cut..];
    }
    if !complete {
        return start_len - bytes.len();
    }
    let end = st.carry_start + bytes.len() as u64 + u64::from(newline);
    let body = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if st.parts > 0 || !body.iter().all(u8::is_ascii_whitespace) {
        let (text, invalid_utf8) = text_of(body);
        h.line(
            id,
            Line {
                offset: st.carry_start,
                line_start: st.line_start,
                end,
                complete: true,
                text,
                invalid_utf8,
                split_part: (st.parts > 0).then_some(st.parts + 1),
            },
        );
    }
    st.carry_start = end;
    st.line_start = end;
    st.parts = 0;
    start_len
}

/// Splits `data` (read at `f.read_pos`) into lines.
fn feed<H: LineHandler>(h: &mut H, f: &mut OpenFile, data: &[u8], cap: usize) {
    let Some(id) = &f.ident else { return };
    let st = &mut f.state;
    let mut start = 0usize;
    for nl in memchr::memchr_iter(b'\n', data) {
        if st.carry.is_empty() {
            hand_out(h, id, st, &data[start..nl], cap, true, true);
        } else {
            let mut carry = std::mem::take(&mut st.carry);
            carry.extend_from_slice(&data[start..nl]);
            hand_out(h, id, st, &carry, cap, true, true);
            carry.clear();
            st.carry = carry;
        }
        start = nl + 1;
    }
    st.carry.extend_from_slice(&data[start..]);
    if st.carry.len() > cap {
        let carry = std::mem::take(&mut st.carry);
        let used = hand_out(h, id, st, &carry, cap, false, false);
        st.carry = carry[used..].to_vec();
    }
    f.read_pos += data.len() as u64;
}

/// Hands out the unterminated last line of a file that will not grow any more.
fn drain<H: LineHandler>(h: &mut H, f: &mut OpenFile, cap: usize) {
    let Some(id) = &f.ident else { return };
    let carry = std::mem::take(&mut f.state.carry);
    if !carry.is_empty() {
        hand_out(h, id, &mut f.state, &carry, cap, true, false);
    }
}

/// Follows one family until `stop` is set or the handler's receiver is gone.
pub struct LineTailer<H> {
    /// The family.
    pub family: Family,
    /// Settings.
    pub settings: TailSettings,
    /// What to do with lines.
    pub handler: H,
    /// Set to stop (checked between reads and sleeps).
    pub stop: Arc<AtomicBool>,
    /// Counters (`bytes_read`).
    pub stats: Arc<Stats>,
}

enum Step {
    Continue,
    Exit,
}

impl<H: LineHandler> LineTailer<H> {
    /// Runs on the calling thread; `checkpoint` is where the family's reading resumes.
    pub fn run(mut self, checkpoint: Option<FileCheckpoint>) {
        let mut cur: Option<OpenFile> = None;
        let mut last: Option<Drained> = None;
        let mut buf = vec![0u8; READ_BUFFER_BYTES];
        let mut waiting = false;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let Some(f) = cur.as_mut() else {
                match self.next_file(checkpoint.as_ref(), last.as_ref()) {
                    Ok(Some(f)) => {
                        if waiting {
                            tracing::info!(dir = %self.family.dir.display(), name = %self.family.name, "log file found; reading");
                            waiting = false;
                        }
                        cur = Some(f);
                    }
                    Ok(None) => {
                        if !waiting {
                            tracing::info!(dir = %self.family.dir.display(), name = %self.family.name, "waiting for the log file to appear");
                            waiting = true;
                        }
                        self.sleep();
                    }
                    Err(e) => {
                        if !waiting {
                            tracing::warn!(dir = %self.family.dir.display(), name = %self.family.name, error = %e, "cannot open the log file; retrying");
                            waiting = true;
                        }
                        self.sleep();
                    }
                }
                continue;
            };
            match self.step(f, &mut buf) {
                Ok(Step::Continue) => {}
                Ok(Step::Exit) => return,
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "read error; retrying");
                    self.sleep();
                }
            }
            if f.drained {
                let modified = f
                    .file
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                last = f.ident.as_ref().map(|i| Drained {
                    id: f.id,
                    fingerprint: i.fingerprint,
                    modified,
                });
                cur = None;
            }
        }
    }

    fn sleep(&self) {
        std::thread::sleep(self.settings.poll);
    }

    /// Opens the next file to read: after `last` when a file was drained, else where
    /// `checkpoint` says. `None` when there is nothing (yet).
    fn next_file(
        &self,
        checkpoint: Option<&FileCheckpoint>,
        last: Option<&Drained>,
    ) -> std::io::Result<Option<OpenFile>> {
        let files = match family_files(&self.family.dir, &self.family.name) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let plan = match last {
            Some(done) => files_after(&files, done),
            None => resume_plan(&files, checkpoint),
        };
        let Some(first) = plan.first() else {
            return Ok(None);
        };
        match self.open(first, plan.len() > 1) {
            Ok(Some(f)) => Ok(Some(f)),
            // Renamed or removed between listing and opening: plan again next time.
            Ok(None) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens `entry`; `None` when the path now names another file.
    fn open(&self, entry: &PlanEntry, finished: bool) -> std::io::Result<Option<OpenFile>> {
        let mut file = File::open(&entry.path)?;
        let meta = file.metadata()?;
        if file_id(&meta) != entry.id {
            return Ok(None);
        }
        // Truncated while we were away: start over.
        let offset = if meta.len() < entry.offset {
            0
        } else {
            entry.offset
        };
        file.seek(SeekFrom::Start(offset))?;
        Ok(Some(OpenFile {
            file,
            path: entry.path.clone(),
            id: entry.id,
            ident: None,
            read_pos: offset,
            state: LineState {
                carry: Vec::new(),
                carry_start: offset,
                line_start: offset,
                parts: 0,
            },
            finished,
            drained: false,
        }))
    }

    fn identify(&self, f: &mut OpenFile, fp: u64) {
        f.ident = Some(FileIdent {
            path: f.path.clone(),
            fingerprint: fp,
            source_id: source_id(&self.family.owner, fp),
        });
    }

    fn flush(&mut self, f: &OpenFile) -> bool {
        match &f.ident {
            Some(id) => {
                let cp = id.checkpoint(f.state.line_start);
                self.handler.flush(id, cp)
            }
            None => true,
        }
    }

    /// One read, or one end-of-file check.
    fn step(&mut self, f: &mut OpenFile, buf: &mut [u8]) -> std::io::Result<Step> {
        if f.ident.is_none() {
            match fingerprint(&f.file)? {
                Some(fp) => self.identify(f, fp),
                None if f.finished => match head_fingerprint(&f.file)? {
                    // No complete first line and none will come: ship what it holds.
                    Some(fp) => self.identify(f, fp),
                    None => {
                        f.drained = true;
                        return Ok(Step::Continue);
                    }
                },
                None => {
                    if self.superseded(f)? {
                        f.finished = true;
                    } else {
                        self.sleep();
                    }
                    return Ok(Step::Continue);
                }
            }
        }
        let n = f.file.read(buf)?;
        let cap = self.settings.max_line_bytes;
        if n > 0 {
            self.stats.add_bytes_read(n as u64);
            feed(&mut self.handler, f, &buf[..n], cap);
            return Ok(if self.flush(f) {
                Step::Continue
            } else {
                Step::Exit
            });
        }
        if f.finished {
            drain(&mut self.handler, f, cap);
            f.drained = true;
            return Ok(if self.flush(f) {
                Step::Continue
            } else {
                Step::Exit
            });
        }
        if self.superseded(f)? {
            // Read it to its end once more before switching.
            f.finished = true;
            return Ok(Step::Continue);
        }
        let len = f.file.metadata()?.len();
        let fp = f.ident.as_ref().map(|i| i.fingerprint);
        if len < f.read_pos || fingerprint(&f.file)? != fp {
            tracing::info!(path = %f.path.display(), "log file truncated; reading it from the start");
            drain(&mut self.handler, f, cap);
            if !self.flush(f) {
                return Ok(Step::Exit);
            }
            f.file.seek(SeekFrom::Start(0))?;
            f.read_pos = 0;
            f.state = LineState::default();
            f.ident = None;
            return Ok(Step::Continue);
        }
        self.sleep();
        Ok(Step::Continue)
    }

    /// Whether a newer file of the family exists than `f` (or `f` left the family while
    /// others are there).
    fn superseded(&self, f: &OpenFile) -> std::io::Result<bool> {
        let files = match family_files(&self.family.dir, &self.family.name) {
            Ok(files) => files,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(match files.iter().position(|x| x.id == f.id) {
            Some(k) => k + 1 < files.len(),
            None => !files.is_empty(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        lines: Vec<Line<'static>>,
    }

    impl LineHandler for Collect {
        fn line(&mut self, _: &FileIdent, l: Line<'_>) {
            self.lines.push(Line {
                text: Cow::Owned(l.text.into_owned()),
                ..l
            });
        }
        fn flush(&mut self, _: &FileIdent, _: FileCheckpoint) -> bool {
            true
        }
    }

    fn open_file(data: &[u8]) -> (tempfile::NamedTempFile, OpenFile) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), data).unwrap();
        let file = File::open(tmp.path()).unwrap();
        let meta = file.metadata().unwrap();
        let f = OpenFile {
            file,
            path: tmp.path().to_path_buf(),
            id: file_id(&meta),
            ident: Some(FileIdent {
                path: tmp.path().to_path_buf(),
                fingerprint: 1,
                source_id: 2,
            }),
            read_pos: 0,
            state: LineState::default(),
            finished: false,
            drained: false,
        };
        (tmp, f)
    }

    /// Feeds `data` in pieces of `step` bytes; returns the pieces handed out.
    fn lines_of(data: &[u8], step: usize, cap: usize, finish: bool) -> Collect {
        let (_tmp, mut f) = open_file(data);
        let mut h = Collect::default();
        for piece in data.chunks(step) {
            feed(&mut h, &mut f, piece, cap);
        }
        if finish {
            drain(&mut h, &mut f, cap);
        }
        h
    }

    #[test]
    fn lines_parts_and_offsets_do_not_depend_on_read_size() {
        // "é" is 2 bytes: the 8-byte cut of "abcdefgé…" falls inside it and moves back.
        let data = b"one\r\n\n  \nabcdefg\xc3\xa9hijklmnopq\nxy\xff\nlast";
        #[rustfmt::skip]
        let want: Vec<Line<'static>> = [
            (0, 0, 5, true, "one", false, None),
            (9, 9, 16, false, "abcdefg", false, Some(1)),
            (16, 9, 24, false, "éhijklm", false, Some(2)),
            (24, 9, 29, true, "nopq", false, Some(3)),
            (29, 29, 33, true, "xy\u{fffd}", true, None),
            (33, 33, 37, true, "last", false, None),
        ]
        .into_iter()
        .map(|(offset, line_start, end, complete, text, invalid_utf8, split_part)| Line {
            offset,
            line_start,
            end,
            complete,
            text: Cow::Borrowed(text),
            invalid_utf8,
            split_part,
        })
        .collect();
        for step in [1, 2, 3, 7, 64] {
            assert_eq!(lines_of(data, step, 8, true).lines, want, "step {step}");
        }
        // Not finished: the unterminated last line stays pending.
        assert_eq!(lines_of(data, 64, 8, false).lines, want[..5].to_vec());
    }

    #[test]
    fn cut_points() {
        assert_eq!(cut_point(b"abcdefghij", 4), 4);
        assert_eq!(cut_point("abcé".as_bytes(), 4), 3);
        // Continuation bytes only: no boundary near, cut at the cap.
        assert_eq!(cut_point(&[0x80; 10], 4), 4);
    }
}
