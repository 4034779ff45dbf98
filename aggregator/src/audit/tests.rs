//! Store, verify and crash-repair tests on real files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use sightline_model::audit::{Actor, AuditEvent};
use sightline_model::event::{Container, EventId, LogEvent};

use super::verify::{list_segments, walk};
use super::*;

pub(crate) fn ev(i: u64) -> AuditEvent {
    let service = if i.is_multiple_of(2) { "web" } else { "db" };
    AuditEvent {
        event_id: EventId(u128::from(i) + 1),
        time_ns: 1_795_237_200_000_000_000 + i * 1_000_000_000,
        observed_ns: 1_795_237_200_000_000_000 + i * 1_000_000_000 + 5,
        resource: LogEvent {
            host: "h1".into(),
            service: service.into(),
            container: Some(Arc::new(Container {
                id: format!("c{i}"),
                name: format!("{service}-{i}"),
                image: "busybox".into(),
                labels: Default::default(),
            })),
            ..Default::default()
        },
        action: if i.is_multiple_of(3) {
            "container.die"
        } else {
            "container.start"
        }
        .into(),
        actor: Actor {
            kind: "container".into(),
            id: format!("c{i}"),
            name: format!("{service}-{i}"),
        },
        outcome: i.is_multiple_of(3).then(|| "137".to_string()),
        message: format!("event number {i} happened"),
        attributes: [("n".to_string(), i.to_string())].into(),
    }
}

fn small() -> AuditConfig {
    AuditConfig {
        max_segment_bytes: AuditConfig::MIN_SEGMENT_BYTES,
    }
}

fn no_pos() -> BTreeMap<TopicPartition, i64> {
    BTreeMap::new()
}

/// Writes `n` records (one per batch) into a fresh store with 4 KiB segments.
fn filled(n: u64) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let store = AuditStore::open(&dir, small()).unwrap();
    for i in 0..n {
        store.append(ev(i)).unwrap();
    }
    (tmp, dir)
}

/// (file, offset, line without '\n', seq) of every record line, in chain order.
fn lines(dir: &Path) -> Vec<(PathBuf, usize, Vec<u8>, u64)> {
    let mut out = Vec::new();
    for seg in list_segments(dir).unwrap() {
        let bytes = fs::read(&seg.path).unwrap();
        let mut pos = 0;
        for line in bytes.split(|&c| c == b'\n') {
            if line.is_empty() {
                break;
            }
            let raw = record::split_line(line).unwrap();
            let seq = record::parse_payload(raw.payload).unwrap().seq;
            out.push((seg.path.clone(), pos, line.to_vec(), seq));
            pos += line.len() + 1;
        }
    }
    out
}

fn stored_events(dir: &Path) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    let w = walk(dir, &mut |v| out.push(v.payload.event.clone())).unwrap();
    assert!(w.problem.is_none(), "{:?}", w.problem);
    out
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn problem(dir: &Path) -> Problem {
    let r = verify(dir).unwrap();
    assert!(!r.ok);
    r.problem.unwrap()
}

#[test]
fn append_rotate_reopen_and_verify() {
    let (_tmp, dir) = filled(60);
    let segs = list_segments(&dir).unwrap();
    assert!(segs.len() >= 3, "4 KiB segments rotate: {segs:?}");
    // Segment names are the seq of their first record.
    let all = lines(&dir);
    for s in &segs {
        let first = all.iter().find(|l| l.0 == s.path).unwrap();
        assert_eq!((first.1, first.3), (0, s.first_seq));
    }
    let r = verify(&dir).unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!((r.records, r.head_seq, r.last_seq), (60, 60, 60));
    assert_eq!(r.head_hash, r.last_hash);
    assert_eq!(r.segments, segs.len());

    let store = AuditStore::open(&dir, small()).unwrap();
    assert_eq!(store.head().0, 60);
    assert!(store.contains(ev(59).event_id));
    let out = store.append(ev(60)).unwrap();
    assert_eq!((out.appended, out.head_seq), (1, 61));
    drop(store);
    assert!(verify(&dir).unwrap().ok);
    assert_eq!(stored_events(&dir), (0..61).map(ev).collect::<Vec<_>>());
}

#[test]
fn a_second_writer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _a = AuditStore::open(tmp.path(), AuditConfig::default()).unwrap();
    assert!(matches!(
        AuditStore::open(tmp.path(), AuditConfig::default()),
        Err(AuditError::Locked(_))
    ));
}

#[test]
fn config_is_validated() {
    let bad = AuditConfig {
        max_segment_bytes: 10,
    };
    assert!(
        matches!(bad.validate(), Err(AuditError::Config(m)) if m.contains("max_segment_bytes"))
    );
    let tmp = tempfile::tempdir().unwrap();
    assert!(AuditStore::open(tmp.path(), bad).is_err());
    let parsed: Result<AuditConfig, _> = toml::from_str("max_segment_byte = 5");
    assert!(parsed.is_err(), "unknown keys are rejected");
}

#[test]
fn duplicates_are_skipped_and_positions_commit_with_records() {
    let tmp = tempfile::tempdir().unwrap();
    let store = AuditStore::open(tmp.path(), AuditConfig::default()).unwrap();
    let tp = ("sightline.audit".to_string(), 0);
    let pos = |o| [(tp.clone(), o)].into_iter().collect::<BTreeMap<_, _>>();
    let out = store.append_batch(&[ev(0), ev(1), ev(0)], &pos(3)).unwrap();
    assert_eq!((out.appended, out.duplicates, out.head_seq), (2, 1, 2));
    // A Kafka replay of the same messages: nothing new, the position still advances.
    let out = store.append_batch(&[ev(1), ev(0)], &pos(5)).unwrap();
    assert_eq!((out.appended, out.duplicates, out.head_seq), (0, 2, 2));
    assert_eq!(store.positions(), pos(5));
    // A negative offset is refused before anything is written.
    let err = store
        .append_batch(&[ev(2)], &[(tp.clone(), -1)].into_iter().collect())
        .unwrap_err();
    assert!(matches!(
        err,
        AuditError::InvalidPosition { offset: -1, .. }
    ));
    drop(store);
    let store = AuditStore::open(tmp.path(), AuditConfig::default()).unwrap();
    assert_eq!(store.positions(), pos(5));
    assert_eq!(store.head().0, 2);
    assert_eq!(
        store.append(ev(0)).unwrap().duplicates,
        1,
        "rebuilt on open"
    );
    assert_eq!(stored_events(tmp.path()), vec![ev(0), ev(1)]);
}

#[test]
fn one_flipped_byte_names_exactly_that_record() {
    let (_tmp, dir) = filled(60);
    let all = lines(&dir);
    // A record in the middle of a middle segment.
    let segs = list_segments(&dir).unwrap();
    let mid_seg = &segs[segs.len() / 2].path;
    let in_seg: Vec<_> = all.iter().filter(|l| &l.0 == mid_seg).collect();
    let (path, offset, line, seq) = in_seg[in_seg.len() / 2].clone();
    let pristine = fs::read(&path).unwrap();
    // Three places: the message text, a digit of the stored hash, the record's framing.
    let msg_at = line.windows(6).position(|w| w == b"number").unwrap();
    for at in [msg_at, 12, line.len() - 1] {
        let mut bytes = pristine.clone();
        bytes[offset + at] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let p = problem(&dir);
        assert_eq!(p.seq, seq, "flip at {at}: {p:?}");
        assert_eq!(
            (p.file.as_str(), p.offset),
            (name(&path).as_str(), offset as u64)
        );
        assert!(
            matches!(p.kind, ProblemKind::Tampered | ProblemKind::Malformed),
            "{p:?}"
        );
        // The writer refuses to continue a broken chain.
        assert!(matches!(
            AuditStore::open(&dir, small()),
            Err(AuditError::Corrupt(c)) if c.seq == seq
        ));
    }
    fs::write(&path, &pristine).unwrap();
    assert!(verify(&dir).unwrap().ok);
}

fn rewrite_without(path: &Path, drop_offset: usize, drop_len: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes.drain(drop_offset..drop_offset + drop_len + 1);
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_deleted_record_names_the_gap() {
    let (_tmp, dir) = filled(30);
    let all = lines(&dir);
    let (path, offset, line, seq) = all[14].clone();
    rewrite_without(&path, offset, line.len());
    let p = problem(&dir);
    assert_eq!((p.kind, p.seq), (ProblemKind::Missing, seq));
    assert_eq!((p.file.clone(), p.offset), (name(&path), offset as u64));
    assert!(p.found.contains(&format!("record {}", seq + 1)), "{p:?}");
}

#[test]
fn swapped_records_are_reported_as_reordered() {
    let (_tmp, dir) = filled(10);
    let all = lines(&dir);
    let (a, b) = (&all[3], &all[4]);
    assert_eq!(a.0, b.0);
    let mut bytes = fs::read(&a.0).unwrap();
    let mut swapped = b.2.clone();
    swapped.push(b'\n');
    swapped.extend_from_slice(&a.2);
    swapped.push(b'\n');
    bytes.splice(a.1..a.1 + swapped.len(), swapped);
    fs::write(&a.0, bytes).unwrap();
    let p = problem(&dir);
    assert_eq!(
        (p.kind, p.seq, p.offset),
        (ProblemKind::Reordered, 4, a.1 as u64)
    );
}

#[test]
fn a_truncated_tail_is_detected_through_the_head() {
    let (_tmp, dir) = filled(30);
    let (path, offset, _, seq) = lines(&dir).last().unwrap().clone();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(offset as u64).unwrap();
    let p = problem(&dir);
    assert_eq!((p.kind, p.seq), (ProblemKind::Truncated, seq));
    assert_eq!((p.file.clone(), p.offset), (name(&path), offset as u64));
    assert!(p.expected.contains("records up to 30"), "{p:?}");
}

#[test]
fn a_deleted_segment_is_detected() {
    // Middle segment: a gap at the start of the next one.
    let (_tmp, dir) = filled(60);
    let segs = list_segments(&dir).unwrap();
    let (gone, next) = (&segs[1], &segs[2]);
    fs::remove_file(&gone.path).unwrap();
    let p = problem(&dir);
    assert_eq!((p.kind, p.seq), (ProblemKind::Missing, gone.first_seq));
    assert_eq!((p.file.as_str(), p.offset), (next.name.as_str(), 0));

    // Last segment: the head says more was committed.
    let (_tmp, dir) = filled(60);
    let segs = list_segments(&dir).unwrap();
    let last = segs.last().unwrap();
    fs::remove_file(&last.path).unwrap();
    let p = problem(&dir);
    assert_eq!((p.kind, p.seq), (ProblemKind::Truncated, last.first_seq));
    assert_eq!(p.file, last.name);

    // First segment.
    let (_tmp, dir) = filled(60);
    fs::remove_file(&list_segments(&dir).unwrap()[0].path).unwrap();
    assert_eq!(problem(&dir).seq, 1);
}

#[test]
fn a_missing_or_altered_head_is_detected() {
    let (_tmp, dir) = filled(5);
    let head = fs::read(dir.join("head.json")).unwrap();
    fs::remove_file(dir.join("head.json")).unwrap();
    assert_eq!(problem(&dir).kind, ProblemKind::HeadMissing);
    assert!(matches!(
        AuditStore::open(&dir, small()),
        Err(AuditError::Corrupt(_))
    ));
    let text = String::from_utf8(head).unwrap();
    let seq3 = lines(&dir)[2].2.clone();
    let hash3 = std::str::from_utf8(&seq3[9..73]).unwrap();
    // A head that claims record 3 is the last: record 3's hash differs from record 5's.
    let mut h: serde_json::Value = serde_json::from_str(&text).unwrap();
    h["hash"] = serde_json::Value::String(hash3.to_string());
    fs::write(dir.join("head.json"), h.to_string()).unwrap();
    assert_eq!(problem(&dir).kind, ProblemKind::HeadMismatch);
    fs::write(dir.join("head.json"), b"{not json").unwrap();
    assert_eq!(problem(&dir).kind, ProblemKind::HeadMissing);
}

#[test]
fn a_torn_last_record_is_truncated_on_open_and_the_chain_continues() {
    let (_tmp, dir) = filled(20);
    let all = lines(&dir);
    let (path, _, line, _) = all.last().unwrap().clone();
    let committed_len = fs::metadata(&path).unwrap().len();
    // A crash in the middle of writing record 21.
    let (torn, _) = record::encode_line(21, &ChainHash([9; 32]), &ev(20)).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, &torn[..torn.len() / 2]).unwrap();
    drop(f);
    let r = verify(&dir).unwrap();
    assert!(
        r.ok,
        "a torn record beyond the head is not tampering: {r:?}"
    );
    assert_eq!(r.torn_tail.as_ref().unwrap().offset, committed_len);
    assert!(!line.is_empty());

    let store = AuditStore::open(&dir, small()).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), committed_len);
    assert!(!store.contains(ev(20).event_id));
    store.append_batch(&[ev(20), ev(21)], &no_pos()).unwrap();
    drop(store);
    let r = verify(&dir).unwrap();
    assert!(r.ok && r.torn_tail.is_none(), "{r:?}");
    assert_eq!(r.records, 22);
}

#[test]
fn a_torn_committed_record_is_truncation() {
    let (_tmp, dir) = filled(20);
    let (path, offset, line, seq) = lines(&dir).last().unwrap().clone();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len((offset + line.len() / 2) as u64).unwrap();
    let p = problem(&dir);
    assert_eq!((p.kind, p.seq), (ProblemKind::Truncated, seq));
}

#[test]
fn records_written_before_a_lost_head_commit_are_kept() {
    let (_tmp, dir) = filled(10);
    let head_before = fs::read(dir.join("head.json")).unwrap();
    let store = AuditStore::open(&dir, small()).unwrap();
    store.append_batch(&[ev(10), ev(11)], &no_pos()).unwrap();
    drop(store);
    // As if the process died after fsyncing the records but before renaming head.json.
    fs::write(dir.join("head.json"), head_before).unwrap();
    let r = verify(&dir).unwrap();
    assert!(r.ok);
    assert_eq!((r.head_seq, r.unsealed_records), (10, 2));
    let store = AuditStore::open(&dir, small()).unwrap();
    assert_eq!(store.head().0, 12);
    assert_eq!(store.append(ev(11)).unwrap().duplicates, 1);
    drop(store);
    assert_eq!(verify(&dir).unwrap().unsealed_records, 0);
}

#[test]
fn query_filters_and_orders_newest_first() {
    let (_tmp, dir) = filled(40);
    let store = AuditStore::open(&dir, small()).unwrap();
    let all = store.query(&AuditQuery::default()).unwrap();
    assert_eq!((all.total, all.count), (40, 40));
    assert_eq!(all.events[0].seq, 40);
    assert!(all.events.windows(2).all(|w| w[0].time_ns >= w[1].time_ns));

    let q = AuditQuery {
        service: Some("web".into()),
        action: Some("container.*".into()),
        from_ns: Some(ev(10).time_ns as i64),
        to_ns: Some(ev(30).time_ns as i64),
        limit: 3,
        ..Default::default()
    };
    let page = store.query(&q).unwrap();
    assert_eq!(page.total, 11, "web events 10, 12, …, 30");
    let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![31, 29, 27]);
    assert_eq!(page.events[0].service, "web");

    let by_actor = AuditQuery {
        actor: Some("db-7".into()),
        actor_kind: Some("container".into()),
        ..Default::default()
    };
    let page = store.query(&by_actor).unwrap();
    assert_eq!(page.count, 1);
    assert_eq!(page.events[0].event_id, ev(7).event_id.to_string());
    let die = AuditQuery {
        action: Some("container.die".into()),
        ..Default::default()
    };
    assert_eq!(store.query(&die).unwrap().total, 14);
}

#[test]
fn action_log_appends_sightline_actions() {
    use crate::alert::ActionLog;
    let tmp = tempfile::tempdir().unwrap();
    let store = AuditStore::open(tmp.path(), AuditConfig::default()).unwrap();
    let log = StoreActionLog::with_capacity(store.clone(), 16).unwrap();
    let action = AuditEvent {
        action: "alert.notify".into(),
        actor: Actor {
            kind: "sightline".into(),
            id: "notifier".into(),
            name: "notifier".into(),
        },
        message: "sent HighCpu to pagerduty".into(),
        ..Default::default()
    };
    // Identical actions without IDs are both kept.
    log.record(action.clone());
    log.record(action.clone());
    log.flush();
    assert_eq!((log.dropped(), log.failed()), (0, 0));
    assert_eq!(store.head().0, 2);
    let page = store
        .query(&AuditQuery {
            actor_kind: Some("sightline".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.count, 2);
    log.close();
    log.record(action);
    assert_eq!(
        log.dropped(),
        1,
        "after close, records are counted as dropped"
    );
    assert!(verify(tmp.path()).unwrap().ok);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random batches with repeated event IDs and random reopens: the chain verifies and the
    /// store holds the de-duplicated input in first-seen order.
    #[test]
    fn appends_with_duplicates_and_reopens(
        steps in proptest::collection::vec(
            (proptest::collection::vec(0u64..40, 0..8), any::<bool>()), 1..20)
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Some(AuditStore::open(tmp.path(), small()).unwrap());
        let mut expected: Vec<AuditEvent> = Vec::new();
        for (batch, reopen) in steps {
            let events: Vec<AuditEvent> = batch.iter().map(|&i| ev(i)).collect();
            for e in &events {
                if !expected.iter().any(|x| x.event_id == e.event_id) {
                    expected.push(e.clone());
                }
            }
            store.as_ref().unwrap().append_batch(&events, &no_pos()).unwrap();
            if reopen {
                drop(store.take()); // releases the lock before reopening
                store = Some(AuditStore::open(tmp.path(), small()).unwrap());
            }
        }
        drop(store);
        let r = verify(tmp.path()).unwrap();
        prop_assert!(r.ok, "{:?}", r);
        prop_assert_eq!(r.records, expected.len() as u64);
        prop_assert_eq!(stored_events(tmp.path()), expected);
    }
}
