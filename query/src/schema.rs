//! The tantivy schema shared by the aggregator (writer) and the query API (reader), and the
//! on-disk index directory with its version file.
//!
//! Field layout (all names are also the query-syntax field names):
//!
//! | field            | type / options                        | notes                                   |
//! |------------------|---------------------------------------|-----------------------------------------|
//! | `event_id`       | stored only                           | 32 lowercase hex digits                 |
//! | `event_id_bucket`| u64, indexed                          | top 16 bits of the ID (replay lookup)   |
//! | `event_id_hi/lo` | u64, fast                             | the ID's two halves (replay lookup)     |
//! | `correlation_id` | raw string, stored, multi-valued      | one value per correlation ID, in order  |
//! | `trace_id`       | raw string, stored                    | 32 hex, absent when none                |
//! | `span_id`        | stored only                           | 16 hex, absent when none                |
//! | `service`        | raw string, stored                    |                                         |
//! | `level`          | raw string, stored                    | lowercase (`warn`); absent when none    |
//! | `container_id`   | raw string, stored                    | absent when no container                |
//! | `container_name` | stored only                           | absent when no container                |
//! | `image`          | stored only                           | absent when no container                |
//! | `host`           | raw string, stored                    |                                         |
//! | `stream`         | stored only                           | `stdout`/`stderr`; absent when unknown  |
//! | `source_kind`    | stored only                           | `docker_json_file`, `other`             |
//! | `message`        | text (default tokenizer), stored      | the default search field                |
//! | `timestamp`      | i64, fast, stored                     | **ns since the Unix epoch** (UTC)       |
//! | `hop`            | u64, fast, stored                     | absent when the line carries no hop     |
//! | `parse_error`    | raw string, stored                    | absent when the line parsed fine        |
//! | `attributes`     | JSON object (raw strings), stored     | `attributes.key:value` in queries       |
//!
//! "Raw string" means the `raw` tokenizer: the whole value is one term, matched exactly.
//! "Stored only" fields are returned with each event but cannot be searched: every indexed
//! field costs indexing time on every document (see BENCHMARKS.md), so only the fields
//! Sightline looks events up by are indexed. Time ranges and ordering use the fast
//! (columnar) `timestamp` values.
//! Optional fields are simply absent from a document (no sentinel values). Timestamps
//! above `i64::MAX` ns (year 2262) are clamped.
//!
//! Versioning: an index directory holds tantivy's files plus [`VERSION_FILE`], a small JSON
//! file `{"format":"sightline-index","schema_version":N}`. [`IndexSchema::open_or_create`]
//! refuses an index whose version or schema differs from this build's.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sightline_model::LogEvent;
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, NumericOptions, OwnedValue, Schema,
    TextFieldIndexing, TextOptions, FAST, STORED, STRING, TEXT,
};
use tantivy::{Index, TantivyDocument};

/// Version of the index layout described in this module. Bump it whenever a field is added,
/// removed or changes options; an index written with another version is refused on open.
pub const INDEX_SCHEMA_VERSION: u32 = 2;

/// The lookup bucket of an event ID: its top 16 bits.
pub fn event_id_bucket(id: u128) -> u64 {
    (id >> 112) as u64
}

/// Name of the version file kept next to tantivy's `meta.json` in the index directory.
pub const VERSION_FILE: &str = "sightline-index.json";

const FORMAT_NAME: &str = "sightline-index";

/// Field names, usable in query syntax (`service:checkout`).
pub mod field {
    /// Event ID (32 hex digits).
    pub const EVENT_ID: &str = "event_id";
    /// Top 16 bits of the event ID (lookup bucket).
    pub const EVENT_ID_BUCKET: &str = "event_id_bucket";
    /// High 64 bits of the event ID.
    pub const EVENT_ID_HI: &str = "event_id_hi";
    /// Low 64 bits of the event ID.
    pub const EVENT_ID_LO: &str = "event_id_lo";
    /// Correlation IDs (multi-valued).
    pub const CORRELATION_ID: &str = "correlation_id";
    /// W3C trace ID.
    pub const TRACE_ID: &str = "trace_id";
    /// W3C span ID.
    pub const SPAN_ID: &str = "span_id";
    /// Service name.
    pub const SERVICE: &str = "service";
    /// Lowercase level name.
    pub const LEVEL: &str = "level";
    /// Container ID.
    pub const CONTAINER_ID: &str = "container_id";
    /// Container name.
    pub const CONTAINER_NAME: &str = "container_name";
    /// Container image.
    pub const IMAGE: &str = "image";
    /// Host name.
    pub const HOST: &str = "host";
    /// `stdout` / `stderr`.
    pub const STREAM: &str = "stream";
    /// Source kind.
    pub const SOURCE_KIND: &str = "source_kind";
    /// Log line text.
    pub const MESSAGE: &str = "message";
    /// Timestamp, i64 ns since the epoch.
    pub const TIMESTAMP: &str = "timestamp";
    /// Hop count, u64.
    pub const HOP: &str = "hop";
    /// Parse error text.
    pub const PARSE_ERROR: &str = "parse_error";
    /// Free string attributes (JSON object).
    pub const ATTRIBUTES: &str = "attributes";
}

/// Why an index directory could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum IndexOpenError {
    /// Creating the directory or reading/writing the version file failed.
    #[error("index directory {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The version file exists but is not valid.
    #[error("index version file {path} is invalid: {reason}")]
    BadVersionFile {
        /// The version file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The directory holds a tantivy index without a Sightline version file.
    #[error("{path} holds an index that was not created by Sightline (no {VERSION_FILE})")]
    NotSightlineIndex {
        /// The index directory.
        path: PathBuf,
    },
    /// The index was written with another schema version.
    #[error("index at {path} has schema version {found}, this build needs {expected}; reindex into a new data directory")]
    IncompatibleVersion {
        /// The index directory.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// [`INDEX_SCHEMA_VERSION`].
        expected: u32,
    },
    /// Same version number, but tantivy's stored schema differs from this build's.
    #[error("index at {path} has a schema that differs from this build's (same version {INDEX_SCHEMA_VERSION})")]
    SchemaMismatch {
        /// The index directory.
        path: PathBuf,
    },
    /// tantivy failed to open or create the index.
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

#[derive(Serialize, Deserialize)]
struct VersionFile {
    format: String,
    schema_version: u32,
}

/// The schema and a handle to each of its fields. Cheap to clone.
#[derive(Clone, Debug)]
pub struct IndexSchema {
    /// The tantivy schema.
    pub schema: Schema,
    /// `event_id`.
    pub event_id: Field,
    /// `event_id_bucket` (u64, indexed): top 16 bits of the ID.
    pub event_id_bucket: Field,
    /// `event_id_hi` (u64, fast).
    pub event_id_hi: Field,
    /// `event_id_lo` (u64, fast).
    pub event_id_lo: Field,
    /// `correlation_id` (multi-valued).
    pub correlation_id: Field,
    /// `trace_id`.
    pub trace_id: Field,
    /// `span_id`.
    pub span_id: Field,
    /// `service`.
    pub service: Field,
    /// `level`.
    pub level: Field,
    /// `container_id`.
    pub container_id: Field,
    /// `container_name`.
    pub container_name: Field,
    /// `image`.
    pub image: Field,
    /// `host`.
    pub host: Field,
    /// `stream`.
    pub stream: Field,
    /// `source_kind`.
    pub source_kind: Field,
    /// `message`.
    pub message: Field,
    /// `timestamp` (i64 ns).
    pub timestamp: Field,
    /// `hop` (u64).
    pub hop: Field,
    /// `parse_error`.
    pub parse_error: Field,
    /// `attributes` (JSON).
    pub attributes: Field,
}

impl Default for IndexSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl IndexSchema {
    /// Builds the schema described in the module docs.
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let raw = STRING | STORED;
        // The ID is shown, and looked up only to drop replays: a unique term per document
        // would dominate the term dictionary (a third of indexing CPU, BENCHMARKS.md), so it
        // is found through a 16-bit bucket term and compared in two fast columns.
        let event_id = b.add_text_field(field::EVENT_ID, STORED);
        let event_id_bucket = b.add_u64_field(
            field::EVENT_ID_BUCKET,
            NumericOptions::default().set_indexed(),
        );
        let event_id_hi = b.add_u64_field(field::EVENT_ID_HI, NumericOptions::default().set_fast());
        let event_id_lo = b.add_u64_field(field::EVENT_ID_LO, NumericOptions::default().set_fast());
        let correlation_id = b.add_text_field(field::CORRELATION_ID, raw.clone());
        let trace_id = b.add_text_field(field::TRACE_ID, raw.clone());
        // Shown, not searched: stored only (each indexed field costs every document).
        let span_id = b.add_text_field(field::SPAN_ID, STORED);
        let service = b.add_text_field(field::SERVICE, raw.clone());
        let level = b.add_text_field(field::LEVEL, raw.clone());
        let container_id = b.add_text_field(field::CONTAINER_ID, raw.clone());
        let container_name = b.add_text_field(field::CONTAINER_NAME, STORED);
        let image = b.add_text_field(field::IMAGE, STORED);
        let host = b.add_text_field(field::HOST, raw.clone());
        let stream = b.add_text_field(field::STREAM, STORED);
        let source_kind = b.add_text_field(field::SOURCE_KIND, STORED);
        let message = b.add_text_field(field::MESSAGE, TEXT | STORED);
        // Range queries and sorting run on the fast (columnar) values; indexing them would
        // add one term per distinct nanosecond.
        let timestamp = b.add_i64_field(field::TIMESTAMP, NumericOptions::from(FAST | STORED));
        let hop = b.add_u64_field(field::HOP, NumericOptions::from(FAST | STORED));
        let parse_error = b.add_text_field(field::PARSE_ERROR, raw);
        let json_indexing = TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::Basic);
        let attributes = b.add_json_field(
            field::ATTRIBUTES,
            JsonObjectOptions::from(TextOptions::default())
                .set_stored()
                .set_indexing_options(json_indexing),
        );
        IndexSchema {
            schema: b.build(),
            event_id,
            event_id_bucket,
            event_id_hi,
            event_id_lo,
            correlation_id,
            trace_id,
            span_id,
            service,
            level,
            container_id,
            container_name,
            image,
            host,
            stream,
            source_kind,
            message,
            timestamp,
            hop,
            parse_error,
            attributes,
        }
    }

    /// Converts one event into a document. Never fails: empty strings and `None`s leave
    /// the field out, `timestamp_ns` is clamped to `i64::MAX`.
    pub fn to_document(&self, ev: &LogEvent) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_text(self.event_id, ev.event_id.to_string());
        let id = ev.event_id.0;
        doc.add_u64(self.event_id_bucket, event_id_bucket(id));
        doc.add_u64(self.event_id_hi, (id >> 64) as u64);
        doc.add_u64(self.event_id_lo, id as u64);
        for c in &ev.correlation_ids {
            if !c.is_empty() {
                doc.add_text(self.correlation_id, c);
            }
        }
        let mut opt = |f: Field, v: Option<&str>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                doc.add_text(f, v);
            }
        };
        opt(self.trace_id, ev.trace_id.as_deref());
        opt(self.span_id, ev.span_id.as_deref());
        opt(self.service, Some(&ev.service));
        opt(self.level, ev.level.map(|l| l.as_str()));
        if let Some(c) = &ev.container {
            opt(self.container_id, Some(&c.id));
            opt(self.container_name, Some(&c.name));
            opt(self.image, Some(&c.image));
        }
        opt(self.host, Some(&ev.host));
        opt(self.stream, Some(&ev.stream));
        opt(self.source_kind, Some(ev.source_kind.as_str()));
        opt(self.parse_error, ev.parse_error.as_deref());
        doc.add_text(self.message, &ev.message);
        doc.add_i64(
            self.timestamp,
            i64::try_from(ev.timestamp_ns).unwrap_or(i64::MAX),
        );
        if let Some(h) = ev.hop {
            doc.add_u64(self.hop, u64::from(h));
        }
        if !ev.attributes.is_empty() {
            let obj: BTreeMap<String, OwnedValue> = ev
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), OwnedValue::Str(v.clone())))
                .collect();
            doc.add_object(self.attributes, obj);
        }
        doc
    }

    /// Opens the index in `dir`, or creates it (and `dir` itself) when `dir` holds none.
    ///
    /// Errors: [`IndexOpenError::NotSightlineIndex`] for a tantivy index without
    /// [`VERSION_FILE`], [`IndexOpenError::IncompatibleVersion`] /
    /// [`IndexOpenError::SchemaMismatch`] for an index of another layout, `Io`/`Tantivy`
    /// for file system and tantivy failures.
    pub fn open_or_create(&self, dir: &Path) -> Result<Index, IndexOpenError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IndexOpenError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let version_path = dir.join(VERSION_FILE);
        let has_index = dir.join("meta.json").exists();
        let version = read_version(&version_path)?;
        if let Some(found) = version.filter(|v| *v != INDEX_SCHEMA_VERSION) {
            return Err(IndexOpenError::IncompatibleVersion {
                path: dir.to_path_buf(),
                found,
                expected: INDEX_SCHEMA_VERSION,
            });
        }
        if !has_index {
            if version.is_none() {
                write_version(&version_path)?;
            }
            return Ok(Index::create_in_dir(dir, self.schema.clone())?);
        }
        if version.is_none() {
            return Err(IndexOpenError::NotSightlineIndex {
                path: dir.to_path_buf(),
            });
        }
        let index = Index::open_in_dir(dir)?;
        if index.schema() != self.schema {
            return Err(IndexOpenError::SchemaMismatch {
                path: dir.to_path_buf(),
            });
        }
        Ok(index)
    }
}

fn read_version(path: &Path) -> Result<Option<u32>, IndexOpenError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(IndexOpenError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let bad = |reason: String| IndexOpenError::BadVersionFile {
        path: path.to_path_buf(),
        reason,
    };
    let v: VersionFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if v.format != FORMAT_NAME {
        return Err(bad(format!(
            "format is {:?}, expected {FORMAT_NAME:?}",
            v.format
        )));
    }
    Ok(Some(v.schema_version))
}

fn write_version(path: &Path) -> Result<(), IndexOpenError> {
    let body = serde_json::to_string(&VersionFile {
        format: FORMAT_NAME.to_string(),
        schema_version: INDEX_SCHEMA_VERSION,
    })
    .expect("serializing a plain struct cannot fail");
    let tmp = path.with_extension("json.tmp");
    let io_err = |source| IndexOpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, body).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_model::{Container, EventId, Level};
    use std::sync::Arc;
    use tantivy::schema::Value;

    fn event() -> LogEvent {
        LogEvent {
            event_id: EventId::derive(1, 2),
            timestamp_ns: 1_700_000_000_123_456_789,
            service: "checkout".into(),
            host: "h1".into(),
            container: Some(Arc::new(Container {
                id: "c1".into(),
                name: "checkout-1".into(),
                image: "img:1".into(),
                labels: Default::default(),
            })),
            level: Some(Level::Warn),
            message: "Payment declined".into(),
            correlation_ids: vec!["req-1".into(), "".into(), "blk_2".into()],
            hop: Some(2),
            attributes: BTreeMap::from([("k".to_string(), "v".to_string())]),
            ..Default::default()
        }
    }

    #[test]
    fn document_has_expected_values() {
        let s = IndexSchema::new();
        let doc = s.to_document(&event());
        let all = |f| -> Vec<String> {
            doc.get_all(f)
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        assert_eq!(all(s.correlation_id), vec!["req-1", "blk_2"]);
        assert_eq!(all(s.level), vec!["warn"]);
        assert_eq!(all(s.stream), Vec::<String>::new());
        assert_eq!(all(s.trace_id), Vec::<String>::new());
        assert_eq!(all(s.image), vec!["img:1"]);
        assert_eq!(
            doc.get_first(s.timestamp).and_then(|v| v.as_i64()),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(doc.get_first(s.hop).and_then(|v| v.as_u64()), Some(2));
        let mut ev = event();
        ev.timestamp_ns = u64::MAX;
        ev.hop = None;
        let doc = s.to_document(&ev);
        assert_eq!(
            doc.get_first(s.timestamp).and_then(|v| v.as_i64()),
            Some(i64::MAX)
        );
        assert!(doc.get_first(s.hop).is_none());
    }

    #[test]
    fn open_or_create_round_trip_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("index");
        let s = IndexSchema::new();
        let index = s.open_or_create(&dir).unwrap();
        let mut w = index.writer_with_num_threads(1, 15_000_000).unwrap();
        w.add_document(s.to_document(&event())).unwrap();
        w.commit().unwrap();
        drop(w);
        drop(index);
        // Reopen: same docs.
        let index = s.open_or_create(&dir).unwrap();
        assert_eq!(index.reader().unwrap().searcher().num_docs(), 1);
        drop(index);

        // Another schema under the same version number.
        let mut b = Schema::builder();
        b.add_text_field("other", STRING);
        std::fs::create_dir(tmp.path().join("other")).unwrap();
        let other = Index::create_in_dir(tmp.path().join("other"), b.build()).unwrap();
        drop(other);
        std::fs::copy(
            dir.join(VERSION_FILE),
            tmp.path().join("other").join(VERSION_FILE),
        )
        .unwrap();
        assert!(matches!(
            s.open_or_create(&tmp.path().join("other")),
            Err(IndexOpenError::SchemaMismatch { .. })
        ));

        // A bumped version.
        std::fs::write(
            dir.join(VERSION_FILE),
            r#"{"format":"sightline-index","schema_version":99}"#,
        )
        .unwrap();
        match s.open_or_create(&dir) {
            Err(IndexOpenError::IncompatibleVersion {
                found, expected, ..
            }) => assert_eq!((found, expected), (99, INDEX_SCHEMA_VERSION)),
            other => panic!("unexpected {other:?}"),
        }

        // No version file at all.
        std::fs::remove_file(dir.join(VERSION_FILE)).unwrap();
        assert!(matches!(
            s.open_or_create(&dir),
            Err(IndexOpenError::NotSightlineIndex { .. })
        ));

        // Garbage version file.
        std::fs::write(dir.join(VERSION_FILE), "not json").unwrap();
        assert!(matches!(
            s.open_or_create(&dir),
            Err(IndexOpenError::BadVersionFile { .. })
        ));
    }
}
