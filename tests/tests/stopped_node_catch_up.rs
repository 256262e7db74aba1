//! Guards against a node that can never catch up after being down while
//! the others purged the log it needed: the leader must send it a
//! snapshot (and the blocks it lacks), and afterwards it must serve every
//! object byte-identical itself, as the leader.

use std::time::Duration;

use finkfs_tests::alerts::synthetic_night;
use finkfs_tests::objects::{assert_exactly, put_in_order, wait_applied, wait_snapshot_past};
use finkfs_tests::{LocalCluster, Settings};

/// `--snapshot-every-entries`; the node keeps as many entries behind its
/// latest snapshot (the daemon keeps `min(snapshot_every_entries, 1000)`).
const SNAPSHOT_EVERY: u64 = 16;
/// Objects written while all nodes run.
const BEFORE: u64 = 20;
/// Objects written while the node is down: several snapshots' worth.
const WHILE_DOWN: u64 = 80;
/// Longest wait for any phase of the test.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stopped_while_log_is_purged_catches_up_by_snapshot_and_serves_every_object() {
    let settings = Settings {
        snapshot_every_entries: Some(SNAPSHOT_EVERY),
        ..Settings::default()
    };
    let mut cluster = LocalCluster::start(settings).await;
    let client = cluster.client().await;
    let mut alerts = synthetic_night("catchup/before", 5, BEFORE);
    put_in_order(&client, &alerts).await;

    let leader = cluster.wait_for_leader(PHASE_TIMEOUT).await;
    let stopped = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let status = cluster.status_of(stopped).await.expect("status");
    let last_log = status.last_log_index.expect("the follower has a log");
    let exit = cluster.stop(stopped).await;
    assert!(
        exit.success(),
        "node {stopped} exited with {exit} on SIGTERM"
    );

    let while_down = synthetic_night("catchup/while-down", 6, WHILE_DOWN);
    put_in_order(&client, &while_down).await;
    alerts.extend(while_down);
    // Entries up to `snapshot - SNAPSHOT_EVERY` may be purged: past the
    // stopped node's last entry, the log alone cannot bring it back.
    let leader = cluster.wait_for_leader(PHASE_TIMEOUT).await;
    let snapshot =
        wait_snapshot_past(&cluster, leader, last_log + SNAPSHOT_EVERY, PHASE_TIMEOUT).await;
    let commit = cluster
        .status_of(leader)
        .await
        .expect("leader status")
        .commit_index
        .expect("a commit index");

    cluster.restart(stopped).await;
    wait_applied(&mut cluster, stopped, commit, PHASE_TIMEOUT).await;
    let installed = cluster.snapshots_installed(stopped);
    assert!(
        !installed.is_empty(),
        "node {stopped} (last entry {last_log}) caught up without installing a snapshot, \
         though the leader's snapshot reached {snapshot}"
    );
    assert!(
        installed[0] > 0,
        "node {stopped} lacked the blocks written while it was down, yet fetched none: {installed:?}"
    );

    let down = cluster.force_leader(stopped, &client).await;
    println!(
        "node {stopped} stopped at entry {last_log}, restarted after the leader's snapshot \
         reached {snapshot}, installed snapshots fetching {installed:?} blocks and now leads \
         (node {down} stopped)"
    );
    assert_exactly(&client, "catchup/", &alerts).await;
}
