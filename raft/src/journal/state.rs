//! The in-memory index of a journal, shared by the writer and its readers:
//! where each record is, which indices are lost, how far it was purged.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use finkfs_seam::FileRef;

use super::record::{self, Unverified};
use super::recovery::{Entry, Lost};
use super::{JournalError, Record};

/// One segment file, by the first index in its name.
#[derive(Debug, Clone)]
pub struct SegmentRef {
    pub path: PathBuf,
    pub file: FileRef,
}

#[derive(Debug, Default)]
pub struct State {
    pub segments: BTreeMap<u64, SegmentRef>,
    /// Records in place, strictly increasing index, all above `purged`.
    pub entries: VecDeque<Entry>,
    /// Lost index ranges by their first index; disjoint.
    pub lost: BTreeMap<u64, Lost>,
    /// Records at or below this index are purged.
    pub purged: Option<u64>,
}

impl State {
    /// Lowest index held, valid or known lost.
    pub fn first_index(&self) -> Option<u64> {
        let entry = self.entries.front().map(|e| e.index);
        let lost = self.lost.keys().next().copied();
        match (entry, lost) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `(index, term)` of the last record in place.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.entries.back().map(|e| (e.index, e.term))
    }

    /// Highest index held, valid or known lost.
    pub fn highest_index(&self) -> Option<u64> {
        let entry = self.entries.back().map(|e| e.index);
        let lost = self.lost.values().next_back().map(|l| l.last);
        entry.max(lost)
    }

    pub fn lost_at(&self, index: u64) -> Option<&Lost> {
        self.lost
            .range(..=index)
            .next_back()
            .map(|(_, lost)| lost)
            .filter(|lost| lost.last >= index)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let at = self
            .entries
            .binary_search_by_key(&index, |e| e.index)
            .ok()?;
        self.entries.get(at)
    }

    /// Reads and verifies one record: never returns bytes that do not verify.
    pub fn read(&self, index: u64) -> Result<Record, JournalError> {
        if self.purged.is_some_and(|purged| index <= purged) {
            return Err(JournalError::NotFound { index });
        }
        if let Some(lost) = self.lost_at(index) {
            return Err(JournalError::Corrupt {
                file: lost.file.clone(),
                offset: lost.offset,
                index: Some(index),
                reason: lost.reason.clone(),
            });
        }
        let entry = *self.entry(index).ok_or(JournalError::NotFound { index })?;
        let segment = self
            .segments
            .get(&entry.segment)
            .expect("every entry's segment is indexed");
        let (_, payload) = read_entry(segment, &entry)?;
        Ok(Record {
            index,
            term: entry.term,
            payload,
        })
    }

    /// Forgets the segments after the one named `key`; their paths, newest
    /// first (the order a truncation removes them in).
    pub fn remove_segments_after(&mut self, key: u64) -> Vec<PathBuf> {
        let later = self.segments.split_off(&(key + 1));
        later.into_values().rev().map(|s| s.path).collect()
    }

    /// Drops everything above `index`.
    pub fn cut_after(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.index > index) {
            self.entries.pop_back();
        }
        self.lost.retain(|first, _| *first <= index);
        if let Some((_, lost)) = self.lost.iter_mut().next_back() {
            lost.last = lost.last.min(index);
        }
    }

    /// Drops everything at or below `index`.
    pub fn cut_up_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            self.entries.pop_front();
        }
        let kept = self.lost.split_off(&(index + 1));
        let straddling = self
            .lost
            .values()
            .next_back()
            .filter(|l| l.last > index)
            .cloned();
        self.lost = kept;
        if let Some(mut lost) = straddling {
            lost.first = index + 1;
            self.lost.insert(lost.first, lost);
        }
        self.purged = Some(self.purged.map_or(index, |p| p.max(index)));
    }
}

/// Reads the record `entry` describes and verifies magic, length, checksum,
/// padding, index and term against what the scan or the append recorded.
pub fn read_entry(
    segment: &SegmentRef,
    entry: &Entry,
) -> Result<(record::RecordHeader, Vec<u8>), JournalError> {
    let corrupt = |reason: String| JournalError::Corrupt {
        file: segment.path.clone(),
        offset: entry.offset,
        index: Some(entry.index),
        reason,
    };
    let mut head = [0u8; record::HEADER_BYTES];
    segment
        .file
        .read_at(entry.offset, &mut head)
        .map_err(|e| JournalError::io(&segment.path, entry.offset, e))?;
    let unverified = Unverified::parse(&head).map_err(corrupt)?;
    if unverified.claimed_payload_len() != entry.payload_len {
        return Err(corrupt(format!(
            "payload length reads {} but was {}",
            unverified.claimed_payload_len(),
            entry.payload_len
        )));
    }
    let payload_len = usize::try_from(entry.payload_len).expect("u32 fits in usize");
    let body_len = usize::try_from(record::padded(u64::from(entry.payload_len)))
        .expect("record fits in memory");
    let mut payload = vec![0u8; body_len];
    let body_offset = entry.offset + record::HEADER_BYTES as u64;
    segment
        .file
        .read_at(body_offset, &mut payload)
        .map_err(|e| JournalError::io(&segment.path, body_offset, e))?;
    record::check_padding(&payload[payload_len..]).map_err(corrupt)?;
    let mut verifier = unverified.verifier();
    verifier.update(&payload[..payload_len]);
    let header = verifier.finish().map_err(corrupt)?;
    if header.index != entry.index || header.term != entry.term {
        return Err(corrupt(format!(
            "record reads index {} term {} but index {} term {} was written here",
            header.index, header.term, entry.index, entry.term
        )));
    }
    payload.truncate(payload_len);
    Ok((header, payload))
}
