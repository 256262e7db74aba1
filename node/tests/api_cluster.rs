//! Guards against clients stranded by the cluster's shape: a client that
//! knows only a follower, a leader that dies between two calls, a node that
//! belongs to no cluster, members added and removed, and a status or
//! metrics endpoint that misreports any of it.

mod api_support;

use std::time::Duration;

use api_support::{bytes, client_options, Cluster, TestNode};
use finkfs_node::api::proto::Role;
use finkfs_node::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_of_a_follower_is_redirected_to_the_leader_transparently() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let only_follower = vec![cluster.nodes[follower].client_addr.clone()];
    let client = Client::connect_with(only_follower, client_options())
        .await
        .expect("connect");
    let data = bytes(70_000, 1);
    client
        .put("redirect/alert", data.clone())
        .await
        .expect("put via a follower");
    assert_eq!(client.get("redirect/alert").await.expect("get"), data);
    assert_eq!(
        client.leader_addr().as_deref(),
        Some(cluster.nodes[leader].client_addr.as_str()),
        "the client learned the leader"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_continue_after_the_leader_stops() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let before = bytes(3 << 20, 2);
    client
        .put("failover/before", before.clone())
        .await
        .expect("put");
    let leader = cluster.wait_for_leader().await;
    cluster.nodes[leader].stop().await;
    let after = bytes(80_000, 3);
    // The client follows the new leader by itself.
    client
        .put("failover/after", after.clone())
        .await
        .expect("put after failover");
    assert_eq!(client.get("failover/before").await.expect("get"), before);
    assert_eq!(client.get("failover/after").await.expect("get"), after);
    // The same put again (a retry after an unknown outcome) changes nothing.
    let again = client
        .put("failover/after", after.clone())
        .await
        .expect("put again");
    assert_eq!(again.blake3, *blake3::hash(&after).as_bytes());
    assert_eq!(client.list_all("failover/").await.expect("list").len(), 2);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_outside_any_cluster_answers_with_a_clear_status() {
    let mut lonely = TestNode::start(7).await;
    let client = Client::connect_with(vec![lonely.client_addr.clone()], client_options())
        .await
        .expect("status answers even outside a cluster");
    let status = client.status().await.expect("status");
    assert!(status.members.is_empty());
    for error in [
        client.put("x/y", vec![1u8; 10]).await.unwrap_err(),
        client.get("x/y").await.map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(error.code(), Some(tonic::Code::Unavailable), "{error}");
        let message = error.message().unwrap_or_default();
        assert!(
            message.contains("node 7 is not a member of any cluster"),
            "unclear message: {message}"
        );
    }
    lonely.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_members_leader_and_replication_health() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let put = client.put("status/a", bytes(1000, 4)).await.expect("put");
    let status = client.status().await.expect("status");
    assert_eq!(status.state, "leader", "the client asks the leader");
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.role == Role::Voter as i32));
    assert!(status.commit_index.unwrap_or(0) >= put.log_index);
    assert!(status.may_vote);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = client.status().await.expect("status");
        let healthy = status.members.iter().all(|m| {
            m.health.as_ref().is_some_and(|h| {
                h.matched_index.unwrap_or(0) >= put.log_index && h.lag_entries <= 1
            })
        });
        if healthy {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replication health never caught up: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_promoted_and_removed_through_the_api() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    let data = bytes(200_000, 5);
    client
        .put("members/before", data.clone())
        .await
        .expect("put");
    let fourth = TestNode::start(4).await;
    let reply = client
        .add_learner(fourth.spec(), true)
        .await
        .expect("add learner");
    let learner = reply
        .members
        .iter()
        .find(|m| m.id == 4)
        .expect("learner listed");
    assert_eq!(learner.role, Role::Learner as i32);
    let reply = client.promote(vec![4]).await.expect("promote");
    let voters = reply
        .members
        .iter()
        .filter(|m| m.role == Role::Voter as i32)
        .count();
    assert_eq!(voters, 4);
    cluster.nodes.push(fourth);
    let reply = client.remove(vec![4]).await.expect("remove");
    assert!(reply.members.iter().all(|m| m.id != 4), "{reply:?}");
    assert_eq!(client.get("members/before").await.expect("get"), data);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joining_after_a_purge_installs_a_snapshot_and_fetches_its_blocks() {
    let snapshot_every = 10;
    let mut cluster = Cluster::start_with(3, |config| {
        config.raft.snapshot_every_entries = snapshot_every;
    })
    .await;
    let client = cluster.client().await;
    let mut objects = Vec::new();
    let mut last_index = 0;
    for i in 0..40u64 {
        let path = format!("snap/{i:03}");
        let data = bytes(20_000 + i as usize * 100, 100 + i);
        last_index = client
            .put(&path, data.clone())
            .await
            .expect("put")
            .log_index;
        objects.push((path, data));
    }
    let leader = cluster.wait_for_leader().await;
    let purged = cluster.nodes[leader]
        .running()
        .raft()
        .wait(Some(api_support::WAIT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > 1),
            "the leader purged its log",
        )
        .await
        .expect("purge");
    assert!(purged.snapshot.is_some());

    let fifth = TestNode::start(5).await;
    client
        .add_learner(fifth.spec(), true)
        .await
        .expect("add learner");
    let metrics = fifth
        .running()
        .raft()
        .wait(Some(api_support::WAIT))
        .applied_index_at_least(Some(last_index), "the learner catches up")
        .await
        .expect("caught up");
    assert!(
        metrics.snapshot.is_some(),
        "the learner installed a snapshot"
    );
    let reader = fifth.running().reader().clone();
    for (path, data) in &objects {
        let got = reader.get(path).expect("the learner holds every object");
        assert!(got == *data, "{path} differs on the learner");
    }
    cluster.nodes.push(fifth);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_prometheus_text() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client().await;
    client.put("metrics/a", bytes(5000, 6)).await.expect("put");
    let leader = cluster.wait_for_leader().await;
    let addr = cluster.nodes[leader]
        .running()
        .metrics_addr
        .expect("metrics listen");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    for metric in [
        "finkfs_raft_is_leader{node=",
        "finkfs_raft_commit_index{",
        "finkfs_raft_apply_lag_entries{",
        "finkfs_fsync_seconds_bucket{",
        "structure=\"journal\"",
        "finkfs_disk_bytes_written_total{",
        "finkfs_client_put_bytes_total{",
    ] {
        assert!(response.contains(metric), "{metric} missing");
    }
    let is_leader = format!(
        "finkfs_raft_is_leader{{node=\"{}\",group=\"0\"}} 1",
        cluster.nodes[leader].id
    );
    assert!(response.contains(&is_leader));
    cluster.stop().await;
}
