//! Guards against an fsck that cries wolf on a healthy data directory, that
//! changes the directory it checks, or that miscounts what it checked, on
//! the simulated and on the real disk.

mod fsck_support;

use std::path::{Path, PathBuf};

use finkfs_node::fsck::{self, FsckError, FsckOptions, NoProgress, ProblemKind, Status};
use finkfs_seam::{DiskRef, RealDisk};
use finkfs_simdisk::SimDisk;
use fsck_support::*;

#[tokio::test]
async fn healthy_data_dir_is_healthy_with_its_totals() {
    let (sim, built) = built_sim(1).await;
    let report = fsck_sim(&sim);
    assert_eq!(report.status, Status::Healthy);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.groups, vec![GROUP.to_string()]);
    let totals = &report.totals;
    assert_eq!(totals.groups, 1);
    assert_eq!(totals.objects, built.objects.len() as u64);
    let object_bytes: u64 = built.objects.values().map(|b| b.len() as u64).sum();
    assert_eq!(totals.object_bytes, object_bytes);
    assert!(totals.blocks > 0 && totals.block_records >= totals.blocks);
    assert_eq!(totals.snapshots, 1);
    assert!(totals.journal_records > 0 && totals.journal_records < built.last_index);
    assert!(totals.packs >= 2, "a restarted store starts a new pack");
}

#[tokio::test]
async fn crash_leftovers_are_noted_and_nothing_is_changed() {
    let (sim, _) = built_sim(2).await;
    let last = files_under(&sim, JOURNAL)
        .into_iter()
        .rfind(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let len = sim.current_bytes(&last).unwrap().len() as u64;
    // A torn tail and a temporary file: what opening would cut and remove.
    sim.corrupt_bytes(&last, len, &[0x5A; 100]).unwrap();
    let disk = sim.disk_ref();
    let tmp = disk
        .create(&Path::new(SNAPSHOTS).join("build-9.snap.tmp"))
        .unwrap();
    tmp.write_at(0, b"half a snapshot").unwrap();
    tmp.sync().unwrap();
    disk.sync_dir(Path::new(SNAPSHOTS)).unwrap();
    let report = fsck_sim(&sim);
    assert_eq!(report.status, Status::Healthy, "{:#?}", report.problems);
    let kinds: Vec<&str> = report.problems.iter().map(|p| p.kind.name()).collect();
    assert!(
        kinds.contains(&"torn_tail") && kinds.contains(&"leftover"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn real_disk_healthy_then_a_flipped_block_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let disk: DiskRef = std::sync::Arc::new(RealDisk::open(dir.path()).unwrap());
    build(&disk).await;
    let report = run(disk.clone());
    assert_eq!(report.status, Status::Healthy, "{:#?}", report.problems);
    let pack = PathBuf::from(BLOCKS).join("00000000000000000000.pack");
    let file = disk.open(&pack).unwrap();
    let mut byte = [0u8; 1];
    file.read_at(200, &mut byte).unwrap();
    file.write_at(200, &[byte[0] ^ 0x10]).unwrap();
    file.sync().unwrap();
    let report = run(disk);
    assert_eq!(report.status, Status::Corrupt);
    assert!(report.damage().any(|p| p.file == pack.display().to_string()
        && p.offset.is_some()
        && p.kind == ProblemKind::ChecksumMismatch));
}

#[tokio::test]
async fn report_round_trips_through_json() {
    let (sim, _) = built_sim(3).await;
    sim.flip_bit(Path::new(META).join("meta.a"), 30 * 8)
        .unwrap();
    let report = fsck_sim(&sim);
    let json = serde_json::to_string(&report).unwrap();
    assert!(
        json.contains("\"status\":\"CORRUPT\"") && json.contains("\"kind\":\"bad_copy\""),
        "{json}"
    );
    let back: fsck::FsckReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn a_directory_without_finkfs_data_is_refused() {
    let sim = SimDisk::new(4);
    let disk = sim.disk_ref();
    let file = disk.create(Path::new("notes.txt")).unwrap();
    file.write_at(0, b"hello").unwrap();
    let scratch = SimDisk::new(5).disk_ref();
    let result = fsck::check_data_dir(disk, scratch, &FsckOptions::default(), &mut NoProgress);
    assert!(matches!(result, Err(FsckError::NotADataDir)), "{result:?}");
}

#[tokio::test]
async fn power_cut_during_writes_leaves_a_healthy_dir() {
    let mut notes = 0;
    for seed in 0..seeds(8) {
        let (sim, built) = built_sim(100 + seed).await;
        crash_during_writes(&sim, &built).await;
        let report = fsck_sim(&sim);
        assert_eq!(
            report.status,
            Status::Healthy,
            "seed {seed}: a crash was taken for damage: {:#?}",
            report.problems
        );
        notes += report.problems.len();
    }
    assert!(notes > 0, "the power cuts left no trace to classify");
}
