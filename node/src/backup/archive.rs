//! The journal archive on a backup target: committed Raft entries copied in
//! chunks between backups, so a restore can replay past the last backup's
//! snapshot, up to the archive's end or to a chosen log index.
//!
//! One chunk, `journal/<first>-<last>.jar` (both u64 in 20 zero-padded
//! digits), integers little-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  magic      "FKJARCH1"
//!      8     4  version    1
//!     12     4  reserved   zero
//!     16     8  first      index of the first entry
//!     24     8  last       index of the last entry (entries are consecutive)
//!     32     8  created    seconds since the Unix epoch when it was archived
//!     40     …  entries    per entry: term u64, len u32, the entry encoded as
//!                          in a journal record's payload (docs/format/entry.md)
//!    end    32  checksum   BLAKE3 of every byte before it
//! ```

use std::path::{Path, PathBuf};

use bytes::Bytes;
use finkfs_raft::entry_codec::{decode_entry, encode_entry_into};
use finkfs_raft::types::Entry;
use finkfs_seam::{read_file, write_file_atomic};

use super::target::BackupTarget;
use super::BackupError;
use crate::le::{read_u32, read_u64};

const MAGIC: &[u8; 8] = b"FKJARCH1";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 40;
const CHECKSUM_BYTES: usize = 32;
pub(super) const ARCHIVE_DIR: &str = "journal";
const SUFFIX: &str = ".jar";

/// Consecutive archived entries, by index: `first..=last`.
pub type ArchivedRange = (u64, u64);

impl BackupTarget {
    fn archive_path((first, last): ArchivedRange) -> PathBuf {
        Path::new(ARCHIVE_DIR).join(format!("{first:020}-{last:020}{SUFFIX}"))
    }

    /// Archives `entries` (consecutive, committed) as one chunk, stamped
    /// with `created_unix_secs` (for restores to a point in time).
    pub fn archive(
        &self,
        entries: &[Entry],
        created_unix_secs: u64,
    ) -> Result<ArchivedRange, BackupError> {
        let (Some(head), Some(tail)) = (entries.first(), entries.last()) else {
            return Err(BackupError::Source("nothing to archive".into()));
        };
        let range = (head.log_id.index, tail.log_id.index);
        if range.1 - range.0 + 1 != entries.len() as u64 {
            return Err(BackupError::Source(format!(
                "entries {range:?} are not consecutive"
            )));
        }
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&range.0.to_le_bytes());
        out.extend_from_slice(&range.1.to_le_bytes());
        out.extend_from_slice(&created_unix_secs.to_le_bytes());
        let mut encoded = Vec::new();
        for entry in entries {
            encode_entry_into(entry, &mut encoded)
                .map_err(|e| BackupError::Source(format!("entry {}: {e}", entry.log_id.index)))?;
            let len = u32::try_from(encoded.len())
                .map_err(|_| BackupError::Source("entry larger than 4 GiB".into()))?;
            out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&encoded);
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        let path = Self::archive_path(range);
        self.disk()
            .create_dir_all(Path::new(ARCHIVE_DIR))
            .and_then(|()| write_file_atomic(&**self.disk(), &path, &out))
            .map_err(|e| BackupError::io(path, e))?;
        Ok(range)
    }

    /// Every archived chunk, by first index.
    pub fn archived(&self) -> Result<Vec<ArchivedRange>, BackupError> {
        let dir = Path::new(ARCHIVE_DIR);
        if !self
            .disk()
            .exists(dir)
            .map_err(|e| BackupError::io(dir, e))?
        {
            return Ok(Vec::new());
        }
        let names = self.disk().list(dir).map_err(|e| BackupError::io(dir, e))?;
        let mut ranges: Vec<ArchivedRange> = names
            .iter()
            .filter_map(|n| n.strip_suffix(SUFFIX))
            .filter_map(|stem| stem.split_once('-'))
            .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .filter(|(a, b)| a <= b)
            .collect();
        ranges.sort_unstable();
        Ok(ranges)
    }

    /// The entries of one chunk, verified.
    pub fn read_archive(&self, range: ArchivedRange) -> Result<Vec<Entry>, BackupError> {
        Ok(self.read_archive_chunk(range)?.1)
    }

    /// When one chunk was archived, and its entries, verified.
    pub fn read_archive_chunk(
        &self,
        range: ArchivedRange,
    ) -> Result<(u64, Vec<Entry>), BackupError> {
        let path = Self::archive_path(range);
        let bytes = read_file(&**self.disk(), &path).map_err(|e| BackupError::io(&path, e))?;
        decode_chunk(&path, range, &bytes)
    }

    /// The archived entries after index `after`, in order and without a
    /// gap, from the chunks archived at or before `until_unix_secs`.
    pub fn archived_entries_until(
        &self,
        after: u64,
        until_unix_secs: u64,
    ) -> Result<Vec<Entry>, BackupError> {
        let mut entries = Vec::new();
        let mut next = after + 1;
        for range in self.archived()? {
            if range.1 < next {
                continue;
            }
            if range.0 > next {
                break;
            }
            let (created, chunk) = self.read_archive_chunk(range)?;
            if created > until_unix_secs {
                break;
            }
            for entry in chunk {
                if entry.log_id.index == next {
                    next += 1;
                    entries.push(entry);
                }
            }
        }
        Ok(entries)
    }

    /// The archived entries `from..=to`, which must all be present.
    pub fn archived_entries(&self, from: u64, to: u64) -> Result<Vec<Entry>, BackupError> {
        let mut entries = Vec::new();
        let mut next = from;
        for range in self.archived()? {
            if next > to {
                break;
            }
            if range.1 < next {
                continue;
            }
            if range.0 > next {
                break;
            }
            for entry in self.read_archive(range)? {
                let index = entry.log_id.index;
                if index == next && index <= to {
                    entries.push(entry);
                    next += 1;
                }
            }
        }
        if next <= to {
            return Err(BackupError::Source(format!(
                "the journal archive lacks entries {next}..={to}"
            )));
        }
        Ok(entries)
    }
}

fn decode_chunk(
    path: &Path,
    range: ArchivedRange,
    bytes: &[u8],
) -> Result<(u64, Vec<Entry>), BackupError> {
    let corrupt = |offset: usize, reason: String| BackupError::corrupt(path, offset as u64, reason);
    if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES {
        return Err(corrupt(
            0,
            format!("archive chunk truncated to {} bytes", bytes.len()),
        ));
    }
    let body_end = bytes.len() - CHECKSUM_BYTES;
    if blake3::hash(&bytes[..body_end]).as_bytes()[..] != bytes[body_end..] {
        return Err(corrupt(body_end, "archive chunk checksum mismatch".into()));
    }
    if &bytes[..8] != MAGIC || read_u32(bytes, 8) != VERSION {
        return Err(corrupt(0, "not a version 1 archive chunk".into()));
    }
    let (first, last) = (read_u64(bytes, 16), read_u64(bytes, 24));
    if (first, last) != range {
        return Err(corrupt(
            16,
            format!("holds {first}..={last}, its name says {range:?}"),
        ));
    }
    let mut entries = Vec::new();
    let mut at = HEADER_BYTES;
    for index in first..=last {
        if at + 12 > body_end {
            return Err(corrupt(at, format!("entry {index} missing")));
        }
        let term = read_u64(bytes, at);
        let len = read_u32(bytes, at + 8) as usize;
        let start = at + 12;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= body_end)
            .ok_or_else(|| corrupt(at, format!("entry {index} runs past the chunk")))?;
        let entry = decode_entry(index, term, Bytes::copy_from_slice(&bytes[start..end]))
            .map_err(|e| corrupt(start, format!("entry {index}: {e}")))?;
        entries.push(entry);
        at = end;
    }
    if at != body_end {
        return Err(corrupt(at, "bytes after the last entry".into()));
    }
    Ok((read_u64(bytes, 32), entries))
}
