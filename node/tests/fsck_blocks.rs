//! Guards against an fsck that misses a live block that no longer verifies
//! (a bit flip, a zeroed sector, a truncated or deleted pack, a misdirected
//! write), reports it without its pack and offset, or calls an unreadable
//! sector anything but damage.

mod fsck_support;

use std::path::{Path, PathBuf};

use finkfs_node::blocks::RECORD_HEADER_BYTES;
use finkfs_node::fsck::{ProblemKind, Structure};
use finkfs_node::{BlockLocation, BlockReader, ScanItem};
use finkfs_simdisk::SimDisk;
use fsck_support::*;

const HEADER: u64 = RECORD_HEADER_BYTES as u64;

/// The first pack and the records in it (every record of the fixture is
/// live in the index).
fn first_pack(sim: &SimDisk) -> (PathBuf, Vec<BlockLocation>) {
    let reader = BlockReader::read_only(sim.disk_ref(), PathBuf::from(BLOCKS));
    let seq = reader.packs().unwrap()[0];
    let records: Vec<BlockLocation> = reader
        .scan_pack(seq)
        .unwrap()
        .map(|item| match item.unwrap() {
            ScanItem::Record(location) => location,
            other => panic!("the fixture's packs are intact: {other:?}"),
        })
        .collect();
    assert!(records.len() >= 3, "the fixture needs several records");
    (reader.pack_path(seq), records)
}

fn assert_block_damage(
    report: &finkfs_node::fsck::FsckReport,
    pack: &Path,
    offset: u64,
    missing: bool,
) {
    let found = assert_damage_in(report, Structure::Blocks, pack, true);
    let hit = found.iter().find(|p| p.offset == Some(offset));
    let hit = hit.unwrap_or_else(|| panic!("nothing at offset {offset}: {found:#?}"));
    if missing {
        assert!(
            matches!(hit.kind, ProblemKind::MissingBlock { .. }),
            "{hit:#?}"
        );
    } else {
        assert_eq!(hit.kind, ProblemKind::ChecksumMismatch, "{hit:#?}");
    }
}

#[tokio::test]
async fn bit_flip_in_a_live_block_is_a_checksum_mismatch_at_its_record() {
    let (sim, _) = built_sim(31).await;
    let (pack, records) = first_pack(&sim);
    let victim = records[1];
    sim.flip_bit(&pack, (victim.offset + HEADER + 7) * 8)
        .unwrap();
    assert_block_damage(&fsck_sim(&sim), &pack, victim.offset, false);
}

#[tokio::test]
async fn zeroed_sector_in_a_live_block_is_reported_at_its_record() {
    let (sim, _) = built_sim(32).await;
    let (pack, records) = first_pack(&sim);
    let victim = *records
        .iter()
        .find(|r| r.len >= 1024)
        .expect("a large block");
    let sector = (victim.offset + HEADER + 512) / 512;
    sim.zero_sector(&pack, sector).unwrap();
    assert_block_damage(&fsck_sim(&sim), &pack, victim.offset, false);
}

#[tokio::test]
async fn truncated_pack_is_missing_blocks_at_their_offsets() {
    let (sim, _) = built_sim(33).await;
    let (pack, records) = first_pack(&sim);
    let victim = records[records.len() - 2];
    truncate(&sim, &pack, victim.offset + HEADER + 3);
    let report = fsck_sim(&sim);
    assert_block_damage(&report, &pack, victim.offset, true);
    assert_block_damage(&report, &pack, records[records.len() - 1].offset, true);
}

#[tokio::test]
async fn deleted_pack_is_missing_blocks_at_their_offsets() {
    let (sim, _) = built_sim(34).await;
    let (pack, records) = first_pack(&sim);
    delete(&sim, &pack);
    let report = fsck_sim(&sim);
    for record in &records {
        assert_block_damage(&report, &pack, record.offset, true);
    }
}

#[tokio::test]
async fn misdirected_record_write_is_caught_where_it_landed() {
    let (sim, _) = built_sim(35).await;
    let (pack, records) = first_pack(&sim);
    let (from, to) = (records[0], records[1]);
    let len = (HEADER + u64::from(from.len.min(to.len))) as usize;
    misdirect(&sim, &pack, from.offset, to.offset, len);
    assert_block_damage(&fsck_sim(&sim), &pack, to.offset, false);
}

#[tokio::test]
async fn unreadable_sector_is_damage_with_its_offset() {
    let (sim, _) = built_sim(36).await;
    let (pack, records) = first_pack(&sim);
    let sector = (records[1].offset + HEADER) / 512 + 1;
    sim.latent_sector_error(&pack, sector).unwrap();
    let report = fsck_sim(&sim);
    let found = assert_damage_in(&report, Structure::Blocks, &pack, true);
    assert!(
        found
            .iter()
            .any(|p| p.kind == ProblemKind::Unreadable && p.offset == Some(sector * 512)),
        "{found:#?}"
    );
}
