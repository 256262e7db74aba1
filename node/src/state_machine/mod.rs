//! The replicated state machine of one Raft group: openraft's
//! `RaftStateMachine` over the object store (block store + index), with
//! snapshots as files in the group's snapshot directory.
//!
//! # Apply and durability
//!
//! Entries are applied in batches (what openraft has ready, up to
//! [`StateMachineOptions::apply_batch_entries_max`]): blocks go to packs
//! without a sync, and one index transaction holds the objects, block
//! references, the applied log id and the last membership, committed with
//! [`Durability::Eventual`](crate::Durability::Eventual): visible at once,
//! not yet durable. Every `sync_entries` entries, `sync_bytes` bytes or
//! `sync_interval`, and before a snapshot is built, the packs are synced and
//! then the index is committed immediately, which makes every eventual
//! commit before it durable.
//!
//! A power cut therefore takes the index back to its last durable point, the
//! applied log id with it; openraft re-applies the entries after it from the
//! journal. Applying again is exact: the index reverted as a whole, so the
//! same entries meet the same state (blocks a lost commit had written are
//! dead space in the packs and are written again).
//!
//! # Reads
//!
//! [`StateMachine::reader`] hands out an [`ObjectReader`] that shares the
//! index and pack handles and reads concurrently with apply.

mod apply;
mod core;
mod error;
mod fetch;
mod install;
mod raft;
mod start;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use finkfs_seam::DiskRef;

use crate::blocks::BlockError;
use crate::command::BLOCK_BYTES_MAX;
use crate::reader::ObjectReader;
use crate::snapshot::SnapshotDir;
use crate::store::{ObjectStore, ObjectStoreOptions};

use self::core::Core;

pub use error::StateMachineError;
pub use fetch::{
    BlockFetcher, FetchError, FetchFuture, Fetched, LocalFetcher, LostFuture, NoFetcher,
};
pub use install::{InstallReport, INSTALL_FETCH_BATCH_BLOCKS};
pub use raft::SnapshotBuilder;

/// Subdirectory of the group directory holding snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// Default entries applied between durable index commits.
pub const APPLY_SYNC_ENTRIES: u64 = 1024;
/// Default bytes of commands applied between durable index commits.
pub const APPLY_SYNC_BYTES: u64 = 64 << 20;
/// Default longest time applied entries stay non-durable (checked when
/// entries are applied).
pub const APPLY_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Default most entries applied in one index transaction.
pub const APPLY_BATCH_ENTRIES_MAX: usize = 256;
/// Default most command bytes applied in one index transaction.
pub const APPLY_BATCH_BYTES_MAX: u64 = 32 << 20;

/// Settings of a state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateMachineOptions {
    /// The object store; its block size limit must take any block a
    /// command may carry ([`BLOCK_BYTES_MAX`]).
    pub store: ObjectStoreOptions,
    pub sync_entries: u64,
    pub sync_bytes: u64,
    pub sync_interval: Duration,
    pub apply_batch_entries_max: usize,
    pub apply_batch_bytes_max: u64,
}

impl Default for StateMachineOptions {
    fn default() -> Self {
        StateMachineOptions {
            store: ObjectStoreOptions::default(),
            sync_entries: APPLY_SYNC_ENTRIES,
            sync_bytes: APPLY_SYNC_BYTES,
            sync_interval: APPLY_SYNC_INTERVAL,
            apply_batch_entries_max: APPLY_BATCH_ENTRIES_MAX,
            apply_batch_bytes_max: APPLY_BATCH_BYTES_MAX,
        }
    }
}

impl StateMachineOptions {
    fn check(&self) -> Result<(), StateMachineError> {
        if self.store.blocks.block_bytes_max < BLOCK_BYTES_MAX {
            return Err(BlockError::InvalidOptions(format!(
                "block_bytes_max {} is below the {BLOCK_BYTES_MAX} bytes a command may carry",
                self.store.blocks.block_bytes_max
            ))
            .into());
        }
        if self.apply_batch_entries_max == 0 || self.sync_entries == 0 {
            return Err(BlockError::InvalidOptions(
                "apply batches and sync periods need at least one entry".to_string(),
            )
            .into());
        }
        Ok(())
    }
}

/// The state machine of one Raft group. See the module docs.
pub struct StateMachine {
    core: Arc<Mutex<Core>>,
    reader: ObjectReader,
    snapshots: Arc<SnapshotDir>,
    fetcher: Arc<dyn BlockFetcher>,
    options: StateMachineOptions,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("snapshots", &self.snapshots.dir())
            .finish_non_exhaustive()
    }
}

impl StateMachine {
    /// Opens the state machine of the group whose directory is `dir`
    /// (`blocks/`, `index.redb`, `snapshots/`), fetching missing blocks for
    /// snapshot installs through `fetcher`.
    pub fn open(
        disk: DiskRef,
        dir: PathBuf,
        options: StateMachineOptions,
        fetcher: Arc<dyn BlockFetcher>,
    ) -> Result<StateMachine, StateMachineError> {
        options.check()?;
        let store = ObjectStore::open_with(disk.clone(), dir.clone(), options.store)?;
        let snapshots = SnapshotDir::open(disk, dir.join(SNAPSHOTS_DIR))?;
        let reader = store.reader().clone();
        Ok(StateMachine {
            core: Arc::new(Mutex::new(Core::new(store, options))),
            reader,
            snapshots,
            fetcher,
            options,
        })
    }

    /// A read handle for the API: cheap to clone, usable concurrently with
    /// apply, from any thread.
    pub fn reader(&self) -> ObjectReader {
        self.reader.clone()
    }

    /// A handle through which read repair and the scrubber ask this state
    /// machine, the one writer of the store, to repair damaged blocks.
    pub fn repair_handle(&self) -> RepairHandle {
        RepairHandle {
            core: self.core.clone(),
        }
    }

    /// The snapshot directory, relative to the disk root: the peer network
    /// receives snapshots into its `incoming/` subdirectory (on the same
    /// disk handle, so an install moves rather than copies them).
    pub fn snapshot_dir(&self) -> &Path {
        self.snapshots.dir()
    }

    /// Applies committed entries (in one index transaction) and returns one
    /// response per entry. `RaftStateMachine::apply` goes through here; so
    /// can a caller that replays entries itself.
    pub async fn apply_entries(
        &self,
        entries: Vec<finkfs_raft::types::Entry>,
    ) -> Result<Vec<finkfs_raft::types::AppResponse>, StateMachineError> {
        let core = self.core.clone();
        blocking(move || lock(&core)?.apply_entries(entries)).await
    }

    /// Makes everything applied so far durable.
    pub async fn sync(&self) -> Result<(), StateMachineError> {
        let core = self.core.clone();
        blocking(move || lock(&core)?.make_durable()).await
    }

    /// Installs a snapshot (see `install.rs`), reporting what it fetched.
    pub async fn install(
        &self,
        meta: &finkfs_raft::types::SnapshotMeta,
        file: finkfs_raft::network::SnapshotFile,
    ) -> Result<InstallReport, StateMachineError> {
        let report = install::install(self, meta, file).await?;
        tracing::info!(last = ?meta.last_log_id, fetched = report.blocks_fetched, "snapshot installed");
        Ok(report)
    }
}

/// Sends repair requests to the state machine that owns the store (see
/// [`StateMachine::repair_handle`]); cheap to clone.
#[derive(Clone)]
pub struct RepairHandle {
    core: Arc<Mutex<Core>>,
}

impl std::fmt::Debug for RepairHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairHandle").finish_non_exhaustive()
    }
}

impl RepairHandle {
    /// Repairs `damaged` with `copy` (verified again), or quarantines it
    /// when `copy` is `None`; see [`crate::repair::repair_in_store`].
    pub async fn repair(
        &self,
        damaged: crate::repair::DamagedBlock,
        copy: Option<bytes::Bytes>,
        now_unix_ms: u64,
    ) -> Result<crate::repair::BlockOutcome, StateMachineError> {
        let core = self.core.clone();
        blocking(move || lock(&core)?.repair_block(&damaged, copy.as_deref(), now_unix_ms)).await
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StateMachineError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StateMachineError> + Send + 'static,
{
    finkfs_raft::rt::blocking(f)
        .await
        .map_err(|e| StateMachineError::Task {
            reason: e.to_string(),
        })?
}

/// The core, unless a panic while it was held left it in doubt.
pub(crate) fn lock(core: &Mutex<Core>) -> Result<MutexGuard<'_, Core>, StateMachineError> {
    core.lock().map_err(|_| StateMachineError::Task {
        reason: "an earlier panic left the state machine in doubt; reopen it".to_string(),
    })
}
