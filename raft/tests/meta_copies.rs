//! Guards against losing or misreading the vote: the newest intact copy
//! wins, a damaged copy is reported and repaired, every copy damaged is
//! reported as lost (so the node does not vote), and a power cut during a
//! save never loses the previous value.

mod journal_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use finkfs_raft::meta::{MetaError, MetaRecovery, MetaStore, PAYLOAD_BYTES_MAX};
use finkfs_seam::Disk;
use finkfs_simdisk::{CrashPolicy, FaultOp, IoFault, SimDisk};
use journal_support::Tripwire;

const DIR: &str = "groups/1/meta";

fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

fn copy_a() -> PathBuf {
    dir().join("meta.a")
}

fn copy_b() -> PathBuf {
    dir().join("meta.b")
}

fn open(disk: &SimDisk) -> (MetaStore, MetaRecovery) {
    MetaStore::open(disk.disk_ref(), dir()).expect("meta store opens")
}

fn reopen(disk: &SimDisk) -> (MetaStore, MetaRecovery) {
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    open(disk)
}

/// A copy encoded by the documented layout (docs/format/meta.md).
fn copy_bytes(version: u32, generation: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"FKMT");
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

fn plant(disk: &SimDisk, path: &Path, bytes: &[u8]) {
    let file = if disk.exists(path).unwrap() {
        disk.open(path).unwrap()
    } else {
        disk.create(path).unwrap()
    };
    file.set_len(0).unwrap();
    file.write_at(0, bytes).unwrap();
    file.sync().unwrap();
    disk.sync_dir(&dir()).unwrap();
}

fn clean(recovery: &MetaRecovery) -> bool {
    recovery.damaged.is_empty() && !recovery.lost
}

#[test]
fn fresh_directory_holds_generation_zero_and_no_payload_durably() {
    let disk = SimDisk::new(1);
    let (store, recovery) = open(&disk);
    assert!(clean(&recovery));
    assert_eq!((recovery.generation, recovery.payload), (0, None));
    assert_eq!((store.generation(), store.payload()), (0, None));
    drop(store);
    let (_, recovery) = reopen(&disk);
    assert!(clean(&recovery), "{recovery:?}");
    assert!(disk.exists(&copy_a()).unwrap() && disk.exists(&copy_b()).unwrap());
}

#[test]
fn save_is_durable_and_the_newest_generation_wins() {
    let disk = SimDisk::new(2);
    let (mut store, _) = open(&disk);
    for payload in [&b"vote term 1"[..], b"vote term 2", b""] {
        store.save(payload).unwrap();
    }
    assert_eq!((store.generation(), store.payload()), (3, Some(&b""[..])));
    drop(store);
    let (store, recovery) = reopen(&disk);
    assert!(clean(&recovery));
    assert_eq!(
        (recovery.generation, recovery.payload.as_deref()),
        (3, Some(&b""[..]))
    );
    assert_eq!(store.payload(), Some(&b""[..]));
}

#[test]
fn newer_valid_copy_wins_whichever_file_holds_it() {
    for (a, b) in [(5u64, 4u64), (4, 5)] {
        let disk = SimDisk::new(3);
        drop(open(&disk));
        plant(
            &disk,
            &copy_a(),
            &copy_bytes(1, a, format!("gen {a}").as_bytes()),
        );
        plant(
            &disk,
            &copy_b(),
            &copy_bytes(1, b, format!("gen {b}").as_bytes()),
        );
        let (store, recovery) = reopen(&disk);
        assert!(clean(&recovery), "{recovery:?}");
        assert_eq!(
            (store.generation(), store.payload()),
            (5, Some(&b"gen 5"[..]))
        );
    }
}

#[test]
fn open_brings_both_copies_to_the_newest_generation() {
    // A cut between the two writes of a save leaves A newer than B. If open
    // left B behind, the next save could tear A and fall back to B's older
    // value, losing a vote the node had already acted on.
    let disk = SimDisk::new(4);
    drop(open(&disk));
    plant(&disk, &copy_a(), &copy_bytes(1, 2, b"new"));
    plant(&disk, &copy_b(), &copy_bytes(1, 1, b"old"));
    drop(reopen(&disk));
    assert_eq!(
        disk.durable_bytes(copy_b()).unwrap(),
        copy_bytes(1, 2, b"new")
    );
    // Now tear copy A: B must still hold the newest value.
    disk.corrupt_bytes(copy_a(), 10, &[0xff; 4]).unwrap();
    let (store, recovery) = reopen(&disk);
    assert_eq!(recovery.damaged.len(), 1);
    assert_eq!(store.payload(), Some(&b"new"[..]));
}

#[test]
fn damaged_copy_is_reported_repaired_and_the_other_wins() {
    for (damaged, other) in [(copy_a(), copy_b()), (copy_b(), copy_a())] {
        let disk = SimDisk::new(5);
        let (mut store, _) = open(&disk);
        store.save(b"voted for 3 in term 7").unwrap();
        drop(store);
        disk.flip_bit(&damaged, 8 * 22 + 1).unwrap();
        let (store, recovery) = reopen(&disk);
        assert!(!recovery.lost);
        assert_eq!(recovery.damaged.len(), 1);
        assert_eq!(recovery.damaged[0].file, damaged);
        assert_eq!(store.payload(), Some(&b"voted for 3 in term 7"[..]));
        assert_eq!(
            disk.durable_bytes(&damaged).unwrap(),
            disk.durable_bytes(&other).unwrap(),
            "repaired"
        );
        let scanned = MetaStore::scan(&disk, &dir()).unwrap();
        assert!(clean(&scanned), "{scanned:?}");
    }
}

#[test]
fn every_copy_damaged_is_lost_and_save_repairs() {
    let disk = SimDisk::new(6);
    let (mut store, _) = open(&disk);
    store.save(b"vote").unwrap();
    drop(store);
    disk.flip_bit(copy_a(), 100).unwrap();
    disk.zero_sector(copy_b(), 0).unwrap();
    let before = (
        disk.durable_bytes(copy_a()).unwrap(),
        disk.durable_bytes(copy_b()).unwrap(),
    );
    let (mut store, recovery) = reopen(&disk);
    assert!(recovery.lost);
    assert_eq!((recovery.generation, recovery.payload.clone()), (0, None));
    assert_eq!(
        recovery
            .damaged
            .iter()
            .map(|d| d.file.clone())
            .collect::<Vec<_>>(),
        vec![copy_a(), copy_b()]
    );
    let after = (
        disk.durable_bytes(copy_a()).unwrap(),
        disk.durable_bytes(copy_b()).unwrap(),
    );
    assert_eq!(
        before, after,
        "open must not overwrite the evidence of a lost state"
    );
    assert_eq!(store.payload(), None);
    store.save(b"repaired").unwrap();
    drop(store);
    let (store, recovery) = reopen(&disk);
    assert!(clean(&recovery), "{recovery:?}");
    assert_eq!(store.payload(), Some(&b"repaired"[..]));
}

#[test]
fn missing_copy_beside_a_saved_one_is_damage_and_is_rewritten() {
    let disk = SimDisk::new(7);
    let (mut store, _) = open(&disk);
    store.save(b"v").unwrap();
    drop(store);
    disk.remove(&copy_b()).unwrap();
    disk.sync_dir(&dir()).unwrap();
    let (store, recovery) = reopen(&disk);
    assert_eq!(recovery.damaged.len(), 1);
    assert_eq!(
        (
            recovery.damaged[0].file.clone(),
            recovery.damaged[0].reason.as_str()
        ),
        (copy_b(), "copy missing")
    );
    assert_eq!(store.payload(), Some(&b"v"[..]));
    assert!(disk.exists(&copy_b()).unwrap());
}

#[test]
fn creation_cut_short_is_not_damage() {
    // Copies are created atomically, A first: A at generation 0 and no B is
    // a fresh directory whose creation was interrupted.
    let disk = SimDisk::new(8);
    drop(open(&disk));
    disk.remove(&copy_b()).unwrap();
    disk.sync_dir(&dir()).unwrap();
    let (_, recovery) = reopen(&disk);
    assert!(clean(&recovery), "{recovery:?}");
    assert!(disk.exists(&copy_b()).unwrap());
}

#[test]
fn power_cut_during_save_never_loses_the_previous_value() {
    for seed in 0..40u64 {
        for changes in 0..8u64 {
            let sim = SimDisk::new(seed * 100 + changes);
            {
                let (mut store, _) = MetaStore::open(sim.disk_ref(), dir()).unwrap();
                store.save(b"previous").unwrap();
            }
            let wire = Tripwire::new(sim.clone());
            let (mut store, _) = MetaStore::open(Arc::new(wire.clone()), dir()).unwrap();
            wire.arm(changes);
            let saved = store.save(b"next value").is_ok();
            drop(store);
            if !wire.tripped() {
                sim.power_cut();
            }
            let (store, recovery) = open(&sim);
            let what = format!("seed {seed}, cut before change {changes}");
            assert!(!recovery.lost, "{what}: {recovery:?}");
            let payload = store.payload().unwrap();
            assert!(payload == b"previous" || payload == b"next value", "{what}");
            if saved {
                assert_eq!(payload, b"next value", "{what}: a completed save was lost");
            }
        }
    }
}

#[test]
fn truncated_zero_filled_or_random_copy_is_reported_without_panic() {
    let good = copy_bytes(1, 3, b"the vote");
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for len in [
        0usize,
        1,
        4,
        20,
        51,
        52,
        53,
        good.len() - 1,
        good.len() + 1,
        5000,
    ] {
        if len < good.len() {
            variants.push((format!("truncated to {len}"), good[..len].to_vec()));
        }
        variants.push((format!("{len} zeros"), vec![0; len]));
        variants.push((
            format!("{len} random"),
            (0..len).map(|i| (i * 167 + 13) as u8).collect(),
        ));
    }
    variants.push(("a 2 MiB file".to_string(), vec![7; 2 << 20]));
    variants.push(("a wrong length field".to_string(), {
        let mut bytes = good.clone();
        bytes[16] ^= 1;
        bytes
    }));
    for target in [copy_a(), copy_b()] {
        for (what, bytes) in &variants {
            let disk = SimDisk::new(9);
            let (mut store, _) = open(&disk);
            store.save(b"the vote").unwrap();
            drop(store);
            plant(&disk, &target, bytes);
            let scanned = MetaStore::scan(&disk, &dir()).unwrap();
            let (store, recovery) = reopen(&disk);
            let what = format!("{} as {what}", target.display());
            assert_eq!(scanned, recovery, "{what}");
            assert!(!recovery.lost, "{what}");
            assert_eq!(recovery.damaged.len(), 1, "{what}");
            assert_eq!(recovery.damaged[0].file, target, "{what}");
            assert_eq!(store.payload(), Some(&b"the vote"[..]), "{what}");
        }
    }
}

#[test]
fn copy_from_a_newer_format_is_refused_not_misread() {
    let disk = SimDisk::new(10);
    drop(open(&disk));
    plant(&disk, &copy_a(), &copy_bytes(2, 9, b"future"));
    match MetaStore::open(disk.disk_ref(), dir()) {
        Err(MetaError::UnsupportedVersion {
            file,
            version: 2,
            supported: 1,
        }) => assert_eq!(file, copy_a()),
        other => panic!(
            "expected UnsupportedVersion, got {:?}",
            other.map(|(_, r)| r)
        ),
    }
}

#[test]
fn failed_save_poisons_until_reopen() {
    let disk = SimDisk::new(11);
    let (mut store, _) = open(&disk);
    store.save(b"one").unwrap();
    disk.fail_next(FaultOp::Sync, IoFault::Eio, 1);
    assert!(matches!(store.save(b"two"), Err(MetaError::Io { .. })));
    assert!(matches!(store.save(b"three"), Err(MetaError::Poisoned)));
    assert_eq!(store.payload(), Some(&b"one"[..]));
    drop(store);
    let (mut store, recovery) = reopen(&disk);
    assert!(!recovery.lost);
    let payload = store.payload().unwrap().to_vec();
    assert!(payload == b"one" || payload == b"two");
    store.save(b"four").unwrap();
}

#[test]
fn oversize_payload_is_refused() {
    let disk = SimDisk::new(12);
    let (mut store, _) = open(&disk);
    let max = PAYLOAD_BYTES_MAX as usize;
    assert!(matches!(
        store.save(&vec![0; max + 1]),
        Err(MetaError::PayloadTooLarge { .. })
    ));
    store.save(&vec![1; max]).unwrap();
    drop(store);
    let (store, _) = reopen(&disk);
    assert_eq!(store.payload().map(<[u8]>::len), Some(max));
}

#[test]
fn scan_changes_nothing() {
    let disk = SimDisk::new(13);
    let (mut store, _) = open(&disk);
    store.save(b"x").unwrap();
    drop(store);
    disk.flip_bit(copy_a(), 3).unwrap();
    let before = disk.current_bytes(copy_a()).unwrap();
    let scanned = MetaStore::scan(&disk, &dir()).unwrap();
    assert_eq!(scanned.damaged.len(), 1);
    assert_eq!(disk.current_bytes(copy_a()).unwrap(), before);
    let fresh = MetaStore::scan(&disk, Path::new("elsewhere")).unwrap();
    assert!(clean(&fresh) && fresh.generation == 0);
}
