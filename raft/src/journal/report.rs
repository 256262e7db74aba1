//! What recovery found: the report `open` and `scan` return.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// The outcome of scanning a journal directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Segment files the journal keeps.
    pub segments: u64,
    /// Records that read back intact.
    pub records: u64,
    /// Bytes of the segment files the journal keeps.
    pub bytes: u64,
    /// Lowest index the journal holds (see [`super::Journal::first_index`]).
    pub first_index: Option<u64>,
    /// `(index, term)` of the last record.
    pub last: Option<(u64, u64)>,
    /// The end of the last segment that a crash left half written: cut by
    /// `open`, only reported by `scan`.
    pub torn_tail: Option<TornTail>,
    /// Damage that is not explained by a crash. Never repaired silently.
    pub damage: Vec<Damage>,
}

impl RecoveryReport {
    /// True when nothing is damaged. A torn tail is the normal trace of a
    /// crash, not damage, so a report with only a torn tail is clean.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Bytes a crash left half written at the end of the last segment. An offset
/// of 0 means the whole file: a segment whose creation was cut short.
///
/// Recovery cannot tell these bytes from records that were synced and then
/// damaged at rest (nothing after them proves a sync): the records they may
/// have held are `first_index ..= last_index_possible()`, and a caller that
/// acknowledged records once they were synced must treat those as possibly
/// acknowledged (`docs/format/journal.md`, "What recovery cannot tell").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub bytes_cut: u64,
    /// The index the first record in the cut bytes would have carried.
    pub first_index: u64,
    /// The most records the cut bytes could have held: every record is at
    /// least a header long.
    pub records_max: u64,
}

impl TornTail {
    /// The highest index the cut bytes could have held; `None` when they
    /// were too short to hold a whole record.
    pub fn last_index_possible(&self) -> Option<u64> {
        self.records_max
            .checked_sub(1)
            .map(|extra| self.first_index.saturating_add(extra))
    }
}

/// One piece of damage. Reads of the indices it covers return
/// [`super::JournalError::Corrupt`]; records on either side stay readable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// Bytes that do not verify, followed by records that do (so not a torn
    /// tail), or a record that verifies but sits where another index belongs.
    CorruptRecord {
        file: PathBuf,
        offset: u64,
        len: u64,
        /// The indices lost, when the valid neighbours tell.
        indices: Option<RangeInclusive<u64>>,
        reason: String,
    },
    /// Consecutive valid records (or segments) whose indices skip.
    Gap {
        file: PathBuf,
        offset: u64,
        after_index: u64,
        next_index: u64,
    },
    /// A record that verifies on its own but does not link to the record
    /// before it: it does not belong to this journal at this place.
    ChainBreak {
        file: PathBuf,
        offset: u64,
        index: u64,
    },
    /// A segment header that does not verify or does not fit its neighbours.
    BadSegmentHeader { file: PathBuf, reason: String },
    /// A purge marker that does not verify; `open` removes it, so purged
    /// records of the oldest segment become readable again (they verify).
    BadPurgeMarker { file: PathBuf, reason: String },
}

impl Damage {
    /// The file the damage is in.
    pub fn file(&self) -> &Path {
        match self {
            Damage::CorruptRecord { file, .. }
            | Damage::Gap { file, .. }
            | Damage::ChainBreak { file, .. }
            | Damage::BadSegmentHeader { file, .. }
            | Damage::BadPurgeMarker { file, .. } => file,
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::CorruptRecord {
                file,
                offset,
                len,
                indices,
                reason,
            } => {
                write!(
                    f,
                    "{} at offset {offset}: {len} corrupt bytes",
                    file.display()
                )?;
                if let Some(lost) = indices {
                    write!(f, " (indices {}..={} lost)", lost.start(), lost.end())?;
                }
                write!(f, ": {reason}")
            }
            Damage::Gap {
                file,
                offset,
                after_index,
                next_index,
            } => write!(
                f,
                "{} at offset {offset}: index gap, {after_index} is followed by {next_index}",
                file.display()
            ),
            Damage::ChainBreak {
                file,
                offset,
                index,
            } => write!(
                f,
                "{} at offset {offset}: record {index} does not link to the record before it",
                file.display()
            ),
            Damage::BadSegmentHeader { file, reason } => {
                write!(f, "{}: bad segment header: {reason}", file.display())
            }
            Damage::BadPurgeMarker { file, reason } => {
                write!(f, "{}: bad purge marker: {reason}", file.display())
            }
        }
    }
}
