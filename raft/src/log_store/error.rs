//! Errors of the log store.

use std::io;
use std::path::PathBuf;

use crate::entry_codec::{EntryDecodeError, EntryEncodeError};
use crate::journal::JournalError;
use crate::meta::MetaError;

/// Everything a log store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogStoreError {
    /// The journal failed (its own `Corrupt` variant names file and offset).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The meta store holding the vote failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The meta store's payload verified but is not a valid log store state.
    #[error("log store state in {} is corrupt at offset {offset}: {reason}", dir.display())]
    CorruptState {
        /// The meta store directory.
        dir: PathBuf,
        /// Offset of the bad field within the payload.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A journal record verified but its payload is not a valid entry.
    #[error("entry {index} in journal {} does not decode: {source}", dir.display())]
    CorruptEntry {
        /// The journal directory.
        dir: PathBuf,
        /// Index of the record.
        index: u64,
        /// What the codec found.
        #[source]
        source: EntryDecodeError,
    },
    /// A journal read returned records that skip or repeat an index.
    #[error("journal {} returned index {got} where {expected} belongs", dir.display())]
    Hole {
        /// The journal directory.
        dir: PathBuf,
        /// The index that should have come next.
        expected: u64,
        /// The index that did.
        got: u64,
    },
    /// An entry could not be encoded.
    #[error(transparent)]
    Encode(#[from] EntryEncodeError),
    /// An append does not continue the log.
    #[error("append of index {got} does not continue the log (expected {expected})")]
    NotContiguous {
        /// The index the log needs next.
        expected: u64,
        /// The index offered.
        got: u64,
    },
    /// An earlier write or sync failed; the store refuses writes until it is
    /// reopened.
    #[error("log store poisoned by an earlier failure ({reason}); reopen it")]
    Poisoned {
        /// The failure that poisoned it.
        reason: String,
    },
    /// The writer thread is gone (closed, or stopped by a panic).
    #[error("log store writer thread has stopped")]
    WriterStopped,
    /// Preparing the store's directory or thread failed.
    #[error("log store setup in {} failed: {source}", dir.display())]
    Setup {
        /// The store's directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl LogStoreError {
    /// Whether this error means bytes on disk are damaged (as opposed to an
    /// I/O failure or a refused operation).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            LogStoreError::Journal(JournalError::Corrupt { .. })
                | LogStoreError::CorruptState { .. }
                | LogStoreError::CorruptEntry { .. }
                | LogStoreError::Hole { .. }
        )
    }
}

impl From<LogStoreError> for io::Error {
    /// openraft speaks `io::Error`; damage maps to `InvalidData` so it is
    /// never mistaken for a transient failure, and the typed error stays
    /// reachable as the source.
    fn from(error: LogStoreError) -> io::Error {
        let kind = if error.is_corruption() {
            io::ErrorKind::InvalidData
        } else {
            io::ErrorKind::Other
        };
        io::Error::new(kind, error)
    }
}
