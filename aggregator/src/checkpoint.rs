//! The index commit payload: which Kafka offsets and source positions an index commit
//! covers. It is the source of truth for exactly-once indexing (Kafka's committed offsets
//! only show lag).
//!
//! JSON form (stored with each tantivy commit):
//!
//! ```json
//! {
//!   "version": 1,
//!   "offsets": { "sightline.logs/0": 1042 },
//!   "watermarks": {
//!     "sightline.logs/0": { "000000000000002a": { "offset": 9000, "seen_unix_s": 1795237200 } }
//!   }
//! }
//! ```
//!
//! - `offsets["<topic>/<partition>"]`: the next Kafka offset to index (all below are in).
//! - `watermarks["<topic>/<partition>"]["<source_id, 16 hex>"]`: the highest source byte
//!   offset indexed for that source in that partition, and when (Unix seconds) that source
//!   was last seen; entries unseen for [`WATERMARK_RETENTION_S`] are dropped.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Version of the payload format written by this build.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Watermarks of sources not seen for this long (7 days, in seconds) are pruned at commit: a
/// collector down for longer re-sends events that are then indexed again.
pub const WATERMARK_RETENTION_S: u64 = 7 * 24 * 3600;

/// A Kafka topic partition.
pub type TopicPartition = (String, i32);

/// Why a stored payload cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not JSON of the expected shape.
    #[error("index commit payload is not a Sightline checkpoint: {0}")]
    Malformed(String),
    /// Written by a build with another payload version.
    #[error(
        "index commit payload has version {found}; this build reads version {CHECKPOINT_VERSION}"
    )]
    UnsupportedVersion {
        /// Version found.
        found: u32,
    },
}

/// Highest source offset indexed for one source in one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Highest `SourcePosition::offset` indexed (bytes into the source).
    pub offset: u64,
    /// Last time (Unix seconds) an event of this source was seen in this partition.
    pub seen_unix_s: u64,
}

/// The in-memory checkpoint state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Next Kafka offset to index, per partition.
    pub offsets: BTreeMap<TopicPartition, i64>,
    /// Watermarks per partition, then per source ID.
    pub watermarks: HashMap<TopicPartition, HashMap<u64, Watermark>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    version: u32,
    #[serde(default)]
    offsets: BTreeMap<String, i64>,
    #[serde(default)]
    watermarks: BTreeMap<String, BTreeMap<String, Watermark>>,
}

fn tp_key((topic, partition): &TopicPartition) -> String {
    format!("{topic}/{partition}")
}

fn parse_tp(key: &str) -> Result<TopicPartition, CheckpointError> {
    let (topic, p) = key
        .rsplit_once('/')
        .ok_or_else(|| CheckpointError::Malformed(format!("bad partition key {key:?}")))?;
    let p = p
        .parse()
        .map_err(|_| CheckpointError::Malformed(format!("bad partition key {key:?}")))?;
    Ok((topic.to_string(), p))
}

impl Checkpoint {
    /// Parses a commit payload; `None` (a fresh index) gives the empty checkpoint.
    ///
    /// Errors: [`CheckpointError`] for anything that is not a version-1 checkpoint.
    pub fn from_payload(payload: Option<&str>) -> Result<Self, CheckpointError> {
        let Some(text) = payload else {
            return Ok(Self::default());
        };
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly =
            serde_json::from_str(text).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        if v.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::UnsupportedVersion { found: v.version });
        }
        let wire: Wire =
            serde_json::from_str(text).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        let mut cp = Checkpoint::default();
        for (k, off) in wire.offsets {
            cp.offsets.insert(parse_tp(&k)?, off);
        }
        for (k, sources) in wire.watermarks {
            let tp = parse_tp(&k)?;
            let mut m = HashMap::with_capacity(sources.len());
            for (sid, wm) in sources {
                let sid = u64::from_str_radix(&sid, 16)
                    .map_err(|_| CheckpointError::Malformed(format!("bad source id {sid:?}")))?;
                m.insert(sid, wm);
            }
            cp.watermarks.insert(tp, m);
        }
        Ok(cp)
    }

    /// Serialises to the JSON payload described in the module docs (deterministic order).
    pub fn to_payload(&self) -> String {
        let wire = Wire {
            version: CHECKPOINT_VERSION,
            offsets: self.offsets.iter().map(|(k, v)| (tp_key(k), *v)).collect(),
            watermarks: self
                .watermarks
                .iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(k, m)| {
                    let inner = m.iter().map(|(s, w)| (format!("{s:016x}"), *w)).collect();
                    (tp_key(k), inner)
                })
                .collect(),
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Drops watermarks last seen more than [`WATERMARK_RETENTION_S`] before `now_unix_s`.
    /// Returns how many were dropped.
    pub fn prune(&mut self, now_unix_s: u64) -> usize {
        let mut dropped = 0;
        for m in self.watermarks.values_mut() {
            let before = m.len();
            m.retain(|_, w| now_unix_s.saturating_sub(w.seen_unix_s) <= WATERMARK_RETENTION_S);
            dropped += before - m.len();
        }
        self.watermarks.retain(|_, m| !m.is_empty());
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_exact_json() {
        let mut cp = Checkpoint::default();
        cp.offsets.insert(("sightline.logs".into(), 0), 1042);
        cp.offsets.insert(("sightline.logs".into(), 3), 7);
        cp.watermarks.insert(
            ("sightline.logs".into(), 0),
            HashMap::from([(
                42,
                Watermark {
                    offset: 9000,
                    seen_unix_s: 1_795_237_200,
                },
            )]),
        );
        let text = cp.to_payload();
        assert_eq!(
            text,
            r#"{"version":1,"offsets":{"sightline.logs/0":1042,"sightline.logs/3":7},"watermarks":{"sightline.logs/0":{"000000000000002a":{"offset":9000,"seen_unix_s":1795237200}}}}"#
        );
        assert_eq!(Checkpoint::from_payload(Some(&text)).unwrap(), cp);
        assert_eq!(
            Checkpoint::from_payload(None).unwrap(),
            Checkpoint::default()
        );
    }

    #[test]
    fn refuses_foreign_payloads() {
        assert!(matches!(
            Checkpoint::from_payload(Some(r#"{"version":2,"offsets":{}}"#)),
            Err(CheckpointError::UnsupportedVersion { found: 2 })
        ));
        assert!(matches!(
            Checkpoint::from_payload(Some("hello")),
            Err(CheckpointError::Malformed(_))
        ));
        assert!(matches!(
            Checkpoint::from_payload(Some(r#"{"version":1,"offsets":{"nopartition":1}}"#)),
            Err(CheckpointError::Malformed(_))
        ));
    }

    #[test]
    fn prune_drops_only_stale_sources() {
        let mut cp = Checkpoint::default();
        let wm = |seen| Watermark {
            offset: 1,
            seen_unix_s: seen,
        };
        cp.watermarks.insert(
            ("t".into(), 0),
            HashMap::from([(1, wm(1_000)), (2, wm(100_000))]),
        );
        cp.watermarks
            .insert(("t".into(), 1), HashMap::from([(3, wm(1_000))]));
        let now = 1_000 + WATERMARK_RETENTION_S + 1;
        assert_eq!(cp.prune(now), 2);
        assert_eq!(cp.watermarks.len(), 1);
        assert_eq!(cp.watermarks[&("t".into(), 0)].len(), 1);
        assert!(cp.watermarks[&("t".into(), 0)].contains_key(&2));
    }
}
