//! The unsynced writes of one file, and how they overlay its durable bytes.
//!
//! A file is modelled as its durable content (the backing file) plus the list
//! of operations issued since its last fsync, in issue order. A read starts
//! from the durable bytes and replays the list over the requested range, so a
//! process sees its own unsynced writes exactly as it would through a page
//! cache.

/// Sector size of the modelled disk: a torn write keeps whole sectors only.
pub const SECTOR_BYTES: u64 = 512;

/// One operation on a file's content that has not been fsynced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PendingOp {
    /// `write(2)` of `bytes` at `offset`.
    Write { offset: u64, bytes: Vec<u8> },
    /// `ftruncate(2)` (or `O_TRUNC`) to `len_bytes`.
    SetLen { len_bytes: u64 },
}

impl PendingOp {
    /// The file length after this operation, given the length before it.
    pub fn len_after(&self, len_before: u64) -> u64 {
        match self {
            PendingOp::Write { offset, bytes } => len_before.max(offset + bytes.len() as u64),
            PendingOp::SetLen { len_bytes } => *len_bytes,
        }
    }

    /// Replays this operation over `buf`, which holds the file bytes that start
    /// at `buf_offset`.
    pub fn overlay(&self, buf_offset: u64, buf: &mut [u8]) {
        let buf_end = buf_offset + buf.len() as u64;
        match self {
            PendingOp::Write { offset, bytes } => {
                let start = (*offset).max(buf_offset);
                let end = (offset + bytes.len() as u64).min(buf_end);
                if start < end {
                    let dst = (start - buf_offset) as usize..(end - buf_offset) as usize;
                    let src = (start - offset) as usize..(end - offset) as usize;
                    buf[dst].copy_from_slice(&bytes[src]);
                }
            }
            PendingOp::SetLen { len_bytes } => {
                // Bytes cut off by a truncate read as zero if the file grows again.
                if *len_bytes < buf_end {
                    let from = len_bytes.saturating_sub(buf_offset) as usize;
                    buf[from..].fill(0);
                }
            }
        }
    }

    /// The write cut after `sectors_kept` whole sectors, counted on file
    /// offsets: what survives when the power fails while the disk writes it.
    /// Returns `None` when nothing of it survives.
    pub fn torn(&self, sectors_kept: u64) -> Option<PendingOp> {
        let PendingOp::Write { offset, bytes } = self else {
            return None;
        };
        let first_boundary = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
        let cut = if sectors_kept == 0 {
            *offset
        } else {
            first_boundary + (sectors_kept - 1) * SECTOR_BYTES
        };
        let keep = cut.saturating_sub(*offset).min(bytes.len() as u64) as usize;
        if keep == 0 {
            return None;
        }
        Some(PendingOp::Write {
            offset: *offset,
            bytes: bytes[..keep].to_vec(),
        })
    }

    /// How many sector-bounded pieces a tear can cut this write into.
    pub fn sector_pieces(&self) -> u64 {
        match self {
            PendingOp::Write { offset, bytes } if !bytes.is_empty() => {
                let end = offset + bytes.len() as u64;
                end.div_ceil(SECTOR_BYTES) - offset / SECTOR_BYTES
            }
            _ => 0,
        }
    }
}

/// The length of a file whose durable length is `durable_len` after `ops`.
pub fn len_after_all(durable_len: u64, ops: &[PendingOp]) -> u64 {
    ops.iter().fold(durable_len, |len, op| op.len_after(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(offset: u64, len: usize, byte: u8) -> PendingOp {
        PendingOp::Write {
            offset,
            bytes: vec![byte; len],
        }
    }

    #[test]
    fn overlay_replays_writes_and_truncates_in_order() {
        let mut buf = vec![1u8; 8];
        write(2, 4, 7).overlay(0, &mut buf);
        PendingOp::SetLen { len_bytes: 4 }.overlay(0, &mut buf);
        write(6, 1, 9).overlay(0, &mut buf);
        assert_eq!(buf, vec![1, 1, 7, 7, 0, 0, 9, 0]);
    }

    #[test]
    fn overlay_of_offset_buffer_copies_only_the_overlap() {
        let mut buf = vec![0u8; 4];
        write(2, 4, 5).overlay(4, &mut buf);
        assert_eq!(buf, vec![5, 5, 0, 0]);
    }

    #[test]
    fn torn_write_ends_on_a_sector_boundary() {
        let op = write(100, 1000, 3);
        assert_eq!(op.sector_pieces(), 3);
        assert_eq!(op.torn(0), None);
        let one = op.torn(1).expect("first piece");
        assert_eq!(
            one,
            PendingOp::Write {
                offset: 100,
                bytes: vec![3; 412]
            }
        );
        let two = op.torn(2).expect("two pieces");
        assert_eq!(two.len_after(0), 1024);
        assert_eq!(op.torn(3), Some(op.clone()));
    }

    #[test]
    fn length_follows_writes_and_truncates() {
        let ops = [write(10, 5, 1), PendingOp::SetLen { len_bytes: 3 }];
        assert_eq!(len_after_all(0, &ops[..1]), 15);
        assert_eq!(len_after_all(100, &ops[..1]), 100);
        assert_eq!(len_after_all(100, &ops), 3);
    }
}
