//! Errors of the state machine, and how openraft sees them.

use std::io;

use crate::blocks::BlockError;
use crate::command::CommandDecodeError;
use crate::index::IndexError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

/// What can stop the state machine. Every one of them stops the Raft node
/// (openraft treats a state machine error as fatal): the node then restarts
/// from what is durable, or an operator repairs it. A command refused for
/// what it asks is not an error but a rejection in its response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateMachineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A committed entry whose command does not decode: damaged on this
    /// replica, or written by a bug. Applying anything else in its place
    /// would make this replica diverge, so the state machine stops.
    #[error("committed entry {log_id} holds a command that does not decode: {source}")]
    CorruptCommand {
        log_id: String,
        #[source]
        source: CommandDecodeError,
    },
    /// openraft handed an entry at or below the applied position.
    #[error("entry {got} applied after {applied}: entries must be applied in increasing order")]
    OutOfOrder { applied: String, got: String },
    /// A snapshot being installed refers to blocks that no peer supplied
    /// intact. Nothing of the snapshot was installed.
    #[error("cannot install snapshot: {missing} referenced blocks could not be fetched intact from any peer (first: {first}); the index is unchanged")]
    BlocksUnavailable { missing: u64, first: String },
    /// The snapshot file does not describe what openraft says it does.
    #[error("snapshot file does not match its metadata: {reason}")]
    SnapshotMismatch { reason: String },
    /// The block fetcher failed as a whole.
    #[error("fetching blocks for a snapshot failed: {reason}")]
    Fetch { reason: String },
    /// A blocking task died (a panic in the store).
    #[error("state machine task failed: {reason}")]
    Task { reason: String },
    /// The log is (or would be) purged beyond every snapshot this node holds
    /// and beyond its index: the entries in between exist nowhere on this
    /// node, so it cannot start (openraft's core would panic on it).
    #[error("the Raft log is purged up to {purged}, beyond the newest snapshot ({snapshot}) and the index (applied {applied}): the entries in between are on no disk of this node, so it cannot start; run `finkfs fsck` on its data directory to see what was lost, then wipe the group directory and start the node with --rejoin so the leader sends it a snapshot")]
    PurgedBeyondSnapshot {
        purged: String,
        snapshot: String,
        applied: String,
    },
}

impl StateMachineError {
    /// Whether this error reports damage (as opposed to a failed operation).
    pub fn is_corruption(&self) -> bool {
        match self {
            StateMachineError::Store(e) => e.is_corruption(),
            StateMachineError::Index(e) => e.is_corruption(),
            StateMachineError::Block(e) => e.is_corruption(),
            StateMachineError::Snapshot(e) => e.is_corruption(),
            StateMachineError::CorruptCommand { .. }
            | StateMachineError::BlocksUnavailable { .. }
            | StateMachineError::SnapshotMismatch { .. }
            | StateMachineError::PurgedBeyondSnapshot { .. } => true,
            _ => false,
        }
    }
}

impl From<StateMachineError> for io::Error {
    fn from(error: StateMachineError) -> io::Error {
        let kind = if error.is_corruption() {
            io::ErrorKind::InvalidData
        } else {
            io_kind(&error).unwrap_or(io::ErrorKind::Other)
        };
        io::Error::new(kind, error)
    }
}

/// The kind of the disk error underneath, if there is one.
fn io_kind(error: &StateMachineError) -> Option<io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}
