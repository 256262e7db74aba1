//! Guards against a sequence of appends, truncations, purges, votes and power
//! cuts that leaves the log store disagreeing with what it acknowledged: an
//! acknowledged entry missing, an entry that was never appended, a purge or
//! vote forgotten, a reopened store that refuses to vote.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use finkfs_raft::journal::JournalOptions;
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions};
use finkfs_raft::types::{
    AppCommand, Entry, EntryPayload, IOFlushed, LeaderId, LogId, TypeConfig, Vote,
};
use finkfs_simdisk::{CrashPolicy, SimDisk};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::type_config::TypeConfigExt;
use openraft::vote::{RaftLeaderId, RaftVote};
use proptest::prelude::*;

const DIR: &str = "groups/11";

#[derive(Debug, Clone)]
enum Op {
    /// Append this many entries and wait until they are durable.
    Append(u64),
    /// Append this many entries without waiting, then cut the power.
    AppendThenCut(u64, u8),
    /// Keep this many of the present entries.
    Truncate(u64),
    /// Purge this many of the present entries.
    Purge(u64),
    /// A new leader: vote for a new term.
    NewTerm,
    /// Cut the power with one of three policies and reopen.
    Cut(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..6).prop_map(Op::Append),
        2 => (1u64..6, 0u8..3).prop_map(|(n, p)| Op::AppendThenCut(n, p)),
        1 => (0u64..8).prop_map(Op::Truncate),
        1 => (0u64..8).prop_map(Op::Purge),
        1 => Just(Op::NewTerm),
        1 => (0u8..3).prop_map(Op::Cut),
    ]
}

fn policy(choice: u8) -> CrashPolicy {
    match choice {
        0 => CrashPolicy::LoseUnsynced,
        1 => CrashPolicy::KeepUnsynced,
        _ => CrashPolicy::Random,
    }
}

fn entry(term: u64, index: u64) -> Entry {
    let size = (index * 37 % 400) as usize;
    let command = Bytes::from(vec![(index % 251) as u8; size]);
    Entry {
        log_id: LogId::new(LeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(AppCommand(command)),
    }
}

/// What the store must hold: the entries it acknowledged (and did not
/// truncate or purge), the purge point and the vote.
#[derive(Debug, Default)]
struct Model {
    entries: Vec<Entry>,
    purged: Option<LogId>,
    vote: Option<Vote>,
    term: u64,
}

impl Model {
    fn next_index(&self) -> u64 {
        let last = self.entries.last().map(|e| e.log_id).or(self.purged);
        last.map_or(0, |log_id| log_id.index + 1)
    }
}

fn open(disk: &SimDisk) -> JournalLogStore {
    let options = LogStoreOptions {
        journal: JournalOptions {
            segment_bytes_max: 2048,
            record_bytes_max: 1 << 16,
        },
        committed_save_interval: Duration::from_millis(5),
        ..LogStoreOptions::default()
    };
    let (store, _) = JournalLogStore::open(disk.disk_ref(), Path::new(DIR), options).unwrap();
    assert!(store.may_vote(), "{:?}", store.vote_blockers());
    store
}

async fn cut_and_reopen(disk: &SimDisk, store: JournalLogStore, choice: u8) -> JournalLogStore {
    disk.power_cut_with(policy(choice));
    let _ = store.close().await;
    open(disk)
}

/// After a reopen, unacknowledged entries may have survived: they must be
/// a prefix of what was appended, and they join the model.
async fn check_and_adopt(store: &mut JournalLogStore, model: &mut Model, unacked: &[Entry]) {
    let held = store
        .get_log_reader()
        .await
        .try_get_log_entries(..)
        .await
        .unwrap();
    let acked = model.entries.len();
    assert!(held.len() >= acked, "acknowledged entries lost");
    assert_eq!(
        held[..acked],
        model.entries[..],
        "acknowledged entries changed"
    );
    let extra = &held[acked..];
    assert!(extra.len() <= unacked.len(), "entries never appended");
    assert_eq!(
        extra,
        &unacked[..extra.len()],
        "surviving entries are not what was appended"
    );
    model.entries = held;
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, model.purged);
    let last = model.entries.last().map(|e| e.log_id).or(model.purged);
    assert_eq!(state.last_log_id, last);
    let vote = store.get_log_reader().await.read_vote().await.unwrap();
    assert_eq!(vote, model.vote);
}

async fn step(
    disk: &SimDisk,
    mut store: JournalLogStore,
    model: &mut Model,
    op: Op,
) -> JournalLogStore {
    match op {
        Op::Append(count) => {
            let first = model.next_index();
            let batch: Vec<Entry> = (first..first + count)
                .map(|i| entry(model.term, i))
                .collect();
            store.blocking_append(batch.clone()).await.unwrap();
            model.entries.extend(batch);
        }
        Op::AppendThenCut(count, choice) => {
            let first = model.next_index();
            let batch: Vec<Entry> = (first..first + count)
                .map(|i| entry(model.term, i))
                .collect();
            let (tx, _rx) = TypeConfig::oneshot();
            store
                .append(batch.clone(), IOFlushed::signal(tx))
                .await
                .unwrap();
            store = cut_and_reopen(disk, store, choice).await;
            check_and_adopt(&mut store, model, &batch).await;
        }
        Op::Truncate(keep) => {
            let keep = keep.min(model.entries.len() as u64) as usize;
            let last_kept = match keep {
                0 => model.purged,
                n => Some(model.entries[n - 1].log_id),
            };
            store.truncate_after(last_kept).await.unwrap();
            model.entries.truncate(keep);
        }
        Op::Purge(count) => {
            let count = count.min(model.entries.len() as u64) as usize;
            if count > 0 {
                let up_to = model.entries[count - 1].log_id;
                store.purge(up_to).await.unwrap();
                model.entries.drain(..count);
                model.purged = Some(up_to);
            }
        }
        Op::NewTerm => {
            model.term += 1;
            let vote = Vote::from_leader_id(LeaderId::new(model.term, 1), true);
            store.save_vote(&vote).await.unwrap();
            model.vote = Some(vote);
        }
        Op::Cut(choice) => {
            store = cut_and_reopen(disk, store, choice).await;
            check_and_adopt(&mut store, model, &[]).await;
        }
    }
    store
}

fn run(seed: u64, ops: Vec<Op>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let disk = SimDisk::new(seed);
        let mut model = Model::default();
        let mut store = open(&disk);
        store = step(&disk, store, &mut model, Op::NewTerm).await;
        for op in ops {
            store = step(&disk, store, &mut model, op).await;
        }
        store = cut_and_reopen(&disk, store, 2).await;
        check_and_adopt(&mut store, &mut model, &[]).await;
        store.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_what_it_acknowledged_across_power_cuts(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run(seed, ops);
    }
}
