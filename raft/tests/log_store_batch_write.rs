//! Guards against entries that vanish from reads while the writer is in the
//! middle of writing them (they leave the pending queue only once their
//! write has returned), and against a group commit that still costs one
//! journal write per append instead of one for the whole group.

use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions};
use finkfs_raft::types::{AppCommand, Entry, EntryPayload, IOFlushed, LeaderId, LogId, TypeConfig};
use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};
use finkfs_simdisk::SimDisk;
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

/// A disk whose journal segment writes go through the gate.
#[derive(Debug)]
struct GatedDisk {
    inner: DiskRef,
    gate: Arc<WriteGate>,
}

#[derive(Debug)]
struct GatedFile {
    inner: FileRef,
    gate: Option<Arc<WriteGate>>,
}

impl GatedDisk {
    fn wrap(&self, path: &Path, file: FileRef) -> FileRef {
        let journal = path.starts_with(Path::new(DIR).join("journal"));
        let gate = journal.then(|| Arc::clone(&self.gate));
        Arc::new(GatedFile { inner: file, gate })
    }
}

impl GatedFile {
    fn pass(&self) {
        if let Some(gate) = &self.gate {
            gate.pass();
        }
    }
}

impl DiskFile for GatedFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.pass();
        self.inner.write_at(offset, buf)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[io::IoSlice<'_>]) -> io::Result<()> {
        self.pass();
        self.inner.write_vectored_at(offset, bufs)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

impl Disk for GatedDisk {
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
    let disk: DiskRef = Arc::new(GatedDisk {
        inner: SimDisk::new(4).disk_ref(),
        gate: Arc::clone(&gate),
    });
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
