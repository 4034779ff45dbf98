//! Docker `json-file` logs read straight from the Docker data root.
//!
//! - [`container`]: a container's identity and service name from its `config.v2.json`.
//! - [`tailer`]: follows one container's `<id>-json.log` across rotation and truncation.
//! - [`discovery`]: rescans the containers directory, starts and stops tailers.

pub mod container;
pub mod discovery;
pub mod tailer;
