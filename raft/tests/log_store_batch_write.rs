//! Guards against entries that vanish from reads while the writer is in the
//! middle of writing them (they leave the pending queue only once their
//! write has returned), and against a group commit that still costs one
//! journal write per append instead of one for the whole group.

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

const DIR: &str = "groups/4";

/// Holds journal writes while closed, and counts them.
#[derive(Debug, Default)]
struct WriteGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    waiting: u64,
    writes: u64,
}

impl WriteGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap()
    }

    /// Called by a journal file's write: counts it, then waits while closed.
    fn pass(&self) {
        let mut state = self.lock();
        state.writes += 1;
        state.waiting += 1;
        self.changed.notify_all();
        while state.closed {
            state = self.changed.wait(state).unwrap();
        }
        state.waiting -= 1;
    }

    fn set_closed(&self, closed: bool) {
        self.lock().closed = closed;
        self.changed.notify_all();
    }

    fn writes(&self) -> u64 {
        self.lock().writes
    }

    async fn until_waiting(&self) {
        for _ in 0..1000 {
            if self.lock().waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no journal write reached the gate");
    }
}

impl JournalHooks for WriteGate {
    fn before_write(&self) {
        self.pass();
    }
}

fn entry(index: u64) -> Entry {
    let command = AppCommand(Bytes::from(
        format!("alert {index}").repeat(50).into_bytes(),
    ));
    Entry {
        log_id: LogId::new(LeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(command),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_stay_readable_while_their_write_is_in_flight_and_a_group_is_one_write() {
    let gate = Arc::new(WriteGate::default());
    let journal = Path::new(DIR).join("journal");
    let disk = hooked_disk(SimDisk::new(4).disk_ref(), &journal, Arc::clone(&gate));
    let (mut store, _) =
        JournalLogStore::open(disk, Path::new(DIR), LogStoreOptions::default()).unwrap();
    store.blocking_append([entry(0)]).await.unwrap();
    let mut reader = store.get_log_reader().await;

    // The writer takes append 1 alone and blocks inside its write.
    gate.set_closed(true);
    let writes_before = gate.writes();
    let (tx, first) = TypeConfig::oneshot();
    store
        .append([entry(1)], IOFlushed::signal(tx))
        .await
        .unwrap();
    gate.until_waiting().await;
    assert_eq!(
        reader.try_get_log_entries(1..2).await.unwrap(),
        vec![entry(1)],
        "an entry whose write is in flight must stay readable"
    );

    // Appends queue behind it, readable from the queue.
    let mut queued = Vec::new();
    for index in 2..50 {
        let (tx, rx) = TypeConfig::oneshot();
        store
            .append([entry(index)], IOFlushed::signal(tx))
            .await
            .unwrap();
        queued.push(rx);
    }
    let all: Vec<Entry> = (0..50).map(entry).collect();
    assert_eq!(reader.try_get_log_entries(0..50).await.unwrap(), all);

    // Released: the 48 queued appends go to the journal in one write.
    gate.set_closed(false);
    assert!(first.await.unwrap().is_ok());
    for rx in queued {
        assert!(rx.await.unwrap().is_ok());
    }
    assert_eq!(
        gate.writes() - writes_before,
        2,
        "2 group commits, 2 writes"
    );
    assert_eq!(reader.try_get_log_entries(0..50).await.unwrap(), all);
    store.close().await.unwrap();
}
