//! The outcome of a node's automatic backups, kept in memory for
//! `/metrics` and `finkfs status`.

use std::sync::{Mutex, PoisonError};

use super::BackupSummary;

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
    /// Last log index the journal archive holds, as this node last saw it.
    pub archived_index: u64,
    /// Archive chunks that could not be written.
    pub archive_failures: u64,
}

/// Shared between the backup task, `/metrics` and the Status call.
#[derive(Debug, Default)]
pub struct BackupState(Mutex<BackupStatus>);

impl BackupState {
    pub fn status(&self) -> BackupStatus {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn note_archived(&self, end: u64) {
        let mut status = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        status.archived_index = status.archived_index.max(end);
    }

    pub fn note_archive_failure(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .archive_failures += 1;
    }

    /// Records one backup attempt that ended at `now` (Unix seconds).
    pub fn record(&self, outcome: &Result<BackupSummary, String>, now: u64) {
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
