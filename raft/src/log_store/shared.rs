//! State shared by the store handle, its readers and the writer thread.
//!
//! `append` must leave its entries readable when it returns, before the
//! writer thread has put them in the journal (it may be busy in an fsync).
//! Such entries wait in `pending`, in index order; the writer removes them
//! only after they are in the journal, so every index below the first pending
//! one is in the journal (or purged) at any instant.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::types::{Entry, LogId, Vote};

/// The mutable state behind [`Shared`].
#[derive(Debug, Default)]
pub(crate) struct SharedState {
    /// The last vote made durable.
    pub vote: Option<Vote>,
    /// The last committed log id given to `save_committed`.
    pub committed: Option<LogId>,
    /// The last purged log id made durable.
    pub purged: Option<LogId>,
    /// The log id of the last entry accepted by `append` and not truncated;
    /// may be at or below `purged` once everything was purged.
    pub last: Option<LogId>,
    /// Entries accepted by `append` that the writer has not yet put in the
    /// journal, in index order.
    pub pending: VecDeque<Entry>,
    /// Why the store refuses writes, once a write or sync failed.
    pub poisoned: Option<String>,
    /// The vote gate's tail floor lifted: the next state save drops it, so
    /// that a later start does not wait on the other voters again.
    pub tail_floor_lifted: bool,
    /// The vote gate's wiped-member blocker lifted: the next state save
    /// removes the rejoin marker.
    pub wiped_lifted: bool,
}

impl SharedState {
    /// The last log id the log holds or purged: what `get_log_state`
    /// reports as the last log id.
    pub fn last_or_purged(&self) -> Option<LogId> {
        match (&self.last, &self.purged) {
            (Some(last), Some(purged)) if last > purged => Some(*last),
            (_, Some(purged)) => Some(*purged),
            (last, None) => *last,
        }
    }

    /// The index the next append must carry, None while any index may start
    /// the log.
    pub fn next_index(&self) -> Option<u64> {
        self.last_or_purged().map(|log_id| log_id.index + 1)
    }
}

/// [`SharedState`] behind a lock held only for short, non-blocking sections
/// (never across I/O).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: Mutex<SharedState>,
}

impl Shared {
    pub fn new(state: SharedState) -> Shared {
        Shared {
            state: Mutex::new(state),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SharedState> {
        // A panic while holding this lock is a bug in this module; stopping
        // every user of the store is the safe answer.
        self.state
            .lock()
            .expect("log store shared state poisoned by a panic")
    }

    /// Records the first failure; later ones keep the first reason.
    pub fn poison(&self, reason: String) {
        let mut state = self.lock();
        if state.poisoned.is_none() {
            tracing::error!(%reason, "log store poisoned");
            state.poisoned = Some(reason);
        }
    }
}
