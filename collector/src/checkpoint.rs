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
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let doc: Document =
            serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        if doc.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Corrupt {
                path: self.path.clone(),
                message: format!(
                    "version {} is not supported (expected {CHECKPOINT_VERSION})",
                    doc.version
                ),
            });
        }
        Ok(doc.files)
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
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
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
    fn corrupt_or_future_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{\"version\":1,\"files\":").unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
        fs::write(dir.path().join(FILE_NAME), b"{\"version\":9,\"files\":{}}").unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
    }
}
