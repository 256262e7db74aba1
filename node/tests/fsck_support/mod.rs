//! Helpers of the fsck tests: a group directory built by the real
//! structures (journal, meta store, state machine with its packs, index and
//! snapshots, reopened once as after a restart), faults placed on purpose,
//! and a run of fsck that also proves it changed nothing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use finkfs_node::command::{plan_put, Command};
use finkfs_node::fsck::{self, FsckOptions, FsckReport, NoProgress, Problem, Structure};
use finkfs_node::state_machine::{NoFetcher, StateMachine, StateMachineOptions};
use finkfs_node::{BlockStoreOptions, IndexOptions, ObjectStoreOptions};
use finkfs_raft::entry_codec::encode_entry_into;
use finkfs_raft::journal::{Journal, JournalOptions};
use finkfs_raft::log_store::DurableState;
use finkfs_raft::meta::MetaStore;
use finkfs_raft::types::{AppCommand, Entry, EntryPayload, LeaderId, LogId, Vote};
use finkfs_seam::DiskRef;
use finkfs_simdisk::SimDisk;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::vote::RaftLeaderId;

/// The group directory, as the daemon lays it out.
pub const GROUP: &str = "groups/0";
pub const JOURNAL: &str = "groups/0/journal";
pub const META: &str = "groups/0/meta";
pub const BLOCKS: &str = "groups/0/blocks";
pub const INDEX: &str = "groups/0/index.redb";
pub const SNAPSHOTS: &str = "groups/0/snapshots";
/// Small blocks and entries, so objects span blocks and entries.
const BLOCK_BYTES: u32 = 4096;
const ENTRY_BYTES_MAX: usize = 16 * 1024;
/// Small segments, so the journal has several.
const SEGMENT_BYTES_MAX: u64 = 24 * 1024;
/// Entries purged from the journal once the snapshot is built.
const PURGED_THROUGH: u64 = 3;

/// What a built group holds.
#[derive(Debug, Clone)]
pub struct Built {
    pub objects: BTreeMap<String, Bytes>,
    /// Index of the last journal entry.
    pub last_index: u64,
}

pub fn sm_options() -> StateMachineOptions {
    StateMachineOptions {
        store: ObjectStoreOptions {
            blocks: BlockStoreOptions {
                pack_bytes_max: 2 << 20,
                block_bytes_max: 1 << 20,
            },
            index: IndexOptions {
                cache_bytes: 4 << 20,
                verify_on_open: true,
            },
            ..ObjectStoreOptions::default()
        },
        sync_entries: 4,
        sync_bytes: 64 * 1024,
        ..StateMachineOptions::default()
    }
}

fn journal_options() -> JournalOptions {
    JournalOptions {
        segment_bytes_max: SEGMENT_BYTES_MAX,
        ..JournalOptions::default()
    }
}

fn log_id(index: u64) -> LogId {
    LogId::new(LeaderId::new(1, 1), index)
}

fn data(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>();
    Bytes::from(bytes)
}

/// Commands of one small night: puts of several sizes (some spanning many
/// entries) and a delete, with the objects they leave.
fn workload() -> (Vec<Command>, BTreeMap<String, Bytes>) {
    let mut commands = Vec::new();
    let mut objects = BTreeMap::new();
    let sizes = [100, 5000, 40_000, 9000, 0, 70_000, 3000, 12_345];
    for (i, len) in sizes.iter().enumerate() {
        let path = format!("ztf/raw/day=14/alert-{i}.avro");
        let bytes = data(i as u64 + 1, *len);
        commands.extend(plan_put(&path, bytes.clone(), BLOCK_BYTES, ENTRY_BYTES_MAX).commands);
        objects.insert(path, bytes);
    }
    let gone = "ztf/raw/day=14/alert-3.avro".to_string();
    objects.remove(&gone);
    commands.push(Command::Delete { path: gone });
    (commands, objects)
}

fn entries(commands: &[Command]) -> Vec<Entry> {
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| Entry {
            log_id: log_id(i as u64 + 1),
            payload: EntryPayload::Normal(AppCommand(c.encode())),
        })
        .collect()
}

fn write_journal(disk: &DiskRef, entries: &[Entry]) -> Journal {
    let (mut journal, _) =
        Journal::open(disk.clone(), PathBuf::from(JOURNAL), journal_options()).expect("journal");
    let mut buf = Vec::new();
    for entry in entries {
        buf.clear();
        encode_entry_into(entry, &mut buf).expect("encode an entry");
        journal.append(entry.log_id.index, 1, &buf).expect("append");
    }
    journal.sync().expect("sync the journal");
    journal
}

fn save_state(disk: &DiskRef, committed: u64, purged: Option<u64>) {
    let (mut meta, _) = MetaStore::open(disk.clone(), PathBuf::from(META)).expect("meta");
    let state = DurableState {
        vote: Some(Vote::new_committed(1, 1)),
        committed: Some(log_id(committed)),
        purged: purged.map(log_id),
        vouch_floor: None,
        tail_floor: None,
    };
    meta.save(&state.encode()).expect("save the state");
}

/// Builds a healthy group on `disk` the way a node does: entries in the
/// journal, applied to the state machine, a snapshot, the journal purged
/// behind it, more entries applied, then everything reopened (a restart).
pub async fn build(disk: &DiskRef) -> Built {
    let (commands, objects) = workload();
    let entries = entries(&commands);
    let last_index = entries.len() as u64;
    let mut journal = write_journal(disk, &entries);
    save_state(disk, last_index, None);
    let half = entries.len() / 2;
    assert!(
        half as u64 > PURGED_THROUGH,
        "the purge stays below the snapshot"
    );
    let mut sm = open_sm(disk);
    sm.apply_entries(entries[..half].to_vec())
        .await
        .expect("apply");
    let mut builder = sm.get_snapshot_builder().await;
    builder.build_snapshot().await.expect("build a snapshot");
    save_state(disk, last_index, Some(PURGED_THROUGH));
    journal.purge_up_to(PURGED_THROUGH).expect("purge");
    drop(journal);
    drop(sm);
    // A restarted store writes to a new pack.
    let sm = open_sm(disk);
    sm.apply_entries(entries[half..].to_vec())
        .await
        .expect("apply");
    sm.sync().await.expect("sync the state machine");
    drop(sm);
    restart(disk).await;
    Built {
        objects,
        last_index,
    }
}

fn open_sm(disk: &DiskRef) -> StateMachine {
    StateMachine::open(
        disk.clone(),
        PathBuf::from(GROUP),
        sm_options(),
        Arc::new(NoFetcher),
    )
    .expect("open the state machine")
}

/// Opens every structure again, as a restarted node does, and closes it.
async fn restart(disk: &DiskRef) {
    let sm = open_sm(disk);
    sm.sync().await.expect("sync");
    drop(sm);
    let (journal, report) =
        Journal::open(disk.clone(), PathBuf::from(JOURNAL), journal_options()).expect("reopen");
    assert!(report.is_clean(), "the built journal is clean: {report:?}");
    drop(journal);
    drop(MetaStore::open(disk.clone(), PathBuf::from(META)).expect("reopen meta"));
}

/// Seeds per run; `FINKFS_SEEDS` raises it for a deeper search.
pub fn seeds(default: u64) -> u64 {
    std::env::var("FINKFS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A simulated disk holding a freshly built healthy group.
pub async fn built_sim(seed: u64) -> (SimDisk, Built) {
    let sim = SimDisk::new(seed);
    let built = build(&sim.disk_ref()).await;
    (sim, built)
}

/// Runs fsck (scratch on a disk of its own) and checks it changed nothing.
pub fn fsck_sim(sim: &SimDisk) -> FsckReport {
    let before = contents(sim);
    let report = run(sim.disk_ref());
    assert_eq!(before, contents(sim), "fsck modified the data directory");
    report
}

/// Runs fsck on any disk, the scratch copy on a fresh simulated disk.
pub fn run(disk: DiskRef) -> FsckReport {
    let scratch = SimDisk::new(0).disk_ref();
    fsck::check_data_dir(disk, scratch, &FsckOptions::default(), &mut NoProgress)
        .expect("fsck runs to the end")
}

/// Every file with its running and durable bytes.
pub fn contents(sim: &SimDisk) -> Vec<(PathBuf, Vec<u8>, Vec<u8>)> {
    sim.file_paths()
        .into_iter()
        .map(|p| {
            let current = sim.current_bytes(&p).expect("current bytes");
            let durable = sim.durable_bytes(&p).expect("durable bytes");
            (p, current, durable)
        })
        .collect()
}

/// Files under `dir`, sorted.
pub fn files_under(sim: &SimDisk, dir: &str) -> Vec<PathBuf> {
    sim.file_paths()
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// The damage the report lists.
pub fn damage(report: &FsckReport) -> Vec<&Problem> {
    report.damage().collect()
}

/// Asserts the report is CORRUPT with damage of `structure` in `file`,
/// with an offset when `offset_known`, and returns that damage.
pub fn assert_damage_in<'a>(
    report: &'a FsckReport,
    structure: Structure,
    file: &Path,
    offset_known: bool,
) -> Vec<&'a Problem> {
    assert!(
        !report.is_healthy(),
        "damage missed: {:#?}",
        report.problems
    );
    let found: Vec<&Problem> = report
        .damage()
        .filter(|p| p.structure == structure && Path::new(&p.file) == file)
        .collect();
    assert!(
        !found.is_empty(),
        "no {structure} damage in {}: {:#?}",
        file.display(),
        report.problems
    );
    if offset_known {
        assert!(
            found.iter().all(|p| p.offset.is_some()),
            "damage without an offset: {found:#?}"
        );
    }
    found
}

/// Truncates a file at rest (durably) to `len` bytes.
pub fn truncate(sim: &SimDisk, path: &Path, len: u64) {
    let file = sim.disk_ref().open(path).expect("open");
    file.set_len(len).expect("set_len");
    file.sync().expect("sync");
}

/// Removes a file durably.
pub fn delete(sim: &SimDisk, path: &Path) {
    let disk = sim.disk_ref();
    disk.remove(path).expect("remove");
    disk.sync_dir(path.parent().expect("a parent"))
        .expect("sync dir");
}

/// A misdirected write: `len` bytes meant for `from` land at `to` instead
/// (the bytes at `to` are replaced by what belongs at `from`).
pub fn misdirect(sim: &SimDisk, path: &Path, from: u64, to: u64, len: usize) {
    let bytes = sim.current_bytes(path).expect("bytes");
    let from = usize::try_from(from).expect("small");
    let moved = bytes[from..from + len].to_vec();
    sim.corrupt_bytes(path, to, &moved).expect("plant");
}

/// Offsets of every occurrence of `needle` in the file.
pub fn find_all(sim: &SimDisk, path: &Path, needle: &[u8]) -> Vec<u64> {
    let bytes = sim.current_bytes(path).expect("bytes");
    bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i as u64)
        .collect()
}

/// After `build`, a restarted node takes more writes and loses power in the
/// middle: journal records appended (the last ones unsynced), applied to the
/// state machine with durable and eventual index commits, then a power cut
/// that keeps, drops or tears whatever was not synced.
pub async fn crash_during_writes(sim: &SimDisk, built: &Built) {
    let disk = sim.disk_ref();
    let mut commands = Vec::new();
    for i in 0..6u64 {
        let path = format!("ztf/raw/day=15/alert-{i}.avro");
        let bytes = data(100 + i, 2000 + 3000 * i as usize);
        commands.extend(plan_put(&path, bytes, BLOCK_BYTES, ENTRY_BYTES_MAX).commands);
    }
    let first = built.last_index + 1;
    let entries: Vec<Entry> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| Entry {
            log_id: log_id(first + i as u64),
            payload: EntryPayload::Normal(AppCommand(c.encode())),
        })
        .collect();
    let (mut journal, _) =
        Journal::open(disk.clone(), PathBuf::from(JOURNAL), journal_options()).expect("journal");
    let synced = entries.len() / 2;
    let mut buf = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        buf.clear();
        encode_entry_into(entry, &mut buf).expect("encode");
        journal.append(entry.log_id.index, 1, &buf).expect("append");
        if n + 1 == synced {
            journal.sync().expect("sync");
        }
    }
    let sm = open_sm(&disk);
    sm.apply_entries(entries[..synced].to_vec())
        .await
        .expect("apply");
    sim.power_cut();
    drop(sm);
    drop(journal);
}
