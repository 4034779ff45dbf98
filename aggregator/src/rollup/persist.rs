//! On-disk format of `<data_dir>/rollups` (version 1; see `docs/rollups.md`).
//!
//! - `segment-<res>-<YYYY-MM-DD>.jsonl`: closed windows of one resolution whose window end
//!   falls on that UTC day, appended as they close. Line 1 is a header
//!   `{"format":"sightline-rollup-segment","version":1}`; every line is
//!   `<crc32 of the JSON, 8 hex digits> <JSON>\n`, a window being
//!   `{"key":{"service":..,"cluster":..},"end":<ms>,"v":{"logs":..,"metrics":..}}`.
//! - `snapshot.json`: the commit point, replaced atomically (temp file, fsync, rename,
//!   directory fsync): format version, watermark, open windows (with their event IDs),
//!   sample history, counters, **Kafka positions**, and the committed length of every
//!   segment. Bytes of a segment past its committed length (a crash between the append and
//!   the snapshot) are cut off when the store opens, so the windows, the de-duplication
//!   state and the positions always come from the same flush.
//!
//! A flush writes only the windows closed since the previous flush plus the snapshot, so
//! its cost is proportional to what changed and to the open state, not to retention.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::RollupConfig;
use super::from_logs::OpenLogs;
use super::from_metrics::History;
use super::store::{RollupCounters, RollupError, RollupStore};
use super::window::{LogAgg, Resolution, SeriesKey, WindowValues};

/// Version of the files written.
pub const FORMAT_VERSION: u32 = 1;
const SNAPSHOT: &str = "snapshot.json";
const SEGMENT_FORMAT: &str = "sightline-rollup-segment";
const SNAPSHOT_FORMAT: &str = "sightline-rollup-snapshot";

/// Persistence state of a store opened on a directory.
#[derive(Debug)]
pub struct Persister {
    dir: PathBuf,
    /// Segment file name → committed length, bytes.
    segments: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct OpenWindow {
    key: SeriesKey,
    start: i64,
    logs: LogAgg,
    ids: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: String,
    version: u32,
    watermark_ms: i64,
    closed_through_ms: i64,
    positions: Vec<(String, i32, i64)>,
    counters: RollupCounters,
    open: Vec<OpenWindow>,
    history: History,
    segments: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    key: SeriesKey,
    end: i64,
    v: WindowValues,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RollupError + '_ {
    move |source| RollupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, message: impl Into<String>) -> RollupError {
    RollupError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn segment_name(res: Resolution, end_ms: i64) -> String {
    // The window's last instant decides its day.
    let secs = (end_ms - 1).div_euclid(1000);
    let date = time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|d| d.date())
        .unwrap_or(time::Date::MIN);
    format!(
        "segment-{}-{:04}-{:02}-{:02}.jsonl",
        res.as_str(),
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// (resolution, first ms after the day) of a segment file name.
fn segment_day_end(name: &str) -> Option<(Resolution, i64)> {
    let rest = name.strip_prefix("segment-")?.strip_suffix(".jsonl")?;
    let (res, date) = rest.split_once('-')?;
    let res = match res {
        "10s" => Resolution::S10,
        "1m" => Resolution::M1,
        _ => return None,
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(date, &fmt).ok()?;
    let next = d.next_day()?.midnight().assume_utc();
    Some((res, next.unix_timestamp() * 1000))
}

fn line(json: &str) -> String {
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

impl RollupStore {
    /// Opens (or creates) the store persisted in `dir` (the aggregator passes
    /// `<data_dir>/rollups`): reads the snapshot and the committed part of each segment,
    /// cuts uncommitted bytes, deletes segments no snapshot references. Errors: an invalid
    /// config, I/O, or a file in an unknown format, another version, or with a bad CRC.
    pub fn open(dir: &Path, cfg: RollupConfig) -> Result<Self, RollupError> {
        let mut store = RollupStore::new(cfg)?;
        fs::create_dir_all(dir).map_err(io(dir))?;
        let snap_path = dir.join(SNAPSHOT);
        let snapshot: Option<Snapshot> = match fs::read(&snap_path) {
            Ok(bytes) => {
                let s: Snapshot = serde_json::from_slice(&bytes)
                    .map_err(|e| format_err(&snap_path, e.to_string()))?;
                if s.format != SNAPSHOT_FORMAT || s.version != FORMAT_VERSION {
                    return Err(format_err(
                        &snap_path,
                        format!(
                            "format {:?} version {} is not supported",
                            s.format, s.version
                        ),
                    ));
                }
                Some(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&snap_path)(e)),
        };
        let committed = snapshot
            .as_ref()
            .map(|s| s.segments.clone())
            .unwrap_or_default();
        // Segments: load committed prefixes, drop the rest.
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some((res, _)) = segment_day_end(&name) else {
                continue;
            };
            match committed.get(&name) {
                None => fs::remove_file(&path).map_err(io(&path))?,
                Some(&len) => store.load_segment(&path, res, len)?,
            }
        }
        if let Some(s) = snapshot {
            store.watermark_ms = s.watermark_ms;
            store.closed_through_ms = s.closed_through_ms;
            store.positions = s
                .positions
                .into_iter()
                .map(|(t, p, o)| ((t, p), o))
                .collect();
            store.counters = s.counters;
            store.history = s.history;
            let names = store.classifier.pattern_names.clone();
            for w in s.open {
                let mut open = OpenLogs {
                    pattern_counts: names
                        .iter()
                        .map(|n| w.logs.patterns.get(n).copied().unwrap_or(0))
                        .collect(),
                    agg: w.logs,
                    ids: w.ids.into_iter().collect(),
                };
                open.agg.patterns.clear();
                store
                    .open_logs
                    .entry(w.key.service)
                    .or_default()
                    .entry(w.key.cluster)
                    .or_default()
                    .insert(w.start, open);
            }
        }
        store.persist = Some(Persister {
            dir: dir.to_path_buf(),
            segments: committed,
        });
        Ok(store)
    }

    fn load_segment(&mut self, path: &Path, res: Resolution, len: u64) -> Result<(), RollupError> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let actual = f.metadata().map_err(io(path))?.len();
        if actual < len {
            return Err(format_err(
                path,
                format!("{actual} bytes, the snapshot committed {len}"),
            ));
        }
        if actual > len {
            f.set_len(len).map_err(io(path))?;
            f.sync_all().map_err(io(path))?;
        }
        f.seek(SeekFrom::Start(0)).map_err(io(path))?;
        let reader = BufReader::new(f.take(len));
        for (i, l) in reader.lines().enumerate() {
            let l = l.map_err(io(path))?;
            let n = i + 1;
            let (crc, json) = l
                .split_once(' ')
                .ok_or_else(|| format_err(path, format!("line {n}: no checksum")))?;
            if u32::from_str_radix(crc, 16).ok() != Some(crc32fast::hash(json.as_bytes())) {
                return Err(format_err(path, format!("line {n}: checksum mismatch")));
            }
            if n == 1 {
                let h: serde_json::Value = serde_json::from_str(json)
                    .map_err(|e| format_err(path, format!("line 1: {e}")))?;
                if h["format"] != SEGMENT_FORMAT || h["version"] != FORMAT_VERSION {
                    return Err(format_err(path, format!("unsupported header {json}")));
                }
                continue;
            }
            let r: Record = serde_json::from_str(json)
                .map_err(|e| format_err(path, format!("line {n}: {e}")))?;
            self.closed
                .entry(res)
                .or_default()
                .entry(r.key)
                .or_default()
                .insert(r.end, r.v);
        }
        Ok(())
    }

    /// Writes the windows closed since the last flush (appended to their day's segment,
    /// fsynced), deletes segments past retention, then replaces the snapshot atomically.
    /// Call it every `flush_interval` and on shutdown; no-op for an in-memory store.
    /// Errors: I/O (the store stays consistent and a later flush retries).
    pub fn flush(&mut self) -> Result<(), RollupError> {
        let Some(p) = self.persist.as_ref() else {
            return Ok(());
        };
        let dir = p.dir.clone();
        let mut segments = p.segments.clone();
        // 1. Closed windows, grouped by segment.
        let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (res, key, end) in &self.pending {
            let Some(v) = self
                .closed
                .get(res)
                .and_then(|c| c.get(key))
                .and_then(|w| w.get(end))
            else {
                continue; // already past retention
            };
            let json = serde_json::to_string(&Record {
                key: key.clone(),
                end: *end,
                v: v.clone(),
            })
            .map_err(|e| format_err(&dir, e.to_string()))?;
            by_file
                .entry(segment_name(*res, *end))
                .or_default()
                .push(line(&json));
        }
        for (name, lines) in by_file {
            let path = dir.join(&name);
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            let mut len = segments.get(&name).copied().unwrap_or(0);
            f.set_len(len).map_err(io(&path))?;
            f.seek(SeekFrom::Start(len)).map_err(io(&path))?;
            let mut buf = String::new();
            if len == 0 {
                buf.push_str(&line(&format!(
                    "{{\"format\":\"{SEGMENT_FORMAT}\",\"version\":{FORMAT_VERSION}}}"
                )));
            }
            for l in lines {
                buf.push_str(&l);
            }
            f.write_all(buf.as_bytes()).map_err(io(&path))?;
            f.sync_data().map_err(io(&path))?;
            len += buf.len() as u64;
            segments.insert(name, len);
        }
        // 2. Retention.
        let wm = self.watermark_ms;
        let mut expired = Vec::new();
        segments.retain(|name, _| {
            let keep = match segment_day_end(name) {
                Some((Resolution::S10, end)) => end > wm.saturating_sub(self.cfg.retention_10s),
                Some((Resolution::M1, end)) => end > wm.saturating_sub(self.cfg.retention_1m),
                None => false,
            };
            if !keep {
                expired.push(name.clone());
            }
            keep
        });
        // 3. Snapshot: the commit point.
        let snap = Snapshot {
            format: SNAPSHOT_FORMAT.into(),
            version: FORMAT_VERSION,
            watermark_ms: self.watermark_ms,
            closed_through_ms: self.closed_through_ms,
            positions: self
                .positions
                .iter()
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect(),
            counters: self.counters.clone(),
            open: self.open_windows(),
            history: self.history.clone(),
            segments: segments.clone(),
        };
        let bytes = serde_json::to_vec(&snap).map_err(|e| format_err(&dir, e.to_string()))?;
        let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        let dst = dir.join(SNAPSHOT);
        fs::rename(&tmp, &dst).map_err(io(&dst))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        for name in expired {
            let _ = fs::remove_file(dir.join(name));
        }
        self.pending.clear();
        if let Some(p) = self.persist.as_mut() {
            p.segments = segments;
        }
        Ok(())
    }

    fn open_windows(&self) -> Vec<OpenWindow> {
        let names = &self.classifier.pattern_names;
        let mut out = Vec::new();
        for (service, by_cluster) in &self.open_logs {
            for (cluster, windows) in by_cluster {
                for (start, w) in windows {
                    let mut ids: Vec<u64> = w.ids.iter().copied().collect();
                    ids.sort_unstable();
                    out.push(OpenWindow {
                        key: SeriesKey {
                            service: service.clone(),
                            cluster: cluster.clone(),
                        },
                        start: *start,
                        logs: w.to_agg(names),
                        ids,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.key, a.start).cmp(&(&b.key, b.start)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        // 2024-05-01T00:00:00Z = 1714521600 s.
        let end = 1_714_521_600_000;
        assert_eq!(
            segment_name(Resolution::S10, end),
            "segment-10s-2024-04-30.jsonl"
        );
        assert_eq!(
            segment_name(Resolution::M1, end + 60_000),
            "segment-1m-2024-05-01.jsonl"
        );
        assert_eq!(
            segment_day_end("segment-1m-2024-05-01.jsonl"),
            Some((Resolution::M1, end + 86_400_000))
        );
        assert_eq!(segment_day_end("segment-5m-2024-05-01.jsonl"), None);
    }
}
