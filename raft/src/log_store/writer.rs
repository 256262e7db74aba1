//! The journal writer: the only owner of the journal and the meta store, so
//! every write is applied in the order openraft issued it. One async body,
//! run on its own thread or as a task (see [`WriterRun`]).
//!
//! Appends are drained into one batch, written with one journal batch (a
//! few large vectored writes), then made durable with ONE
//! journal sync (group commit); only then are their `IOFlushed` callbacks
//! fired, in order. Any other request ends the batch first, so it always sees
//! every earlier append durable. A failed write or sync poisons the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

use finkfs_seam::DiskRef;

use super::durable::DurableState;
use super::error::LogStoreError;
use super::shared::Shared;
use crate::journal::{Append, HashedPayload, Journal};
use crate::meta::MetaStore;
use crate::rt::{self, IoKind};
use crate::types::{Entry, IOFlushed, LogId, Vote};

/// Most append requests folded into one sync.
pub const GROUP_COMMIT_APPENDS_MAX: usize = 1024;
/// Most payload bytes folded into one sync: bounds how long a caller's
/// callback waits behind others.
pub const GROUP_COMMIT_BYTES_MAX: u64 = 64 << 20;

/// How the writer runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriterRun {
    /// On its own thread, with a single-threaded runtime for its timer: an
    /// fsync blocks only that thread. For production.
    #[default]
    Thread,
    /// As a task of the caller's runtime (`rt::spawn`, so in the node's
    /// group under the simulator), its fsyncs inline. For a deterministic
    /// simulation on one thread; an fsync stalls the runtime's thread.
    Task,
}

/// Where a request's outcome goes.
pub(crate) type Reply = oneshot::Sender<Result<(), LogStoreError>>;

/// A write request, in the order the store received it.
/// An entry as the journal stores it, with the hash of those bytes.
pub(crate) type EncodedEntry = HashedPayload<Vec<u8>>;

pub(crate) enum Request {
    /// Write these entries; fire the callback once they are durable.
    Append {
        entries: Vec<Entry>,
        /// Each entry encoded and hashed by the caller, so the writer
        /// thread only writes: hashing overlaps the previous batch's fsync.
        encoded: Vec<EncodedEntry>,
        callback: IOFlushed,
    },
    /// Make the vote durable, then reply.
    SaveVote { vote: Vote, reply: Reply },
    /// Remember the committed log id; it is saved within the configured
    /// interval, after the journal holds every entry it covers durably.
    SaveCommitted { committed: Option<LogId> },
    /// Remove every entry after `last_kept` (all of them if None), durably.
    TruncateAfter {
        last_kept: Option<LogId>,
        reply: Reply,
    },
    /// Record the purge point durably, then drop the journal up to it.
    Purge { up_to: LogId, reply: Reply },
    /// Save what is unsaved, release the journal and stop.
    Close { reply: Reply },
}

/// A request holding its place in the bounded queue until it is taken.
pub(crate) struct Queued {
    pub request: Request,
    /// Released when the writer takes the request off the queue.
    pub _permit: OwnedSemaphorePermit,
}

/// Payload bytes of encoded entries.
fn encoded_bytes(encoded: &[EncodedEntry]) -> u64 {
    encoded
        .iter()
        .map(|hashed| hashed.bytes().len() as u64)
        .sum()
}

/// The state the writer owns.
pub(crate) struct Writer {
    pub journal: Journal,
    pub meta: MetaStore,
    pub meta_dir: PathBuf,
    /// What the meta store holds.
    pub durable: DurableState,
    pub shared: Arc<Shared>,
    pub rx: UnboundedReceiver<Queued>,
    pub committed_save_interval: Duration,
    /// A committed log id not yet saved, and when it must be saved by
    /// (tokio's clock, which a simulator can pause and advance).
    pub committed_unsaved: Option<(Option<LogId>, Instant)>,
    /// Why writes are refused, once one failed.
    pub failed: Option<String>,
    /// The rejoin marker, while it stands: removed by the first state save
    /// after the wiped-member blocker lifted.
    pub rejoin_marker: Option<(DiskRef, PathBuf)>,
    /// Says true once the writer has made its last write and released the
    /// journal and the meta store.
    pub stopped: tokio::sync::watch::Sender<bool>,
}

impl Writer {
    /// The writer's body: serve requests until `Close` or until every
    /// sender is gone.
    pub async fn run(mut self) {
        let mut close_reply = None;
        while let Some(request) = self.next_request().await {
            if let Some(reply) = self.handle(request).await {
                close_reply = Some(reply);
                break;
            }
        }
        let result = self.save_unsaved_committed();
        let Writer {
            journal,
            meta,
            stopped,
            ..
        } = self;
        drop(journal);
        drop(meta);
        stopped.send_replace(true);
        tracing::debug!("journal writer stopped");
        if let Some(reply) = close_reply {
            let _ = reply.send(result);
        }
    }

    /// The next request, saving a pending committed log id when its time
    /// comes while waiting. None once every sender is gone.
    async fn next_request(&mut self) -> Option<Request> {
        loop {
            let received = match self.committed_unsaved {
                None => self.rx.recv().await,
                Some((_, deadline)) => {
                    match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(received) => received,
                        Err(_elapsed) => {
                            let _ = self.save_unsaved_committed();
                            continue;
                        }
                    }
                }
            };
            // The permit is released as the request leaves the queue.
            return received.map(|queued| queued.request);
        }
    }

    /// Serves one request (and, for an append, the appends queued behind
    /// it). Returns the reply of a `Close`.
    async fn handle(&mut self, request: Request) -> Option<Reply> {
        let mut next = Some(request);
        while let Some(request) = next.take() {
            match request {
                Request::Append {
                    entries,
                    encoded,
                    callback,
                } => next = self.group_commit(entries, encoded, callback).await,
                Request::SaveVote { vote, reply } => {
                    let _ = reply.send(self.save_vote(vote));
                }
                Request::SaveCommitted { committed } => self.note_committed(committed),
                Request::TruncateAfter { last_kept, reply } => {
                    let _ = reply.send(self.truncate_after(last_kept));
                }
                Request::Purge { up_to, reply } => {
                    let _ = reply.send(self.purge(up_to));
                }
                Request::Close { reply } => return Some(reply),
            }
        }
        None
    }

    /// Takes this append and every append queued behind it (up to the
    /// group-commit ceilings), writes them all with one journal batch, syncs
    /// once, then fires the callbacks in order. Returns the first non-append
    /// request met, to serve next.
    async fn group_commit(
        &mut self,
        entries: Vec<Entry>,
        encoded: Vec<EncodedEntry>,
        callback: IOFlushed,
    ) -> Option<Request> {
        let mut bytes = encoded_bytes(&encoded);
        let mut batch = vec![(entries, encoded)];
        let mut callbacks = vec![callback];
        let held = loop {
            if callbacks.len() >= GROUP_COMMIT_APPENDS_MAX || bytes >= GROUP_COMMIT_BYTES_MAX {
                break None;
            }
            match self.rx.try_recv() {
                Ok(Queued {
                    request:
                        Request::Append {
                            entries,
                            encoded,
                            callback,
                        },
                    ..
                }) => {
                    bytes += encoded_bytes(&encoded);
                    batch.push((entries, encoded));
                    callbacks.push(callback);
                }
                Ok(other) => break Some(other.request),
                Err(_empty_or_disconnected) => break None,
            }
        };
        let result = self.write_entries(&batch);
        drop(batch);
        // The fsync's latency under the simulator (nothing otherwise): the
        // batch is written but not yet synced, appends arriving meanwhile
        // form the next batch, and a power cut may land here.
        rt::io_pause(IoKind::JournalSync).await;
        let result = result.and_then(|()| self.sync());
        tracing::trace!(
            appends = callbacks.len(),
            bytes,
            ok = result.is_ok(),
            "group commit"
        );
        // Never before the sync returned: a callback tells openraft the
        // entries survive a power cut.
        for callback in callbacks {
            callback.io_completed(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| self.callback_error(e)),
            );
        }
        held
    }

    /// Appends the entries of a group commit to the journal in one batch
    /// (page cache only, a few large writes), then takes them out of the
    /// pending queue: readers found them there until now, and find them in
    /// the journal from now on.
    fn write_entries(
        &mut self,
        batch: &[(Vec<Entry>, Vec<EncodedEntry>)],
    ) -> Result<(), LogStoreError> {
        self.check_failed()?;
        let mut records = Vec::new();
        for (entries, encoded) in batch {
            assert_eq!(entries.len(), encoded.len(), "one encoding per entry");
            records.extend(entries.iter().zip(encoded).map(|(entry, hashed)| Append {
                index: entry.log_id.index,
                term: entry.log_id.leader_id.term,
                payload: hashed,
            }));
        }
        let written = self
            .journal
            .append_batch(&records)
            .map_err(LogStoreError::from);
        self.fail_on_error(written)?;
        let mut shared = self.shared.lock();
        for entry in batch.iter().flat_map(|(entries, _)| entries) {
            let front = shared.pending.pop_front();
            assert!(front.is_some_and(|front| front.log_id == entry.log_id));
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), LogStoreError> {
        self.check_failed()?;
        let synced = self.journal.sync().map_err(LogStoreError::from);
        self.fail_on_error(synced)
    }

    /// Saves the vote durably (with the committed log id if one is
    /// waiting: every entry it covers is durable by now).
    fn save_vote(&mut self, vote: Vote) -> Result<(), LogStoreError> {
        self.check_failed()?;
        let next = DurableState {
            vote: Some(vote),
            ..self.durable.clone()
        };
        self.save_state(next)?;
        self.shared.lock().vote = Some(vote);
        Ok(())
    }

    fn note_committed(&mut self, committed: Option<LogId>) {
        if self.failed.is_some() {
            return;
        }
        let deadline = match self.committed_unsaved {
            Some((_, deadline)) => deadline,
            None => Instant::now() + self.committed_save_interval,
        };
        self.committed_unsaved = Some((committed, deadline));
    }

    /// Saves a waiting committed log id, if any. Every earlier append was
    /// synced when its batch ended, so the journal durably holds what the
    /// committed log id covers.
    fn save_unsaved_committed(&mut self) -> Result<(), LogStoreError> {
        if self.committed_unsaved.is_none() {
            return Ok(());
        }
        self.check_failed()?;
        self.save_state(self.durable.clone())
    }

    /// Writes `next` (with any waiting committed log id) to the meta store,
    /// durably; poisons the store on failure.
    fn save_state(&mut self, mut next: DurableState) -> Result<(), LogStoreError> {
        if let Some((committed, _)) = self.committed_unsaved.take() {
            next.committed = committed;
        }
        if self.shared.lock().tail_floor_lifted {
            next.tail_floor = None;
        }
        let saved = self.meta.save(&next.encode()).map_err(LogStoreError::from);
        self.fail_on_error(saved)?;
        tracing::debug!(dir = %self.meta_dir.display(), state = ?next, "log store state saved");
        self.durable = next;
        self.remove_rejoin_marker_once_lifted();
        Ok(())
    }

    /// The node caught up after it was wiped: the marker has done its work.
    /// A failure leaves it for the next start, which then waits to catch up
    /// once more: slower, never unsafe.
    fn remove_rejoin_marker_once_lifted(&mut self) {
        if !self.shared.lock().wiped_lifted {
            return;
        }
        let Some((disk, marker)) = self.rejoin_marker.take() else {
            return;
        };
        let removed = disk
            .remove(&marker)
            .and_then(|()| disk.sync_dir(finkfs_seam::parent_dir(&marker)));
        match removed {
            Ok(()) => {
                tracing::info!(file = %marker.display(), "caught up after a wipe: rejoin marker removed")
            }
            Err(error) => {
                tracing::warn!(file = %marker.display(), %error, "could not remove the rejoin marker; the next start waits to catch up again")
            }
        }
    }

    /// Removes the entries after `last_kept`, durably.
    fn truncate_after(&mut self, last_kept: Option<LogId>) -> Result<(), LogStoreError> {
        self.check_failed()?;
        let truncated = match &last_kept {
            Some(log_id) => self.journal.truncate_after(log_id.index),
            None => self.truncate_all(),
        };
        self.fail_on_error(truncated.map_err(LogStoreError::from))?;
        let mut shared = self.shared.lock();
        assert!(shared.pending.is_empty());
        shared.last = match (shared.last, last_kept) {
            (Some(last), Some(kept)) if last.index > kept.index => Some(kept),
            (last, Some(_)) => last,
            (_, None) => None,
        };
        Ok(())
    }

    /// Empties the journal so that a crash midway leaves a prefix of it.
    fn truncate_all(&mut self) -> Result<(), crate::journal::JournalError> {
        match self.journal.first_index() {
            None => Ok(()),
            Some(0) => {
                // No index sits below 0: keep only record 0 (later segments
                // go newest first), then drop that one.
                self.journal.truncate_after(0)?;
                self.journal.purge_up_to(0)
            }
            Some(first) => self.journal.truncate_after(first - 1),
        }
    }

    /// Records the purge point durably, and only then drops the journal up
    /// to it: after a crash in between, open finishes the purge.
    fn purge(&mut self, up_to: LogId) -> Result<(), LogStoreError> {
        self.check_failed()?;
        if self
            .durable
            .purged
            .is_some_and(|purged| purged.index >= up_to.index)
        {
            return Ok(());
        }
        let next = DurableState {
            purged: Some(up_to),
            ..self.durable.clone()
        };
        self.save_state(next)?;
        self.shared.lock().purged = Some(up_to);
        let purged = self
            .journal
            .purge_up_to(up_to.index)
            .map_err(LogStoreError::from);
        self.fail_on_error(purged)
    }

    fn check_failed(&self) -> Result<(), LogStoreError> {
        match &self.failed {
            Some(reason) => Err(LogStoreError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the store if `result` is an error: after a failed write or
    /// sync, what the page cache holds can no longer be trusted.
    fn fail_on_error(&mut self, result: Result<(), LogStoreError>) -> Result<(), LogStoreError> {
        if let Err(error) = &result {
            let reason = error.to_string();
            self.shared.poison(reason.clone());
            self.failed.get_or_insert(reason);
        }
        result
    }

    fn callback_error(&self, error: &LogStoreError) -> std::io::Error {
        let reason = self.failed.clone().unwrap_or_else(|| error.to_string());
        LogStoreError::Poisoned { reason }.into()
    }
}
