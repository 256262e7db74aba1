//! Guards against an fsck that misses damage in the journal (a bit flip, a
//! zeroed sector, a truncated or deleted segment, a misdirected write), that
//! reports it without file and offset, or that calls a torn tail damage.

mod fsck_support;

use std::path::PathBuf;

use finkfs_node::fsck::{ProblemKind, Structure};
use finkfs_simdisk::SimDisk;
use fsck_support::*;

/// The journal's segments, oldest first.
fn segments(sim: &SimDisk) -> Vec<PathBuf> {
    let segments: Vec<PathBuf> = files_under(sim, JOURNAL)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert!(
        segments.len() >= 3,
        "the fixture needs several segments: {segments:?}"
    );
    segments
}

/// A segment with segments on both sides.
fn middle_segment(sim: &SimDisk) -> PathBuf {
    let all = segments(sim);
    all[all.len() / 2].clone()
}

#[tokio::test]
async fn bit_flip_in_a_record_is_a_checksum_mismatch_at_its_offset() {
    let (sim, _) = built_sim(11).await;
    let segment = middle_segment(&sim);
    sim.flip_bit(&segment, (80 + 96 + 20) * 8).unwrap();
    let report = fsck_sim(&sim);
    let found = assert_damage_in(&report, Structure::Journal, &segment, true);
    assert!(found
        .iter()
        .any(|p| p.kind == ProblemKind::ChecksumMismatch && p.offset == Some(80)));
}

#[tokio::test]
async fn zeroed_sector_in_a_segment_is_reported_with_its_offset() {
    let (sim, _) = built_sim(12).await;
    let segment = middle_segment(&sim);
    sim.zero_sector(&segment, 2).unwrap();
    let report = fsck_sim(&sim);
    let found = assert_damage_in(&report, Structure::Journal, &segment, true);
    assert!(found.iter().all(|p| p.offset.is_some_and(|o| o <= 3 * 512)));
}

#[tokio::test]
async fn truncated_segment_is_damage_not_a_torn_tail() {
    let (sim, _) = built_sim(13).await;
    let segment = middle_segment(&sim);
    let len = sim.current_bytes(&segment).unwrap().len() as u64;
    truncate(&sim, &segment, len / 2 + 3);
    let report = fsck_sim(&sim);
    assert_damage_in(&report, Structure::Journal, &segment, true);
    assert!(report
        .problems
        .iter()
        .all(|p| !matches!(p.kind, ProblemKind::TornTail { .. })));
}

#[tokio::test]
async fn deleted_segment_is_an_index_gap_reported_as_a_range() {
    let (sim, _) = built_sim(14).await;
    let all = segments(&sim);
    let victim = all[all.len() / 2].clone();
    let next = all[all.len() / 2 + 1].clone();
    delete(&sim, &victim);
    let report = fsck_sim(&sim);
    let found = assert_damage_in(&report, Structure::Journal, &next, true);
    let gap = found
        .iter()
        .find_map(|p| match p.kind {
            ProblemKind::IndexGap { from, to } => Some((from, to)),
            _ => None,
        })
        .expect("an index gap");
    let first_of_next: u64 = next
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("segment names are indices");
    assert_eq!(
        gap.1,
        first_of_next - 1,
        "the gap ends before the next segment"
    );
    assert!(gap.0 <= gap.1);
}

#[tokio::test]
async fn misdirected_write_in_a_segment_is_reported() {
    let (sim, _) = built_sim(15).await;
    let segment = middle_segment(&sim);
    misdirect(&sim, &segment, 512, 2048, 512);
    let report = fsck_sim(&sim);
    assert_damage_in(&report, Structure::Journal, &segment, true);
}

#[tokio::test]
async fn torn_tail_is_noted_and_the_dir_stays_healthy() {
    let (sim, _) = built_sim(16).await;
    let last = segments(&sim).last().unwrap().clone();
    let len = sim.current_bytes(&last).unwrap().len() as u64;
    sim.corrupt_bytes(&last, len, &[0xA5; 300]).unwrap();
    let report = fsck_sim(&sim);
    assert!(report.is_healthy(), "{:#?}", report.problems);
    let torn = report
        .problems
        .iter()
        .find(|p| matches!(p.kind, ProblemKind::TornTail { .. }))
        .expect("the torn tail is noted");
    assert_eq!(torn.file, last.display().to_string());
    assert_eq!(torn.offset, Some(len));
}

#[tokio::test]
async fn unreadable_sector_in_a_segment_is_damage_at_that_sector() {
    let (sim, _) = built_sim(17).await;
    let segment = middle_segment(&sim);
    sim.latent_sector_error(&segment, 3).unwrap();
    let report = fsck_sim(&sim);
    let found = assert_damage_in(&report, Structure::Journal, &segment, true);
    assert!(
        found
            .iter()
            .any(|p| p.kind == ProblemKind::Unreadable && p.offset == Some(3 * 512)),
        "{found:#?}"
    );
}
