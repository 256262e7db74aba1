//! Guards against injected media faults that do not bite: each knob must
//! produce exactly the damage it promises, be recorded in the fault log, and
//! leave everything else alone.

use std::io;
use std::path::Path;

use finkfs_seam::{read_file, Disk};
use finkfs_simdisk::{
    CrashPolicy, FaultKind, FaultOp, FaultRates, InjectedFault, IoFault, SimDisk, SECTOR_BYTES,
};

fn p(path: &str) -> &Path {
    Path::new(path)
}

/// A disk holding `path` with `bytes` synced, its directory entry included.
fn disk_with_synced(seed: u64, path: &str, bytes: &[u8]) -> SimDisk {
    let disk = SimDisk::new(seed);
    disk.create_dir_all(finkfs_seam::parent_dir(p(path)))
        .unwrap();
    let file = disk.create(p(path)).unwrap();
    file.write_at(0, bytes).unwrap();
    file.sync().unwrap();
    disk.sync_dir(finkfs_seam::parent_dir(p(path))).unwrap();
    disk.take_fault_log();
    disk
}

fn is_eio(err: &io::Error) -> bool {
    err.raw_os_error() == Some(5)
}

fn is_enospc(err: &io::Error) -> bool {
    err.raw_os_error() == Some(28) && err.kind() == io::ErrorKind::StorageFull
}

#[test]
fn failed_fsync_loses_data_even_if_retry_succeeds() {
    let mut lost_after_ok_retry = 0;
    for seed in 0..50 {
        let disk = disk_with_synced(seed, "f", b"........");
        let file = disk.open(p("f")).unwrap();
        file.write_at(0, b"AAAA").unwrap();
        file.write_at(4, b"BBBB").unwrap();
        disk.fail_next(FaultOp::Sync, IoFault::Eio, 1);
        assert!(is_eio(&file.sync().unwrap_err()));
        file.sync().expect("the retried sync reports success");
        // The page cache still shows both writes...
        assert_eq!(disk.current_bytes("f").unwrap(), b"AAAABBBB");
        let dropped: Vec<InjectedFault> = disk
            .fault_log()
            .into_iter()
            .filter(|f| f.kind == FaultKind::FailedSync)
            .collect();
        // ...but a cut that keeps everything unsynced shows what really
        // reached the disk: nothing was pending any more.
        disk.power_cut_with(CrashPolicy::KeepUnsynced);
        let after = read_file(&disk, p("f")).unwrap();
        for (offset, bytes) in [(0usize, b"AAAA"), (4, b"BBBB")] {
            let was_dropped = dropped.iter().any(|f| f.offset == Some(offset as u64));
            let landed = &after[offset..offset + 4] == bytes;
            assert_eq!(landed, !was_dropped, "seed {seed} offset {offset}");
        }
        if !dropped.is_empty() {
            lost_after_ok_retry += 1;
        }
    }
    assert!(lost_after_ok_retry > 0, "no failed sync ever dropped data");
}

#[test]
fn enospc_when_capacity_exceeded_changes_nothing() {
    let disk = SimDisk::new(5);
    disk.set_capacity(Some(1000));
    let a = disk.create(p("a")).unwrap();
    a.write_at(0, &[1; 600]).unwrap();
    let b = disk.create(p("b")).unwrap();
    assert!(is_enospc(&b.write_at(0, &[2; 500]).unwrap_err()));
    assert!(is_enospc(&a.set_len(1001).unwrap_err()));
    assert_eq!(b.len().unwrap(), 0);
    assert_eq!(a.len().unwrap(), 600);
    // Rewriting in place and filling exactly to the cap both fit.
    a.write_at(0, &[3; 600]).unwrap();
    b.write_at(0, &[2; 400]).unwrap();
    disk.power_cut_with(CrashPolicy::KeepUnsynced);
    assert_eq!(disk.durable_bytes("a").unwrap(), [3; 600]);
    assert_eq!(disk.durable_bytes("b").unwrap(), [2; 400]);
    let enospc = FaultKind::Enospc { op: FaultOp::Write };
    let refusals = disk.fault_log().iter().filter(|f| f.kind == enospc).count();
    assert_eq!(refusals, 2);
}

#[test]
fn removing_a_closed_file_frees_capacity() {
    let disk = SimDisk::new(5);
    disk.set_capacity(Some(1000));
    disk.create(p("a")).unwrap().write_at(0, &[1; 900]).unwrap();
    let b = disk.create(p("b")).unwrap();
    assert!(is_enospc(&b.write_at(0, &[2; 200]).unwrap_err()));
    disk.remove(p("a")).unwrap();
    b.write_at(0, &[2; 200]).unwrap();
}

#[test]
fn lost_write_never_reaches_durable() {
    let disk = disk_with_synced(6, "data/f", &[0; 8]);
    disk.lose_next_write("data/");
    let file = disk.open(p("data/f")).unwrap();
    file.write_at(0, b"lost").unwrap();
    file.write_at(4, b"kept").unwrap();
    assert_eq!(disk.current_bytes("data/f").unwrap(), b"lostkept");
    file.sync().unwrap();
    assert_eq!(disk.durable_bytes("data/f").unwrap(), b"\0\0\0\0kept");
    assert_eq!(disk.current_bytes("data/f").unwrap(), b"lostkept");
    disk.power_cut_with(CrashPolicy::KeepUnsynced);
    assert_eq!(read_file(&disk, p("data/f")).unwrap(), b"\0\0\0\0kept");
    let log = disk.fault_log();
    assert_eq!(log[0], fault_at(FaultKind::LostWrite, "data/f", 0, 4));
}

#[test]
fn lost_write_is_dropped_by_a_power_cut_too() {
    let disk = disk_with_synced(6, "f", b"old!");
    disk.lose_next_write("f");
    disk.open(p("f")).unwrap().write_at(0, b"new!").unwrap();
    disk.power_cut_with(CrashPolicy::KeepUnsynced);
    assert_eq!(read_file(&disk, p("f")).unwrap(), b"old!");
}

fn fault_at(kind: FaultKind, path: &str, offset: u64, len: u64) -> InjectedFault {
    InjectedFault {
        kind,
        path: path.into(),
        offset: Some(offset),
        len: Some(len),
    }
}

#[test]
fn misdirected_write_lands_elsewhere() {
    let sector = SECTOR_BYTES as usize;
    let mut landings = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let disk = disk_with_synced(seed, "blocks/x", &vec![0xAA; 8 * sector]);
        disk.misdirect_next_write("blocks/");
        let file = disk.open(p("blocks/x")).unwrap();
        file.write_at(2 * SECTOR_BYTES, &vec![0x55; sector])
            .unwrap();
        let log = disk.fault_log();
        let FaultKind::Misdirected { landed_at } = log[0].kind else {
            panic!("seed {seed}: no misdirection logged: {log:?}");
        };
        assert_eq!(log[0].offset, Some(2 * SECTOR_BYTES));
        assert_ne!(landed_at, 2 * SECTOR_BYTES);
        assert_eq!(landed_at % SECTOR_BYTES, 0);
        assert!(landed_at <= 9 * SECTOR_BYTES, "seed {seed}: {landed_at}");
        let mut aimed = vec![0u8; sector];
        file.read_at(2 * SECTOR_BYTES, &mut aimed).unwrap();
        assert!(
            aimed.iter().all(|&b| b == 0xAA),
            "seed {seed}: aimed range changed"
        );
        let mut landed = vec![0u8; sector];
        file.read_at(landed_at, &mut landed).unwrap();
        assert!(landed.iter().all(|&b| b == 0x55), "seed {seed}");
        file.sync().unwrap();
        let durable = disk.durable_bytes("blocks/x").unwrap();
        let at = landed_at as usize;
        assert!(durable[at..at + sector].iter().all(|&b| b == 0x55));
        landings.insert(landed_at);
        // Only the next write is misdirected.
        file.write_at(0, b"z").unwrap();
        assert_eq!(disk.current_bytes("blocks/x").unwrap()[0], b'z');
    }
    assert!(landings.len() > 1, "misdirection always lands at one place");
}

#[test]
fn bit_flip_and_zero_sector_visible_on_read() {
    let sector = SECTOR_BYTES as usize;
    let disk = disk_with_synced(8, "f", &vec![0xFF; 3 * sector]);
    disk.flip_bit("f", 10 * 8 + 3).unwrap();
    disk.zero_sector("f", 2).unwrap();
    let file = disk.open(p("f")).unwrap();
    let mut all = vec![0u8; 3 * sector];
    file.read_at(0, &mut all).unwrap();
    assert_eq!(all[10], 0xFF ^ (1 << 3));
    assert!(all[..10]
        .iter()
        .chain(&all[11..2 * sector])
        .all(|&b| b == 0xFF));
    assert!(all[2 * sector..].iter().all(|&b| b == 0));
    assert_eq!(disk.durable_bytes("f").unwrap(), all);
    let kinds: Vec<FaultKind> = disk.fault_log().iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FaultKind::BitFlip, FaultKind::ZeroedSector]);
    let past_end = disk.zero_sector("f", 3).unwrap_err();
    assert_eq!(past_end.kind(), io::ErrorKind::InvalidInput);
    let missing = disk.flip_bit("nope", 0).unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
}

#[test]
fn at_rest_damage_survives_a_power_cut() {
    let disk = disk_with_synced(8, "f", &[0; 16]);
    disk.corrupt_bytes("f", 4, b"junk").unwrap();
    disk.power_cut();
    assert_eq!(&read_file(&disk, p("f")).unwrap()[4..8], b"junk");
}

#[test]
fn latent_sector_error_fails_reads_until_rewritten() {
    let sector = SECTOR_BYTES as usize;
    let disk = disk_with_synced(9, "f", &vec![7; 2 * sector]);
    disk.latent_sector_error("f", 1).unwrap();
    let file = disk.open(p("f")).unwrap();
    let mut head = vec![0u8; sector];
    file.read_at(0, &mut head).unwrap();
    assert!(is_eio(
        &file.read_at(sector as u64 - 1, &mut [0u8; 2]).unwrap_err()
    ));
    disk.power_cut();
    let file = disk.open(p("f")).unwrap();
    assert!(is_eio(
        &file.read_at(sector as u64, &mut [0u8; 1]).unwrap_err()
    ));
    file.write_at(sector as u64, &vec![8; sector]).unwrap();
    file.read_at(sector as u64, &mut head).unwrap();
    assert!(head.iter().all(|&b| b == 8));
}

#[test]
fn fail_next_on_prefix_only_hits_matching_paths() {
    let disk = SimDisk::new(10);
    disk.create_dir_all(p("journal")).unwrap();
    disk.create_dir_all(p("blocks")).unwrap();
    let seg = disk.create(p("journal/seg-1")).unwrap();
    let block = disk.create(p("blocks/b")).unwrap();
    disk.fail_next_on("journal/seg-", FaultOp::Write, IoFault::Enospc, 2);
    block.write_at(0, b"fine").unwrap();
    assert!(is_enospc(&seg.write_at(0, b"x").unwrap_err()));
    assert!(is_enospc(&seg.set_len(10).unwrap_err()));
    seg.write_at(0, b"x").unwrap();
    assert_eq!(seg.len().unwrap(), 1);
    let log = disk.fault_log();
    let failures: Vec<&Path> = log.iter().map(|f| f.path.as_path()).collect();
    assert_eq!(failures, [p("journal/seg-1"), p("journal/seg-1")]);
}

#[test]
fn failed_metadata_operations_change_nothing() {
    let disk = disk_with_synced(11, "f", b"x");
    disk.fail_next(FaultOp::Create, IoFault::Eio, 1);
    disk.fail_next(FaultOp::Rename, IoFault::Eio, 1);
    disk.fail_next(FaultOp::Remove, IoFault::Eio, 1);
    disk.fail_next(FaultOp::SyncDir, IoFault::Eio, 1);
    assert!(is_eio(&disk.create(p("g")).unwrap_err()));
    assert!(is_eio(&disk.rename(p("f"), p("g")).unwrap_err()));
    assert!(is_eio(&disk.remove(p("f")).unwrap_err()));
    disk.create(p("h")).unwrap();
    assert!(is_eio(&disk.sync_dir(p("")).unwrap_err()));
    assert_eq!(disk.list(p("")).unwrap(), ["f", "h"]);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    assert_eq!(disk.list(p("")).unwrap(), ["f"]);
}

#[test]
fn failed_read_and_write_change_nothing() {
    let disk = disk_with_synced(12, "f", b"abcd");
    let file = disk.open(p("f")).unwrap();
    disk.fail_next(FaultOp::Read, IoFault::Eio, 1);
    disk.fail_next(FaultOp::Write, IoFault::Eio, 1);
    let mut buf = [0u8; 4];
    assert!(is_eio(&file.read_at(0, &mut buf).unwrap_err()));
    assert!(is_eio(&file.write_at(0, b"zzzzzz").unwrap_err()));
    file.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"abcd");
    assert_eq!(file.len().unwrap(), 4);
    let kinds: Vec<FaultKind> = disk.fault_log().iter().map(|f| f.kind).collect();
    let expected = [
        FaultKind::Eio { op: FaultOp::Read },
        FaultKind::Eio { op: FaultOp::Write },
    ];
    assert_eq!(kinds, expected);
}

#[test]
fn fault_rates_draw_faults_from_the_seed() {
    let run = |seed: u64| {
        let disk = disk_with_synced(seed, "f", &[0; 4096]);
        disk.set_fault_rates(FaultRates {
            read_eio: 0.2,
            write_eio: 0.2,
            sync_eio: 0.2,
            enospc: 0.1,
            misdirect: 0.1,
            lost_write: 0.1,
            ..FaultRates::default()
        });
        let file = disk.open(p("f")).unwrap();
        let mut outcomes = Vec::new();
        for i in 0..200u64 {
            let offset = (i * 7) % 4000;
            outcomes.push(file.write_at(offset, &[1; 8]).is_ok());
            outcomes.push(file.read_at(offset, &mut [0; 8]).is_ok());
            outcomes.push(file.sync().is_ok());
        }
        (outcomes, disk.fault_log())
    };
    let (outcomes, log) = run(13);
    assert_eq!(run(13), (outcomes.clone(), log.clone()));
    let failures = outcomes.iter().filter(|ok| !**ok).count();
    assert!(failures > 50 && failures < 400, "{failures} failures");
    for kind in [
        FaultKind::Eio { op: FaultOp::Read },
        FaultKind::Eio { op: FaultOp::Sync },
        FaultKind::Enospc { op: FaultOp::Write },
        FaultKind::LostWrite,
    ] {
        assert!(log.iter().any(|f| f.kind == kind), "no {kind:?} drawn");
    }
    assert!(log
        .iter()
        .any(|f| matches!(f.kind, FaultKind::Misdirected { .. })));
}

#[test]
fn disarmed_faults_never_fire() {
    let disk = disk_with_synced(3, "f", b"........");
    let file = disk.open(p("f")).unwrap();
    disk.fail_next(FaultOp::Sync, IoFault::Eio, 1);
    disk.fail_next(FaultOp::Write, IoFault::Enospc, 1);
    disk.lose_next_write("f");
    disk.misdirect_next_write("f");
    disk.disarm_faults();
    file.write_at(0, b"AAAA").unwrap();
    file.sync().unwrap();
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    assert_eq!(read_file(&disk, p("f")).unwrap(), b"AAAA....");
    assert!(disk.fault_log().is_empty(), "{:?}", disk.fault_log());
}
