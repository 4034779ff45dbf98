//! The read side: [`Spool::read_next`] and the accounting of damage met while reading.

use super::format::{self, FrameHead, Position, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::{io_err, RecordId, Spool, SpoolError};

impl Spool {
    /// Returns the oldest records after the read position, at most `max_records` of them and
    /// at most `max_bytes` payload bytes (but always one record if any is available, however
    /// large), and moves the read position past them. Nothing is removed: that is
    /// [`ack`](Self::ack)'s job. Damaged records met on the way are skipped and counted in
    /// [`stats`](Self::stats). Empty when every record has been read.
    pub fn read_next(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(RecordId, Vec<u8>)>, SpoolError> {
        let mut out = Vec::new();
        let mut taken = 0usize;
        let mut lost_found = false;
        while out.len() < max_records {
            let pos = self.read_pos;
            let Some(seg) = self.segments.get(&pos.seq).copied() else {
                match self.next_segment_start(pos.seq) {
                    Some(next) => {
                        self.read_pos = next;
                        continue;
                    }
                    None => break,
                }
            };
            let active = pos.seq == self.active;
            if !seg.readable {
                lost_found |= self.report_lost(pos, seg.len, "segment header is damaged");
                self.skip_segment(pos.seq)?;
                continue;
            }
            let file = self.read_file(pos.seq)?;
            let path = self.segment_path(pos.seq);
            let head =
                format::read_frame_head(&file, pos.offset, seg.len).map_err(io_err(&path))?;
            match head {
                FrameHead::End if active => break,
                FrameHead::End => self.skip_segment(pos.seq)?,
                FrameHead::Incomplete => {
                    lost_found |= self.report_lost(pos, seg.len, "segment ends inside a record");
                    self.skip_segment(pos.seq)?;
                }
                FrameHead::Unframeable => {
                    lost_found |= self.report_lost(pos, seg.len, "frame header checksum mismatch");
                    self.skip_segment(pos.seq)?;
                }
                FrameHead::Record { len, crc } => {
                    if !out.is_empty() && taken.saturating_add(len as usize) > max_bytes {
                        break;
                    }
                    let mut payload = Vec::new();
                    let intact = format::read_payload(&file, pos.offset, len, crc, &mut payload)
                        .map_err(io_err(&path))?;
                    let next = Position {
                        seq: pos.seq,
                        offset: pos.offset + FRAME_HEADER_LEN + u64::from(len),
                    };
                    self.read_pos = next;
                    if !intact {
                        self.report_corrupt(pos, len);
                        continue;
                    }
                    taken += payload.len();
                    let id = RecordId {
                        seq: next.seq,
                        end: next.offset,
                        index: self.read_index,
                    };
                    self.read_index += 1;
                    self.read_hwm_index = self.read_hwm_index.max(self.read_index);
                    self.clear_from = next;
                    out.push((id, payload));
                }
            }
        }
        self.verified = self.verified.max(self.read_pos);
        if lost_found {
            // How many records the skipped bytes held is unknown: count the rest again.
            self.recount()?;
        }
        // Damaged data right after the cursor was just walked over: acknowledge it.
        self.commit_cursor(self.cursor, self.ack_index)?;
        Ok(out)
    }

    /// Moves the reader to the next segment; the active segment is first closed, so that
    /// appends continue after the damage rather than inside it.
    fn skip_segment(&mut self, seq: u64) -> Result<(), SpoolError> {
        if seq == self.active {
            self.roll()?;
        }
        if let Some(next) = self.next_segment_start(seq) {
            self.read_pos = next;
        }
        Ok(())
    }

    /// Counts and logs an unframeable stretch from `pos` to `seg_len`, unless already counted;
    /// true when newly counted.
    fn report_lost(&mut self, pos: Position, seg_len: u64, why: &'static str) -> bool {
        if pos < self.verified {
            return false;
        }
        let bytes = seg_len.saturating_sub(pos.offset);
        self.stats.lost_bytes += bytes;
        tracing::error!(dir = %self.dir.display(), segment = pos.seq, offset = pos.offset, bytes,
            "spool: {why}; the rest of the segment is skipped");
        true
    }

    /// Counts and logs a record with a bad payload checksum, unless already counted.
    fn report_corrupt(&mut self, pos: Position, len: u32) {
        if pos < self.verified {
            return;
        }
        self.stats.corrupt_records += 1;
        self.records = self.records.saturating_sub(1);
        tracing::error!(dir = %self.dir.display(), segment = pos.seq, offset = pos.offset, len,
            "spool: record payload checksum mismatch; record skipped");
    }

    /// Recounts the intact un-acknowledged records (reading them all), counting damage not
    /// counted yet. Used after an unframeable stretch was found while running. Damage in the
    /// active segment closes it, so that later appends are not written behind it.
    fn recount(&mut self) -> Result<(), SpoolError> {
        let segments: Vec<_> = self
            .segments
            .range(self.cursor.seq..)
            .map(|(&s, &g)| (s, g))
            .collect();
        let mut records = 0u64;
        let mut buf = Vec::new();
        for (seq, seg) in segments {
            if !seg.readable {
                continue;
            }
            let file = self.read_file(seq)?;
            let path = self.segment_path(seq);
            let mut offset = if seq == self.cursor.seq {
                self.cursor.offset
            } else {
                SEGMENT_HEADER_LEN
            };
            loop {
                let pos = Position { seq, offset };
                match format::read_frame_head(&file, offset, seg.len).map_err(io_err(&path))? {
                    FrameHead::End => break,
                    FrameHead::Record { len, crc } => {
                        if format::read_payload(&file, offset, len, crc, &mut buf)
                            .map_err(io_err(&path))?
                        {
                            records += 1;
                        } else {
                            self.report_corrupt(pos, len);
                        }
                        offset += FRAME_HEADER_LEN + u64::from(len);
                    }
                    FrameHead::Incomplete | FrameHead::Unframeable => {
                        self.report_lost(pos, seg.len, "frame header checksum mismatch");
                        if seq == self.active {
                            self.write_broken = true;
                        }
                        break;
                    }
                }
            }
        }
        self.records = records;
        self.verified = self.verified.max(self.end_position());
        Ok(())
    }
}
