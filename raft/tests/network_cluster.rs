//! Guards against a peer network that loses committed writes or cannot
//! carry a cluster through leader loss and snapshot catch-up: a real
//! three-node group over loopback gRPC, each node on its own journal. The
//! first two run again over the in-process transport, so that one carries a
//! cluster exactly as gRPC does (the cluster simulator builds on it).

mod network_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use std::time::Duration;

use finkfs_raft::network::convert::AppendEntriesRequest;
use finkfs_raft::network::{
    GroupHandle, PeerChannels, PeerClientError, PeerNetwork, PeerOptions, APPEND_MESSAGE_BYTES_MAX,
    INCOMING_DIR, SHUTDOWN_GRACE,
};
use finkfs_raft::types::{AppCommand, Entry, EntryPayload, GroupId, LeaderId, LogId, Vote};
use futures_util::StreamExt;
use network_support::{
    start_cluster, start_cluster_on, wait_applied, wait_for_leader, write, MapBlocks, TestNode,
    Wire, GROUP, GROUP_DIR, WAIT,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::AppendEntriesResponse;
use openraft::vote::RaftLeaderId;

fn expected(range: std::ops::Range<u32>) -> BTreeMap<String, String> {
    range
        .map(|i| {
            (
                format!("key-{i:03}"),
                format!("value-{i}-{}", "x".repeat(200)),
            )
        })
        .collect()
}

async fn write_all(leader: &TestNode, entries: &BTreeMap<String, String>) -> u64 {
    let mut last = 0;
    for (key, value) in entries {
        last = write(leader, key, value).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_survive_leader_shutdown_over_grpc() {
    committed_writes_survive_leader_shutdown(Wire::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_survive_leader_shutdown_in_process() {
    committed_writes_survive_leader_shutdown(Wire::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_survive_leader_shutdown_over_the_simulated_network() {
    committed_writes_survive_leader_shutdown(Wire::sim(1)).await;
}

async fn committed_writes_survive_leader_shutdown(wire: Wire) {
    let mut nodes = start_cluster_on(&[1, 2, 3], &wire).await;
    let all = [0, 1, 2];
    let leader = wait_for_leader(&nodes, &all).await;
    let first = expected(0..20);
    let index = write_all(&nodes[leader], &first).await;
    wait_applied(&nodes, &all, index).await;
    for node in &nodes {
        assert_eq!(
            node.map(),
            first,
            "node {} holds every committed write",
            node.id
        );
    }

    let old_leader_id = nodes[leader].id;
    nodes[leader].stop().await;
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    let new_leader = wait_for_leader(&nodes, &survivors).await;
    assert_ne!(nodes[new_leader].id, old_leader_id);

    let second = expected(20..30);
    let index = write_all(&nodes[new_leader], &second).await;
    wait_applied(&nodes, &survivors, index).await;
    let mut every = first.clone();
    every.extend(second);
    for position in &survivors {
        let node = &nodes[*position];
        assert_eq!(
            node.map(),
            every,
            "survivor {} holds every committed write",
            node.id
        );
    }
    // The new leader keeps an append stream open on the follower's service;
    // stopping that service must end the stream, not wait out the grace.
    let follower = survivors
        .iter()
        .copied()
        .find(|p| *p != new_leader)
        .expect("a follower");
    let stopped_in = nodes[follower].stop().await;
    assert!(
        stopped_in < SHUTDOWN_GRACE,
        "service stopped in {stopped_in:?}"
    );
    nodes[new_leader].stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_after_purge_catches_up_by_snapshot_over_grpc() {
    learner_added_after_purge_catches_up_by_snapshot(Wire::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_after_purge_catches_up_by_snapshot_in_process() {
    learner_added_after_purge_catches_up_by_snapshot(Wire::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_after_purge_catches_up_by_snapshot_over_the_simulated_network() {
    learner_added_after_purge_catches_up_by_snapshot(Wire::sim(2)).await;
}

async fn learner_added_after_purge_catches_up_by_snapshot(wire: Wire) {
    let mut nodes = start_cluster_on(&[1, 2, 3], &wire).await;
    let all = [0, 1, 2];
    let leader = wait_for_leader(&nodes, &all).await;
    let entries = expected(0..40);
    let index = write_all(&nodes[leader], &entries).await;
    wait_applied(&nodes, &all, index).await;

    let raft = nodes[leader].raft.clone();
    raft.trigger().snapshot().await.expect("trigger a snapshot");
    raft.wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= index),
            "snapshot built",
        )
        .await
        .expect("snapshot in time");
    raft.trigger()
        .purge_log(index)
        .await
        .expect("trigger a purge");
    raft.wait(Some(WAIT))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= index), "log purged")
        .await
        .expect("purge in time");
    let built = nodes[leader]
        .state
        .lock()
        .unwrap()
        .snapshot
        .clone()
        .expect("a built snapshot");
    assert!(
        built.snapshot.len_bytes() > 4096,
        "snapshot spans several chunks"
    );

    let learner = TestNode::start_on(4, None, &wire).await;
    raft.add_learner(learner.id, learner.node(), true)
        .await
        .expect("learner added and caught up");
    learner
        .raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(index), "learner applies the snapshot")
        .await
        .expect("learner caught up in time");
    assert_eq!(
        learner.map(),
        entries,
        "learner holds every committed write"
    );
    let (installed, installed_blake3) = {
        let state = learner.state.lock().unwrap();
        let snapshot = state.snapshot.as_ref().map(|s| s.snapshot.blake3());
        (state.snapshots_installed, snapshot)
    };
    assert_eq!(installed, 1, "the learner caught up through a snapshot");
    assert_eq!(
        installed_blake3,
        Some(built.snapshot.blake3()),
        "the file arrived intact"
    );
    let incoming = std::path::Path::new(GROUP_DIR)
        .join("snapshots")
        .join(INCOMING_DIR);
    assert!(
        learner.disk.list(&incoming).unwrap().is_empty(),
        "no partial file left behind"
    );

    let mut learner = learner;
    learner.stop().await;
    for node in &mut nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_block_round_trips_and_tampered_block_is_refused_over_grpc() {
    fetch_block_round_trips_and_tampered_block_is_refused(Wire::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_block_round_trips_and_tampered_block_is_refused_in_process() {
    fetch_block_round_trips_and_tampered_block_is_refused(Wire::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_block_round_trips_and_tampered_block_is_refused_over_the_simulated_network() {
    fetch_block_round_trips_and_tampered_block_is_refused(Wire::sim(3)).await;
}

async fn fetch_block_round_trips_and_tampered_block_is_refused(wire: Wire) {
    let good = Bytes::from_static(b"an alert block");
    let good_hash = *blake3::hash(&good).as_bytes();
    let tampered_hash = *blake3::hash(b"what the block should be").as_bytes();
    let missing_hash = *blake3::hash(b"never stored").as_bytes();
    let blocks = Arc::new(MapBlocks::default());
    blocks.0.lock().unwrap().insert(good_hash, good.clone());
    blocks
        .0
        .lock()
        .unwrap()
        .insert(tampered_hash, Bytes::from_static(b"bit-rotted bytes"));
    let mut node = TestNode::start_on(1, Some(blocks), &wire).await;
    let client = wire.block_client("client");

    let fetched = client
        .fetch_blocks(&node.addr, GROUP, &[good_hash, missing_hash])
        .await
        .expect("fetch blocks");
    assert_eq!(fetched, vec![Some(good.clone()), None]);

    // The server answers DATA_LOSS for a copy that does not verify; the
    // client takes it as "no intact copy here", for that block alone, so
    // one damaged block does not cost the rest of a batch.
    let refused = client.fetch_block(&node.addr, GROUP, tampered_hash).await;
    assert!(
        matches!(refused, Ok(None)),
        "a tampered block must be refused, got {refused:?}"
    );
    let batch = client
        .fetch_blocks(&node.addr, GROUP, &[tampered_hash, good_hash, missing_hash])
        .await
        .expect("a batch with a damaged block");
    assert_eq!(batch, vec![None, Some(good.clone()), None]);
    let unknown = client.fetch_block(&node.addr, GroupId(42), good_hash).await;
    assert!(
        matches!(unknown, Err(PeerClientError::UnknownGroup { .. })),
        "{unknown:?}"
    );
    let addr = node.addr.clone();
    node.stop().await;
    let gone = client.fetch_block(&addr, GROUP, good_hash);
    if matches!(wire, Wire::Sim(_)) {
        // A simulated host without power is silence, not a refusal.
        let silence = tokio::time::timeout(Duration::from_secs(1), gone).await;
        assert!(silence.is_err(), "a powered-off host answered: {silence:?}");
        return;
    }
    match gone.await {
        // A refused connection is UNAVAILABLE; the cached connection being
        // closed under the call is CANCELLED. openraft backs off from both
        // alike (see `status_to_rpc_error`).
        Err(PeerClientError::Status { status, .. }) => assert!(
            matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Cancelled
            ),
            "{status}"
        ),
        other => panic!("a stopped peer is unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_metrics_show_replication_to_every_follower() {
    let mut nodes = start_cluster(&[1, 2, 3]).await;
    let all = [0, 1, 2];
    let leader = wait_for_leader(&nodes, &all).await;
    let index = write_all(&nodes[leader], &expected(0..5)).await;
    wait_applied(&nodes, &all, index).await;
    let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
    let matched_everywhere = move |m: &openraft::RaftMetrics<finkfs_raft::types::TypeConfig>| {
        m.replication.as_ref().is_some_and(|replication| {
            ids.iter().all(|id| {
                replication
                    .get(id)
                    .cloned()
                    .flatten()
                    .is_some_and(|log_id| log_id.index >= index)
            })
        })
    };
    nodes[leader]
        .raft
        .wait(Some(WAIT))
        .metrics(matched_everywhere, "every member matched the last write")
        .await
        .expect("leader sees every member matched");
    for node in &mut nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer_moves_the_leader_to_the_named_node() {
    let mut nodes = start_cluster(&[1, 2, 3]).await;
    let all = [0, 1, 2];
    let mut leader = wait_for_leader(&nodes, &all).await;
    // Twice, so that a takeover by a node that merely won the next election
    // cannot pass for a transfer.
    for round in 0..2 {
        let index = write(&nodes[leader], "round", &round.to_string()).await;
        wait_applied(&nodes, &all, index).await;
        let target = (leader + 1) % 3;
        let target_id = nodes[target].id;
        nodes[leader]
            .raft
            .trigger()
            .transfer_leader(target_id)
            .await
            .expect("trigger the transfer");
        nodes[target]
            .raft
            .wait(Some(WAIT))
            .metrics(
                |m| {
                    m.current_leader == Some(target_id)
                        && m.vote.committed
                        && m.last_quorum_acked.is_some()
                },
                "target leads with a quorum's acknowledgement",
            )
            .await
            .expect("the named node takes over");
        leader = target;
    }
    let index = write(&nodes[leader], "after", "transfers").await;
    wait_applied(&nodes, &all, index).await;
    for node in &mut nodes {
        node.stop().await;
    }
}

fn big_entries(count: u64) -> Vec<Entry> {
    let entry_bytes = (APPEND_MESSAGE_BYTES_MAX / 2 + 1) as usize;
    (0..count)
        .map(|index| Entry {
            log_id: LogId::new(LeaderId::new(1, 9), index),
            payload: EntryPayload::Normal(AppCommand(bytes::Bytes::from(vec![
                index as u8;
                entry_bytes
            ]))),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_above_the_message_ceiling_is_split_and_acknowledged_whole() {
    let mut node = TestNode::start(1).await;
    let mut network = PeerNetwork::new(9, GROUP, PeerChannels::new(PeerOptions::default()));
    let mut connection = network.new_client(node.id, &node.node()).await;
    let option = RPCOption::new(Duration::from_secs(5));
    let entries = big_entries(3);
    let request = AppendEntriesRequest {
        vote: Vote::new_committed(1, 9),
        prev_log_id: None,
        entries: entries.clone(),
        leader_commit: None,
    };

    // Unary: only the first message goes; openraft is told so.
    let response = RaftNetworkV2::append_entries(&mut connection, request.clone(), option.clone())
        .await
        .expect("append");
    assert_eq!(
        response,
        AppendEntriesResponse::PartialSuccess(Some(entries[0].log_id))
    );

    // Stream: three messages, one result for the whole request.
    let input = futures_util::stream::iter(vec![request]);
    let mut output = RaftNetworkV2::stream_append(&mut connection, input, option)
        .await
        .expect("open");
    let result = output
        .next()
        .await
        .expect("one result")
        .expect("no rpc error");
    assert_eq!(result, Ok(Some(entries[2].log_id)));
    assert!(output.next().await.is_none(), "one result per request");
    drop(output);
    node.raft
        .wait(Some(WAIT))
        .log_index_at_least(Some(2), "every part appended")
        .await
        .expect("entries appended");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_that_must_not_vote_refuses_vote_and_pre_vote() {
    let node = TestNode::start(1).await;
    let mut network = PeerNetwork::new(9, GROUP, PeerChannels::new(PeerOptions::default()));
    let option = RPCOption::new(Duration::from_secs(5));
    let request = openraft::raft::VoteRequest {
        vote: Vote::new(5, 9),
        last_log_id: None,
        leadership_transfer: false,
    };

    let mut connection = network.new_client(node.id, &node.node()).await;
    RaftNetworkV2::vote(&mut connection, request.clone(), option.clone())
        .await
        .expect("a healthy node answers a vote");

    // The same node, now known to have lost its vote: both calls refused.
    let refusing = GroupHandle::new(node.raft.clone(), Arc::clone(&node.disk), GROUP_DIR.into())
        .refusing_votes("vote copies damaged".into());
    node.registry.insert(GROUP, refusing);
    let refused = RaftNetworkV2::vote(&mut connection, request.clone(), option.clone()).await;
    let error = refused.expect_err("vote refused").to_string();
    assert!(error.contains("does not vote until repaired"), "{error}");
    let refused = RaftNetworkV2::pre_vote(&mut connection, request, option).await;
    assert!(refused.is_err(), "pre-vote refused");
}
