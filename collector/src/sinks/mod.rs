//! Outputs. [`kafka`] batches events per partition, produces them, and advances checkpoints
//! once Kafka has acknowledged them.

pub mod buffers;
pub mod kafka;
pub mod oversize;
pub mod oversize_records;
pub mod producer;
pub mod records;
pub mod spooled;
pub mod topics;
