//! Guards against damage that goes unnoticed, is mistaken for a crash (and
//! cut), or is served as data: bit flips, zeroed sectors, garbage, bad
//! headers, missing segments, spliced and misdirected records, lost writes.

mod journal_support;

use std::path::{Path, PathBuf};

use finkfs_raft::journal::{Damage, Journal, JournalError, JournalOptions, RecoveryReport};
use finkfs_seam::Disk;
use finkfs_simdisk::{CrashPolicy, SimDisk};
use journal_support::*;

const TERM: u64 = 2;

/// A fixed-size payload, so records of different journals line up.
fn fixed(index: u64, salt: u8) -> Vec<u8> {
    vec![(index as u8) ^ salt; 64]
}

/// Appends `indices`, syncing after each, so every record proves the ones
/// before it synced.
fn fill_synced(journal: &mut Journal, indices: std::ops::RangeInclusive<u64>, salt: u8) {
    for index in indices {
        journal.append(index, TERM, &fixed(index, salt)).unwrap();
        journal.sync().unwrap();
    }
}

fn journal_with(disk: &SimDisk, options: &JournalOptions, last: u64) {
    let (mut journal, _) = open(disk, options);
    fill_synced(&mut journal, 1..=last, 0);
}

fn reopen(disk: &SimDisk, options: &JournalOptions) -> (Journal, RecoveryReport) {
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    open(disk, options)
}

fn assert_intact(journal: &Journal, indices: impl IntoIterator<Item = u64>) {
    for index in indices {
        let record = journal
            .read(index)
            .unwrap_or_else(|e| panic!("read {index}: {e}"));
        assert_eq!(record.payload, fixed(index, 0), "record {index}");
    }
}

/// The read of `index` fails as corrupt, naming `file` and `offset`.
fn assert_corrupt(journal: &Journal, index: u64, file: &Path, offset: u64) {
    match journal.read(index) {
        Err(JournalError::Corrupt {
            file: f,
            offset: o,
            index: i,
            ..
        }) => {
            assert_eq!((f.as_path(), o, i), (file, offset, Some(index)));
        }
        other => panic!("read {index}: expected Corrupt, got {other:?}"),
    }
}

fn corrupt_record(
    report: &RecoveryReport,
) -> (PathBuf, u64, Option<std::ops::RangeInclusive<u64>>) {
    match report.damage.as_slice() {
        [Damage::CorruptRecord {
            file,
            offset,
            indices,
            ..
        }] => (file.clone(), *offset, indices.clone()),
        other => panic!("expected one corrupt record, got {other:?}"),
    }
}

fn file_len(disk: &SimDisk, path: &Path) -> usize {
    disk.current_bytes(path).unwrap().len()
}

#[test]
fn bit_flip_in_a_middle_record_is_corruption_never_truncated() {
    let disk = SimDisk::new(1);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let (path, rec) = locate(&disk, 10);
    disk.flip_bit(&path, (rec.offset + RECORD_HEADER_BYTES + 7) * 8 + 3)
        .unwrap();
    let len = file_len(&disk, &path);
    let (journal, report) = reopen(&disk, &options);
    assert!(!report.is_clean());
    assert_eq!(report.torn_tail, None);
    assert_eq!(
        corrupt_record(&report),
        (path.clone(), rec.offset, Some(10..=10))
    );
    assert_eq!(
        file_len(&disk, &path),
        len,
        "damage followed by valid records must not be cut"
    );
    assert_eq!(journal.last(), Some((20, TERM)));
    assert_corrupt(&journal, 10, &path, rec.offset);
    assert_intact(&journal, (1..=9).chain(11..=20));
}

#[test]
fn bit_flip_in_the_head_record_is_corruption() {
    let disk = SimDisk::new(2);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let (path, rec) = locate(&disk, 1);
    disk.flip_bit(&path, (rec.offset + 9) * 8).unwrap();
    let (journal, report) = reopen(&disk, &options);
    assert_eq!(
        corrupt_record(&report),
        (path.clone(), rec.offset, Some(1..=1))
    );
    assert_eq!(journal.first_index(), Some(1));
    assert_corrupt(&journal, 1, &path, rec.offset);
    assert_intact(&journal, 2..=20);
}

#[test]
fn damaged_tail_record_of_an_earlier_segment_is_corruption() {
    let disk = SimDisk::new(3);
    let options = small_segments();
    journal_with(&disk, &options, 40);
    let first = segment_files(&disk)[0].clone();
    let tail = *placed_records(&disk.current_bytes(&first).unwrap())
        .last()
        .unwrap();
    disk.flip_bit(&first, (tail.offset + RECORD_HEADER_BYTES) * 8)
        .unwrap();
    let len = file_len(&disk, &first);
    let (journal, report) = reopen(&disk, &options);
    assert_eq!(
        corrupt_record(&report),
        (first.clone(), tail.offset, Some(tail.index..=tail.index))
    );
    assert_eq!(file_len(&disk, &first), len);
    assert_corrupt(&journal, tail.index, &first, tail.offset);
    assert_intact(&journal, (1..tail.index).chain(tail.index + 1..=40));
}

#[test]
fn damaged_last_record_of_the_last_segment_is_cut_as_a_torn_tail() {
    // Nothing after it can prove it was synced: indistinguishable from a
    // write torn by a crash (the classic limit of a log tail).
    let disk = SimDisk::new(4);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let (path, rec) = locate(&disk, 20);
    disk.flip_bit(&path, (rec.offset + RECORD_HEADER_BYTES + 1) * 8)
        .unwrap();
    let (journal, report) = reopen(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    let torn = report.torn_tail.expect("torn tail");
    assert_eq!(
        (torn.file, torn.offset, torn.bytes_cut),
        (path.clone(), rec.offset, rec.bytes)
    );
    assert_eq!(file_len(&disk, &path) as u64, rec.offset);
    assert_eq!(journal.last(), Some((19, TERM)));
}

#[test]
fn damage_below_a_later_records_synced_length_is_corruption() {
    // Two sync batches: the second batch's records prove the first synced.
    let disk = SimDisk::new(5);
    let options = JournalOptions::default();
    let (mut journal, _) = open(&disk, &options);
    for index in 1..=10 {
        journal.append(index, TERM, &fixed(index, 0)).unwrap();
    }
    journal.sync().unwrap();
    for index in 11..=20 {
        journal.append(index, TERM, &fixed(index, 0)).unwrap();
    }
    journal.sync().unwrap();
    drop(journal);
    let (path, rec) = locate(&disk, 5);
    disk.flip_bit(&path, (rec.offset + 40) * 8).unwrap();
    let (journal, report) = reopen(&disk, &options);
    assert_eq!(
        corrupt_record(&report),
        (path.clone(), rec.offset, Some(5..=5))
    );
    assert_intact(&journal, (1..=4).chain(6..=20));
}

#[test]
fn damage_in_the_last_synced_batch_is_cut_like_a_torn_write() {
    // One fsync per batch: until a later batch proves it, the last batch
    // may have been torn by a crash in any order, so damage there is cut
    // with the records after it (docs/format/journal.md, "limits").
    let disk = SimDisk::new(6);
    let options = JournalOptions::default();
    let (mut journal, _) = open(&disk, &options);
    fill_synced(&mut journal, 1..=10, 0);
    for index in 11..=20 {
        journal.append(index, TERM, &fixed(index, 0)).unwrap();
    }
    journal.sync().unwrap();
    drop(journal);
    let (path, rec) = locate(&disk, 15);
    disk.flip_bit(&path, (rec.offset + 40) * 8).unwrap();
    let (journal, report) = reopen(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.torn_tail.map(|t| t.offset), Some(rec.offset));
    assert_eq!(journal.last(), Some((14, TERM)));
    assert_intact(&journal, 1..=14);
}

#[test]
fn zeroed_sector_in_the_middle_is_corruption() {
    let disk = SimDisk::new(7);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 30);
    let (path, rec) = locate(&disk, 12);
    let sector = rec.offset / 512 + 1;
    let hit: Vec<u64> = placed_records(&disk.durable_bytes(&path).unwrap())
        .iter()
        .filter(|p| p.offset < (sector + 1) * 512 && p.offset + p.bytes > sector * 512)
        .map(|p| p.index)
        .collect();
    disk.zero_sector(&path, sector).unwrap();
    let len = file_len(&disk, &path);
    let (journal, report) = reopen(&disk, &options);
    assert!(!report.is_clean());
    let lost: Vec<u64> = report
        .damage
        .iter()
        .flat_map(|d| match d {
            Damage::CorruptRecord {
                indices: Some(r), ..
            } => r.clone().collect::<Vec<_>>(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(lost, hit);
    assert_eq!(file_len(&disk, &path), len);
    for index in 1..=30 {
        if hit.contains(&index) {
            assert!(matches!(
                journal.read(index),
                Err(JournalError::Corrupt { .. })
            ));
        } else {
            assert_intact(&journal, [index]);
        }
    }
}

#[test]
fn garbage_in_the_middle_is_corruption() {
    let disk = SimDisk::new(8);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let (path, rec) = locate(&disk, 8);
    let garbage: Vec<u8> = (0..50u32).map(|i| (i * 151 + 7) as u8).collect();
    disk.corrupt_bytes(&path, rec.offset + 10, &garbage)
        .unwrap();
    let (journal, report) = reopen(&disk, &options);
    assert_eq!(
        corrupt_record(&report),
        (path.clone(), rec.offset, Some(8..=8))
    );
    assert_corrupt(&journal, 8, &path, rec.offset);
    assert_intact(&journal, (1..=7).chain(9..=20));
}

#[test]
fn bad_segment_header_is_reported_and_its_records_stay_readable() {
    let disk = SimDisk::new(9);
    let options = small_segments();
    journal_with(&disk, &options, 60);
    let files = segment_files(&disk);
    assert!(files.len() >= 4);
    for (n, file) in [&files[0], &files[1], files.last().unwrap()]
        .into_iter()
        .enumerate()
    {
        disk.flip_bit(file, 8 * 20 + n as u64).unwrap();
    }
    let lens: Vec<usize> = files.iter().map(|f| file_len(&disk, f)).collect();
    let (journal, report) = reopen(&disk, &options);
    let bad: Vec<&PathBuf> = report
        .damage
        .iter()
        .map(|d| match d {
            Damage::BadSegmentHeader { file, .. } => file,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(bad, vec![&files[0], &files[1], files.last().unwrap()]);
    assert_eq!(report.torn_tail, None);
    assert_eq!(
        files.iter().map(|f| file_len(&disk, f)).collect::<Vec<_>>(),
        lens
    );
    assert_intact(&journal, 1..=60);
}

#[test]
fn torn_tail_is_cut_on_open_and_only_reported_by_scan() {
    let disk = SimDisk::new(10);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 11);
    let (path, rec) = locate(&disk, 11);
    let file = disk.open(&path).unwrap();
    file.set_len(rec.offset + rec.bytes - 30).unwrap();
    file.sync().unwrap();
    drop(file);
    let before = disk.current_bytes(&path).unwrap();
    let scanned = Journal::scan(&disk, &dir(), &options).unwrap();
    assert_eq!(
        disk.current_bytes(&path).unwrap(),
        before,
        "scan must change nothing"
    );
    let torn = scanned.torn_tail.clone().expect("torn tail");
    assert_eq!(
        (torn.file.clone(), torn.offset, torn.bytes_cut),
        (path.clone(), rec.offset, rec.bytes - 30)
    );
    assert!(scanned.is_clean());
    let (journal, report) = reopen(&disk, &options);
    assert_eq!(report.torn_tail, Some(torn));
    assert_eq!(report.last, Some((10, TERM)));
    assert_eq!(file_len(&disk, &path) as u64, rec.offset);
    assert_intact(&journal, 1..=10);
}

#[test]
fn torn_segment_creation_is_removed_on_open() {
    for len in [0usize, 1, 40, 79, 80] {
        let disk = SimDisk::new(11 + len as u64);
        let options = JournalOptions::default();
        journal_with(&disk, &options, 20);
        let torn = segment_path(21);
        let file = disk.create(&torn).unwrap();
        file.write_at(0, &vec![0x5a; len]).unwrap();
        file.sync().unwrap();
        disk.sync_dir(&dir()).unwrap();
        drop(file);
        let scanned = Journal::scan(&disk, &dir(), &options).unwrap();
        assert!(disk.exists(&torn).unwrap());
        let expected = finkfs_raft::journal::TornTail {
            file: torn.clone(),
            offset: 0,
            bytes_cut: len as u64,
            first_index: 21,
            records_max: 0,
        };
        assert_eq!(scanned.torn_tail, Some(expected.clone()), "len {len}");
        let (mut journal, report) = reopen(&disk, &options);
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.torn_tail, Some(expected));
        assert!(!disk.exists(&torn).unwrap());
        journal.append(21, TERM, &fixed(21, 0)).unwrap();
        journal.sync().unwrap();
        assert_intact(&journal, 1..=21);
    }
}

#[test]
fn missing_middle_segment_is_a_gap() {
    let disk = SimDisk::new(12);
    let options = small_segments();
    journal_with(&disk, &options, 60);
    let files = segment_files(&disk);
    let gone = placed_records(&disk.current_bytes(&files[1]).unwrap());
    let (first_gone, last_gone) = (gone[0].index, gone.last().unwrap().index);
    disk.remove(&files[1]).unwrap();
    disk.sync_dir(&dir()).unwrap();
    let (journal, report) = reopen(&disk, &options);
    let expected = Damage::Gap {
        file: files[2].clone(),
        offset: 0,
        after_index: first_gone - 1,
        next_index: last_gone + 1,
    };
    assert_eq!(report.damage, vec![expected]);
    for index in first_gone..=last_gone {
        assert_corrupt(&journal, index, &files[2], 0);
    }
    assert_intact(&journal, (1..first_gone).chain(last_gone + 1..=60));
}

#[test]
fn record_spliced_from_another_journal_is_a_chain_break() {
    let disk = SimDisk::new(13);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let other = PathBuf::from("groups/2/journal");
    {
        let (mut journal, _) =
            Journal::open(disk.disk_ref(), other.clone(), options.clone()).unwrap();
        // Same indices, terms and sizes; the first record differs, so the
        // chains differ from there on.
        journal.append(1, TERM, &fixed(1, 0x55)).unwrap();
        journal.sync().unwrap();
        for index in 2..=20 {
            journal.append(index, TERM, &fixed(index, 0)).unwrap();
            journal.sync().unwrap();
        }
    }
    let (path, rec) = locate(&disk, 10);
    let foreign = disk
        .current_bytes(other.join(path.file_name().unwrap()))
        .unwrap();
    let start = rec.offset as usize;
    disk.corrupt_bytes(
        &path,
        rec.offset,
        &foreign[start..start + rec.bytes as usize],
    )
    .unwrap();
    let (journal, report) = reopen(&disk, &options);
    assert_eq!(
        report.damage,
        vec![Damage::ChainBreak {
            file: path.clone(),
            offset: rec.offset,
            index: 10
        }]
    );
    assert_corrupt(&journal, 10, &path, rec.offset);
    assert_intact(&journal, (1..=9).chain(11..=20));
}

#[test]
fn misdirected_copy_of_a_record_is_corruption() {
    let disk = SimDisk::new(14);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let (path, at10) = locate(&disk, 10);
    let (_, at12) = locate(&disk, 12);
    for (copied, over) in [(3u64, at10), (17, at12)] {
        let (_, from) = locate(&disk, copied);
        let bytes = disk.current_bytes(&path).unwrap();
        let record = &bytes[from.offset as usize..(from.offset + from.bytes) as usize];
        disk.corrupt_bytes(&path, over.offset, record).unwrap();
    }
    let (journal, report) = reopen(&disk, &options);
    let found: Vec<_> = report
        .damage
        .iter()
        .map(|d| match d {
            Damage::CorruptRecord {
                offset, indices, ..
            } => (*offset, indices.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        found,
        vec![(at10.offset, Some(10..=10)), (at12.offset, Some(12..=12))]
    );
    assert_corrupt(&journal, 10, &path, at10.offset);
    assert_corrupt(&journal, 12, &path, at12.offset);
    assert_intact(&journal, (1..=9).chain([11]).chain(13..=20));
}

#[test]
fn simulated_misdirected_append_is_detected_and_never_served() {
    for seed in 0..20 {
        let disk = SimDisk::new(100 + seed);
        let options = JournalOptions::default();
        let (mut journal, _) = open(&disk, &options);
        fill_synced(&mut journal, 1..=20, 0);
        disk.misdirect_next_write(DIR);
        fill_synced(&mut journal, 21..=40, 0);
        drop(journal);
        let (journal, report) = reopen(&disk, &options);
        assert!(
            !report.is_clean(),
            "seed {seed}: a misdirected write went unnoticed"
        );
        assert!(
            matches!(journal.read(21), Err(JournalError::Corrupt { .. })),
            "seed {seed}"
        );
        for index in 1..=40 {
            if let Ok(record) = journal.read(index) {
                assert_eq!(record.payload, fixed(index, 0), "seed {seed} index {index}");
            }
        }
    }
}

#[test]
fn lost_write_proven_synced_by_later_records_is_corruption() {
    let disk = SimDisk::new(15);
    let options = JournalOptions::default();
    let (mut journal, _) = open(&disk, &options);
    fill_synced(&mut journal, 1..=10, 0);
    disk.lose_next_write(DIR);
    fill_synced(&mut journal, 11..=20, 0);
    drop(journal);
    let (path, _) = locate(&disk, 10);
    let (journal, report) = reopen(&disk, &options);
    let (file, _, indices) = corrupt_record(&report);
    assert_eq!((file, indices), (path, Some(11..=11)));
    assert!(matches!(
        journal.read(11),
        Err(JournalError::Corrupt { .. })
    ));
    assert_intact(&journal, (1..=10).chain(12..=20));
}

#[test]
fn range_read_over_damage_fails_instead_of_returning_it() {
    let disk = SimDisk::new(16);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let (path, rec) = locate(&disk, 10);
    disk.flip_bit(&path, (rec.offset + 100) * 8).unwrap();
    let (journal, _) = reopen(&disk, &options);
    let reader = journal.reader();
    assert!(matches!(
        reader.read_range(5..15, u64::MAX),
        Err(JournalError::Corrupt {
            index: Some(10),
            ..
        })
    ));
    assert_eq!(reader.read_range(5..10, u64::MAX).unwrap().len(), 5);
    assert_eq!(reader.read_range(11..15, u64::MAX).unwrap().len(), 4);
}

#[test]
fn damage_after_open_is_caught_by_the_read_itself() {
    let disk = SimDisk::new(17);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let (journal, report) = reopen(&disk, &options);
    assert!(report.is_clean());
    let (path, rec) = locate(&disk, 7);
    disk.flip_bit(&path, (rec.offset + RECORD_HEADER_BYTES + 3) * 8)
        .unwrap();
    assert_corrupt(&journal, 7, &path, rec.offset);
    disk.flip_bit(&path, (rec.offset + RECORD_HEADER_BYTES + 3) * 8)
        .unwrap();
    assert_intact(&journal, [7]);
}

#[test]
fn unreadable_sector_fails_open_with_an_io_error_naming_file_and_offset() {
    let disk = SimDisk::new(18);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let (path, rec) = locate(&disk, 9);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    disk.latent_sector_error(&path, rec.offset / 512).unwrap();
    match Journal::open(disk.disk_ref(), dir(), options.clone()) {
        Err(JournalError::Io { file, offset, .. }) => {
            assert_eq!(file, path);
            assert!(offset <= rec.offset, "offset {offset}");
        }
        other => panic!("expected an I/O error, got {:?}", other.map(|(_, r)| r)),
    }
    assert!(matches!(
        Journal::scan(&disk, &dir(), &options),
        Err(JournalError::Io { .. })
    ));
}

#[test]
fn damaged_purge_marker_is_reported_and_removed() {
    let disk = SimDisk::new(19);
    let options = JournalOptions::default();
    let (mut journal, _) = open(&disk, &options);
    fill_synced(&mut journal, 1..=20, 0);
    journal.purge_up_to(5).unwrap();
    drop(journal);
    let marker = dir().join("purged");
    disk.flip_bit(&marker, 70).unwrap();
    let (journal, report) = reopen(&disk, &options);
    assert!(
        matches!(report.damage.as_slice(), [Damage::BadPurgeMarker { file, .. }] if *file == marker)
    );
    assert!(!disk.exists(&marker).unwrap());
    // The purged records verify, so they simply read again.
    assert_eq!(journal.first_index(), Some(1));
    assert_intact(&journal, 1..=20);
}

#[test]
fn scan_changes_nothing_and_agrees_with_open() {
    let disk = SimDisk::new(20);
    let options = small_segments();
    journal_with(&disk, &options, 50);
    let (path, rec) = locate(&disk, 20);
    disk.flip_bit(&path, (rec.offset + 99) * 8).unwrap();
    let last = segment_files(&disk).last().unwrap().clone();
    let file = disk.open(&last).unwrap();
    let len = file.len().unwrap();
    file.set_len(len - 9).unwrap();
    file.sync().unwrap();
    drop(file);
    let before: Vec<Vec<u8>> = disk
        .file_paths()
        .iter()
        .map(|p| disk.current_bytes(p).unwrap())
        .collect();
    let scanned = Journal::scan(&disk, &dir(), &options).unwrap();
    let after: Vec<Vec<u8>> = disk
        .file_paths()
        .iter()
        .map(|p| disk.current_bytes(p).unwrap())
        .collect();
    assert_eq!(before, after);
    let (_, opened) = reopen(&disk, &options);
    assert_eq!(scanned.damage, opened.damage);
    assert_eq!(scanned.torn_tail, opened.torn_tail);
    assert!(scanned.torn_tail.is_some());
    assert_eq!(scanned.damage.len(), 1);
}

#[test]
fn scan_of_an_absent_directory_is_an_empty_clean_report() {
    let disk = SimDisk::new(21);
    let report = Journal::scan(&disk, Path::new("nowhere"), &JournalOptions::default()).unwrap();
    assert!(report.is_clean());
    assert_eq!((report.segments, report.records, report.last), (0, 0, None));
}

#[test]
fn zeroed_end_of_a_last_segment_with_a_bad_header_is_damage_not_cut() {
    let disk = SimDisk::new(22);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let (path, rec) = locate(&disk, 18);
    let len = file_len(&disk, &path);
    disk.flip_bit(&path, 8 * 12).unwrap();
    disk.corrupt_bytes(&path, rec.offset, &vec![0u8; len - rec.offset as usize])
        .unwrap();
    let (journal, report) = reopen(&disk, &options);
    assert_eq!(report.torn_tail, None);
    assert_eq!(
        file_len(&disk, &path),
        len,
        "a damaged segment is evidence, never cut"
    );
    assert!(matches!(&report.damage[0], Damage::BadSegmentHeader { file, .. } if *file == path));
    assert!(matches!(
        &report.damage[1..],
        [Damage::CorruptRecord { file, offset, .. }] if *file == path && *offset == rec.offset
    ));
    assert_eq!(journal.last(), Some((17, TERM)));
    assert_intact(&journal, 1..=17);
}

#[test]
fn zeroed_head_of_the_first_segment_loses_indices_from_its_name() {
    let disk = SimDisk::new(23);
    let options = JournalOptions::default();
    journal_with(&disk, &options, 20);
    let files = segment_files(&disk);
    assert_eq!(files.len(), 1);
    // The header and the first records of the only segment are zeroed; the
    // records after them verify. Index 1 (the file name's first index) is
    // lost, not the start of a journal that begins later.
    disk.corrupt_bytes(&files[0], 0, &[0u8; 512]).unwrap();
    let (journal, report) = reopen(&disk, &options);
    assert_eq!(report.torn_tail, None);
    let first_valid = (1..=20)
        .find(|&index| journal.read(index).is_ok())
        .expect("records after the zeroed sector verify");
    assert!(first_valid > 1);
    assert!(matches!(
        &report.damage[1..],
        [Damage::CorruptRecord { indices: Some(lost), .. }]
            if *lost == (1..=first_valid - 1)
    ));
    assert_eq!(journal.first_index(), Some(1));
    assert_eq!(journal.first_damaged_index(), Some(1));
    assert_corrupt(&journal, 1, &files[0], 80);
    assert_intact(&journal, first_valid..=20);
}

/// Raft truncates a follower after its match point; when the record there
/// is damaged (the leader's entry at that index matched by term alone), the
/// truncation still happens: the damaged bytes stay reported as damage, the
/// records after them go, and new records follow in a new segment.
fn truncate_after_damaged_record(options: &JournalOptions, damage_after_open: bool) {
    let disk = SimDisk::new(21);
    journal_with(&disk, options, 20);
    let (path, rec) = locate(&disk, 10);
    let flip = (rec.offset + RECORD_HEADER_BYTES + 3) * 8;
    let mut journal = if damage_after_open {
        let (journal, report) = reopen(&disk, options);
        assert!(report.is_clean());
        disk.flip_bit(&path, flip).unwrap();
        journal
    } else {
        disk.flip_bit(&path, flip).unwrap();
        let (journal, report) = reopen(&disk, options);
        assert_eq!(corrupt_record(&report).2, Some(10..=10));
        journal
    };
    journal.truncate_after(10).unwrap();
    assert_corrupt(&journal, 10, &path, rec.offset);
    assert!(matches!(
        journal.read(11),
        Err(JournalError::NotFound { index: 11 })
    ));
    for index in 11..=15 {
        journal.append(index, TERM + 1, &fixed(index, 1)).unwrap();
    }
    journal.sync().unwrap();
    assert!(disk.exists(&segment_path(11)).unwrap());

    let (journal, report) = reopen(&disk, options);
    let (file, offset, indices) = corrupt_record(&report);
    assert_eq!((file.as_path(), indices), (path.as_path(), Some(10..=10)));
    assert!(offset <= rec.offset);
    assert_intact(&journal, 1..=9);
    assert_corrupt(&journal, 10, &path, offset);
    for index in 11..=15 {
        let record = journal.read(index).unwrap();
        assert_eq!((record.term, record.payload), (TERM + 1, fixed(index, 1)));
    }
    assert!(matches!(
        journal.read(16),
        Err(JournalError::NotFound { .. })
    ));
}

#[test]
fn truncating_after_a_damaged_record_keeps_it_and_goes_on_in_a_new_segment() {
    truncate_after_damaged_record(&JournalOptions::default(), false);
}

#[test]
fn truncating_after_a_record_damaged_since_open_keeps_it_too() {
    truncate_after_damaged_record(&JournalOptions::default(), true);
}

#[test]
fn truncating_after_a_damaged_record_removes_later_segments() {
    truncate_after_damaged_record(&small_segments(), false);
}
