//! Snapshots of the state machine: files that hold the index's objects
//! (path → manifest), its unreferenced blocks and the last applied log id
//! and membership, written through the I/O seam. The layout is in
//! `format.rs` and `docs/format/snapshot.md`.
//!
//! A snapshot names blocks by hash but does not hold them: a node that
//! installs one fetches from its peers only the blocks it lacks.
//!
//! # Files (in the snapshot directory)
//!
//! ```text
//! snap-<BLAKE3 hex>.snap   a complete, synced snapshot; the name carries the
//!                          BLAKE3 of the whole file, so a node knows it
//!                          without reading the file
//! build-<n>.snap.tmp       a snapshot being built
//! install.snap.tmp         a received snapshot being installed
//! incoming/                where the peer network receives snapshots
//! ```
//!
//! # Crash rules
//!
//! A snapshot is written under a temporary name, synced, renamed to its
//! final name and the directory synced; only then are older snapshots
//! removed (and the directory synced again). Temporary files found at open
//! are leftovers of a crash and are removed. If several final snapshots
//! survive a crash, the one covering the latest log id is current.

mod dir;
mod format;
mod reader;
mod writer;

use std::io;
use std::path::{Path, PathBuf};

use finkfs_raft::network::SnapshotFileError;

use crate::index::IndexError;

pub use dir::{final_name_hash, header_of, write_view, SnapshotDir, SNAPSHOT_PAGE_RECORDS};
pub use format::{SnapshotHeader, SNAPSHOT_VERSION};
pub use reader::{SnapshotReader, SnapshotRecord, READ_STEP_BYTES};
pub use writer::{SnapshotWriter, WRITE_BUFFER_BYTES};

/// What can go wrong with a snapshot file. Damage is always
/// [`SnapshotError::Corrupt`] (or a corrupt `File`), never `Io`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The disk failed.
    #[error("snapshot {}: I/O error at offset {offset}: {source}", .file.display())]
    Io {
        file: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// The file is not a valid snapshot.
    #[error("snapshot {} is corrupt at offset {offset}: {reason}", .file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Reading the index to build a snapshot failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The snapshot file handle's checks failed (length, whole-file BLAKE3).
    #[error(transparent)]
    File(#[from] SnapshotFileError),
}

impl SnapshotError {
    pub(crate) fn io(file: &Path, offset: u64, source: io::Error) -> SnapshotError {
        SnapshotError::Io {
            file: file.to_path_buf(),
            offset,
            source,
        }
    }

    pub(crate) fn corrupt(file: &Path, offset: u64, reason: String) -> SnapshotError {
        SnapshotError::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason,
        }
    }

    /// Whether this error reports damage (as opposed to a failed operation).
    pub fn is_corruption(&self) -> bool {
        match self {
            SnapshotError::Corrupt { .. } => true,
            SnapshotError::File(SnapshotFileError::Corrupt { .. }) => true,
            SnapshotError::Index(e) => e.is_corruption(),
            _ => false,
        }
    }
}
