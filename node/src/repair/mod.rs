//! Block repair: a damaged block copy is quarantined (recorded in the
//! index's quarantine table, its bytes left where they are) and replaced by
//! an intact copy fetched by hash — from the group's peers over FetchBlock,
//! or from a backup target — verified against its BLAKE3, appended to a
//! pack, synced, and the index repointed to it.
//!
//! The repointing is a local index transaction: it changes where a block
//! lives, never which blocks or objects exist, so the applied log id and
//! everything replicated stay as they were. It commits immediately, after
//! the packs are synced (see `store.rs`): a commit that refers to a copy a
//! power cut could lose never becomes durable.
//!
//! Offline (`finkfs fsck --repair`, node stopped) the caller owns the
//! [`ObjectStore`] and calls [`repair_blocks`]. On a running node the state
//! machine owns the store; repairs go through it (see `live.rs`).

mod fetchers;
mod find;
// Runs in the daemon only, outside the simulator: reads the wall clock and
// spawns on the daemon's runtime.
#[allow(clippy::disallowed_methods)]
pub mod live;
mod offline;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::blocks::{BlockError, BlockLocation};
use crate::hex::hex;
use crate::index::{QuarantineRecord, QuarantineStatus};
use crate::state_machine::BlockFetcher;
use crate::store::{ObjectStore, StoreError};

pub use fetchers::{BackupBlockSource, PeerAddrFetcher};
pub use find::{damaged_from_fsck, find_damaged_blocks};
pub use live::{now_unix_ms, LiveOutcome, ReadRepair, RepairStats, RepairingBlockSource};
pub use offline::{repair_from_fsck, GroupRepair, RepairSource};

/// Blocks asked of a fetcher at a time: bounds the memory a repair holds.
pub const REPAIR_FETCH_BATCH_BLOCKS: usize = 16;

/// A block copy found damaged: where the index says it lives, and why it
/// failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedBlock {
    pub location: BlockLocation,
    pub reason: String,
}

impl DamagedBlock {
    /// The damaged block a failed read of `location` reports, if the
    /// failure is damage (or a sector the disk cannot read) rather than a
    /// refused operation.
    pub fn from_read_error(location: BlockLocation, error: &BlockError) -> Option<DamagedBlock> {
        match error {
            BlockError::Corrupt { .. } | BlockError::PackCorrupt { .. } | BlockError::Io { .. } => {
                Some(DamagedBlock {
                    location,
                    reason: error.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// What happened to one damaged block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOutcome {
    /// An intact copy now serves the block, at `new`.
    Repaired { new: BlockLocation },
    /// The block verifies where the index now points (repaired meanwhile).
    AlreadyIntact,
    /// The index no longer knows the block: nothing to repair.
    Unknown,
    /// No intact copy was supplied: the block stays quarantined, unserved.
    Unrepairable,
}

/// A block repaired, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairedBlock {
    pub hash: String,
    /// The damaged copy, left in place (quarantined).
    pub damaged_file: String,
    pub damaged_offset: u64,
    /// The intact copy written.
    pub new_file: String,
    pub new_offset: u64,
    pub len: u32,
}

/// A block that could not be repaired, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnrepairableBlock {
    pub hash: String,
    pub file: String,
    pub offset: u64,
    /// What was wrong with the copy, and why no copy replaced it.
    pub reason: String,
}

/// What [`repair_blocks`] changed. The serde shape is part of
/// `finkfs fsck --repair --json`: fields are only ever added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    pub repaired: Vec<RepairedBlock>,
    pub unrepairable: Vec<UnrepairableBlock>,
    /// Blocks that verified when looked at again, or that the index no
    /// longer knows: nothing was changed for them.
    pub already_intact: u64,
}

impl RepairReport {
    /// Whether every damaged block now has an intact copy.
    pub fn is_complete(&self) -> bool {
        self.unrepairable.is_empty()
    }
}

/// Why a repair could not run to the end (the store failed, not a block).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source of intact copies cannot be used.
    #[error("repair source: {reason}")]
    Source { reason: String },
}

/// Repairs `damaged` in `store` (owned by the caller: a stopped node),
/// fetching intact copies through `fetcher`. Every block that gets no
/// verified copy is quarantined and listed as unrepairable; `now_unix_ms`
/// stamps the quarantine records.
pub async fn repair_blocks(
    store: &mut ObjectStore,
    damaged: &[DamagedBlock],
    fetcher: &dyn BlockFetcher,
    now_unix_ms: u64,
) -> Result<RepairReport, RepairError> {
    let mut report = RepairReport::default();
    for batch in damaged.chunks(REPAIR_FETCH_BATCH_BLOCKS) {
        let hashes: Vec<[u8; 32]> = batch.iter().map(|d| d.location.hash).collect();
        let (fetched, why_none) = match fetcher.fetch(&hashes).await {
            Ok(fetched) => (fetched, "no source holds an intact copy".to_string()),
            Err(error) => (Vec::new(), format!("fetching failed: {error}")),
        };
        for block in batch {
            let copy = fetched
                .iter()
                .find(|(hash, data)| {
                    *hash == block.location.hash && verifies(&block.location, data)
                })
                .map(|(_, data)| data.as_ref());
            let outcome = repair_in_store(store, block, copy, now_unix_ms)?;
            note(&mut report, store, block, outcome, &why_none);
        }
    }
    Ok(report)
}

fn note(
    report: &mut RepairReport,
    store: &ObjectStore,
    block: &DamagedBlock,
    outcome: BlockOutcome,
    why_none: &str,
) {
    let path = |pack| store.blocks().pack_path(pack).display().to_string();
    match outcome {
        BlockOutcome::Repaired { new } => report.repaired.push(RepairedBlock {
            hash: hex(&block.location.hash),
            damaged_file: path(block.location.pack),
            damaged_offset: block.location.offset,
            new_file: path(new.pack),
            new_offset: new.offset,
            len: new.len,
        }),
        BlockOutcome::AlreadyIntact | BlockOutcome::Unknown => report.already_intact += 1,
        BlockOutcome::Unrepairable => report.unrepairable.push(UnrepairableBlock {
            hash: hex(&block.location.hash),
            file: path(block.location.pack),
            offset: block.location.offset,
            reason: format!("{}; {why_none}", block.reason),
        }),
    }
}

/// Whether `data` is the block `location` names: its length and BLAKE3.
pub fn verifies(location: &BlockLocation, data: &[u8]) -> bool {
    data.len() == location.len as usize && blake3::hash(data).as_bytes() == &location.hash
}

/// Repairs one damaged copy with `copy` (verified here again), or records
/// it as awaiting a copy when there is none. Looks at the index first: a
/// block repaired meanwhile, or that verifies after all, is left alone.
pub fn repair_in_store(
    store: &mut ObjectStore,
    damaged: &DamagedBlock,
    copy: Option<&[u8]>,
    now_unix_ms: u64,
) -> Result<BlockOutcome, StoreError> {
    let hash = damaged.location.hash;
    let Some(entry) = store.index().block_location(&hash)? else {
        return Ok(BlockOutcome::Unknown);
    };
    let mut damaged = damaged.clone();
    match store.blocks().read(&entry.location) {
        Ok(_) => return Ok(BlockOutcome::AlreadyIntact),
        Err(error) => {
            if entry.location != damaged.location {
                // Damaged again, elsewhere: the copy the index names now is
                // the one to quarantine.
                damaged = DamagedBlock {
                    location: entry.location,
                    reason: error.to_string(),
                };
            }
        }
    }
    let copy = copy.filter(|data| verifies(&damaged.location, data));
    let mut record = QuarantineRecord {
        hash,
        pack: damaged.location.pack,
        offset: damaged.location.offset,
        len: damaged.location.len,
        status: QuarantineStatus::AwaitingCopy,
        found_unix_ms: now_unix_ms,
        changed_unix_ms: now_unix_ms,
        reason: damaged.reason.clone(),
    };
    let (blocks, _) = store.parts_mut();
    let new = match copy {
        Some(data) => Some(blocks.put(hash, data)?),
        None => None,
    };
    // Blocks of earlier eventual commits too: this commit makes them durable.
    store.sync_blocks()?;
    let mut txn = store.index().begin_write()?;
    if let Some(new) = &new {
        txn.relocate_block(&hash, new)?;
        record.status = QuarantineStatus::Repaired;
    }
    txn.quarantine(&record)?;
    txn.commit(crate::index::Durability::Immediate)?;
    Ok(match new {
        Some(new) => {
            tracing::warn!(
                block = %hex(&hash),
                damaged = %pack_place(store, &damaged.location),
                repaired = %pack_place(store, &new),
                "damaged block repaired from an intact copy; the damaged copy stays quarantined"
            );
            BlockOutcome::Repaired { new }
        }
        None => {
            tracing::error!(
                block = %hex(&hash),
                damaged = %pack_place(store, &damaged.location),
                reason = %damaged.reason,
                "damaged block has no intact copy: quarantined, not served"
            );
            BlockOutcome::Unrepairable
        }
    })
}

fn pack_place(store: &ObjectStore, location: &BlockLocation) -> String {
    let file: PathBuf = store.blocks().pack_path(location.pack);
    format!("{} at offset {}", file.display(), location.offset)
}
