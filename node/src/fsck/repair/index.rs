//! Repair of a damaged index: the index and the packs it described go to
//! quarantine together (a pack without its index is a pile of blocks no
//! one can find, and the node refuses to start on packs without an index),
//! then a new index is built the way a node installs a snapshot: from the
//! newest intact snapshot, every block it names taken from the quarantined
//! packs (verified against its hash). The node re-applies the journal
//! after the snapshot when it starts.
//!
//! Without an intact snapshot: when nothing was purged from the journal,
//! the new index starts empty and the node re-applies the whole journal;
//! otherwise the node cannot rebuild itself, so its log and vote go to
//! quarantine too and it starts as a wiped member, which the leader brings
//! back with a snapshot while it does not vote.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use finkfs_raft::log_store::{DurableState, JOURNAL_DIR, META_DIR, REJOIN_MARKER};
use finkfs_raft::meta::MetaStore;
use finkfs_raft::network::{BlockSource, BlockSourceError, SnapshotFile};
use finkfs_raft::types::SnapshotMeta;
use finkfs_seam::DiskRef;

use super::super::report::Structure;
use super::super::{list, FsckError, BLOCKS_DIR, INDEX_FILE};
use super::quarantine::Quarantine;
use super::{RepairAction, Work};
use crate::blocks::{BlockLocation, BlockReader, ScanItem};
use crate::snapshot::SnapshotReader;
use crate::state_machine::{LocalFetcher, StateMachine, StateMachineOptions};

/// Where the snapshot to install is staged (the install moves it).
const STAGED: &str = "repair-index.snap.tmp";

pub(super) fn repair(
    disk: &DiskRef,
    group: &Path,
    snapshots: Vec<PathBuf>,
    quarantine: &mut Quarantine,
    work: &mut Work,
) -> Result<(), FsckError> {
    let index = group.join(INDEX_FILE);
    let mut moved_packs = None;
    for file in [index.clone(), shadow_of(&index)] {
        if disk.exists(&file).map_err(|e| FsckError::io(&file, e))? {
            let to = quarantine.move_in(&file)?;
            record(work, &file, format!("moved to {}", to.display()));
        }
    }
    let blocks = group.join(BLOCKS_DIR);
    for name in list(disk, &blocks)? {
        let file = blocks.join(&name);
        let to = quarantine.move_in(&file)?;
        moved_packs = Some(finkfs_seam::parent_dir(&to).to_path_buf());
        record(
            work,
            &file,
            format!("moved to {} with the index", to.display()),
        );
    }
    let newest = newest_snapshot(disk, &snapshots)?;
    match newest {
        Some((path, meta)) => {
            let packs = moved_packs.unwrap_or_else(|| blocks.clone());
            install(disk, group, &path, meta, &packs)?;
            work.actions.push(RepairAction::new(
                Structure::Index,
                "rebuilt_index",
                &index,
                None,
                format!(
                    "built from {} with the blocks of the quarantined packs; the node re-applies the journal after it when it starts",
                    path.display()
                ),
            ));
        }
        None if !purged(disk, group)? => {
            work.pending.push(format!(
                "{}: a new, empty index; the node re-applies its whole journal when it starts",
                index.display()
            ));
        }
        None => {
            for dir in [JOURNAL_DIR, META_DIR] {
                let dir = group.join(dir);
                for name in list(disk, &dir)? {
                    let file = dir.join(name);
                    let to = quarantine.move_in(&file)?;
                    work.actions.push(RepairAction::new(
                        Structure::Journal,
                        "quarantined",
                        &file,
                        None,
                        format!("moved to {}: without a snapshot the node cannot rebuild its index from its purged log", to.display()),
                    ));
                }
            }
            // Empty, the node would look new and vote: the marker makes it
            // a wiped member whatever its flags say.
            let marker = group.join(REJOIN_MARKER);
            finkfs_seam::write_file_atomic(
                &**disk,
                &marker,
                b"fsck --repair took this group's log and vote: rejoin as a wiped member\n",
            )
            .map_err(|e| FsckError::io(&marker, e))?;
            work.actions.push(RepairAction::new(
                Structure::Meta,
                "marked_rejoin",
                &marker,
                None,
                "the node starts as a wiped member, with or without --rejoin: no vote until the leader has caught it up",
            ));
            work.pending.push(format!(
                "{}: no intact snapshot and the log was purged: nothing of the node's state is left; start it without --initial-member: it stays out of elections until the leader has sent it a snapshot and caught it up",
                group.display()
            ));
        }
    }
    Ok(())
}

fn record(work: &mut Work, file: &Path, detail: String) {
    work.actions.push(RepairAction::new(
        Structure::Index,
        "quarantined",
        file,
        None,
        detail,
    ));
}

/// The index's header shadow, next to it.
fn shadow_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".header");
    PathBuf::from(name)
}

/// Whether the log store records a purge (entries only a snapshot holds).
fn purged(disk: &DiskRef, group: &Path) -> Result<bool, FsckError> {
    let dir = group.join(META_DIR);
    let recovery = MetaStore::scan(&**disk, &dir)
        .map_err(|e| FsckError::io(&dir, std::io::Error::other(e.to_string())))?;
    let state = recovery
        .payload
        .as_deref()
        .map(DurableState::decode)
        .transpose()
        .map_err(|e| FsckError::io(&dir, std::io::Error::other(e.to_string())))?;
    Ok(recovery.lost || state.is_some_and(|s| s.purged.is_some()))
}

/// The intact snapshot covering the most entries, with its metadata.
fn newest_snapshot(
    disk: &DiskRef,
    snapshots: &[PathBuf],
) -> Result<Option<(PathBuf, SnapshotMeta)>, FsckError> {
    let mut best: Option<(PathBuf, SnapshotMeta)> = None;
    for path in snapshots {
        let file = disk.open(path).map_err(|e| FsckError::io(path, e))?;
        let Ok(reader) = SnapshotReader::open(file, path) else {
            continue;
        };
        let header = reader.header();
        let meta = SnapshotMeta {
            last_log_id: header.last_log_id,
            last_membership: header.membership.clone(),
        };
        if best
            .as_ref()
            .is_none_or(|(_, b)| b.last_log_id < meta.last_log_id)
        {
            best = Some((path.clone(), meta));
        }
    }
    Ok(best)
}

/// Installs `snapshot` into a new index, blocks from the packs in `packs`.
/// fsck repairs a stopped node offline, never under the simulator: the
/// install may run on a thread and runtime of its own.
#[allow(clippy::disallowed_methods)]
fn install(
    disk: &DiskRef,
    group: &Path,
    snapshot: &Path,
    meta: SnapshotMeta,
    packs: &Path,
) -> Result<(), FsckError> {
    let source = QuarantinedPacks::scan(disk, packs)?;
    let staged = group.join(STAGED);
    let bytes =
        finkfs_seam::read_file(&**disk, snapshot).map_err(|e| FsckError::io(snapshot, e))?;
    finkfs_seam::write_file_atomic(&**disk, &staged, &bytes)
        .map_err(|e| FsckError::io(&staged, e))?;
    let file = SnapshotFile::from_parts(
        disk.clone(),
        staged,
        bytes.len() as u64,
        *blake3::hash(&bytes).as_bytes(),
    );
    let (disk, group) = (disk.clone(), group.to_path_buf());
    // The state machine's install is async; fsck is not, and may itself be
    // called from inside a runtime: run it on a thread of its own.
    let done = std::thread::spawn(move || -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let machine = StateMachine::open(
                disk,
                group,
                StateMachineOptions::default(),
                Arc::new(LocalFetcher::new(Arc::new(source))),
            )
            .map_err(|e| e.to_string())?;
            machine
                .install(&meta, file)
                .await
                .map_err(|e| e.to_string())?;
            machine.sync().await.map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| "the index rebuild panicked".to_string())
    .and_then(|r| r);
    done.map_err(|e| {
        FsckError::io(
            snapshot,
            std::io::Error::other(format!("rebuilding the index: {e}")),
        )
    })
}

/// Blocks found in quarantined packs, by hash; every read verified.
struct QuarantinedPacks {
    reader: BlockReader,
    found: HashMap<[u8; 32], BlockLocation>,
}

impl QuarantinedPacks {
    fn scan(disk: &DiskRef, dir: &Path) -> Result<QuarantinedPacks, FsckError> {
        let reader = BlockReader::read_only(disk.clone(), dir.to_path_buf());
        let mut found = HashMap::new();
        let packs = reader
            .packs()
            .map_err(|e| FsckError::io(dir, std::io::Error::other(e.to_string())))?;
        for seq in packs {
            let Ok(scan) = reader.scan_pack(seq) else {
                continue;
            };
            // An I/O error ends a pack's scan: what verified before it counts.
            for item in scan.map_while(Result::ok) {
                if let ScanItem::Record(location) = item {
                    found.insert(location.hash, location);
                }
            }
        }
        Ok(QuarantinedPacks { reader, found })
    }
}

impl BlockSource for QuarantinedPacks {
    fn read_block(&self, hash: [u8; 32]) -> Result<Option<Bytes>, BlockSourceError> {
        let Some(location) = self.found.get(&hash) else {
            return Ok(None);
        };
        match self.reader.read(location) {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(_) => Ok(None),
        }
    }
}
