//! Restoring a backup into an empty data directory, as the only member of a
//! new cluster that others can then join.
//!
//! 1. The backup's snapshot is read from the target and its hash checked.
//! 2. It is written anew into the data directory with the same objects and
//!    log id but a membership of this node alone: the old members are gone.
//! 3. The state machine installs it; every block comes from the target,
//!    verified against its hash (a damaged or missing block fails the
//!    restore, and nothing is served from it).
//! 4. Archived journal entries after the snapshot are replayed through the
//!    state machine, up to the restore point (membership changes become
//!    blank entries: the restored node stays the only member).
//! 5. The log store is opened empty, purged up to the last restored log id,
//!    with a vote for this node in its term, so the restored node elects
//!    itself in a later term and its log continues from there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions};
use finkfs_raft::network::{BlockSource, BlockSourceError, SnapshotFile};
use finkfs_raft::types::{
    Entry, EntryPayload, LeaderId, LogId, Membership, Node, NodeId, SnapshotMeta, StoredMembership,
    Vote,
};

use finkfs_seam::DiskRef;
use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::vote::{RaftLeaderId, RaftVote};

use super::archive::ArchivedRange;
use super::manifest::{BackupBlock, BackupManifest};
use super::target::BackupTarget;
use super::BackupError;
use crate::snapshot::{SnapshotHeader, SnapshotReader, SnapshotRecord, SnapshotWriter};
use crate::state_machine::{LocalFetcher, StateMachine, StateMachineOptions};

/// Where the rewritten snapshot is staged before the install takes it.
const STAGED_SNAPSHOT: &str = "restore.snap.tmp";

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The backup restored.
    pub seq: u64,
    /// Archived entries replayed after its snapshot.
    pub replayed: u64,
    /// Objects left out because a block they use is damaged or missing
    /// (only with [`OnDamage::SkipObjects`]).
    pub skipped: Vec<String>,
    pub last_log: Option<(u64, u64)>,
    pub objects: u64,
    pub blocks: u64,
}

/// Serves the install's block fetches from the backup target, verified.
struct TargetBlocks {
    target: BackupTarget,
    lens: BTreeMap<[u8; 32], u64>,
}

impl BlockSource for TargetBlocks {
    fn read_block(&self, hash: [u8; 32]) -> Result<Option<Bytes>, BlockSourceError> {
        let Some(&len) = self.lens.get(&hash) else {
            return Ok(None);
        };
        let data = self.target.read_block(&BackupBlock { hash, len })?;
        Ok(Some(Bytes::from(data)))
    }
}

/// How far a restore goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// Exactly the state of backup `seq`, no archived entries.
    Backup(u64),
    /// The newest readable backup, then every archived entry after it, up
    /// to the first gap in the archive.
    ArchiveEnd,
    /// The state right after log index `i`: the newest backup at or before
    /// it, then the archived entries up to `i` (all of which must exist).
    LogIndex(u64),
    /// The state as the target held it at Unix time `t`: the newest backup
    /// taken at or before `t`, then the archive chunks written at or
    /// before `t`.
    Time(u64),
}

/// What to do with damaged or missing blocks in the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDamage {
    /// Refuse: the restore fails with an error naming the first such block.
    Refuse,
    /// Leave out every object that uses one (they are listed in the report),
    /// after re-hashing every block of the backup to find them.
    SkipObjects,
}

/// Restores `point` of `target` into `group_dir` on `data_disk`, which must
/// hold nothing yet, as node `id` reachable at `node`.
pub async fn restore(
    target: &BackupTarget,
    point: RestorePoint,
    on_damage: OnDamage,
    data_disk: DiskRef,
    group_dir: &Path,
    id: NodeId,
    node: Node,
) -> Result<RestoreReport, BackupError> {
    let (seq, replay) = plan(target, point)?;
    let in_data = |e: std::io::Error| BackupError::io(group_dir, e);
    if data_disk.exists(group_dir).map_err(in_data)?
        && !data_disk.list(group_dir).map_err(in_data)?.is_empty()
    {
        return Err(BackupError::Source(format!(
            "{} is not empty: restore only into an empty data directory",
            group_dir.display()
        )));
    }
    let manifest = target.manifest(seq)?;
    // Checks the whole snapshot's length and hash before anything is written.
    target.read_snapshot(&manifest)?;
    data_disk.create_dir_all(group_dir).map_err(in_data)?;

    let staged = group_dir.join(STAGED_SNAPSHOT);
    let snapshot_path = BackupTarget::snapshot_path(&manifest.snapshot_hash);
    let source = target
        .disk()
        .open(&snapshot_path)
        .map_err(|e| BackupError::io(&snapshot_path, e))?;
    let damaged = match on_damage {
        OnDamage::Refuse => BTreeSet::new(),
        OnDamage::SkipObjects => damaged_blocks(target, &manifest.blocks)?,
    };
    let member = (id, node);
    let rewritten = rewrite_for_one_member(
        &source,
        &snapshot_path,
        &data_disk,
        &staged,
        member,
        &damaged,
    )?;
    let (meta, objects, skipped) = (rewritten.meta, rewritten.objects, rewritten.skipped);

    let fetch_from = TargetBlocks {
        target: target.clone(),
        lens: manifest
            .blocks
            .iter()
            .filter(|b| !damaged.contains(&b.hash))
            .map(|b| (b.hash, b.len))
            .collect(),
    };
    let machine = StateMachine::open(
        data_disk.clone(),
        group_dir.to_path_buf(),
        StateMachineOptions::default(),
        Arc::new(LocalFetcher::new(Arc::new(fetch_from))),
    )
    .map_err(|e| BackupError::Source(format!("opening the new state machine: {e}")))?;
    let staged_file = {
        let bytes = finkfs_seam::read_file(&*data_disk, &staged)
            .map_err(|e| BackupError::io(&staged, e))?;
        SnapshotFile::from_parts(
            data_disk.clone(),
            staged.clone(),
            bytes.len() as u64,
            *blake3::hash(&bytes).as_bytes(),
        )
    };
    let installed = machine
        .install(&meta, staged_file)
        .await
        .map_err(|e| BackupError::Source(format!("installing the backup's snapshot: {e}")))?;
    let replayed = replay.len() as u64;
    let last_log_id = replay.last().map(|e| e.log_id).or(meta.last_log_id);
    let mut machine = machine;
    if !replay.is_empty() {
        machine
            .apply_entries(replay.into_iter().map(without_membership).collect())
            .await
            .map_err(|e| BackupError::Source(format!("replaying the journal archive: {e}")))?;
        // The log is purged up to the last replayed entry, and Raft needs a
        // snapshot covering every purged entry.
        machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .map_err(|e| BackupError::Source(format!("snapshot of the restored state: {e}")))?;
    }
    machine
        .sync()
        .await
        .map_err(|e| BackupError::Source(format!("syncing the restored state: {e}")))?;
    drop(machine);

    start_log_after(&data_disk, group_dir, id, last_log_id).await?;
    tracing::info!(
        seq,
        objects,
        blocks = installed.blocks_fetched,
        "backup restored"
    );
    Ok(RestoreReport {
        seq,
        skipped,
        replayed,
        last_log: last_log_id.map(|l| (l.index, l.leader_id.term)),
        objects,
        blocks: installed.blocks_fetched,
    })
}

/// The backup to start from and the archived entries to replay after it.
fn plan(target: &BackupTarget, point: RestorePoint) -> Result<(u64, Vec<Entry>), BackupError> {
    let readable: Vec<BackupManifest> = target
        .list()?
        .into_iter()
        .filter_map(|b| b.manifest.ok())
        .collect();
    let last_index = |m: &BackupManifest| m.last_log.map_or(0, |(index, _)| index);
    match point {
        RestorePoint::Backup(seq) => Ok((seq, Vec::new())),
        RestorePoint::ArchiveEnd => {
            let newest = readable
                .iter()
                .max_by_key(|m| (last_index(m), m.seq))
                .ok_or_else(|| BackupError::Source("no readable backup on the target".into()))?;
            let from = last_index(newest) + 1;
            let end = contiguous_end(&target.archived()?, from);
            let replay = match end {
                Some(end) => target.archived_entries(from, end)?,
                None => Vec::new(),
            };
            Ok((newest.seq, replay))
        }
        RestorePoint::Time(t) => {
            let base = readable
                .iter()
                .filter(|m| m.created_unix_secs <= t)
                .max_by_key(|m| (m.created_unix_secs, last_index(m), m.seq))
                .ok_or_else(|| {
                    BackupError::Source(format!(
                        "no readable backup taken at or before Unix time {t}"
                    ))
                })?;
            let replay = target.archived_entries_until(last_index(base), t)?;
            Ok((base.seq, replay))
        }
        RestorePoint::LogIndex(at) => {
            let base = readable
                .iter()
                .filter(|m| last_index(m) <= at)
                .max_by_key(|m| (last_index(m), m.seq))
                .ok_or_else(|| {
                    BackupError::Source(format!("no readable backup at or before log index {at}"))
                })?;
            let from = last_index(base) + 1;
            let replay = if from <= at {
                target.archived_entries(from, at)?
            } else {
                Vec::new()
            };
            Ok((base.seq, replay))
        }
    }
}

/// The last index of the archive's unbroken run starting at `from`.
fn contiguous_end(ranges: &[ArchivedRange], from: u64) -> Option<u64> {
    let mut end: Option<u64> = None;
    for &(first, last) in ranges {
        let next = end.map_or(from, |e| e + 1);
        if last < next {
            continue;
        }
        if first > next {
            break;
        }
        end = Some(last);
    }
    end
}

/// A membership entry replayed as a blank one: the restored node is the
/// only member, whatever the old cluster's membership became.
fn without_membership(entry: Entry) -> Entry {
    match entry.payload {
        EntryPayload::Membership(_) => Entry {
            log_id: entry.log_id,
            payload: EntryPayload::Blank,
        },
        _ => entry,
    }
}

/// Copies the snapshot's records into `staged` on the data disk under a
/// header whose membership is `id` alone; returns its metadata and the
/// number of objects.
/// Every block of the list that is missing or does not match its hash.
fn damaged_blocks(
    target: &BackupTarget,
    blocks: &[BackupBlock],
) -> Result<BTreeSet<[u8; 32]>, BackupError> {
    let mut damaged = BTreeSet::new();
    for block in blocks {
        match target.read_block(block) {
            Ok(_) => {}
            Err(BackupError::Corrupt { .. }) => {
                damaged.insert(block.hash);
            }
            Err(BackupError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                damaged.insert(block.hash);
            }
            Err(other) => return Err(other),
        }
    }
    Ok(damaged)
}

/// The snapshot as written into the data directory.
struct Rewritten {
    meta: SnapshotMeta,
    objects: u64,
    skipped: Vec<String>,
}

fn rewrite_for_one_member(
    source: &finkfs_seam::FileRef,
    source_path: &Path,
    data_disk: &DiskRef,
    staged: &Path,
    (id, node): (NodeId, Node),
    damaged: &BTreeSet<[u8; 32]>,
) -> Result<Rewritten, BackupError> {
    let corrupt =
        |e: crate::snapshot::SnapshotError| BackupError::corrupt(source_path, 0, e.to_string());
    let mut reader = SnapshotReader::open(source.clone(), source_path).map_err(corrupt)?;
    let last_log_id = reader.header().last_log_id;
    let voters = BTreeSet::from([id]);
    let membership = Membership::new(vec![voters], BTreeMap::from([(id, node)]))
        .map_err(|e| BackupError::Source(format!("membership of the restored node: {e}")))?;
    let header = SnapshotHeader {
        last_log_id,
        membership: StoredMembership::new(last_log_id, membership),
    };
    let staged_path: PathBuf = staged.to_path_buf();
    let write_error = |e: crate::snapshot::SnapshotError| {
        BackupError::Source(format!("writing {}: {e}", staged_path.display()))
    };
    let file = data_disk
        .create(staged)
        .map_err(|e| BackupError::io(staged, e))?;
    let mut writer = SnapshotWriter::new(file, staged, &header).map_err(write_error)?;
    let mut objects = 0u64;
    let mut skipped = Vec::new();
    while let Some(record) = reader.next_record().map_err(corrupt)? {
        match record {
            SnapshotRecord::Object { path, manifest } => {
                if manifest.blocks.iter().any(|b| damaged.contains(&b.hash)) {
                    tracing::warn!(%path, "left out of the restore: a block it uses is damaged");
                    skipped.push(path);
                    continue;
                }
                writer.object(&path, &manifest).map_err(write_error)?;
                objects += 1;
            }
            SnapshotRecord::Unreferenced { hash, len } if !damaged.contains(&hash) => {
                writer.unreferenced(&hash, len).map_err(write_error)?
            }
            SnapshotRecord::Unreferenced { .. } => {}
        }
    }
    writer.finish().map_err(write_error)?;
    let meta = SnapshotMeta {
        last_log_id: header.last_log_id,
        last_membership: header.membership,
    };
    Ok(Rewritten {
        meta,
        objects,
        skipped,
    })
}

/// Leaves the group's log empty but purged up to `last`, with a vote for
/// `id` in `last`'s term: Raft then continues the log after the snapshot.
async fn start_log_after(
    data_disk: &DiskRef,
    group_dir: &Path,
    id: NodeId,
    last: Option<LogId>,
) -> Result<(), BackupError> {
    let log_error =
        |e: &dyn std::fmt::Display| BackupError::Source(format!("the new log store: {e}"));
    let (mut log, _) =
        JournalLogStore::open(data_disk.clone(), group_dir, LogStoreOptions::default())
            .map_err(|e| log_error(&e))?;
    if let Some(last) = last {
        let term = last.leader_id.term;
        log.save_vote(&Vote::from_leader_id(LeaderId::new(term, id), false))
            .await
            .map_err(|e| log_error(&e))?;
        log.purge(last).await.map_err(|e| log_error(&e))?;
    }
    log.close().await.map_err(|e| log_error(&e))
}
