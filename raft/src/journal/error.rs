//! Errors of the journal.

use std::io;
use std::path::PathBuf;

/// Everything a journal operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The disk refused a read, write, sync or directory operation.
    #[error("journal I/O error on {} at offset {offset}: {source}", file.display())]
    Io {
        file: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// Bytes on disk do not verify. Returned instead of data, never with it.
    #[error("corrupt journal data in {} at offset {offset}{}: {reason}", file.display(), index.map(|i| format!(" (index {i})")).unwrap_or_default())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        index: Option<u64>,
        reason: String,
    },
    /// The index is not in the journal (never appended, purged or truncated).
    #[error("journal index {index} not found")]
    NotFound { index: u64 },
    /// An append did not continue the journal.
    #[error("journal append not contiguous: expected index {expected}, got {got}")]
    NotContiguous { expected: u64, got: u64 },
    /// A payload larger than the configured ceiling.
    #[error("journal record of {bytes} bytes exceeds the ceiling of {max} bytes")]
    RecordTooLarge { bytes: u64, max: u64 },
    /// A previous write or sync failed: what the page cache holds can no
    /// longer be trusted. Reopen the journal.
    #[error("journal poisoned by an earlier write or sync failure; reopen it")]
    Poisoned,
    /// A structure verifies but was written by a newer format version.
    #[error("{} has journal format version {version}, this build reads only version {supported}", file.display())]
    UnsupportedVersion {
        file: PathBuf,
        version: u32,
        supported: u32,
    },
}

impl JournalError {
    pub(crate) fn io(file: impl Into<PathBuf>, offset: u64, source: io::Error) -> JournalError {
        JournalError::Io {
            file: file.into(),
            offset,
            source,
        }
    }
}
