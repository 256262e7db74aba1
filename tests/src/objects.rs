//! Storing a set of objects and checking that a cluster holds exactly
//! them, byte for byte.

use std::time::Duration;

use finkfs_node::client::Client;
use futures_util::{stream, StreamExt};

use crate::alerts::Alert;
use crate::cluster::LocalCluster;
use crate::poll;

/// Reads in flight while checking.
const READS_IN_FLIGHT_MAX: usize = 8;

/// Puts `alerts` one after another (each its own log entry: nothing runs
/// concurrently for the leader to batch). Panics on a failed Put.
pub async fn put_in_order(client: &Client, alerts: &[Alert]) {
    for alert in alerts {
        let stored = client
            .put(&alert.path, alert.data.clone())
            .await
            .unwrap_or_else(|e| panic!("put {}: {e}", alert.path));
        assert_eq!(stored.blake3, *blake3::hash(&alert.data).as_bytes());
    }
}

/// The objects under `prefix` are exactly `alerts`: the listing names
/// them with their sizes and hashes, and each reads back byte-identical.
pub async fn assert_exactly(client: &Client, prefix: &str, alerts: &[Alert]) {
    let mut expected: Vec<(String, u64, [u8; 32])> = alerts
        .iter()
        .map(|a| {
            let hash = *blake3::hash(&a.data).as_bytes();
            (a.path.clone(), a.data.len() as u64, hash)
        })
        .collect();
    expected.sort();
    let listed: Vec<(String, u64, [u8; 32])> = client
        .list_all(prefix)
        .await
        .unwrap_or_else(|e| panic!("list {prefix}: {e}"))
        .into_iter()
        .map(|o| (o.path, o.size, o.blake3))
        .collect();
    assert_eq!(
        listed.len(),
        expected.len(),
        "objects listed under {prefix}"
    );
    assert!(listed == expected, "the listing under {prefix} differs");
    stream::iter(alerts)
        .map(|alert| async move {
            let data = client
                .get(&alert.path)
                .await
                .unwrap_or_else(|e| panic!("get {}: {e}", alert.path));
            assert!(data == alert.data, "{} differs when read back", alert.path);
        })
        .buffer_unordered(READS_IN_FLIGHT_MAX)
        .collect::<Vec<()>>()
        .await;
}

/// Waits until node `id` has applied every entry up to `index`.
pub async fn wait_applied(cluster: &mut LocalCluster, id: u64, index: u64, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen = match cluster.status_of(id).await {
            Ok(status) if status.last_applied.unwrap_or(0) >= index => return,
            Ok(status) => format!("applied {:?}", status.last_applied),
            Err(error) => error,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "node {id} did not apply up to {index} within {timeout:?} ({seen})"
        );
        tokio::time::sleep(poll::POLL_INTERVAL).await;
    }
}

/// Waits until node `id`'s latest snapshot covers entry `index`; the
/// snapshot's last index.
pub async fn wait_snapshot_past(
    cluster: &LocalCluster,
    id: u64,
    index: u64,
    timeout: Duration,
) -> u64 {
    let what = format!("a snapshot of node {id} past entry {index}");
    poll::until(&what, timeout, || async move {
        let snapshot = cluster.gauge_of(id, "finkfs_raft_snapshot_index").await?;
        if snapshot > index {
            Ok(Some(snapshot))
        } else {
            Err(format!("snapshot index {snapshot}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}
