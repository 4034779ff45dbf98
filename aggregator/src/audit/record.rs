//! One audit record on disk: its framing, its canonical bytes and its chain hash.
//!
//! A record is one line of a segment file (see the [module docs](super) for the layout):
//!
//! ```text
//! {"hash":"<64 hex>","record":<payload>}\n
//! payload = {"v":1,"seq":<u64>,"prev":"<64 hex>","event":<AuditEvent as serde JSON>}
//! hash    = SHA-256(prev hash as 32 raw bytes || payload bytes exactly as stored)
//! ```
//!
//! The payload bytes are hashed as they are stored, never re-serialized, so any change to a
//! stored byte (even one that still parses to the same values) breaks the hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sightline_model::audit::AuditEvent;

/// Version of the record payload written by this build (`"v"`).
pub const RECORD_VERSION: u32 = 1;

/// A SHA-256 chain hash (32 bytes). Displayed and stored as 64 lowercase hex digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev` of the first record (sequence number 1): 32 zero bytes.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Parses 64 hex digits (either case); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return None;
        }
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ChainHash(out))
    }

    /// The 64-lowercase-hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The hash of a record: SHA-256 over `prev` (32 raw bytes) then the payload bytes.
    pub fn chain(prev: &ChainHash, payload: &[u8]) -> ChainHash {
        let mut h = Sha256::new();
        h.update(prev.0);
        h.update(payload);
        ChainHash(h.finalize().into())
    }
}

impl std::fmt::Display for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Bytes before the hash in a record line.
const PREFIX: &[u8] = br#"{"hash":""#;
/// Bytes between the hash and the payload.
const MIDDLE: &[u8] = br#"","record":"#;
/// Offset of the payload in a line.
const PAYLOAD_AT: usize = PREFIX.len() + 64 + MIDDLE.len();

#[derive(Serialize)]
struct PayloadRef<'a> {
    v: u32,
    seq: u64,
    prev: String,
    event: &'a AuditEvent,
}

/// A decoded record payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Record format version ([`RECORD_VERSION`]).
    pub v: u32,
    /// Sequence number, 1-based, contiguous across segments.
    pub seq: u64,
    /// Hash of the previous record (64 hex), [`ChainHash::GENESIS`] for record 1.
    pub prev: String,
    /// The audit event.
    pub event: AuditEvent,
}

/// Encodes one record line (with its trailing `\n`) and returns it with its hash.
///
/// Errors: serde_json's, which cannot happen for an [`AuditEvent`] (all keys are strings).
pub fn encode_line(
    seq: u64,
    prev: &ChainHash,
    event: &AuditEvent,
) -> Result<(Vec<u8>, ChainHash), serde_json::Error> {
    let payload = serde_json::to_vec(&PayloadRef {
        v: RECORD_VERSION,
        seq,
        prev: prev.to_hex(),
        event,
    })?;
    let hash = ChainHash::chain(prev, &payload);
    let mut line = Vec::with_capacity(PAYLOAD_AT + payload.len() + 2);
    line.extend_from_slice(PREFIX);
    line.extend_from_slice(hash.to_hex().as_bytes());
    line.extend_from_slice(MIDDLE);
    line.extend_from_slice(&payload);
    line.extend_from_slice(b"}\n");
    Ok((line, hash))
}

/// A record line split into its parts (hashes not yet checked).
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// The hash stored in the line.
    pub stored_hash: ChainHash,
    /// The payload bytes as stored.
    pub payload: &'a [u8],
}

/// Why a line is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The framing around the payload is wrong.
    #[error("line is not framed as {{\"hash\":\"<64 hex>\",\"record\":…}}")]
    Framing,
    /// The stored hash is not 64 hex digits.
    #[error("stored hash is not 64 hex digits")]
    Hash,
}

/// Splits one line (without its `\n`) into stored hash and payload.
///
/// Errors: [`FrameError`] when the framing or the hash digits are wrong.
pub fn split_line(line: &[u8]) -> Result<RawRecord<'_>, FrameError> {
    if line.len() < PAYLOAD_AT + 1
        || !line.starts_with(PREFIX)
        || &line[PREFIX.len() + 64..PAYLOAD_AT] != MIDDLE
        || line.last() != Some(&b'}')
    {
        return Err(FrameError::Framing);
    }
    let hex = std::str::from_utf8(&line[PREFIX.len()..PREFIX.len() + 64])
        .map_err(|_| FrameError::Hash)?;
    let stored_hash = ChainHash::parse(hex).ok_or(FrameError::Hash)?;
    Ok(RawRecord {
        stored_hash,
        payload: &line[PAYLOAD_AT..line.len() - 1],
    })
}

/// Parses a payload.
///
/// Errors: serde_json's (not JSON, unknown or missing fields).
pub fn parse_payload(payload: &[u8]) -> Result<Payload, serde_json::Error> {
    serde_json::from_slice(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_model::event::EventId;

    #[test]
    fn line_round_trip_and_hash_covers_stored_bytes() {
        let ev = AuditEvent {
            event_id: EventId(u128::MAX - 7),
            time_ns: 1_795_237_200_000_000_000,
            action: "container.die".into(),
            message: "died \"quoted\"\n".into(),
            ..Default::default()
        };
        let (line, hash) = encode_line(1, &ChainHash::GENESIS, &ev).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let raw = split_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(raw.stored_hash, hash);
        assert_eq!(ChainHash::chain(&ChainHash::GENESIS, raw.payload), hash);
        let p = parse_payload(raw.payload).unwrap();
        assert_eq!((p.v, p.seq), (RECORD_VERSION, 1));
        assert_eq!(p.prev, ChainHash::GENESIS.to_hex());
        assert_eq!(p.event, ev);
        // The whole line is JSON too (jq-friendly).
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["hash"], hash.to_hex());
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(split_line(b"").unwrap_err(), FrameError::Framing);
        assert_eq!(split_line(b"{\"x\":1}").unwrap_err(), FrameError::Framing);
        let (line, _) = encode_line(1, &ChainHash::GENESIS, &AuditEvent::default()).unwrap();
        let mut bad = line[..line.len() - 1].to_vec();
        bad[PREFIX.len()] = b'g';
        assert_eq!(split_line(&bad).unwrap_err(), FrameError::Hash);
        assert!(ChainHash::parse("zz").is_none());
    }
}
