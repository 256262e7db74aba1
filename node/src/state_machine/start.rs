//! Before openraft starts: the log's purge point must never lie beyond the
//! newest snapshot this node holds.
//!
//! openraft asserts at start-up that the log was purged no further than the
//! current snapshot reaches (it panics otherwise). It also purges the log
//! itself while it starts, when the state machine has applied beyond the
//! log's end: it "cleans the hole" by purging up to the applied log id, and
//! saves that purge. The index reaches beyond the log when an offline repair
//! cut damaged journal records the index had already applied; if the newest
//! snapshot is older than the index, that saved purge outlives every
//! snapshot, and every later start panics.
//!
//! [`StateMachine::cover_log_purge`] runs before openraft does: when the
//! purge point openraft will hold lies beyond the current snapshot, it first
//! builds a snapshot from the durable index (file and directory fsynced), so
//! the purge is only ever saved once a snapshot covering it is durable. When
//! the index does not reach that point either, the entries in between exist
//! nowhere on this node: the start is refused with
//! [`StateMachineError::PurgedBeyondSnapshot`].

use finkfs_raft::types::{LogId, SnapshotMeta};

use super::{blocking, lock, StateMachine, StateMachineError};

impl StateMachine {
    /// Makes sure a durable snapshot covers the purge point the log will
    /// hold once openraft has started over a log purged up to `purged` and
    /// ending at `last_log` (`RaftLogStorage::get_log_state`). Returns the
    /// snapshot it had to build, if any. Call it before `Raft::new`.
    pub async fn cover_log_purge(
        &self,
        purged: Option<LogId>,
        last_log: Option<LogId>,
    ) -> Result<Option<SnapshotMeta>, StateMachineError> {
        let (core, snapshots) = (self.core.clone(), self.snapshots.clone());
        blocking(move || {
            let mut core = lock(&core)?;
            let (applied, _) = core.applied_state()?;
            let need = purge_at_start(purged, last_log, applied);
            let snapshot = snapshots.current().and_then(|s| s.meta.last_log_id);
            if need <= snapshot {
                return Ok(None);
            }
            if applied < need {
                return Err(StateMachineError::PurgedBeyondSnapshot {
                    purged: shown(need),
                    snapshot: shown(snapshot),
                    applied: shown(applied),
                });
            }
            tracing::warn!(
                purge = ?need,
                snapshot = ?snapshot,
                applied = ?applied,
                "the log will be purged beyond the newest snapshot; building a snapshot of the index first"
            );
            let view = core.durable_view()?;
            let built = snapshots.build(&view)?;
            Ok(Some(built.meta))
        })
        .await
    }
}

/// The purge point openraft holds once started: the saved one, or the
/// applied log id when the state machine reaches beyond the log's end.
pub(crate) fn purge_at_start(
    purged: Option<LogId>,
    last_log: Option<LogId>,
    applied: Option<LogId>,
) -> Option<LogId> {
    let reach = purged.max(last_log);
    if applied > reach {
        applied
    } else {
        purged
    }
}

fn shown(log_id: Option<LogId>) -> String {
    log_id.map_or_else(|| "none".to_string(), |id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::make_log_id;

    fn id(index: u64) -> Option<LogId> {
        Some(make_log_id(index, 1, 1))
    }

    #[test]
    fn purge_at_start_is_the_applied_id_only_beyond_the_log() {
        // The hole openraft cleans: applied beyond the log's end.
        assert_eq!(purge_at_start(id(3), id(9), id(12)), id(12));
        // Applied within the log: the saved purge stays.
        assert_eq!(purge_at_start(id(3), id(9), id(7)), id(3));
        assert_eq!(purge_at_start(None, id(9), id(9)), None);
        // Everything purged: the purge point is the log's end.
        assert_eq!(purge_at_start(id(9), None, id(12)), id(12));
        assert_eq!(purge_at_start(None, None, None), None);
    }
}
