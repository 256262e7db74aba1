//! A verifying walk over every record of one pack, for fsck and the scrubber.
//!
//! The scan cannot tell dead bytes from damaged live ones: only the index
//! knows which records are live. It reports what it finds — each verified
//! record's location and each stretch of bytes holding no verifiable record —
//! and leaves the judgement to a caller that can consult the index. After a
//! damaged record header it looks for the next valid header (at 8-byte
//! steps), so one damaged record does not hide the records after it.

use std::path::PathBuf;

use finkfs_seam::FileRef;

use super::pack_header::{self, PACK_HEADER_BYTES};
use super::record::{self, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES};
use super::{BlockError, BlockLocation};

/// Bytes read at a time while looking for the next record after damage.
const RESYNC_WINDOW_BYTES: u64 = 1024 * 1024;

/// What a scan found at one place in a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanItem {
    /// A record whose header and data verified.
    Record(BlockLocation),
    /// Bytes holding no verifiable record: crash leftovers if nothing live
    /// points into them, damage otherwise.
    Damaged {
        file: PathBuf,
        offset: u64,
        len_bytes: u64,
        reason: String,
    },
}

/// Iterator over the records of a pack. An I/O error ends the scan.
#[derive(Debug)]
pub struct PackScan {
    file: FileRef,
    seq: u64,
    path: PathBuf,
    len: u64,
    pos: u64,
    header_checked: bool,
    done: bool,
}

impl PackScan {
    pub(super) fn new(file: FileRef, seq: u64, path: PathBuf) -> Result<Self, BlockError> {
        let len = file.len().map_err(|e| BlockError::io(&path, e))?;
        Ok(PackScan {
            file,
            seq,
            path,
            len,
            pos: PACK_HEADER_BYTES as u64,
            header_checked: false,
            done: false,
        })
    }

    fn damaged(&self, offset: u64, len_bytes: u64, reason: String) -> ScanItem {
        ScanItem::Damaged {
            file: self.path.clone(),
            offset,
            len_bytes,
            reason,
        }
    }

    fn check_pack_header(&self) -> Result<Option<ScanItem>, BlockError> {
        if self.len < PACK_HEADER_BYTES as u64 {
            let reason = format!("pack is {} bytes, shorter than its header", self.len);
            return Ok(Some(self.damaged(0, self.len, reason)));
        }
        let mut header = [0u8; PACK_HEADER_BYTES];
        self.file
            .read_at(0, &mut header)
            .map_err(|e| BlockError::io(&self.path, e))?;
        Ok(pack_header::decode(&header, self.seq)
            .err()
            .map(|reason| self.damaged(0, PACK_HEADER_BYTES as u64, reason)))
    }

    /// The item at `self.pos`, advancing past it.
    fn step(&mut self) -> Result<ScanItem, BlockError> {
        let pos = self.pos;
        let remaining = self.len - pos;
        if remaining < RECORD_HEADER_BYTES as u64 {
            self.pos = self.len;
            return Ok(self.damaged(pos, remaining, "truncated record header".to_string()));
        }
        let mut header = [0u8; RECORD_HEADER_BYTES];
        self.file
            .read_at(pos, &mut header)
            .map_err(|e| BlockError::io(&self.path, e))?;
        let found = match record::decode(&header, self.seq, pos) {
            Ok(found) => found,
            Err(reason) => {
                let next = self.find_next_header(pos + RECORD_ALIGN_BYTES)?;
                self.pos = next;
                return Ok(self.damaged(pos, next - pos, reason));
            }
        };
        let data_offset = pos + RECORD_HEADER_BYTES as u64;
        if data_offset + u64::from(found.data_len) > self.len {
            self.pos = self.len;
            let reason = "record runs past the end of the pack".to_string();
            return Ok(self.damaged(pos, self.len - pos, reason));
        }
        let mut data = vec![0u8; found.data_len as usize];
        self.file
            .read_at(data_offset, &mut data)
            .map_err(|e| BlockError::io(&self.path, e))?;
        let record_bytes = record::record_bytes(found.data_len);
        self.pos = (pos + record_bytes).min(self.len);
        if blake3::hash(&data).as_bytes() != &found.hash {
            let reason = "block data does not hash to the address in its header".to_string();
            return Ok(self.damaged(pos, record_bytes, reason));
        }
        Ok(ScanItem::Record(BlockLocation {
            hash: found.hash,
            pack: self.seq,
            offset: pos,
            len: found.data_len,
        }))
    }

    /// The offset of the first valid record header at or after `from`
    /// (8-aligned), or the end of the pack if there is none.
    fn find_next_header(&self, from: u64) -> Result<u64, BlockError> {
        let mut window_start = from;
        while window_start < self.len {
            let read_len =
                (RESYNC_WINDOW_BYTES + RECORD_HEADER_BYTES as u64).min(self.len - window_start);
            let mut window = vec![0u8; read_len as usize];
            self.file
                .read_at(window_start, &mut window)
                .map_err(|e| BlockError::io(&self.path, e))?;
            let candidates =
                (0..RESYNC_WINDOW_BYTES.min(read_len)).step_by(RECORD_ALIGN_BYTES as usize);
            for at in candidates {
                let at = at as usize;
                let Some(bytes) = window.get(at..at + RECORD_HEADER_BYTES) else {
                    break;
                };
                if !record::has_magic(bytes) {
                    continue;
                }
                let mut header = [0u8; RECORD_HEADER_BYTES];
                header.copy_from_slice(bytes);
                let offset = window_start + at as u64;
                if record::decode(&header, self.seq, offset).is_ok() {
                    return Ok(offset);
                }
            }
            window_start += RESYNC_WINDOW_BYTES;
        }
        Ok(self.len)
    }
}

impl Iterator for PackScan {
    type Item = Result<ScanItem, BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.header_checked {
            self.header_checked = true;
            match self.check_pack_header() {
                Ok(Some(damage)) => return Some(Ok(damage)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        if self.pos >= self.len {
            self.done = true;
            return None;
        }
        let item = self.step();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}
