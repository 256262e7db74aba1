//! openraft's `RaftStateMachine` and `RaftSnapshotBuilder` for
//! [`StateMachine`].

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use finkfs_raft::network::SnapshotFile;
use finkfs_raft::types::{
    AppResponse, Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};
use futures_util::{FutureExt, Stream, StreamExt};
use openraft::storage::{ApplyResponder, EntryResponder, RaftSnapshotBuilder, RaftStateMachine};

use crate::index::IndexView;
use crate::snapshot::SnapshotDir;

use super::{blocking, lock, StateMachine, StateMachineError};

/// Builds one snapshot from the view taken when it was created: the index
/// was made durable first, so the snapshot never covers entries a power cut
/// could still take back.
pub struct SnapshotBuilder {
    /// The view, or why it could not be taken; consumed by the build.
    view: Mutex<Option<Result<IndexView, StateMachineError>>>,
    snapshots: Arc<SnapshotDir>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot<SnapshotFile>, io::Error> {
        let taken = self
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let view = taken.ok_or_else(|| {
            io::Error::other("snapshot builder used twice: it holds one view of the index")
        })??;
        let snapshots = self.snapshots.clone();
        Ok(blocking(move || Ok(snapshots.build(&view)?)).await?)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    /// What the index holds: after a crash, its last durable point.
    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let core = self.core.clone();
        Ok(blocking(move || lock(&core)?.applied_state()).await?)
    }

    /// Applies entries in batches of what the stream has ready; each
    /// entry's response is sent once the transaction holding it committed
    /// (so a reader sees what the client was told is stored).
    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut ended = false;
        while !ended {
            let Some(first) = entries.next().await else {
                break;
            };
            let mut batch = vec![first?];
            let mut batch_bytes = command_bytes(&batch[0].0);
            while batch.len() < self.options.apply_batch_entries_max
                && batch_bytes < self.options.apply_batch_bytes_max
            {
                match entries.next().now_or_never() {
                    Some(Some(item)) => {
                        let item = item?;
                        batch_bytes += command_bytes(&item.0);
                        batch.push(item);
                    }
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            self.apply_batch(batch).await?;
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<SnapshotBuilder> {
        Some(self.get_snapshot_builder().await)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let core = self.core.clone();
        let view = blocking(move || lock(&core)?.durable_view()).await;
        if let Err(error) = &view {
            tracing::error!(%error, "cannot take a durable view of the index for a snapshot");
        }
        SnapshotBuilder {
            view: Mutex::new(Some(view)),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        match self.install(meta, snapshot).await {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::error!(%error, last = ?meta.last_log_id, "snapshot install failed");
                Err(error.into())
            }
        }
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<SnapshotFile>>, io::Error> {
        Ok(self.snapshots.current())
    }
}

impl StateMachine {
    async fn apply_batch(&self, batch: Vec<EntryResponder<TypeConfig>>) -> Result<(), io::Error> {
        let (entries, responders): (Vec<Entry>, Vec<Option<ApplyResponder<TypeConfig>>>) =
            batch.into_iter().unzip();
        let responses: Vec<AppResponse> = match self.apply_entries(entries).await {
            Ok(responses) => responses,
            Err(error) => {
                tracing::error!(%error, "applying committed entries failed; the state machine stops");
                return Err(error.into());
            }
        };
        assert_eq!(responses.len(), responders.len());
        for (response, responder) in responses.into_iter().zip(responders) {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }
}

fn command_bytes(entry: &Entry) -> u64 {
    match &entry.payload {
        EntryPayload::Normal(command) => command.0.len() as u64,
        _ => 0,
    }
}
