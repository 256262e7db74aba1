//! Guards against the writer run as a task (the simulator's mode) losing
//! group commit: one fsync per append, or a callback fired before the
//! fsync of its batch; and against a task writer that outlives `close`.

mod journal_hooks;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions, WriterRun};
use finkfs_raft::rt::{self, NodeTag};
use finkfs_raft::types::{AppCommand, Entry, EntryPayload, IOFlushed, LeaderId, LogId, TypeConfig};
use finkfs_simdisk::SimDisk;
use journal_hooks::{hooked_disk, JournalHooks};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderId;

const DIR: &str = "groups/5";
const NODE: NodeTag = NodeTag {
    node: 5,
    incarnation: 0,
};

/// Counts the syncs of journal files.
#[derive(Debug, Default)]
struct SyncCount(AtomicU64);

impl JournalHooks for SyncCount {
    fn after_sync(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn entry(index: u64) -> Entry {
    let command = AppCommand(Bytes::from(format!("alert {index}").into_bytes()));
    Entry {
        log_id: LogId::new(LeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(command),
    }
}

fn task_options() -> LogStoreOptions {
    LogStoreOptions {
        writer_run: WriterRun::Task,
        ..LogStoreOptions::default()
    }
}

/// Queues appends 1..=`count` without waiting, then waits for every
/// callback; returns how many journal syncs they took.
async fn append_burst(store: &mut JournalLogStore, syncs: &AtomicU64, count: u64) -> u64 {
    let before = syncs.load(Ordering::SeqCst);
    let mut flushed = Vec::new();
    for index in 1..=count {
        let (tx, rx) = TypeConfig::oneshot();
        store
            .append([entry(index)], IOFlushed::signal(tx))
            .await
            .unwrap();
        flushed.push(rx);
    }
    for rx in flushed {
        rx.await.expect("callback fired").expect("append durable");
    }
    syncs.load(Ordering::SeqCst) - before
}

async fn burst_under_the_hook(seed: u64) -> u64 {
    let _hook = rt::install_hook(seed);
    let journal_syncs = Arc::new(SyncCount::default());
    let journal = Path::new(DIR).join("journal");
    let disk = hooked_disk(
        SimDisk::new(seed).disk_ref(),
        &journal,
        Arc::clone(&journal_syncs),
    );
    let run = async {
        let (mut store, _) = JournalLogStore::open(disk, Path::new(DIR), task_options()).unwrap();
        store.blocking_append([entry(0)]).await.unwrap();
        let syncs = append_burst(&mut store, &journal_syncs.0, 64).await;
        let mut reader = store.get_log_reader().await;
        let read = reader.try_get_log_entries(0..65).await.unwrap();
        assert_eq!(read.len(), 65, "every append readable after its callback");
        store.close().await.unwrap();
        syncs
    };
    let syncs = rt::in_node(NODE, run).await;
    assert_eq!(rt::node_tasks(NODE), 0, "the writer task outlived close");
    syncs
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn group_commit_batches_appends_in_task_mode() {
    let syncs = burst_under_the_hook(11).await;
    assert!(syncs >= 1, "appends made durable without a sync");
    assert!(
        syncs < 64,
        "64 queued appends took {syncs} syncs: no batch held more than one"
    );
    assert_eq!(
        syncs,
        burst_under_the_hook(11).await,
        "same seed, same batches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_writer_needs_no_hook_and_stops_on_close() {
    let journal_syncs = Arc::new(SyncCount::default());
    let journal = Path::new(DIR).join("journal");
    let disk = hooked_disk(
        SimDisk::new(12).disk_ref(),
        &journal,
        Arc::clone(&journal_syncs),
    );
    let (mut store, _) =
        JournalLogStore::open(Arc::clone(&disk), Path::new(DIR), task_options()).unwrap();
    store.blocking_append([entry(0)]).await.unwrap();
    let syncs = append_burst(&mut store, &journal_syncs.0, 16).await;
    assert!((1..=16).contains(&syncs), "{syncs} syncs for 16 appends");
    store.close().await.unwrap();
    // Closed means the directory may be reopened, and holds every append.
    let (mut store, _) = JournalLogStore::open(disk, Path::new(DIR), task_options()).unwrap();
    let mut reader = store.get_log_reader().await;
    assert_eq!(reader.try_get_log_entries(0..17).await.unwrap().len(), 17);
    store.close().await.unwrap();
}

#[test]
fn task_writer_outside_a_runtime_is_a_setup_error() {
    let disk = SimDisk::new(13).disk_ref();
    let opened = JournalLogStore::open(disk, Path::new(DIR), task_options());
    let error = opened.expect_err("no runtime to run the writer task on");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}
