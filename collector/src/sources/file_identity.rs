//! Identifying tailed files across renames, and finding a log's rotated files.
//!
//! A file is identified by the XXH3-64 of its first line (its *fingerprint*, the same
//! definition as the json-file tailer's), so a checkpoint still finds it after the writer
//! renamed it; while the collector runs, files are also told apart by `(device, inode)`,
//! which stays valid as long as the file is held open (an inode is not reused before its
//! last close, research notes §5.2 item 3).
//!
//! Rotated files of a log `<name>` ([`family_files`]) are `<name>.<suffix>` where the suffix
//! is either a seelog `rollingfile` index (`type="size"`: `<name>.1`, `<name>.2`, …, a
//! higher index being newer, seelog `getNextRollName`) or a timestamp (`type="date"` with
//! `datepattern="2006-01-02-15"`: `<name>.2026-11-21-07`; ECS agents ≤ 1.35.0 also wrote
//! their live file as `<name>.<timestamp>`), research notes §3.1. Other suffixes
//! (`.gz`, `.bak`, editor files) are not part of the family.

use std::cmp::Ordering;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::checkpoint::FileCheckpoint;

/// Bytes of a file's head that are hashed at most.
pub const FINGERPRINT_BYTES: usize = 4096;

/// The first line of a file (without its `\n`, at most [`FINGERPRINT_BYTES`]), hashed with
/// XXH3-64; `None` while the file has no complete first line and fewer than
/// [`FINGERPRINT_BYTES`] bytes.
///
/// Errors: the read error.
pub fn fingerprint(file: &File) -> std::io::Result<Option<u64>> {
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let n = read_head(file, &mut buf)?;
    Ok(match memchr::memchr(b'\n', &buf[..n]) {
        Some(end) => Some(xxhash_rust::xxh3::xxh3_64(&buf[..end])),
        None if n == buf.len() => Some(xxhash_rust::xxh3::xxh3_64(&buf)),
        None => None,
    })
}

/// The fingerprint of a file that will not grow any more but has no complete first line:
/// XXH3-64 of all its bytes (fewer than [`FINGERPRINT_BYTES`]); `None` when it is empty.
///
/// Errors: the read error.
pub fn head_fingerprint(file: &File) -> std::io::Result<Option<u64>> {
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let n = read_head(file, &mut buf)?;
    Ok((n > 0).then(|| xxhash_rust::xxh3::xxh3_64(&buf[..n])))
}

fn read_head(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = file.read_at(&mut buf[n..], n as u64)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

/// [`fingerprint`] of the file at `path`; `None` when it cannot be opened or read.
pub fn file_fingerprint(path: &Path) -> Option<u64> {
    File::open(path)
        .ok()
        .and_then(|f| fingerprint(&f).ok().flatten())
}

/// Stable 64-bit ID of one file: XXH3-64 of `owner` (what the file belongs to: a container
/// ID, or host and log name) followed by the fingerprint, 8 bytes little-endian. The
/// json-file tailer uses the same formula with the container ID as `owner`.
pub fn source_id(owner: &str, fingerprint: u64) -> u64 {
    let mut bytes = Vec::with_capacity(owner.len() + 8);
    bytes.extend_from_slice(owner.as_bytes());
    bytes.extend_from_slice(&fingerprint.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// `(device, inode)` of file metadata.
pub fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// What a rotated file's suffix says about its age.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RotationSuffix {
    /// seelog size rolling, `<name>.<N>` (1–6 digits): a higher index is newer.
    Index(u64),
    /// A timestamp: a 4-digit year first, then only digits and `-`, `_`, `.`, `:`, `T`, at
    /// least 8 digits in all (`2026-11-21-07`). Holds the digits alone; ordered by them.
    Time(String),
}

/// Classifies the suffix after `<name>.`; `None` for anything that is not a rotated copy.
pub fn rotation_suffix(suffix: &str) -> Option<RotationSuffix> {
    let b = suffix.as_bytes();
    if !b.is_empty() && b.len() <= 6 && b.iter().all(u8::is_ascii_digit) {
        return suffix.parse().ok().map(RotationSuffix::Index);
    }
    let year = b.len() >= 4 && b[..4].iter().all(u8::is_ascii_digit);
    let allowed = b
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.' | b':' | b'T'));
    let digits: String = suffix.chars().filter(char::is_ascii_digit).collect();
    (year && allowed && digits.len() >= 8).then_some(RotationSuffix::Time(digits))
}

/// One file of a log family on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyFile {
    /// Its path.
    pub path: PathBuf,
    /// `(device, inode)`.
    pub id: (u64, u64),
    /// Last modification time.
    pub modified: SystemTime,
    /// `None` for the live file `<name>`, else its suffix.
    pub suffix: Option<RotationSuffix>,
}

/// The files of log `name` in `dir`, oldest first: rotated copies (`<name>.<suffix>`, see
/// [`rotation_suffix`]) ordered by suffix when all suffixes are of one kind, else by
/// modification time (then name); the live file `<name>`, when present, last. Only regular
/// files (symbolic links followed) count.
///
/// Errors: listing `dir` failed (`NotFound` when it does not exist). A file that vanishes
/// while being listed is skipped.
pub fn family_files(dir: &Path, name: &str) -> std::io::Result<Vec<FamilyFile>> {
    let prefix = format!("{name}.");
    let mut rotated = Vec::new();
    let mut live = None;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let suffix = if file_name == name {
            None
        } else if let Some(s) = file_name.strip_prefix(&prefix).and_then(rotation_suffix) {
            Some(s)
        } else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let f = FamilyFile {
            path,
            id: file_id(&meta),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            suffix,
        };
        if f.suffix.is_none() {
            live = Some(f);
        } else {
            rotated.push(f);
        }
    }
    let kind = |f: &FamilyFile| matches!(f.suffix, Some(RotationSuffix::Index(_)));
    let one_kind = rotated.windows(2).all(|w| kind(&w[0]) == kind(&w[1]));
    rotated.sort_by(|a, b| {
        let by_time = a
            .modified
            .cmp(&b.modified)
            .then_with(|| a.path.cmp(&b.path));
        if one_kind {
            a.suffix.cmp(&b.suffix).then(by_time)
        } else {
            by_time
        }
    });
    rotated.extend(live);
    Ok(rotated)
}

/// A file to read and where to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEntry {
    /// The file's path when planned.
    pub path: PathBuf,
    /// Its `(device, inode)` when planned: a file opened under `path` with another ID was
    /// renamed in between, and the plan must be made again.
    pub id: (u64, u64),
    /// Byte offset to start at.
    pub offset: u64,
}

fn entries(files: &[FamilyFile]) -> Vec<PlanEntry> {
    files
        .iter()
        .map(|f| PlanEntry {
            path: f.path.clone(),
            id: f.id,
            offset: 0,
        })
        .collect()
}

/// Which of `files` (oldest first, as [`family_files`] returns them) to read, in order, to
/// resume from `checkpoint`: the checkpointed file (the oldest one with its fingerprint) at
/// its offset, then every newer file from 0. Without a checkpoint every file from 0. When
/// the checkpointed file is gone (rotated away and deleted while the collector was stopped),
/// every file from 0 as well, with a warning: duplicates rather than losses (replays keep
/// their event IDs).
pub fn resume_plan(files: &[FamilyFile], checkpoint: Option<&FileCheckpoint>) -> Vec<PlanEntry> {
    let Some(cp) = checkpoint else {
        return entries(files);
    };
    let want = u64::from_str_radix(&cp.fingerprint, 16).ok();
    let found = want.and_then(|w| {
        files.iter().position(|f| {
            let fp = File::open(&f.path).ok().and_then(|h| {
                // A file finished without a complete first line was checkpointed under
                // its head's hash.
                fingerprint(&h)
                    .ok()
                    .flatten()
                    .or_else(|| head_fingerprint(&h).ok().flatten())
            });
            fp == Some(w)
        })
    });
    match found {
        Some(k) => {
            let mut plan = entries(&files[k..]);
            plan[0].offset = cp.offset;
            plan
        }
        None => {
            if !files.is_empty() {
                tracing::warn!(path = %cp.path.display(), "checkpointed file not found (rotated away while stopped?); reading every file still on disk");
            }
            entries(files)
        }
    }
}

/// A file that was read to its end, for finding the files after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drained {
    /// `(device, inode)` while it was open.
    pub id: (u64, u64),
    /// Its fingerprint.
    pub fingerprint: u64,
    /// Its last modification time.
    pub modified: SystemTime,
}

/// The files of `files` (oldest first) newer than `done`, oldest first, each from 0. `done`
/// is found by `(device, inode)`, else by fingerprint; when it is gone from the listing
/// (deleted), the files modified at or after it. Empty while nothing newer exists.
pub fn files_after(files: &[FamilyFile], done: &Drained) -> Vec<PlanEntry> {
    let at = files.iter().position(|f| f.id == done.id).or_else(|| {
        files
            .iter()
            .position(|f| file_fingerprint(&f.path) == Some(done.fingerprint))
    });
    match at {
        Some(k) => entries(&files[k + 1..]),
        None => {
            let newer: Vec<FamilyFile> = files
                .iter()
                .filter(|f| f.modified.cmp(&done.modified) != Ordering::Less)
                .cloned()
                .collect();
            entries(&newer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(rotation_suffix("1"), Some(RotationSuffix::Index(1)));
        assert_eq!(rotation_suffix("24"), Some(RotationSuffix::Index(24)));
        assert_eq!(
            rotation_suffix("2026-11-21-07"),
            Some(RotationSuffix::Time("2026112107".into()))
        );
        assert_eq!(
            rotation_suffix("2016-08-15T15:54:41"),
            Some(RotationSuffix::Time("20160815155441".into()))
        );
        for other in ["gz", "2026-11-21-07.gz", "", "swp", "1234567", "2026-11"] {
            assert_eq!(rotation_suffix(other), None, "{other}");
        }
        assert!(
            rotation_suffix("2026-11-21-07").unwrap() > rotation_suffix("2026-11-20-23").unwrap()
        );
        assert!(rotation_suffix("10").unwrap() > rotation_suffix("9").unwrap());
    }

    #[test]
    fn family_order_and_plans() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, text) in [
            ("ecs-agent.log", "live\n"),
            ("ecs-agent.log.2026-11-21-07", "h07\n"),
            ("ecs-agent.log.2026-11-20-23", "h23\n"),
            ("ecs-agent.log.2026-11-21-07.gz", "zip\n"),
            ("ecs-init.log", "init\n"),
            ("ecs-agent.logx", "other\n"),
        ] {
            std::fs::write(d.join(name), text).unwrap();
        }
        std::fs::create_dir(d.join("ecs-agent.log.2026-11-21-08")).unwrap();
        let files = family_files(d, "ecs-agent.log").unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "ecs-agent.log.2026-11-20-23",
                "ecs-agent.log.2026-11-21-07",
                "ecs-agent.log"
            ]
        );
        let offsets = |p: &[PlanEntry]| p.iter().map(|e| e.offset).collect::<Vec<_>>();
        assert_eq!(offsets(&resume_plan(&files, None)), [0, 0, 0]);
        let cp = FileCheckpoint {
            path: d.join("ecs-agent.log"),
            fingerprint: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"h07")),
            offset: 2,
        };
        let plan = resume_plan(&files, Some(&cp));
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].path, files[1].path);
        assert_eq!(offsets(&plan), [2, 0]);
        let gone = FileCheckpoint {
            fingerprint: "0123456789abcdef".into(),
            ..cp
        };
        assert_eq!(resume_plan(&files, Some(&gone)).len(), 3);
        let done = Drained {
            id: files[0].id,
            fingerprint: 1,
            modified: files[0].modified,
        };
        let after = files_after(&files, &done);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].path, files[1].path);
        assert!(files_after(
            &files,
            &Drained {
                id: files[2].id,
                ..done
            }
        )
        .is_empty());
    }
}
