//! Sightline's index schema and HTTP query API.
//!
//! Module map:
//! - [`schema`]: the tantivy schema ([`IndexSchema`]) shared by the aggregator (writer) and
//!   the API (reader), event → document conversion, and opening/creating the versioned
//!   index directory.
//! - [`reader`]: [`QueryEngine`]: correlation lookup and search over an `IndexReader`,
//!   returning [`EventView`]s.
//! - [`api`]: the axum router ([`app`]), [`serve`], and the single error type
//!   [`ApiError`] with its one error → HTTP status mapping.

#![warn(missing_docs)]

pub mod api;
pub mod reader;
pub mod schema;

pub use api::{app, app_with, serve, serve_app, ApiError, AppState, Health};
pub use reader::{
    CorrelationResult, EventView, QueryEngine, QueryError, QueryLimits, SearchRequest, SearchResult,
};
pub use schema::{IndexOpenError, IndexSchema, INDEX_SCHEMA_VERSION};
