//! Guards against a node whose saved log purge point lies beyond every
//! snapshot it holds (openraft then panics at every start): after an
//! offline repair cut journal records the index had applied, openraft's
//! start purged the log up to the applied index while the newest snapshot
//! was older; and a snapshot install must be durable before the purge that
//! follows it. Power is cut at every changing disk operation of both.

mod sm_support;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use finkfs_node::state_machine::{StateMachine, StateMachineError};
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions};
use finkfs_raft::network::SnapshotFile;
use finkfs_raft::types::{Entry, LogId, Snapshot};
use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};
use finkfs_simdisk::{CrashPolicy, SimDisk};
use openraft::storage::{
    RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine, StorageHelper,
};
use sm_support::*;

/// Cut power before the n-th changing operation (create, write, set_len,
/// sync, remove, rename, directory create or sync); every operation fails
/// once it is off, as if the process died with it.
#[derive(Debug, Clone)]
struct Tripwire {
    sim: SimDisk,
    countdown: Arc<Mutex<Option<u64>>>,
    tripped: Arc<AtomicBool>,
}

impl Tripwire {
    fn armed(sim: &SimDisk, ops: u64) -> Tripwire {
        Tripwire {
            sim: sim.clone(),
            countdown: Arc::new(Mutex::new(Some(ops))),
            tripped: Arc::default(),
        }
    }

    fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    fn check(&self) -> io::Result<()> {
        if self.tripped() {
            return Err(io::Error::other("power is off"));
        }
        Ok(())
    }

    fn change(&self) -> io::Result<()> {
        self.check()?;
        let mut countdown = self.countdown.lock().unwrap();
        match *countdown {
            Some(0) => {
                *countdown = None;
                self.sim.power_cut_with(CrashPolicy::Random);
                self.tripped.store(true, Ordering::SeqCst);
                Err(io::Error::other("power cut"))
            }
            Some(n) => {
                *countdown = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn wrap(&self, file: FileRef) -> FileRef {
        Arc::new(TripwireFile {
            inner: file,
            wire: self.clone(),
        })
    }
}

#[derive(Debug)]
struct TripwireFile {
    inner: FileRef,
    wire: Tripwire,
}

impl DiskFile for TripwireFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.wire.check()?;
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.wire.change()?;
        self.inner.write_at(offset, buf)
    }
    fn len(&self) -> io::Result<u64> {
        self.wire.check()?;
        self.inner.len()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.wire.change()?;
        self.inner.set_len(len_bytes)
    }
    fn sync(&self) -> io::Result<()> {
        self.wire.change()?;
        self.inner.sync()
    }
}

impl Disk for Tripwire {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        self.change()?;
        Ok(self.wrap(self.sim.create(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<FileRef> {
        self.check()?;
        Ok(self.wrap(self.sim.open(path)?))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.change()?;
        self.sim.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.change()?;
        self.sim.rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.change()?;
        self.sim.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.change()?;
        self.sim.sync_dir(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.check()?;
        self.sim.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.check()?;
        self.sim.exists(path)
    }
}

/// Cuts tried per scenario before giving up: far more changing operations
/// than one start or install makes.
const CUTS_MAX: u64 = 2000;

fn log_store(disk: &DiskRef) -> io::Result<JournalLogStore> {
    let options = LogStoreOptions {
        committed_save_interval: Duration::from_millis(1),
        ..LogStoreOptions::default()
    };
    JournalLogStore::open(disk.clone(), Path::new(GROUP_DIR), options)
        .map(|(store, _)| store)
        .map_err(io::Error::other)
}

/// A membership entry at 0, then a workload's commands.
fn entries(seed: u64) -> Vec<Entry> {
    let mut workload = Workload::new(seed);
    let mut commands = Vec::new();
    while commands.len() < 14 {
        commands.extend(workload.next_commands());
    }
    let mut entries = vec![membership_entry(0, &[1, 2, 3])];
    entries.extend(entries_for(1, &commands));
    entries
}

async fn build_snapshot(sm: &mut StateMachine) -> Snapshot<SnapshotFile> {
    let mut builder = sm.get_snapshot_builder().await;
    builder.build_snapshot().await.unwrap()
}

async fn current_snapshot(sm: &mut StateMachine) -> Option<LogId> {
    sm.get_current_snapshot()
        .await
        .unwrap()
        .and_then(|s| s.meta.last_log_id)
}

async fn purged(store: &mut JournalLogStore) -> Option<LogId> {
    store.get_log_state().await.unwrap().last_purged_log_id
}

/// The invariant openraft asserts at start, on what is durable: the saved
/// purge point lies within the newest snapshot.
async fn assert_purge_within_snapshot(disk: &DiskRef, context: &str) {
    let mut store = log_store(disk).unwrap();
    let mut sm = open_plain(disk);
    let (purge, snapshot) = (purged(&mut store).await, current_snapshot(&mut sm).await);
    assert!(
        purge <= snapshot,
        "{context}: the log is purged up to {purge:?}, the newest snapshot covers {snapshot:?}"
    );
    store.close().await.unwrap();
}

/// The state seed 18 of the simulator reached: a snapshot at 3 and the log
/// purged up to it, the index durable at `applied`, then an offline repair
/// that cut the journal after `kept` (below the applied index).
async fn repaired_node(sim: &SimDisk, all: &[Entry], applied: u64, kept: u64) {
    let disk = sim.disk_ref();
    let mut store = log_store(&disk).unwrap();
    store.blocking_append(all.to_vec()).await.unwrap();
    let mut sm = open_plain(&disk);
    sm.apply_entries(all[..=3].to_vec()).await.unwrap();
    let snapshot = build_snapshot(&mut sm).await;
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(3)));
    store.purge(log_id(3)).await.unwrap();
    sm.apply_entries(all[4..=applied as usize].to_vec())
        .await
        .unwrap();
    sm.sync().await.unwrap();
    store.truncate_after(Some(log_id(kept))).await.unwrap();
    store.save_committed(Some(log_id(kept))).await.unwrap();
    store.close().await.unwrap();
    drop(sm);
    sim.power_cut_with(CrashPolicy::LoseUnsynced);
}

/// The daemon's start sequence over the log store and state machine:
/// the purge check, then openraft's own recovery of its initial state.
async fn start(disk: &DiskRef) -> Result<(), String> {
    let mut store = log_store(disk).map_err(|e| e.to_string())?;
    let mut sm = StateMachine::open(
        disk.clone(),
        GROUP_DIR.into(),
        options(),
        Arc::new(finkfs_node::state_machine::NoFetcher),
    )
    .map_err(|e| e.to_string())?;
    let result = async {
        let state = store.get_log_state().await.map_err(|e| e.to_string())?;
        sm.cover_log_purge(state.last_purged_log_id, state.last_log_id)
            .await
            .map_err(|e| e.to_string())?;
        StorageHelper::new(&mut store, &mut sm)
            .with_id(1)
            .get_initial_state()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    .await;
    // A store whose disk lost power cannot close cleanly; its writer stops
    // when the store is dropped.
    let _ = store.close().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_after_a_repaired_journal_never_saves_a_purge_beyond_the_snapshot() {
    for seed in 0..3u64 {
        let all = entries(seed);
        let (applied, kept) = (12, 9);
        let mut cuts = 0;
        let sim = loop {
            // The same state before every cut.
            let sim = SimDisk::new(seed);
            repaired_node(&sim, &all, applied, kept).await;
            let wire = Tripwire::armed(&sim, cuts);
            let disk: DiskRef = Arc::new(wire.clone());
            let started = start(&disk).await;
            let context = format!("seed {seed}, cut before change {cuts}");
            if !wire.tripped() {
                started.unwrap_or_else(|e| panic!("{context}: start failed: {e}"));
                assert_purge_within_snapshot(&sim.disk_ref(), &context).await;
                break sim;
            }
            assert_purge_within_snapshot(&sim.disk_ref(), &context).await;
            start(&sim.disk_ref())
                .await
                .unwrap_or_else(|e| panic!("{context}: the start after the cut failed: {e}"));
            assert_purge_within_snapshot(&sim.disk_ref(), &context).await;
            cuts += 1;
            assert!(cuts < CUTS_MAX, "seed {seed}: the start never completed");
        };
        assert!(cuts > 0, "seed {seed}: no cut landed inside the start");
        // What openraft saved: the purge up to the applied index, covered.
        let disk = sim.disk_ref();
        let mut store = log_store(&disk).unwrap();
        let mut sm = open_plain(&disk);
        assert_eq!(purged(&mut store).await, Some(log_id(applied)));
        assert_eq!(current_snapshot(&mut sm).await, Some(log_id(applied)));
        store.close().await.unwrap();
        drop(sm);
        // And every later start succeeds.
        start(&disk).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_after_an_install_never_outlives_the_installed_snapshot() {
    for seed in 10..12u64 {
        let all = entries(seed);
        let last = all.len() as u64 - 1;
        // The leader's snapshot, on its own disk.
        let leader = SimDisk::new(seed ^ 0xabc);
        let leader_disk = leader.disk_ref();
        let mut leader_sm = open_plain(&leader_disk);
        leader_sm.apply_entries(all.clone()).await.unwrap();
        let sent = build_snapshot(&mut leader_sm).await;
        assert_eq!(sent.meta.last_log_id, Some(log_id(last)));
        let mut cuts = 0;
        loop {
            let sim = SimDisk::new(seed);
            follower(&sim, &all).await;
            let wire = Tripwire::armed(&sim, cuts);
            let disk: DiskRef = Arc::new(wire.clone());
            let context = format!("seed {seed}, cut before change {cuts}");
            let done = install_then_purge(&disk, &sent, &leader_sm).await;
            if !wire.tripped() {
                done.unwrap_or_else(|e| panic!("{context}: install failed: {e}"));
                assert_purge_within_snapshot(&sim.disk_ref(), &context).await;
                break;
            }
            assert_purge_within_snapshot(&sim.disk_ref(), &context).await;
            // What openraft does at the next start: the node must start.
            start(&sim.disk_ref())
                .await
                .unwrap_or_else(|e| panic!("{context}: the start after the cut failed: {e}"));
            assert_purge_within_snapshot(&sim.disk_ref(), &context).await;
            cuts += 1;
            assert!(cuts < CUTS_MAX, "seed {seed}: the install never completed");
        }
        assert!(cuts > 0, "seed {seed}: no cut landed inside the install");
    }
}

/// A follower with a snapshot at 3, its log purged to it, and entries up
/// to 5 after it; everything durable.
async fn follower(sim: &SimDisk, all: &[Entry]) {
    let disk = sim.disk_ref();
    let mut store = log_store(&disk).unwrap();
    store.blocking_append(all[..=5].to_vec()).await.unwrap();
    let mut sm = open_plain(&disk);
    sm.apply_entries(all[..=3].to_vec()).await.unwrap();
    build_snapshot(&mut sm).await;
    store.purge(log_id(3)).await.unwrap();
    sm.sync().await.unwrap();
    store.close().await.unwrap();
    drop(sm);
    sim.power_cut_with(CrashPolicy::LoseUnsynced);
}

/// What openraft does on a snapshot from the leader: install it, then
/// purge the log up to it.
/// Blocks the follower lacks come from the leader's store.
async fn install_then_purge(
    disk: &DiskRef,
    sent: &Snapshot<SnapshotFile>,
    leader: &StateMachine,
) -> Result<(), String> {
    let mut store = log_store(disk).map_err(|e| e.to_string())?;
    let result = async {
        let fetcher = Arc::new(CountingFetcher::new(leader.reader()));
        let sm = StateMachine::open(disk.clone(), GROUP_DIR.into(), options(), fetcher)
            .map_err(|e| e.to_string())?;
        let file: SnapshotFile = sent.snapshot.clone();
        sm.install(&sent.meta, file)
            .await
            .map_err(|e| e.to_string())?;
        let up_to = sent.meta.last_log_id.expect("a snapshot of entries");
        store.purge(up_to).await.map_err(|e| e.to_string())
    }
    .await;
    let _ = store.close().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_beyond_every_snapshot_and_the_index_is_refused_with_a_typed_error() {
    let sim = SimDisk::new(40);
    let disk = sim.disk_ref();
    let all = entries(40);
    let mut store = log_store(&disk).unwrap();
    store.blocking_append(all[..=12].to_vec()).await.unwrap();
    let mut sm = open_plain(&disk);
    sm.apply_entries(all[..=3].to_vec()).await.unwrap();
    build_snapshot(&mut sm).await;
    sm.apply_entries(all[4..=5].to_vec()).await.unwrap();
    sm.sync().await.unwrap();
    // Entries 6..=12 are purged with no snapshot holding them.
    store.purge(log_id(12)).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    let refused = sm
        .cover_log_purge(state.last_purged_log_id, state.last_log_id)
        .await
        .expect_err("a start over a log purged beyond every snapshot");
    match &refused {
        StateMachineError::PurgedBeyondSnapshot {
            purged,
            snapshot,
            applied,
        } => {
            assert_eq!(purged, &log_id(12).to_string());
            assert_eq!(snapshot, &log_id(3).to_string());
            assert_eq!(applied, &log_id(5).to_string());
        }
        other => panic!("expected PurgedBeyondSnapshot, got {other}"),
    }
    assert!(refused.is_corruption());
    let shown = refused.to_string();
    assert!(
        shown.contains("--rejoin") && shown.contains("fsck"),
        "{shown}"
    );
    // Nothing was written: the snapshot at 3 is still the newest.
    assert_eq!(current_snapshot(&mut sm).await, Some(log_id(3)));
    store.close().await.unwrap();
}
