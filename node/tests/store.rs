//! Guards the object store against serving damaged or partial objects,
//! losing or miscounting shared blocks, accepting paths that escape or
//! alias, and damaging earlier objects when a put fails.

mod common;

use std::path::PathBuf;

use common::{data, hash, pack_path, real, sim, small_store_options};
use finkfs_node::blocks::RECORD_HEADER_BYTES;
use finkfs_node::{
    Applied, BlockError, Manifest, ObjectOp, ObjectStore, ObjectStoreOptions, OpOutcome,
    PathProblem, StoreError,
};
use finkfs_seam::DiskRef;
use finkfs_simdisk::{FaultOp, IoFault};

fn store_dir() -> PathBuf {
    PathBuf::from("node")
}

fn open(disk: &DiskRef) -> ObjectStore {
    ObjectStore::open_with(disk.clone(), store_dir(), small_store_options()).expect("open store")
}

fn open_default(disk: &DiskRef) -> ObjectStore {
    ObjectStore::open(disk.clone(), store_dir()).expect("open store")
}

fn refs(store: &ObjectStore, block: &[u8; 32]) -> u64 {
    store
        .index()
        .block_location(block)
        .unwrap()
        .expect("block recorded")
        .refs
}

fn pack_bytes(disk: &DiskRef, seq: u64) -> u64 {
    disk.open(&pack_path(seq)).unwrap().len().unwrap()
}

#[test]
fn alert_sized_objects_round_trip_on_real_and_simulated_disks() {
    let (_guard, real_disk) = real();
    let (_sim, sim_disk) = sim(1);
    for disk in [real_disk, sim_disk] {
        let mut store = open_default(&disk);
        let mut objects = Vec::new();
        for (i, len) in [35_000usize, 50_000, 64 * 1024, 80_000].iter().enumerate() {
            let path = format!("ztf/raw/year=2021/month=12/day=14/alert-{i}.avro");
            let bytes = data(i as u64, *len);
            let manifest = store.put(&path, &bytes).unwrap();
            assert_eq!(manifest.object_len, *len as u64);
            assert_eq!(
                manifest.object_hash,
                hash(&bytes),
                "end-to-end hash of the whole object"
            );
            assert_eq!(manifest.blocks.len(), 1);
            objects.push((path, bytes));
        }
        for (path, bytes) in &objects {
            assert_eq!(&store.get(path).unwrap(), bytes);
            assert_eq!(
                store.stat(path).unwrap().unwrap().object_len,
                bytes.len() as u64
            );
        }
    }
}

#[test]
fn multi_block_object_of_5_mib_round_trips_and_ranges_cross_blocks() {
    let (_guard, disk) = real();
    let mut store = open_default(&disk);
    let bytes = data(5, 5 * 1024 * 1024 + 123);
    let manifest = store.put("ztf/proc/part-0001.parquet", &bytes).unwrap();
    assert_eq!(manifest.blocks.len(), 6);
    assert_eq!(manifest.block_bytes, 1024 * 1024);
    assert_eq!(store.get("ztf/proc/part-0001.parquet").unwrap(), bytes);
    let mib = 1024 * 1024u64;
    for (start, len) in [
        (0, 10),
        (mib - 5, 10),
        (mib - 1, 2 * mib + 2),
        (5 * mib, 123),
        (17, 0),
    ] {
        let got = store
            .get_range("ztf/proc/part-0001.parquet", start, len)
            .unwrap();
        assert_eq!(
            got,
            bytes[start as usize..(start + len) as usize],
            "range {start}+{len}"
        );
    }
}

#[test]
fn empty_object_round_trips() {
    let (_sim, disk) = sim(2);
    let mut store = open(&disk);
    let manifest = store.put("empty", b"").unwrap();
    assert!(manifest.blocks.is_empty());
    assert_eq!(store.get("empty").unwrap(), Vec::<u8>::new());
    assert_eq!(store.get_range("empty", 0, 0).unwrap(), Vec::<u8>::new());
}

#[test]
fn objects_survive_reopen() {
    let (_guard, disk) = real();
    let bytes = data(3, 100_000);
    open(&disk).put("a/b", &bytes).unwrap();
    let mut store = open(&disk);
    assert_eq!(store.get("a/b").unwrap(), bytes);
    store.put("a/c", &bytes[..10]).unwrap();
    drop(store);
    let store = open(&disk);
    assert_eq!(store.get("a/c").unwrap(), bytes[..10]);
    assert_eq!(store.get("a/b").unwrap(), bytes);
}

#[test]
fn identical_blocks_are_stored_once_and_counted() {
    let (_sim, disk) = sim(3);
    let mut store = open(&disk);
    let bytes = data(4, 40_000);
    let first = store.put("copy/1", &bytes).unwrap();
    let size_after_first = pack_bytes(&disk, 0);
    let second = store.put("copy/2", &bytes).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        pack_bytes(&disk, 0),
        size_after_first,
        "no block written twice"
    );
    for block in &first.blocks {
        assert_eq!(refs(&store, &block.hash), 2);
    }
    assert_eq!(store.delete("copy/1").unwrap(), Some(first.clone()));
    assert_eq!(store.get("copy/2").unwrap(), bytes);
    for block in &first.blocks {
        assert_eq!(refs(&store, &block.hash), 1);
    }
    store.delete("copy/2").unwrap();
    for block in &first.blocks {
        assert_eq!(refs(&store, &block.hash), 0, "dead, awaiting reclaim");
    }
    // A dead block is revived rather than written again.
    store.put("copy/3", &bytes).unwrap();
    assert_eq!(pack_bytes(&disk, 0), size_after_first);
    assert_eq!(store.get("copy/3").unwrap(), bytes);
}

#[test]
fn repeated_block_within_one_object_is_counted_twice() {
    let (_sim, disk) = sim(4);
    let mut store = open(&disk);
    let block = data(5, 16 * 1024);
    let bytes = [block.clone(), block.clone(), data(6, 100)].concat();
    let manifest = store.put("twice", &bytes).unwrap();
    assert_eq!(manifest.blocks[0].hash, manifest.blocks[1].hash);
    assert_eq!(refs(&store, &manifest.blocks[0].hash), 2);
    assert_eq!(store.get("twice").unwrap(), bytes);
    store.delete("twice").unwrap();
    assert_eq!(refs(&store, &manifest.blocks[0].hash), 0);
}

#[test]
fn overwrite_replaces_object_and_moves_references() {
    let (_sim, disk) = sim(5);
    let mut store = open(&disk);
    let shared = data(7, 16 * 1024);
    let old = [shared.clone(), data(8, 1000)].concat();
    let new = [shared.clone(), data(9, 2000)].concat();
    let old_manifest = store.put("obj", &old).unwrap();
    let new_manifest = store.put("obj", &new).unwrap();
    assert_eq!(store.get("obj").unwrap(), new);
    assert_eq!(
        refs(&store, &new_manifest.blocks[0].hash),
        1,
        "shared block never dropped to zero"
    );
    assert_eq!(refs(&store, &old_manifest.blocks[1].hash), 0);
    assert_eq!(refs(&store, &new_manifest.blocks[1].hash), 1);
}

#[test]
fn missing_object_is_not_found() {
    let (_sim, disk) = sim(6);
    let mut store = open(&disk);
    assert!(matches!(
        store.get("nope"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.get_range("nope", 0, 1),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.stat("nope").unwrap(), None);
    assert_eq!(store.delete("nope").unwrap(), None);
}

#[test]
fn bad_paths_are_refused_with_the_reason() {
    let (_sim, disk) = sim(7);
    let mut store = open(&disk);
    let long = "a".repeat(1025);
    let cases = [
        ("", PathProblem::Empty),
        (long.as_str(), PathProblem::TooLong { len_bytes: 1025 }),
        ("a\0b", PathProblem::Nul),
        ("/abs/path", PathProblem::LeadingSlash),
        ("a//b", PathProblem::EmptySegment),
        ("a/b/", PathProblem::EmptySegment),
        ("./a", PathProblem::DotSegment),
        ("a/./b", PathProblem::DotSegment),
        ("..", PathProblem::DotDotSegment),
        ("a/../b", PathProblem::DotDotSegment),
    ];
    for (path, problem) in cases {
        let check = |result: Result<(), StoreError>| match result {
            Err(StoreError::BadPath {
                path: p,
                problem: got,
            }) => {
                assert_eq!(p, path);
                assert_eq!(got, problem, "{path:?}");
            }
            other => panic!("{path:?} accepted: {other:?}"),
        };
        check(store.put(path, b"x").map(drop));
        check(store.get(path).map(drop));
        check(store.get_range(path, 0, 0).map(drop));
        check(store.stat(path).map(drop));
        check(store.delete(path).map(drop));
    }
    assert!(
        store.list("", None, 10).unwrap().is_empty(),
        "nothing was stored"
    );
}

#[test]
fn a_bad_path_anywhere_in_a_batch_writes_nothing() {
    let (_sim, disk) = sim(8);
    let mut store = open(&disk);
    let ops = [
        ObjectOp::Put {
            path: "good",
            data: b"x",
        },
        ObjectOp::Put {
            path: "bad//",
            data: b"y",
        },
    ];
    assert!(matches!(
        store.apply(&ops, None),
        Err(StoreError::BadPath { .. })
    ));
    assert_eq!(store.stat("good").unwrap(), None);
    assert_eq!(
        store.blocks().packs().unwrap(),
        Vec::<u64>::new(),
        "no block written"
    );
}

#[test]
fn list_by_prefix_pages_in_path_order() {
    let (_sim, disk) = sim(9);
    let mut store = open(&disk);
    for day in ["13", "14"] {
        for part in 0..5 {
            store
                .put(&format!("ztf/raw/day={day}/part-{part}"), &data(part, 10))
                .unwrap();
        }
    }
    let page = store.list("ztf/raw/day=14/", None, 3).unwrap();
    let names: Vec<&str> = page.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "ztf/raw/day=14/part-0",
            "ztf/raw/day=14/part-1",
            "ztf/raw/day=14/part-2"
        ]
    );
    let rest = store
        .list("ztf/raw/day=14/", Some("ztf/raw/day=14/part-2"), 10)
        .unwrap();
    let names: Vec<&str> = rest.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["ztf/raw/day=14/part-3", "ztf/raw/day=14/part-4"]);
}

#[test]
fn batch_applies_atomically_with_its_applied_position() {
    let (_sim, disk) = sim(10);
    let mut store = open(&disk);
    store.put("old", b"old").unwrap();
    let ops = [
        ObjectOp::Put {
            path: "new/1",
            data: b"one",
        },
        ObjectOp::Delete { path: "old" },
        ObjectOp::Put {
            path: "new/2",
            data: b"two",
        },
    ];
    let applied = Applied {
        index: 42,
        term: 7,
        node: 2,
    };
    let outcomes = store.apply(&ops, Some(applied)).unwrap();
    assert!(matches!(&outcomes[0], OpOutcome::Put(m) if m.object_len == 3));
    assert!(matches!(&outcomes[1], OpOutcome::Deleted(Some(_))));
    assert_eq!(store.applied().unwrap(), Some(applied));
    assert_eq!(store.get("new/2").unwrap(), b"two");
    assert!(matches!(store.get("old"), Err(StoreError::NotFound { .. })));
}

#[test]
fn batch_and_object_ceilings_are_enforced() {
    let (_sim, disk) = sim(11);
    let options = ObjectStoreOptions {
        object_bytes_max: 1000,
        batch_ops_max: 2,
        ..small_store_options()
    };
    let mut store = ObjectStore::open_with(disk, store_dir(), options).unwrap();
    let err = store.put("big", &[0u8; 1001]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                len_bytes: 1001,
                max_bytes: 1000
            }
        ),
        "{err}"
    );
    let ops = [ObjectOp::Delete { path: "a" }; 3];
    assert!(matches!(
        store.apply(&ops, None),
        Err(StoreError::BatchTooLarge { ops: 3, max: 2 })
    ));
}

#[test]
fn range_outside_object_is_refused() {
    let (_sim, disk) = sim(12);
    let mut store = open(&disk);
    store.put("obj", &data(1, 100)).unwrap();
    for (start, len) in [(0, 101), (100, 1), (u64::MAX, 2)] {
        assert!(matches!(
            store.get_range("obj", start, len),
            Err(StoreError::RangeOutOfBounds { .. })
        ));
    }
}

#[test]
fn damaged_block_fails_get_with_corrupt_naming_the_block_never_data() {
    let (sim_disk, disk) = sim(13);
    let mut store = open(&disk);
    let bytes = data(14, 40_000);
    let manifest = store.put("obj", &bytes).unwrap();
    let loc = store
        .index()
        .block_location(&manifest.blocks[1].hash)
        .unwrap()
        .unwrap()
        .location;
    let bit = (loc.offset + RECORD_HEADER_BYTES as u64 + 100) * 8;
    sim_disk.flip_bit(pack_path(loc.pack), bit).unwrap();
    match store.get("obj") {
        Err(StoreError::Block(BlockError::Corrupt {
            hash, file, offset, ..
        })) => {
            assert_eq!(hash, manifest.blocks[1].hash);
            assert_eq!(file, pack_path(loc.pack));
            assert_eq!(offset, loc.offset);
        }
        other => panic!("expected a corrupt block, got {other:?}"),
    }
    assert!(store.get("obj").unwrap_err().is_corruption());
    assert!(store
        .get_range("obj", 16 * 1024, 10)
        .unwrap_err()
        .is_corruption());
    // Ranges in intact blocks are still served.
    assert_eq!(store.get_range("obj", 0, 100).unwrap(), bytes[..100]);
}

#[test]
fn put_of_a_block_whose_stored_copy_rotted_writes_a_fresh_copy_and_heals() {
    let (sim_disk, disk) = sim(14);
    let mut store = open(&disk);
    let bytes = data(15, 10_000);
    let manifest = store.put("first", &bytes).unwrap();
    let old = store
        .index()
        .block_location(&manifest.blocks[0].hash)
        .unwrap()
        .unwrap()
        .location;
    sim_disk
        .flip_bit(pack_path(old.pack), (old.offset + 70) * 8)
        .unwrap();
    assert!(store.get("first").unwrap_err().is_corruption());
    store.put("second", &bytes).unwrap();
    let new = store
        .index()
        .block_location(&manifest.blocks[0].hash)
        .unwrap()
        .unwrap();
    assert_ne!(new.location, old, "repointed to the fresh copy");
    assert_eq!(new.refs, 2);
    assert_eq!(
        store.get("first").unwrap(),
        bytes,
        "the first object heals too"
    );
    assert_eq!(store.get("second").unwrap(), bytes);
}

#[test]
fn eio_and_enospc_during_put_fail_the_put_and_earlier_objects_stay_intact() {
    let cases = [
        ("node/blocks", FaultOp::Write, IoFault::Enospc),
        ("node/blocks", FaultOp::Write, IoFault::Eio),
        ("node/blocks", FaultOp::Sync, IoFault::Eio),
        ("node/index.redb", FaultOp::Write, IoFault::Enospc),
        ("node/index.redb", FaultOp::Write, IoFault::Eio),
        ("node/index.redb", FaultOp::Sync, IoFault::Eio),
    ];
    for (prefix, op, fault) in cases {
        let (sim_disk, disk) = sim(15);
        let mut store = open(&disk);
        let earlier = data(16, 30_000);
        store.put("earlier", &earlier).unwrap();
        let doomed = data(17, 30_000);
        sim_disk.fail_next_on(prefix, op, fault, 1);
        let err = store.put("doomed", &doomed).unwrap_err();
        assert!(!err.is_corruption(), "{prefix} {op:?} {fault:?}: {err}");
        let read_back = store.get("earlier");
        if let Ok(got) = read_back {
            assert_eq!(got, earlier);
        }
        drop(store);
        sim_disk.power_cut();
        let store = open(&disk);
        assert_eq!(
            store.get("earlier").unwrap(),
            earlier,
            "{prefix} {op:?} {fault:?}"
        );
        match store.get("doomed") {
            Ok(got) => assert_eq!(got, doomed, "a failed put is whole or absent"),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => panic!("{prefix} {op:?} {fault:?}: {e}"),
        }
    }
}

#[test]
fn full_disk_fails_puts_cleanly_and_frees_nothing_already_stored() {
    let (sim_disk, disk) = sim(16);
    let mut store = open(&disk);
    let mut stored = Vec::new();
    for i in 0..4 {
        let bytes = data(100 + i, 20_000);
        store.put(&format!("obj/{i}"), &bytes).unwrap();
        stored.push(bytes);
    }
    let used: u64 = sim_disk
        .file_paths()
        .iter()
        .map(|p| sim_disk.current_bytes(p).unwrap().len() as u64)
        .sum();
    sim_disk.set_capacity(Some(used + 10_000));
    let mut failures = 0;
    for i in 4..10 {
        match store.put(&format!("obj/{i}"), &data(100 + i, 20_000)) {
            Ok(_) => {}
            Err(e) => {
                assert!(!e.is_corruption(), "{e}");
                failures += 1;
            }
        }
    }
    assert!(failures > 0, "the capacity cap was never reached");
    drop(store);
    sim_disk.set_capacity(None);
    let store = open(&disk);
    for (i, bytes) in stored.iter().enumerate() {
        assert_eq!(&store.get(&format!("obj/{i}")).unwrap(), bytes);
    }
}

#[test]
fn manifests_returned_match_what_stat_and_list_report() {
    let (_sim, disk) = sim(17);
    let mut store = open(&disk);
    let manifest: Manifest = store.put("m", &data(18, 50_000)).unwrap();
    assert_eq!(store.stat("m").unwrap(), Some(manifest.clone()));
    assert_eq!(
        store.list("m", None, 1).unwrap(),
        vec![("m".to_string(), manifest)]
    );
}

#[test]
fn lost_index_with_packs_present_is_refused_not_started_empty() {
    let (_guard, disk) = real();
    open(&disk).put("obj", &data(19, 1000)).unwrap();
    disk.remove(std::path::Path::new("node/index.redb"))
        .unwrap();
    match ObjectStore::open_with(disk, store_dir(), small_store_options()) {
        Err(e @ StoreError::IndexMissing { packs: 1, .. }) => assert!(e.is_corruption()),
        other => panic!("expected IndexMissing, got {other:?}"),
    }
}
