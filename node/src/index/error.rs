//! Errors of the index, and the translation of redb's errors into them.

use std::io;
use std::path::{Path, PathBuf};

use crate::hex::Hex;

/// What can go wrong in the index. A damaged value is [`IndexError::Corrupt`];
/// a damaged file is [`IndexError::FileCorrupt`]; neither is folded into
/// [`IndexError::Io`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A value failed its check; it is never returned.
    #[error("index value in table {table} for key {key} is corrupt: {reason}")]
    Corrupt {
        table: &'static str,
        key: String,
        reason: String,
    },
    /// The index file itself is damaged (redb refused or failed on it).
    #[error("index file {} is damaged: {reason}", .file.display())]
    FileCorrupt { file: PathBuf, reason: String },
    /// The disk failed an operation (EIO, ENOSPC, ...).
    #[error("I/O error on index file {}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An earlier failure (a failed sync or commit, a redb panic) left the
    /// index unusable until it is reopened.
    #[error("index {} is poisoned ({reason}); reopen it", .file.display())]
    Poisoned { file: PathBuf, reason: String },
    /// The index was written in a format this build does not read.
    #[error("index {} has format version {found}, this build reads {expected}", .file.display())]
    UnsupportedVersion {
        file: PathBuf,
        found: u32,
        expected: u32,
    },
    /// Any other failure reported by redb.
    #[error("index {}: {reason}", .file.display())]
    Database { file: PathBuf, reason: String },
    /// A reference count change for a block the index does not hold.
    #[error("block {} is not in the index", Hex(.hash))]
    BlockMissing { hash: [u8; 32] },
    /// `add_block` for a block the index already holds.
    #[error("block {} is already in the index", Hex(.hash))]
    BlockExists { hash: [u8; 32] },
    /// A reference count that would fall below zero or overflow.
    #[error("reference count of block {} would {what}", Hex(.hash))]
    RefCount { hash: [u8; 32], what: &'static str },
}

impl IndexError {
    /// Whether this error reports damage (as opposed to a failed operation).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            IndexError::Corrupt { .. } | IndexError::FileCorrupt { .. }
        )
    }

    /// Translates any redb error, keeping I/O errors (EIO, ENOSPC) intact.
    pub(crate) fn from_redb(file: &Path, error: impl Into<redb::Error>) -> Self {
        let file = file.to_path_buf();
        match error.into() {
            // redb read past the end of its file: its own metadata points
            // outside the file, which is damage, not a failed operation.
            redb::Error::Io(source) if source.kind() == io::ErrorKind::UnexpectedEof => {
                IndexError::FileCorrupt {
                    file,
                    reason: format!("a page lies past the end of the file ({source})"),
                }
            }
            // redb reports bytes it cannot parse (bad magic, bad header) as
            // InvalidData; the seam never does, so this is damage too.
            redb::Error::Io(source) if source.kind() == io::ErrorKind::InvalidData => {
                IndexError::FileCorrupt {
                    file,
                    reason: source.to_string(),
                }
            }
            redb::Error::Io(source) => IndexError::Io { file, source },
            redb::Error::Corrupted(reason) => IndexError::FileCorrupt { file, reason },
            // The index creates every table, with these types, when it is
            // opened; a table missing or of another type means damage.
            e @ (redb::Error::TableDoesNotExist(_)
            | redb::Error::TableTypeMismatch { .. }
            | redb::Error::TableIsMultimap(_)
            | redb::Error::TypeDefinitionChanged { .. }) => IndexError::FileCorrupt {
                file,
                reason: e.to_string(),
            },
            redb::Error::PreviousIo => IndexError::Poisoned {
                file,
                reason: "an earlier I/O error".to_string(),
            },
            other => IndexError::Database {
                file,
                reason: other.to_string(),
            },
        }
    }
}
