//! Guards against a node whose journal `fsck --repair` cut in the middle
//! that votes on the shorter log (electing a leader that lacks committed
//! entries), that never gets the cut entries back from the leader, or that
//! serves objects differently afterwards; and against a cluster that, with
//! the same committed record damaged on a majority, serves a state missing
//! it instead of halting, or stays halted when a node still holds it.

mod api_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api_support::{bytes, node_config, Cluster, WAIT};
use finkfs_node::daemon::start;
use finkfs_node::fsck::repair::{self, RepairReport, RepairStatus};
use finkfs_node::fsck::{self, FsckOptions, NoProgress};
use finkfs_raft::log_store::DurableState;
use finkfs_raft::meta::MetaStore;
use finkfs_seam::{DiskRef, RealDisk};
use openraft::async_runtime::watch::WatchReceiver;

const JOURNAL: &str = "groups/0/journal";
const META: &str = "groups/0/meta";
/// Objects written before the damage; each is one journal record.
const OBJECTS: usize = 24;
/// The object whose record is damaged: mid-log, not the tail.
const VICTIM: usize = OBJECTS / 2;
/// Longer than an election timeout (300–600 ms) several times over.
const SETTLE: Duration = Duration::from_millis(2500);

fn objects(prefix: &str, seed: u64) -> Vec<(String, Vec<u8>)> {
    (0..OBJECTS)
        .map(|i| {
            let path = format!("{prefix}/alert-{i:03}.avro");
            (path, bytes(30_000 + 997 * i, seed + i as u64))
        })
        .collect()
}

async fn put_all(cluster: &Cluster, objects: &[(String, Vec<u8>)]) {
    let client = cluster.client().await;
    for (path, data) in objects {
        client.put(path, data.clone()).await.expect("put");
    }
}

/// Waits until node `i` has every object in its own store.
async fn wait_holds(cluster: &Cluster, i: usize, objects: &[(String, Vec<u8>)]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let reader = cluster.nodes[i].running().reader().clone();
    for (path, _) in objects {
        while reader.stat(path).unwrap().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never reached node {}",
                cluster.nodes[i].id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every object reads back byte-identical from node `i`'s own store.
fn assert_node_serves(cluster: &Cluster, i: usize, objects: &[(String, Vec<u8>)]) {
    let reader = cluster.nodes[i].running().reader();
    for (path, data) in objects {
        let got = reader
            .get(path)
            .unwrap_or_else(|e| panic!("node {}: {path}: {e}", cluster.nodes[i].id));
        assert!(
            &got == data,
            "node {}: {path} differs when read back",
            cluster.nodes[i].id
        );
    }
}

fn last_log_index(cluster: &Cluster, i: usize) -> Option<u64> {
    let raft = cluster.nodes[i].running().raft();
    raft.metrics().borrow_watched().last_log_index
}

/// The addresses node `i` runs on, kept for its restart.
#[derive(Debug, Clone, Copy)]
struct Addrs {
    peer: std::net::SocketAddr,
    client: std::net::SocketAddr,
    metrics: Option<std::net::SocketAddr>,
}

async fn stop(cluster: &mut Cluster, i: usize) -> Addrs {
    let running = cluster.nodes[i].running();
    let addrs = Addrs {
        peer: running.peer_addr,
        client: running.client_addr,
        metrics: running.metrics_addr,
    };
    cluster.nodes[i].stop().await;
    addrs
}

/// Starts node `i` again on its data directory and former addresses.
async fn restart(cluster: &mut Cluster, i: usize, addrs: Addrs) {
    let node = &mut cluster.nodes[i];
    let mut config = node_config(node.id, node.data_dir.clone());
    config.peer_listen = addrs.peer;
    config.client_listen = addrs.client;
    config.metrics_listen = addrs.metrics;
    node.node = Some(start(config).await.expect("restart"));
}

fn disk_of(data_dir: &Path) -> DiskRef {
    Arc::new(RealDisk::open(data_dir).expect("data dir"))
}

/// Flips one byte inside the journal record holding `needle` (bytes of
/// one object, stored raw in its record): a committed record in the
/// middle of the log. The segment and offset damaged.
fn damage_record(data_dir: &Path, needle: &[u8]) -> (PathBuf, u64) {
    let disk = disk_of(data_dir);
    let mut hits = Vec::new();
    for name in disk.list(Path::new(JOURNAL)).expect("list the journal") {
        let path = Path::new(JOURNAL).join(&name);
        let bytes = finkfs_seam::read_file(&*disk, &path).expect("read a segment");
        for (at, window) in bytes.windows(needle.len()).enumerate() {
            if window == needle {
                hits.push((path.clone(), at as u64));
            }
        }
    }
    assert_eq!(
        hits.len(),
        1,
        "the object's bytes are in one record: {hits:?}"
    );
    let (path, at) = hits.pop().expect("one hit");
    let file = disk.open(&path).expect("open the segment");
    let mut byte = [0u8; 1];
    file.read_at(at, &mut byte).expect("read");
    byte[0] ^= 0x10;
    file.write_at(at, &byte).expect("write");
    file.sync().expect("sync");
    (path, at)
}

/// `finkfs fsck --repair` on a stopped node's data directory.
fn repair(data_dir: &Path) -> RepairReport {
    let scratch_dir = tempfile::tempdir().expect("scratch");
    let scratch: DiskRef = Arc::new(RealDisk::open(scratch_dir.path()).expect("scratch"));
    repair::repair_data_dir(
        disk_of(data_dir),
        scratch,
        &FsckOptions::default(),
        &mut NoProgress,
    )
    .expect("the repair runs to the end")
}

fn saved_state(data_dir: &Path) -> DurableState {
    let disk = disk_of(data_dir);
    let recovery = MetaStore::scan(&*disk, Path::new(META)).expect("scan meta");
    DurableState::decode(recovery.payload.as_deref().expect("a saved state")).expect("decodes")
}

fn actions(report: &RepairReport) -> Vec<&str> {
    report.actions.iter().map(|a| a.action.as_str()).collect()
}

/// The bytes of the victim object that locate its record.
fn needle(objects: &[(String, Vec<u8>)]) -> Vec<u8> {
    let data = &objects[VICTIM].1;
    data[data.len() / 2..data.len() / 2 + 64].to_vec()
}

/// Node `i`'s status as its client API answers it.
async fn status(cluster: &Cluster, i: usize) -> finkfs_node::api::proto::StatusReply {
    let client = cluster.client().await;
    client
        .status_of(&cluster.nodes[i].client_addr)
        .await
        .expect("status")
}

fn below_floor(status: &finkfs_node::api::proto::StatusReply) -> bool {
    status
        .vote_blockers
        .iter()
        .any(|b| b.contains("BelowVouchFloor"))
}

/// Whether any running node is the leader.
fn any_leader(cluster: &Cluster) -> Option<u64> {
    cluster
        .nodes
        .iter()
        .filter_map(|n| n.node.as_ref())
        .find(|n| n.raft().metrics().borrow_watched().state.is_leader())
        .map(|n| n.id)
}

/// Deletes the index of a stopped node (a lost file), so that the repair
/// rebuilds it and the node re-applies its journal: its state then holds
/// no more than its (cut) log.
fn lose_index(data_dir: &Path) {
    let disk = disk_of(data_dir);
    disk.remove(Path::new(INDEX)).expect("remove the index");
    disk.sync_dir(Path::new(INDEX).parent().expect("a parent"))
        .expect("sync");
}

const INDEX: &str = "groups/0/index.redb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_repaired_below_its_applied_state_refuses_votes_until_the_leader_resends_the_cut_entries(
) {
    let mut cluster = Cluster::start(3).await;
    let mut objects = objects("floor", 100);
    put_all(&cluster, &objects).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let lagging = (leader + 2) % 3;
    for i in 0..3 {
        wait_holds(&cluster, i, &objects).await;
    }
    // The third node misses the next writes: its log ends below what the
    // follower will hold.
    let lagging_addrs = stop(&mut cluster, lagging).await;
    let missed = objects_after("floor-missed", 200);
    put_all(&cluster, &missed).await;
    objects.extend(missed);
    wait_holds(&cluster, follower, &objects).await;
    let last_before = last_log_index(&cluster, follower).expect("the follower has a log");

    let follower_addrs = stop(&mut cluster, follower).await;
    let leader_addrs = stop(&mut cluster, leader).await;
    let data_dir = cluster.nodes[follower].data_dir.clone();
    damage_record(&data_dir, &needle(&objects));
    lose_index(&data_dir);
    let report = repair(&data_dir);
    assert_eq!(report.status, RepairStatus::SafeToStart, "{report:#?}");
    for action in ["quarantined", "truncated", "set_vouch_floor"] {
        assert!(actions(&report).contains(&action), "{action}: {report:#?}");
    }
    let floor = saved_state(&data_dir)
        .vouch_floor
        .expect("a vouch floor was saved");
    assert_eq!(
        floor, last_before,
        "the floor is the last index the node held"
    );

    // With the leader down, the repaired node and the lagging one would be
    // a majority. The lagging one lacks entries the repaired node held and
    // acknowledged: the repaired node must refuse it, and not stand itself.
    restart(&mut cluster, follower, follower_addrs).await;
    restart(&mut cluster, lagging, lagging_addrs).await;
    let first = status(&cluster, follower).await;
    assert!(!first.may_vote, "the repaired node may vote: {first:?}");
    assert!(below_floor(&first), "{:?}", first.vote_blockers);
    let cut_to = last_log_index(&cluster, follower).unwrap_or(0);
    assert!(cut_to < floor, "the log was cut: {cut_to} < {floor}");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        any_leader(&cluster),
        None,
        "a leader was elected with the vote of a node below its vouch floor, on a log missing entries it held"
    );
    let still = status(&cluster, follower).await;
    assert!(!still.may_vote && below_floor(&still), "{still:?}");

    // The leader comes back and is elected (it holds every entry the
    // repaired node held), and re-sends the entries the repair cut. Then
    // the gate lifts.
    restart(&mut cluster, leader, leader_addrs).await;
    let elected = cluster.wait_for_leader().await;
    assert_eq!(elected, leader, "only the old leader holds every entry");
    wait_may_vote(&cluster, follower, floor).await;

    let more = objects_after("floor-after", 300);
    put_all(&cluster, &more).await;
    objects.extend(more);
    wait_holds(&cluster, follower, &objects).await;
    assert_node_serves(&cluster, follower, &objects);

    // The entries it holds again are in its journal, intact.
    stop(&mut cluster, follower).await;
    let check = check(&data_dir);
    assert!(check.is_healthy(), "{:#?}", check.problems);
    cluster.stop().await;
}

/// Waits until node `i` may vote again, its log at or past `floor`.
async fn wait_may_vote(cluster: &Cluster, i: usize, floor: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = status(cluster, i).await;
        if now.may_vote && now.vote_blockers.is_empty() {
            let last = last_log_index(cluster, i).unwrap_or(0);
            assert!(last >= floor, "the gate lifted at {last}, below {floor}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {} never got its entries back: {now:?}",
            cluster.nodes[i].id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The common case: the cut entries were applied before the stop, so the
/// state machine holds them and openraft counts the log as purged up to
/// what was applied. The floor is met at once and the node may vote: its
/// state covers every entry it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_repaired_within_its_applied_state_votes_at_once_and_serves_every_object() {
    let mut cluster = Cluster::start(3).await;
    let mut objects = objects("applied", 200);
    put_all(&cluster, &objects).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    wait_holds(&cluster, follower, &objects).await;
    let last_before = last_log_index(&cluster, follower).expect("the follower has a log");

    let addrs = stop(&mut cluster, follower).await;
    let data_dir = cluster.nodes[follower].data_dir.clone();
    damage_record(&data_dir, &needle(&objects));
    let report = repair(&data_dir);
    assert_eq!(report.status, RepairStatus::SafeToStart, "{report:#?}");
    assert!(actions(&report).contains(&"truncated"), "{report:#?}");
    assert_eq!(saved_state(&data_dir).vouch_floor, Some(last_before));

    restart(&mut cluster, follower, addrs).await;
    let first = status(&cluster, follower).await;
    assert!(
        first.may_vote && first.vote_blockers.is_empty(),
        "{first:?}"
    );
    let last = last_log_index(&cluster, follower).unwrap_or(0);
    assert!(
        last >= last_before,
        "the log (or what it applied) ends at {last}"
    );
    assert_node_serves(&cluster, follower, &objects);

    let more = objects_after("applied-after", 400);
    put_all(&cluster, &more).await;
    objects.extend(more);
    wait_holds(&cluster, follower, &objects).await;
    assert_node_serves(&cluster, follower, &objects);
    cluster.stop().await;
}

fn objects_after(prefix: &str, seed: u64) -> Vec<(String, Vec<u8>)> {
    objects(prefix, seed).into_iter().take(4).collect()
}

fn check(data_dir: &Path) -> fsck::FsckReport {
    let scratch_dir = tempfile::tempdir().expect("scratch");
    let scratch: DiskRef = Arc::new(RealDisk::open(scratch_dir.path()).expect("scratch"));
    fsck::check_data_dir(
        disk_of(data_dir),
        scratch,
        &FsckOptions::default(),
        &mut NoProgress,
    )
    .expect("fsck runs")
}

/// A client that gives up within seconds, for a cluster that may halt.
async fn impatient_client(cluster: &Cluster) -> finkfs_node::client::Client {
    let mut options = api_support::client_options();
    options.request_timeout = Duration::from_secs(2);
    options.retry.attempts_max = 5;
    options.retry.elapsed_max = Duration::from_secs(3);
    finkfs_node::client::Client::connect_with(cluster.addrs(), options)
        .await
        .expect("connect")
}

/// Every object through the client API: byte-identical or an error, never
/// other bytes and never "not found". The number served.
async fn assert_never_served_wrong(cluster: &Cluster, objects: &[(String, Vec<u8>)]) -> usize {
    let client = impatient_client(cluster).await;
    let mut served = 0;
    for (path, data) in objects {
        match client.get(path).await {
            Ok(got) => {
                assert!(got.as_ref() == data.as_slice(), "{path} served wrong");
                served += 1;
            }
            Err(error) => {
                let text = error.to_string();
                assert!(
                    !text.to_lowercase().contains("not found"),
                    "{path} reported missing: {text}"
                );
            }
        }
    }
    served
}

/// What is done to the two damaged nodes while the cluster is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Majority {
    /// The record is damaged; the nodes start on it as it is.
    Damaged,
    /// Damaged, then `fsck --repair`: their applied state still covers it.
    Repaired,
    /// Damaged, the index lost too, then `fsck --repair`: their state no
    /// longer covers the cut entries.
    RepairedIndexLost,
}

/// Stops every node, damages the record of one committed object on two of
/// them (and what `how` says), and starts all three again. Returns the
/// cluster, the objects, the two damaged nodes and the intact one, and the
/// last index every node held.
async fn damage_a_majority(how: Majority) -> (Cluster, Objects, [usize; 2], usize, u64) {
    let mut cluster = Cluster::start(3).await;
    let objects = objects("majority", 500);
    put_all(&cluster, &objects).await;
    let leader = cluster.wait_for_leader().await;
    for i in 0..3 {
        wait_holds(&cluster, i, &objects).await;
    }
    let last = last_log_index(&cluster, leader).expect("a log");
    let damaged = [(leader + 1) % 3, (leader + 2) % 3];
    let mut addrs = Vec::new();
    for i in 0..3 {
        addrs.push(stop(&mut cluster, i).await);
    }
    for i in damaged {
        let data_dir = cluster.nodes[i].data_dir.clone();
        damage_record(&data_dir, &needle(&objects));
        if how == Majority::RepairedIndexLost {
            lose_index(&data_dir);
        }
        if matches!(how, Majority::Repaired | Majority::RepairedIndexLost) {
            let report = repair(&data_dir);
            assert_eq!(report.status, RepairStatus::SafeToStart, "{report:#?}");
            assert_eq!(saved_state(&data_dir).vouch_floor, Some(last));
        }
    }
    for (i, addrs) in addrs.into_iter().enumerate() {
        restart(&mut cluster, i, addrs).await;
    }
    (cluster, objects, damaged, leader, last)
}

type Objects = Vec<(String, Vec<u8>)>;

/// What a cluster with a damaged majority must do: either halt (no leader:
/// writes refused, reads fail loudly, the damaged nodes refuse to vote) or
/// elect a leader whose state covers every committed entry. Never an
/// object served wrong or reported missing, never one gone from a node's
/// own store. Returns the leader, if one was elected.
async fn assert_halts_or_serves_everything(
    cluster: &Cluster,
    objects: &[(String, Vec<u8>)],
    damaged: [usize; 2],
    last: u64,
    state_kept: bool,
) -> Option<u64> {
    tokio::time::sleep(SETTLE).await;
    let leader = any_leader(cluster);
    match leader {
        None => {
            let client = impatient_client(cluster).await;
            let write = client.put("majority/after", bytes(1000, 9)).await;
            assert!(write.is_err(), "a write was acknowledged with no leader");
            for i in damaged {
                let now = status(cluster, i).await;
                assert!(!now.may_vote, "node {}: {now:?}", cluster.nodes[i].id);
            }
        }
        Some(id) => {
            let i = cluster
                .nodes
                .iter()
                .position(|n| n.id == id)
                .expect("a node");
            let led = last_log_index(cluster, i).unwrap_or(0);
            assert!(led >= last, "the leader's log ends at {led}, below {last}");
        }
    }
    let served = assert_never_served_wrong(cluster, objects).await;
    if leader.is_some() {
        assert_eq!(served, objects.len(), "a led cluster serves every object");
    }
    // Nothing acknowledged is gone: the intact node's own store holds every
    // object, and so does every node whose state the repair kept.
    for i in 0..3 {
        if !damaged.contains(&i) || state_kept {
            assert_node_serves(cluster, i, objects);
        }
    }
    leader
}

/// Damage at or below what a node's index applied costs nothing: the
/// entries are in its state machine, so it purges its journal through the
/// applied index at start and votes, with no repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_record_damaged_on_a_majority_within_their_applied_state_needs_no_repair() {
    let (cluster, objects, damaged, _, last) = damage_a_majority(Majority::Damaged).await;
    let leader = assert_halts_or_serves_everything(&cluster, &objects, damaged, last, true).await;
    assert!(
        leader.is_some(),
        "no leader although every node's state holds the damaged record"
    );
    for i in damaged {
        let now = status(&cluster, i).await;
        assert!(
            now.may_vote && now.vote_blockers.is_empty(),
            "node {}: {now:?}",
            cluster.nodes[i].id
        );
    }
    put_all(&cluster, &objects_after("majority-after", 650)).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_record_repaired_on_a_majority_within_their_applied_state_serves_everything() {
    let (cluster, objects, damaged, _, last) = damage_a_majority(Majority::Repaired).await;
    let leader = assert_halts_or_serves_everything(&cluster, &objects, damaged, last, true).await;
    assert!(leader.is_some(), "no leader: {leader:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_record_repaired_on_a_majority_below_their_applied_state_elects_the_intact_node()
{
    let (cluster, objects, damaged, _, last) = damage_a_majority(Majority::RepairedIndexLost).await;
    // The repaired nodes stay below their floors and do not stand, but they
    // grant their vote to a candidate at least as up to date as the log
    // they held: the intact node, which sends them the cut entries.
    let leader = assert_halts_or_serves_everything(&cluster, &objects, damaged, last, false).await;
    let leader = leader.expect("no leader: the intact node was never elected");
    let intact = (0..3)
        .find(|i| !damaged.contains(i))
        .expect("an intact node");
    assert_eq!(
        leader, cluster.nodes[intact].id,
        "only the intact node can win"
    );
    for i in damaged {
        wait_may_vote(&cluster, i, last).await;
        wait_holds(&cluster, i, &objects).await;
        assert_node_serves(&cluster, i, &objects);
    }
    put_all(&cluster, &objects_after("majority-after", 700)).await;
    cluster.stop().await;
}
