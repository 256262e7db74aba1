//! Guards against records that do not come back exactly as appended: across
//! reopen, segment rolls, truncation, purge and a new chain after purge-all.

mod journal_support;

use std::sync::Arc;

use finkfs_raft::journal::{HashedPayload, Journal, JournalError, JournalOptions};
use finkfs_seam::RealDisk;
use finkfs_simdisk::{CrashPolicy, SimDisk};
use journal_support::*;

fn assert_holds(journal: &Journal, indices: std::ops::RangeInclusive<u64>, term: u64) {
    for index in indices {
        let record = journal
            .read(index)
            .unwrap_or_else(|e| panic!("read {index}: {e}"));
        assert_eq!((record.index, record.term), (index, term));
        assert_eq!(
            record.payload,
            payload(index, term, 0),
            "payload of {index}"
        );
    }
}

#[test]
fn append_sync_reopen_round_trip_on_real_disk() {
    let root = tempfile::tempdir().unwrap();
    let disk = Arc::new(RealDisk::open(root.path().join("data")).unwrap());
    {
        let (mut journal, report) =
            Journal::open(disk.clone(), dir(), JournalOptions::default()).unwrap();
        assert!(report.is_clean());
        assert_eq!(report.last, None);
        fill(&mut journal, 1..=200, 3);
        journal.sync().unwrap();
    }
    let (journal, report) = Journal::open(disk, dir(), JournalOptions::default()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.records, 200);
    assert_eq!((report.first_index, report.last), (Some(1), Some((200, 3))));
    assert_eq!(
        (journal.first_index(), journal.last()),
        (Some(1), Some((200, 3)))
    );
    assert_holds(&journal, 1..=200, 3);
}

#[test]
fn multi_segment_roll_keeps_every_record_in_order() {
    let disk = SimDisk::new(1);
    let options = small_segments();
    let (mut journal, _) = open(&disk, &options);
    fill(&mut journal, 10..=120, 2);
    journal.sync().unwrap();
    let files = segment_files(&disk);
    assert!(
        files.len() > 5,
        "expected many segments, got {}",
        files.len()
    );
    assert_eq!(files[0], segment_path(10));
    for file in &files {
        let len = disk.current_bytes(file).unwrap().len() as u64;
        let lone_record = placed_records(&disk.current_bytes(file).unwrap()).len() == 1;
        assert!(
            len <= options.segment_bytes_max || lone_record,
            "{file:?} is {len} bytes"
        );
    }
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.segments, files.len() as u64);
    assert_holds(&journal, 10..=120, 2);
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let disk = SimDisk::new(2);
    let options = small_segments();
    let (mut journal, _) = open(&disk, &options);
    fill(&mut journal, 1..=3, 1);
    journal.append(4, 1, &vec![7u8; 5000]).unwrap();
    fill(&mut journal, 5..=6, 1);
    journal.sync().unwrap();
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(journal.read(4).unwrap().payload, vec![7u8; 5000]);
    assert_holds(&journal, 5..=6, 1);
}

#[test]
fn truncate_after_across_segments_is_durable_across_power_cut() {
    let disk = SimDisk::new(3);
    let options = small_segments();
    let (mut journal, _) = open(&disk, &options);
    fill(&mut journal, 1..=100, 1);
    journal.sync().unwrap();
    let before = segment_files(&disk).len();
    journal.truncate_after(30).unwrap();
    assert_eq!(journal.last(), Some((30, 1)));
    assert!(matches!(
        journal.read(31),
        Err(JournalError::NotFound { index: 31 })
    ));
    assert!(segment_files(&disk).len() < before);
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (mut journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(journal.last(), Some((30, 1)));
    assert_holds(&journal, 1..=30, 1);
    // The log continues at 31 with a new term, and the old 31.. never return.
    fill(&mut journal, 31..=40, 2);
    journal.sync().unwrap();
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(journal.last(), Some((40, 2)));
    assert_holds(&journal, 31..=40, 2);
}

#[test]
fn truncate_after_makes_unsynced_records_below_it_durable() {
    let disk = SimDisk::new(4);
    let options = JournalOptions::default();
    let (mut journal, _) = open(&disk, &options);
    fill(&mut journal, 1..=10, 1);
    journal.truncate_after(7).unwrap();
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(journal.last(), Some((7, 1)));
    assert_holds(&journal, 1..=7, 1);
}

#[test]
fn purge_up_to_across_segments_is_durable_across_power_cut() {
    let disk = SimDisk::new(5);
    let options = small_segments();
    let (mut journal, _) = open(&disk, &options);
    fill(&mut journal, 1..=100, 1);
    journal.sync().unwrap();
    let before = segment_files(&disk).len();
    journal.purge_up_to(57).unwrap();
    assert_eq!(journal.first_index(), Some(58));
    assert!(matches!(
        journal.read(57),
        Err(JournalError::NotFound { index: 57 })
    ));
    assert!(segment_files(&disk).len() < before);
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.first_index, Some(58));
    assert_eq!(journal.first_index(), Some(58));
    assert!(matches!(
        journal.read(57),
        Err(JournalError::NotFound { index: 57 })
    ));
    assert_holds(&journal, 58..=100, 1);
}

#[test]
fn purge_all_then_a_new_chain_starts_at_any_index() {
    let disk = SimDisk::new(6);
    let options = small_segments();
    let (mut journal, _) = open(&disk, &options);
    fill(&mut journal, 1..=50, 1);
    journal.sync().unwrap();
    journal.purge_up_to(50).unwrap();
    assert_eq!((journal.first_index(), journal.last()), (None, None));
    assert!(segment_files(&disk).is_empty());
    fill(&mut journal, 1000..=1010, 4);
    journal.sync().unwrap();
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (mut journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        (journal.first_index(), journal.last()),
        (Some(1000), Some((1010, 4)))
    );
    assert_holds(&journal, 1000..=1010, 4);
    // A lower index after another purge-all is not hidden by an old purge point.
    journal.purge_up_to(1003).unwrap();
    journal.purge_up_to(2000).unwrap();
    fill(&mut journal, 5..=9, 5);
    journal.sync().unwrap();
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        (journal.first_index(), journal.last()),
        (Some(5), Some((9, 5)))
    );
    assert_holds(&journal, 5..=9, 5);
}

#[test]
fn truncate_below_first_index_empties_the_journal() {
    let disk = SimDisk::new(7);
    let options = small_segments();
    let (mut journal, _) = open(&disk, &options);
    fill(&mut journal, 20..=60, 1);
    journal.sync().unwrap();
    journal.truncate_after(3).unwrap();
    assert_eq!(journal.last(), None);
    assert!(segment_files(&disk).is_empty());
    fill(&mut journal, 4..=6, 2);
    journal.sync().unwrap();
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (journal, _) = open(&disk, &options);
    assert_eq!(
        (journal.first_index(), journal.last()),
        (Some(4), Some((6, 2)))
    );
}

#[test]
fn append_refuses_a_non_contiguous_index_and_an_oversize_payload() {
    let disk = SimDisk::new(8);
    let options = JournalOptions {
        segment_bytes_max: 1 << 20,
        record_bytes_max: 100,
    };
    let (mut journal, _) = open(&disk, &options);
    fill(&mut journal, 5..=6, 1);
    assert!(matches!(
        journal.append(8, 1, b"x"),
        Err(JournalError::NotContiguous {
            expected: 7,
            got: 8
        })
    ));
    assert!(matches!(
        journal.append(6, 1, b"x"),
        Err(JournalError::NotContiguous {
            expected: 7,
            got: 6
        })
    ));
    assert!(matches!(
        journal.append(7, 1, &[0u8; 101]),
        Err(JournalError::RecordTooLarge {
            bytes: 101,
            max: 100
        })
    ));
    journal.append(7, 1, &[0u8; 100]).unwrap();
    assert_eq!(journal.last(), Some((7, 1)));
}

#[test]
fn appended_records_are_readable_before_sync() {
    let disk = SimDisk::new(9);
    let (mut journal, _) = open(&disk, &JournalOptions::default());
    let reader = journal.reader();
    fill(&mut journal, 1..=5, 1);
    assert_eq!(reader.last(), Some((5, 1)));
    assert_eq!(reader.read(3).unwrap().payload, payload(3, 1, 0));
    assert!(matches!(
        reader.read(6),
        Err(JournalError::NotFound { index: 6 })
    ));
}

#[test]
fn read_range_stops_at_the_byte_ceiling_but_returns_at_least_one_record() {
    let disk = SimDisk::new(10);
    let (mut journal, _) = open(&disk, &JournalOptions::default());
    for index in 1..=10 {
        journal.append(index, 1, &[index as u8; 100]).unwrap();
    }
    let reader = journal.reader();
    let all = reader.read_range(1..11, u64::MAX).unwrap();
    assert_eq!(
        all.iter().map(|r| r.index).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(reader.read_range(3..11, 250).unwrap().len(), 2);
    assert_eq!(reader.read_range(3..11, 300).unwrap().len(), 3);
    assert_eq!(reader.read_range(3..11, 1).unwrap().len(), 1);
    assert_eq!(reader.read_range(8..100, u64::MAX).unwrap().len(), 3);
    assert!(reader.read_range(11..20, u64::MAX).unwrap().is_empty());
    journal.purge_up_to(4).unwrap();
    assert!(matches!(
        reader.read_range(2..6, u64::MAX),
        Err(JournalError::NotFound { index: 2 })
    ));
}

#[test]
fn header_only_segment_left_by_a_crash_reopens_empty() {
    let disk = SimDisk::new(11);
    let options = JournalOptions::default();
    let (mut journal, _) = open(&disk, &options);
    // The segment (header, directory entry) is durable; the record is not.
    journal.append(42, 1, b"never synced").unwrap();
    drop(journal);
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let (mut journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(journal.last(), None);
    assert!(segment_files(&disk).is_empty());
    fill(&mut journal, 7..=8, 1);
    assert_eq!(journal.first_index(), Some(7));
}

#[test]
fn payload_hashed_on_another_thread_writes_the_same_record_bytes() {
    let inline = SimDisk::new(7);
    let prehashed = SimDisk::new(7);
    let options = small_segments();
    let (mut by_append, _) = open(&inline, &options);
    let (mut by_append_hashed, _) = open(&prehashed, &options);
    let (tx, rx) = std::sync::mpsc::channel();
    let producer = std::thread::spawn(move || {
        for index in 1..=40u64 {
            tx.send(HashedPayload::new(payload(index, 2, 0))).unwrap();
        }
    });
    for (index, hashed) in (1..=40u64).zip(rx) {
        by_append.append(index, 2, &payload(index, 2, 0)).unwrap();
        by_append_hashed.append_hashed(index, 2, &hashed).unwrap();
    }
    producer.join().unwrap();
    by_append.sync().unwrap();
    by_append_hashed.sync().unwrap();
    let files = segment_files(&inline);
    assert_eq!(files, segment_files(&prehashed));
    for file in &files {
        assert_eq!(
            inline.current_bytes(file).unwrap(),
            prehashed.current_bytes(file).unwrap(),
            "{file:?} differs"
        );
    }
    drop(by_append_hashed);
    let (reopened, report) = open(&prehashed, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_holds(&reopened, 1..=40, 2);
}
