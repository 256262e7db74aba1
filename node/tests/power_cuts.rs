//! Guards against losing or damaging acknowledged objects, and against an
//! applied position that disagrees with the data, when the power is cut
//! between or in the middle of puts (unsynced writes lost, kept or torn).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use common::{sim, small_store_options, CrashingDisk};
use finkfs_node::{Applied, ObjectOp, ObjectStore, StoreError};
use finkfs_seam::DiskRef;
use finkfs_simdisk::{FaultOp, IoFault, SimDisk};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Seeds per run; `FINKFS_SEEDS` raises it for a deeper search.
fn seeds() -> u64 {
    std::env::var("FINKFS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

const ROUNDS_PER_SEED: usize = 3;
const PATHS: u64 = 10;

fn open(disk: &DiskRef) -> ObjectStore {
    ObjectStore::open_with(disk.clone(), PathBuf::from("node"), small_store_options())
        .expect("reopen after a power cut")
}

/// What the store must hold: every acknowledged change, and the journal
/// position of the last acknowledged batch.
#[derive(Debug, Clone, Default)]
struct Model {
    objects: BTreeMap<String, Vec<u8>>,
    applied: Option<Applied>,
}

/// One batch as the test plans it.
#[derive(Debug, Clone)]
enum Change {
    Put(String, Vec<u8>),
    Delete(String),
}

impl Model {
    fn with(&self, changes: &[Change], applied: Applied) -> Model {
        let mut next = self.clone();
        for change in changes {
            match change {
                Change::Put(path, bytes) => {
                    next.objects.insert(path.clone(), bytes.clone());
                }
                Change::Delete(path) => {
                    next.objects.remove(path);
                }
            }
        }
        next.applied = Some(applied);
        next
    }
}

fn random_put(rng: &mut SmallRng) -> Change {
    let path = format!(
        "ztf/raw/day={}/part-{}",
        rng.gen_range(0..3),
        rng.gen_range(0..PATHS)
    );
    // Mostly alert-sized, sometimes several 16 KiB blocks, sometimes tiny.
    let len = match rng.gen_range(0..10) {
        0 => rng.gen_range(0..100),
        1..=2 => rng.gen_range(40_000..120_000),
        _ => rng.gen_range(1_000..16_000),
    };
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    Change::Put(path, bytes)
}

fn random_batch(rng: &mut SmallRng, model: &Model) -> Vec<Change> {
    let count = if rng.gen_bool(0.2) {
        rng.gen_range(2..5)
    } else {
        1
    };
    (0..count)
        .map(|_| {
            match model
                .objects
                .keys()
                .nth(rng.gen_range(0..model.objects.len().max(1)))
            {
                Some(path) if rng.gen_bool(0.15) => Change::Delete(path.clone()),
                _ => random_put(rng),
            }
        })
        .collect()
}

fn apply(store: &mut ObjectStore, changes: &[Change], applied: Applied) -> Result<(), StoreError> {
    let ops: Vec<ObjectOp<'_>> = changes
        .iter()
        .map(|c| match c {
            Change::Put(path, data) => ObjectOp::Put { path, data },
            Change::Delete(path) => ObjectOp::Delete { path },
        })
        .collect();
    store.apply(&ops, Some(applied)).map(drop)
}

/// Asserts the store holds exactly `model`, every object byte-identical,
/// and reference counts equal to the manifests that use each block.
fn assert_holds(store: &ObjectStore, model: &Model, seed: u64) {
    assert_eq!(
        store.applied().unwrap(),
        model.applied,
        "seed {seed}: applied position"
    );
    let listed = store.list("", None, 10_000).unwrap();
    let paths: Vec<&String> = listed.iter().map(|(p, _)| p).collect();
    let expected: Vec<&String> = model.objects.keys().collect();
    assert_eq!(paths, expected, "seed {seed}: objects listed");
    let mut uses: HashMap<[u8; 32], u64> = HashMap::new();
    for (path, manifest) in &listed {
        assert_eq!(
            &store.get(path).unwrap(),
            &model.objects[path],
            "seed {seed}: {path}"
        );
        for block in &manifest.blocks {
            *uses.entry(block.hash).or_default() += 1;
        }
    }
    for (hash, count) in uses {
        let entry = store
            .index()
            .block_location(&hash)
            .unwrap()
            .expect("referenced block recorded");
        assert_eq!(entry.refs, count, "seed {seed}: reference count of a block");
    }
}

/// Arms a fault that the next put with fresh data is sure to hit.
fn arm_fault(disk: &SimDisk, rng: &mut SmallRng) {
    let (prefix, op) = match rng.gen_range(0..4) {
        0 => ("node/blocks", FaultOp::Write),
        1 => ("node/blocks", FaultOp::Sync),
        2 => ("node/index.redb", FaultOp::Write),
        _ => ("node/index.redb", FaultOp::Sync),
    };
    let fault = if rng.gen_bool(0.5) {
        IoFault::Eio
    } else {
        IoFault::Enospc
    };
    let fault = if op == FaultOp::Sync {
        IoFault::Eio
    } else {
        fault
    };
    disk.fail_next_on(prefix, op, fault, 1);
}

/// Opens the store, first trying (sometimes) an open that the power cut
/// interrupts: recovery must survive being cut short too.
fn reopen(sim_disk: &SimDisk, rng: &mut SmallRng, seed: u64) -> ObjectStore {
    if rng.gen_bool(0.3) {
        let crashing = CrashingDisk::new(sim_disk.clone(), rng.gen_range(1..30));
        let attempt = ObjectStore::open_with(
            Arc::new(crashing.clone()),
            PathBuf::from("node"),
            small_store_options(),
        );
        match attempt {
            Ok(store) if !crashing.cut() => return store,
            Ok(_) => {}
            Err(e) => assert!(
                crashing.cut(),
                "seed {seed}: open failed without a cut: {e}"
            ),
        }
    }
    open(&sim_disk.disk_ref())
}

/// Runs one seed: rounds of batches on a disk that loses power at a random
/// write or sync — between batches or in the middle of one — then a reopen.
fn run_cuts(seed: u64) {
    let (sim_disk, _) = sim(seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut model = Model::default();
    let mut next_index = 1u64;
    let term = 1 + seed % 3;
    for _ in 0..ROUNDS_PER_SEED {
        drop(reopen(&sim_disk, &mut rng, seed));
        let crashing = CrashingDisk::new(sim_disk.clone(), rng.gen_range(1..300));
        let disk: DiskRef = Arc::new(crashing.clone());
        let mut in_doubt = None;
        match ObjectStore::open_with(disk, PathBuf::from("node"), small_store_options()) {
            Ok(mut store) => {
                for _ in 0..rng.gen_range(1..15) {
                    let changes = random_batch(&mut rng, &model);
                    let applied = Applied {
                        index: next_index,
                        term,
                        node: 1,
                    };
                    next_index += 1;
                    match apply(&mut store, &changes, applied) {
                        Ok(()) => model = model.with(&changes, applied),
                        Err(e) => {
                            assert!(crashing.cut(), "seed {seed}: failed without a cut: {e}");
                            in_doubt = Some(model.with(&changes, applied));
                            break;
                        }
                    }
                }
                if !crashing.cut() {
                    sim_disk.power_cut();
                }
                drop(store);
            }
            Err(e) => assert!(
                crashing.cut(),
                "seed {seed}: open failed without a cut: {e}"
            ),
        }
        let store = open(&sim_disk.disk_ref());
        if let Some(landed) = in_doubt {
            if store.applied().unwrap() == landed.applied {
                model = landed;
            }
        }
        assert_holds(&store, &model, seed);
    }
}

/// Runs one seed: rounds of acknowledged batches, sometimes a batch that
/// fails on an injected EIO or ENOSPC, then a power cut and a reopen.
fn run_faults(seed: u64) {
    let (sim_disk, disk) = sim(seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xfa17);
    let mut model = Model::default();
    let mut next_index = 1u64;
    for _ in 0..ROUNDS_PER_SEED {
        let mut store = open(&disk);
        assert_holds(&store, &model, seed);
        for _ in 0..rng.gen_range(1..8) {
            let changes = random_batch(&mut rng, &model);
            let applied = Applied {
                index: next_index,
                term: 1,
                node: 1,
            };
            next_index += 1;
            apply(&mut store, &changes, applied).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            model = model.with(&changes, applied);
        }
        // A put of fresh, non-empty data writes and syncs blocks and index.
        let mut doomed = random_put(&mut rng);
        while matches!(&doomed, Change::Put(_, bytes) if bytes.is_empty()) {
            doomed = random_put(&mut rng);
        }
        let changes = vec![doomed];
        let applied = Applied {
            index: next_index,
            term: 1,
            node: 1,
        };
        next_index += 1;
        arm_fault(&sim_disk, &mut rng);
        let result = apply(&mut store, &changes, applied);
        assert!(
            result.is_err(),
            "seed {seed}: the injected fault must surface"
        );
        sim_disk.power_cut();
        drop(store);
        let store = open(&disk);
        let landed = model.with(&changes, applied);
        if store.applied().unwrap() == landed.applied {
            model = landed;
        }
        assert_holds(&store, &model, seed);
    }
}

#[test]
fn acknowledged_objects_survive_power_cuts_mid_batch_with_matching_applied_position() {
    for seed in 0..seeds() {
        run_cuts(seed);
    }
}

#[test]
fn batch_failing_on_eio_or_enospc_lands_whole_or_not_at_all_after_power_cut() {
    for seed in 0..seeds() / 2 {
        run_faults(seed);
    }
}
