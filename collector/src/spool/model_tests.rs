//! Model test: random sequences of append / read / ack / rewind / reopen against a `VecDeque`
//! of un-acknowledged records. Reopen resets the read position to the ack cursor.

use std::collections::VecDeque;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

use super::format::{self, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::{FsyncPolicy, RecordId, Spool, SpoolConfig, SpoolError, SpoolStats};

const SEGMENT: u64 = 4096;

#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    Read(usize, usize),
    Ack(Index),
    Rewind,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..1500).prop_map(Op::Append),
        3 => (0usize..6, 0usize..3000).prop_map(|(n, b)| Op::Read(n, b)),
        3 => any::<Index>().prop_map(Op::Ack),
        1 => Just(Op::Rewind),
        1 => Just(Op::Reopen),
    ]
}

struct Entry {
    payload: Vec<u8>,
    /// ID from `append`, while the spool instance that appended it is open.
    append_id: Option<RecordId>,
    /// ID from `read_next`, while the spool instance that read it is open.
    read_id: Option<RecordId>,
}

#[derive(Default)]
struct Model {
    unacked: VecDeque<Entry>,
    /// How many of `unacked` are before the read position.
    read: usize,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.unacked
            .iter()
            .map(|e| FRAME_HEADER_LEN + e.payload.len() as u64)
            .sum()
    }
}

fn config(max: u64) -> SpoolConfig {
    SpoolConfig {
        dir: None,
        max_bytes: max,
        segment_bytes: SEGMENT,
        // Appends are synced on drop; the cursor is always synced.
        fsync: FsyncPolicy::IntervalMs(60_000),
        ..SpoolConfig::default()
    }
}

fn segment_files(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| format::parse_segment_file_name(e.unwrap().file_name().to_str()?))
        .collect();
    v.sort_unstable();
    v
}

fn check(spool: &Spool, model: &Model, max: u64) {
    assert_eq!(spool.records(), model.unacked.len() as u64);
    assert_eq!(spool.bytes(), model.bytes());
    assert_eq!(spool.is_empty(), model.unacked.is_empty());
    assert!(spool.disk_bytes() <= max, "{} > {max}", spool.disk_bytes());
    assert_eq!(spool.stats(), SpoolStats::default());
    let in_memory: Vec<u64> = spool.segments.keys().copied().collect();
    assert_eq!(segment_files(&spool.dir), in_memory);
}

fn run(max: u64, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), &config(max)).unwrap();
    let mut model = Model::default();
    let mut counter = 0u64;
    for op in ops {
        match op {
            Op::Append(len) => {
                counter += 1;
                let payload: Vec<u8> = counter
                    .to_le_bytes()
                    .iter()
                    .copied()
                    .cycle()
                    .take(len)
                    .collect();
                match spool.append(&payload) {
                    Ok(id) => model.unacked.push_back(Entry {
                        payload,
                        append_id: Some(id),
                        read_id: None,
                    }),
                    Err(SpoolError::Full { needed, .. }) => {
                        assert!(needed > max);
                        // Full only near the bound: at most one partly acknowledged segment
                        // and a header per segment beyond the un-acknowledged frames.
                        let frame = FRAME_HEADER_LEN + len as u64;
                        assert!(
                            model.bytes() + frame + SEGMENT + 8 * SEGMENT_HEADER_LEN > max,
                            "spurious Full with {} un-acked bytes",
                            model.bytes()
                        );
                    }
                    Err(e) => panic!("append: {e}"),
                }
            }
            Op::Read(n, max_bytes) => {
                let got = spool.read_next(n, max_bytes).unwrap();
                let mut taken = 0usize;
                let mut want = 0usize;
                for e in model.unacked.iter().skip(model.read) {
                    if want == n || (want > 0 && taken + e.payload.len() > max_bytes) {
                        break;
                    }
                    taken += e.payload.len();
                    want += 1;
                }
                assert_eq!(got.len(), want);
                for (k, (id, payload)) in got.into_iter().enumerate() {
                    let e = &mut model.unacked[model.read + k];
                    assert_eq!(payload, e.payload);
                    if let Some(a) = e.append_id {
                        assert_eq!(id, a, "read ID differs from append ID");
                    }
                    if let Some(r) = e.read_id {
                        assert_eq!(id, r, "re-read ID differs");
                    }
                    e.read_id = Some(id);
                }
                model.read += want;
            }
            Op::Ack(pick) => {
                let readable = model
                    .unacked
                    .iter()
                    .take_while(|e| e.read_id.is_some())
                    .count();
                if readable == 0 {
                    if let Some(id) = model.unacked.front().and_then(|e| e.append_id) {
                        assert!(matches!(
                            spool.ack(id),
                            Err(SpoolError::UnknownRecord { .. })
                        ));
                    }
                } else {
                    let k = pick.index(readable);
                    let id = model.unacked[k].read_id.unwrap();
                    spool.ack(id).unwrap();
                    model.unacked.drain(..=k);
                    model.read = model.read.saturating_sub(k + 1);
                    // Acknowledging again is a no-op.
                    spool.ack(id).unwrap();
                }
            }
            Op::Rewind => {
                spool.rewind();
                model.read = 0;
            }
            Op::Reopen => {
                drop(spool);
                spool = Spool::open(dir.path(), &config(max)).unwrap();
                model.read = 0;
                for e in &mut model.unacked {
                    e.append_id = None;
                    e.read_id = None;
                }
            }
        }
        check(&spool, &model, max);
    }
    // Drain: everything un-acknowledged comes back in order, then the spool is empty.
    spool.rewind();
    let mut all = Vec::new();
    loop {
        let got = spool.read_next(usize::MAX, usize::MAX).unwrap();
        let Some((last, _)) = got.last() else { break };
        spool.ack(*last).unwrap();
        all.extend(got.into_iter().map(|(_, p)| p));
    }
    let want: Vec<Vec<u8>> = model.unacked.into_iter().map(|e| e.payload).collect();
    assert_eq!(all, want);
    assert!(spool.is_empty());
    assert_eq!(spool.bytes(), 0);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn spool_matches_a_vecdeque_model(
        max in prop_oneof![Just(2 * SEGMENT), Just(2 * SEGMENT + 1800), Just(4 * SEGMENT)],
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(max, ops);
    }
}
