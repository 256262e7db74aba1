//! Guards against an fsck that misses a damaged index (a bit flip, a zeroed
//! sector, truncation, deletion, a misdirected write) or that opens the
//! index in place, which would let redb rewrite the data directory.

mod fsck_support;

use std::path::Path;

use finkfs_node::fsck::{ProblemKind, Structure};
use finkfs_simdisk::SimDisk;
use fsck_support::*;

/// Offsets of the manifests stored in the index: every live leaf of the
/// objects table holds some, so damage there is damage to live pages.
fn manifests(sim: &SimDisk) -> Vec<u64> {
    let found = find_all(sim, Path::new(INDEX), b"FMAN");
    assert!(!found.is_empty(), "the index holds manifests");
    found
}

fn assert_index_damage(report: &finkfs_node::fsck::FsckReport) {
    let found = assert_damage_in(report, Structure::Index, Path::new(INDEX), false);
    assert!(
        found
            .iter()
            .any(|p| p.kind == ProblemKind::ChecksumMismatch),
        "{found:#?}"
    );
}

#[tokio::test]
async fn bit_flips_in_index_pages_are_reported() {
    let (sim, _) = built_sim(41).await;
    for at in manifests(&sim) {
        sim.flip_bit(INDEX, (at + 40) * 8).unwrap();
    }
    assert_index_damage(&fsck_sim(&sim));
}

#[tokio::test]
async fn zeroed_index_sectors_are_reported() {
    let (sim, _) = built_sim(42).await;
    for at in manifests(&sim) {
        sim.zero_sector(INDEX, at / 512).unwrap();
    }
    assert_index_damage(&fsck_sim(&sim));
}

#[tokio::test]
async fn truncated_index_is_reported() {
    let (sim, _) = built_sim(43).await;
    let len = sim.current_bytes(INDEX).unwrap().len() as u64;
    truncate(&sim, Path::new(INDEX), len / 2);
    assert_index_damage(&fsck_sim(&sim));
}

#[tokio::test]
async fn deleted_index_beside_packs_is_a_missing_file() {
    let (sim, _) = built_sim(44).await;
    delete(&sim, Path::new(INDEX));
    let report = fsck_sim(&sim);
    let found = assert_damage_in(&report, Structure::Index, Path::new(INDEX), false);
    assert!(found.iter().any(|p| p.kind == ProblemKind::MissingFile));
}

#[tokio::test]
async fn misdirected_write_over_index_pages_is_reported() {
    let (sim, _) = built_sim(45).await;
    for at in manifests(&sim) {
        let sector = at / 512 * 512;
        misdirect(&sim, Path::new(INDEX), 4096, sector, 512);
    }
    assert_index_damage(&fsck_sim(&sim));
}
