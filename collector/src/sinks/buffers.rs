//! Message buffers shared with librdkafka and recycled after delivery.
//!
//! A log batch's bytes are written once, into a buffer taken from a small process-wide
//! pool, then handed to librdkafka by pointer ([`super::producer`]). When the last holder
//! lets go (the ack loop after the acknowledgement, librdkafka's delivery report), the
//! buffer goes back to the pool with its capacity, so steady-state batching allocates no
//! large buffers: the allocator never sees the churn that made glibc keep tens of MiB of
//! freed half-megabyte blocks per thread arena.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// Idle buffers kept at most (each about `batch.max_bytes`).
const POOL_MAX_BUFFERS: usize = 16;
/// Buffers larger than this are freed rather than kept, bytes.
const POOL_MAX_CAPACITY: usize = 8 << 20;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer of at least `capacity` bytes, recycled when one is idle.
pub fn take_buffer(capacity: usize) -> Vec<u8> {
    let recycled = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
    match recycled {
        Some(mut b) => {
            b.clear();
            b.reserve(capacity);
            b
        }
        None => Vec::with_capacity(capacity),
    }
}

fn give_back(buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > POOL_MAX_CAPACITY {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < POOL_MAX_BUFFERS {
        pool.push(buf);
    }
}

struct Inner {
    bytes: Vec<u8>,
    recycle: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.recycle {
            give_back(std::mem::take(&mut self.bytes));
        }
    }
}

/// An immutable message payload, cheap to clone (reference-counted), shared with
/// librdkafka while in flight.
#[derive(Clone)]
pub struct Payload(Arc<Inner>);

impl Payload {
    /// A payload whose buffer returns to the pool (see [`take_buffer`]) when the last
    /// clone is dropped.
    pub fn recycled(bytes: Vec<u8>) -> Self {
        Payload(Arc::new(Inner {
            bytes,
            recycle: true,
        }))
    }
}

impl From<Vec<u8>> for Payload {
    /// A payload freed normally (small or one-off messages).
    fn from(bytes: Vec<u8>) -> Self {
        Payload(Arc::new(Inner {
            bytes,
            recycle: false,
        }))
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0.bytes
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_comes_back_with_its_capacity_once_every_clone_is_gone() {
        let mut buf = take_buffer(3 << 20); // a size no other test uses
        buf.extend_from_slice(b"abc");
        let ptr = buf.as_ptr();
        let p = Payload::recycled(buf);
        let q = p.clone();
        drop(p);
        assert_eq!(&*q, b"abc");
        drop(q);
        let pool = POOL.lock().unwrap();
        assert!(pool
            .iter()
            .any(|b| b.as_ptr() == ptr && b.capacity() >= 3 << 20));
    }

    #[test]
    fn plain_payloads_are_not_pooled() {
        let v = vec![1u8; 4 << 20];
        let ptr = v.as_ptr();
        drop(Payload::from(v));
        assert!(!POOL.lock().unwrap().iter().any(|b| b.as_ptr() == ptr));
    }
}
