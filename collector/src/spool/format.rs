//! The spool's on-disk formats: segment file names, the segment header, the record frame and
//! the ack cursor file. All integers are little-endian; every checksum is CRC-32 (IEEE
//! 802.3 / ISO-HDLC polynomial, as computed by `crc32fast`).
//!
//! Segment file `spool-<seq as 16 lower-case hex digits>.seg`:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `SLSPOOL\0` |
//! | 8..12 | format version, u32 (1) |
//! | 12..20 | segment sequence number, u64 (must match the file name) |
//! | 20..24 | CRC-32 of bytes 0..20 |
//! | 24.. | records, back to back, no padding |
//!
//! Record frame (12-byte header, then the payload):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | payload length in bytes, u32 |
//! | 4..8 | CRC-32 of the payload |
//! | 8..12 | CRC-32 of bytes 0..8 (the frame header itself) |
//! | 12..12+len | payload |
//!
//! The header checksum separates the two kinds of damage: a bad header CRC means the length
//! cannot be trusted, so nothing after it in that segment can be framed; a good header with a
//! bad payload CRC means one record is damaged and the next frame starts right after it.
//!
//! Cursor file `spool.cursor` (32 bytes): magic `SLCURSOR`, version u32 (1), segment seq u64,
//! byte offset u64 in that segment, CRC-32 of bytes 0..28.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: u64 = 24;
/// Bytes of a record's frame header.
pub const FRAME_HEADER_LEN: u64 = 12;
/// Version written in segment headers and the cursor file.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the ack cursor file inside the spool directory.
pub const CURSOR_FILE: &str = "spool.cursor";
/// Name of the cursor's temporary file (written, synced, then renamed over [`CURSOR_FILE`]).
pub const CURSOR_TMP_FILE: &str = "spool.cursor.tmp";

const SEGMENT_MAGIC: &[u8; 8] = b"SLSPOOL\0";
const CURSOR_MAGIC: &[u8; 8] = b"SLCURSOR";
const CURSOR_LEN: usize = 32;

/// A byte position in the spool: segment sequence number, then byte offset in that segment.
/// Ordered by segment, then offset, which is the order records were appended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Segment sequence number.
    pub seq: u64,
    /// Byte offset from the start of the segment file.
    pub offset: u64,
}

impl Position {
    /// The first record position of segment `seq`.
    pub fn segment_start(seq: u64) -> Position {
        Position {
            seq,
            offset: SEGMENT_HEADER_LEN,
        }
    }
}

/// `spool-<seq:016x>.seg`.
pub fn segment_file_name(seq: u64) -> String {
    format!("spool-{seq:016x}.seg")
}

/// The sequence number of a segment file name, or `None` for any other name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("spool-")?.strip_suffix(".seg")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The header of segment `seq`.
pub fn encode_segment_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub enum SegmentHeaderCheck {
    /// Intact, this version, the expected sequence number.
    Ok,
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes: the file was being created when the process
    /// stopped.
    Short,
    /// Wrong magic, checksum or sequence number.
    Corrupt(&'static str),
    /// An intact header of another format version (written by a newer collector).
    Unsupported(u32),
}

/// Checks the header bytes (`bytes` is the start of the file, any length) of segment `seq`.
pub fn check_segment_header(bytes: &[u8], seq: u64) -> SegmentHeaderCheck {
    let Some(h) = bytes.get(..SEGMENT_HEADER_LEN as usize) else {
        return SegmentHeaderCheck::Short;
    };
    if &h[0..8] != SEGMENT_MAGIC {
        return SegmentHeaderCheck::Corrupt("bad magic");
    }
    if crc32fast::hash(&h[0..20]) != u32_at(h, 20) {
        return SegmentHeaderCheck::Corrupt("header checksum mismatch");
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION {
        return SegmentHeaderCheck::Unsupported(version);
    }
    if u64_at(h, 12) != seq {
        return SegmentHeaderCheck::Corrupt("sequence number differs from the file name");
    }
    SegmentHeaderCheck::Ok
}

/// The frame header for `payload` (whose length must fit in a u32; the caller checks).
pub fn encode_frame_header(payload: &[u8]) -> [u8; FRAME_HEADER_LEN as usize] {
    let mut h = [0u8; FRAME_HEADER_LEN as usize];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let crc = crc32fast::hash(&h[0..8]);
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What is found at a frame position.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameHead {
    /// The position is the end of the segment's data.
    End,
    /// The frame header or payload runs past the end of the data (a write cut short).
    Incomplete,
    /// The frame header's checksum is wrong: its length cannot be trusted.
    Unframeable,
    /// An intact header whose payload lies within the data.
    Record {
        /// Payload bytes.
        len: u32,
        /// Expected CRC-32 of the payload.
        crc: u32,
    },
}

/// Reads the frame header at `pos`; `limit` is the end of the segment's data.
pub fn read_frame_head(file: &File, pos: u64, limit: u64) -> io::Result<FrameHead> {
    if pos >= limit {
        return Ok(FrameHead::End);
    }
    if limit - pos < FRAME_HEADER_LEN {
        return Ok(FrameHead::Incomplete);
    }
    let mut h = [0u8; FRAME_HEADER_LEN as usize];
    match file.read_exact_at(&mut h, pos) {
        Ok(()) => {}
        // The file is shorter than the length we know of (truncated behind our back).
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(FrameHead::Incomplete),
        Err(e) => return Err(e),
    }
    if crc32fast::hash(&h[0..8]) != u32_at(&h, 8) {
        return Ok(FrameHead::Unframeable);
    }
    let len = u32_at(&h, 0);
    if limit - pos - FRAME_HEADER_LEN < u64::from(len) {
        return Ok(FrameHead::Incomplete);
    }
    Ok(FrameHead::Record {
        len,
        crc: u32_at(&h, 4),
    })
}

/// Reads the payload of the frame at `pos` into `buf` (replacing its contents); `Ok(false)`
/// when its checksum does not match `crc` or the file ends early.
pub fn read_payload(
    file: &File,
    pos: u64,
    len: u32,
    crc: u32,
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    buf.clear();
    buf.resize(len as usize, 0);
    match file.read_exact_at(buf, pos + FRAME_HEADER_LEN) {
        Ok(()) => Ok(crc32fast::hash(buf) == crc),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The cursor file's bytes for `pos`.
pub fn encode_cursor(pos: Position) -> [u8; CURSOR_LEN] {
    let mut c = [0u8; CURSOR_LEN];
    c[0..8].copy_from_slice(CURSOR_MAGIC);
    c[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    c[12..20].copy_from_slice(&pos.seq.to_le_bytes());
    c[20..28].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&c[0..28]);
    c[28..32].copy_from_slice(&crc.to_le_bytes());
    c
}

/// What a cursor file holds.
#[derive(Debug, PartialEq, Eq)]
pub enum CursorCheck {
    /// An intact cursor of this version.
    Ok(Position),
    /// Wrong size, magic or checksum.
    Garbage(&'static str),
    /// An intact cursor of another format version.
    Unsupported(u32),
}

/// Decodes a cursor file's bytes.
pub fn decode_cursor(bytes: &[u8]) -> CursorCheck {
    if bytes.len() != CURSOR_LEN {
        return CursorCheck::Garbage("wrong size");
    }
    if &bytes[0..8] != CURSOR_MAGIC {
        return CursorCheck::Garbage("bad magic");
    }
    if crc32fast::hash(&bytes[0..28]) != u32_at(bytes, 28) {
        return CursorCheck::Garbage("checksum mismatch");
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return CursorCheck::Unsupported(version);
    }
    CursorCheck::Ok(Position {
        seq: u64_at(bytes, 12),
        offset: u64_at(bytes, 20),
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_roundtrip_and_reject_others() {
        assert_eq!(segment_file_name(0x1f), "spool-000000000000001f.seg");
        assert_eq!(
            parse_segment_file_name("spool-000000000000001f.seg"),
            Some(0x1f)
        );
        assert_eq!(parse_segment_file_name("spool-000000000000001F.seg"), None);
        assert_eq!(parse_segment_file_name("spool-1f.seg"), None);
        assert_eq!(
            parse_segment_file_name("spool-000000000000001f.seg.tmp"),
            None
        );
        assert_eq!(parse_segment_file_name(CURSOR_FILE), None);
    }

    #[test]
    fn segment_header_bytes_and_checks() {
        let h = encode_segment_header(7);
        assert_eq!(&h[0..8], b"SLSPOOL\0");
        assert_eq!(&h[8..12], &[1, 0, 0, 0]);
        assert_eq!(&h[12..20], &[7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&h[20..24], &crc32fast::hash(&h[0..20]).to_le_bytes());
        assert_eq!(check_segment_header(&h, 7), SegmentHeaderCheck::Ok);
        assert_eq!(
            check_segment_header(&h, 8),
            SegmentHeaderCheck::Corrupt("sequence number differs from the file name")
        );
        assert_eq!(check_segment_header(&h[..23], 7), SegmentHeaderCheck::Short);
        let mut bad = h;
        bad[13] ^= 1;
        assert_eq!(
            check_segment_header(&bad, 7),
            SegmentHeaderCheck::Corrupt("header checksum mismatch")
        );
        let mut v2 = h;
        v2[8] = 2;
        let crc = crc32fast::hash(&v2[0..20]);
        v2[20..24].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            check_segment_header(&v2, 7),
            SegmentHeaderCheck::Unsupported(2)
        );
    }

    #[test]
    fn frame_header_bytes() {
        let h = encode_frame_header(b"abc");
        assert_eq!(&h[0..4], &[3, 0, 0, 0]);
        assert_eq!(&h[4..8], &crc32fast::hash(b"abc").to_le_bytes());
        assert_eq!(&h[8..12], &crc32fast::hash(&h[0..8]).to_le_bytes());
    }

    #[test]
    fn cursor_roundtrip_and_garbage() {
        let pos = Position {
            seq: 3,
            offset: 4096,
        };
        let c = encode_cursor(pos);
        assert_eq!(decode_cursor(&c), CursorCheck::Ok(pos));
        assert_eq!(decode_cursor(&c[..31]), CursorCheck::Garbage("wrong size"));
        let mut bad = c;
        bad[21] ^= 0x80;
        assert_eq!(
            decode_cursor(&bad),
            CursorCheck::Garbage("checksum mismatch")
        );
        bad = c;
        bad[0] = b'X';
        assert_eq!(decode_cursor(&bad), CursorCheck::Garbage("bad magic"));
    }

    #[test]
    fn frame_reads_classify_end_incomplete_unframeable_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut bytes = encode_frame_header(b"hello").to_vec();
        bytes.extend_from_slice(b"hello");
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        let n = bytes.len() as u64;
        assert_eq!(
            read_frame_head(&f, 0, n).unwrap(),
            FrameHead::Record {
                len: 5,
                crc: crc32fast::hash(b"hello")
            }
        );
        let mut buf = Vec::new();
        assert!(read_payload(&f, 0, 5, crc32fast::hash(b"hello"), &mut buf).unwrap());
        assert_eq!(buf, b"hello");
        assert!(!read_payload(&f, 0, 5, 0, &mut buf).unwrap());
        assert_eq!(read_frame_head(&f, n, n).unwrap(), FrameHead::End);
        assert_eq!(read_frame_head(&f, 0, 11).unwrap(), FrameHead::Incomplete);
        assert_eq!(
            read_frame_head(&f, 0, n - 1).unwrap(),
            FrameHead::Incomplete
        );
        // A limit past the real end of the file: the read comes up short.
        assert_eq!(read_frame_head(&f, 10, 40).unwrap(), FrameHead::Incomplete);
        bytes[0] = 6;
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(read_frame_head(&f, 0, n).unwrap(), FrameHead::Unframeable);
    }
}
