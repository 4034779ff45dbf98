//! Checkpoints: per tailed file, the offset up to which every event has been acknowledged by
//! Kafka. One versioned JSON document (`<data_dir>/checkpoints.json`), written atomically:
//! temp file, fsync, rename, fsync of the directory.
//!
//! ```json
//! {"version":1,"files":{"<container id>":{"path":"…/<id>-json.log","fingerprint":"…","offset":1234}}}
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Current on-disk version.
pub const CHECKPOINT_VERSION: u32 = 1;
const FILE_NAME: &str = "checkpoints.json";

/// Checkpoint store errors.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("checkpoint I/O on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a checkpoint document this version understands.
    #[error("checkpoint file {path} is unreadable: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Where reading of one file resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// The file's path when the checkpoint was taken (it may have been rotated since).
    pub path: PathBuf,
    /// XXH3-64 of the file's first line, hex: identifies the file across renames.
    pub fingerprint: String,
    /// Byte offset: everything before it has been acknowledged by Kafka.
    pub offset: u64,
}

#[derive(Serialize, Deserialize)]
struct Document {
    version: u32,
    files: BTreeMap<String, FileCheckpoint>,
}

/// The checkpoint file of one collector.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    path: PathBuf,
}

impl CheckpointStore {
    /// Uses `<dir>/checkpoints.json`; creates `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(CheckpointStore {
            path: dir.join(FILE_NAME),
        })
    }

    /// Loads all checkpoints, keyed by source key (container ID); empty when none exist yet.
    pub fn load(&self) -> Result<BTreeMap<String, FileCheckpoint>, CheckpointError> {
        Ok(read_versioned::<Document>(&self.path)?
            .map(|d| d.files)
            .unwrap_or_default())
    }

    /// Replaces the stored checkpoints atomically.
    pub fn save(&self, files: &BTreeMap<String, FileCheckpoint>) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let doc = Document {
            version: CHECKPOINT_VERSION,
            files: files.clone(),
        };
        let bytes = serde_json::to_vec(&doc).expect("checkpoint serializes");
        write_atomic(&self.path, &bytes).map_err(io)
    }
}

/// A persisted document with a `version` field.
trait Versioned: serde::de::DeserializeOwned {
    fn version(&self) -> u32;
}

impl Versioned for Document {
    fn version(&self) -> u32 {
        self.version
    }
}

impl Versioned for CursorDocument {
    fn version(&self) -> u32 {
        self.version
    }
}

/// Reads a JSON document of [`CHECKPOINT_VERSION`]; `None` when the file does not exist.
fn read_versioned<T: Versioned>(path: &Path) -> Result<Option<T>, CheckpointError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let corrupt = |message: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let doc: T = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if doc.version() != CHECKPOINT_VERSION {
        return Err(corrupt(format!(
            "version {} is not supported (expected {CHECKPOINT_VERSION})",
            doc.version()
        )));
    }
    Ok(Some(doc))
}

/// Replaces `path` with `bytes` atomically: temp file beside it, fsync, rename, fsync of the
/// directory. A crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all())?;
    }
    Ok(())
}

/// Stream positions that are not file offsets (e.g. the Docker event stream's last
/// acknowledged event time, Unix ns), by name. `<data_dir>/cursors.json`, versioned,
/// written with [`write_atomic`]:
///
/// ```json
/// {"version":1,"cursors":{"docker_events":1700000000123456789}}
/// ```
#[derive(Clone, Debug)]
pub struct CursorStore {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct CursorDocument {
    version: u32,
    cursors: BTreeMap<String, u64>,
}

impl CursorStore {
    /// Uses `<dir>/cursors.json`; creates `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(CursorStore {
            path: dir.join("cursors.json"),
        })
    }

    /// Every stored cursor; empty when none exist yet.
    pub fn load(&self) -> Result<BTreeMap<String, u64>, CheckpointError> {
        Ok(read_versioned::<CursorDocument>(&self.path)?
            .map(|d| d.cursors)
            .unwrap_or_default())
    }

    /// Sets one cursor, keeping the others.
    pub fn set(&self, name: &str, value: u64) -> Result<(), CheckpointError> {
        let mut cursors = self.load()?;
        cursors.insert(name.to_string(), value);
        let doc = CursorDocument {
            version: CHECKPOINT_VERSION,
            cursors,
        };
        let bytes = serde_json::to_vec(&doc).expect("cursors serialize");
        write_atomic(&self.path, &bytes).map_err(|source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_roundtrips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert!(store.load().unwrap().is_empty());
        let mut files = BTreeMap::new();
        files.insert(
            "abc".to_string(),
            FileCheckpoint {
                path: "/x/abc-json.log".into(),
                fingerprint: "00ff".into(),
                offset: 42,
            },
        );
        store.save(&files).unwrap();
        assert_eq!(store.load().unwrap(), files);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["checkpoints.json"]);
    }

    #[test]
    fn cursors_keep_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = CursorStore::open(dir.path()).unwrap();
        assert!(store.load().unwrap().is_empty());
        store.set("docker_events", 7).unwrap();
        store.set("other", 9).unwrap();
        store.set("docker_events", 8).unwrap();
        let got = store.load().unwrap();
        assert_eq!(got.get("docker_events"), Some(&8));
        assert_eq!(got.get("other"), Some(&9));
        fs::write(
            dir.path().join("cursors.json"),
            b"{\"version\":2,\"cursors\":{}}",
        )
        .unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
    }

    #[test]
    fn corrupt_or_future_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{\"version\":1,\"files\":").unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
        fs::write(dir.path().join(FILE_NAME), b"{\"version\":9,\"files\":{}}").unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
    }
}
