//! Guards the index against losing committed transactions, against serving
//! values from a damaged file, and against crashing the process (or
//! reporting success) when the disk fails or the file is damaged.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{copy_file, data, hash, real, sim};
use finkfs_node::index::LIST_LIMIT_MAX;
use finkfs_node::{
    Applied, BlockEntry, BlockLocation, Durability, Index, IndexError, Manifest, ManifestBlock,
};
use finkfs_seam::DiskRef;
use finkfs_simdisk::{CrashPolicy, FaultOp, IoFault, SimDisk, SECTOR_BYTES};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn index_path() -> PathBuf {
    PathBuf::from("node/index.redb")
}

fn open(disk: &DiskRef) -> Index {
    Index::open(disk.clone(), &index_path()).expect("open index")
}

/// A manifest for an object of `len` bytes in blocks of 1 KiB whose hashes
/// derive from `seed` (the blocks need not exist for the index).
fn manifest(seed: u64, len: u64) -> Manifest {
    let block_bytes = 1024u32;
    let count = len.div_ceil(u64::from(block_bytes));
    let blocks = (0..count)
        .map(|i| ManifestBlock {
            hash: hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()),
            len: (len - i * u64::from(block_bytes)).min(u64::from(block_bytes)) as u32,
        })
        .collect();
    Manifest {
        object_len: len,
        object_hash: hash(&seed.to_le_bytes()),
        block_bytes,
        blocks,
    }
}

fn location(hash: [u8; 32], n: u64, len: u32) -> BlockLocation {
    BlockLocation {
        hash,
        pack: n / 100,
        offset: 64 + 8 * n,
        len,
    }
}

/// What a fixture index holds.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    objects: BTreeMap<String, Manifest>,
    blocks: BTreeMap<[u8; 32], BlockEntry>,
    applied: Option<Applied>,
}

/// Writes `count` objects (and their blocks) in a few transactions.
fn fill(index: &Index, count: u64) -> Expected {
    let mut expected = Expected {
        objects: BTreeMap::new(),
        blocks: BTreeMap::new(),
        applied: None,
    };
    for batch in 0..count.div_ceil(10) {
        let mut txn = index.begin_write().unwrap();
        for i in batch * 10..((batch + 1) * 10).min(count) {
            let path = format!("ztf/raw/day={:02}/alert-{i:04}.avro", i % 7);
            let m = manifest(i, 1 + i * 300);
            for block in &m.blocks {
                let loc = location(block.hash, expected.blocks.len() as u64, block.len);
                txn.add_block(&block.hash, &loc).unwrap();
                expected.blocks.insert(
                    block.hash,
                    BlockEntry {
                        location: loc,
                        refs: 1,
                    },
                );
            }
            assert_eq!(txn.put_object(&path, &m).unwrap(), None);
            expected.objects.insert(path, m);
        }
        let applied = Applied {
            index: batch + 1,
            term: 3,
            node: 1,
        };
        txn.set_applied(applied).unwrap();
        expected.applied = Some(applied);
        txn.commit(Durability::Immediate).unwrap();
    }
    expected
}

/// Reads everything `expected` says is there.
fn read_all(index: &Index, expected: &Expected) -> Result<Expected, IndexError> {
    let mut found = Expected {
        objects: BTreeMap::new(),
        blocks: BTreeMap::new(),
        applied: index.applied()?,
    };
    for path in expected.objects.keys() {
        if let Some(m) = index.get_object(path)? {
            found.objects.insert(path.clone(), m);
        }
    }
    for hash in expected.blocks.keys() {
        if let Some(entry) = index.block_location(hash)? {
            found.blocks.insert(*hash, entry);
        }
    }
    let listed: BTreeMap<String, Manifest> =
        index.list("", None, LIST_LIMIT_MAX)?.into_iter().collect();
    if listed != found.objects {
        // Listing and point reads disagree: report it as what it is.
        return Ok(Expected {
            objects: listed,
            ..found
        });
    }
    Ok(found)
}

#[test]
fn index_round_trips_objects_blocks_and_applied() {
    let (_sim, disk) = sim(1);
    let index = open(&disk);
    assert_eq!(index.applied().unwrap(), None);
    let expected = fill(&index, 25);
    assert_eq!(read_all(&index, &expected).unwrap(), expected);
    assert_eq!(index.get_object("no/such/object").unwrap(), None);
    assert_eq!(index.block_location(&[0; 32]).unwrap(), None);
}

#[test]
fn committed_changes_survive_reopen_and_power_cut() {
    let (sim_disk, disk) = sim(2);
    let expected = fill(&open(&disk), 25);
    assert_eq!(read_all(&open(&disk), &expected).unwrap(), expected);
    sim_disk.power_cut();
    assert_eq!(read_all(&open(&disk), &expected).unwrap(), expected);
}

#[test]
fn closed_shows_only_once_the_last_holder_let_go_and_reopen_then_finds_everything() {
    // A node restarted in the same process waits on `closed` before it
    // opens the file again: the signal must come after redb's last write
    // on close, not when the last handle is released.
    let (_dir, disk) = real();
    let mut expected = None;
    for round in 0..20 {
        let index = std::sync::Arc::new(open(&disk));
        if round == 0 {
            expected = Some(fill(&index, 25));
        }
        let closed = index.closed();
        let holder = index.clone();
        let dropper = std::thread::spawn(move || drop(holder));
        drop(index);
        dropper.join().unwrap();
        assert!(*closed.borrow(), "round {round}: dropped but not closed");
        let reopened = open(&disk);
        let expected = expected.as_ref().unwrap();
        assert_eq!(read_all(&reopened, expected).unwrap(), *expected);
        assert!(!*reopened.closed().borrow(), "an open index says closed");
    }
}

#[test]
fn list_pages_through_a_prefix_in_path_order() {
    let (_sim, disk) = sim(3);
    let index = open(&disk);
    let expected = fill(&index, 40);
    let prefix = "ztf/raw/day=03/";
    let want: Vec<String> = expected
        .objects
        .keys()
        .filter(|p| p.starts_with(prefix))
        .cloned()
        .collect();
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = index.list(prefix, after.as_deref(), 2).unwrap();
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        for (path, m) in &page {
            assert_eq!(Some(m), expected.objects.get(path));
        }
        after = page.last().map(|(p, _)| p.clone());
        got.extend(page.into_iter().map(|(p, _)| p));
    }
    assert_eq!(got, want);
    assert!(index.list("ztf/raw/day=9", None, 100).unwrap().is_empty());
    // A start_after before the prefix starts at the prefix.
    assert_eq!(index.list(prefix, Some("a"), 1).unwrap()[0].0, want[0]);
}

#[test]
fn reference_counts_rise_and_fall_and_never_go_below_zero() {
    let (_sim, disk) = sim(4);
    let index = open(&disk);
    let h = hash(b"block");
    let mut txn = index.begin_write().unwrap();
    txn.add_block(&h, &location(h, 1, 10)).unwrap();
    assert!(matches!(
        txn.add_block(&h, &location(h, 2, 10)),
        Err(IndexError::BlockExists { .. })
    ));
    assert_eq!(txn.block_ref_inc(&h).unwrap(), 2);
    assert_eq!(txn.block_ref_dec(&h).unwrap(), 1);
    assert_eq!(txn.block_ref_dec(&h).unwrap(), 0);
    assert!(matches!(
        txn.block_ref_dec(&h),
        Err(IndexError::RefCount { .. })
    ));
    assert!(matches!(
        txn.block_ref_inc(&[9; 32]),
        Err(IndexError::BlockMissing { .. })
    ));
    txn.commit(Durability::Immediate).unwrap();
    let entry = index
        .block_location(&h)
        .unwrap()
        .expect("a dead block stays recorded");
    assert_eq!(entry.refs, 0);
    assert_eq!(entry.location, location(h, 1, 10));
}

#[test]
fn put_and_delete_return_the_manifest_they_replace() {
    let (_sim, disk) = sim(5);
    let index = open(&disk);
    let mut txn = index.begin_write().unwrap();
    assert_eq!(txn.put_object("a", &manifest(1, 10)).unwrap(), None);
    assert_eq!(
        txn.put_object("a", &manifest(2, 20)).unwrap(),
        Some(manifest(1, 10))
    );
    assert_eq!(txn.get_object("a").unwrap(), Some(manifest(2, 20)));
    assert_eq!(txn.delete_object("a").unwrap(), Some(manifest(2, 20)));
    assert_eq!(txn.delete_object("a").unwrap(), None);
    txn.commit(Durability::Immediate).unwrap();
}

#[test]
fn dropped_transaction_changes_nothing() {
    let (_sim, disk) = sim(6);
    let index = open(&disk);
    let expected = fill(&index, 5);
    {
        let mut txn = index.begin_write().unwrap();
        txn.put_object("uncommitted", &manifest(99, 5)).unwrap();
        txn.set_applied(Applied {
            index: 99,
            term: 9,
            node: 2,
        })
        .unwrap();
    }
    assert_eq!(index.get_object("uncommitted").unwrap(), None);
    assert_eq!(read_all(&index, &expected).unwrap(), expected);
}

#[test]
fn eventual_commit_is_lost_by_a_power_cut_until_an_immediate_one_follows() {
    let (sim_disk, disk) = sim(7);
    let index = open(&disk);
    let mut txn = index.begin_write().unwrap();
    txn.put_object("eventual", &manifest(1, 10)).unwrap();
    txn.commit(Durability::Eventual).unwrap();
    assert!(
        index.get_object("eventual").unwrap().is_some(),
        "visible at once"
    );
    // Cut before closing: a clean close would make the commit durable.
    sim_disk.power_cut_with(CrashPolicy::LoseUnsynced);
    drop(index);
    let index = open(&disk);
    assert_eq!(index.get_object("eventual").unwrap(), None);

    let mut txn = index.begin_write().unwrap();
    txn.put_object("eventual", &manifest(1, 10)).unwrap();
    txn.commit(Durability::Eventual).unwrap();
    let mut txn = index.begin_write().unwrap();
    txn.put_object("immediate", &manifest(2, 10)).unwrap();
    txn.commit(Durability::Immediate).unwrap();
    sim_disk.power_cut_with(CrashPolicy::LoseUnsynced);
    drop(index);
    let index = open(&disk);
    assert!(index.get_object("eventual").unwrap().is_some());
    assert!(index.get_object("immediate").unwrap().is_some());
}

#[test]
fn eio_and_enospc_during_commit_are_io_errors_and_poison_until_reopen() {
    for (fault, op) in [
        (IoFault::Eio, FaultOp::Write),
        (IoFault::Enospc, FaultOp::Write),
        (IoFault::Eio, FaultOp::Sync),
    ] {
        let (sim_disk, disk) = sim(8);
        let index = open(&disk);
        let expected = fill(&index, 10);
        let mut txn = index.begin_write().unwrap();
        txn.put_object("doomed", &manifest(50, 5000)).unwrap();
        txn.set_applied(Applied {
            index: 100,
            term: 4,
            node: 3,
        })
        .unwrap();
        sim_disk.fail_next_on(&index_path().display().to_string(), op, fault, 1);
        let err = txn.commit(Durability::Immediate).unwrap_err();
        let expected_os = match fault {
            IoFault::Eio => finkfs_seam::eio().raw_os_error(),
            _ => finkfs_seam::enospc().raw_os_error(),
        };
        match &err {
            IndexError::Io { file, source } => {
                assert_eq!(file, &index_path());
                assert_eq!(source.raw_os_error(), expected_os, "{err}");
            }
            other => panic!("{fault:?} on {op:?}: expected Io, got {other}"),
        }
        assert!(matches!(
            index.begin_write(),
            Err(IndexError::Poisoned { .. })
        ));
        assert!(matches!(
            index.get_object("doomed"),
            Err(IndexError::Poisoned { .. })
        ));
        drop(index);
        sim_disk.power_cut();
        // The failed commit either landed whole or not at all.
        let index = open(&disk);
        let found = read_all(&index, &expected).unwrap();
        let applied = found.applied;
        assert_eq!(found.objects, expected.objects);
        match index.get_object("doomed").unwrap() {
            Some(m) => {
                assert_eq!(m, manifest(50, 5000));
                assert_eq!(
                    applied,
                    Some(Applied {
                        index: 100,
                        term: 4,
                        node: 3,
                    })
                );
            }
            None => assert_eq!(applied, expected.applied),
        }
    }
}

/// Builds a fixture index on a fresh disk and returns the bytes of its file.
fn fixture_bytes(seed: u64) -> (Vec<u8>, Expected) {
    let (sim_disk, disk) = sim(seed);
    let expected = fill(&open(&disk), 60);
    (sim_disk.durable_bytes(index_path()).unwrap(), expected)
}

/// Opens a copy of `bytes` (damaged by `damage`) and reads everything:
/// each step must give the right answer or a clear error, never a panic,
/// never a wrong value. Returns whether an error was reported.
fn open_damaged(bytes: &[u8], expected: &Expected, damage: impl FnOnce(&SimDisk)) -> bool {
    let (sim_disk, disk) = sim(0);
    copy_file(bytes, &sim_disk, &index_path());
    damage(&sim_disk);
    let index = match Index::open(disk, &index_path()) {
        Ok(index) => index,
        Err(e) => {
            assert_clear(&e);
            return true;
        }
    };
    match read_all(&index, expected) {
        Ok(found) => {
            assert_eq!(&found, expected, "a damaged index served wrong values");
            false
        }
        Err(e) => {
            assert_clear(&e);
            true
        }
    }
}

/// The error says the index is damaged and names where.
fn assert_clear(e: &IndexError) {
    let shown = e.to_string();
    match e {
        IndexError::FileCorrupt { file, .. } => assert_eq!(file, &index_path(), "{shown}"),
        IndexError::Corrupt { table, key, .. } => {
            assert!(!table.is_empty() && !key.is_empty(), "{shown}")
        }
        IndexError::Poisoned { file, .. } => assert_eq!(file, &index_path(), "{shown}"),
        other => panic!("damage reported as something else: {other}"),
    }
    assert!(
        e.is_corruption() || matches!(e, IndexError::Poisoned { .. }),
        "{shown}"
    );
}

#[test]
fn bit_flips_in_the_index_file_give_clear_errors_never_panics_or_wrong_values() {
    let (bytes, expected) = fixture_bytes(10);
    let mut rng = SmallRng::seed_from_u64(10);
    let mut detected = 0;
    let trials = 300;
    for trial in 0..trials {
        // Half the flips land in the first pages (header, roots), where
        // redb keeps what everything else hangs from.
        let limit = if trial % 2 == 0 {
            16 * 1024
        } else {
            bytes.len()
        };
        let bit = rng.gen_range(0..limit as u64 * 8);
        let flipped = open_damaged(&bytes, &expected, |d| {
            d.flip_bit(index_path(), bit).unwrap()
        });
        detected += usize::from(flipped);
    }
    assert!(detected > 0, "no flip out of {trials} was detected");
}

#[test]
fn zeroed_sectors_in_the_index_file_give_clear_errors_never_wrong_values() {
    let (bytes, expected) = fixture_bytes(11);
    let sectors = bytes.len() as u64 / SECTOR_BYTES;
    let mut detected = 0;
    for sector in 0..sectors {
        detected += usize::from(open_damaged(&bytes, &expected, |d| {
            d.zero_sector(index_path(), sector).unwrap()
        }));
    }
    assert!(detected > 0);
}

#[test]
fn truncated_index_file_is_a_clear_error() {
    let (bytes, expected) = fixture_bytes(12);
    let mut lens: Vec<usize> = vec![
        1,
        100,
        511,
        512,
        4096,
        4097,
        bytes.len() / 2,
        bytes.len() - 1,
    ];
    lens.extend((1..16).map(|i| i * bytes.len() / 16));
    for len in lens {
        let truncated = &bytes[..len];
        let detected = open_damaged(truncated, &expected, |_| {});
        assert!(
            detected,
            "index truncated to {len} of {} bytes opened without error",
            bytes.len()
        );
    }
}

#[test]
fn random_bytes_in_place_of_the_index_are_a_clear_error() {
    for seed in 0..20 {
        let garbage = data(seed, 64 * 1024);
        let (_bytes, expected) = fixture_bytes(13);
        assert!(open_damaged(&garbage, &expected, |_| {}), "seed {seed}");
    }
}

#[test]
fn zero_filled_index_file_is_a_clear_error() {
    let (bytes, expected) = fixture_bytes(14);
    assert!(open_damaged(&vec![0u8; bytes.len()], &expected, |_| {}));
    assert!(open_damaged(&[0u8; 4096], &expected, |_| {}));
}

#[test]
fn empty_index_file_is_a_clear_error_not_a_new_index() {
    // A new index is renamed into place only once complete, so an empty
    // file under the index's name was truncated, not freshly created.
    let (_bytes, expected) = fixture_bytes(15);
    assert!(open_damaged(&[], &expected, |_| {}));
}

#[test]
fn power_cut_at_any_point_of_index_creation_leaves_no_half_made_index() {
    for countdown in 1..40 {
        for seed in 0..3 {
            let (sim_disk, disk) = sim(seed);
            let crashing = common::CrashingDisk::new(sim_disk.clone(), countdown);
            let attempt = Index::open(std::sync::Arc::new(crashing.clone()), &index_path());
            if !crashing.cut() {
                attempt.expect("open without a cut");
                continue;
            }
            drop(attempt);
            let index = Index::open(disk, &index_path())
                .unwrap_or_else(|e| panic!("cut at {countdown} (seed {seed}): {e}"));
            assert!(index.list("", None, 10).unwrap().is_empty());
            let expected = fill(&index, 3);
            assert_eq!(read_all(&index, &expected).unwrap(), expected);
        }
    }
}

#[test]
fn index_file_is_named_in_damage_errors() {
    let (bytes, expected) = fixture_bytes(16);
    let (sim_disk, disk) = sim(0);
    copy_file(&vec![0xAB; bytes.len()], &sim_disk, &index_path());
    let err = Index::open(disk, &index_path()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&index_path().display().to_string()),
        "{err}"
    );
    drop(expected);
}

#[test]
fn garbage_in_the_index_header_is_restored_from_its_shadow() {
    // What a torn write of redb's in-place header can leave: garbage in the
    // sector holding its magic number and layout.
    let (sim_disk, disk) = sim(17);
    let expected = fill(&open(&disk), 20);
    sim_disk
        .corrupt_bytes(index_path(), 0, &data(3, 512))
        .unwrap();
    let index = open(&disk);
    assert_eq!(read_all(&index, &expected).unwrap(), expected);
}

#[test]
fn damaged_index_header_and_shadow_together_are_a_clear_error() {
    let (sim_disk, disk) = sim(18);
    fill(&open(&disk), 20);
    sim_disk
        .corrupt_bytes(index_path(), 0, &data(3, 512))
        .unwrap();
    sim_disk
        .corrupt_bytes("node/index.redb.header", 100, &data(4, 16))
        .unwrap();
    let err = Index::open(disk, &index_path()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("node/index.redb"), "{err}");
}

#[test]
fn integrity_check_finds_damage_that_happened_after_open() {
    let (sim_disk, disk) = sim(19);
    let mut index = open(&disk);
    fill(&index, 30);
    assert!(index.check_integrity().unwrap());
    // Damage a data page (past the header page) while the index is open.
    let len = sim_disk.durable_bytes(index_path()).unwrap().len() as u64;
    let mut damaged = false;
    for sector in 8..len / SECTOR_BYTES {
        sim_disk.zero_sector(index_path(), sector).unwrap();
        match index.check_integrity() {
            Ok(_) => continue,
            Err(e) => {
                assert!(e.is_corruption(), "{e}");
                damaged = true;
                break;
            }
        }
    }
    assert!(damaged, "zeroing every page was never noticed");
}

#[allow(dead_code)]
fn assert_send_sync<T: Send + Sync>() {}
const _: fn() = assert_send_sync::<Index>;
#[allow(dead_code)]
fn path_is_relative(_: &Path) {}
