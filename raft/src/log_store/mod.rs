//! The openraft log store of one Raft group, over the checksummed journal.
//!
//! Layout under the group's directory:
//!
//! ```text
//! <dir>/journal/   the journal: one record per log entry (see entry_codec)
//! <dir>/meta/      the meta store: vote, committed and purged log ids (see durable)
//! ```
//!
//! One writer (a thread, or a task under a simulator) owns the journal and the meta store and applies every
//! write in the order openraft issued it (see `writer`); readers read the
//! journal concurrently (see `reader`). Each `RaftLogStorage` method states
//! what is on disk when it returns or signals.

mod durable;
mod error;
mod open;
mod reader;
mod shared;
mod vote_gate;
mod writer;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::OptionalSend;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

pub use durable::{
    DurableState, StateDecodeError, STATE_BYTES, STATE_BYTES_V1, STATE_MAGIC, STATE_VERSION,
    STATE_VERSION_V1,
};
pub use error::LogStoreError;
pub use open::{OpenReport, VoteBlocker};
pub use reader::{JournalLogReader, READ_CHUNK_BYTES_MAX, REPLICATION_READ_BYTES_MAX};
pub use vote_gate::VoteGate;
pub use writer::{WriterRun, GROUP_COMMIT_APPENDS_MAX, GROUP_COMMIT_BYTES_MAX};

use crate::entry_codec::encode_entry_into;
use crate::journal::{HashedPayload, JournalOptions};
use crate::types::{Entry, IOFlushed, LogId, LogState, TypeConfig, Vote};
use shared::Shared;
use writer::{EncodedEntry, Queued, Reply, Request};

/// Subdirectory of the journal.
pub const JOURNAL_DIR: &str = "journal";
/// Subdirectory of the meta store.
pub const META_DIR: &str = "meta";
/// A file in the log store's directory that marks the node a member of a
/// cluster that exists, whatever its settings say: `finkfs fsck --repair`
/// writes it when it had to take the whole log and vote away. While the
/// log is empty the node is then a wiped member (`DataDirWiped`: no vote
/// until caught up), as with `--rejoin`; the first open that finds a log
/// removes it.
pub const REJOIN_MARKER: &str = "REJOIN";
/// Most write requests queued for the writer thread; `append` and the other
/// writes wait (asynchronously) for room beyond it.
pub const WRITE_QUEUE_DEPTH_MAX: usize = 256;
/// Default longest time a committed log id waits before it is saved.
pub const COMMITTED_SAVE_INTERVAL_DEFAULT: Duration = Duration::from_millis(200);

/// Settings of a log store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStoreOptions {
    /// Ceilings of the journal.
    pub journal: JournalOptions,
    /// Longest time a committed log id given to `save_committed` waits
    /// before it is saved (it is saved sooner with a vote or a purge).
    pub committed_save_interval: Duration,
    /// How the writer runs: its own thread (production) or a task.
    pub writer_run: WriterRun,
    /// The node is a member of a cluster that already exists (it is not
    /// being initialised): an empty log then means its data was lost, and
    /// it must not vote until it has caught up (see `vote_gate`).
    pub member_of_existing_cluster: bool,
    /// The state machine's durable applied log id, when it was opened
    /// first. A log whose purge point is lost (both meta copies damaged)
    /// but whose journal starts above index 0 is opened as purged through
    /// it, when it reaches the journal's start (see `open`).
    pub applied: Option<LogId>,
}

impl Default for LogStoreOptions {
    fn default() -> LogStoreOptions {
        LogStoreOptions {
            journal: JournalOptions::default(),
            committed_save_interval: COMMITTED_SAVE_INTERVAL_DEFAULT,
            writer_run: WriterRun::Thread,
            member_of_existing_cluster: false,
            applied: None,
        }
    }
}

/// The running writer, to join on close.
#[derive(Debug)]
enum WriterHandle {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// The Raft log store of one group: entries in the journal, the vote and
/// the committed and purged log ids in the meta store.
#[derive(Debug)]
pub struct JournalLogStore {
    dir: PathBuf,
    shared: Arc<Shared>,
    reader: JournalLogReader,
    queue: Arc<Semaphore>,
    tx: UnboundedSender<Queued>,
    writer: Option<WriterHandle>,
    writer_stopped: tokio::sync::watch::Receiver<bool>,
    gate: Arc<VoteGate>,
}

impl JournalLogStore {
    /// Opens the log store in `dir` (created if missing): recovers the
    /// journal and the meta store, finishes a purge a crash interrupted,
    /// and starts the writer. Damage does not fail the open: it is in the
    /// report and in [`JournalLogStore::may_vote`]. With
    /// [`WriterRun::Task`] it must be called inside a tokio runtime.
    pub fn open(
        disk: finkfs_seam::DiskRef,
        dir: &Path,
        options: LogStoreOptions,
    ) -> Result<(JournalLogStore, OpenReport), LogStoreError> {
        open::open(disk, dir, options)
    }

    /// False when this node lost its vote or may have lost or damaged log
    /// entries that a quorum counted on (invariant 5): it must not vote or
    /// count toward a quorum until repaired.
    pub fn may_vote(&self) -> bool {
        self.gate.may_vote()
    }

    /// Why the node may not vote now; empty when it may.
    pub fn vote_blockers(&self) -> Vec<VoteBlocker> {
        self.gate.blockers()
    }

    /// The gate deciding whether the node may vote, for the parts of the
    /// node that must ask while it runs (the peer server, elections).
    pub fn vote_gate(&self) -> Arc<VoteGate> {
        Arc::clone(&self.gate)
    }

    /// True once the writer has made its last write (on `close`, or after
    /// the store was dropped: it then saves a waiting committed log id
    /// first) and released its files. A closed channel means the same.
    /// Whoever drops the store without `close` and reopens the directory,
    /// or hands it to fsck, waits for it.
    pub fn writer_stopped(&self) -> tokio::sync::watch::Receiver<bool> {
        self.writer_stopped.clone()
    }

    /// The group directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves a waiting committed log id, releases the journal and the meta
    /// store and stops the writer. On return nothing of this store
    /// touches the disk any more, so the directory may be reopened.
    pub async fn close(mut self) -> Result<(), LogStoreError> {
        let result = self.call(|reply| Request::Close { reply }).await;
        // The writer replied as its last act; this join does not wait.
        match self.writer.take() {
            Some(WriterHandle::Thread(thread)) => {
                thread.join().map_err(|_| LogStoreError::WriterStopped)?
            }
            Some(WriterHandle::Task(task)) => {
                task.await.map_err(|_| LogStoreError::WriterStopped)?
            }
            None => {}
        }
        result
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, LogStoreError> {
        Arc::clone(&self.queue)
            .acquire_owned()
            .await
            .map_err(|_| LogStoreError::WriterStopped)
    }

    fn send(&self, request: Request, permit: OwnedSemaphorePermit) -> Result<(), LogStoreError> {
        self.tx
            .send(Queued {
                request,
                _permit: permit,
            })
            .map_err(|_| {
                self.shared.poison("the writer thread has stopped".into());
                LogStoreError::WriterStopped
            })
    }

    /// Queues a request and waits for the writer's reply.
    async fn call(&self, make: impl FnOnce(Reply) -> Request) -> Result<(), LogStoreError> {
        let permit = self.permit().await?;
        let (reply, done) = oneshot::channel();
        self.send(make(reply), permit)?;
        done.await.map_err(|_| LogStoreError::WriterStopped)?
    }

    fn check_poisoned(&self) -> Result<(), LogStoreError> {
        match &self.shared.lock().poisoned {
            Some(reason) => Err(LogStoreError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Makes `entries` readable and checks they continue the log.
    fn accept(&self, entries: &[Entry]) -> Result<(), LogStoreError> {
        let mut shared = self.shared.lock();
        if let Some(reason) = &shared.poisoned {
            return Err(LogStoreError::Poisoned {
                reason: reason.clone(),
            });
        }
        let mut expected = shared.next_index();
        for entry in entries {
            let got = entry.log_id.index;
            if let Some(expected) = expected.filter(|expected| *expected != got) {
                return Err(LogStoreError::NotContiguous { expected, got });
            }
            expected = Some(got + 1);
        }
        shared.pending.extend(entries.iter().cloned());
        if let Some(last) = entries.last() {
            shared.last = Some(last.log_id);
        }
        Ok(())
    }
}

/// Each entry as the journal stores it, hashed.
fn encode_all(entries: &[Entry]) -> Result<Vec<EncodedEntry>, LogStoreError> {
    entries
        .iter()
        .map(|entry| {
            let mut bytes = Vec::new();
            encode_entry_into(entry, &mut bytes)?;
            Ok(HashedPayload::new(bytes))
        })
        .collect()
}

impl RaftLogStorage<TypeConfig> for JournalLogStore {
    type LogReader = JournalLogReader;

    /// The last purged log id and the last log id (the last purged one when
    /// no entry is left), as of the writes accepted so far.
    async fn get_log_state(&mut self) -> Result<LogState, io::Error> {
        let shared = self.shared.lock();
        Ok(LogState {
            last_purged_log_id: shared.purged,
            last_log_id: shared.last_or_purged(),
        })
    }

    async fn get_log_reader(&mut self) -> JournalLogReader {
        self.reader.clone()
    }

    /// Durable before it returns: the writer thread first syncs every
    /// earlier append, then saves the vote to both meta copies (each
    /// synced). A failure poisons the store.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        Ok(self.call(|reply| Request::SaveVote { vote, reply }).await?)
    }

    /// Readable by `read_committed` at once. Made durable by the writer
    /// thread after every earlier append is synced (so the journal always
    /// holds what a saved committed log id covers), at most the configured
    /// interval later, sooner with a vote or purge. After a power cut,
    /// `read_committed` may return an older committed log id, never a newer
    /// one.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.check_poisoned()?;
        let permit = self.permit().await?;
        self.shared.lock().committed = committed;
        Ok(self.send(Request::SaveCommitted { committed }, permit)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.lock().committed)
    }

    /// Readable when it returns; durable when `callback` fires. The entries
    /// go to the writer thread, which drains every queued append, writes
    /// them all, syncs the journal ONCE, and only then fires the callbacks,
    /// in order. A failed write or sync poisons the store: the callbacks get
    /// the error and later appends fail at once.
    async fn append<I>(&mut self, entries: I, callback: IOFlushed) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // Encoding and hashing happen here, on the caller's task, while the
        // writer thread may be waiting on the previous batch's fsync.
        let encoded = encode_all(&entries)?;
        let permit = self.permit().await?;
        self.accept(&entries)?;
        let request = Request::Append {
            entries,
            encoded,
            callback,
        };
        Ok(self.send(request, permit)?)
    }

    /// Durable before it returns: after every earlier append is synced, the
    /// journal removes the entries after `last_log_id` (newest first, so a
    /// crash midway leaves a prefix) and syncs.
    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let last_kept = last_log_id;
        Ok(self
            .call(|reply| Request::TruncateAfter { last_kept, reply })
            .await?)
    }

    /// The purge point is saved durably in the meta store BEFORE any journal
    /// segment is dropped (a crash in between is finished by `open`); the
    /// journal's purge is durable when this returns.
    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let up_to = log_id;
        Ok(self.call(|reply| Request::Purge { up_to, reply }).await?)
    }
}
