//! Spool scenarios: round trip, restart, segment deletion, the byte bound, and recovery from
//! torn writes, flipped bytes and damaged headers or cursor files.

use std::fs;
use std::path::{Path, PathBuf};

use sightline_collector::spool::format::{
    segment_file_name, CURSOR_FILE, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use sightline_collector::spool::{
    FsyncPolicy, RecordId, Spool, SpoolConfig, SpoolError, SpoolStats,
};

const H: u64 = SEGMENT_HEADER_LEN;
const F: u64 = FRAME_HEADER_LEN;

fn cfg(segment_bytes: u64, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: None,
        max_bytes,
        segment_bytes,
        fsync: FsyncPolicy::Always,
        ..SpoolConfig::default()
    }
}

fn small() -> SpoolConfig {
    cfg(4096, 1 << 20)
}

/// Record `i` of `len` bytes, distinct from every other record.
fn rec(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 37 + j * 7 + 1) as u8).collect()
}

fn seg_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

fn names(seqs: &[u64]) -> Vec<String> {
    seqs.iter().map(|&s| segment_file_name(s)).collect()
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// Reads every remaining record (without acknowledging).
fn read_all(spool: &mut Spool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let got = spool.read_next(usize::MAX, usize::MAX).unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got.into_iter().map(|(_, p)| p));
    }
}

fn append_all(spool: &mut Spool, recs: &[Vec<u8>]) -> Vec<RecordId> {
    recs.iter().map(|r| spool.append(r).unwrap()).collect()
}

fn flip(path: &Path, at: u64) {
    let mut b = fs::read(path).unwrap();
    b[at as usize] ^= 0x5a;
    fs::write(path, b).unwrap();
}

#[test]
fn spool_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Spool>();
}

#[test]
fn round_trip_returns_exact_records_and_ids_then_ack_empties() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert!(spool.is_empty());
    let recs = vec![Vec::new(), rec(1, 1), rec(2, 1000)];
    let ids = append_all(&mut spool, &recs);
    assert!(ids[0] < ids[1] && ids[1] < ids[2]);
    assert_eq!(spool.records(), 3);
    assert_eq!(spool.bytes(), 3 * F + 1001);
    assert_eq!(spool.disk_bytes(), H + 3 * F + 1001);
    let got = spool.read_next(10, usize::MAX).unwrap();
    assert_eq!(
        got,
        ids.iter().copied().zip(recs.clone()).collect::<Vec<_>>()
    );
    assert!(spool.read_next(10, usize::MAX).unwrap().is_empty());
    // Reading removes nothing.
    assert_eq!(spool.records(), 3);
    assert!(!spool.is_empty());
    spool.ack(ids[2]).unwrap();
    assert_eq!(spool.records(), 0);
    assert_eq!(spool.bytes(), 0);
    assert!(spool.is_empty());
    spool.ack(ids[1]).unwrap(); // already acknowledged: no-op
    assert_eq!(spool.stats(), SpoolStats::default());
}

#[test]
fn read_next_honours_record_and_byte_limits_but_returns_one_oversized_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    let recs = vec![rec(0, 300), rec(1, 300), rec(2, 300)];
    append_all(&mut spool, &recs);
    assert!(spool.read_next(0, usize::MAX).unwrap().is_empty());
    let got = spool.read_next(usize::MAX, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, recs[0]);
    spool.rewind();
    let got = spool.read_next(usize::MAX, 600).unwrap();
    assert_eq!(
        got.iter().map(|g| &g.1).collect::<Vec<_>>(),
        [&recs[0], &recs[1]]
    );
    let got = spool.read_next(1, usize::MAX).unwrap();
    assert_eq!(got[0].1, recs[2]);
}

#[test]
fn restart_and_rewind_return_exactly_the_unacked_records_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..10).map(|i| rec(i, 100)).collect();
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
        let got = spool.read_next(6, usize::MAX).unwrap();
        spool.ack(got[2].0).unwrap();
        spool.rewind();
        assert_eq!(read_all(&mut spool), recs[3..]);
    }
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(spool.records(), 7);
    assert_eq!(spool.bytes(), 7 * (F + 100));
    assert_eq!(read_all(&mut spool), recs[3..]);
    assert_eq!(spool.stats(), SpoolStats::default());
}

#[test]
fn ack_of_a_record_not_yet_read_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    let ids = append_all(&mut spool, &[rec(0, 10), rec(1, 10)]);
    let got = spool.read_next(1, usize::MAX).unwrap();
    assert_eq!(got[0].0, ids[0]);
    assert!(matches!(
        spool.ack(ids[1]),
        Err(SpoolError::UnknownRecord {
            reason: "not returned by read_next yet",
            ..
        })
    ));
    assert_eq!(spool.records(), 2);
    drop(spool);
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(read_all(&mut spool), [rec(0, 10), rec(1, 10)]);
}

#[test]
fn ack_deletes_wholly_acknowledged_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    // 4 frames of 1012 bytes fit in a 4096-byte segment after its 24-byte header.
    let recs: Vec<Vec<u8>> = (0..10).map(|i| rec(i, 1000)).collect();
    append_all(&mut spool, &recs);
    assert_eq!(seg_files(dir.path()), names(&[0, 1, 2]));
    assert_eq!(
        fs::metadata(seg_path(dir.path(), 0)).unwrap().len(),
        H + 4 * (F + 1000)
    );
    let got = spool.read_next(5, usize::MAX).unwrap();
    spool.ack(got[2].0).unwrap();
    assert_eq!(seg_files(dir.path()), names(&[0, 1, 2]));
    spool.ack(got[3].0).unwrap();
    assert_eq!(seg_files(dir.path()), names(&[1, 2]));
    spool.ack(got[4].0).unwrap();
    assert_eq!(seg_files(dir.path()), names(&[1, 2]));
    let rest = spool.read_next(usize::MAX, usize::MAX).unwrap();
    spool.ack(rest.last().unwrap().0).unwrap();
    assert_eq!(seg_files(dir.path()), names(&[2]));
    assert!(spool.is_empty());
    assert_eq!(spool.disk_bytes(), H + 2 * (F + 1000));
    drop(spool);
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert!(spool.is_empty());
    assert!(read_all(&mut spool).is_empty());
}

#[test]
fn full_at_the_byte_bound_then_appends_work_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), &cfg(4096, 8192)).unwrap();
    let recs: Vec<Vec<u8>> = (0..9).map(|i| rec(i, 1000)).collect();
    append_all(&mut spool, &recs[..8]);
    assert_eq!(spool.disk_bytes(), 2 * (H + 4 * (F + 1000)));
    match spool.append(&recs[8]) {
        Err(SpoolError::Full {
            disk_bytes,
            needed,
            max_bytes,
        }) => {
            assert_eq!(disk_bytes, 8144);
            assert_eq!(needed, 8144 + H + F + 1000);
            assert_eq!(max_bytes, 8192);
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(spool.records(), 8);
    // Reading alone frees nothing.
    let got = spool.read_next(4, usize::MAX).unwrap();
    assert!(matches!(
        spool.append(&recs[8]),
        Err(SpoolError::Full { .. })
    ));
    spool.ack(got[3].0).unwrap();
    assert_eq!(seg_files(dir.path()), names(&[1]));
    spool.append(&recs[8]).unwrap();
    assert_eq!(spool.disk_bytes(), (H + 4 * (F + 1000)) + (H + F + 1000));
    assert_eq!(read_all(&mut spool), recs[4..]);
}

#[test]
fn a_fully_acknowledged_segment_is_recycled_when_the_bound_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), &cfg(4096, 8192)).unwrap();
    let big = rec(0, 4060);
    for _ in 0..3 {
        let id = spool.append(&big).unwrap();
        let got = spool.read_next(1, usize::MAX).unwrap();
        assert_eq!(got, vec![(id, big.clone())]);
        spool.ack(id).unwrap();
        assert_eq!(seg_files(dir.path()).len(), 1);
    }
    assert_eq!(spool.disk_bytes(), 4096);
}

#[test]
fn record_larger_than_a_segment_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert!(matches!(
        spool.append(&rec(0, 4061)),
        Err(SpoolError::RecordTooLarge {
            len: 4061,
            max: 4060
        })
    ));
    spool.append(&rec(0, 4060)).unwrap();
    assert_eq!(read_all(&mut spool), [rec(0, 4060)]);
}

#[test]
fn invalid_config_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Spool::open(dir.path(), &cfg(4096, 4096)),
        Err(SpoolError::Config(_))
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn torn_last_record_at_every_byte_position_recovers_the_records_before_it() {
    let src = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = [10, 50, 200, 33, 77]
        .iter()
        .enumerate()
        .map(|(i, &l)| rec(i, l))
        .collect();
    {
        let mut spool = Spool::open(src.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
    }
    let full_len = fs::metadata(seg_path(src.path(), 0)).unwrap().len();
    let last_start = full_len - (F + 77);
    for cut in last_start..full_len {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let path = seg_path(dir.path(), 0);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        assert_eq!(spool.records(), 4, "cut at {cut}");
        assert_eq!(
            spool.stats(),
            SpoolStats {
                torn_tail_bytes: cut - last_start,
                ..SpoolStats::default()
            }
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), last_start);
        assert_eq!(read_all(&mut spool), recs[..4], "cut at {cut}");
        spool.append(b"after").unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        let mut want = recs[..4].to_vec();
        want.push(b"after".to_vec());
        assert_eq!(read_all(&mut spool), want, "cut at {cut}");
        assert_eq!(spool.stats(), SpoolStats::default());
    }
}

/// Offsets of each record's frame in a single-segment spool of `lens`.
fn frame_starts(lens: &[usize]) -> Vec<u64> {
    let mut at = H;
    lens.iter()
        .map(|&l| {
            let s = at;
            at += F + l as u64;
            s
        })
        .collect()
}

#[test]
fn flipped_payload_byte_skips_and_counts_that_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let lens = [40, 60, 80, 100, 120];
    let recs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| rec(i, l)).collect();
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
    }
    flip(&seg_path(dir.path(), 0), frame_starts(&lens)[2] + F + 5);
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    let one_corrupt = SpoolStats {
        corrupt_records: 1,
        ..SpoolStats::default()
    };
    assert_eq!(spool.stats(), one_corrupt);
    assert_eq!(spool.records(), 4);
    let want = vec![
        recs[0].clone(),
        recs[1].clone(),
        recs[3].clone(),
        recs[4].clone(),
    ];
    assert_eq!(read_all(&mut spool), want);
    spool.rewind();
    assert_eq!(read_all(&mut spool), want);
    assert_eq!(spool.stats(), one_corrupt);
}

#[test]
fn flipped_byte_at_the_end_of_a_closed_segment_is_released_by_a_later_ack() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..6).map(|i| rec(i, 1000)).collect();
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
    }
    // Record 3 is the last one of segment 0.
    flip(&seg_path(dir.path(), 0), H + 3 * (F + 1000) + F + 999);
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(spool.stats().corrupt_records, 1);
    let got = spool.read_next(3, usize::MAX).unwrap();
    spool.ack(got[2].0).unwrap();
    assert_eq!(seg_files(dir.path()), names(&[0, 1]));
    let got = spool.read_next(1, usize::MAX).unwrap();
    assert_eq!(got[0].1, recs[4]);
    spool.ack(got[0].0).unwrap();
    assert_eq!(seg_files(dir.path()), names(&[1]));
    assert_eq!(read_all(&mut spool), [recs[5].clone()]);
    assert_eq!(spool.stats().corrupt_records, 1);
}

#[test]
fn damaged_length_in_a_closed_segment_skips_to_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..6).map(|i| rec(i, 1000)).collect();
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
    }
    let seg0 = seg_path(dir.path(), 0);
    let len0 = fs::metadata(&seg0).unwrap().len();
    let r1 = H + F + 1000;
    flip(&seg0, r1 + 1); // a length byte of record 1
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(
        spool.stats(),
        SpoolStats {
            lost_bytes: len0 - r1,
            ..SpoolStats::default()
        }
    );
    assert_eq!(spool.records(), 3);
    assert_eq!(
        read_all(&mut spool),
        [recs[0].clone(), recs[4].clone(), recs[5].clone()]
    );
    // The damaged segment is kept (unmodified) until acknowledged past.
    assert_eq!(fs::metadata(&seg0).unwrap().len(), len0);
}

#[test]
fn damaged_length_in_the_newest_segment_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let lens = [40, 60, 80, 100];
    let recs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| rec(i, l)).collect();
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
    }
    let path = seg_path(dir.path(), 0);
    let len = fs::metadata(&path).unwrap().len();
    let r1 = frame_starts(&lens)[1];
    flip(&path, r1 + 8); // the frame header's own checksum
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(spool.stats().lost_bytes, len - r1);
    assert_eq!(fs::metadata(&path).unwrap().len(), r1);
    spool.append(b"new").unwrap();
    drop(spool);
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(read_all(&mut spool), [recs[0].clone(), b"new".to_vec()]);
    assert_eq!(spool.stats(), SpoolStats::default());
}

#[test]
fn damaged_segment_header_skips_that_segment_and_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..6).map(|i| rec(i, 1000)).collect();
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
    }
    let seg0 = seg_path(dir.path(), 0);
    let len0 = fs::metadata(&seg0).unwrap().len();
    let pristine = fs::read(&seg0).unwrap();
    flip(&seg0, 2); // magic
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(spool.stats().lost_bytes, len0 - H);
    assert_eq!(spool.records(), 2);
    assert_eq!(read_all(&mut spool), recs[4..]);
    drop(spool);

    // An intact header of version 2 (written by a newer collector): refuse, change nothing.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
    }
    let mut v2 = pristine.clone();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&v2[0..20]);
    v2[20..24].copy_from_slice(&crc.to_le_bytes());
    fs::write(seg_path(dir.path(), 0), &v2).unwrap();
    match Spool::open(dir.path(), &small()) {
        Err(SpoolError::UnsupportedVersion { version: 2, path }) => {
            assert_eq!(path, seg_path(dir.path(), 0))
        }
        Err(e) => panic!("expected UnsupportedVersion, got {e}"),
        Ok(_) => panic!("expected UnsupportedVersion, got a spool"),
    }
    assert_eq!(fs::read(seg_path(dir.path(), 0)).unwrap(), v2);
}

#[test]
fn newest_segment_with_a_torn_header_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..5).map(|i| rec(i, 1000)).collect();
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
    }
    let seg1 = seg_path(dir.path(), 1);
    let bytes = fs::read(&seg1).unwrap();
    fs::write(&seg1, &bytes[..10]).unwrap();
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(spool.stats().torn_tail_bytes, 10);
    assert_eq!(fs::metadata(&seg1).unwrap().len(), H);
    spool.append(b"x").unwrap();
    let mut want = recs[..4].to_vec();
    want.push(b"x".to_vec());
    assert_eq!(read_all(&mut spool), want);
}

/// Segments 0 and 1 full (4 records each), segment 2 with one record; records 0..=5 read and
/// acknowledged, so segment 0 is gone and the cursor is inside segment 1.
fn acked_into_segment_1(dir: &Path) -> Vec<Vec<u8>> {
    let recs: Vec<Vec<u8>> = (0..9).map(|i| rec(i, 1000)).collect();
    let mut spool = Spool::open(dir, &small()).unwrap();
    append_all(&mut spool, &recs);
    let got = spool.read_next(6, usize::MAX).unwrap();
    spool.ack(got[5].0).unwrap();
    assert_eq!(seg_files(dir), names(&[1, 2]));
    recs
}

#[test]
fn damaged_cursor_file_replays_from_the_oldest_segment_never_skips() {
    for damage in [&b"junk!"[..], &[0u8; 32][..]] {
        let dir = tempfile::tempdir().unwrap();
        let recs = acked_into_segment_1(dir.path());
        fs::write(dir.path().join(CURSOR_FILE), damage).unwrap();
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        assert_eq!(spool.stats().cursor_resets, 1);
        // Records 4 and 5 were acknowledged: they come again (duplicates, not loss).
        assert_eq!(read_all(&mut spool), recs[4..]);
    }
    // A torn cursor (only its first bytes written) is handled the same way.
    let dir = tempfile::tempdir().unwrap();
    let recs = acked_into_segment_1(dir.path());
    let cursor = dir.path().join(CURSOR_FILE);
    let bytes = fs::read(&cursor).unwrap();
    fs::write(&cursor, &bytes[..20]).unwrap();
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(spool.stats().cursor_resets, 1);
    assert_eq!(read_all(&mut spool), recs[4..]);
    drop(spool);
    // The next open trusts the rewritten cursor again: nothing was acknowledged since.
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(spool.stats(), SpoolStats::default());
    assert_eq!(read_all(&mut spool), recs[4..]);
}

#[test]
fn acked_segment_left_by_a_crash_before_unlink_is_deleted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..9).map(|i| rec(i, 1000)).collect();
    let seg0_copy;
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
        seg0_copy = fs::read(seg_path(dir.path(), 0)).unwrap();
        let got = spool.read_next(6, usize::MAX).unwrap();
        spool.ack(got[5].0).unwrap();
    }
    fs::write(seg_path(dir.path(), 0), seg0_copy).unwrap();
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(seg_files(dir.path()), names(&[1, 2]));
    assert_eq!(read_all(&mut spool), recs[6..]);
}

#[test]
fn cursor_past_lost_unsynced_data_never_puts_new_records_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let interval = SpoolConfig {
        fsync: FsyncPolicy::IntervalMs(60_000),
        ..small()
    };
    {
        let mut spool = Spool::open(dir.path(), &interval).unwrap();
        append_all(&mut spool, &[rec(0, 100), rec(1, 100)]);
        let got = spool.read_next(2, usize::MAX).unwrap();
        spool.ack(got[1].0).unwrap();
    }
    // Power loss: the acknowledged records never reached the disk, the cursor did.
    fs::OpenOptions::new()
        .write(true)
        .open(seg_path(dir.path(), 0))
        .unwrap()
        .set_len(H)
        .unwrap();
    let mut spool = Spool::open(dir.path(), &interval).unwrap();
    assert!(spool.is_empty());
    spool.append(b"fresh").unwrap();
    drop(spool);
    let mut spool = Spool::open(dir.path(), &interval).unwrap();
    assert_eq!(read_all(&mut spool), [b"fresh".to_vec()]);
    assert_eq!(seg_files(dir.path()), names(&[1]));
}

#[test]
fn damage_found_while_running_is_counted_and_appends_move_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let lens = [40, 60, 80, 100];
    let recs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| rec(i, l)).collect();
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    append_all(&mut spool, &recs);
    let path = seg_path(dir.path(), 0);
    let len = fs::metadata(&path).unwrap().len();
    let starts = frame_starts(&lens);
    flip(&path, starts[1] + F + 1); // payload of record 1
    flip(&path, starts[2] + 2); // length of record 2: records 2 and 3 cannot be framed
    assert_eq!(read_all(&mut spool), [recs[0].clone()]);
    assert_eq!(
        spool.stats(),
        SpoolStats {
            corrupt_records: 1,
            lost_bytes: len - starts[2],
            ..SpoolStats::default()
        }
    );
    assert_eq!(spool.records(), 1);
    // The damaged segment was closed: new records go to the next one and come back.
    spool.append(b"next").unwrap();
    assert_eq!(seg_files(dir.path()), names(&[0, 1]));
    assert_eq!(read_all(&mut spool), [b"next".to_vec()]);
    spool.rewind();
    assert_eq!(read_all(&mut spool), [recs[0].clone(), b"next".to_vec()]);
    assert_eq!(spool.stats().corrupt_records, 1);
    let last = {
        spool.rewind();
        spool
            .read_next(usize::MAX, usize::MAX)
            .unwrap()
            .pop()
            .unwrap()
            .0
    };
    spool.ack(last).unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.records(), 0);
    assert_eq!(seg_files(dir.path()), names(&[1]));
}

#[test]
fn damaged_last_record_does_not_keep_the_spool_non_empty_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let lens = [30, 40, 50];
    let recs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| rec(i, l)).collect();
    {
        let mut spool = Spool::open(dir.path(), &small()).unwrap();
        append_all(&mut spool, &recs);
    }
    flip(&seg_path(dir.path(), 0), frame_starts(&lens)[2] + F);
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert_eq!(spool.records(), 2);
    assert_eq!(spool.bytes(), 3 * F + 120);
    let got = spool.read_next(usize::MAX, usize::MAX).unwrap();
    assert_eq!(got.len(), 2);
    spool.ack(got[1].0).unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    assert_eq!(spool.records(), 0);
    drop(spool);
    let mut spool = Spool::open(dir.path(), &small()).unwrap();
    assert!(spool.is_empty());
    assert!(read_all(&mut spool).is_empty());
    assert_eq!(spool.stats(), SpoolStats::default());
}
