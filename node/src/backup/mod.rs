//! Backups: a directory (another disk, a network mount) that holds copies of
//! a node's snapshots and of every block they name, content addressed so
//! that each backup copies only the blocks the target lacks.
//!
//! # Layout of a backup target (paths relative to its root)
//!
//! ```text
//! blocks/<hh>/<hash hex>     one block, its bytes exactly; <hash hex> is the
//!                            64-character BLAKE3 of those bytes, <hh> its
//!                            first two characters (keeps directories small)
//! snapshots/<hash hex>.snap  a copy of a node's snapshot file, named by the
//!                            BLAKE3 of the whole file
//! backups/<seq>.bkp          one backup's manifest (`manifest.rs`); <seq> is
//!                            a u64 in 20 zero-padded digits
//! *.tmp                      a file being written; left by a crash, ignored
//! ```
//!
//! # Crash rules
//!
//! Every file is written under a temporary name, synced, renamed, and its
//! directory synced (`write_file_atomic`). A backup's blocks and snapshot are
//! durable before its manifest is written, so a backup exists only once
//! everything it names is on the target; a power cut during a backup leaves
//! orphan blocks at worst, and every earlier backup intact. Pruning removes
//! manifests first, then what no remaining manifest names.

mod archive;
mod manifest;
mod restore;
mod retention;
mod status;
mod take;
mod target;
mod verify;

use std::io;
use std::path::PathBuf;

pub use archive::ArchivedRange;
pub use manifest::{BackupBlock, BackupManifest, BACKUP_VERSION};
pub use restore::{restore, OnDamage, RestorePoint, RestoreReport};
pub use retention::{PruneReport, Retention};
pub use status::{BackupState, BackupStatus};
pub use take::{take_backup, BackupSummary};
pub use target::{BackupTarget, ListedBackup, StoredSnapshot};
pub use verify::{VerifyProblem, VerifyReport};

/// What can go wrong with a backup target. Damage on the target is always
/// [`BackupError::Corrupt`], never `Io`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The target's disk failed (or is full).
    #[error("backup target: {}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file on the target is not what it claims to be.
    #[error("backup target: {} is corrupt at offset {offset}: {reason}", .file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The node could not supply what the backup needs.
    #[error("backup source: {0}")]
    Source(String),
    /// No backup with this sequence number.
    #[error("no backup {0} on the target")]
    NotFound(u64),
}

impl BackupError {
    fn io(file: impl Into<PathBuf>, source: io::Error) -> BackupError {
        BackupError::Io {
            file: file.into(),
            source,
        }
    }

    fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> BackupError {
        BackupError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
