//! Taking a backup of a node: its current snapshot and every block the
//! snapshot names, copying only what the target lacks.

use std::collections::BTreeMap;
use std::path::Path;

use finkfs_seam::DiskRef;

use super::manifest::{BackupBlock, BackupManifest};
use super::target::BackupTarget;
use super::BackupError;
use crate::hex::hex;
use crate::index::IndexView;
use crate::reader::ObjectReader;
use crate::snapshot::{SnapshotReader, SnapshotRecord};

/// What one backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub manifest: BackupManifest,
    /// Blocks copied because the target lacked them, and their bytes.
    pub blocks_written: u64,
    pub block_bytes_written: u64,
    /// Blocks the target already held.
    pub blocks_present: u64,
    /// Every byte written to the target: blocks, snapshot (when new) and
    /// manifest. What an incremental backup should keep small.
    pub bytes_written: u64,
}

/// Backs up the state in `view` (the node's index at one applied log id):
/// its snapshot is written straight to the target, then every block it
/// names that the target lacks is read through `reader` (verified reads: a
/// damaged block stops the backup with an error naming it, it is never
/// copied), and the manifest last. The node's own data directory is only
/// read. `created_unix_secs` is the wall-clock time recorded.
pub fn take_backup(
    target: &BackupTarget,
    view: &IndexView,
    reader: &ObjectReader,
    created_unix_secs: u64,
) -> Result<BackupSummary, BackupError> {
    let snapshot = target.write_snapshot_of(view)?;
    let snapshot_path = BackupTarget::snapshot_path(&snapshot.hash);
    let (last_log, blocks) = blocks_named(target.disk(), &snapshot_path)?;

    let mut summary = BackupSummary {
        manifest: BackupManifest {
            seq: target.next_seq()?,
            created_unix_secs,
            last_log,
            snapshot_hash: snapshot.hash,
            snapshot_len: snapshot.len,
            blocks: blocks
                .iter()
                .map(|(&hash, &len)| BackupBlock { hash, len })
                .collect(),
        },
        blocks_written: 0,
        block_bytes_written: 0,
        blocks_present: 0,
        bytes_written: 0,
    };
    for block in &summary.manifest.blocks {
        if target.has_block(&block.hash)? {
            summary.blocks_present += 1;
            continue;
        }
        let data = reader
            .block(&block.hash)
            .map_err(|e| BackupError::Source(format!("block {}: {e}", hex(&block.hash))))?
            .ok_or_else(|| {
                BackupError::Source(format!(
                    "block {} named by the index is not on this node",
                    hex(&block.hash)
                ))
            })?;
        target.put_block(&block.hash, &data)?;
        summary.blocks_written += 1;
        summary.block_bytes_written += data.len() as u64;
    }
    summary.bytes_written = summary.block_bytes_written;
    if snapshot.written {
        summary.bytes_written += snapshot.len;
    }
    target.commit(&summary.manifest)?;
    summary.bytes_written += summary.manifest.encode().len() as u64;
    tracing::info!(
        seq = summary.manifest.seq,
        blocks = summary.manifest.blocks.len(),
        blocks_written = summary.blocks_written,
        bytes_written = summary.bytes_written,
        "backup committed"
    );
    Ok(summary)
}

/// The last log id and every block (hash → length) a snapshot names:
/// the blocks of its objects and its unreferenced blocks.
type NamedBlocks = (Option<(u64, u64)>, BTreeMap<[u8; 32], u64>);

fn blocks_named(disk: &DiskRef, snapshot_path: &Path) -> Result<NamedBlocks, BackupError> {
    let source =
        |e: String| BackupError::Source(format!("snapshot {}: {e}", snapshot_path.display()));
    let file = disk
        .open(snapshot_path)
        .map_err(|e| source(e.to_string()))?;
    let mut snapshot =
        SnapshotReader::open(file, snapshot_path).map_err(|e| source(e.to_string()))?;
    let last_log = snapshot
        .header()
        .last_log_id
        .as_ref()
        .map(|id| (id.index, id.leader_id.term));
    let mut blocks = BTreeMap::new();
    while let Some(record) = snapshot.next_record().map_err(|e| source(e.to_string()))? {
        match record {
            SnapshotRecord::Object { manifest, .. } => {
                for block in manifest.blocks {
                    blocks.insert(block.hash, u64::from(block.len));
                }
            }
            SnapshotRecord::Unreferenced { hash, len } => {
                blocks.insert(hash, u64::from(len));
            }
        }
    }
    Ok((last_log, blocks))
}
