//! Guards against writing on after a failed fsync or write, when the page
//! cache no longer tells what the disk holds: the journal must poison itself
//! until reopened, and a reopen must claim only what is durable.

mod journal_support;

use finkfs_raft::journal::{Journal, JournalError, JournalOptions};
use finkfs_simdisk::{CrashPolicy, FaultOp, IoFault, SimDisk};
use journal_support::*;

fn assert_poisoned(journal: &mut Journal) {
    let next = journal.last().map_or(1, |(index, _)| index + 1);
    assert!(matches!(
        journal.append(next, 1, b"x"),
        Err(JournalError::Poisoned)
    ));
    assert!(matches!(journal.sync(), Err(JournalError::Poisoned)));
    assert!(matches!(
        journal.truncate_after(1),
        Err(JournalError::Poisoned)
    ));
    assert!(matches!(
        journal.purge_up_to(1),
        Err(JournalError::Poisoned)
    ));
}

fn assert_holds(journal: &Journal, indices: std::ops::RangeInclusive<u64>) {
    for index in indices {
        assert_eq!(
            journal.read(index).unwrap().payload,
            payload(index, 1, 0),
            "record {index}"
        );
    }
}

#[test]
fn failed_sync_poisons_until_reopen_and_reopen_claims_only_durable_records() {
    for policy in [
        CrashPolicy::LoseUnsynced,
        CrashPolicy::KeepUnsynced,
        CrashPolicy::Random,
    ] {
        let disk = SimDisk::new(1);
        let options = JournalOptions::default();
        let (mut journal, _) = open(&disk, &options);
        fill(&mut journal, 1..=10, 1);
        journal.sync().unwrap();
        fill(&mut journal, 11..=15, 1);
        disk.fail_next(FaultOp::Sync, IoFault::Eio, 1);
        assert!(matches!(journal.sync(), Err(JournalError::Io { .. })));
        assert_poisoned(&mut journal);
        assert_holds(&journal, 1..=10);
        drop(journal);
        // Reopen without a power cut (the page cache survives a process
        // restart), then cut the power: nothing claimed may vanish.
        let (journal, report) = open(&disk, &options);
        assert!(report.is_clean(), "{report:?}");
        let claimed = journal.last();
        assert_eq!(
            claimed,
            Some((10, 1)),
            "unsynced records are not claimed after a failed sync"
        );
        drop(journal);
        disk.power_cut_with(policy);
        let (journal, report) = open(&disk, &options);
        assert!(report.is_clean(), "{policy:?}: {report:?}");
        assert_eq!(journal.last(), claimed, "{policy:?}");
        assert_holds(&journal, 1..=10);
    }
}

#[test]
fn failed_write_poisons_and_reopen_recovers() {
    for fault in [IoFault::Eio, IoFault::Enospc] {
        let disk = SimDisk::new(2);
        let options = JournalOptions::default();
        let (mut journal, _) = open(&disk, &options);
        fill(&mut journal, 1..=10, 1);
        journal.sync().unwrap();
        disk.fail_next(FaultOp::Write, fault, 1);
        assert!(matches!(
            journal.append(11, 1, &payload(11, 1, 0)),
            Err(JournalError::Io { .. })
        ));
        assert_poisoned(&mut journal);
        drop(journal);
        disk.power_cut();
        let (mut journal, report) = open(&disk, &options);
        assert!(report.is_clean(), "{report:?}");
        assert_holds(&journal, 1..=10);
        fill(&mut journal, 11..=12, 1);
        journal.sync().unwrap();
        assert_holds(&journal, 1..=12);
    }
}

#[test]
fn failed_segment_roll_poisons_and_loses_nothing_synced() {
    for op in [FaultOp::Create, FaultOp::SyncDir, FaultOp::Sync] {
        let disk = SimDisk::new(3);
        let options = small_segments();
        let (mut journal, _) = open(&disk, &options);
        fill(&mut journal, 1..=5, 1);
        journal.sync().unwrap();
        let segments = segment_files(&disk).len();
        disk.fail_next(op, IoFault::Eio, 1);
        let mut index = 6;
        let error = loop {
            match journal.append(index, 1, &payload(index, 1, 0)) {
                Ok(()) => index += 1,
                Err(error) => break error,
            }
            assert!(index < 1000, "{op:?} never failed");
        };
        assert!(matches!(error, JournalError::Io { .. }), "{op:?}: {error}");
        assert!(segment_files(&disk).len() <= segments + 1);
        assert_poisoned(&mut journal);
        drop(journal);
        disk.power_cut();
        let (journal, report) = open(&disk, &options);
        assert!(report.is_clean(), "{op:?}: {report:?}");
        assert_holds(&journal, 1..=5);
    }
}

#[test]
fn failed_truncate_or_purge_poisons_and_leaves_a_consistent_journal() {
    for (op, truncate) in [
        (FaultOp::Remove, true),
        (FaultOp::Write, true),
        (FaultOp::Remove, false),
        (FaultOp::Rename, false),
    ] {
        let disk = SimDisk::new(4);
        let options = small_segments();
        let (mut journal, _) = open(&disk, &options);
        fill(&mut journal, 1..=60, 1);
        journal.sync().unwrap();
        disk.fail_next(op, IoFault::Eio, 1);
        let result = if truncate {
            journal.truncate_after(20)
        } else {
            journal.purge_up_to(40)
        };
        assert!(
            matches!(result, Err(JournalError::Io { .. })),
            "{op:?}: {result:?}"
        );
        assert_poisoned(&mut journal);
        drop(journal);
        disk.power_cut();
        let (journal, report) = open(&disk, &options);
        assert!(report.is_clean(), "{op:?}: {report:?}");
        let (first, (last, _)) = (journal.first_index().unwrap(), journal.last().unwrap());
        // A truncation stopped midway leaves a prefix of the old journal, a
        // purge a suffix; never a hole.
        if truncate {
            assert_eq!(first, 1);
            assert!((20..=60).contains(&last), "last {last}");
        } else {
            assert!((1..=41).contains(&first), "first {first}");
            assert_eq!(last, 60);
        }
        assert_holds(&journal, first..=last);
    }
}
