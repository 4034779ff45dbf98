//! Docker `json-file` framing: one JSON object per line, `{"log":…,"stream":…,"attrs":…,"time":…}`
//! (moby `daemon/logger/jsonfilelog/jsonlog`), and reassembly of the lines Docker split at
//! 16 KiB: a piece whose `log` lacks the trailing `\n` continues in the next piece of the same
//! stream (moby `daemon/logger/copier.go`; every piece reuses the first piece's time).
//!
//! [`Reassembler`] turns file lines into [`Record`]s. It never drops input: a line that is not
//! valid framing becomes a record with `parse_error` set and the raw bytes (lossy UTF-8) as
//! text; a reassembled line longer than the cap is cut into parts marked `split_part`; a piece
//! whose continuation never comes is flushed after a timeout, marked `partial`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::timestamp::TimeCache;

/// One json-file line as Docker writes it (unknown keys ignored).
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    log: Cow<'a, str>,
    #[serde(borrow, default)]
    stream: Cow<'a, str>,
    #[serde(borrow, default)]
    time: Cow<'a, str>,
    #[serde(default)]
    attrs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A complete log record: one application line, reassembled if Docker split it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Byte offset in the file of the record's first line (the event's position).
    pub offset: u64,
    /// Line text without the trailing newline.
    pub text: String,
    /// `stdout`, `stderr`, or empty when unknown.
    pub stream: String,
    /// Docker's timestamp in ns since the epoch; `None` when missing or unparsable.
    pub time_ns: Option<u64>,
    /// Docker `attrs` (log-opt labels/env/tag), values as strings.
    pub attrs: BTreeMap<String, String>,
    /// Why the framing could not be parsed; the raw line is in `text`.
    pub parse_error: Option<String>,
    /// Set when a line longer than the cap was cut: 1-based part number.
    pub split_part: Option<u32>,
    /// Set when a piece was flushed without its continuation (timeout or end of file).
    pub partial: bool,
}

struct Pending {
    offset: u64,
    text: String,
    time_ns: Option<u64>,
    attrs: BTreeMap<String, String>,
    since: Instant,
    parts: u32,
}

/// Per-file reassembly of split lines (one pending piece per stream).
pub struct Reassembler {
    max_line_bytes: usize,
    pending: Vec<(String, Pending)>,
    times: TimeCache,
    /// Buffers of shipped records ([`Reassembler::recycle`]) for the next records' text,
    /// with their total capacity.
    spare_text: Vec<Vec<u8>>,
    spare_bytes: usize,
    /// Likewise for stream names.
    spare_stream: Vec<String>,
}

/// Largest text buffer kept for reuse, bytes.
const SPARE_TEXT_MAX: usize = 4096;
/// Most bytes of text buffers kept for reuse per file.
const SPARE_BUDGET: usize = 256 * 1024;
/// Most stream-name buffers kept for reuse per file, and the largest kept.
const SPARE_STREAMS: usize = 1024;
const SPARE_STREAM_MAX: usize = 64;

fn strip_newline(s: &str) -> Option<&str> {
    s.strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
}

impl Reassembler {
    /// `max_line_bytes`: the cap on a reassembled line (bytes).
    pub fn new(max_line_bytes: usize) -> Self {
        Reassembler {
            max_line_bytes,
            pending: Vec::new(),
            times: TimeCache::default(),
            spare_text: Vec::new(),
            spare_bytes: 0,
            spare_stream: Vec::new(),
        }
    }

    /// Hands back a shipped record's text and stream: their buffers serve the next records
    /// (a bounded number of them), which spares an allocation per line.
    pub fn recycle(&mut self, text: String, stream: String) {
        let cap = text.capacity();
        if cap > 0 && cap <= SPARE_TEXT_MAX && self.spare_bytes + cap <= SPARE_BUDGET {
            self.spare_bytes += cap;
            self.spare_text.push(text.into_bytes());
        }
        let small = (1..=SPARE_STREAM_MAX).contains(&stream.capacity());
        if small && self.spare_stream.len() < SPARE_STREAMS {
            self.spare_stream.push(stream);
        }
    }

    /// An empty buffer, recycled when one is spare.
    fn text_buffer(&mut self) -> Vec<u8> {
        match self.spare_text.pop() {
            Some(mut b) => {
                self.spare_bytes -= b.capacity();
                b.clear();
                b
            }
            None => Vec::new(),
        }
    }

    /// `stream` as an owned string, in a recycled buffer when one is spare.
    fn stream_string(&mut self, stream: &str) -> String {
        match self.spare_stream.pop() {
            Some(mut s) => {
                s.clear();
                s.push_str(stream);
                s
            }
            None => stream.to_string(),
        }
    }

    /// Offset of the oldest piece still waiting for its continuation: a checkpoint must not
    /// move past it.
    pub fn oldest_pending_offset(&self) -> Option<u64> {
        self.pending.iter().map(|(_, p)| p.offset).min()
    }

    /// Feeds one file line (without its `\n`) that starts at `offset`; completed records are
    /// pushed to `out`.
    pub fn push_line(&mut self, offset: u64, line: &[u8], out: &mut Vec<Record>) {
        // Docker's own form is decoded by hand; anything else by serde (same fields).
        let buf = self.text_buffer();
        if let Some((log, f)) = super::frame::decode(line, buf) {
            self.push_frame(
                offset,
                Cow::Owned(log),
                f.stream,
                f.time,
                BTreeMap::new(),
                out,
            );
            return;
        }
        let frame: Frame<'_> = match serde_json::from_slice(line) {
            Ok(f) => f,
            Err(e) => {
                // Kept raw, in parts of at most max_line_bytes (each its own event ID).
                let error = format!("invalid docker json-file line: {e}");
                let chunks: Vec<&[u8]> = if line.is_empty() {
                    vec![line]
                } else {
                    line.chunks(self.max_line_bytes).collect()
                };
                let parts = chunks.len();
                for (k, chunk) in chunks.into_iter().enumerate() {
                    out.push(Record {
                        offset: offset + k as u64,
                        text: String::from_utf8_lossy(chunk).into_owned(),
                        stream: String::new(),
                        time_ns: None,
                        attrs: BTreeMap::new(),
                        parse_error: Some(error.clone()),
                        split_part: (parts > 1).then_some(k as u32 + 1),
                        partial: false,
                    });
                }
                return;
            }
        };
        let attrs: BTreeMap<String, String> = frame
            .attrs
            .map(|m| {
                m.into_iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let time = frame.time.as_bytes();
        self.push_frame(offset, frame.log, &frame.stream, time, attrs, out);
    }

    /// One decoded line: a complete record, or a piece to join.
    fn push_frame(
        &mut self,
        offset: u64,
        log: Cow<'_, str>,
        stream: &str,
        time: &[u8],
        attrs: BTreeMap<String, String>,
        out: &mut Vec<Record>,
    ) {
        let (piece, complete) = match strip_newline(&log) {
            Some(p) => (p, true),
            None => (&*log, false),
        };
        let idx = self.pending.iter().position(|(s, _)| s == stream);
        // Only a record's first piece carries its time.
        let time_ns = if idx.is_none() {
            self.times.parse(time)
        } else {
            None
        };
        if idx.is_none() && complete && piece.len() <= self.max_line_bytes {
            // The common case: a whole line in one piece. `log` was unescaped into an owned
            // string (it ends in an escaped `\n`): reuse it.
            let len = piece.len();
            let text = match log {
                Cow::Owned(mut s) => {
                    s.truncate(len);
                    s
                }
                Cow::Borrowed(b) => b[..len].to_string(),
            };
            let stream = self.stream_string(stream);
            out.push(Record {
                offset,
                text,
                stream,
                time_ns,
                attrs,
                parse_error: None,
                split_part: None,
                partial: false,
            });
            return;
        }
        let idx = match idx {
            Some(i) => {
                self.pending[i].1.text.push_str(piece);
                i
            }
            None => {
                let p = Pending {
                    offset,
                    text: piece.to_string(),
                    time_ns,
                    attrs,
                    since: Instant::now(),
                    parts: 0,
                };
                self.pending.push((stream.to_string(), p));
                self.pending.len() - 1
            }
        };
        self.cut_oversize(idx, out);
        if complete {
            let (stream, p) = self.pending.swap_remove(idx);
            if p.parts == 0 || !p.text.is_empty() {
                out.push(Self::finish(stream, p, false));
            }
        }
    }

    fn finish(stream: String, p: Pending, partial: bool) -> Record {
        Record {
            offset: p.offset + p.parts as u64,
            text: p.text,
            stream,
            time_ns: p.time_ns,
            attrs: p.attrs,
            parse_error: None,
            split_part: (p.parts > 0).then_some(p.parts + 1),
            partial,
        }
    }

    /// Emits full-size parts while the pending text exceeds the cap, cutting on a UTF-8
    /// boundary. A part's offset is the pending offset plus the part number, so each part
    /// has its own stable event ID.
    fn cut_oversize(&mut self, idx: usize, out: &mut Vec<Record>) {
        let (stream, p) = &mut self.pending[idx];
        while p.text.len() > self.max_line_bytes {
            let mut cut = self.max_line_bytes;
            while !p.text.is_char_boundary(cut) {
                cut -= 1;
            }
            let rest = p.text.split_off(cut);
            let head = std::mem::replace(&mut p.text, rest);
            p.parts += 1;
            out.push(Record {
                offset: p.offset + (p.parts as u64 - 1),
                text: head,
                stream: stream.clone(),
                time_ns: p.time_ns,
                attrs: p.attrs.clone(),
                parse_error: None,
                split_part: Some(p.parts),
                partial: false,
            });
        }
    }

    /// Flushes pieces older than `timeout` (or all of them when `timeout` is zero), marked
    /// `partial`.
    pub fn flush_stale(&mut self, timeout: Duration, out: &mut Vec<Record>) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.pending.len() {
            if timeout.is_zero() || now.duration_since(self.pending[i].1.since) >= timeout {
                let (stream, p) = self.pending.swap_remove(i);
                out.push(Self::finish(stream, p, true));
            } else {
                i += 1;
            }
        }
        out.sort_by_key(|r| r.offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(log: &str, stream: &str) -> Vec<u8> {
        serde_json::json!({"log": log, "stream": stream, "time": "2019-01-01T11:11:11.111111111Z"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn complete_lines_pass_through() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = Vec::new();
        r.push_line(0, &line("hello\n", "stdout"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "hello");
        assert_eq!(out[0].stream, "stdout");
        assert_eq!(out[0].time_ns, Some(1_546_341_071_111_111_111));
        assert_eq!(r.oldest_pending_offset(), None);
    }

    #[test]
    fn partials_join_per_stream_even_when_interleaved() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = Vec::new();
        r.push_line(0, &line("aaa", "stdout"), &mut out);
        r.push_line(10, &line("err line\n", "stderr"), &mut out);
        assert_eq!(r.oldest_pending_offset(), Some(0));
        r.push_line(20, &line("bbb", "stdout"), &mut out);
        r.push_line(30, &line("ccc\n", "stdout"), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].text, "err line");
        assert_eq!((out[1].offset, out[1].text.as_str()), (0, "aaabbbccc"));
        assert_eq!(r.oldest_pending_offset(), None);
    }

    #[test]
    fn oversize_lines_are_cut_not_dropped() {
        let mut r = Reassembler::new(16 * 1024);
        let mut out = Vec::new();
        let piece = "é".repeat(8 * 1024); // 16 KiB of 2-byte chars
        for i in 0..3 {
            r.push_line(i * 100, &line(&piece, "stdout"), &mut out);
        }
        r.push_line(300, &line("end\n", "stdout"), &mut out);
        let joined: String = out.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(joined, format!("{}end", piece.repeat(3)));
        assert!(out.iter().all(|r| r.text.len() <= 16 * 1024));
        assert_eq!(
            out.iter().map(|r| r.split_part).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(3), Some(4)]
        );
        let offsets: std::collections::HashSet<_> = out.iter().map(|r| r.offset).collect();
        assert_eq!(offsets.len(), out.len(), "each part needs its own event ID");
    }

    #[test]
    fn malformed_lines_are_kept_and_marked() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = Vec::new();
        r.push_line(0, b"{\"log\":\"trunc", &mut out);
        r.push_line(5, b"\xff\xfe not json \0", &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.parse_error.is_some()));
        assert_eq!(out[1].text, "\u{fffd}\u{fffd} not json \0");
    }

    #[test]
    fn stale_partials_flush_marked() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = Vec::new();
        r.push_line(7, &line("no newline yet", "stdout"), &mut out);
        r.flush_stale(Duration::from_secs(3600), &mut out);
        assert!(out.is_empty());
        r.flush_stale(Duration::ZERO, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].partial);
        assert_eq!(out[0].offset, 7);
    }
}
