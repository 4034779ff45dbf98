//! Parsing stages applied to every line, in order: Docker json-file framing
//! ([`docker_json`]), then the application's own text or JSON ([`app`]) for correlation ID,
//! trace ID, span ID, hop and level.

pub mod app;
pub mod docker_json;
pub mod ecs_agent;
pub mod ecs_audit;
pub mod frame;
pub mod json_scan;
pub mod multiline;
pub mod redact;
pub mod text_scan;
pub mod timestamp;
