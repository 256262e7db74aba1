//! What an offline repair (`finkfs fsck --repair`) needs to know of an
//! opened journal to cut it before its first damaged record: where that
//! record is, and which files hold it and everything after it (copied to
//! quarantine before the cut, never deleted unseen).

use std::path::PathBuf;

use super::{record, segment, Journal, JournalError};

impl Journal {
    /// The lowest index, from the first the journal holds, that cannot be
    /// read back verified (lost to damage, or missing in a gap); None when
    /// every index from the first to the last reads back.
    pub fn first_damaged_index(&self) -> Option<u64> {
        let state = self.state();
        let first = state.first_index()?;
        let lost = state.lost.keys().next().copied();
        let mut expected = first;
        let mut gap = None;
        for entry in &state.entries {
            if entry.index != expected {
                gap = Some(expected);
                break;
            }
            expected = entry.index + 1;
        }
        [lost, gap].into_iter().flatten().min()
    }

    /// Where damage that no index could be put on lies (a segment whose
    /// header and records are all unreadable: nothing says which indices it
    /// held): the first index of the earliest of `files` that is a segment
    /// of this journal (its file name says it), and the highest index that
    /// segment could have held: one less than the next segment's first
    /// index, or, for the last segment, what its length leaves room for at
    /// one record header per record. None when no file is such a segment
    /// or it has no room for a record.
    pub fn damaged_segment_span(&self, files: &[PathBuf]) -> Option<(u64, u64)> {
        let state = self.state();
        let (first, segment) = state
            .segments
            .iter()
            .find(|(_, segment)| files.contains(&segment.path))?;
        let last = match state.segments.range(first + 1..).next() {
            Some((next, _)) => next.checked_sub(1)?,
            None => {
                let len = segment.file.len().ok()?;
                let records_max =
                    len.saturating_sub(segment::HEADER_BYTES as u64) / record::HEADER_BYTES as u64;
                first.checked_add(records_max.checked_sub(1)?)?
            }
        };
        (last >= *first).then_some((*first, last))
    }

    /// Every segment file whose records reach `index` or beyond, oldest
    /// first: the files a cut after `index - 1` changes or removes.
    pub fn segment_files_from(&self, index: u64) -> Vec<PathBuf> {
        let state = self.state();
        let holding = state
            .segments
            .range(..=index)
            .next_back()
            .map(|(key, _)| *key)
            .unwrap_or(0);
        state
            .segments
            .range(holding..)
            .map(|(_, s)| s.path.clone())
            .collect()
    }

    /// Files in the journal directory that are segment files by name but
    /// not part of the journal (their header did not verify, so recovery
    /// left them out): a repair moves them to quarantine.
    pub fn stray_segment_files(&self) -> Result<Vec<PathBuf>, JournalError> {
        let names = self
            .disk
            .list(&self.dir)
            .map_err(|e| JournalError::io(&self.dir, 0, e))?;
        let state = self.state();
        let known: Vec<&PathBuf> = state.segments.values().map(|s| &s.path).collect();
        Ok(names
            .into_iter()
            .filter(|name| segment::parse_file_name(name).is_some())
            .map(|name| self.dir.join(name))
            .filter(|path| !known.contains(&path))
            .collect())
    }
}
