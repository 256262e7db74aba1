//! Repair on a running node. A read (Get, a range, a FetchBlock served to a
//! peer) or the scrubber that meets a damaged block asks [`ReadRepair`]:
//! it fetches an intact copy by hash from the group's other members, then
//! hands the copy to the state machine, the one writer of the store, which
//! quarantines the damaged copy and repoints the index (see `mod.rs`).
//!
//! A FetchBlock served to a peer never waits for a repair: two nodes whose
//! copies are both damaged would otherwise ask each other forever. It
//! answers with the error at once and repairs in the background.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use finkfs_raft::network::{BlockSource, BlockSourceError};

use crate::hex::hex;
use crate::reader::ObjectReader;
use crate::state_machine::{BlockFetcher, RepairHandle};

use super::{verifies, BlockOutcome, DamagedBlock};

/// Most blocks remembered as recently repaired in the background (asked by
/// FetchBlock); past it, further ones are dropped until old ones expire, and
/// the scrubber or the next read finds the block again.
pub const BACKGROUND_REPAIRS_MAX: usize = 64;
/// Shortest time between two background repairs of one block. Without it,
/// members whose copies are all damaged would set each other off forever:
/// each background repair asks the peers, whose refusals start theirs.
pub const BACKGROUND_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Counters of damage and repairs on a running node, for /metrics. They
/// count findings, not distinct blocks: a block that cannot be repaired is
/// counted each time a read or a scrub pass meets it.
#[derive(Debug, Default)]
pub struct RepairStats {
    /// Damaged block copies found (by reads and by the scrubber).
    pub block_damage_found: AtomicU64,
    /// Damaged journal records found by the scrubber.
    pub journal_damage_found: AtomicU64,
    /// Damaged blocks replaced by an intact copy.
    pub repaired: AtomicU64,
    /// Damaged blocks for which no intact copy was found.
    pub unrepairable: AtomicU64,
}

impl RepairStats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// How a repair on a running node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveOutcome {
    /// Repaired: the verified bytes of the block.
    Repaired(Bytes),
    /// Nothing to repair any more (repaired meanwhile): read it again.
    ReadAgain,
    /// No intact copy anywhere: the block stays quarantined.
    Unrepairable { reason: String },
}

/// Repairs damaged blocks of a running node; cheap to clone.
#[derive(Clone)]
pub struct ReadRepair {
    handle: RepairHandle,
    fetcher: Arc<dyn BlockFetcher>,
    stats: Arc<RepairStats>,
    /// When each block's last background repair started.
    background: Arc<Mutex<HashMap<[u8; 32], tokio::time::Instant>>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for ReadRepair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadRepair").finish_non_exhaustive()
    }
}

impl ReadRepair {
    /// Repairs through `handle` (the state machine) with copies from
    /// `fetcher` (the other members). Must be made inside a tokio runtime.
    pub fn new(
        handle: RepairHandle,
        fetcher: Arc<dyn BlockFetcher>,
        stats: Arc<RepairStats>,
    ) -> ReadRepair {
        ReadRepair {
            handle,
            fetcher,
            stats,
            background: Arc::new(Mutex::new(HashMap::new())),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The counters this repairer keeps.
    pub fn stats(&self) -> &Arc<RepairStats> {
        &self.stats
    }

    /// Quarantines `damaged` and replaces it with an intact copy from a
    /// peer, if any peer has one.
    pub async fn repair(&self, damaged: DamagedBlock) -> LiveOutcome {
        RepairStats::add(&self.stats.block_damage_found);
        let hash = damaged.location.hash;
        tracing::warn!(block = %hex(&hash), reason = %damaged.reason, "damaged block found; fetching an intact copy from the peers");
        let (copy, why_none) = match self.fetcher.fetch(&[hash]).await {
            Ok(found) => (
                found
                    .into_iter()
                    .find(|(h, data)| *h == hash && verifies(&damaged.location, data))
                    .map(|(_, data)| data),
                "no other replica holds an intact copy".to_string(),
            ),
            Err(error) => (None, format!("no peer could be asked: {error}")),
        };
        let reason = damaged.reason.clone();
        match self
            .handle
            .repair(damaged, copy.clone(), now_unix_ms())
            .await
        {
            Ok(BlockOutcome::Repaired { .. }) => {
                RepairStats::add(&self.stats.repaired);
                match copy {
                    Some(data) => LiveOutcome::Repaired(data),
                    None => LiveOutcome::ReadAgain,
                }
            }
            Ok(BlockOutcome::AlreadyIntact | BlockOutcome::Unknown) => LiveOutcome::ReadAgain,
            Ok(BlockOutcome::Unrepairable) => {
                RepairStats::add(&self.stats.unrepairable);
                LiveOutcome::Unrepairable {
                    reason: format!("{reason}; {why_none}"),
                }
            }
            Err(error) => {
                RepairStats::add(&self.stats.unrepairable);
                tracing::error!(block = %hex(&hash), %error, "repair failed");
                LiveOutcome::Unrepairable {
                    reason: format!("{reason}; the repair failed: {error}"),
                }
            }
        }
    }

    /// Starts [`Self::repair`] in the background, unless this block had
    /// one within [`BACKGROUND_RETRY_INTERVAL`] or too many are remembered.
    pub fn repair_in_background(&self, damaged: DamagedBlock) {
        let hash = damaged.location.hash;
        let now = tokio::time::Instant::now();
        {
            let mut started = self
                .background
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            started.retain(|_, at| now.duration_since(*at) < BACKGROUND_RETRY_INTERVAL);
            if started.contains_key(&hash) || started.len() >= BACKGROUND_REPAIRS_MAX {
                return;
            }
            started.insert(hash, now);
        }
        let this = self.clone();
        finkfs_raft::rt::spawn_on(&self.runtime, async move {
            this.repair(damaged).await;
        });
    }
}

/// Serves FetchBlock to peers from the local store; a damaged block is
/// refused (an error, never bytes) and repaired in the background.
pub struct RepairingBlockSource {
    reader: ObjectReader,
    repair: ReadRepair,
}

impl RepairingBlockSource {
    pub fn new(reader: ObjectReader, repair: ReadRepair) -> RepairingBlockSource {
        RepairingBlockSource { reader, repair }
    }
}

impl BlockSource for RepairingBlockSource {
    fn read_block(&self, hash: [u8; 32]) -> Result<Option<Bytes>, BlockSourceError> {
        let result = self.reader.read_block(hash);
        if result.is_err() {
            match self.reader.damaged_block(&hash) {
                Ok(Some(damaged)) => self.repair.repair_in_background(damaged),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(block = %hex(&hash), %error, "cannot tell where a damaged block lies")
                }
            }
        }
        result
    }
}

/// Wall-clock time for quarantine records (informational only).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
