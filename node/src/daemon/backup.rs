//! Automatic backups: while this node leads, it backs the group up to the
//! configured target every interval, then prunes by retention. The result of
//! each attempt is kept for `/metrics`, so a dashboard can alert when
//! backups stop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use finkfs_raft::log_store::JournalLogReader;
use finkfs_raft::types::{NodeId, Raft};
use finkfs_seam::{DiskRef, RealDisk};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::storage::RaftLogReader;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backup::{
    take_backup, BackupError, BackupState, BackupSummary, BackupTarget, Retention,
};
use crate::reader::ObjectReader;
use crate::state_machine::StateMachine;

/// Default time between two automatic backups.
pub const BACKUP_INTERVAL_DEFAULT: Duration = Duration::from_secs(3600);
/// Default time between two journal archive chunks: the data-loss window
/// of a restore from the archive.
pub const ARCHIVE_INTERVAL_DEFAULT: Duration = Duration::from_secs(2);
/// Most entries in one archive chunk.
const ARCHIVE_CHUNK_ENTRIES_MAX: u64 = 4096;

/// Where and how often to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    /// The backup target directory.
    pub dir: PathBuf,
    /// Time between two backups.
    pub interval: Duration,
    /// Time between two journal archive chunks.
    pub archive_interval: Duration,
    /// What pruning keeps.
    pub retention: Retention,
}

/// Starts the journal archiver of node `id`: while it leads, every
/// interval it copies the entries applied since the archive's end (or since
/// the newest backup, if that is later) to the target.
pub fn spawn_archiver(
    id: NodeId,
    settings: BackupSettings,
    raft: Raft<StateMachine>,
    log: JournalLogReader,
    state: Arc<BackupState>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut log = log;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(settings.archive_interval) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            let metrics = raft.metrics().borrow_watched().clone();
            if metrics.current_leader != Some(id) {
                continue;
            }
            let Some(applied) = metrics.last_applied.map(|l| l.index) else {
                continue;
            };
            match archive_once(&settings, &mut log, applied).await {
                Ok(end) => state.note_archived(end),
                Err(error) => {
                    tracing::warn!(%error, "journal archive chunk FAILED");
                    state.note_archive_failure();
                }
            }
        }
    })
}

/// Archives the applied entries the target lacks; returns the archive's
/// end (last index covered by it or by the newest backup).
async fn archive_once(
    settings: &BackupSettings,
    log: &mut JournalLogReader,
    applied: u64,
) -> Result<u64, String> {
    let dir = settings.dir.clone();
    let target = tokio::task::spawn_blocking(move || open_target(&dir))
        .await
        .map_err(|e| e.to_string())??;
    let covered = {
        let target = target.clone();
        tokio::task::spawn_blocking(move || covered_end(&target))
            .await
            .map_err(|e| e.to_string())??
    };
    if applied <= covered {
        return Ok(covered);
    }
    let to = applied.min(covered + ARCHIVE_CHUNK_ENTRIES_MAX);
    let entries = log
        .try_get_log_entries(covered + 1..=to)
        .await
        .map_err(|e| format!("reading entries {}..={to}: {e}", covered + 1))?;
    if entries.first().map(|e| e.log_id.index) != Some(covered + 1) {
        return Err(format!(
            "entries from {} are no longer in the log; the next backup closes the gap",
            covered + 1
        ));
    }
    tokio::task::spawn_blocking(move || target.archive(&entries, unix_now()).map(|(_, last)| last))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The last index the target holds: the end of its archive's run that
/// starts right after the newest backup, or that backup's own index.
fn covered_end(target: &BackupTarget) -> Result<u64, String> {
    let newest_backup = target
        .list()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|b| b.manifest.ok())
        .filter_map(|m| m.last_log.map(|(index, _)| index))
        .max()
        .unwrap_or(0);
    let mut end = newest_backup;
    for (first, last) in target.archived().map_err(|e| e.to_string())? {
        if first <= end + 1 && last > end {
            end = last;
        }
    }
    Ok(end)
}

fn open_target(dir: &std::path::Path) -> Result<BackupTarget, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let disk: DiskRef =
        Arc::new(RealDisk::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?);
    BackupTarget::open(disk).map_err(|e| e.to_string())
}

/// Starts the backup loop of node `id`; it ends when `stopped` turns true.
pub fn spawn_backups(
    id: NodeId,
    settings: BackupSettings,
    raft: Raft<StateMachine>,
    reader: ObjectReader,
    state: Arc<BackupState>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tracing::info!(id, dir = %settings.dir.display(), interval = ?settings.interval, "automatic backups on");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(settings.interval) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            if raft.metrics().borrow_watched().current_leader != Some(id) {
                continue;
            }
            let (settings, reader) = (settings.clone(), reader.clone());
            let outcome = tokio::task::spawn_blocking(move || backup_once(&settings, &reader))
                .await
                .unwrap_or_else(|join| Err(format!("backup task failed: {join}")));
            match &outcome {
                Ok(summary) => tracing::info!(
                    seq = summary.manifest.seq,
                    written = summary.bytes_written,
                    "automatic backup done"
                ),
                Err(error) => tracing::error!(%error, "automatic backup FAILED"),
            }
            state.record(&outcome, unix_now());
        }
    })
}

/// One backup of this node's applied state, then a prune.
fn backup_once(settings: &BackupSettings, reader: &ObjectReader) -> Result<BackupSummary, String> {
    let text = |e: BackupError| e.to_string();
    let target = open_target(&settings.dir)?;
    let view = reader
        .index()
        .view()
        .map_err(|e| format!("reading the index: {e}"))?;
    let summary = take_backup(&target, &view, reader, unix_now()).map_err(text)?;
    let pruned = target.prune(&settings.retention).map_err(text)?;
    if !pruned.backups_removed.is_empty() {
        tracing::info!(removed = ?pruned.backups_removed, blocks = pruned.blocks_removed, "old backups pruned");
    }
    Ok(summary)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
