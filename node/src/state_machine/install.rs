//! Installing a snapshot received from the leader (or, at start-up, our own
//! current one, when the index is behind it).
//!
//! 1. The file is taken into the snapshot directory (moved, or copied from
//!    another disk), its length and whole-file BLAKE3 verified, and its
//!    header checked against openraft's metadata.
//! 2. A first pass over the records finds the blocks this node lacks, in
//!    batches of [`INSTALL_FETCH_BATCH_BLOCKS`]; each batch is fetched
//!    through the [`BlockFetcher`], every block verified against its hash,
//!    written, synced and staged. A block no peer supplies intact fails the
//!    install: the index is left as it was.
//! 3. The file gets its final name (durable), then a second pass rebuilds
//!    the index from it in one immediate transaction. A crash between the
//!    two leaves a current snapshot ahead of the index, which openraft
//!    installs again at start-up.
//! 4. The snapshot becomes current and older ones are removed.

use std::collections::VecDeque;

use finkfs_raft::network::SnapshotFile;
use finkfs_raft::types::{Snapshot, SnapshotMeta};

use crate::snapshot::{SnapshotError, SnapshotReader};

use super::core::check_header;
use super::{blocking, lock, StateMachine, StateMachineError};

/// Blocks asked of the fetcher at a time: bounds the memory an install
/// holds (at most this many blocks of `BLOCK_BYTES_MAX`).
pub const INSTALL_FETCH_BATCH_BLOCKS: usize = 64;

/// What an install did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstallReport {
    /// Blocks fetched from peers (every other block was held already).
    pub blocks_fetched: u64,
}

pub(super) async fn install(
    sm: &StateMachine,
    meta: &SnapshotMeta,
    file: SnapshotFile,
) -> Result<InstallReport, StateMachineError> {
    let snapshots = sm.snapshots.clone();
    let taken = blocking(move || Ok(snapshots.take_in(&file)?)).await?;
    let fetched = match verify_and_fetch(sm, meta, taken.clone()).await {
        Ok(fetched) => fetched,
        Err(error) => {
            let snapshots = sm.snapshots.clone();
            let discarded = blocking(move || {
                snapshots.discard(taken);
                Ok(())
            });
            if let Err(cleanup) = discarded.await {
                tracing::warn!(error = %cleanup, "could not discard a snapshot that failed to install");
            }
            return Err(error);
        }
    };
    let (snapshots, core, meta) = (sm.snapshots.clone(), sm.core.clone(), meta.clone());
    blocking(move || {
        let sealed = snapshots.seal(taken)?;
        lock(&core)?.rebuild(&sealed, &meta)?;
        snapshots.promote(&Snapshot {
            meta,
            snapshot: sealed,
        })?;
        Ok(())
    })
    .await?;
    Ok(InstallReport {
        blocks_fetched: fetched,
    })
}

/// Steps 1 and 2: verifies the file and stages every block it lacks.
async fn verify_and_fetch(
    sm: &StateMachine,
    meta: &SnapshotMeta,
    file: SnapshotFile,
) -> Result<u64, StateMachineError> {
    let expected = meta.clone();
    let mut reader = blocking(move || {
        file.verify().map_err(SnapshotError::from)?;
        let handle = file.open().map_err(SnapshotError::from)?;
        let reader = SnapshotReader::open(handle, file.path())?;
        check_header(reader.header(), &expected)?;
        Ok(reader)
    })
    .await?;
    let mut fetched = 0u64;
    let mut carry = VecDeque::new();
    loop {
        let core = sm.core.clone();
        let (back, back_carry, wanted, done) = blocking(move || {
            let (wanted, done) =
                lock(&core)?.missing_blocks(&mut reader, &mut carry, INSTALL_FETCH_BATCH_BLOCKS)?;
            Ok((reader, carry, wanted, done))
        })
        .await?;
        (reader, carry) = (back, back_carry);
        if !wanted.is_empty() {
            let hashes: Vec<[u8; 32]> = wanted.iter().map(|(hash, _)| *hash).collect();
            let found = sm
                .fetcher
                .fetch(&hashes)
                .await
                .map_err(|e| StateMachineError::Fetch {
                    reason: e.to_string(),
                })?;
            let missing = not_found(&wanted, &found);
            let lost = if missing.is_empty() {
                Vec::new()
            } else {
                sm.fetcher.confirm_lost(&missing).await
            };
            let core = sm.core.clone();
            fetched += blocking(move || lock(&core)?.stage(&wanted, found, &lost)).await?;
        }
        if done {
            return Ok(fetched);
        }
    }
}

/// The blocks of `wanted` that `found` does not hold intact (missing, of
/// another length, or not hashing to their address).
fn not_found(wanted: &[([u8; 32], u32)], found: &super::Fetched) -> Vec<[u8; 32]> {
    let intact: std::collections::HashSet<[u8; 32]> = found
        .iter()
        .filter(|(hash, data)| blake3::hash(data).as_bytes() == hash)
        .map(|(hash, data)| (*hash, data.len()))
        .filter(|(hash, len)| wanted.iter().any(|(w, l)| w == hash && *l as usize == *len))
        .map(|(hash, _)| hash)
        .collect();
    wanted
        .iter()
        .map(|(hash, _)| *hash)
        .filter(|hash| !intact.contains(hash))
        .collect()
}
