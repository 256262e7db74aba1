//! Guards against an fsck that misses a damaged, truncated, deleted or
//! misplaced vote copy, or that calls a node whose every copy is lost
//! anything but corrupt.

mod fsck_support;

use std::path::PathBuf;

use finkfs_node::fsck::{ProblemKind, Structure};
use fsck_support::*;

fn copy(name: &str) -> PathBuf {
    PathBuf::from(META).join(name)
}

fn assert_bad_copy(report: &finkfs_node::fsck::FsckReport, name: &str) {
    let found = assert_damage_in(report, Structure::Meta, &copy(name), true);
    assert!(
        found.iter().any(|p| p.kind == ProblemKind::BadCopy),
        "{found:#?}"
    );
}

#[tokio::test]
async fn bit_flip_in_a_copy_is_a_bad_copy_with_its_offset() {
    let (sim, _) = built_sim(21).await;
    sim.flip_bit(copy("meta.a"), 30 * 8).unwrap();
    assert_bad_copy(&fsck_sim(&sim), "meta.a");
}

#[tokio::test]
async fn zeroed_copy_is_a_bad_copy() {
    let (sim, _) = built_sim(22).await;
    sim.zero_sector(copy("meta.b"), 0).unwrap();
    assert_bad_copy(&fsck_sim(&sim), "meta.b");
}

#[tokio::test]
async fn truncated_copy_is_a_bad_copy() {
    let (sim, _) = built_sim(23).await;
    truncate(&sim, &copy("meta.a"), 10);
    assert_bad_copy(&fsck_sim(&sim), "meta.a");
}

#[tokio::test]
async fn deleted_copy_is_a_bad_copy() {
    let (sim, _) = built_sim(24).await;
    delete(&sim, &copy("meta.b"));
    assert_bad_copy(&fsck_sim(&sim), "meta.b");
}

#[tokio::test]
async fn misdirected_copy_write_is_a_bad_copy() {
    let (sim, _) = built_sim(25).await;
    let len = sim.current_bytes(copy("meta.a")).unwrap().len();
    misdirect(&sim, &copy("meta.a"), 0, 512, len);
    assert_bad_copy(&fsck_sim(&sim), "meta.a");
}

#[tokio::test]
async fn every_copy_damaged_is_a_lost_vote() {
    let (sim, _) = built_sim(26).await;
    sim.flip_bit(copy("meta.a"), 30 * 8).unwrap();
    sim.flip_bit(copy("meta.b"), 40 * 8).unwrap();
    let report = fsck_sim(&sim);
    assert!(report.damage().any(|p| p.kind == ProblemKind::VoteLost));
    assert_bad_copy(&report, "meta.a");
    assert_bad_copy(&report, "meta.b");
}
