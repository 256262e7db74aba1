//! Guards against a wiped node that votes with a log it cannot vouch for: a
//! member whose data directory is deleted and that comes back empty with
//! `--rejoin` (it belongs to a cluster that exists) lost its vote and every
//! entry it acknowledged. It must stay out of elections until it
//! has accepted a leader and caught up to that leader's commit index, then
//! vote again, serving every object byte-identical.

use std::time::Duration;

use finkfs_tests::alerts::{random_bytes, synthetic_night, Alert};
use finkfs_tests::objects::{assert_exactly, put_in_order, wait_applied, wait_snapshot_past};
use finkfs_tests::{LocalCluster, Settings};

/// `--snapshot-every-entries`: the log the wiped node needs gets purged.
const SNAPSHOT_EVERY: u64 = 16;
/// Longest wait for any phase of the test.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_node_is_rebuilt_from_peers_and_votes_only_after() {
    let settings = Settings {
        snapshot_every_entries: Some(SNAPSHOT_EVERY),
        ..Settings::default()
    };
    let mut cluster = LocalCluster::start(settings).await;
    let client = cluster.client().await;
    let mut alerts = synthetic_night("wiped/before", 21, 40);
    alerts.push(Alert {
        path: "wiped/big/part-0001.parquet".to_string(),
        data: random_bytes(78, (3 << 20) + 777),
    });
    put_in_order(&client, &alerts).await;
    let leader = cluster.wait_for_leader(PHASE_TIMEOUT).await;
    wait_snapshot_past(&cluster, leader, SNAPSHOT_EVERY, PHASE_TIMEOUT).await;

    let lost = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    cluster.kill(lost);
    cluster.wipe(lost);
    cluster.restart_with(lost, &["--rejoin"]).await;
    assert!(
        cluster.run_log_contains(lost, "DataDirWiped"),
        "the wiped member started without a vote blocker"
    );

    let commit = cluster
        .status_of(leader)
        .await
        .expect("leader status")
        .commit_index
        .expect("a commit index");
    wait_applied(&mut cluster, lost, commit, PHASE_TIMEOUT).await;
    assert!(
        !cluster.snapshots_installed(lost).is_empty(),
        "the wiped node caught up without the leader's snapshot"
    );
    let deadline = std::time::Instant::now() + PHASE_TIMEOUT;
    loop {
        let status = cluster
            .status_of(lost)
            .await
            .expect("status of the rebuilt node");
        if status.may_vote && status.vote_blockers.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the caught-up node still may not vote: {:?}",
            status.vote_blockers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let more = synthetic_night("wiped/after", 22, 10);
    put_in_order(&client, &more).await;
    alerts.extend(more);
    let stopped = cluster.force_leader(lost, &client).await;
    println!("node {lost} wiped, rebuilt from its peers, now leads (node {stopped} stopped)");
    assert_exactly(&client, "wiped/", &alerts).await;
}
