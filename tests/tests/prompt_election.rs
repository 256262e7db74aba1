//! Guards the time to the first write of a new cluster and after a power
//! cut of every node: openraft waits out an election timer after
//! initializing, and finkfs does not let a restarted leader resume its
//! term, so without the node that votes for itself asking for an election
//! at once, nothing could be written until a timer ran out. The nodes here
//! run with election timers of 30–40 s: a leader well inside that can only
//! come from the prompt election.

use std::time::{Duration, Instant};

use finkfs_tests::{LocalCluster, Settings};

/// Election timers far longer than anything the test waits for.
const ELECTION_TIMEOUT_MIN_MS: u64 = 30_000;
const ELECTION_TIMEOUT_MAX_MS: u64 = 40_000;
/// Longest wait for the leader after the restart: a third of the shortest
/// election timer.
const LEADER_AFTER_RESTART_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_former_leader_is_elected_again_without_waiting_out_an_election_timer() {
    let mut cluster = LocalCluster::start(Settings {
        election_timeout_min_ms: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max_ms: ELECTION_TIMEOUT_MAX_MS,
        ..Settings::default()
    })
    .await;
    // `start` waits (up to 30 s) for the first leader: it came from the
    // prompt election, or the timers would have made it wait longer.
    let client = cluster.client().await;
    client
        .put("prompt/before", b"written before the power cut".to_vec())
        .await
        .expect("a write to the new cluster is acknowledged");
    let leader_before = cluster.wait_for_leader(Duration::from_secs(30)).await;

    let ids = cluster.ids();
    cluster.kill_many(&ids);
    let restarted = Instant::now();
    for id in &ids {
        cluster.restart(*id).await;
    }
    let leader_after = cluster.wait_for_leader(LEADER_AFTER_RESTART_WITHIN).await;
    let took = restarted.elapsed();
    println!("node {leader_before} led before, node {leader_after} after, {took:?} after the restart began");
    assert!(
        took < Duration::from_millis(ELECTION_TIMEOUT_MIN_MS),
        "the leader took {took:?}: an election timer ran out first"
    );
    client
        .put("prompt/after", b"written after the restart".to_vec())
        .await
        .expect("a write after the restart is acknowledged");
    assert_eq!(
        &client.get("prompt/before").await.expect("read back")[..],
        b"written before the power cut"
    );
}
