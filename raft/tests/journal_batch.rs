//! Guards against the coalesced write of a batch going wrong: records of a
//! batch misplaced or unreadable, a batch torn by a power cut mistaken for
//! damage or cut in the wrong place, a refused batch half appended, and a
//! batch that still costs one write per record.

mod journal_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use finkfs_raft::journal::{
    Append, HashedPayload, Journal, JournalError, JournalOptions, WRITE_BYTES_MAX,
};
use finkfs_simdisk::{CrashPolicy, FaultOp, IoFault, SimDisk, SECTOR_BYTES};
use journal_support::*;

/// Payloads for `indices` at `term`, hashed, each `len` bytes long.
fn hashed(indices: std::ops::Range<u64>, term: u64, len: usize) -> Vec<HashedPayload<Vec<u8>>> {
    indices
        .map(|index| {
            let mut bytes = payload(index, term, 7).repeat(len / 8 + 1);
            bytes.truncate(len);
            HashedPayload::new(bytes)
        })
        .collect()
}

fn appends(first: u64, term: u64, payloads: &[HashedPayload<Vec<u8>>]) -> Vec<Append<'_, Vec<u8>>> {
    (first..)
        .zip(payloads)
        .map(|(index, payload)| Append {
            index,
            term,
            payload,
        })
        .collect()
}

fn counting(sim: &SimDisk) -> CountingDisk {
    CountingDisk::new(sim.disk_ref())
}

#[test]
fn batch_within_one_write_costs_one_write_and_every_record_reads_back() {
    let sim = SimDisk::new(1);
    let disk = counting(&sim);
    let options = JournalOptions::default();
    let (mut journal, _) = Journal::open(Arc::new(disk.clone()), dir(), options).unwrap();
    journal.append(1, 1, b"first").unwrap();
    journal.sync().unwrap();

    let payloads = hashed(2..18, 1, 3001);
    let before = disk.writes.load(Ordering::SeqCst);
    journal.append_batch(&appends(2, 1, &payloads)).unwrap();
    assert_eq!(disk.writes.load(Ordering::SeqCst) - before, 1);

    // Readable before the sync, verified from the page cache.
    for (index, expected) in (2..18).zip(&payloads) {
        assert_eq!(journal.read(index).unwrap().payload, expected.bytes());
    }
    journal.sync().unwrap();
    drop(journal);
    sim.power_cut_with(CrashPolicy::LoseUnsynced);
    let (journal, report) = open(&sim, &JournalOptions::default());
    assert!(
        report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
    assert_eq!(journal.last(), Some((17, 1)));
    for (index, expected) in (2..18).zip(&payloads) {
        assert_eq!(journal.read(index).unwrap().payload, expected.bytes());
    }
}

#[test]
fn batch_larger_than_one_write_is_split_at_the_write_ceiling() {
    let sim = SimDisk::new(2);
    let disk = counting(&sim);
    let (mut journal, _) =
        Journal::open(Arc::new(disk.clone()), dir(), JournalOptions::default()).unwrap();
    journal.append(1, 1, b"first").unwrap();
    // 48 records of 64 KiB, each with its header: a write takes as many
    // whole records as fit in WRITE_BYTES_MAX.
    let record = 64 << 10;
    let payloads = hashed(2..50, 1, record);
    let before = disk.writes.load(Ordering::SeqCst);
    journal.append_batch(&appends(2, 1, &payloads)).unwrap();
    let per_write = WRITE_BYTES_MAX / record_bytes(record);
    assert!(per_write > 1);
    let expected = 48u64.div_ceil(per_write);
    assert_eq!(disk.writes.load(Ordering::SeqCst) - before, expected);
    journal.sync().unwrap();
    for (index, expected) in (2..50).zip(&payloads) {
        assert_eq!(journal.read(index).unwrap().payload, expected.bytes());
    }
}

#[test]
fn batch_torn_inside_its_second_record_keeps_the_first_and_cuts_the_rest() {
    let sim = SimDisk::new(3);
    let options = JournalOptions::default();
    let (mut journal, _) = open(&sim, &options);
    fill(&mut journal, 1..=4, 1);
    journal.sync().unwrap();
    let payloads = hashed(5..9, 1, 3 * SECTOR_BYTES as usize);
    journal.append_batch(&appends(5, 1, &payloads)).unwrap();
    drop(journal);

    // The whole batch reached the disk but one sector inside record 6:
    // what a power cut during the coalesced write may leave.
    sim.power_cut_with(CrashPolicy::KeepUnsynced);
    let (path, second) = locate(&sim, 6);
    let sector = (second.offset + RECORD_HEADER_BYTES).div_ceil(SECTOR_BYTES);
    assert!((sector + 1) * SECTOR_BYTES <= second.offset + second.bytes);
    sim.zero_sector(&path, sector).unwrap();

    let (journal, report) = open(&sim, &options);
    assert!(
        report.is_clean(),
        "a torn batch reported as damage: {report:?}"
    );
    let torn = report.torn_tail.expect("the torn batch is a torn tail");
    assert_eq!((torn.file, torn.offset), (path, second.offset));
    assert_eq!(journal.last(), Some((5, 1)));
    assert_eq!(journal.read(5).unwrap().payload, payloads[0].bytes());
    assert!(matches!(
        journal.read(6),
        Err(JournalError::NotFound { .. })
    ));
}

#[test]
fn batch_across_segment_rolls_links_and_survives_a_reopen() {
    let sim = SimDisk::new(4);
    let disk = counting(&sim);
    let options = small_segments();
    let (mut journal, _) = Journal::open(Arc::new(disk.clone()), dir(), options.clone()).unwrap();
    let payloads = hashed(1..41, 1, 150);
    let syncs_before = disk.syncs().0;
    journal.append_batch(&appends(1, 1, &payloads)).unwrap();
    let segments = segment_files(&sim).len() as u64;
    assert!(segments > 4, "the batch should roll several times");
    // Each full segment synced before the next one, whose header is synced too.
    assert!(disk.syncs().0 - syncs_before >= 2 * (segments - 1));
    journal.sync().unwrap();
    drop(journal);

    sim.power_cut_with(CrashPolicy::LoseUnsynced);
    let (journal, report) = open(&sim, &options);
    assert!(
        report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
    assert_eq!(report.segments, segments);
    for (index, expected) in (1..41).zip(&payloads) {
        assert_eq!(journal.read(index).unwrap().payload, expected.bytes());
    }
}

#[test]
fn refused_batch_appends_nothing_and_leaves_the_journal_usable() {
    let sim = SimDisk::new(5);
    let options = small_segments();
    let (mut journal, _) = open(&sim, &options);
    fill(&mut journal, 1..=3, 1);
    let payloads = hashed(4..8, 1, 40);
    let mut batch = appends(4, 1, &payloads);
    batch[2].index = 9;
    let refused = journal.append_batch(&batch);
    assert!(
        matches!(
            refused,
            Err(JournalError::NotContiguous {
                expected: 6,
                got: 9
            })
        ),
        "{refused:?}"
    );
    let too_large = hashed(4..5, 1, options.record_bytes_max as usize + 1);
    let mut batch = appends(4, 1, &payloads[..2]);
    batch.push(Append {
        index: 6,
        term: 1,
        payload: &too_large[0],
    });
    assert!(matches!(
        journal.append_batch(&batch),
        Err(JournalError::RecordTooLarge { .. })
    ));
    assert_eq!(journal.last(), Some((3, 1)));
    journal.append_batch(&appends(4, 1, &payloads)).unwrap();
    journal.sync().unwrap();
    assert_eq!(journal.last(), Some((7, 1)));
}

#[test]
fn failed_batch_write_poisons_and_keeps_only_what_was_synced() {
    let sim = SimDisk::new(6);
    let options = JournalOptions::default();
    let (mut journal, _) = open(&sim, &options);
    fill(&mut journal, 1..=3, 1);
    journal.sync().unwrap();
    sim.fail_next(FaultOp::Write, IoFault::Eio, 1);
    let payloads = hashed(4..10, 1, 700);
    assert!(matches!(
        journal.append_batch(&appends(4, 1, &payloads)),
        Err(JournalError::Io { .. })
    ));
    assert!(matches!(
        journal.append(4, 1, b"again"),
        Err(JournalError::Poisoned)
    ));
    assert_eq!(journal.last(), Some((3, 1)));
    drop(journal);
    let (journal, report) = open(&sim, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(journal.last(), Some((3, 1)));
}
