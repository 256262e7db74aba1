//! A cluster of in-process finkfs nodes on 127.0.0.1 (port 0), each a full
//! daemon (`finkfs_node::daemon::start`) with its own data directory, for
//! the client API tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use finkfs_node::api::proto::MemberSpec;
use finkfs_node::client::{Client, ClientOptions, RetryOptions};
use finkfs_node::daemon::config::{ApplySettings, NodeConfig, RaftSettings};
use finkfs_node::daemon::{start, RunningNode};
use openraft::async_runtime::watch::WatchReceiver;

/// Longest wait for any cluster event.
pub const WAIT: Duration = Duration::from_secs(15);

/// Settings of a test node: loopback, port 0, short Raft timings.
pub fn node_config(id: u64, data_dir: PathBuf) -> NodeConfig {
    let loopback = "127.0.0.1:0".parse().expect("loopback address");
    NodeConfig {
        id,
        data_dir,
        peer_listen: loopback,
        peer_advertise: None,
        client_listen: loopback,
        client_advertise: None,
        metrics_listen: Some(loopback),
        initial_members: Vec::new(),
        rejoin: false,
        object_bytes_max: 64 << 20,
        write_timeout: Duration::from_secs(10),
        raft: RaftSettings {
            heartbeat_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every_entries: 10_000,
            journal_segment_bytes: finkfs_node::daemon::config::JOURNAL_SEGMENT_BYTES_DEFAULT,
        },
        apply: ApplySettings {
            sync_entries: 64,
            sync_interval: Duration::from_millis(200),
        },
        backup: None,
        scrub: finkfs_node::scrub::ScrubSettings::default(),
    }
}

/// One node of a test cluster and its data directory.
pub struct TestNode {
    pub node: Option<RunningNode>,
    pub id: u64,
    pub client_addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts node `id` in a fresh directory.
    pub async fn start(id: u64) -> TestNode {
        TestNode::start_with(id, |_| {}).await
    }

    /// Starts node `id` with settings adjusted by `adjust`.
    pub async fn start_with(id: u64, adjust: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = node_config(id, dir.path().join("data"));
        adjust(&mut config);
        let data_dir = config.data_dir.clone();
        let node = start(config).await.expect("node starts");
        TestNode {
            id,
            client_addr: node.client_addr.to_string(),
            data_dir,
            node: Some(node),
            _dir: dir,
        }
    }

    pub fn running(&self) -> &RunningNode {
        self.node.as_ref().expect("node is running")
    }

    pub fn spec(&self) -> MemberSpec {
        let node = self.running();
        MemberSpec {
            id: self.id,
            peer_addr: node.advertised.peer.clone(),
            client_addr: node.advertised.client.clone().expect("client address"),
        }
    }

    /// Stops the node (gracefully).
    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await.expect("clean shutdown");
        }
    }
}

/// A started, initialized cluster.
pub struct Cluster {
    pub nodes: Vec<TestNode>,
}

impl Cluster {
    /// Starts `count` nodes (ids 1..=count) and initializes them as voters.
    pub async fn start(count: u64) -> Cluster {
        Cluster::start_with(count, |_| {}).await
    }

    /// [`Cluster::start`] with every node's settings adjusted by `adjust`.
    pub async fn start_with(count: u64, adjust: impl Fn(&mut NodeConfig)) -> Cluster {
        let mut nodes = Vec::new();
        for id in 1..=count {
            nodes.push(TestNode::start_with(id, &adjust).await);
        }
        let cluster = Cluster { nodes };
        let specs: Vec<MemberSpec> = cluster.nodes.iter().map(TestNode::spec).collect();
        let client = cluster.client().await;
        client
            .init_at(&cluster.nodes[0].client_addr, specs)
            .await
            .expect("init the cluster");
        cluster.wait_for_leader().await;
        cluster
    }

    /// Every node's client address.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }

    /// A client knowing every node.
    pub async fn client(&self) -> Client {
        Client::connect_with(self.addrs(), client_options())
            .await
            .expect("connect")
    }

    /// Waits until the running nodes agree on a leader; its position.
    pub async fn wait_for_leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leaders: Vec<Option<u64>> = self
                .nodes
                .iter()
                .filter_map(|n| n.node.as_ref())
                .map(|n| n.raft().metrics().borrow_watched().current_leader)
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                if leaders.iter().all(|l| *l == Some(*leader)) {
                    let position = self.nodes.iter().position(|n| n.id == *leader);
                    if let Some(position) = position.filter(|p| self.nodes[*p].node.is_some()) {
                        return position;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every node still running.
    pub async fn stop(mut self) {
        for node in &mut self.nodes {
            node.stop().await;
        }
    }
}

/// Client settings for tests: retries bounded well within the test time.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        stream_timeout: Duration::from_secs(30),
        retry: RetryOptions {
            attempts_max: 60,
            elapsed_max: Duration::from_secs(15),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(300),
        },
    }
}

/// Deterministic bytes of length `len` that differ by `seed`.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
