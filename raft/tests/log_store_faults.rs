//! Guards against a log store that acknowledges entries after a failed
//! fsync, keeps writing through a page cache it can no longer trust, serves a
//! damaged entry, or lets a node that lost its vote or log entries vote.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use finkfs_raft::journal::JournalOptions;
use finkfs_raft::log_store::{
    JournalLogStore, LogStoreError, LogStoreOptions, OpenReport, VoteBlocker,
};
use finkfs_raft::meta::MetaStore;
use finkfs_raft::types::{
    AppCommand, Entry, EntryPayload, IOFlushed, LeaderId, LogId, TypeConfig, Vote,
};
use finkfs_simdisk::{CrashPolicy, FaultOp, IoFault, SimDisk};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::type_config::TypeConfigExt;
use openraft::vote::{RaftLeaderId, RaftVote};

const DIR: &str = "groups/5";

fn options() -> LogStoreOptions {
    LogStoreOptions {
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

fn log_id(index: u64) -> LogId {
    LogId::new(LeaderId::new(1, 1), index)
}

fn entry(index: u64) -> Entry {
    let command = AppCommand(Bytes::from(vec![(index % 256) as u8; 150]));
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(command),
    }
}

fn entries(indexes: std::ops::Range<u64>) -> Vec<Entry> {
    indexes.map(entry).collect()
}

/// Every entry the store holds, read back.
async fn held_entries(store: &mut JournalLogStore) -> Vec<Entry> {
    store
        .get_log_reader()
        .await
        .try_get_log_entries(..)
        .await
        .unwrap()
}

fn files_in(disk: &SimDisk, dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(DIR).join(dir);
    disk.disk_ref()
        .list(&dir)
        .unwrap()
        .into_iter()
        .map(|name| dir.join(name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_journal_fsync_fails_the_callback_and_poisons_the_store() {
    let disk = SimDisk::new(21);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(0..5)).await.unwrap();
    disk.fail_next_on(&format!("{DIR}/journal/"), FaultOp::Sync, IoFault::Eio, 1);

    let (tx, rx) = TypeConfig::oneshot();
    store
        .append(entries(5..8), IOFlushed::signal(tx))
        .await
        .unwrap();
    assert!(
        rx.await.unwrap().is_err(),
        "entries whose fsync failed were acknowledged"
    );
    let later = store.append(entries(8..9), IOFlushed::noop()).await;
    assert!(later.is_err(), "append accepted after a failed fsync");
    let vote = store
        .save_vote(&Vote::from_leader_id(LeaderId::new(2, 1), false))
        .await;
    assert!(vote.is_err(), "vote saved after a failed fsync");
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let _ = store.close().await;

    let (mut store, report) = open(&disk);
    assert!(report.journal.is_clean());
    assert!(store.may_vote());
    // Acknowledged entries survive; the unacknowledged ones may or may not
    // (a failed fsync may have written some), but only as an intact prefix.
    let survived = store
        .get_log_reader()
        .await
        .try_get_log_entries(..)
        .await
        .unwrap();
    let kept = survived.len() as u64;
    assert!((5..=8).contains(&kept), "{kept} entries survived");
    assert_eq!(survived, entries(0..kept));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_meta_save_fails_save_vote_and_poisons_the_store() {
    let disk = SimDisk::new(22);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(0..2)).await.unwrap();
    disk.fail_next_on(&format!("{DIR}/meta/"), FaultOp::Sync, IoFault::Eio, 1);
    let saved = store
        .save_vote(&Vote::from_leader_id(LeaderId::new(10, 2), true))
        .await;
    assert!(saved.is_err());
    let vote = store.get_log_reader().await.read_vote().await.unwrap();
    let previous = Vote::from_leader_id(LeaderId::new(9, 1), true);
    assert_eq!(
        vote,
        Some(previous),
        "a vote that failed to save is reported as saved"
    );
    assert!(store
        .append(entries(2..3), IOFlushed::noop())
        .await
        .is_err());
    let _ = store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_journal_record_blocks_voting_and_is_never_served() {
    let disk = SimDisk::new(23);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(0..40)).await.unwrap();
    store.close().await.unwrap();
    // Flip a bit inside the first segment, well before its last record:
    // damage followed by valid records, which no crash explains.
    let segment = files_in(&disk, "journal").into_iter().min().unwrap();
    disk.flip_bit(&segment, 8 * 400 + 3).unwrap();

    let (mut store, report) = open(&disk);
    assert!(!report.journal.is_clean(), "damage went unreported");
    assert!(!store.may_vote());
    assert!(store
        .vote_blockers()
        .iter()
        .any(|b| matches!(b, VoteBlocker::JournalDamaged { .. })));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(
        state.last_log_id,
        Some(log_id(39)),
        "records after the damage were dropped"
    );
    let mut reader = store.get_log_reader().await;
    let error = reader.try_get_log_entries(..).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    let tail = reader.try_get_log_entries(20..40).await.unwrap();
    assert_eq!(tail, entries(20..40), "intact records stay readable");
    let _ = store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_below_the_purge_point_does_not_block_voting() {
    let disk = SimDisk::new(29);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(0..40)).await.unwrap();
    // The purge point is saved, then the journal's purge fails before it
    // changes anything: every old segment stays on disk, and one rots.
    disk.fail_next_on(&format!("{DIR}/journal/"), FaultOp::Create, IoFault::Eio, 1);
    assert!(store.purge(log_id(30)).await.is_err());
    let _ = store.close().await;
    let oldest = files_in(&disk, "journal").into_iter().min().unwrap();
    disk.flip_bit(&oldest, 8 * 400 + 3).unwrap();

    let (mut store, report) = open(&disk);
    assert!(!report.journal.is_clean(), "the rot is still reported");
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    let kept = held_entries(&mut store).await;
    assert_eq!(kept, entries(31..40));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_vote_blocks_voting() {
    let disk = SimDisk::new(24);
    let (mut store, _) = open(&disk);
    store
        .save_vote(&Vote::from_leader_id(LeaderId::new(4, 1), true))
        .await
        .unwrap();
    store.close().await.unwrap();
    for copy in files_in(&disk, "meta") {
        disk.flip_bit(&copy, 8 * 6 + 1).unwrap();
    }

    let (store, report) = open(&disk);
    assert!(report.meta.lost);
    assert_eq!(report.state.vote, None);
    assert!(!store.may_vote());
    assert!(store.vote_blockers().contains(&VoteBlocker::VoteLost));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_entries_missing_from_the_journal_block_voting() {
    let disk = SimDisk::new(25);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(0..40)).await.unwrap();
    store.save_committed(Some(log_id(39))).await.unwrap();
    store.close().await.unwrap();
    // The newest segment vanishes, as if its file were lost.
    let newest = files_in(&disk, "journal")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max();
    disk.disk_ref().remove(&newest.unwrap()).unwrap();

    let (store, report) = open(&disk);
    // The committed id is lowered to what the journal holds, with a vouch
    // floor at the old one, so openraft can start and take the entries
    // again from a leader, and the node does not vote until it has.
    let held = report
        .state
        .committed
        .expect("entries before the lost segment");
    assert!(held.index < 39, "{held:?}");
    assert_eq!(report.state.vouch_floor, Some(39));
    assert!(!store.may_vote());
    let below = store
        .vote_blockers()
        .iter()
        .any(|b| matches!(b, VoteBlocker::BelowVouchFloor { floor: 39, .. }));
    assert!(below, "{:?}", store.vote_blockers());
    store.close().await.unwrap();

    // A crash now keeps the floor: it was saved before the node ran.
    let (mut again, report) = open(&disk);
    assert_eq!(report.state.vouch_floor, Some(39));
    assert!(!again.may_vote());
    // The leader sends the entries again: the floor lifts.
    let next = again
        .get_log_state()
        .await
        .unwrap()
        .last_log_id
        .unwrap()
        .index
        + 1;
    again.blocking_append(entries(next..40)).await.unwrap();
    assert!(again.may_vote(), "{:?}", again.vote_blockers());
    again.close().await.unwrap();
}

/// Writes and syncs entries 0..40, then flips a bit inside record 39, the
/// last one: nothing after it proves it was synced, so recovery cuts it as
/// a torn tail.
async fn rot_the_last_of_40_synced_records(disk: &SimDisk) {
    let mut store = open_voted(disk).await;
    store.blocking_append(entries(0..40)).await.unwrap();
    store.close().await.unwrap();
    let newest = files_in(disk, "journal")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .unwrap();
    let len = disk.durable_bytes(&newest).unwrap().len() as u64;
    disk.flip_bit(&newest, 8 * (len - 40) + 5).unwrap();
}

/// Rot at rest in the last synced record looks exactly like a write torn by
/// a power cut, and that record may have been acknowledged and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_synced_record_rotted_at_rest_is_cut_behind_a_saved_tail_floor() {
    let disk = SimDisk::new(31);
    rot_the_last_of_40_synced_records(&disk).await;

    let (mut store, report) = open(&disk);
    let torn = report
        .journal
        .torn_tail
        .clone()
        .expect("cut as a torn tail");
    assert_eq!(torn.first_index, 39);
    let floor = torn.last_index_possible().expect("a whole record fits");
    assert!(floor >= 39, "{torn:?}");
    assert_eq!(report.state.tail_floor, Some(floor));
    let blocked = |store: &JournalLogStore| {
        store
            .vote_blockers()
            .iter()
            .any(|b| matches!(b, VoteBlocker::BelowTailFloor { floor: f, .. } if *f == floor))
    };
    assert!(blocked(&store), "{:?}", store.vote_blockers());
    assert_eq!(held_entries(&mut store).await, entries(0..39));
    store.close().await.unwrap();

    // A crash now keeps the floor: it was saved before the cut, and the
    // next open finds no torn tail to tell it.
    let (store, report) = open(&disk);
    assert_eq!(report.journal.torn_tail, None);
    assert!(blocked(&store), "{:?}", store.vote_blockers());
    // Every other voter says its log ends at 38 or below: nothing this
    // node may have lost has an intact copy, and the floor lifts...
    store
        .vote_gate()
        .peers_hold_at_most(&[Some(log_id(38)), None]);
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    // ...for good: the next state save drops it.
    let mut store = store;
    store
        .save_vote(&Vote::from_leader_id(LeaderId::new(10, 2), true))
        .await
        .unwrap();
    store.close().await.unwrap();
    let (store, report) = open(&disk);
    assert_eq!(report.state.tail_floor, None);
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    store.close().await.unwrap();
}

/// A voter that holds more keeps the node out of elections until a leader
/// has brought its log there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_floor_waits_for_the_log_when_another_voter_holds_more() {
    let disk = SimDisk::new(32);
    rot_the_last_of_40_synced_records(&disk).await;

    let (mut store, _) = open(&disk);
    store
        .vote_gate()
        .peers_hold_at_most(&[Some(log_id(39)), Some(log_id(12))]);
    let blockers = store.vote_blockers();
    assert!(
        blockers
            .iter()
            .any(|b| matches!(b, VoteBlocker::BelowTailFloor { floor: 39, .. })),
        "{blockers:?}"
    );
    store.blocking_append(entries(39..40)).await.unwrap();
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_behind_the_log_blocks_voting() {
    let disk = SimDisk::new(27);
    let mut store = open_voted(&disk).await;
    store.blocking_append(entries(0..5)).await.unwrap();
    store.close().await.unwrap();
    // The meta store is replaced by a fresh one: the vote is gone, and
    // nothing in the meta store itself says so.
    for copy in files_in(&disk, "meta") {
        disk.disk_ref().remove(&copy).unwrap();
    }

    let (store, report) = open(&disk);
    assert!(!report.meta.lost);
    assert_eq!(report.state.vote, None);
    assert!(!store.may_vote());
    let behind = VoteBlocker::VoteBehindLog {
        vote_term: None,
        log_term: 1,
    };
    assert_eq!(store.vote_blockers(), [behind]);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_entry_of_term_zero_without_a_vote_does_not_block_voting() {
    // A fresh node initializing its cluster writes its first membership
    // entry at term 0 before it ever votes; a crash then loses no vote.
    let disk = SimDisk::new(28);
    let (mut store, _) = open(&disk);
    let first = Entry {
        log_id: LogId::new(LeaderId::new(0, 0), 0),
        payload: EntryPayload::Blank,
    };
    store.blocking_append([first]).await.unwrap();
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    let _ = store.close().await;

    let (store, report) = open(&disk);
    assert_eq!(report.state.vote, None);
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_payload_that_is_not_a_log_store_state_is_a_typed_error() {
    let disk = SimDisk::new(26);
    let (mut meta, _) = MetaStore::open(disk.disk_ref(), Path::new(DIR).join("meta")).unwrap();
    meta.save(b"this is no log store state").unwrap();
    drop(meta);

    let error = JournalLogStore::open(disk.disk_ref(), Path::new(DIR), options()).unwrap_err();
    assert!(
        matches!(error, LogStoreError::CorruptState { offset: 0, .. }),
        "{error}"
    );
    assert!(error.is_corruption());
}

/// A store purged through 29 (records from 30 on) whose meta copies were
/// then both damaged: the vote and the purge point are lost.
async fn purged_then_meta_lost(disk: &SimDisk) {
    let mut store = open_voted(disk).await;
    store.blocking_append(entries(0..40)).await.unwrap();
    store.purge(log_id(29)).await.unwrap();
    store.close().await.unwrap();
    for copy in files_in(disk, "meta") {
        disk.flip_bit(&copy, 8 * 6 + 1).unwrap();
    }
}

fn open_applied(disk: &SimDisk, applied: Option<LogId>) -> (JournalLogStore, OpenReport) {
    let options = LogStoreOptions {
        applied,
        ..options()
    };
    JournalLogStore::open(disk.disk_ref(), Path::new(DIR), options).expect("log store opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_purge_point_is_taken_from_the_applied_log_id_when_it_reaches_the_journal() {
    let disk = SimDisk::new(30);
    purged_then_meta_lost(&disk).await;

    // Applied through 33: the log opens purged through it, from 34.
    let (mut store, report) = open_applied(&disk, Some(log_id(33)));
    assert!(report.meta.lost);
    assert!(store.vote_blockers().contains(&VoteBlocker::VoteLost));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(33)));
    assert_eq!(state.last_log_id, Some(log_id(39)));
    let kept = held_entries(&mut store).await;
    assert_eq!(kept, entries(34..40));
    store.close().await.unwrap();

    // The purge point was saved: the next open needs no applied id.
    let (mut store, _) = open_applied(&disk, None);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(33)));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_purge_point_with_unapplied_entries_before_the_journal_clears_it_behind_a_floor() {
    let disk = SimDisk::new(31);
    purged_then_meta_lost(&disk).await;

    // Applied only through 20: entries 21..=29 are nowhere on this node.
    let (mut store, _) = open_applied(&disk, Some(log_id(20)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));
    let blockers = store.vote_blockers();
    assert!(blockers.contains(&VoteBlocker::VoteLost), "{blockers:?}");
    assert!(
        blockers
            .iter()
            .any(|b| matches!(b, VoteBlocker::BelowVouchFloor { floor: 39, .. })),
        "{blockers:?}"
    );
    store.close().await.unwrap();
}

/// Writes 40 entries and flips a bit in an early record (index 1): damage
/// followed by valid records, which no crash explains.
async fn early_record_damaged(disk: &SimDisk) {
    let mut store = open_voted(disk).await;
    store.blocking_append(entries(0..40)).await.unwrap();
    store.close().await.unwrap();
    let segment = files_in(disk, "journal").into_iter().min().unwrap();
    disk.flip_bit(&segment, 8 * 400 + 3).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_the_state_machine_applied_is_purged_and_the_node_votes_with_every_later_entry() {
    let disk = SimDisk::new(32);
    early_record_damaged(&disk).await;

    let (mut store, report) = open_applied(&disk, Some(log_id(25)));
    assert!(!report.journal.is_clean(), "the damage is still reported");
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(25)));
    assert_eq!(state.last_log_id, Some(log_id(39)));
    let kept = held_entries(&mut store).await;
    assert_eq!(kept, entries(26..40), "the intact entries after it stay");
    store.close().await.unwrap();

    // Saved: the next open, without an applied id, finds it purged.
    let (mut store, _) = open_applied(&disk, None);
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    assert_eq!(
        store.get_log_state().await.unwrap().last_purged_log_id,
        Some(log_id(25))
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_above_the_applied_index_still_blocks_voting() {
    let disk = SimDisk::new(33);
    early_record_damaged(&disk).await;

    let (mut store, _) = open_applied(&disk, Some(log_id(0)));
    assert!(store
        .vote_blockers()
        .iter()
        .any(|b| matches!(b, VoteBlocker::JournalDamaged { .. })));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, None, "nothing was purged");
    let _ = store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoin_marker_keeps_a_wiped_member_from_voting_across_restarts_until_it_caught_up() {
    let disk = SimDisk::new(34);
    let marker = Path::new(DIR).join(finkfs_raft::log_store::REJOIN_MARKER);
    disk.disk_ref().create_dir_all(Path::new(DIR)).unwrap();
    finkfs_seam::write_file_atomic(&*disk.disk_ref(), &marker, b"rejoin\n").unwrap();
    let wiped = |store: &JournalLogStore| {
        matches!(
            store.vote_blockers().as_slice(),
            [VoteBlocker::DataDirWiped { .. }]
        )
    };

    // Not started with --rejoin (default options), yet no vote.
    let (mut store, _) = open(&disk);
    assert!(wiped(&store), "{:?}", store.vote_blockers());
    // A leader's entries arrive, part of the way, then a restart.
    let vote = Vote::from_leader_id(LeaderId::new(9, 1), true);
    store.save_vote(&vote).await.unwrap();
    store.blocking_append(entries(0..5)).await.unwrap();
    store.close().await.unwrap();
    let (mut store, _) = open(&disk);
    assert!(wiped(&store), "a partial log let it vote");

    // The leader says its commit index is 9; once the log reaches it the
    // node votes, and the next state save removes the marker.
    store.vote_gate().leader_commit(Some(9));
    store.blocking_append(entries(5..10)).await.unwrap();
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    store.save_vote(&vote).await.unwrap();
    store.close().await.unwrap();
    assert!(!disk.file_paths().contains(&marker), "the marker stayed");
    let (store, _) = open(&disk);
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoin_on_an_empty_log_writes_the_marker() {
    let disk = SimDisk::new(35);
    let options = LogStoreOptions {
        member_of_existing_cluster: true,
        ..options()
    };
    let (store, _) = JournalLogStore::open(disk.disk_ref(), Path::new(DIR), options).unwrap();
    assert!(matches!(
        store.vote_blockers().as_slice(),
        [VoteBlocker::DataDirWiped { .. }]
    ));
    store.close().await.unwrap();
    let marker = Path::new(DIR).join(finkfs_raft::log_store::REJOIN_MARKER);
    assert!(disk.file_paths().contains(&marker));
}
