//! Guards against a log store that loses what it promised was durable (a
//! flushed append, the vote, a truncation, the purge point) across a power
//! cut, or that fails to reopen after losing what it never promised.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use finkfs_raft::journal::JournalOptions;
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions, OpenReport, VoteBlocker};
use finkfs_raft::types::{
    AppCommand, Entry, EntryPayload, IOFlushed, LeaderId, LogId, TypeConfig, Vote,
};
use finkfs_simdisk::{CrashPolicy, FaultOp, IoFault, SimDisk};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::type_config::TypeConfigExt;
use openraft::vote::{RaftLeaderId, RaftVote};

const DIR: &str = "groups/7";

fn options() -> LogStoreOptions {
    LogStoreOptions {
        // Small segments so that purges drop whole segment files.
        journal: JournalOptions {
            segment_bytes_max: 4096,
            record_bytes_max: 1 << 20,
        },
        committed_save_interval: Duration::from_millis(20),
        ..LogStoreOptions::default()
    }
}

fn open(disk: &SimDisk) -> (JournalLogStore, OpenReport) {
    JournalLogStore::open(disk.disk_ref(), Path::new(DIR), options()).expect("log store opens")
}

/// A fresh store that has voted, as a node has before it takes entries
/// (term 9: newer than every entry these tests write).
async fn open_voted(disk: &SimDisk) -> JournalLogStore {
    let (mut store, _) = open(disk);
    let vote = Vote::from_leader_id(LeaderId::new(9, 1), true);
    store.save_vote(&vote).await.expect("vote saved");
    store
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(LeaderId::new(term, 1), index)
}

/// A normal entry whose command bytes are derived from its index.
fn entry(term: u64, index: u64) -> Entry {
    let command = (0..200u64)
        .map(|i| (index.wrapping_mul(31).wrapping_add(i) % 251) as u8)
        .collect::<Vec<u8>>();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(AppCommand(Bytes::from(command))),
    }
}

fn entries(term: u64, indexes: std::ops::Range<u64>) -> Vec<Entry> {
    indexes.map(|index| entry(term, index)).collect()
}

async fn read_all(store: &mut JournalLogStore) -> Vec<Entry> {
    store
        .get_log_reader()
        .await
        .try_get_log_entries(..)
        .await
        .expect("log reads back")
}

/// Cuts the power, then lets the old store's writer thread wind down (its
/// handles are stale) so that nothing of it touches the disk after reopen.
async fn cut_and_close(disk: &SimDisk, store: JournalLogStore, policy: CrashPolicy) {
    disk.power_cut_with(policy);
    let _ = store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_entries_survive_power_cut() {
    for seed in 0..20 {
        let disk = SimDisk::new(seed);
        let mut store = open_voted(&disk).await;
        for batch in 0..6u64 {
            store
                .blocking_append(entries(1, batch * 5..batch * 5 + 5))
                .await
                .unwrap();
        }
        cut_and_close(&disk, store, CrashPolicy::Random).await;

        let (mut store, report) = open(&disk);
        assert!(
            report.journal.is_clean(),
            "seed {seed}: {:?}",
            report.journal
        );
        assert!(store.may_vote(), "seed {seed}");
        assert_eq!(read_all(&mut store).await, entries(1, 0..30), "seed {seed}");
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 29)));
        store.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unflushed_entries_lost_as_a_suffix_and_store_reopens_clean() {
    for seed in 0..40 {
        let disk = SimDisk::new(1000 + seed);
        let mut store = open_voted(&disk).await;
        store.blocking_append(entries(1, 0..3)).await.unwrap();
        let mut flushed = Vec::new();
        for index in 3..40 {
            let (tx, rx) = TypeConfig::oneshot();
            store
                .append([entry(1, index)], IOFlushed::signal(tx))
                .await
                .unwrap();
            flushed.push(rx);
        }
        cut_and_close(&disk, store, CrashPolicy::Random).await;
        // A callback that reported success saw its sync complete before the
        // cut (a sync on a handle the cut made stale fails).
        let mut acknowledged = 0u64;
        for rx in &mut flushed {
            if !matches!(rx.try_recv(), Ok(Ok(()))) {
                break;
            }
            acknowledged += 1;
        }

        let (mut store, report) = open(&disk);
        assert!(
            report.journal.is_clean(),
            "seed {seed}: {:?}",
            report.journal
        );
        // A torn tail long enough to hold a record keeps the node out of
        // elections until the other voters say how far their logs reach
        // (it cannot tell it from synced records rotted at rest); nothing
        // else may block the vote.
        let blockers = store.vote_blockers();
        assert!(
            blockers
                .iter()
                .all(|b| matches!(b, VoteBlocker::BelowTailFloor { .. })),
            "seed {seed}: {blockers:?}"
        );
        assert_eq!(
            blockers.is_empty(),
            report
                .journal
                .torn_tail
                .as_ref()
                .and_then(|t| t.last_index_possible())
                .is_none(),
            "seed {seed}: {:?}",
            report.journal.torn_tail
        );
        store.vote_gate().peers_hold_at_most(&[None]);
        assert!(store.may_vote(), "seed {seed}: {:?}", store.vote_blockers());
        let survived = read_all(&mut store).await;
        let kept = survived.len() as u64;
        assert!(
            kept >= 3 + acknowledged,
            "seed {seed}: {kept} kept, {acknowledged} acknowledged"
        );
        assert_eq!(
            survived,
            entries(1, 0..kept),
            "seed {seed}: survivors are a prefix, intact"
        );
        // The reopened log takes the next index after what survived.
        store.blocking_append([entry(2, kept)]).await.unwrap();
        store.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_survives_power_cut() {
    let disk = SimDisk::new(7);
    let (mut store, report) = open(&disk);
    assert_eq!(report.state.vote, None);
    let vote = Vote::from_leader_id(LeaderId::new(5, 3), true);
    store.save_vote(&vote).await.unwrap();
    cut_and_close(&disk, store, CrashPolicy::LoseUnsynced).await;

    let (store, report) = open(&disk);
    assert_eq!(report.state.vote, Some(vote));
    assert!(store.may_vote());
    let mut reader = { store }.get_log_reader().await;
    assert_eq!(reader.read_vote().await.unwrap(), Some(vote));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_point_survives_power_cut() {
    let disk = SimDisk::new(8);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(1, 0..40)).await.unwrap();
    store.purge(log_id(1, 24)).await.unwrap();
    cut_and_close(&disk, store, CrashPolicy::LoseUnsynced).await;

    let (mut store, report) = open(&disk);
    assert_eq!(report.state.purged, Some(log_id(1, 24)));
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 24)));
    assert_eq!(state.last_log_id, Some(log_id(1, 39)));
    assert_eq!(read_all(&mut store).await, entries(1, 25..40));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_of_everything_survives_power_cut_and_log_resumes_after_it() {
    let disk = SimDisk::new(9);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(1, 0..10)).await.unwrap();
    store.purge(log_id(2, 15)).await.unwrap();
    cut_and_close(&disk, store, CrashPolicy::LoseUnsynced).await;

    let (mut store, _) = open(&disk);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 15)));
    assert_eq!(state.last_log_id, Some(log_id(2, 15)));
    assert!(read_all(&mut store).await.is_empty());
    let hole = store.append([entry(2, 17)], IOFlushed::noop()).await;
    assert!(
        hole.is_err(),
        "an append leaving a hole after the purge point is refused"
    );
    store.blocking_append([entry(2, 16)]).await.unwrap();
    assert_eq!(read_all(&mut store).await, vec![entry(2, 16)]);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_interrupted_after_saving_the_purge_point_is_finished_on_open() {
    let disk = SimDisk::new(10);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(1, 0..40)).await.unwrap();
    // The purge point reaches the meta store; dropping journal segments fails.
    disk.fail_next_on(&format!("{DIR}/journal/"), FaultOp::Remove, IoFault::Eio, 1);
    let failed = store.purge(log_id(1, 30)).await;
    assert!(failed.is_err(), "the failed segment removal is reported");
    let after = store.append([entry(1, 40)], IOFlushed::noop()).await;
    assert!(
        after.is_err(),
        "a store whose journal failed refuses writes until reopened"
    );
    cut_and_close(&disk, store, CrashPolicy::LoseUnsynced).await;

    let (mut store, report) = open(&disk);
    assert_eq!(report.state.purged, Some(log_id(1, 30)));
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    assert_eq!(read_all(&mut store).await, entries(1, 31..40));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_survives_power_cut() {
    let disk = SimDisk::new(11);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(1, 0..30)).await.unwrap();
    store.truncate_after(Some(log_id(1, 12))).await.unwrap();
    assert_eq!(
        store.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 12))
    );
    cut_and_close(&disk, store, CrashPolicy::KeepUnsynced).await;

    let (mut store, _) = open(&disk);
    assert_eq!(read_all(&mut store).await, entries(1, 0..13));
    // A new leader's entries replace the truncated ones.
    store.blocking_append(entries(2, 13..16)).await.unwrap();
    let mut expected = entries(1, 0..13);
    expected.extend(entries(2, 13..16));
    assert_eq!(read_all(&mut store).await, expected);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncating_everything_from_index_zero_survives_power_cut() {
    let disk = SimDisk::new(12);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(1, 0..30)).await.unwrap();
    store.truncate_after(None).await.unwrap();
    assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
    cut_and_close(&disk, store, CrashPolicy::Random).await;

    let (mut store, _) = open(&disk);
    assert!(read_all(&mut store).await.is_empty());
    assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_log_id_is_saved_within_the_interval_and_survives_power_cut() {
    let disk = SimDisk::new(13);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(1, 0..10)).await.unwrap();
    store.save_committed(Some(log_id(1, 8))).await.unwrap();
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 8)));
    tokio::time::sleep(options().committed_save_interval * 10).await;
    cut_and_close(&disk, store, CrashPolicy::LoseUnsynced).await;

    let (mut store, report) = open(&disk);
    assert_eq!(report.state.committed, Some(log_id(1, 8)));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 8)));
    assert!(store.may_vote());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_log_id_is_saved_on_close() {
    let disk = SimDisk::new(14);
    let (mut store, _) = JournalLogStore::open(
        disk.disk_ref(),
        Path::new(DIR),
        LogStoreOptions {
            committed_save_interval: Duration::from_secs(3600),
            ..options()
        },
    )
    .unwrap();
    store.blocking_append(entries(1, 0..4)).await.unwrap();
    store.save_committed(Some(log_id(1, 3))).await.unwrap();
    store.close().await.unwrap();
    disk.power_cut_with(CrashPolicy::LoseUnsynced);

    let (store, report) = open(&disk);
    assert_eq!(report.state.committed, Some(log_id(1, 3)));
    store.close().await.unwrap();
}

/// openraft drops its log store at shutdown instead of closing it; the
/// writer then saves the waiting committed log id on its own. Whoever
/// reopens the directory (or runs fsck on it) waits for `writer_stopped`:
/// once it says true, that write is done and nothing touches the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_store_says_when_its_writer_made_its_last_write() {
    let disk = SimDisk::new(15);
    let (mut store, _) = JournalLogStore::open(
        disk.disk_ref(),
        Path::new(DIR),
        LogStoreOptions {
            committed_save_interval: Duration::from_secs(3600),
            ..options()
        },
    )
    .unwrap();
    store.blocking_append(entries(1, 0..4)).await.unwrap();
    store.save_committed(Some(log_id(1, 3))).await.unwrap();
    let mut stopped = store.writer_stopped();
    drop(store);
    tokio::time::timeout(Duration::from_secs(10), stopped.wait_for(|s| *s))
        .await
        .expect("the writer stops")
        .expect("it says so before it goes");
    disk.power_cut_with(CrashPolicy::LoseUnsynced);

    let (store, report) = open(&disk);
    assert_eq!(report.state.committed, Some(log_id(1, 3)));
    store.close().await.unwrap();
}
