//! Guards against a replaced machine that cannot rejoin: a node whose data
//! directory is deleted is removed from the cluster, comes back empty,
//! and is added again as a learner then promoted. The log it would need
//! is purged, so it must catch up by snapshot — fetching every block the
//! snapshot references, multi-block objects included — and then serve
//! every object byte-identical itself, as the leader.

use std::time::Duration;

use finkfs_node::api::proto::Role;
use finkfs_tests::alerts::{random_bytes, synthetic_night, Alert};
use finkfs_tests::objects::{assert_exactly, put_in_order, wait_applied, wait_snapshot_past};
use finkfs_tests::{LocalCluster, Settings};
use tonic::Code;

/// `--snapshot-every-entries`; the node keeps as many entries behind its
/// latest snapshot.
const SNAPSHOT_EVERY: u64 = 16;
/// Objects written before the node is lost.
const BEFORE: u64 = 30;
/// Objects written while it is gone.
const WHILE_GONE: u64 = 60;
/// Longest wait for any phase of the test.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_node_removed_and_readded_catches_up_by_snapshot_and_serves_every_object() {
    let settings = Settings {
        snapshot_every_entries: Some(SNAPSHOT_EVERY),
        ..Settings::default()
    };
    let mut cluster = LocalCluster::start(settings).await;
    let client = cluster.client().await;
    let mut alerts = synthetic_night("rejoin/before", 7, BEFORE);
    alerts.push(Alert {
        path: "rejoin/big/part-0001.parquet".to_string(),
        data: random_bytes(77, (5 << 20) + 12_345),
    });
    put_in_order(&client, &alerts).await;

    let leader = cluster.wait_for_leader(PHASE_TIMEOUT).await;
    let lost = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    cluster.kill(lost);
    cluster.wipe(lost);
    client
        .remove(vec![lost])
        .await
        .expect("remove the lost node");

    let while_gone = synthetic_night("rejoin/while-gone", 8, WHILE_GONE);
    put_in_order(&client, &while_gone).await;
    alerts.extend(while_gone);
    let leader = cluster.wait_for_leader(PHASE_TIMEOUT).await;
    // Entry 1 onwards may be purged once the snapshot passes 1 + SNAPSHOT_EVERY.
    let snapshot = wait_snapshot_past(&cluster, leader, 2 * SNAPSHOT_EVERY, PHASE_TIMEOUT).await;

    cluster.restart(lost).await;
    let outsider = cluster.client_of(&[lost]).await;
    let refused = outsider
        .stat("rejoin/big/part-0001.parquet")
        .await
        .expect_err("outsider");
    assert_eq!(refused.code(), Some(Code::Unavailable), "{refused}");

    client
        .add_learner(cluster.member_spec(lost), true)
        .await
        .expect("add the empty node as a learner");
    let promoted = client.promote(vec![lost]).await.expect("promote it");
    let member = promoted
        .members
        .iter()
        .find(|m| m.id == lost)
        .expect("a member again");
    assert_eq!(member.role, Role::Voter as i32);
    let commit = cluster
        .status_of(leader)
        .await
        .expect("leader status")
        .commit_index
        .expect("a commit index");
    wait_applied(&mut cluster, lost, commit, PHASE_TIMEOUT).await;
    let installed = cluster.snapshots_installed(lost);
    assert!(
        !installed.is_empty(),
        "the empty node caught up without a snapshot, though the leader's reached {snapshot}"
    );
    assert!(
        installed[0] > 0,
        "the empty node installed a snapshot without fetching a block: {installed:?}"
    );

    let down = cluster.force_leader(lost, &client).await;
    println!(
        "node {lost} wiped and re-added after the leader's snapshot reached {snapshot}; \
         it installed snapshots fetching {installed:?} blocks and now leads (node {down} stopped)"
    );
    assert_exactly(&client, "rejoin/", &alerts).await;
}
