//! Guards against damage at rest that a running cluster leaves in place:
//! a block damaged on a follower or the leader that the scrubber never
//! finds, a read that answers DATA_LOSS while a peer holds an intact copy,
//! a repair that deletes the damaged bytes, and a block damaged on every
//! replica that is served, reported as "not found", or blocks other writes.

mod api_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api_support::{bytes, node_config, Cluster, TestNode, WAIT};
use finkfs_node::blocks::RECORD_HEADER_BYTES;
use finkfs_node::daemon::start;
use finkfs_node::index::QuarantineStatus;
use finkfs_node::scrub::ScrubSettings;
use finkfs_node::BlockLocation;
use finkfs_seam::{DiskRef, RealDisk};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEADER: u64 = RECORD_HEADER_BYTES as u64;

fn scrub_every(period: Duration) -> impl Fn(&mut finkfs_node::daemon::config::NodeConfig) {
    move |config| {
        config.scrub = ScrubSettings {
            period,
            rate_cap_bytes_per_s: None,
        }
    }
}

fn no_scrub() -> impl Fn(&mut finkfs_node::daemon::config::NodeConfig) {
    scrub_every(Duration::ZERO)
}

/// The node's disk, for damaging its files the way a disk would.
fn disk_of(node: &TestNode) -> DiskRef {
    Arc::new(RealDisk::open(&node.data_dir).expect("data dir"))
}

/// Where `node` keeps the first block of `path`.
fn location(node: &TestNode, path: &str) -> BlockLocation {
    let reader = node.running().reader();
    let manifest = reader.stat(path).unwrap().expect("object replicated");
    reader
        .index()
        .block_location(&manifest.blocks[0].hash)
        .unwrap()
        .expect("block known")
        .location
}

fn pack_file(loc: &BlockLocation) -> PathBuf {
    PathBuf::from("groups/0/blocks").join(finkfs_node::blocks::pack_file_name(loc.pack))
}

fn flip_bit(disk: &DiskRef, loc: &BlockLocation) -> u64 {
    let at = loc.offset + HEADER + u64::from(loc.len) / 2;
    let file = disk.open(&pack_file(loc)).unwrap();
    let mut byte = [0u8; 1];
    file.read_at(at, &mut byte).unwrap();
    byte[0] ^= 0x04;
    file.write_at(at, &byte).unwrap();
    file.sync().unwrap();
    at
}

fn read_byte(disk: &DiskRef, loc: &BlockLocation, at: u64) -> u8 {
    let mut byte = [0u8; 1];
    let file = disk.open(&pack_file(loc)).unwrap();
    file.read_at(at, &mut byte).unwrap();
    byte[0]
}

/// The value of one metric line (name with labels, as a prefix).
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text.lines()
        .find(|line| line.starts_with(name) && !line.starts_with('#'))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found"))
}

async fn metrics_of(node: &TestNode, name: &str) -> u64 {
    metric(node.running().metrics_addr.expect("metrics on"), name).await
}

async fn wait_for_metric(node: &TestNode, name: &str, at_least: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if metrics_of(node, name).await >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {at_least} on node {}",
            node.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_replicated(node: &TestNode, path: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.running().reader().stat(path).unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never replicated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const DAMAGE: &str = "finkfs_scrub_damage_found_total{";
const REPAIRED: &str = "finkfs_scrub_repaired_total";
const UNREPAIRABLE: &str = "finkfs_scrub_unrepairable_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrubber_finds_flipped_bit_and_repairs_from_peer() {
    let cluster = Cluster::start_with(3, scrub_every(Duration::from_millis(300))).await;
    let client = cluster.client().await;
    let data = bytes(200_000, 11);
    client.put("rot/alert", data.clone()).await.expect("put");
    let leader = cluster.wait_for_leader().await;
    for (round, target) in [(leader + 1) % 3, leader].into_iter().enumerate() {
        let node = &cluster.nodes[target];
        wait_replicated(node, "rot/alert").await;
        let loc = location(node, "rot/alert");
        let disk = disk_of(node);
        let at = flip_bit(&disk, &loc);
        let flipped = read_byte(&disk, &loc, at);
        wait_for_metric(node, REPAIRED, 1).await;
        assert!(metrics_of(node, DAMAGE).await >= 1, "round {round}");
        assert_eq!(metrics_of(node, UNREPAIRABLE).await, 0);
        assert!(metrics_of(node, "finkfs_scrub_bytes_total").await > 0);
        // The local copy now verifies, and the damaged bytes are still on
        // disk, quarantined.
        assert_eq!(node.running().reader().get("rot/alert").unwrap(), data);
        assert_ne!(
            location(node, "rot/alert"),
            loc,
            "the index points to the new copy"
        );
        assert_eq!(read_byte(&disk, &loc, at), flipped, "damaged bytes kept");
        let quarantined = node.running().reader().index().quarantined().unwrap();
        assert!(quarantined.iter().any(|q| q.offset == loc.offset
            && q.pack == loc.pack
            && q.status == QuarantineStatus::Repaired));
    }
    assert_eq!(client.get("rot/alert").await.expect("get"), data);
    wait_for_metric(&cluster.nodes[leader], "finkfs_scrub_passes_total", 1).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_on_leader_with_damaged_block_repairs_from_follower() {
    let cluster = Cluster::start_with(3, no_scrub()).await;
    let client = cluster.client().await;
    let data = bytes(150_000, 12);
    client.put("read/alert", data.clone()).await.expect("put");
    let leader = cluster.wait_for_leader().await;
    let node = &cluster.nodes[leader];
    let loc = location(node, "read/alert");
    flip_bit(&disk_of(node), &loc);
    assert!(
        node.running().reader().get("read/alert").is_err(),
        "damage in place"
    );

    assert_eq!(client.get("read/alert").await.expect("repaired read"), data);
    assert_eq!(metrics_of(node, REPAIRED).await, 1);
    assert_eq!(node.running().reader().get("read/alert").unwrap(), data);
    let range = client
        .get_range("read/alert", 1000, 5000)
        .await
        .expect("range");
    assert_eq!(range, data[1000..6000]);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_damaged_on_every_replica_is_never_served() {
    let cluster = Cluster::start_with(3, no_scrub()).await;
    let client = cluster.client().await;
    let data = bytes(120_000, 13);
    client.put("lost/alert", data.clone()).await.expect("put");
    for node in &cluster.nodes {
        wait_replicated(node, "lost/alert").await;
        flip_bit(&disk_of(node), &location(node, "lost/alert"));
    }
    let leader = cluster.wait_for_leader().await;
    let hash = location(&cluster.nodes[leader], "lost/alert").hash;

    let error = client.get("lost/alert").await.unwrap_err();
    assert_eq!(error.code(), Some(tonic::Code::DataLoss), "{error}");
    let message = error.message().unwrap_or_default();
    assert!(
        message.contains(&finkfs_node::hex(&hash)),
        "names the block: {message}"
    );
    assert!(
        message.contains("lost/alert"),
        "names the object: {message}"
    );
    assert!(metrics_of(&cluster.nodes[leader], UNREPAIRABLE).await >= 1);
    let quarantined = cluster.nodes[leader]
        .running()
        .reader()
        .index()
        .quarantined()
        .unwrap();
    assert!(quarantined
        .iter()
        .any(|q| q.hash == hash && q.status == QuarantineStatus::AwaitingCopy));
    // Asked again, still refused: never bytes.
    assert_eq!(
        client.get("lost/alert").await.unwrap_err().code(),
        Some(tonic::Code::DataLoss)
    );
    // Other objects are written and read as before.
    let other = bytes(30_000, 14);
    client
        .put("lost/other", other.clone())
        .await
        .expect("put other");
    assert_eq!(client.get("lost/other").await.expect("get other"), other);
    cluster.stop().await;
}

/// The damage a disk can do to the record of `loc` in a stopped node.
#[derive(Debug, Clone, Copy)]
enum Fault {
    BitFlip,
    ZeroedSector,
    TruncatedPack,
    DeletedPack,
    /// The record of another block written over this one.
    MisdirectedWrite,
}

fn inject(disk: &DiskRef, fault: Fault, loc: &BlockLocation, other: &BlockLocation) {
    let path = pack_file(loc);
    match fault {
        Fault::BitFlip => {
            flip_bit(disk, loc);
        }
        Fault::ZeroedSector => {
            let start = (loc.offset + HEADER) / 512 * 512;
            let file = disk.open(&path).unwrap();
            file.write_at(start, &[0u8; 512]).unwrap();
            file.sync().unwrap();
        }
        Fault::TruncatedPack => {
            let file = disk.open(&path).unwrap();
            file.set_len(loc.offset + HEADER + 100).unwrap();
            file.sync().unwrap();
        }
        Fault::DeletedPack => {
            disk.remove(&path).unwrap();
            disk.sync_dir(path.parent().unwrap()).unwrap();
        }
        Fault::MisdirectedWrite => {
            let bytes_len = HEADER + u64::from(other.len.min(loc.len));
            let mut record = vec![0u8; bytes_len as usize];
            disk.open(&pack_file(other))
                .unwrap()
                .read_at(other.offset, &mut record)
                .unwrap();
            let file = disk.open(&path).unwrap();
            file.write_at(loc.offset, &record).unwrap();
            file.sync().unwrap();
        }
    }
}

/// Stops node `i` and starts it again on the same addresses and data.
async fn restart(cluster: &mut Cluster, i: usize, between: impl FnOnce(&Path)) {
    let node = &mut cluster.nodes[i];
    let running = node.running();
    let (peer, client, metrics) = (running.peer_addr, running.client_addr, running.metrics_addr);
    node.stop().await;
    between(&node.data_dir);
    let mut config = node_config(node.id, node.data_dir.clone());
    config.peer_listen = peer;
    config.client_listen = client;
    config.metrics_listen = metrics;
    scrub_every(Duration::from_millis(300))(&mut config);
    node.node = Some(start(config).await.expect("restart"));
}

const FAULTS: [Fault; 5] = [
    Fault::BitFlip,
    Fault::ZeroedSector,
    Fault::TruncatedPack,
    Fault::DeletedPack,
    Fault::MisdirectedWrite,
];

/// Writes one object per fault kind, each in its own pack on every node in
/// `separate` (a restarted store starts a new pack), so that the faults
/// injected later do not overlap. Returns the paths and their bytes.
async fn one_object_per_fault(
    cluster: &mut Cluster,
    separate: &[usize],
    seed: u64,
) -> Vec<(String, Vec<u8>)> {
    let client = cluster.client().await;
    let mut objects = Vec::new();
    for i in 0..FAULTS.len() {
        let path = format!("faults/{i}");
        let data = bytes(40_000 + i * 1000, seed + i as u64);
        client.put(&path, data.clone()).await.expect("put");
        for &node in separate {
            wait_replicated(&cluster.nodes[node], &path).await;
        }
        objects.push((path, data));
        for &node in separate {
            restart(cluster, node, |_| {}).await;
        }
    }
    for &node in separate {
        let packs: std::collections::HashSet<u64> = objects
            .iter()
            .map(|(path, _)| location(&cluster.nodes[node], path).pack)
            .collect();
        assert_eq!(
            packs.len(),
            FAULTS.len(),
            "one pack per object on node {node}"
        );
    }
    objects
}

/// Restarts node `i` with every fault kind injected, one per object of
/// `objects`, in its own copies.
async fn restart_with_each_fault(cluster: &mut Cluster, i: usize, objects: &[(String, Vec<u8>)]) {
    let locations: Vec<BlockLocation> = objects
        .iter()
        .map(|(path, _)| location(&cluster.nodes[i], path))
        .collect();
    restart(cluster, i, |data_dir| {
        let disk: DiskRef = Arc::new(RealDisk::open(data_dir).unwrap());
        for (n, fault) in FAULTS.iter().enumerate() {
            let other = &locations[(n + 1) % locations.len()];
            inject(&disk, *fault, &locations[n], other);
        }
    })
    .await;
}

/// Each fault kind on one node, follower or leader, while the others hold
/// intact copies: its scrubber finds every one and repairs it from them.
async fn each_fault_kind_is_repaired_by_the_scrubber(on_leader: bool) {
    let mut cluster = Cluster::start_with(3, scrub_every(Duration::from_millis(300))).await;
    let leader = cluster.wait_for_leader().await;
    let target = if on_leader { leader } else { (leader + 1) % 3 };
    let objects = one_object_per_fault(&mut cluster, &[target], 20).await;
    restart_with_each_fault(&mut cluster, target, &objects).await;
    let node = &cluster.nodes[target];
    wait_for_metric(node, REPAIRED, FAULTS.len() as u64).await;
    assert_eq!(metrics_of(node, UNREPAIRABLE).await, 0);
    for (path, data) in &objects {
        assert_eq!(&node.running().reader().get(path).unwrap(), data, "{path}");
    }
    let client = cluster.client().await;
    for (path, data) in &objects {
        assert_eq!(&client.get(path).await.expect("get"), data);
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_kind_on_a_follower_is_repaired_by_the_scrubber() {
    each_fault_kind_is_repaired_by_the_scrubber(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_kind_on_the_leader_is_repaired_by_the_scrubber() {
    each_fault_kind_is_repaired_by_the_scrubber(true).await;
}

/// Each fault kind on every replica: no intact copy is left, so each
/// object is halted. Reads answer DATA_LOSS (never bytes, never "not
/// found"), the objects stay listed, every scrubber counts them
/// unrepairable, other objects are served, and fsck on a stopped node
/// names each damaged record with its pack and offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_kind_on_every_replica_is_halted_reported_and_never_served() {
    let mut cluster = Cluster::start_with(3, scrub_every(Duration::from_millis(300))).await;
    let every = [0, 1, 2];
    let objects = one_object_per_fault(&mut cluster, &every, 40).await;
    let locations: Vec<Vec<BlockLocation>> = every
        .iter()
        .map(|&i| {
            objects
                .iter()
                .map(|(path, _)| location(&cluster.nodes[i], path))
                .collect()
        })
        .collect();
    for i in every {
        restart_with_each_fault(&mut cluster, i, &objects).await;
    }
    for node in &cluster.nodes {
        wait_for_metric(node, UNREPAIRABLE, FAULTS.len() as u64).await;
        assert_eq!(metrics_of(node, REPAIRED).await, 0, "node {}", node.id);
    }
    let client = cluster.client().await;
    for (path, _) in &objects {
        let error = client
            .get(path)
            .await
            .expect_err("a halted object is never served");
        assert_eq!(error.code(), Some(tonic::Code::DataLoss), "{path}: {error}");
        for node in &cluster.nodes {
            assert!(
                node.running().reader().get(path).is_err(),
                "{path} on node {}",
                node.id
            );
        }
    }
    let listed: Vec<String> = client
        .list_all("faults/")
        .await
        .expect("list")
        .into_iter()
        .map(|object| object.path)
        .collect();
    let paths: Vec<String> = objects.iter().map(|(path, _)| path.clone()).collect();
    assert_eq!(listed, paths, "halted objects stay listed");
    let other = bytes(30_000, 49);
    client
        .put("faults/other", other.clone())
        .await
        .expect("put other");
    assert_eq!(client.get("faults/other").await.expect("get other"), other);

    // Offline, fsck names each damaged record where it lies.
    cluster.nodes[0].stop().await;
    let disk: DiskRef = Arc::new(RealDisk::open(&cluster.nodes[0].data_dir).unwrap());
    let scratch = tempfile::tempdir().unwrap();
    let scratch: DiskRef = Arc::new(RealDisk::open(scratch.path()).unwrap());
    let report = finkfs_node::fsck::check_data_dir(
        disk,
        scratch,
        &finkfs_node::fsck::FsckOptions::default(),
        &mut finkfs_node::fsck::NoProgress,
    )
    .expect("fsck runs");
    assert!(!report.is_healthy(), "{:#?}", report.problems);
    for (loc, fault) in locations[0].iter().zip(FAULTS) {
        let file = pack_file(loc).display().to_string();
        let found = report
            .damage()
            .any(|p| p.file == file && p.offset == Some(loc.offset));
        assert!(
            found,
            "{fault:?}: nothing at {file} offset {}: {:#?}",
            loc.offset, report.problems
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_repair_from_a_peer_restores_a_stopped_node() {
    use finkfs_node::repair::{find_damaged_blocks, repair_blocks, PeerAddrFetcher};
    let mut cluster = Cluster::start_with(3, no_scrub()).await;
    let client = cluster.client().await;
    let data = bytes(90_000, 30);
    client
        .put("offline/alert", data.clone())
        .await
        .expect("put");
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    wait_replicated(&cluster.nodes[follower], "offline/alert").await;
    let loc = location(&cluster.nodes[follower], "offline/alert");
    let leader_peer = cluster.nodes[leader].running().advertised.peer.clone();
    cluster.nodes[follower].stop().await;
    let disk = disk_of(&cluster.nodes[follower]);
    flip_bit(&disk, &loc);

    let mut store =
        finkfs_node::ObjectStore::open(disk.clone(), PathBuf::from("groups/0")).unwrap();
    let applied = store.applied().unwrap();
    let damaged = find_damaged_blocks(store.reader()).unwrap();
    assert_eq!(damaged.len(), 1);
    let fetcher = PeerAddrFetcher::new(vec![leader_peer], finkfs_node::daemon::GROUP);
    let report = repair_blocks(&mut store, &damaged, &fetcher, 0)
        .await
        .unwrap();
    assert_eq!(report.repaired.len(), 1, "{report:?}");
    assert_eq!(store.get("offline/alert").unwrap(), data);
    assert_eq!(
        store.applied().unwrap(),
        applied,
        "applied log id unchanged"
    );
    drop(store);
    cluster.stop().await;
}
