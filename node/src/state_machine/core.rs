//! The state machine's blocking work on the store: applying entries with
//! the durability policy, making the index durable, and the two passes of a
//! snapshot install. Runs on blocking threads, behind one lock.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use finkfs_raft::network::SnapshotFile;
use finkfs_raft::types::{AppResponse, Entry, EntryPayload, LogId, SnapshotMeta, StoredMembership};

use crate::blocks::BlockLocation;
use crate::command::Command;
use crate::hex::hex;
use crate::index::{Applied, Durability, IndexError, IndexView};
use crate::membership::{decode_membership, encode_membership, log_id_fields, make_log_id};
use crate::snapshot::{SnapshotHeader, SnapshotReader, SnapshotRecord};
use crate::store::ObjectStore;

use super::apply::Applier;
use super::{StateMachineError, StateMachineOptions};

/// Blocks a snapshot refers to that this node lacks: (hash, length).
pub(crate) type WantedBlocks = Vec<([u8; 32], u32)>;

/// Eventual commits not yet made durable.
#[derive(Debug, Default)]
struct Pending {
    entries: u64,
    bytes: u64,
    /// tokio's clock, which a simulator can pause and advance.
    since: Option<tokio::time::Instant>,
}

/// The store and the policy that decides when its index becomes durable.
#[derive(Debug)]
pub(crate) struct Core {
    store: ObjectStore,
    options: StateMachineOptions,
    pending: Pending,
}

impl Core {
    pub fn new(store: ObjectStore, options: StateMachineOptions) -> Core {
        Core {
            store,
            options,
            pending: Pending::default(),
        }
    }

    /// The applied log id and membership as the index holds them.
    pub fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), StateMachineError> {
        let index = self.store.index();
        let applied = index
            .applied()?
            .map(|a| make_log_id(a.index, a.term, a.node));
        let membership = match index.membership()? {
            None => StoredMembership::default(),
            Some(bytes) => decode_stored(&bytes)?,
        };
        Ok((applied, membership))
    }

    /// Applies `entries` in one index transaction (committed eventual),
    /// returning one response per entry, then makes the index durable if
    /// the policy says so.
    pub fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
    ) -> Result<Vec<AppResponse>, StateMachineError> {
        let bytes: u64 = entries.iter().map(entry_bytes).sum();
        let count = entries.len() as u64;
        let (blocks, index) = self.store.parts_mut();
        let mut txn = index.begin_write()?;
        let mut applied = txn.applied()?;
        let mut responses = Vec::with_capacity(entries.len());
        {
            let mut applier = Applier::new(blocks, &mut txn);
            for entry in &entries {
                check_order(applied, &entry.log_id)?;
                responses.push(apply_entry(&mut applier, entry)?);
                let (index, term, node) = log_id_fields(&entry.log_id);
                applied = Some(Applied { index, term, node });
            }
        }
        if let Some(applied) = applied {
            txn.set_applied(applied)?;
        }
        txn.commit(Durability::Eventual)?;
        self.pending.entries += count;
        self.pending.bytes += bytes;
        self.pending
            .since
            .get_or_insert_with(tokio::time::Instant::now);
        if self.sync_due() {
            self.make_durable()?;
        }
        Ok(responses)
    }

    fn sync_due(&self) -> bool {
        let pending = &self.pending;
        pending.entries >= self.options.sync_entries
            || pending.bytes >= self.options.sync_bytes
            || pending
                .since
                .is_some_and(|since| since.elapsed() >= self.options.sync_interval)
    }

    /// Makes every eventual commit durable: blocks synced first, then an
    /// immediate index commit.
    pub fn make_durable(&mut self) -> Result<(), StateMachineError> {
        if self.pending.since.is_none() {
            return Ok(());
        }
        self.store.sync_blocks()?;
        let index = self.store.index();
        let mut txn = index.begin_write()?;
        // Rewritten so the commit is never empty: redb makes the eventual
        // commits before it durable with it.
        if let Some(applied) = txn.applied()? {
            txn.set_applied(applied)?;
        }
        txn.commit(Durability::Immediate)?;
        tracing::debug!(
            entries = self.pending.entries,
            bytes = self.pending.bytes,
            "applied entries made durable"
        );
        self.pending = Pending::default();
        Ok(())
    }

    /// Repairs one damaged block copy with `copy` (or quarantines it when
    /// there is none): the one writer of the store does it, between two
    /// applies, in its own immediate index transaction that leaves the
    /// applied log id as it is.
    pub fn repair_block(
        &mut self,
        damaged: &crate::repair::DamagedBlock,
        copy: Option<&[u8]>,
        now_unix_ms: u64,
    ) -> Result<crate::repair::BlockOutcome, StateMachineError> {
        let applied = self.store.index().applied()?;
        let outcome = crate::repair::repair_in_store(&mut self.store, damaged, copy, now_unix_ms)?;
        debug_assert_eq!(self.store.index().applied().ok().flatten(), applied);
        Ok(outcome)
    }

    /// A consistent view for a snapshot, taken once the index is durable at
    /// least up to what the view covers.
    pub fn durable_view(&mut self) -> Result<IndexView, StateMachineError> {
        self.make_durable()?;
        Ok(self.store.index().view()?)
    }

    /// Reads snapshot records until `max` blocks this node lacks are found
    /// (or the snapshot ends: then `true`). Blocks are known when the index
    /// or the staging table holds them. `carry` keeps the blocks of a
    /// record that did not fit this batch, so a batch never exceeds `max`.
    pub fn missing_blocks(
        &self,
        reader: &mut SnapshotReader,
        carry: &mut VecDeque<([u8; 32], u32)>,
        max: usize,
    ) -> Result<(WantedBlocks, bool), StateMachineError> {
        let index = self.store.index();
        let mut batch: WantedBlocks = Vec::new();
        let mut seen = HashSet::new();
        while batch.len() < max {
            let Some((hash, len)) = carry.pop_front() else {
                match reader.next_record()? {
                    None => return Ok((batch, true)),
                    Some(SnapshotRecord::Object { manifest, .. }) => {
                        carry.extend(manifest.blocks.iter().map(|b| (b.hash, b.len)))
                    }
                    Some(SnapshotRecord::Unreferenced { hash, len }) => {
                        carry.push_back((hash, len))
                    }
                }
                continue;
            };
            if seen.contains(&hash) {
                continue;
            }
            if index.block_location(&hash)?.is_none() && index.staged_block(&hash)?.is_none() {
                seen.insert(hash);
                batch.push((hash, len));
            }
        }
        assert!(batch.len() <= max);
        Ok((batch, false))
    }

    /// Verifies fetched blocks against what was asked, writes and syncs
    /// them, and records them as staged. A block of `lost` (confirmed held
    /// intact by no other member) is staged as lost: the install goes on,
    /// and reads of the objects that refer to it are refused as damage
    /// until an intact copy is written. Any other block asked for and not
    /// fetched intact fails the install.
    pub fn stage(
        &mut self,
        wanted: &[([u8; 32], u32)],
        fetched: Vec<([u8; 32], Bytes)>,
        lost: &[[u8; 32]],
    ) -> Result<u64, StateMachineError> {
        let (lost, wanted): (Vec<_>, Vec<_>) = wanted
            .iter()
            .copied()
            .partition(|(hash, _)| lost.contains(hash));
        let good = verify_fetched(&wanted, fetched)?;
        let (blocks, _) = self.store.parts_mut();
        let mut locations = Vec::with_capacity(good.len() + lost.len());
        for (hash, data) in &good {
            locations.push(blocks.put(*hash, data)?);
        }
        for (hash, len) in lost {
            tracing::error!(
                block = %hex(&hash),
                "no member holds an intact copy of a block the snapshot refers to: installed as lost; reads of the objects that refer to it answer DATA_LOSS until an intact copy is written"
            );
            locations.push(BlockLocation::lost(hash, len));
        }
        self.store.sync_blocks()?;
        let mut txn = self.store.index().begin_write()?;
        for location in &locations {
            txn.stage_block(location)?;
        }
        txn.commit(Durability::Immediate)?;
        Ok(good.len() as u64)
    }

    /// Replaces the index content with the snapshot's in one immediate
    /// transaction. The file must already be verified.
    pub fn rebuild(
        &mut self,
        file: &SnapshotFile,
        meta: &SnapshotMeta,
    ) -> Result<(), StateMachineError> {
        let mut reader = SnapshotReader::open(
            file.open().map_err(crate::snapshot::SnapshotError::from)?,
            file.path(),
        )?;
        check_header(reader.header(), meta)?;
        // Blocks of eventual commits too: this commit makes them durable.
        self.store.sync_blocks()?;
        let mut txn = self.store.index().begin_write()?;
        txn.begin_rebuild()?;
        while let Some(record) = reader.next_record()? {
            match record {
                SnapshotRecord::Object { path, manifest } => {
                    txn.rebuild_object(&path, &manifest)?
                }
                SnapshotRecord::Unreferenced { hash, len } => {
                    txn.rebuild_unreferenced(&hash, len)?
                }
            }
        }
        txn.finish_rebuild()?;
        match &meta.last_log_id {
            Some(log_id) => {
                let (index, term, node) = log_id_fields(log_id);
                txn.set_applied(Applied { index, term, node })?;
            }
            None => txn.clear_applied()?,
        }
        txn.set_membership(&encode_membership(&meta.last_membership))?;
        txn.commit(Durability::Immediate)?;
        self.pending = Pending::default();
        Ok(())
    }
}

fn apply_entry(
    applier: &mut Applier<'_, '_>,
    entry: &Entry,
) -> Result<AppResponse, StateMachineError> {
    Ok(match &entry.payload {
        EntryPayload::Blank => AppResponse::default(),
        EntryPayload::Normal(command) => {
            let command = Command::decode(&command.0).map_err(|source| {
                StateMachineError::CorruptCommand {
                    log_id: entry.log_id.to_string(),
                    source,
                }
            })?;
            AppResponse(Bytes::from(applier.apply(&command)?.encode()))
        }
        EntryPayload::Membership(membership) => {
            let stored = StoredMembership::new(Some(entry.log_id), membership.clone());
            applier.txn.set_membership(&encode_membership(&stored))?;
            AppResponse::default()
        }
    })
}

/// Entries come in increasing index order, each after the applied one.
fn check_order(applied: Option<Applied>, log_id: &LogId) -> Result<(), StateMachineError> {
    match applied {
        Some(applied) if log_id.index <= applied.index => Err(StateMachineError::OutOfOrder {
            applied: make_log_id(applied.index, applied.term, applied.node).to_string(),
            got: log_id.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Bytes an entry carries, for the durability policy.
fn entry_bytes(entry: &Entry) -> u64 {
    match &entry.payload {
        EntryPayload::Normal(command) => command.0.len() as u64,
        _ => 0,
    }
}

fn decode_stored(bytes: &[u8]) -> Result<StoredMembership, StateMachineError> {
    decode_membership(bytes).map_err(|e| {
        StateMachineError::Index(IndexError::Corrupt {
            table: "applied",
            key: "membership".to_string(),
            reason: e.to_string(),
        })
    })
}

/// The snapshot file must describe what openraft says it does.
pub(crate) fn check_header(
    header: &SnapshotHeader,
    meta: &SnapshotMeta,
) -> Result<(), StateMachineError> {
    if header.last_log_id != meta.last_log_id {
        return Err(StateMachineError::SnapshotMismatch {
            reason: format!(
                "file covers up to {:?}, metadata says {:?}",
                header.last_log_id, meta.last_log_id
            ),
        });
    }
    if header.membership != meta.last_membership {
        return Err(StateMachineError::SnapshotMismatch {
            reason: format!(
                "file holds membership {:?}, metadata says {:?}",
                header.membership, meta.last_membership
            ),
        });
    }
    Ok(())
}

/// The fetched blocks that were asked for and hash to their address, one
/// per hash; fails if any asked-for block is missing or damaged.
fn verify_fetched(
    wanted: &[([u8; 32], u32)],
    fetched: Vec<([u8; 32], Bytes)>,
) -> Result<Vec<([u8; 32], Bytes)>, StateMachineError> {
    let mut by_hash = std::collections::HashMap::with_capacity(fetched.len());
    for (hash, data) in fetched {
        if blake3::hash(&data).as_bytes() != &hash {
            tracing::error!(block = %hex(&hash), "a fetched block does not hash to its address; refused");
            continue;
        }
        by_hash.entry(hash).or_insert(data);
    }
    let mut good = Vec::with_capacity(wanted.len());
    let mut missing = Vec::new();
    for (hash, len) in wanted {
        match by_hash.remove(hash) {
            Some(data) if data.len() == *len as usize => good.push((*hash, data)),
            _ => missing.push(*hash),
        }
    }
    if let Some(first) = missing.first() {
        return Err(StateMachineError::BlocksUnavailable {
            missing: missing.len() as u64,
            first: hex(first),
        });
    }
    Ok(good)
}
