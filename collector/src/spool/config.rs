//! The spool's configuration (`[spool]` in the collector's TOML) and its validation.
//!
//! ```toml
//! [spool]
//! dir = "/var/lib/sightline-collector/spool"   # default <data_dir>/spool
//! max_bytes = 1073741824                       # 1 GiB of segment files at most
//! segment_bytes = 67108864                     # 64 MiB per segment file
//! fsync = "always"                             # or fsync = { interval_ms = 500 }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};

/// Smallest accepted `segment_bytes`: 4 KiB.
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest accepted `segment_bytes`: 4 GiB − 1 (a record's length is stored as a u32).
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

/// Spool settings. Every field is optional in TOML; the defaults are given per field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Spool log batches to disk while Kafka does not acknowledge them in time. Default true.
    pub enabled: bool,
    /// A log batch not acknowledged by Kafka this long after it was produced goes to the
    /// spool (with every later batch, until the spool is drained), ms. Default 5000.
    pub spill_after_ms: u64,
    /// Directory holding the segment files and the ack cursor. Default `<data_dir>/spool`
    /// (see [`SpoolConfig::resolve_dir`]). One collector process per directory.
    pub dir: Option<PathBuf>,
    /// Upper bound on the total size of the segment files, bytes (segment headers, frame
    /// headers, payloads, and the acknowledged head of the oldest segment until that segment
    /// is deleted). An append that would pass it fails with
    /// [`SpoolError::Full`](super::SpoolError::Full); the spool never drops records to make
    /// room. At least 2 × `segment_bytes`. Default 1073741824 (1 GiB).
    pub max_bytes: u64,
    /// Size at which a segment file is closed and the next one started, bytes. A record's
    /// payload can be at most `segment_bytes − 36` bytes (24-byte segment header, 12-byte frame
    /// header), so this must exceed the largest Kafka message by at least 36 bytes.
    /// 4096 ..= 4294967295. Default 67108864 (64 MiB).
    pub segment_bytes: u64,
    /// When appended records are forced to disk. Default `"always"`.
    pub fsync: FsyncPolicy,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            enabled: true,
            spill_after_ms: 5000,
            dir: None,
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
        }
    }
}

/// When appended records are `fdatasync`ed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// `fsync = "always"`: every [`append`](super::Spool::append) syncs before it returns, so
    /// an `Ok` record survives a crash or power loss.
    Always,
    /// `fsync = { interval_ms = N }`: an append syncs when the last sync is at least N ms old,
    /// so up to N ms of appended records (more if appends stop) can be lost on power loss;
    /// call [`Spool::sync`](super::Spool::sync) before relying on them (e.g. before advancing
    /// a source checkpoint). N ≥ 1.
    IntervalMs(u64),
}

/// A spool setting is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolConfigError {
    /// `segment_bytes` outside 4096 ..= 4294967295.
    #[error(
        "spool.segment_bytes must be between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES}, got {0}"
    )]
    SegmentBytes(u64),
    /// `max_bytes` below twice `segment_bytes`.
    #[error(
        "spool.max_bytes ({max_bytes}) must be at least 2 × spool.segment_bytes ({segment_bytes})"
    )]
    MaxBytes {
        /// The configured bound.
        max_bytes: u64,
        /// The configured segment size.
        segment_bytes: u64,
    },
    /// `fsync = { interval_ms = 0 }`.
    #[error(
        "spool.fsync.interval_ms must be at least 1 (use fsync = \"always\" to sync every append)"
    )]
    ZeroInterval,
    /// `spill_after_ms` is 0.
    #[error("spool.spill_after_ms must be at least 1")]
    SpillAfter,
}

impl SpoolConfig {
    /// Checks ranges without touching the disk.
    pub fn validate(&self) -> Result<(), SpoolConfigError> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(SpoolConfigError::SegmentBytes(self.segment_bytes));
        }
        if self.max_bytes / 2 < self.segment_bytes {
            return Err(SpoolConfigError::MaxBytes {
                max_bytes: self.max_bytes,
                segment_bytes: self.segment_bytes,
            });
        }
        if self.spill_after_ms == 0 {
            return Err(SpoolConfigError::SpillAfter);
        }
        if self.fsync == FsyncPolicy::IntervalMs(0) {
            return Err(SpoolConfigError::ZeroInterval);
        }
        Ok(())
    }

    /// The spool directory: `dir` if set, else `<data_dir>/spool`.
    pub fn resolve_dir(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("spool"))
    }

    /// Largest record payload an append accepts, bytes: `segment_bytes − 36`.
    pub fn max_record_bytes(&self) -> u64 {
        self.segment_bytes
            .saturating_sub(SEGMENT_HEADER_LEN + FRAME_HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values_and_valid() {
        let c = SpoolConfig::default();
        assert_eq!(c.max_bytes, 1_073_741_824);
        assert_eq!(c.segment_bytes, 67_108_864);
        assert_eq!(c.fsync, FsyncPolicy::Always);
        assert_eq!(c.max_record_bytes(), 67_108_864 - 36);
        assert_eq!(
            c.resolve_dir(Path::new("/data")),
            PathBuf::from("/data/spool")
        );
        c.validate().unwrap();
    }

    #[test]
    fn toml_forms_parse_and_unknown_fields_are_rejected() {
        let c: SpoolConfig = toml::from_str(
            "dir = \"/s\"\nmax_bytes = 10000\nsegment_bytes = 5000\nfsync = { interval_ms = 250 }",
        )
        .unwrap();
        assert_eq!(
            c,
            SpoolConfig {
                enabled: true,
                spill_after_ms: 5000,
                dir: Some(PathBuf::from("/s")),
                max_bytes: 10000,
                segment_bytes: 5000,
                fsync: FsyncPolicy::IntervalMs(250),
            }
        );
        let c: SpoolConfig = toml::from_str("fsync = \"always\"").unwrap();
        assert_eq!(c, SpoolConfig::default());
        assert!(toml::from_str::<SpoolConfig>("max_byte = 1").is_err());
        assert!(toml::from_str::<SpoolConfig>("fsync = \"never\"").is_err());
    }

    #[test]
    fn validate_rejects_out_of_range_values() {
        let base = SpoolConfig::default();
        let c = SpoolConfig {
            segment_bytes: 4095,
            ..base.clone()
        };
        assert_eq!(c.validate(), Err(SpoolConfigError::SegmentBytes(4095)));
        let c = SpoolConfig {
            segment_bytes: 1 << 32,
            max_bytes: 1 << 40,
            ..base.clone()
        };
        assert_eq!(c.validate(), Err(SpoolConfigError::SegmentBytes(1 << 32)));
        let c = SpoolConfig {
            max_bytes: 8191,
            segment_bytes: 4096,
            ..base.clone()
        };
        assert_eq!(
            c.validate(),
            Err(SpoolConfigError::MaxBytes {
                max_bytes: 8191,
                segment_bytes: 4096
            })
        );
        let c = SpoolConfig {
            max_bytes: 8192,
            segment_bytes: 4096,
            ..base.clone()
        };
        c.validate().unwrap();
        let c = SpoolConfig {
            fsync: FsyncPolicy::IntervalMs(0),
            ..base
        };
        assert_eq!(c.validate(), Err(SpoolConfigError::ZeroInterval));
    }
}
