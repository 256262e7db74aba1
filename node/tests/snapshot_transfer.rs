//! Guards against a snapshot install that leaves a follower with objects it
//! cannot serve, fetches blocks it already holds, accepts a damaged
//! snapshot file or a damaged block, installs half a snapshot, or forgets
//! blocks stored ahead of their object (which would make the follower
//! refuse a later put the leader accepts).

mod sm_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use finkfs_node::command::{plan_put, split_object, Command, Outcome, Response};
use finkfs_node::state_machine::{
    BlockFetcher, FetchFuture, LostFuture, NoFetcher, StateMachine, StateMachineError,
    INSTALL_FETCH_BATCH_BLOCKS,
};
use finkfs_node::ObjectReader;
use finkfs_raft::network::SnapshotFile;
use finkfs_raft::types::{Snapshot, SnapshotMeta};
use finkfs_seam::{DiskRef, RealDisk};
use finkfs_simdisk::SimDisk;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use sm_support::*;

/// A leader that applied a workload, a pending upload (blocks stored, no
/// object yet) and a delete (blocks no object refers to any more).
struct Leader {
    sm: StateMachine,
    objects: BTreeMap<String, Bytes>,
    next_index: u64,
    /// The object whose blocks are stored but not yet referenced.
    pending: (String, Bytes),
}

async fn leader(disk: &DiskRef, seed: u64) -> Leader {
    let sm = open_plain(disk);
    let mut workload = Workload::new(seed);
    let mut commands = Vec::new();
    for _ in 0..25 {
        commands.extend(workload.next_commands());
    }
    // One object of many blocks: more than one fetch batch on its own.
    let many: Vec<u8> = (0..150 * u64::from(TEST_BLOCK_BYTES))
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect();
    let many = Bytes::from(many);
    let plan = plan_put(
        "many/blocks.parquet",
        many.clone(),
        TEST_BLOCK_BYTES,
        TEST_ENTRY_BYTES_MAX,
    );
    commands.extend(plan.commands);
    let pending_data = Bytes::from(vec![0x5a; 3 * TEST_BLOCK_BYTES as usize + 5]);
    let (_, blocks) = split_object(&pending_data, TEST_BLOCK_BYTES);
    commands.push(Command::PutBlocks { blocks });
    let entries = entries_for(1, &commands);
    let next_index = 1 + entries.len() as u64;
    sm.apply_entries(entries).await.unwrap();
    let mut objects = workload.objects;
    objects.insert("many/blocks.parquet".to_string(), many);
    Leader {
        sm,
        objects,
        next_index,
        pending: ("pending/upload.parquet".to_string(), pending_data),
    }
}

async fn build(sm: &mut StateMachine) -> Snapshot<SnapshotFile> {
    let mut builder = sm.get_snapshot_builder().await;
    builder.build_snapshot().await.expect("build a snapshot")
}

/// Copies a snapshot to `disk`'s incoming directory, as the peer network
/// does when it receives one.
fn receive(snapshot: &SnapshotFile, disk: &DiskRef) -> SnapshotFile {
    let bytes = snapshot.read_all().unwrap();
    let dir = PathBuf::from(GROUP_DIR).join("snapshots/incoming");
    disk.create_dir_all(&dir).unwrap();
    SnapshotFile::write(disk.clone(), dir.join("received.snap"), &bytes).unwrap()
}

/// Every block the leader's index holds, referenced or not.
fn all_blocks(reader: &ObjectReader) -> BTreeSet<[u8; 32]> {
    let view = reader.index().view().unwrap();
    let mut all = BTreeSet::new();
    let mut after = None;
    loop {
        let page = view.blocks_after(after.as_ref(), 1000).unwrap();
        all.extend(page.iter().map(|e| e.location.hash));
        match page.last() {
            Some(entry) if page.len() == 1000 => after = Some(entry.location.hash),
            _ => return all,
        }
    }
}

/// The put that completes the pending upload; the same on every replica.
fn complete_pending(pending: &(String, Bytes)) -> Command {
    let (manifest, _) = split_object(&pending.1, TEST_BLOCK_BYTES);
    Command::PutObject {
        path: pending.0.clone(),
        manifest,
        inline_blocks: Vec::new(),
    }
}

async fn transfer_to_fresh_follower(disk_a: DiskRef, disk_b: DiskRef) {
    let mut a = leader(&disk_a, 11).await;
    let snapshot = build(&mut a.sm).await;
    let fetcher = Arc::new(CountingFetcher::new(a.sm.reader()));
    let fetched = fetcher.fetched.clone();
    let largest_ask = fetcher.largest_ask.clone();
    let mut b = open_sm(&disk_b, fetcher);
    let incoming = receive(&snapshot.snapshot, &disk_b);
    b.install_snapshot(&snapshot.meta, incoming.clone())
        .await
        .unwrap();

    assert_holds(&b.reader(), &a.objects, "follower after install");
    let expected = all_blocks(&a.sm.reader());
    assert_eq!(
        fetched.load(Ordering::Relaxed),
        expected.len() as u64,
        "every block fetched once"
    );
    assert_eq!(
        largest_ask.load(Ordering::Relaxed),
        INSTALL_FETCH_BATCH_BLOCKS as u64,
        "fetches are batched, never larger than the bound"
    );
    assert_eq!(all_blocks(&b.reader()), expected);
    assert_eq!(
        b.applied_state().await.unwrap(),
        a.sm.applied_state().await.unwrap()
    );
    assert!(
        !disk_b.exists(incoming.path()).unwrap(),
        "moved out of incoming"
    );
    let current = b
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("installed snapshot is current");
    assert_eq!(current.meta, snapshot.meta);
    current.snapshot.verify().unwrap();

    // The upload the leader had started completes on both alike.
    let entry = normal(a.next_index, &complete_pending(&a.pending));
    for sm in [&a.sm, &b] {
        let response = sm.apply_entries(vec![entry.clone()]).await.unwrap();
        let outcomes = decode_responses(&response);
        assert!(
            matches!(
                outcomes[0],
                Response::Single(Outcome::Put {
                    replaced: false,
                    ..
                })
            ),
            "{outcomes:?}"
        );
        assert_eq!(sm.reader().get(&a.pending.0).unwrap(), a.pending.1);
    }
}

#[tokio::test]
async fn install_on_a_fresh_sim_disk_store_serves_identical_objects() {
    transfer_to_fresh_follower(SimDisk::new(1).disk_ref(), SimDisk::new(2).disk_ref()).await;
}

#[tokio::test]
async fn install_on_a_fresh_real_disk_store_serves_identical_objects() {
    let dir = tempfile::tempdir().unwrap();
    let disk = |name: &str| -> DiskRef { Arc::new(RealDisk::open(dir.path().join(name)).unwrap()) };
    transfer_to_fresh_follower(disk("a"), disk("b")).await;
}

#[tokio::test]
async fn install_fetches_only_the_blocks_the_follower_lacks() {
    let disk_a = SimDisk::new(3).disk_ref();
    let disk_b = SimDisk::new(4).disk_ref();
    let mut a = leader(&disk_a, 12).await;
    // The follower applied part of the same history before falling behind.
    let b_seed = leader(&disk_b, 12).await;
    drop(b_seed);
    let mut a_more = Workload::new(99);
    let mut more = Vec::new();
    for _ in 0..10 {
        more.extend(a_more.next_commands());
    }
    a.sm.apply_entries(entries_for(a.next_index, &more))
        .await
        .unwrap();
    let snapshot = build(&mut a.sm).await;

    let fetcher = Arc::new(CountingFetcher::new(a.sm.reader()));
    let fetched = fetcher.fetched.clone();
    let mut b = open_sm(&disk_b, fetcher);
    let held = all_blocks(&b.reader());
    let lacking: BTreeSet<_> = all_blocks(&a.sm.reader())
        .difference(&held)
        .copied()
        .collect();
    assert!(!lacking.is_empty() && !held.is_empty());
    b.install_snapshot(&snapshot.meta, receive(&snapshot.snapshot, &disk_b))
        .await
        .unwrap();
    assert_eq!(fetched.load(Ordering::Relaxed), lacking.len() as u64);
    let expected: BTreeMap<String, Bytes> =
        a.sm.reader()
            .list("", None, 100_000)
            .unwrap()
            .into_iter()
            .map(|(path, _)| {
                let data = Bytes::from(a.sm.reader().get(&path).unwrap());
                (path, data)
            })
            .collect();
    assert_holds(&b.reader(), &expected, "follower after a partial fetch");
    assert_eq!(all_blocks(&b.reader()), all_blocks(&a.sm.reader()));
}

/// A follower that applied a little history of its own.
async fn follower_with_history(
    disk: &DiskRef,
    fetcher: Arc<dyn BlockFetcher>,
) -> (StateMachine, BTreeMap<String, Bytes>) {
    let sm = open_sm(disk, fetcher);
    let mut workload = Workload::new(77);
    let mut commands = Vec::new();
    for _ in 0..5 {
        commands.extend(workload.next_commands());
    }
    sm.apply_entries(entries_for(1, &commands)).await.unwrap();
    (sm, workload.objects)
}

async fn assert_unchanged(
    b: &mut StateMachine,
    objects: &BTreeMap<String, Bytes>,
    before: &(
        Option<finkfs_raft::types::LogId>,
        finkfs_raft::types::StoredMembership,
    ),
) {
    assert_holds(&b.reader(), objects, "follower after a refused install");
    assert_eq!(&b.applied_state().await.unwrap(), before);
    assert!(b.get_current_snapshot().await.unwrap().is_none());
}

#[tokio::test]
async fn corrupt_snapshot_file_is_refused_and_the_index_is_unchanged() {
    let disk_a = SimDisk::new(5).disk_ref();
    let sim_b = SimDisk::new(6);
    let disk_b = sim_b.disk_ref();
    let mut a = leader(&disk_a, 13).await;
    let snapshot = build(&mut a.sm).await;
    let (mut b, objects) =
        follower_with_history(&disk_b, Arc::new(CountingFetcher::new(a.sm.reader()))).await;
    let before = b.applied_state().await.unwrap();
    let incoming = receive(&snapshot.snapshot, &disk_b);
    let bits = incoming.len_bytes() * 8;
    sim_b.flip_bit(incoming.path(), bits / 2 + 3).unwrap();
    let error = b.install(&snapshot.meta, incoming).await.unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert_unchanged(&mut b, &objects, &before).await;
    let leftovers: Vec<String> = disk_b.list(Path::new("groups/0/snapshots")).unwrap();
    assert_eq!(leftovers, ["incoming"], "the refused file is not kept");
}

/// Hands out every block, but one of them damaged.
struct TamperingFetcher {
    inner: CountingFetcher,
}

impl BlockFetcher for TamperingFetcher {
    fn fetch<'a>(&'a self, hashes: &'a [[u8; 32]]) -> FetchFuture<'a> {
        Box::pin(async move {
            let mut found = self.inner.fetch(hashes).await?;
            if let Some((_, data)) = found.first_mut() {
                let mut bad = data.to_vec();
                bad[0] ^= 1;
                *data = Bytes::from(bad);
            }
            Ok(found)
        })
    }
}

#[tokio::test]
async fn damaged_block_from_a_peer_refuses_the_install() {
    let disk_a = SimDisk::new(7).disk_ref();
    let disk_b = SimDisk::new(8).disk_ref();
    let mut a = leader(&disk_a, 14).await;
    let snapshot = build(&mut a.sm).await;
    let fetcher = TamperingFetcher {
        inner: CountingFetcher::new(a.sm.reader()),
    };
    let (mut b, objects) = follower_with_history(&disk_b, Arc::new(fetcher)).await;
    let before = b.applied_state().await.unwrap();
    let error = b
        .install(&snapshot.meta, receive(&snapshot.snapshot, &disk_b))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StateMachineError::BlocksUnavailable { missing: 1, .. }
        ),
        "{error}"
    );
    assert_unchanged(&mut b, &objects, &before).await;
}

#[tokio::test]
async fn block_no_peer_holds_refuses_the_install() {
    let disk_a = SimDisk::new(9).disk_ref();
    let disk_b = SimDisk::new(10).disk_ref();
    let mut a = leader(&disk_a, 15).await;
    let snapshot = build(&mut a.sm).await;
    let (mut b, objects) = follower_with_history(&disk_b, Arc::new(NoFetcher)).await;
    let before = b.applied_state().await.unwrap();
    let error = b
        .install(&snapshot.meta, receive(&snapshot.snapshot, &disk_b))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StateMachineError::BlocksUnavailable { .. }),
        "{error}"
    );
    assert_unchanged(&mut b, &objects, &before).await;
}

/// Withholds one block, and confirms it lost on every other member.
struct LostBlockFetcher {
    inner: CountingFetcher,
    lost: [u8; 32],
}

impl BlockFetcher for LostBlockFetcher {
    fn fetch<'a>(&'a self, hashes: &'a [[u8; 32]]) -> FetchFuture<'a> {
        Box::pin(async move {
            let mut found = self.inner.fetch(hashes).await?;
            found.retain(|(hash, _)| *hash != self.lost);
            Ok(found)
        })
    }

    fn confirm_lost<'a>(&'a self, hashes: &'a [[u8; 32]]) -> LostFuture<'a> {
        Box::pin(async move { hashes.iter().copied().filter(|h| *h == self.lost).collect() })
    }
}

/// A block no member holds intact (damaged on every replica) must not
/// keep a node from installing a snapshot: that would leave it unable to
/// start or catch up for good. It is installed as lost: the objects that
/// refer to it are refused as damage, never served, every other object
/// is served, and the next intact copy written heals it.
#[tokio::test]
async fn block_lost_on_every_member_is_installed_as_lost_and_healed_by_the_next_copy() {
    let disk_a = SimDisk::new(19).disk_ref();
    let disk_b = SimDisk::new(20).disk_ref();
    let mut a = leader(&disk_a, 16).await;
    let snapshot = build(&mut a.sm).await;
    let (path, data) = a
        .objects
        .iter()
        .find(|(_, data)| !data.is_empty())
        .map(|(p, d)| (p.clone(), d.clone()))
        .expect("an object with data");
    let lost = a.sm.reader().stat(&path).unwrap().unwrap().blocks[0].hash;
    let fetcher = LostBlockFetcher {
        inner: CountingFetcher::new(a.sm.reader()),
        lost,
    };
    let b = open_sm(&disk_b, Arc::new(fetcher));
    b.install(&snapshot.meta, receive(&snapshot.snapshot, &disk_b))
        .await
        .expect("the install goes through with the lost block");
    let error = b.reader().get(&path).unwrap_err();
    assert!(error.is_corruption(), "{path}: {error}");
    assert!(
        b.reader().stat(&path).unwrap().is_some(),
        "the object stays listed"
    );
    let mut served = 0;
    for (other, bytes) in &a.objects {
        let manifest = a.sm.reader().stat(other).unwrap().unwrap();
        if manifest.blocks.iter().all(|block| block.hash != lost) {
            assert!(b.reader().get(other).unwrap() == bytes[..], "{other}");
            served += 1;
        }
    }
    assert!(served > 0, "no other object to read");

    // The object written again (a client's retry, a restore from backup):
    // its block is stored anew and the object served.
    let plan = plan_put(&path, data.clone(), TEST_BLOCK_BYTES, TEST_ENTRY_BYTES_MAX);
    b.apply_entries(entries_for(a.next_index, &plan.commands))
        .await
        .unwrap();
    assert_eq!(b.reader().get(&path).unwrap(), data);
}

#[tokio::test]
async fn snapshot_whose_header_disagrees_with_its_metadata_is_refused() {
    let disk_a = SimDisk::new(11).disk_ref();
    let disk_b = SimDisk::new(12).disk_ref();
    let mut a = leader(&disk_a, 16).await;
    let snapshot = build(&mut a.sm).await;
    let mut b = open_sm(&disk_b, Arc::new(CountingFetcher::new(a.sm.reader())));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(a.next_index + 10)),
        last_membership: snapshot.meta.last_membership.clone(),
    };
    let error = b
        .install(&meta, receive(&snapshot.snapshot, &disk_b))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StateMachineError::SnapshotMismatch { .. }),
        "{error}"
    );
    assert_eq!(b.applied_state().await.unwrap().0, None);
}

#[tokio::test]
async fn newest_snapshot_survives_restart_and_older_ones_are_removed() {
    let sim = SimDisk::new(13);
    let disk = sim.disk_ref();
    let mut a = leader(&disk, 17).await;
    let first = build(&mut a.sm).await;
    a.sm.apply_entries(vec![blank(a.next_index)]).await.unwrap();
    let second = build(&mut a.sm).await;
    assert_ne!(first.meta, second.meta);
    let snapshot_files: Vec<String> = disk
        .list(Path::new("groups/0/snapshots"))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".snap"))
        .collect();
    assert_eq!(snapshot_files.len(), 1, "{snapshot_files:?}");
    sim.power_cut();
    drop(a);
    let mut reopened = open_plain(&disk);
    let current = reopened.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, second.meta);
    assert_eq!(current.snapshot.blake3(), second.snapshot.blake3());
    current.snapshot.verify().unwrap();
    // Building made the index durable at least up to what it covers.
    assert!(reopened.applied_state().await.unwrap().0 >= second.meta.last_log_id);
}

#[tokio::test]
async fn sealed_snapshot_ahead_of_the_index_is_installed_at_start_up() {
    // The state a crash leaves between an install's rename and its index
    // commit: the current snapshot is ahead of the index.
    let disk_a = SimDisk::new(14).disk_ref();
    let disk_b = SimDisk::new(15).disk_ref();
    let mut a = leader(&disk_a, 18).await;
    let snapshot = build(&mut a.sm).await;
    let bytes = snapshot.snapshot.read_all().unwrap();
    let name = snapshot.snapshot.path().file_name().unwrap();
    let dir = PathBuf::from(GROUP_DIR).join("snapshots");
    disk_b.create_dir_all(&dir).unwrap();
    SnapshotFile::write(disk_b.clone(), dir.join(name), &bytes).unwrap();

    let fetcher = Arc::new(CountingFetcher::new(a.sm.reader()));
    let mut b = open_sm(&disk_b, fetcher);
    let current = b
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("found at open");
    assert_eq!(current.meta, snapshot.meta);
    assert!(b.applied_state().await.unwrap().0 < current.meta.last_log_id);
    // What openraft does at start-up for a snapshot ahead of the state.
    b.install_snapshot(&current.meta, current.snapshot.clone())
        .await
        .unwrap();
    assert_holds(&b.reader(), &a.objects, "after the start-up install");
    let still = b.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(
        still.snapshot.path(),
        current.snapshot.path(),
        "installed in place"
    );
}

#[tokio::test]
async fn power_cut_after_install_keeps_the_installed_state() {
    let disk_a = SimDisk::new(16).disk_ref();
    let sim_b = SimDisk::new(17);
    let disk_b = sim_b.disk_ref();
    let mut a = leader(&disk_a, 19).await;
    let snapshot = build(&mut a.sm).await;
    let (mut b, _) =
        follower_with_history(&disk_b, Arc::new(CountingFetcher::new(a.sm.reader()))).await;
    b.install_snapshot(&snapshot.meta, receive(&snapshot.snapshot, &disk_b))
        .await
        .unwrap();
    sim_b.power_cut();
    drop(b);
    let mut b = open_plain(&disk_b);
    assert_eq!(
        b.applied_state().await.unwrap().0,
        snapshot.meta.last_log_id
    );
    assert_holds(&b.reader(), &a.objects, "after install and a power cut");
    assert_eq!(
        b.get_current_snapshot().await.unwrap().unwrap().meta,
        snapshot.meta
    );
}
