//! Readers that work alongside the single writer.

use std::ops::Range;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::state::State;
use super::{JournalError, Record};

/// A cloneable, thread-safe read handle. Reads take the index lock only for
/// their own duration and the writer never holds it during a sync, so reads
/// proceed while the writer syncs. Appended records are readable as soon as
/// `append` returns, synced or not.
#[derive(Debug, Clone)]
pub struct JournalReader {
    state: Arc<RwLock<State>>,
}

// Replication tasks on other threads hold clones while the writer works.
const _: fn() = || {
    fn shareable<T: Clone + Send + Sync>() {}
    shareable::<JournalReader>();
};

impl JournalReader {
    pub(crate) fn new(state: Arc<RwLock<State>>) -> JournalReader {
        JournalReader { state }
    }

    fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .expect("journal index lock poisoned by a panic")
    }

    /// Reads one record, verified. A damaged index returns
    /// [`JournalError::Corrupt`], never data.
    pub fn read(&self, index: u64) -> Result<Record, JournalError> {
        self.state().read(index)
    }

    /// Reads consecutive records from `range.start`, stopping at the end of
    /// the range, after the last record, or before the payloads would exceed
    /// `bytes_max` (at least one record is returned if any is in range). The
    /// whole range is read under one lock, so it never mixes records from
    /// before and after a concurrent truncation.
    pub fn read_range(
        &self,
        range: Range<u64>,
        bytes_max: u64,
    ) -> Result<Vec<Record>, JournalError> {
        let state = self.state();
        let end = match state.last() {
            Some((last, _)) => range.end.min(last.saturating_add(1)),
            None => return Ok(Vec::new()),
        };
        let mut records = Vec::new();
        let mut bytes = 0u64;
        for index in range.start..end {
            let record = state.read(index)?;
            let size = record.payload.len() as u64;
            if !records.is_empty() && bytes + size > bytes_max {
                break;
            }
            bytes += size;
            records.push(record);
            if bytes >= bytes_max {
                break;
            }
        }
        Ok(records)
    }

    /// Lowest index held (see [`super::Journal::first_index`]).
    pub fn first_index(&self) -> Option<u64> {
        self.state().first_index()
    }

    /// `(index, term)` of the last record.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.state().last()
    }
}
