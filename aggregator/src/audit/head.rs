//! The head (digest) file `head.json`: the last committed sequence number and hash, and the
//! Kafka positions those records cover. Written atomically (temp file, fsync, rename, fsync
//! of the directory) after the records it covers are fsynced.
//!
//! ```json
//! {"format":1,"seq":1042,"hash":"9f86…08","segment":"segment-00000000000000001001.jsonl",
//!  "segment_bytes":52311,"positions":{"sightline.audit/0":2077}}
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::record::ChainHash;
use super::{io_err, AuditError, TopicPartition};

/// Format version of `head.json` written by this build.
pub const HEAD_FORMAT: u32 = 1;
/// Name of the head file in the store directory.
pub const HEAD_FILE: &str = "head.json";
const HEAD_TMP: &str = "head.json.tmp";

/// The committed state of the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// Sequence number of the last committed record (0: none yet).
    pub seq: u64,
    /// Hash of that record ([`ChainHash::GENESIS`] when `seq` is 0).
    pub hash: ChainHash,
    /// File name of the segment holding record `seq` (`None` when `seq` is 0).
    pub segment: Option<String>,
    /// Length in bytes of that segment once record `seq` is in it.
    pub segment_bytes: u64,
    /// Consumer positions covered by the committed records: next Kafka offset to read, per
    /// topic partition.
    pub positions: BTreeMap<TopicPartition, i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: u32,
    seq: u64,
    hash: String,
    segment: Option<String>,
    segment_bytes: u64,
    #[serde(default)]
    positions: BTreeMap<String, i64>,
}

/// Why `head.json` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not JSON of the expected shape.
    #[error("head.json is malformed: {0}")]
    Malformed(String),
    /// Written by a build with another format.
    #[error("head.json has format {0}; this build reads format {HEAD_FORMAT}")]
    UnsupportedFormat(u32),
}

fn tp_key((topic, partition): &TopicPartition) -> String {
    format!("{topic}/{partition}")
}

fn parse_tp(key: &str) -> Option<TopicPartition> {
    let (topic, partition) = key.rsplit_once('/')?;
    if topic.is_empty() {
        return None;
    }
    Some((topic.to_string(), partition.parse().ok()?))
}

impl Head {
    /// Serializes to the JSON form above.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = Wire {
            format: HEAD_FORMAT,
            seq: self.seq,
            hash: self.hash.to_hex(),
            segment: self.segment.clone(),
            segment_bytes: self.segment_bytes,
            positions: self
                .positions
                .iter()
                .map(|(k, v)| (tp_key(k), *v))
                .collect(),
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses the JSON form.
    ///
    /// Errors: [`HeadError::Malformed`] (bad JSON, bad hash, bad position key or a negative
    /// offset), [`HeadError::UnsupportedFormat`].
    pub fn from_json(bytes: &[u8]) -> Result<Head, HeadError> {
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|e| HeadError::Malformed(e.to_string()))?;
        if wire.format != HEAD_FORMAT {
            return Err(HeadError::UnsupportedFormat(wire.format));
        }
        let hash = ChainHash::parse(&wire.hash)
            .ok_or_else(|| HeadError::Malformed(format!("hash {:?} is not 64 hex", wire.hash)))?;
        let mut positions = BTreeMap::new();
        for (k, v) in wire.positions {
            let tp = parse_tp(&k).ok_or_else(|| {
                HeadError::Malformed(format!("position key {k:?} is not <topic>/<partition>"))
            })?;
            if v < 0 {
                return Err(HeadError::Malformed(format!(
                    "position {k:?} = {v} is negative"
                )));
            }
            positions.insert(tp, v);
        }
        Ok(Head {
            seq: wire.seq,
            hash,
            segment: wire.segment,
            segment_bytes: wire.segment_bytes,
            positions,
        })
    }
}

/// Reads `<dir>/head.json`; `Ok(None)` when it does not exist.
///
/// Errors: [`AuditError::Io`]; [`AuditError::Head`] when it does not parse.
pub fn read_head(dir: &Path) -> Result<Option<Head>, AuditError> {
    let path = dir.join(HEAD_FILE);
    match fs::read(&path) {
        Ok(bytes) => Head::from_json(&bytes).map(Some).map_err(AuditError::Head),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Writes `<dir>/head.json` atomically: temp file, fsync, rename, fsync of `dir`.
///
/// Errors: [`AuditError::Io`].
pub fn write_head(dir: &Path, head: &Head) -> Result<(), AuditError> {
    let tmp = dir.join(HEAD_TMP);
    let path = dir.join(HEAD_FILE);
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&head.to_json())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir)
}

/// Fsyncs a directory so a rename or a new file in it is durable.
///
/// Errors: [`AuditError::Io`].
pub fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes a temp head file left by a crash during [`write_head`].
pub fn remove_stale_tmp(dir: &Path) {
    let _ = fs::remove_file(dir.join(HEAD_TMP));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trip_and_errors() {
        let head = Head {
            seq: 7,
            hash: ChainHash([3; 32]),
            segment: Some("segment-00000000000000000001.jsonl".into()),
            segment_bytes: 1234,
            positions: [(("sightline.audit".to_string(), 2), 99)].into(),
        };
        assert_eq!(Head::from_json(&head.to_json()).unwrap(), head);
        assert!(matches!(
            Head::from_json(br#"{"format":2,"seq":0,"hash":"","segment":null,"segment_bytes":0}"#),
            Err(HeadError::UnsupportedFormat(2))
        ));
        assert!(matches!(
            Head::from_json(b"{"),
            Err(HeadError::Malformed(_))
        ));
        let bad_key = format!(
            r#"{{"format":1,"seq":0,"hash":"{}","segment":null,"segment_bytes":0,"positions":{{"x":1}}}}"#,
            ChainHash::GENESIS
        );
        assert!(matches!(
            Head::from_json(bad_key.as_bytes()),
            Err(HeadError::Malformed(_))
        ));
    }
}
