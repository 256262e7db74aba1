//! Guards against a state machine whose index, after a power cut, refers to
//! blocks that never reached the disk, claims an applied position its
//! content does not match, or ends in a different state when openraft
//! re-applies the entries after its durable point.

mod sm_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use finkfs_node::command::Command;
use finkfs_node::manifest::Manifest;
use finkfs_node::state_machine::StateMachine;
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions};
use finkfs_raft::types::{AppResponse, Entry, EntryPayload};
use finkfs_seam::DiskRef;
use finkfs_simdisk::{CrashPolicy, SimDisk};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine, StorageHelper};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sm_support::*;

const ACTIONS_PER_SEED: usize = 30;

/// Paths → manifests after each entry, computed from the commands alone:
/// what the index must hold when its applied index is `i`.
struct Expected {
    after: Vec<BTreeMap<String, Manifest>>,
}

impl Expected {
    fn new(entries: &[Entry]) -> Expected {
        let mut objects = BTreeMap::new();
        let mut blocks = HashSet::new();
        let mut after = vec![objects.clone()];
        for entry in entries {
            if let EntryPayload::Normal(command) = &entry.payload {
                let command = Command::decode(&command.0).unwrap();
                for element in command.elements() {
                    interpret(element, &mut objects, &mut blocks);
                }
            }
            after.push(objects.clone());
        }
        Expected { after }
    }
}

fn interpret(
    command: &Command,
    objects: &mut BTreeMap<String, Manifest>,
    blocks: &mut HashSet<[u8; 32]>,
) {
    match command {
        Command::PutBlocks { blocks: list } => blocks.extend(list.iter().map(|b| b.hash)),
        Command::PutObject {
            path,
            manifest,
            inline_blocks,
        } => {
            blocks.extend(inline_blocks.iter().map(|b| b.hash));
            assert!(
                manifest.blocks.iter().all(|b| blocks.contains(&b.hash)),
                "the workload never proposes an object before its blocks"
            );
            objects.insert(path.clone(), manifest.clone());
        }
        Command::Delete { path } => {
            objects.remove(path);
        }
        Command::Batch(_) => unreachable!("elements only"),
    }
}

/// A membership entry at `first`, then the workload's commands.
fn workload_entries(seed: u64, first: u64) -> (Workload, Vec<Entry>) {
    let mut workload = Workload::new(seed);
    let mut commands = Vec::new();
    for _ in 0..ACTIONS_PER_SEED {
        commands.extend(workload.next_commands());
    }
    let mut entries = vec![membership_entry(first, &[1, 2, 3])];
    entries.extend(entries_for(first + 1, &commands));
    (workload, entries)
}

fn applied_index(sm: &StateMachine) -> u64 {
    sm.reader().applied().unwrap().map_or(0, |a| a.index)
}

/// The index at its applied position holds exactly what the entries up to
/// it produce, and every object it lists reads back intact.
fn assert_consistent(sm: &StateMachine, expected: &Expected, context: &str) {
    let applied = applied_index(sm) as usize;
    let reader = sm.reader();
    let listed: BTreeMap<String, Manifest> = reader
        .list("", None, 100_000)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        listed, expected.after[applied],
        "{context}: index content at applied {applied}"
    );
    for path in listed.keys() {
        if let Err(e) = reader.get(path) {
            panic!("{context}: {path} listed at applied {applied} but unreadable: {e}");
        }
    }
}

async fn run_cuts(seed: u64) -> u64 {
    let sim = SimDisk::new(seed);
    let disk = sim.disk_ref();
    let (workload, entries) = workload_entries(seed, 1);
    let expected = Expected::new(&entries);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x9e37_79b9);
    let mut first_responses: HashMap<u64, AppResponse> = HashMap::new();
    let mut sm = open_plain(&disk);
    let (mut next, mut durable_floor, mut replays) = (1u64, 0u64, 0u64);
    while next as usize <= entries.len() {
        let end = (next as usize + rng.gen_range(1..6)).min(entries.len() + 1);
        let chunk = entries[next as usize - 1..end - 1].to_vec();
        let responses = sm.apply_entries(chunk).await.unwrap();
        for (i, response) in responses.into_iter().enumerate() {
            let index = next + i as u64;
            let first = first_responses
                .entry(index)
                .or_insert_with(|| response.clone());
            assert_eq!(
                first, &response,
                "seed {seed}: entry {index} answered differently on replay"
            );
        }
        next = end as u64;
        if rng.gen_bool(0.15) {
            sm.sync().await.unwrap();
            durable_floor = next - 1;
        }
        if rng.gen_bool(0.3) {
            sim.power_cut_with(CrashPolicy::Random);
            drop(sm);
            sm = open_plain(&disk);
            let applied = applied_index(&sm);
            let context = format!("seed {seed} after a cut");
            assert!(
                applied < next,
                "{context}: applied {applied} beyond what was applied"
            );
            assert!(
                applied >= durable_floor,
                "{context}: applied {applied} below the synced {durable_floor}"
            );
            assert_consistent(&sm, &expected, &context);
            replays += next - 1 - applied;
            next = applied + 1;
        }
    }
    assert_eq!(applied_index(&sm), entries.len() as u64);
    assert_holds(
        &sm.reader(),
        &workload.objects,
        &format!("seed {seed} at the end"),
    );
    replays
}

#[tokio::test]
async fn replay_after_power_cuts_reaches_the_same_state_with_the_same_answers() {
    let mut replays = 0;
    for seed in 0..seeds(40) {
        replays += run_cuts(seed).await;
    }
    assert!(replays > 0, "no power cut ever took back an applied entry");
}

fn journal(disk: &DiskRef) -> JournalLogStore {
    let options = LogStoreOptions {
        committed_save_interval: Duration::from_millis(1),
        ..LogStoreOptions::default()
    };
    JournalLogStore::open(disk.clone(), Path::new(GROUP_DIR), options)
        .expect("open the log store")
        .0
}

async fn run_openraft_restart(seed: u64) -> bool {
    let sim = SimDisk::new(seed);
    let disk = sim.disk_ref();
    // openraft's log starts at index 0.
    let (workload, entries) = workload_entries(seed, 0);
    let last = entries.last().unwrap().log_id;
    let mut store = journal(&disk);
    store.blocking_append(entries.clone()).await.unwrap();
    store.save_committed(Some(last)).await.unwrap();
    store.close().await.unwrap();
    let mut sm = open_plain(&disk);
    // In small calls, as openraft applies while commits trickle in, so the
    // last few stay below the durability thresholds.
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut rest = entries.as_slice();
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rng.gen_range(1..4).min(rest.len()));
        let stream = futures_util::stream::iter(chunk.iter().cloned().map(|e| Ok((e, None))));
        sm.apply(stream).await.unwrap();
        rest = tail;
    }
    sim.power_cut_with(CrashPolicy::Random);
    drop(sm);

    let mut store = journal(&disk);
    let mut sm = open_plain(&disk);
    let before = sm.applied_state().await.unwrap().0;
    StorageHelper::new(&mut store, &mut sm)
        .with_id(1)
        .get_initial_state()
        .await
        .unwrap();
    assert_eq!(
        sm.applied_state().await.unwrap().0,
        Some(last),
        "seed {seed}"
    );
    assert_holds(
        &sm.reader(),
        &workload.objects,
        &format!("seed {seed} after restart"),
    );
    store.close().await.unwrap();
    before != Some(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_restart_reapplies_the_journal_from_the_durable_point() {
    let mut reapplied = 0;
    for seed in 100..100 + seeds(40) / 4 {
        reapplied += u32::from(run_openraft_restart(seed).await);
    }
    assert!(reapplied > 0, "no restart had anything to re-apply");
}

#[tokio::test]
async fn clean_close_keeps_applied_entries_together_with_their_blocks() {
    // Closing the index makes its eventual commits durable; the blocks they
    // refer to must be durable by then, or a later power cut loses them.
    for seed in 200..210 {
        let sim = SimDisk::new(seed);
        let disk = sim.disk_ref();
        let sm = open_plain(&disk);
        let mut workload = Workload::new(seed);
        let mut next = 1;
        for _ in 0..3 {
            let commands = workload.next_commands();
            for entry in entries_for(next, &commands) {
                sm.apply_entries(vec![entry]).await.unwrap();
                next += 1;
            }
            if next > 4 {
                break;
            }
        }
        drop(sm);
        sim.power_cut_with(CrashPolicy::LoseUnsynced);
        let sm = open_plain(&disk);
        assert_eq!(applied_index(&sm), next - 1, "seed {seed}");
        assert_holds(
            &sm.reader(),
            &workload.objects,
            &format!("seed {seed} after close and cut"),
        );
    }
}
