//! Guards against a log store that breaks openraft's storage contract (holes,
//! wrong log state after purge or truncation, lost vote, unreadable appends):
//! openraft's own conformance suite, on the real disk and on the simulated one,
//! with the writer on its own thread (production) and as a task (simulator).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions, WriterRun};
use finkfs_raft::types::{
    AppResponse, Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig,
};
use finkfs_seam::{DiskRef, RealDisk};
use finkfs_simdisk::SimDisk;
use futures_util::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb};

/// What the test state machine remembers: only what the suite checks.
#[derive(Debug, Clone, Default)]
struct MemState {
    applied: Option<LogId>,
    membership: StoredMembership,
}

/// A state machine in memory, just enough for the suite's apply and
/// snapshot checks.
#[derive(Debug, Default)]
struct MemStateMachine {
    state: MemState,
    snapshot: Option<Snapshot<MemState>>,
}

impl RaftSnapshotBuilder<TypeConfig> for MemState {
    type SnapshotData = MemState;

    async fn build_snapshot(&mut self) -> Result<Snapshot<MemState>, io::Error> {
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
        };
        Ok(Snapshot {
            meta,
            snapshot: self.clone(),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotData = MemState;
    type SnapshotBuilder = MemState;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.state.applied, self.state.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder): (Entry, _) = item?;
            self.state.applied = Some(entry.log_id());
            if let EntryPayload::Membership(membership) = &entry.payload {
                self.state.membership =
                    StoredMembership::new(Some(entry.log_id()), membership.clone());
            }
            if let Some(responder) = responder {
                responder.send(AppResponse::default());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> MemState {
        self.state.clone()
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<MemState> {
        // Building updates the current snapshot, as a real machine does.
        let mut builder = self.state.clone();
        let snapshot = builder.build_snapshot().await.ok()?;
        self.snapshot = Some(snapshot);
        Some(builder)
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: MemState,
    ) -> Result<(), io::Error> {
        self.state = snapshot.clone();
        self.snapshot = Some(Snapshot {
            meta: meta.clone(),
            snapshot,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MemState>>, io::Error> {
        Ok(self.snapshot.clone())
    }
}

fn open_store(
    disk: DiskRef,
    dir: &Path,
    writer_run: WriterRun,
) -> Result<JournalLogStore, StorageError> {
    let options = LogStoreOptions {
        writer_run,
        ..LogStoreOptions::default()
    };
    let (store, report) = JournalLogStore::open(disk, dir, options)
        .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e.into()))?;
    assert!(report.vote_blockers.is_empty());
    Ok(store)
}

/// A fresh store in its own temporary directory on the real disk.
struct RealDiskBuilder {
    writer_run: WriterRun,
}

impl StoreBuilder<TypeConfig, JournalLogStore, MemStateMachine, tempfile::TempDir>
    for RealDiskBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, JournalLogStore, MemStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let disk: DiskRef = std::sync::Arc::new(RealDisk::open(dir.path()).expect("real disk"));
        let store = open_store(disk, Path::new("group-1"), self.writer_run)?;
        Ok((dir, store, MemStateMachine::default()))
    }
}

/// A fresh store on a fresh simulated disk, each with its own seed.
struct SimDiskBuilder {
    next_seed: AtomicU64,
    writer_run: WriterRun,
}

impl StoreBuilder<TypeConfig, JournalLogStore, MemStateMachine, SimDisk> for SimDiskBuilder {
    async fn build(&self) -> Result<(SimDisk, JournalLogStore, MemStateMachine), StorageError> {
        let disk = SimDisk::new(self.next_seed.fetch_add(1, Ordering::Relaxed));
        let store = open_store(disk.disk_ref(), Path::new("groups/1"), self.writer_run)?;
        Ok((disk, store, MemStateMachine::default()))
    }
}

async fn suite_on_real_disk(writer_run: WriterRun) {
    Suite::test_all(RealDiskBuilder { writer_run })
        .await
        .expect("openraft log store suite on RealDisk");
}

async fn suite_on_sim_disk(writer_run: WriterRun) {
    let builder = SimDiskBuilder {
        next_seed: AtomicU64::new(0x5eed),
        writer_run,
    };
    Suite::test_all(builder)
        .await
        .expect("openraft log store suite on SimDisk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_on_real_disk() {
    suite_on_real_disk(WriterRun::Thread).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_on_sim_disk() {
    suite_on_sim_disk(WriterRun::Thread).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_on_real_disk_with_writer_task() {
    suite_on_real_disk(WriterRun::Task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_on_sim_disk_with_writer_task() {
    suite_on_sim_disk(WriterRun::Task).await;
}

/// The simulator's setting: one thread, paused clock, the hook installed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn openraft_suite_passes_with_writer_task_under_the_simulator_hook() {
    let _hook = finkfs_raft::rt::install_hook(0x5eed);
    let node = finkfs_raft::rt::NodeTag {
        node: 1,
        incarnation: 0,
    };
    finkfs_raft::rt::in_node(node, suite_on_sim_disk(WriterRun::Task)).await;
}
