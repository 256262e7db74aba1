//! Guards against readers that block behind (or race with) the writer, and
//! against group commit quietly turning into one fsync per record.

mod journal_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use finkfs_raft::journal::{Journal, JournalOptions};
use finkfs_simdisk::SimDisk;
use journal_support::*;

#[test]
fn reader_reads_while_the_writer_is_inside_sync() {
    let sim = SimDisk::new(1);
    let disk = CountingDisk::new(sim.disk_ref());
    let (mut journal, _) =
        Journal::open(Arc::new(disk.clone()), dir(), JournalOptions::default()).unwrap();
    fill(&mut journal, 1..=100, 1);
    let reader = journal.reader();
    *disk.sync_delay.lock().unwrap() = Duration::from_millis(300);
    let in_sync = Arc::clone(&disk.in_sync);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let reader = reader.clone();
            let in_sync = Arc::clone(&in_sync);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !in_sync.load(Ordering::SeqCst) {
                    assert!(Instant::now() < deadline, "the writer never entered sync");
                    std::thread::yield_now();
                }
                let mut reads_during_sync = 0u64;
                while in_sync.load(Ordering::SeqCst) {
                    for index in [1, 50, 100] {
                        assert_eq!(reader.read(index).unwrap().payload, payload(index, 1, 0));
                    }
                    assert_eq!(reader.read_range(1..101, u64::MAX).unwrap().len(), 100);
                    reads_during_sync += 1;
                }
                reads_during_sync
            })
        })
        .collect();
    journal.sync().unwrap();
    for reader in readers {
        assert!(
            reader.join().unwrap() > 0,
            "no read completed while the writer was syncing"
        );
    }
}

#[test]
fn readers_see_appends_and_truncations_consistently() {
    let sim = SimDisk::new(2);
    let (mut journal, _) = open(&sim, &small_segments());
    let reader = journal.reader();
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let checker = {
        let (stop, checks) = (Arc::clone(&stop), Arc::clone(&checks));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Some(first) = reader.first_index() else {
                    continue;
                };
                let records = reader.read_range(first..first + 40, u64::MAX).unwrap();
                // A range never mixes terms out of order: the writer only
                // rewrites the tail with a higher term.
                for pair in records.windows(2) {
                    assert_eq!(pair[0].index + 1, pair[1].index);
                    assert!(pair[0].term <= pair[1].term);
                }
                for record in &records {
                    assert_eq!(record.payload, payload(record.index, record.term, 0));
                }
                checks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let mut last = 0;
    let mut term = 0u64;
    while checks.load(Ordering::SeqCst) < 200 {
        term += 1;
        assert!(term < 100_000, "the reader made no progress");
        fill(&mut journal, last + 1..=last + 20, term);
        journal.sync().unwrap();
        last += 20;
        journal.truncate_after(last - 7).unwrap();
        last -= 7;
        if term.is_multiple_of(5) {
            journal.purge_up_to(last - 30).unwrap();
        }
    }
    stop.store(true, Ordering::SeqCst);
    checker.join().unwrap();
}

#[test]
fn group_commit_is_one_sync_per_batch() {
    let sim = SimDisk::new(3);
    let disk = CountingDisk::new(sim.disk_ref());
    let (mut journal, _) =
        Journal::open(Arc::new(disk.clone()), dir(), JournalOptions::default()).unwrap();
    fill(&mut journal, 1..=1, 1);
    journal.sync().unwrap();
    for batch in 0..10u64 {
        let before = disk.syncs();
        let first = 2 + batch * 100;
        fill(&mut journal, first..=first + 99, 1);
        assert_eq!(disk.syncs(), before, "append must not sync");
        journal.sync().unwrap();
        assert_eq!(
            disk.syncs(),
            (before.0 + 1, before.1),
            "batch {batch}: one file sync, no directory sync"
        );
    }
    let before = disk.syncs();
    journal.sync().unwrap();
    assert_eq!(
        disk.syncs(),
        before,
        "a sync with nothing to sync costs nothing"
    );
}
