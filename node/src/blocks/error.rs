//! Errors of the block store.

use std::io;
use std::path::PathBuf;

use crate::hex::Hex;

/// What can go wrong in the block store. Damage is always [`BlockError::Corrupt`]
/// or [`BlockError::PackCorrupt`], never folded into [`BlockError::Io`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The block at a location failed verification; no data is returned.
    #[error("block {} in {} at offset {offset} is corrupt: {reason}", Hex(.hash), .file.display())]
    Corrupt {
        hash: [u8; 32],
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A pack's own structure (not one block) is damaged.
    #[error("pack {} is damaged at offset {offset}: {reason}", .file.display())]
    PackCorrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The disk failed an operation (EIO, ENOSPC, ...).
    #[error("I/O error on {}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A sync failed earlier; nothing more is written until the store is reopened.
    #[error("block store is poisoned after a failed sync of {}; reopen it", .file.display())]
    Poisoned { file: PathBuf },
    /// A block larger than the configured maximum.
    #[error("block of {len_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    TooLarge { len_bytes: u64, max_bytes: u32 },
    /// A byte range that does not lie inside the block.
    #[error("range of {len} bytes at {start} lies outside block {} of {block_len} bytes", Hex(.hash))]
    RangeOutOfBounds {
        hash: [u8; 32],
        start: u32,
        len: u32,
        block_len: u32,
    },
    /// The pack a caller asked to scan does not exist.
    #[error("pack {} does not exist", .file.display())]
    NoSuchPack { file: PathBuf },
    /// Options that cannot work.
    #[error("invalid block store options: {0}")]
    InvalidOptions(String),
}

impl BlockError {
    pub(crate) fn io(file: impl Into<PathBuf>, source: io::Error) -> Self {
        BlockError::Io {
            file: file.into(),
            source,
        }
    }

    /// Whether this error reports damage (as opposed to a failed operation).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            BlockError::Corrupt { .. } | BlockError::PackCorrupt { .. }
        )
    }
}
