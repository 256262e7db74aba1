//! Guards against an append callback fired before the fsync that makes the
//! entries durable, against appends that wait for an fsync, and against one
//! fsync per append where one for the whole queue would do (group commit).

mod journal_hooks;

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions};
use finkfs_raft::types::{AppCommand, Entry, EntryPayload, IOFlushed, LeaderId, LogId, TypeConfig};
use finkfs_simdisk::SimDisk;
use journal_hooks::{hooked_disk, JournalHooks};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderId;

const DIR: &str = "groups/3";

/// Holds journal fsyncs until the test lets them through, and counts them.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    permits: u64,
    waiting: u64,
    syncs: u64,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap()
    }

    /// Called by a journal file's sync: waits while the gate is closed and
    /// holds no permit.
    fn pass(&self) {
        let mut state = self.lock();
        state.waiting += 1;
        self.changed.notify_all();
        while state.closed && state.permits == 0 {
            state = self.changed.wait(state).unwrap();
        }
        if state.closed {
            state.permits -= 1;
        }
        state.waiting -= 1;
    }

    fn synced(&self) {
        self.lock().syncs += 1;
    }

    fn close(&self) {
        self.lock().closed = true;
    }

    fn allow(&self, permits: u64) {
        self.lock().permits += permits;
        self.changed.notify_all();
    }

    fn waiting(&self) -> u64 {
        self.lock().waiting
    }

    fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    async fn until_waiting(&self, count: u64) {
        for _ in 0..1000 {
            if self.waiting() == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no fsync reached the gate");
    }
}

impl JournalHooks for Gate {
    fn before_sync(&self) {
        self.pass();
    }
    fn after_sync(&self) {
        self.synced();
    }
}

fn entry(index: u64) -> Entry {
    let command = AppCommand(Bytes::from(format!("alert {index}").into_bytes()));
    Entry {
        log_id: LogId::new(LeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(command),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_appends_share_one_fsync_and_no_callback_fires_before_it() {
    let gate = Arc::new(Gate::default());
    let journal = Path::new(DIR).join("journal");
    let disk = hooked_disk(SimDisk::new(3).disk_ref(), &journal, Arc::clone(&gate));
    let (mut store, _) =
        JournalLogStore::open(disk, Path::new(DIR), LogStoreOptions::default()).unwrap();
    store.blocking_append([entry(0)]).await.unwrap();
    let syncs_before = gate.syncs();
    gate.close();

    // The writer takes append 1 alone and blocks in its fsync.
    let (tx, mut first) = TypeConfig::oneshot();
    store
        .append([entry(1)], IOFlushed::signal(tx))
        .await
        .unwrap();
    gate.until_waiting(1).await;

    // Appends return while the writer is stuck in an fsync, and are readable.
    let mut queued = Vec::new();
    for index in 2..50 {
        let (tx, rx) = TypeConfig::oneshot();
        store
            .append([entry(index)], IOFlushed::signal(tx))
            .await
            .unwrap();
        queued.push(rx);
    }
    let mut reader = store.get_log_reader().await;
    let all: Vec<Entry> = (0..50).map(entry).collect();
    assert_eq!(reader.try_get_log_entries(0..50).await.unwrap(), all);
    assert!(
        first.try_recv().is_err(),
        "callback fired before its fsync returned"
    );
    assert!(queued.iter_mut().all(|rx| rx.try_recv().is_err()));

    // Fsync 1 completes: only append 1 is acknowledged. The 48 queued
    // appends are written and wait in ONE fsync.
    gate.allow(1);
    assert!(first.await.unwrap().is_ok());
    gate.until_waiting(1).await;
    assert!(
        queued.iter_mut().all(|rx| rx.try_recv().is_err()),
        "callback fired before its fsync returned"
    );

    gate.allow(1);
    for rx in queued {
        assert!(rx.await.unwrap().is_ok());
    }
    assert_eq!(gate.syncs() - syncs_before, 2, "49 appends, 2 fsyncs");
    assert_eq!(reader.try_get_log_entries(0..50).await.unwrap(), all);
    store.close().await.unwrap();
}
