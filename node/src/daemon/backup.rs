//! Automatic backups: while this node leads, it backs the group up to the
//! configured target every interval, then prunes by retention. The result of
//! each attempt is kept for `/metrics`, so a dashboard can alert when
//! backups stop.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use finkfs_raft::types::{NodeId, Raft};
use finkfs_seam::{DiskRef, RealDisk};
use openraft::async_runtime::watch::WatchReceiver;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backup::{take_backup, BackupError, BackupSummary, BackupTarget, Retention};
use crate::reader::ObjectReader;
use crate::state_machine::StateMachine;

/// Default time between two automatic backups.
pub const BACKUP_INTERVAL_DEFAULT: Duration = Duration::from_secs(3600);

/// Where and how often to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    /// The backup target directory.
    pub dir: PathBuf,
    /// Time between two backups.
    pub interval: Duration,
    /// What pruning keeps.
    pub retention: Retention,
}

/// The outcome of the automatic backups so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupStatus {
    pub successes: u64,
    pub failures: u64,
    /// Unix time of the last successful backup.
    pub last_success_unix: Option<u64>,
    /// Its sequence number on the target.
    pub last_seq: Option<u64>,
    /// Bytes of block data it names (the size of the backed-up state).
    pub last_size_bytes: u64,
    /// Bytes it wrote to the target (what was new).
    pub last_written_bytes: u64,
    /// The last attempt's error, cleared by a success.
    pub last_error: Option<String>,
}

/// Shared between the backup task and `/metrics`.
#[derive(Debug, Default)]
pub struct BackupState(Mutex<BackupStatus>);

impl BackupState {
    pub fn status(&self) -> BackupStatus {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, outcome: &Result<BackupSummary, String>, now: u64) {
        let mut status = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(summary) => {
                status.successes += 1;
                status.last_success_unix = Some(now);
                status.last_seq = Some(summary.manifest.seq);
                status.last_size_bytes = summary.manifest.block_bytes();
                status.last_written_bytes = summary.bytes_written;
                status.last_error = None;
            }
            Err(error) => {
                status.failures += 1;
                status.last_error = Some(error.clone());
            }
        }
    }
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
    std::fs::create_dir_all(&settings.dir)
        .map_err(|e| format!("creating {}: {e}", settings.dir.display()))?;
    let disk: DiskRef = Arc::new(
        RealDisk::open(&settings.dir).map_err(|e| format!("{}: {e}", settings.dir.display()))?,
    );
    let target = BackupTarget::open(disk).map_err(text)?;
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
