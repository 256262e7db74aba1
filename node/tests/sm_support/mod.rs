//! Helpers shared by the state machine and snapshot tests: entries, a
//! random workload with its model, and a fetcher that counts.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use finkfs_node::command::{plan_put, Command, Response};
use finkfs_node::state_machine::{
    BlockFetcher, FetchFuture, LocalFetcher, NoFetcher, StateMachine, StateMachineOptions,
};
use finkfs_node::{BlockStoreOptions, IndexOptions, ObjectReader, ObjectStoreOptions};
use finkfs_raft::types::{
    AppCommand, AppResponse, Entry, EntryPayload, LeaderId, LogId, Membership,
};
use finkfs_seam::DiskRef;
use openraft::vote::RaftLeaderId;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The group directory on every test disk.
pub const GROUP_DIR: &str = "groups/0";
/// Blocks of the test workload: small, so objects span many blocks and
/// entries without megabytes of data.
pub const TEST_BLOCK_BYTES: u32 = 4096;
/// Entries of the test workload: a few blocks each.
pub const TEST_ENTRY_BYTES_MAX: usize = 16 * 1024;

/// Seeds per run; `FINKFS_SEEDS` raises it for a deeper search.
pub fn seeds(default: u64) -> u64 {
    std::env::var("FINKFS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Small packs and an index cache that fit tests; durable every few
/// entries so power cuts fall on both sides of durable points.
pub fn options() -> StateMachineOptions {
    StateMachineOptions {
        store: ObjectStoreOptions {
            blocks: BlockStoreOptions {
                pack_bytes_max: 2 << 20,
                block_bytes_max: 1 << 20,
            },
            index: IndexOptions {
                cache_bytes: 4 << 20,
                verify_on_open: true,
            },
            ..ObjectStoreOptions::default()
        },
        sync_entries: 5,
        sync_bytes: 64 * 1024,
        ..StateMachineOptions::default()
    }
}

pub fn open_sm(disk: &DiskRef, fetcher: Arc<dyn BlockFetcher>) -> StateMachine {
    StateMachine::open(disk.clone(), PathBuf::from(GROUP_DIR), options(), fetcher)
        .expect("open the state machine")
}

pub fn open_plain(disk: &DiskRef) -> StateMachine {
    open_sm(disk, Arc::new(NoFetcher))
}

pub fn log_id(index: u64) -> LogId {
    LogId::new(LeaderId::new(1, 1), index)
}

pub fn normal(index: u64, command: &Command) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(AppCommand(command.encode())),
    }
}

pub fn blank(index: u64) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Blank,
    }
}

pub fn membership(voters: &[u64]) -> Membership {
    Membership::new_with_defaults(vec![voters.iter().copied().collect::<BTreeSet<_>>()], [])
}

pub fn membership_entry(index: u64, voters: &[u64]) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(membership(voters)),
    }
}

pub fn decode_responses(responses: &[AppResponse]) -> Vec<Response> {
    responses
        .iter()
        .map(|r| Response::decode(&r.0).expect("a response decodes"))
        .collect()
}

/// A random workload and the objects it must leave.
pub struct Workload {
    rng: SmallRng,
    pub objects: BTreeMap<String, Bytes>,
    next_data: u64,
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: SmallRng::seed_from_u64(seed),
            objects: BTreeMap::new(),
            next_data: seed << 32,
        }
    }

    fn data(&mut self, len: usize) -> Bytes {
        self.next_data += 1;
        let mut rng = SmallRng::seed_from_u64(self.next_data);
        // Some objects repeat a block, so dedup within an object is hit too.
        let block: Vec<u8> = (0..TEST_BLOCK_BYTES).map(|_| rng.gen()).collect();
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if len >= 3 * TEST_BLOCK_BYTES as usize && rng.gen_bool(0.5) {
            bytes[..TEST_BLOCK_BYTES as usize].copy_from_slice(&block);
            bytes[TEST_BLOCK_BYTES as usize..2 * TEST_BLOCK_BYTES as usize].copy_from_slice(&block);
        }
        Bytes::from(bytes)
    }

    fn path(&mut self) -> String {
        format!(
            "ztf/raw/day={}/alert-{}.avro",
            self.rng.gen_range(0..3),
            self.rng.gen_range(0..12)
        )
    }

    /// The commands of the next client action, in proposal order: a small
    /// or a multi-entry put, a delete, or a batch of small puts.
    pub fn next_commands(&mut self) -> Vec<Command> {
        match self.rng.gen_range(0..10) {
            0..=3 => {
                let len = self.rng.gen_range(0..3 * TEST_BLOCK_BYTES as usize);
                self.put(len)
            }
            4..=5 => {
                let len = self.rng.gen_range(4..12) * TEST_BLOCK_BYTES as usize + 17;
                self.put(len)
            }
            6..=7 => {
                let path = self.path();
                self.objects.remove(&path);
                vec![Command::Delete { path }]
            }
            _ => {
                let mut elements = Vec::new();
                for _ in 0..self.rng.gen_range(1..4) {
                    let len = self.rng.gen_range(1..TEST_BLOCK_BYTES as usize);
                    elements.extend(self.put(len));
                }
                vec![Command::Batch(elements)]
            }
        }
    }

    fn put(&mut self, len: usize) -> Vec<Command> {
        let path = self.path();
        let data = self.data(len);
        self.objects.insert(path.clone(), data.clone());
        plan_put(&path, data, TEST_BLOCK_BYTES, TEST_ENTRY_BYTES_MAX).commands
    }
}

/// Entries numbered from `first` for `commands`.
pub fn entries_for(first: u64, commands: &[Command]) -> Vec<Entry> {
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| normal(first + i as u64, c))
        .collect()
}

/// Every expected object is readable and byte-identical, and nothing else
/// is listed.
pub fn assert_holds(reader: &ObjectReader, expected: &BTreeMap<String, Bytes>, context: &str) {
    let listed = reader.list("", None, 100_000).expect("list");
    let listed: Vec<&str> = listed.iter().map(|(p, _)| p.as_str()).collect();
    let wanted: Vec<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(listed, wanted, "{context}: listed paths");
    for (path, data) in expected {
        let got = reader
            .get(path)
            .unwrap_or_else(|e| panic!("{context}: get {path}: {e}"));
        assert!(got == data[..], "{context}: {path} differs");
    }
}

/// A fetcher over another store that counts the blocks it hands out.
pub struct CountingFetcher {
    inner: LocalFetcher,
    pub fetched: Arc<AtomicU64>,
    /// The most hashes asked in one call.
    pub largest_ask: Arc<AtomicU64>,
}

impl CountingFetcher {
    pub fn new(source: ObjectReader) -> CountingFetcher {
        CountingFetcher {
            inner: LocalFetcher::new(Arc::new(source)),
            fetched: Arc::new(AtomicU64::new(0)),
            largest_ask: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl BlockFetcher for CountingFetcher {
    fn fetch<'a>(&'a self, hashes: &'a [[u8; 32]]) -> FetchFuture<'a> {
        Box::pin(async move {
            self.largest_ask
                .fetch_max(hashes.len() as u64, Ordering::Relaxed);
            let found = self.inner.fetch(hashes).await?;
            self.fetched
                .fetch_add(found.len() as u64, Ordering::Relaxed);
            Ok(found)
        })
    }
}

/// Distinct blocks of every object in `reader`, and its unreferenced ones.
pub fn distinct_blocks(reader: &ObjectReader) -> BTreeSet<[u8; 32]> {
    let mut blocks = BTreeSet::new();
    for (_, manifest) in reader.list("", None, 100_000).expect("list") {
        blocks.extend(manifest.blocks.iter().map(|b| b.hash));
    }
    blocks
}
