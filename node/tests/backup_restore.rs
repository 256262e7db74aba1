//! Guards against a backup that cannot bring a cluster back: after every
//! node's data directory is destroyed, a node restored from the backup must
//! serve every object the backup covers, byte-identical, and accept writes;
//! and against automatic backups that silently do not happen.

mod api_support;

use std::path::Path;
use std::sync::Arc;

use api_support::{bytes, client_options, node_config, Cluster};
use finkfs_node::api::MemberAddr;
use std::time::Duration;

use finkfs_node::backup::{restore, take_backup, BackupTarget, OnDamage, RestorePoint, Retention};
use finkfs_node::client::Client;
use finkfs_node::daemon::backup::BackupSettings;
use finkfs_node::daemon::{start, GROUP};
use finkfs_seam::{DiskRef, RealDisk};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restored_from_backup_serves_every_object_and_takes_writes() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let mut objects = Vec::new();
    for i in 0..50u64 {
        let path = format!("ztf/2026/{i:04}.avro");
        let data = bytes(30_000 + i as usize * 700, 7 + i);
        client.put(&path, data.clone()).await.expect("put");
        objects.push((path, data));
    }
    client.delete("ztf/2026/0003.avro").await.expect("delete");
    objects.remove(3);

    let leader = cluster.wait_for_leader().await;
    let node = &cluster.nodes[leader];
    let target_dir = tempfile::tempdir().unwrap();
    let target_disk: DiskRef = Arc::new(RealDisk::open(target_dir.path()).unwrap());
    let target = BackupTarget::open(target_disk.clone()).unwrap();
    // The leader has applied every acknowledged write: its index is the
    // state to back up.
    let reader = node.running().reader();
    let view = reader.index().view().expect("index view");
    let summary = take_backup(&target, &view, reader, 1_000).expect("backup");
    assert!(target
        .verify(summary.manifest.seq, true)
        .unwrap()
        .is_intact());
    let (peer, client_addr) = (node.running().peer_addr, node.running().client_addr);
    drop(client);
    cluster.stop().await;

    // Every data directory is gone; node 1 comes back from the backup alone.
    let fresh = tempfile::tempdir().unwrap();
    let data_dir = fresh.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let data_disk: DiskRef = Arc::new(RealDisk::open(&data_dir).unwrap());
    let me = MemberAddr {
        peer: peer.to_string(),
        client: Some(client_addr.to_string()),
    };
    let report = restore(
        &target,
        RestorePoint::Backup(summary.manifest.seq),
        OnDamage::Refuse,
        data_disk,
        Path::new(&format!("groups/{}", GROUP.0)),
        1,
        me.to_node(),
    )
    .await
    .expect("restore");
    assert_eq!(report.objects, objects.len() as u64);

    let mut config = node_config(1, data_dir);
    config.peer_listen = peer;
    config.client_listen = client_addr;
    let restored = start(config).await.expect("the restored node starts");
    let client = Client::connect_with(vec![client_addr.to_string()], client_options())
        .await
        .expect("connect");
    for (path, data) in &objects {
        let got = client.get(path).await.expect("restored object");
        assert!(got == *data, "{path} differs after restore");
    }
    assert!(
        client.get("ztf/2026/0003.avro").await.is_err(),
        "deleted stays deleted"
    );
    let after = bytes(40_000, 999);
    client
        .put("ztf/after-restore", after.clone())
        .await
        .expect("a write after restore");
    assert_eq!(client.get("ztf/after-restore").await.unwrap(), after);
    restored.shutdown().await.expect("clean shutdown");
}

/// `GET /metrics` of a node.
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_backs_up_on_its_own_and_metrics_say_so() {
    let target_dir = tempfile::tempdir().unwrap();
    let dir = target_dir.path().to_path_buf();
    let cluster =
        cluster_backing_up_to(&dir, Duration::from_millis(500), Duration::from_millis(200)).await;
    let client = cluster.client().await;
    let mut last = 0;
    for i in 0..20u64 {
        let data = bytes(25_000, 300 + i);
        last = client
            .put(&format!("auto/{i:03}"), data)
            .await
            .expect("put")
            .log_index;
    }
    let target = BackupTarget::open(Arc::new(RealDisk::open(&dir).unwrap())).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let covering = loop {
        let found = target
            .list()
            .unwrap()
            .into_iter()
            .filter_map(|b| b.manifest.ok())
            .find(|m| m.last_log.is_some_and(|(index, _)| index >= last));
        if let Some(manifest) = found {
            break manifest;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no backup covers index {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        covering.blocks.len() >= 20,
        "{} blocks",
        covering.blocks.len()
    );
    assert!(target.verify(covering.seq, true).unwrap().is_intact());

    let leader = cluster.wait_for_leader().await;
    let metrics = scrape(
        cluster.nodes[leader]
            .running()
            .metrics_addr
            .expect("metrics on"),
    );
    let successes = metrics
        .lines()
        .find(|l| l.starts_with("finkfs_backup_successes_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("the backup counter");
    assert!(successes >= 1, "{metrics}");
    assert!(metrics.contains("finkfs_backup_last_success_timestamp_seconds{"));
    // The Status call carries the same, so `finkfs status` can show it.
    let leader_addr = cluster.nodes[leader].client_addr.clone();
    let status = client.status_of(&leader_addr).await.expect("status");
    let backup = status.backup.expect("backups are on");
    assert!(
        backup.successes >= 1 && backup.last_seq.is_some(),
        "{backup:?}"
    );
    assert!(backup.archived_index >= last, "{backup:?}");
    // More writes after that backup: the journal archive carries them.
    let mut written: Vec<(String, Vec<u8>)> = (0..20u64)
        .map(|i| (format!("auto/{i:03}"), bytes(25_000, 300 + i)))
        .collect();
    for i in 0..10u64 {
        let (path, data) = (format!("auto/late/{i:03}"), bytes(9_000, 700 + i));
        last = client
            .put(&path, data.clone())
            .await
            .expect("put")
            .log_index;
        written.push((path, data));
    }
    wait_for_archive(&target, last).await;
    drop(client);
    cluster.stop().await;

    // Every node's data is gone: restore the newest backup and the archive
    // after it into a fresh directory, start it, read everything back.
    let (restored, client, report, _dir) =
        restore_and_start(&target, RestorePoint::ArchiveEnd).await;
    assert!(report.last_log.is_some_and(|l| l.0 >= last), "{report:?}");
    println!(
        "restored backup {} and {} archived entries, up to log index {:?}",
        report.seq, report.replayed, report.last_log
    );
    for (path, data) in &written {
        assert!(client.get(path).await.unwrap() == *data, "{path} differs");
    }
    restored.shutdown().await.unwrap();
}

/// Three nodes backing up to `dir` every `interval` while they lead, and
/// archiving the journal every `archive`.
async fn cluster_backing_up_to(dir: &Path, interval: Duration, archive: Duration) -> Cluster {
    Cluster::start_with(3, |config| {
        config.backup = Some(BackupSettings {
            dir: dir.to_path_buf(),
            interval,
            archive_interval: archive,
            retention: Retention::default(),
        });
    })
    .await
}

/// Restores `point` of `target` into a fresh data directory (returned, to
/// keep it alive), starts node 1 on it, and connects a client to it.
async fn restore_and_start(
    target: &BackupTarget,
    point: RestorePoint,
) -> (
    finkfs_node::daemon::RunningNode,
    Client,
    finkfs_node::backup::RestoreReport,
    tempfile::TempDir,
) {
    let fresh = tempfile::tempdir().unwrap();
    let data_dir = fresh.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let disk: DiskRef = Arc::new(RealDisk::open(&data_dir).unwrap());
    let mut config = node_config(1, data_dir);
    // Free ports, known before the node starts: the restored membership
    // names them.
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.peer_listen = peer.local_addr().unwrap();
    config.client_listen = client_port.local_addr().unwrap();
    drop((peer, client_port));
    let me = MemberAddr::new(
        &config.peer_listen.to_string(),
        &config.client_listen.to_string(),
    )
    .unwrap();
    let group = format!("groups/{}", GROUP.0);
    let report = restore(
        target,
        point,
        OnDamage::Refuse,
        disk,
        Path::new(&group),
        1,
        me.to_node(),
    )
    .await
    .expect("restore");
    let client_addr = config.client_listen.to_string();
    let restored = start(config).await.expect("the restored node starts");
    let client = Client::connect_with(vec![client_addr], client_options())
        .await
        .unwrap();
    (restored, client, report, fresh)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until the target's journal archive reaches `index`.
async fn wait_for_archive(target: &BackupTarget, index: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while target
        .archived()
        .unwrap()
        .last()
        .is_none_or(|r| r.1 < index)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "archive never reached {index}: {:?}",
            target.archived()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a restore should hold after log index `at`: every object whose last
/// put is at or before it and that no delete at or before it removed.
fn expected_at(
    history: &[(u64, String, Option<Vec<u8>>)],
    at: u64,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut state = std::collections::BTreeMap::new();
    for (_, path, data) in history.iter().filter(|(index, _, _)| *index <= at) {
        match data {
            Some(data) => state.insert(path.clone(), data.clone()),
            None => state.remove(path),
        };
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replays_the_journal_archive_to_its_end_or_to_a_chosen_index() {
    let target_dir = tempfile::tempdir().unwrap();
    let dir = target_dir.path().to_path_buf();
    // No timed backup during the test: the base backup is taken below.
    let cluster =
        cluster_backing_up_to(&dir, Duration::from_secs(3600), Duration::from_millis(100)).await;
    let client = cluster.client().await;
    let mut history = Vec::new();
    for i in 0..15u64 {
        let (path, data) = (format!("pit/a{i:03}"), bytes(22_000, 500 + i));
        let index = client.put(&path, data.clone()).await.unwrap().log_index;
        history.push((index, path, Some(data)));
    }
    let target = BackupTarget::open(Arc::new(RealDisk::open(&dir).unwrap())).unwrap();
    let leader = cluster.wait_for_leader().await;
    let reader = cluster.nodes[leader].running().reader();
    let base = take_backup(&target, &reader.index().view().unwrap(), reader, 1_000).unwrap();
    let base_index = base.manifest.last_log.unwrap().0;

    // After the backup: more puts, an overwrite and a delete, all only in
    // the journal archive.
    let mut mid = 0;
    let mut moment = 0;
    for i in 0..15u64 {
        let (path, data) = (format!("pit/b{i:03}"), bytes(18_000, 900 + i));
        let index = client.put(&path, data.clone()).await.unwrap().log_index;
        history.push((index, path, Some(data)));
        if i == 7 {
            let index = client.delete("pit/a002").await.unwrap().log_index;
            history.push((index, "pit/a002".to_string(), None));
            let data = bytes(5_000, 77);
            let index = client
                .put("pit/a003", data.clone())
                .await
                .unwrap()
                .log_index;
            history.push((index, "pit/a003".to_string(), Some(data)));
            mid = index;
            // A moment in wall-clock time between `mid` and what follows:
            // the archive reaches `mid` before it, nothing after it is
            // written until a second later.
            wait_for_archive(&target, mid).await;
            tokio::time::sleep(Duration::from_millis(1100)).await;
            moment = unix_now();
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    let last = history.last().unwrap().0;
    assert!(base_index < mid && mid < last);
    wait_for_archive(&target, last).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while target.archived().unwrap().last().is_none_or(|r| r.1 < last) {
        assert!(
            std::time::Instant::now() < deadline,
            "archive never reached {last}: {:?}",
            target.archived()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(client);
    cluster.stop().await;

    // Point in time: right after `mid`.
    let group = format!("groups/{}", GROUP.0);
    let at_mid = tempfile::tempdir().unwrap();
    let disk: DiskRef = Arc::new(RealDisk::open(at_mid.path()).unwrap());
    let node = MemberAddr::new("127.0.0.1:1", "127.0.0.1:2")
        .unwrap()
        .to_node();
    let report = restore(
        &target,
        RestorePoint::LogIndex(mid),
        OnDamage::Refuse,
        disk.clone(),
        Path::new(&group),
        1,
        node.clone(),
    )
    .await
    .expect("point-in-time restore");
    assert_eq!(report.seq, base.manifest.seq);
    assert_eq!(report.last_log.map(|l| l.0), Some(mid));
    assert!(report.replayed > 0);
    let store = finkfs_node::store::ObjectStore::open(disk, group.clone().into()).unwrap();
    let held: std::collections::BTreeMap<String, Vec<u8>> = store
        .reader()
        .list("pit/", None, 1000)
        .unwrap()
        .into_iter()
        .map(|(path, _)| {
            let data = store.get(&path).unwrap();
            (path, data)
        })
        .collect();
    let expected = expected_at(&history, mid);
    assert_eq!(
        held.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(held == expected, "contents differ at log index {mid}");
    drop(store);

    // Point in time by the clock: everything archived by `moment`, which
    // is at least `mid` and nothing written after it.
    let at_moment = tempfile::tempdir().unwrap();
    let disk: DiskRef = Arc::new(RealDisk::open(at_moment.path()).unwrap());
    let report = restore(
        &target,
        RestorePoint::Time(moment),
        OnDamage::Refuse,
        disk.clone(),
        Path::new(&group),
        1,
        node.clone(),
    )
    .await
    .expect("restore to a time");
    let reached = report.last_log.expect("a log id").0;
    let after_moment = history.iter().find(|(i, _, _)| *i > mid).unwrap().0;
    assert!(mid <= reached && reached < after_moment, "{report:?}");
    let store = finkfs_node::store::ObjectStore::open(disk, group.clone().into()).unwrap();
    for (path, data) in expected_at(&history, reached) {
        assert!(
            store.get(&path).unwrap() == data,
            "{path} differs at {moment}"
        );
    }
    assert!(store.get("pit/b014").is_err(), "written after the moment");
    drop(store);

    // To the archive's end, then serve it.
    let (restored, client, report, _dir) =
        restore_and_start(&target, RestorePoint::ArchiveEnd).await;
    assert!(report.last_log.is_some_and(|l| l.0 >= last), "{report:?}");
    for (path, data) in expected_at(&history, last) {
        assert!(client.get(&path).await.unwrap() == data, "{path} differs");
    }
    assert!(
        client.get("pit/a002").await.is_err(),
        "deleted after the backup stays deleted"
    );
    restored.shutdown().await.unwrap();
}
