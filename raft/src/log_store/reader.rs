//! The log reader: entries from the journal (verified on every read) and,
//! above them, entries accepted by `append` that the writer thread has not
//! yet put in the journal. Works while the writer syncs.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use openraft::{OptionalSend, RaftLogReader};

use super::error::LogStoreError;
use super::shared::Shared;
use crate::entry_codec::decode_entry;
use crate::journal::{JournalError, JournalReader, Record};
use crate::types::{Entry, EntryPayload, TypeConfig, Vote};

/// Most payload bytes read from the journal in one locked pass, so a long
/// read does not hold the journal index lock against the writer for long.
pub const READ_CHUNK_BYTES_MAX: u64 = 8 << 20;
/// Most payload bytes one `limited_get_log_entries` returns: bounds the
/// size of one replication message.
pub const REPLICATION_READ_BYTES_MAX: u64 = 32 << 20;

/// A cloneable read handle on a [`super::JournalLogStore`].
#[derive(Debug, Clone)]
pub struct JournalLogReader {
    pub(crate) journal: JournalReader,
    pub(crate) shared: Arc<Shared>,
    pub(crate) dir: PathBuf,
}

impl JournalLogReader {
    /// Reads the entries with index in `[start, end)`, stopping early once
    /// `bytes_max` payload bytes were read (at least one entry is returned
    /// if any is in range). Entries absent at the start (purged) or at the
    /// end (never appended) are left out; a hole inside is an error.
    pub fn read_entries(
        &self,
        start: u64,
        end: u64,
        bytes_max: u64,
    ) -> Result<Vec<Entry>, LogStoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        // Pending entries first: everything below the first pending index is
        // in the journal at this instant and stays there while we read it.
        let (pending_first, pending) = self.pending_in(start, end);
        let journal_end = pending_first.map_or(end, |first| first.clamp(start, end));
        let (mut entries, bytes) = self.read_journal(start, journal_end, bytes_max)?;
        if bytes >= bytes_max {
            return Ok(entries);
        }
        if let (Some(last), Some(first)) = (entries.last(), pending.first()) {
            let expected = last.log_id.index + 1;
            if first.log_id.index != expected {
                let got = first.log_id.index;
                return Err(LogStoreError::Hole {
                    dir: self.dir.clone(),
                    expected,
                    got,
                });
            }
        }
        let mut bytes = bytes;
        for entry in pending {
            if bytes >= bytes_max && !entries.is_empty() {
                break;
            }
            bytes += payload_bytes(&entry);
            entries.push(entry);
        }
        Ok(entries)
    }

    /// The first pending index, and clones of the pending entries in range.
    fn pending_in(&self, start: u64, end: u64) -> (Option<u64>, Vec<Entry>) {
        let shared = self.shared.lock();
        let first = shared.pending.front().map(|entry| entry.log_id.index);
        let in_range = shared
            .pending
            .iter()
            .skip_while(|entry| entry.log_id.index < start)
            .take_while(|entry| entry.log_id.index < end)
            .cloned()
            .collect();
        (first, in_range)
    }

    /// Reads `[start, end)` from the journal in chunks; returns the entries
    /// and their payload bytes.
    fn read_journal(
        &self,
        start: u64,
        end: u64,
        bytes_max: u64,
    ) -> Result<(Vec<Entry>, u64), LogStoreError> {
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        let Some(first) = self.journal.first_index() else {
            return Ok((entries, bytes));
        };
        let mut next = start.max(first);
        while next < end && bytes < bytes_max {
            let chunk_bytes_max = (bytes_max - bytes).min(READ_CHUNK_BYTES_MAX);
            let records = match self.journal.read_range(next..end, chunk_bytes_max) {
                Ok(records) => records,
                Err(JournalError::NotFound { index }) if entries.is_empty() && index == next => {
                    // Purged under us: the range now starts later.
                    match self.journal.first_index() {
                        Some(first) if first > next => {
                            next = first;
                            continue;
                        }
                        _ => return Err(JournalError::NotFound { index }.into()),
                    }
                }
                Err(error) => return Err(error.into()),
            };
            if records.is_empty() {
                break;
            }
            for record in records {
                if record.index != next {
                    let dir = self.dir.clone();
                    return Err(LogStoreError::Hole {
                        dir,
                        expected: next,
                        got: record.index,
                    });
                }
                bytes += record.payload.len() as u64;
                entries.push(self.decode(record)?);
                next += 1;
            }
        }
        Ok((entries, bytes))
    }

    fn decode(&self, record: Record) -> Result<Entry, LogStoreError> {
        let Record {
            index,
            term,
            payload,
        } = record;
        let entry = decode_entry(index, term, Bytes::from(payload)).map_err(|source| {
            LogStoreError::CorruptEntry {
                dir: self.dir.clone(),
                index,
                source,
            }
        })?;
        assert!(entry.log_id.index == index);
        Ok(entry)
    }
}

/// Bytes an entry adds to a read, for the read ceilings.
fn payload_bytes(entry: &Entry) -> u64 {
    match &entry.payload {
        EntryPayload::Normal(command) => command.0.len() as u64,
        EntryPayload::Blank | EntryPayload::Membership(_) => 0,
    }
}

/// `[start, end)` of a range of indexes.
pub(crate) fn index_range<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(x) => x.saturating_add(1),
        Bound::Excluded(x) => *x,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for JournalLogReader {
    /// Every entry of `range` the log holds, each verified against its
    /// checksum; damage is an `InvalidData` error, never data.
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = index_range(&range);
        Ok(self.read_entries(start, end, u64::MAX)?)
    }

    /// The vote last made durable by `save_vote`.
    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.lock().vote)
    }

    /// Like `try_get_log_entries`, capped at [`REPLICATION_READ_BYTES_MAX`]
    /// payload bytes (at least one entry).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.read_entries(start, end, REPLICATION_READ_BYTES_MAX)?)
    }
}
