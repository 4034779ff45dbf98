//! The tamper-evident audit trail: Docker events, ECS credential requests and Sightline's own
//! actions ([`sightline_model::audit::AuditEvent`]), stored append-only in one directory
//! (the aggregator uses `<data_dir>/audit`) as a SHA-256 hash chain, in the spirit of
//! CloudTrail's log file integrity validation (each digest names the previous one, so a
//! change, deletion or reordering anywhere breaks the chain).
//!
//! Module map:
//! - [`record`]: a record line, its canonical bytes and its chain hash ([`ChainHash`]).
//! - [`head`]: the head (digest) file `head.json`, written atomically.
//! - [`store`]: [`AuditStore`] (open with crash repair, idempotent [`AuditStore::append_batch`]
//!   with consumer positions, [`AuditStore::positions`]) and [`AuditConfig`].
//! - [`mod@verify`]: [`verify()`] walks the whole store and reports the first problem.
//! - [`query`]: [`AuditQuery`] (time range, service, actor, action, limit; newest first).
//! - [`api`]: the axum [`api::router`] (`GET /api/v1/audit`, `GET /api/v1/audit/verify`).
//! - [`stage`]: [`AuditStage`], the audit topic's consume stage (events + positions
//!   appended together).
//! - [`action_log`]: [`StoreActionLog`], the [`crate::alert::ActionLog`] that appends
//!   Sightline's own actions through a bounded queue.
//!
//! # On-disk format (version 1; also in `docs/audit-format.md`)
//!
//! ```text
//! <dir>/LOCK                                   flock'ed by the one writer
//! <dir>/head.json                              the head (digest) file
//! <dir>/segment-00000000000000000001.jsonl     records 1..=k
//! <dir>/segment-<first seq, 20 digits>.jsonl   the next segment, and so on
//! ```
//!
//! Each segment is JSON Lines; each line is one record:
//!
//! ```text
//! {"hash":"<64 hex>","record":{"v":1,"seq":<n>,"prev":"<64 hex>","event":<AuditEvent>}}\n
//! ```
//!
//! - `seq` starts at 1 and is contiguous across segments; a segment's name is the `seq` of
//!   its first record. A segment is closed once it holds at least
//!   [`AuditConfig::max_segment_bytes`].
//! - `prev` is the previous record's `hash` (64 zeros for record 1).
//! - `hash` = SHA-256(`prev` as 32 raw bytes ‖ the payload bytes), where the payload is the
//!   value of `"record"` exactly as stored (serde_json's compact output, struct field order,
//!   map keys sorted). Verifiers hash the stored bytes, never a re-serialization, so a change
//!   to any byte is detected.
//! - `event` is the model's serde form of [`sightline_model::audit::AuditEvent`] (`event_id` as a JSON integer).
//!
//! `head.json` = `{"format":1,"seq":n,"hash":"<64 hex>","segment":"<file of record n>",
//! "segment_bytes":<its length>,"positions":{"<topic>/<partition>":<next offset>}}`. It is
//! created (with `seq` 0) with the store and replaced atomically (temp file, fsync, rename,
//! directory fsync) after every batch's records are fsynced; so it commits the records and
//! the consumer positions together, and it makes a truncated tail or a deleted last segment
//! detectable.
//!
//! # Guarantees and limits
//!
//! The chain detects any change, deletion, insertion or reordering of records, and a lost
//! tail, by anyone who does not also rewrite every later record and `head.json`. Like an
//! unsigned CloudTrail digest, it cannot stop someone with write access from rebuilding the
//! whole chain: export the head hash elsewhere (or sign it) for that. Opening keeps every
//! event ID in memory (16 bytes plus set overhead per record) to skip Kafka redeliveries.

pub mod action_log;
pub mod api;
pub mod head;
pub mod query;
pub mod record;
pub mod stage;
pub mod store;
pub mod verify;

use std::path::{Path, PathBuf};

pub use crate::checkpoint::TopicPartition;
pub use action_log::StoreActionLog;
pub use query::{AuditPage, AuditQuery};
pub use record::ChainHash;
pub use stage::AuditStage;
pub use store::{AppendOutcome, AuditConfig, AuditStore};
pub use verify::{verify, Problem, ProblemKind, VerifyReport};

/// Errors of the audit store.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("audit store: {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process (or handle) has the store open for writing.
    #[error("audit store {0} is open in another process (its LOCK file is locked)")]
    Locked(PathBuf),
    /// `head.json` does not parse.
    #[error("audit store: {0}")]
    Head(#[from] head::HeadError),
    /// The chain does not verify; the store was left as it is.
    #[error("audit store is corrupt: {0} (see `sightline-aggregator audit verify`)")]
    Corrupt(Box<Problem>),
    /// A consumer position with a negative offset.
    #[error("invalid consumer position {topic}/{partition} = {offset}: offsets are >= 0")]
    InvalidPosition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offending offset.
        offset: i64,
    },
    /// An earlier failed write could not be rolled back; the store refuses appends until
    /// reopened (which repairs it).
    #[error("audit store needs reopening: {0}")]
    Poisoned(String),
    /// An event could not be serialized.
    #[error("audit store: cannot encode an event: {0}")]
    Encode(serde_json::Error),
    /// Invalid settings.
    #[error("invalid audit settings: {0}")]
    Config(String),
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
