//! Guards against an fsck that misses a damaged, truncated, misplaced or
//! deleted snapshot file, or reports one without its file and offset.

mod fsck_support;

use std::path::{Path, PathBuf};

use finkfs_node::fsck::{ProblemKind, Structure};
use finkfs_simdisk::SimDisk;
use fsck_support::*;

fn snapshot(sim: &SimDisk) -> PathBuf {
    let files: Vec<PathBuf> = files_under(sim, SNAPSHOTS)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    assert_eq!(files.len(), 1, "the fixture has one snapshot: {files:?}");
    files[0].clone()
}

fn assert_snapshot_damage(report: &finkfs_node::fsck::FsckReport, file: &Path) {
    let found = assert_damage_in(report, Structure::Snapshots, file, true);
    assert!(
        found
            .iter()
            .all(|p| p.kind == ProblemKind::ChecksumMismatch),
        "{found:#?}"
    );
}

#[tokio::test]
async fn bit_flip_in_a_snapshot_is_reported_with_its_offset() {
    let (sim, _) = built_sim(51).await;
    let file = snapshot(&sim);
    let len = sim.current_bytes(&file).unwrap().len() as u64;
    sim.flip_bit(&file, (len / 2) * 8).unwrap();
    assert_snapshot_damage(&fsck_sim(&sim), &file);
}

#[tokio::test]
async fn zeroed_snapshot_sector_is_reported() {
    let (sim, _) = built_sim(52).await;
    let file = snapshot(&sim);
    sim.zero_sector(&file, 0).unwrap();
    assert_snapshot_damage(&fsck_sim(&sim), &file);
}

#[tokio::test]
async fn truncated_snapshot_is_reported() {
    let (sim, _) = built_sim(53).await;
    let file = snapshot(&sim);
    let len = sim.current_bytes(&file).unwrap().len() as u64;
    truncate(&sim, &file, len - 40);
    assert_snapshot_damage(&fsck_sim(&sim), &file);
}

#[tokio::test]
async fn misdirected_write_in_a_snapshot_is_reported() {
    let (sim, _) = built_sim(54).await;
    let file = snapshot(&sim);
    misdirect(&sim, &file, 0, 64, 64);
    assert_snapshot_damage(&fsck_sim(&sim), &file);
}

#[tokio::test]
async fn deleted_snapshot_behind_a_purged_journal_is_missing() {
    let (sim, _) = built_sim(55).await;
    let file = snapshot(&sim);
    delete(&sim, &file);
    let report = fsck_sim(&sim);
    let found = assert_damage_in(
        &report,
        Structure::Snapshots,
        &PathBuf::from(SNAPSHOTS),
        false,
    );
    assert!(found.iter().any(|p| p.kind == ProblemKind::MissingFile));
}
