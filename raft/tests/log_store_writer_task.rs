//! Guards against the writer run as a task (the simulator's mode) losing
//! group commit: one fsync per append, or a callback fired before the
//! fsync of its batch; and against a task writer that outlives `close`.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions, WriterRun};
use finkfs_raft::rt::{self, NodeTag};
use finkfs_raft::types::{AppCommand, Entry, EntryPayload, IOFlushed, LeaderId, LogId, TypeConfig};
use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};
use finkfs_simdisk::SimDisk;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderId;

const DIR: &str = "groups/5";
const NODE: NodeTag = NodeTag {
    node: 5,
    incarnation: 0,
};

/// A disk that counts the syncs of journal files.
#[derive(Debug)]
struct CountingDisk {
    inner: DiskRef,
    journal_syncs: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountingFile {
    inner: FileRef,
    syncs: Option<Arc<AtomicU64>>,
}

impl CountingDisk {
    fn wrap(&self, path: &Path, file: FileRef) -> FileRef {
        let journal = path.starts_with(Path::new(DIR).join("journal"));
        let syncs = journal.then(|| Arc::clone(&self.journal_syncs));
        Arc::new(CountingFile { inner: file, syncs })
    }
}

impl DiskFile for CountingFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()?;
        if let Some(syncs) = &self.syncs {
            syncs.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl Disk for CountingDisk {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        Ok(self.wrap(path, self.inner.create(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<FileRef> {
        Ok(self.wrap(path, self.inner.open(path)?))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
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
    let journal_syncs = Arc::new(AtomicU64::new(0));
    let disk: DiskRef = Arc::new(CountingDisk {
        inner: SimDisk::new(seed).disk_ref(),
        journal_syncs: Arc::clone(&journal_syncs),
    });
    let run = async {
        let (mut store, _) = JournalLogStore::open(disk, Path::new(DIR), task_options()).unwrap();
        store.blocking_append([entry(0)]).await.unwrap();
        let syncs = append_burst(&mut store, &journal_syncs, 64).await;
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
    let journal_syncs = Arc::new(AtomicU64::new(0));
    let disk: DiskRef = Arc::new(CountingDisk {
        inner: SimDisk::new(12).disk_ref(),
        journal_syncs: Arc::clone(&journal_syncs),
    });
    let (mut store, _) =
        JournalLogStore::open(Arc::clone(&disk), Path::new(DIR), task_options()).unwrap();
    store.blocking_append([entry(0)]).await.unwrap();
    let syncs = append_burst(&mut store, &journal_syncs, 16).await;
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
