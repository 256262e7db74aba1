//! Guards against an offline repair (`fsck --repair`) that deletes or
//! overwrites damaged bytes, writes a copy it did not verify, moves the
//! applied log id, or claims a block repaired when no source had it.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use finkfs_node::backup::BackupTarget;
use finkfs_node::blocks::RECORD_HEADER_BYTES;
use finkfs_node::fsck::{check_data_dir, FsckOptions, NoProgress};
use finkfs_node::index::QuarantineStatus;
use finkfs_node::repair::{
    damaged_from_fsck, find_damaged_blocks, repair_blocks, repair_from_fsck, BackupBlockSource,
    RepairSource,
};
use finkfs_node::state_machine::LocalFetcher;
use finkfs_node::{Applied, ObjectOp, ObjectStore};
use finkfs_seam::{DiskRef, RealDisk};

const GROUP_DIR: &str = "groups/0";

fn real_disk(dir: &std::path::Path) -> DiskRef {
    std::fs::create_dir_all(dir).expect("directory");
    Arc::new(RealDisk::open(dir).expect("real disk"))
}

/// A store with two objects of several blocks, at applied index 7.
fn store_with_objects(disk: &DiskRef) -> (ObjectStore, Vec<u8>, Vec<u8>) {
    let mut store = ObjectStore::open_with(
        disk.clone(),
        PathBuf::from(GROUP_DIR),
        common::small_store_options(),
    )
    .expect("open store");
    let a = common::data(1, 20_000);
    let b = common::data(2, 9_000);
    store
        .apply(
            &[
                ObjectOp::Put {
                    path: "ztf/a",
                    data: &a,
                },
                ObjectOp::Put {
                    path: "ztf/b",
                    data: &b,
                },
            ],
            Some(Applied {
                index: 7,
                term: 2,
                node: 1,
            }),
        )
        .expect("apply");
    (store, a, b)
}

/// Flips one bit in the data of the first block of `path`; returns the
/// pack file and the flipped offset.
fn flip_first_block(store: &ObjectStore, disk: &DiskRef, path: &str) -> (PathBuf, u64) {
    let manifest = store.stat(path).unwrap().expect("object");
    let entry = store
        .index()
        .block_location(&manifest.blocks[0].hash)
        .unwrap()
        .expect("block known");
    let file = store.blocks().pack_path(entry.location.pack);
    let at = entry.location.offset + RECORD_HEADER_BYTES as u64 + 3;
    let handle = disk.open(&file).expect("open pack");
    let mut byte = [0u8; 1];
    handle.read_at(at, &mut byte).unwrap();
    byte[0] ^= 0x10;
    handle.write_at(at, &byte).unwrap();
    handle.sync().unwrap();
    (file, at)
}

fn read_byte(disk: &DiskRef, file: &std::path::Path, at: u64) -> u8 {
    let mut byte = [0u8; 1];
    disk.open(file).unwrap().read_at(at, &mut byte).unwrap();
    byte[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_repair_from_a_backup_dir_restores_the_block_and_keeps_the_damaged_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let disk = real_disk(&dir.path().join("data"));
    let backup_disk = real_disk(&dir.path().join("backup"));
    let (mut store, a, b) = store_with_objects(&disk);
    let target = BackupTarget::open(backup_disk.clone()).expect("backup target");
    for block in store.stat("ztf/a").unwrap().unwrap().blocks {
        let data = store.reader().block(&block.hash).unwrap().unwrap();
        target.put_block(&block.hash, &data).unwrap();
    }
    let (file, at) = flip_first_block(&store, &disk, "ztf/a");
    let flipped = read_byte(&disk, &file, at);
    assert!(store.get("ztf/a").is_err(), "the damage is seen");

    let damaged = find_damaged_blocks(store.reader()).unwrap();
    assert_eq!(damaged.len(), 1);
    let fetcher = LocalFetcher::new(Arc::new(BackupBlockSource::new(backup_disk)));
    let report = repair_blocks(&mut store, &damaged, &fetcher, 1_000)
        .await
        .expect("repair runs");
    assert_eq!(report.repaired.len(), 1, "{report:?}");
    assert!(report.is_complete());
    assert_eq!(store.get("ztf/a").unwrap(), a);
    assert_eq!(store.get("ztf/b").unwrap(), b);
    assert_eq!(
        store.applied().unwrap().map(|a| a.index),
        Some(7),
        "a repair never moves the applied log id"
    );
    assert_eq!(
        read_byte(&disk, &file, at),
        flipped,
        "damaged bytes stay where they were"
    );
    let quarantined = store.index().quarantined().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].status, QuarantineStatus::Repaired);
    assert_eq!(quarantined[0].hash, damaged[0].location.hash);
    assert_eq!(quarantined[0].offset, damaged[0].location.offset);

    // The repair is durable: a reopened store serves the object.
    drop(store);
    let store = ObjectStore::open(disk.clone(), PathBuf::from(GROUP_DIR)).unwrap();
    assert_eq!(store.get("ztf/a").unwrap(), a);
    assert_eq!(store.index().quarantined().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_no_source_holds_is_reported_unrepairable_and_still_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let disk = real_disk(&dir.path().join("data"));
    let backup_disk = real_disk(&dir.path().join("backup"));
    let (mut store, _, b) = store_with_objects(&disk);
    BackupTarget::open(backup_disk.clone()).unwrap();
    flip_first_block(&store, &disk, "ztf/a");

    let damaged = find_damaged_blocks(store.reader()).unwrap();
    let fetcher = LocalFetcher::new(Arc::new(BackupBlockSource::new(backup_disk)));
    let report = repair_blocks(&mut store, &damaged, &fetcher, 1_000)
        .await
        .unwrap();
    assert!(report.repaired.is_empty());
    assert_eq!(report.unrepairable.len(), 1);
    let hash = finkfs_node::hex(&damaged[0].location.hash);
    assert_eq!(report.unrepairable[0].hash, hash);
    let error = store.get("ztf/a").unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert!(
        error.to_string().contains(&hash),
        "names the block: {error}"
    );
    assert_eq!(store.get("ztf/b").unwrap(), b, "other objects still served");
    let quarantined = store.index().quarantined().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].status, QuarantineStatus::AwaitingCopy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_report_problems_become_the_blocks_to_repair() {
    let dir = tempfile::tempdir().unwrap();
    let disk = real_disk(&dir.path().join("data"));
    let scratch = real_disk(&dir.path().join("scratch"));
    let (store, _, _) = store_with_objects(&disk);
    flip_first_block(&store, &disk, "ztf/b");
    let expected = find_damaged_blocks(store.reader()).unwrap();
    drop(store);

    let report = check_data_dir(
        disk.clone(),
        scratch,
        &FsckOptions::default(),
        &mut NoProgress,
    )
    .expect("fsck runs");
    assert!(!report.is_healthy());
    let store = ObjectStore::open(disk, PathBuf::from(GROUP_DIR)).unwrap();
    let from_report = damaged_from_fsck(store.reader(), &report).unwrap();
    assert_eq!(from_report.len(), 1, "{report:?}");
    assert_eq!(from_report[0].location, expected[0].location);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_from_fsck_with_a_backup_source_leaves_fsck_healthy_for_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let disk = real_disk(&dir.path().join("data"));
    let backup_dir = dir.path().join("backup");
    let backup_disk = real_disk(&backup_dir);
    let (store, a, _) = store_with_objects(&disk);
    let target = BackupTarget::open(backup_disk).unwrap();
    for block in store.stat("ztf/a").unwrap().unwrap().blocks {
        let data = store.reader().block(&block.hash).unwrap().unwrap();
        target.put_block(&block.hash, &data).unwrap();
    }
    flip_first_block(&store, &disk, "ztf/a");
    drop(store);
    let check = |scratch: &str| {
        check_data_dir(
            disk.clone(),
            real_disk(&dir.path().join(scratch)),
            &FsckOptions::default(),
            &mut NoProgress,
        )
        .expect("fsck runs")
    };
    let before = check("scratch-1");
    let block_damage = |report: &finkfs_node::fsck::FsckReport| {
        report
            .damage()
            .filter(|p| p.structure == finkfs_node::fsck::Structure::Blocks)
            .count()
    };
    assert!(block_damage(&before) > 0);

    let done = repair_from_fsck(disk.clone(), &before, &RepairSource::Backup(backup_dir), 5)
        .await
        .expect("repair runs");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].group, GROUP_DIR);
    assert_eq!(done[0].report.repaired.len(), 1, "{done:?}");
    let after = check("scratch-2");
    assert_eq!(block_damage(&after), 0, "{after:?}");
    let store = ObjectStore::open(disk, PathBuf::from(GROUP_DIR)).unwrap();
    assert_eq!(store.get("ztf/a").unwrap(), a);
}
