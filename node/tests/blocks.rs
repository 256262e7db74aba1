//! Guards the block store against serving damaged, misplaced or lost block
//! data, against losing synced blocks across a reopen, and against treating
//! failed writes or syncs as success.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{blocks_dir, data, hash, pack_path, real, sim, small_block_options};
use finkfs_node::blocks::{BlockStoreOptions, RECORD_HEADER_BYTES};
use finkfs_node::{BlockError, BlockLocation, BlockStore, ScanItem};
use finkfs_seam::DiskRef;
use finkfs_simdisk::{CrashPolicy, FaultOp, IoFault};

fn open(disk: &DiskRef) -> BlockStore {
    BlockStore::open(disk.clone(), blocks_dir(), small_block_options()).expect("open block store")
}

/// Puts blocks of the given sizes (seeded by index) and syncs.
fn put_all(store: &mut BlockStore, sizes: &[usize]) -> Vec<(BlockLocation, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let bytes = data(1000 + i as u64, *len);
        let loc = store.put(hash(&bytes), &bytes).expect("put");
        out.push((loc, bytes));
    }
    store.sync().expect("sync");
    out
}

/// Asserts `result` is `Corrupt` naming this block, its pack and its offset.
fn assert_corrupt_at(result: Result<Vec<u8>, BlockError>, loc: &BlockLocation) {
    match result {
        Err(BlockError::Corrupt {
            hash,
            file,
            offset,
            reason,
        }) => {
            assert_eq!(hash, loc.hash, "names the block");
            assert_eq!(file, pack_path(loc.pack), "names the pack");
            assert_eq!(offset, loc.offset, "names the offset");
            assert!(!reason.is_empty());
            let shown = BlockError::Corrupt {
                hash,
                file,
                offset,
                reason,
            }
            .to_string();
            assert!(
                shown.contains(&finkfs_node::hex(&loc.hash)),
                "hash in hex in {shown}"
            );
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("damaged block returned data"),
    }
}

/// Either the exact bytes or a corruption error: never other data.
fn assert_exact_or_corrupt(store: &BlockStore, loc: &BlockLocation, expected: &[u8]) {
    match store.read(loc) {
        Ok(bytes) => assert_eq!(bytes, expected, "a read returned wrong data"),
        Err(e) => assert!(e.is_corruption(), "unexpected error {e}"),
    }
}

fn bit_of(loc: &BlockLocation, byte_in_record: u64, bit: u64) -> u64 {
    (loc.offset + byte_in_record) * 8 + bit
}

#[test]
fn blocks_round_trip_on_real_and_simulated_disks() {
    let (_guard, real_disk) = real();
    let (_sim, sim_disk) = sim(1);
    for disk in [real_disk, sim_disk] {
        let mut store = open(&disk);
        let written = put_all(&mut store, &[0, 1, 7, 8, 9, 1000, 16 * 1024]);
        for (loc, bytes) in &written {
            assert_eq!(&store.read(loc).unwrap(), bytes);
            assert_eq!(loc.len as usize, bytes.len());
        }
        let (loc, bytes) = &written[5];
        assert_eq!(store.read_range(loc, 10, 100).unwrap(), bytes[10..110]);
        assert_eq!(store.read_range(loc, 1000, 0).unwrap(), Vec::<u8>::new());
    }
}

#[test]
fn synced_blocks_survive_reopen_and_new_puts_start_a_new_pack() {
    let (_guard, disk) = real();
    let written = put_all(&mut open(&disk), &[500, 600]);
    let mut store = open(&disk);
    for (loc, bytes) in &written {
        assert_eq!(&store.read(loc).unwrap(), bytes);
    }
    let more = put_all(&mut store, &[700]);
    assert!(
        more[0].0.pack > written[1].0.pack,
        "old packs are never appended to"
    );
    assert_eq!(store.packs().unwrap(), vec![0, 1]);
}

#[test]
fn synced_blocks_survive_a_power_cut() {
    let (sim_disk, disk) = sim(2);
    let written = put_all(&mut open(&disk), &[3000, 4000, 5000]);
    sim_disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let store = open(&disk);
    for (loc, bytes) in &written {
        assert_eq!(&store.read(loc).unwrap(), bytes);
    }
}

#[test]
fn packs_roll_over_at_pack_bytes_max() {
    let (_sim, disk) = sim(3);
    let mut store = open(&disk);
    let sizes = vec![16 * 1024; 40];
    let written = put_all(&mut store, &sizes);
    let packs: std::collections::BTreeSet<u64> = written.iter().map(|(loc, _)| loc.pack).collect();
    assert!(
        packs.len() > 1,
        "640 KiB of blocks must span several 256 KiB packs"
    );
    for (loc, bytes) in &written {
        assert!(loc.offset + RECORD_HEADER_BYTES as u64 + u64::from(loc.len) <= 256 * 1024);
        assert_eq!(&store.read(loc).unwrap(), bytes);
    }
}

#[test]
fn oversized_block_is_refused() {
    let (_sim, disk) = sim(4);
    let mut store = open(&disk);
    let bytes = data(1, 16 * 1024 + 1);
    let err = store.put(hash(&bytes), &bytes).unwrap_err();
    assert!(
        matches!(
            err,
            BlockError::TooLarge {
                len_bytes: 16385,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn options_that_cannot_work_are_refused() {
    let (_sim, disk) = sim(4);
    let options = BlockStoreOptions {
        pack_bytes_max: 100,
        block_bytes_max: 1024,
    };
    let err = BlockStore::open(disk, blocks_dir(), options).unwrap_err();
    assert!(matches!(err, BlockError::InvalidOptions(_)), "{err}");
}

#[test]
fn range_outside_block_is_refused() {
    let (_sim, disk) = sim(5);
    let mut store = open(&disk);
    let (loc, _) = put_all(&mut store, &[100]).remove(0);
    for (start, len) in [(0, 101), (100, 1), (u32::MAX, 2)] {
        let err = store.read_range(&loc, start, len).unwrap_err();
        assert!(matches!(err, BlockError::RangeOutOfBounds { .. }), "{err}");
    }
}

#[test]
fn bit_flip_in_block_data_is_corrupt_naming_block_file_and_offset() {
    let (sim_disk, disk) = sim(6);
    let mut store = open(&disk);
    let written = put_all(&mut store, &[1000, 2000, 3000]);
    let (loc, _) = &written[1];
    sim_disk
        .flip_bit(
            pack_path(loc.pack),
            bit_of(loc, RECORD_HEADER_BYTES as u64 + 1500, 3),
        )
        .unwrap();
    assert_corrupt_at(store.read(loc), loc);
    match store.read_range(loc, 0, 10) {
        Err(BlockError::Corrupt { .. }) => {}
        other => panic!("a range read of a damaged block must fail, got {other:?}"),
    }
    for (other, bytes) in [&written[0], &written[2]] {
        assert_eq!(
            &store.read(other).unwrap(),
            bytes,
            "neighbours are untouched"
        );
    }
}

#[test]
fn bit_flip_anywhere_in_a_record_header_is_corrupt() {
    let (sim_disk, disk) = sim(7);
    let mut store = open(&disk);
    let written = put_all(&mut store, &[100, 200]);
    let (loc, bytes) = &written[1];
    for byte in 0..RECORD_HEADER_BYTES as u64 {
        for bit in [0, 5] {
            let at = bit_of(loc, byte, bit);
            sim_disk.flip_bit(pack_path(loc.pack), at).unwrap();
            assert_corrupt_at(store.read(loc), loc);
            // Flipping the bit back restores the record.
            sim_disk.flip_bit(pack_path(loc.pack), at).unwrap();
            assert_eq!(&store.read(loc).unwrap(), bytes);
        }
    }
}

#[test]
fn zeroed_sector_is_corrupt() {
    let (sim_disk, disk) = sim(8);
    let mut store = open(&disk);
    let written = put_all(&mut store, &[8000, 8000]);
    let (loc, _) = &written[1];
    let sector = (loc.offset + 4000) / finkfs_simdisk::SECTOR_BYTES;
    sim_disk.zero_sector(pack_path(loc.pack), sector).unwrap();
    assert_corrupt_at(store.read(loc), loc);
}

#[test]
fn valid_record_copied_over_another_location_is_corrupt() {
    // A misdirected write of a whole, valid record: the bytes at B's place
    // are now A's record, intact. The read of B must refuse them.
    let (_guard, disk) = real();
    let mut store = open(&disk);
    let written = put_all(&mut store, &[300, 300]);
    let (a, a_bytes) = &written[0];
    let (b, _) = &written[1];
    let file = disk.open(&pack_path(a.pack)).unwrap();
    let mut record = vec![0u8; RECORD_HEADER_BYTES + 300];
    file.read_at(a.offset, &mut record).unwrap();
    file.write_at(b.offset, &record).unwrap();
    file.sync().unwrap();
    assert_corrupt_at(store.read(b), b);
    assert_eq!(&store.read(a).unwrap(), a_bytes);
}

#[test]
fn misdirected_write_never_yields_wrong_data() {
    for seed in 0..20 {
        let (sim_disk, disk) = sim(100 + seed);
        let mut store = open(&disk);
        let mut written = put_all(&mut store, &[2000, 2000, 2000]);
        sim_disk.misdirect_next_write(&blocks_dir().display().to_string());
        written.extend(put_all(&mut store, &[2000]));
        let (victim, _) = written[3];
        assert_corrupt_at(store.read(&victim), &victim);
        for (loc, bytes) in &written {
            assert_exact_or_corrupt(&store, loc, bytes);
        }
    }
}

#[test]
fn lost_write_is_corrupt_after_power_cut() {
    let (sim_disk, disk) = sim(9);
    let mut store = open(&disk);
    let mut written = put_all(&mut store, &[1000]);
    sim_disk.lose_next_write(&blocks_dir().display().to_string());
    written.extend(put_all(&mut store, &[1000, 1000]));
    sim_disk.power_cut();
    let store = open(&disk);
    let (lost, _) = written[1];
    assert_corrupt_at(store.read(&lost), &lost);
    for (loc, bytes) in [&written[0], &written[2]] {
        assert_eq!(&store.read(loc).unwrap(), bytes);
    }
}

#[test]
fn missing_pack_file_is_corrupt_not_io() {
    let (_guard, disk) = real();
    let written = put_all(&mut open(&disk), &[100]);
    disk.remove(&pack_path(0)).unwrap();
    let store = open(&disk);
    assert_corrupt_at(store.read(&written[0].0), &written[0].0);
}

#[test]
fn random_bytes_in_place_of_a_pack_are_corrupt_and_scan_reports_them() {
    let (_guard, disk) = real();
    let written = put_all(&mut open(&disk), &[100, 200]);
    let file = disk.open(&pack_path(0)).unwrap();
    file.write_at(0, &data(77, 4096)).unwrap();
    file.sync().unwrap();
    let store = open(&disk);
    for (loc, _) in &written {
        assert_corrupt_at(store.read(loc), loc);
    }
    let items: Vec<ScanItem> = store.scan_pack(0).unwrap().map(Result::unwrap).collect();
    assert!(!items.is_empty());
    for item in &items {
        assert!(matches!(item, ScanItem::Damaged { .. }), "{item:?}");
    }
}

#[test]
fn eio_and_enospc_on_put_are_io_errors_and_earlier_blocks_stay_readable() {
    for fault in [IoFault::Eio, IoFault::Enospc] {
        let (sim_disk, disk) = sim(10);
        let mut store = open(&disk);
        let written = put_all(&mut store, &[500]);
        sim_disk.fail_next(FaultOp::Write, fault, 1);
        let bytes = data(5, 500);
        let err = store.put(hash(&bytes), &bytes).unwrap_err();
        match &err {
            BlockError::Io { source, .. } => {
                let expected = match fault {
                    IoFault::Eio => libc_eio(),
                    _ => libc_enospc(),
                };
                assert_eq!(source.raw_os_error(), Some(expected), "{err}");
            }
            other => panic!("expected Io, got {other}"),
        }
        assert!(!err.is_corruption());
        assert_eq!(&store.read(&written[0].0).unwrap(), &written[0].1);
        // The store keeps working once the disk does.
        let loc = store.put(hash(&bytes), &bytes).unwrap();
        store.sync().unwrap();
        assert_eq!(store.read(&loc).unwrap(), bytes);
    }
}

fn libc_eio() -> i32 {
    finkfs_seam::eio().raw_os_error().unwrap()
}

fn libc_enospc() -> i32 {
    finkfs_seam::enospc().raw_os_error().unwrap()
}

#[test]
fn failed_sync_poisons_the_store_until_reopened() {
    let (sim_disk, disk) = sim(11);
    let mut store = open(&disk);
    let written = put_all(&mut store, &[500]);
    let bytes = data(6, 500);
    store.put(hash(&bytes), &bytes).unwrap();
    sim_disk.fail_next(FaultOp::Sync, IoFault::Eio, 1);
    assert!(matches!(store.sync(), Err(BlockError::Io { .. })));
    assert!(matches!(
        store.put(hash(&bytes), &bytes),
        Err(BlockError::Poisoned { .. })
    ));
    assert!(matches!(store.sync(), Err(BlockError::Poisoned { .. })));
    assert_eq!(
        &store.read(&written[0].0).unwrap(),
        &written[0].1,
        "reads still verify and serve"
    );
    drop(store);
    let mut store = open(&disk);
    let loc = store.put(hash(&bytes), &bytes).unwrap();
    store.sync().unwrap();
    assert_eq!(store.read(&loc).unwrap(), bytes);
}

#[test]
fn failed_directory_sync_after_new_pack_poisons_the_store() {
    let (sim_disk, disk) = sim(12);
    let mut store = open(&disk);
    let bytes = data(7, 500);
    store.put(hash(&bytes), &bytes).unwrap();
    sim_disk.fail_next(FaultOp::SyncDir, IoFault::Eio, 1);
    assert!(matches!(store.sync(), Err(BlockError::Io { .. })));
    assert!(matches!(
        store.put(hash(&bytes), &bytes),
        Err(BlockError::Poisoned { .. })
    ));
}

#[test]
fn unsynced_tail_after_power_cut_is_dead_space_and_reopen_never_truncates() {
    for seed in 0..20 {
        let (sim_disk, disk) = sim(200 + seed);
        let mut store = open(&disk);
        let synced = put_all(&mut store, &[3000, 3000]);
        for i in 0..3 {
            let bytes = data(50 + i, 3000);
            store.put(hash(&bytes), &bytes).unwrap();
        }
        sim_disk.power_cut();
        let len_after_cut = sim_disk.current_bytes(pack_path(0)).unwrap().len();
        let mut store = open(&disk);
        for (loc, bytes) in &synced {
            assert_eq!(&store.read(loc).unwrap(), bytes, "seed {seed}");
        }
        let fresh = put_all(&mut store, &[100]);
        assert_eq!(fresh[0].0.pack, 1, "new writes go to a new pack");
        let len_now = sim_disk.current_bytes(pack_path(0)).unwrap().len();
        assert_eq!(len_now, len_after_cut, "old pack untouched");
    }
}

#[test]
fn scan_reports_every_record_and_each_damage_with_its_offset() {
    let (sim_disk, disk) = sim(13);
    let mut store = open(&disk);
    let written = put_all(&mut store, &[100, 200, 300, 400, 500]);
    let locs: Vec<BlockLocation> = written.iter().map(|(loc, _)| *loc).collect();
    // Damage record 1's header and record 3's data.
    sim_disk
        .flip_bit(pack_path(0), bit_of(&locs[1], 10, 0))
        .unwrap();
    sim_disk
        .flip_bit(
            pack_path(0),
            bit_of(&locs[3], RECORD_HEADER_BYTES as u64 + 7, 2),
        )
        .unwrap();
    let items: Vec<ScanItem> = store.scan_pack(0).unwrap().map(Result::unwrap).collect();
    let file = pack_path(0);
    assert_eq!(items.len(), 5, "{items:#?}");
    assert_eq!(items[0], ScanItem::Record(locs[0]));
    match &items[1] {
        ScanItem::Damaged {
            file: f,
            offset,
            len_bytes,
            ..
        } => {
            assert_eq!((f, *offset), (&file, locs[1].offset));
            assert_eq!(
                offset + len_bytes,
                locs[2].offset,
                "resyncs on the next record"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(items[2], ScanItem::Record(locs[2]));
    assert!(matches!(&items[3], ScanItem::Damaged { offset, .. } if *offset == locs[3].offset));
    assert_eq!(items[4], ScanItem::Record(locs[4]));
}

#[test]
fn damaged_pack_header_is_reported_by_scan_but_records_still_verify() {
    let (sim_disk, disk) = sim(14);
    let written = put_all(&mut open(&disk), &[100, 200]);
    sim_disk.flip_bit(pack_path(0), 20 * 8).unwrap();
    let store = open(&disk);
    for (loc, bytes) in &written {
        assert_eq!(&store.read(loc).unwrap(), bytes);
    }
    let items: Vec<ScanItem> = store.scan_pack(0).unwrap().map(Result::unwrap).collect();
    assert!(
        matches!(&items[0], ScanItem::Damaged { offset: 0, .. }),
        "{items:?}"
    );
    assert_eq!(items.len(), 3);
}

#[test]
fn scan_of_unknown_pack_is_an_error() {
    let (_sim, disk) = sim(15);
    let store = open(&disk);
    assert!(matches!(
        store.scan_pack(9),
        Err(BlockError::NoSuchPack { .. })
    ));
}

#[test]
fn reads_run_in_parallel_from_many_threads() {
    let (_sim, disk) = sim(16);
    let mut store = open(&disk);
    let written = Arc::new(put_all(&mut store, &[1000; 32]));
    let store = Arc::new(store);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            let written = written.clone();
            std::thread::spawn(move || {
                for (loc, bytes) in written.iter().skip(t) {
                    assert_eq!(&store.read(loc).unwrap(), bytes);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn files_other_than_packs_in_the_directory_are_left_alone() {
    let (sim_disk, disk) = sim(17);
    disk.create_dir_all(&blocks_dir()).unwrap();
    common::copy_file(b"stray", &sim_disk, &blocks_dir().join("notes.txt"));
    let mut store = open(&disk);
    put_all(&mut store, &[10]);
    assert_eq!(store.packs().unwrap(), vec![0]);
    let stray: PathBuf = blocks_dir().join("notes.txt");
    assert_eq!(sim_disk.current_bytes(stray).unwrap(), b"stray");
}

#[allow(dead_code)]
fn assert_send_sync<T: Send + Sync>() {}
const _: fn() = assert_send_sync::<BlockStore>;
