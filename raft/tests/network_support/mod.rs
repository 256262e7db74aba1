//! A small cluster over real loopback gRPC for the network tests: each node
//! a journal log store on a real disk in a temporary directory, a key-value
//! state machine whose snapshot is the serialized map in a `SnapshotFile`,
//! and the peer service on its own port.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions};
use finkfs_raft::network::{
    serve_peer, BlockSource, GroupHandle, GroupRegistry, LocalTransport, PeerChannels, PeerNetwork,
    PeerOptions, PeerService, SnapshotFile, SHUTDOWN_GRACE,
};
use finkfs_raft::types::{
    AppCommand, AppResponse, EntryPayload, GroupId, LogId, Node, NodeId, Raft, Snapshot,
    SnapshotMeta, StoredMembership, TypeConfig,
};
use finkfs_seam::{DiskRef, RealDisk};
use futures_util::{Stream, StreamExt};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The group every test node hosts.
pub const GROUP: GroupId = GroupId(0);
/// Longest wait for any cluster event in these tests.
pub const WAIT: Duration = Duration::from_secs(10);
/// Directory of the group on each node's disk.
pub const GROUP_DIR: &str = "groups/0";

/// What the key-value state machine holds and what its snapshot serializes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KvData {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub map: BTreeMap<String, String>,
}

/// The state machine's state, shared with the test for inspection.
#[derive(Debug, Default)]
pub struct KvState {
    pub data: KvData,
    pub snapshot: Option<Snapshot<SnapshotFile>>,
    pub snapshots_built: u64,
    pub snapshots_installed: u64,
}

/// A key-value state machine: commands are `key=value`.
#[derive(Clone)]
pub struct KvStateMachine {
    disk: DiskRef,
    dir: PathBuf,
    pub state: Arc<Mutex<KvState>>,
}

impl KvStateMachine {
    pub fn new(disk: DiskRef, dir: PathBuf) -> KvStateMachine {
        disk.create_dir_all(&dir)
            .expect("create the snapshot directory");
        KvStateMachine {
            disk,
            dir,
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KvState> {
        self.state.lock().unwrap()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for KvStateMachine {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot<SnapshotFile>, io::Error> {
        let (data, n) = {
            let mut state = self.lock();
            state.snapshots_built += 1;
            (state.data.clone(), state.snapshots_built)
        };
        let bytes = serde_json::to_vec(&data).map_err(io::Error::other)?;
        let path = self.dir.join(format!("built-{n}.snap"));
        let file = SnapshotFile::write(Arc::clone(&self.disk), path, &bytes)?;
        let meta = SnapshotMeta {
            last_log_id: data.last_applied,
            last_membership: data.membership,
        };
        let snapshot = Snapshot {
            meta,
            snapshot: file,
        };
        self.lock().snapshot = Some(snapshot.clone());
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for KvStateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = KvStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.lock();
        Ok((state.data.last_applied, state.data.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            {
                let mut state = self.lock();
                state.data.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(command) => {
                        let text = String::from_utf8_lossy(command.as_bytes()).to_string();
                        let (key, value) = text.split_once('=').unwrap_or((&text, ""));
                        state.data.map.insert(key.to_string(), value.to_string());
                    }
                    EntryPayload::Membership(membership) => {
                        state.data.membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                    }
                }
            }
            if let Some(responder) = responder {
                responder.send(AppResponse::default());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> KvStateMachine {
        self.clone()
    }

    /// Reads the received file (verified against its BLAKE3) and takes it
    /// out of the network's incoming directory.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        file: SnapshotFile,
    ) -> Result<(), io::Error> {
        let bytes = file.read_all()?;
        let mut data: KvData = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
        data.last_applied = meta.last_log_id;
        let installed = self.lock().snapshots_installed + 1;
        let moved = file.rename_to(self.dir.join(format!("installed-{installed}.snap")))?;
        let mut state = self.lock();
        state.data = data;
        state.snapshot = Some(Snapshot {
            meta: meta.clone(),
            snapshot: moved,
        });
        state.snapshots_installed = installed;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<SnapshotFile>>, io::Error> {
        Ok(self.lock().snapshot.clone())
    }
}

/// The Raft configuration of the test clusters: short timeouts, Pre-Vote
/// on, snapshots only when a test asks, small snapshot chunks.
pub fn config() -> Arc<Config> {
    let config = Config {
        cluster_name: "finkfs-network-test".to_string(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        snapshot_policy: SnapshotPolicy::Never,
        snapshot_max_chunk_size: 4096,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        enable_pre_vote: Some(true),
        ..Config::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

/// What carries the peer messages of a test cluster.
#[derive(Clone, Debug)]
pub enum Wire {
    /// gRPC over loopback TCP, each node's service on its own port.
    Grpc,
    /// Handed to the target's service within the process.
    Local(LocalTransport),
    /// Through the simulated network, with its delays and reordering.
    Sim(finkfs_sim::SimNet),
}

impl Wire {
    /// An in-process wire with no nodes yet.
    pub fn local() -> Wire {
        Wire::Local(LocalTransport::new(PeerOptions::default()))
    }

    /// A simulated local network (0.2–2 ms, some messages 200 ms late)
    /// drawing from `seed`.
    pub fn sim(seed: u64) -> Wire {
        Wire::Sim(finkfs_sim::SimNet::new(seed, finkfs_sim::LinkFaults::lan()))
    }

    /// The client for FetchBlock over this wire.
    pub fn block_client(&self, from: &str) -> finkfs_raft::network::PeerClient {
        use finkfs_raft::network::PeerClient;
        match self {
            Wire::Grpc => PeerClient::new(PeerChannels::new(PeerOptions::default())),
            Wire::Local(transport) => PeerClient::over(Arc::new(transport.clone())),
            Wire::Sim(net) => PeerClient::over(Arc::new(finkfs_sim::SimTransport::new(
                net.clone(),
                from,
                PeerOptions::default(),
            ))),
        }
    }
}

/// One running node of the test cluster.
pub struct TestNode {
    pub id: NodeId,
    pub addr: String,
    pub raft: Raft<KvStateMachine>,
    pub state: Arc<Mutex<KvState>>,
    pub disk: DiskRef,
    pub registry: Arc<GroupRegistry<KvStateMachine>>,
    stop_server: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    local: Option<Wire>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts node `id`: log store, state machine, Raft, and the peer
    /// service on a fresh loopback port.
    pub async fn start(id: NodeId) -> TestNode {
        TestNode::start_with_blocks(id, None).await
    }

    pub async fn start_with_blocks(id: NodeId, blocks: Option<Arc<dyn BlockSource>>) -> TestNode {
        TestNode::start_on(id, blocks, &Wire::Grpc).await
    }

    /// Starts node `id` with its peer messages carried by `wire`.
    pub async fn start_on(
        id: NodeId,
        blocks: Option<Arc<dyn BlockSource>>,
        wire: &Wire,
    ) -> TestNode {
        let dir = tempfile::tempdir().expect("temporary directory");
        let disk: DiskRef = Arc::new(RealDisk::open(dir.path()).expect("real disk"));
        let group_dir = Path::new(GROUP_DIR);
        let (store, report) =
            JournalLogStore::open(Arc::clone(&disk), group_dir, LogStoreOptions::default())
                .expect("open the log store");
        assert!(report.vote_blockers.is_empty(), "fresh store may vote");
        let snapshot_dir = group_dir.join("snapshots");
        let state_machine = KvStateMachine::new(Arc::clone(&disk), snapshot_dir.clone());
        let state = Arc::clone(&state_machine.state);
        let (listener, addr, network) = match wire {
            Wire::Grpc => {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind a loopback port");
                let addr = listener.local_addr().expect("local address").to_string();
                let channels = PeerChannels::new(PeerOptions::default());
                (Some(listener), addr, PeerNetwork::new(id, GROUP, channels))
            }
            Wire::Local(transport) => {
                let network = PeerNetwork::over(id, GROUP, Arc::new(transport.clone()));
                (None, format!("node-{id}"), network)
            }
            Wire::Sim(net) => {
                let addr = format!("node-{id}");
                let transport =
                    finkfs_sim::SimTransport::new(net.clone(), &addr, PeerOptions::default());
                (
                    None,
                    addr,
                    PeerNetwork::over(id, GROUP, Arc::new(transport)),
                )
            }
        };
        let raft = Raft::new(id, config(), network, store, state_machine)
            .await
            .expect("start raft");
        let registry = Arc::new(GroupRegistry::new());
        let mut handle = GroupHandle::new(raft.clone(), Arc::clone(&disk), snapshot_dir);
        if let Some(blocks) = blocks {
            handle = handle.with_block_source(blocks);
        }
        registry.insert(GROUP, handle);
        let service = PeerService::new(Arc::clone(&registry));
        let (mut stop_server, mut server, mut local) = (None, None, None);
        match (listener, wire) {
            (Some(listener), _) => {
                let (stop, stopped) = oneshot::channel();
                stop_server = Some(stop);
                server = Some(tokio::spawn(serve_peer(listener, service, async {
                    let _ = stopped.await;
                })));
            }
            (None, Wire::Local(transport)) => {
                transport.register(&addr, Arc::new(service));
                local = Some(wire.clone());
            }
            (None, Wire::Sim(net)) => {
                net.attach(&addr, Arc::new(service), None);
                local = Some(wire.clone());
            }
            (None, Wire::Grpc) => unreachable!("a gRPC node always has a listener"),
        }
        TestNode {
            id,
            addr,
            raft,
            state,
            disk,
            registry,
            stop_server,
            server,
            local,
            _dir: dir,
        }
    }

    pub fn node(&self) -> Node {
        Node {
            addr: self.addr.clone(),
        }
    }

    /// Shuts the Raft node down, then its peer service; the service must
    /// be gone within its shutdown grace.
    pub async fn stop(&mut self) -> Duration {
        self.raft.shutdown().await.expect("raft shutdown");
        self.stop_service().await
    }

    /// Stops the peer service; returns how long it took.
    pub async fn stop_service(&mut self) -> Duration {
        let started = tokio::time::Instant::now();
        match self.local.take() {
            Some(Wire::Local(transport)) => transport.unregister(&self.addr),
            Some(Wire::Sim(net)) => net.set_powered(&self.addr, false),
            _ => {}
        }
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let result = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(3), server)
                .await
                .expect("peer service stops within its shutdown grace");
            result.expect("server task").expect("server result");
        }
        started.elapsed()
    }

    pub fn map(&self) -> BTreeMap<String, String> {
        self.state.lock().unwrap().data.map.clone()
    }
}

/// Starts nodes `ids` and initializes them as one group of voters.
pub async fn start_cluster(ids: &[NodeId]) -> Vec<TestNode> {
    start_cluster_on(ids, &Wire::Grpc).await
}

/// Starts nodes `ids` over `wire` and initializes them as one group.
pub async fn start_cluster_on(ids: &[NodeId], wire: &Wire) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(TestNode::start_on(*id, None, wire).await);
    }
    let members: BTreeMap<NodeId, Node> = nodes.iter().map(|n| (n.id, n.node())).collect();
    nodes[0]
        .raft
        .initialize(members)
        .await
        .expect("initialize the cluster");
    nodes
}

/// Waits until one of `nodes` (the running ones) leads with everyone
/// agreeing; returns its position in `nodes`.
pub async fn wait_for_leader(nodes: &[TestNode], running: &[usize]) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leaders: BTreeSet<Option<NodeId>> = running
            .iter()
            .map(|i| nodes[*i].raft.metrics().borrow_watched().current_leader)
            .collect();
        if let [Some(leader)] = leaders.iter().copied().collect::<Vec<_>>()[..] {
            if let Some(position) = running.iter().copied().find(|i| nodes[*i].id == leader) {
                return position;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader among {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `key=value` through `leader`; returns the entry's log index. A
/// leader fresh from its election refuses writes until a quorum has
/// acknowledged it (its lease): such a refusal is retried, like a client
/// would.
pub async fn write(leader: &TestNode, key: &str, value: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let command = AppCommand(Bytes::from(format!("{key}={value}")));
        match leader.raft.client_write(command).await {
            Ok(response) => return response.log_id.index,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))
                if forward.leader_id.is_none() || forward.leader_id == Some(leader.id) =>
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "leader never took writes"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("write through node {} failed: {error}", leader.id),
        }
    }
}

/// Waits until each of `nodes` at `positions` applied `index`.
pub async fn wait_applied(nodes: &[TestNode], positions: &[usize], index: u64) {
    for position in positions {
        nodes[*position]
            .raft
            .wait(Some(WAIT))
            .applied_index_at_least(
                Some(index),
                format!("node {} applies {index}", nodes[*position].id),
            )
            .await
            .expect("applied in time");
    }
}

/// A block source over a map; a test may plant bytes under a hash that is
/// not theirs.
#[derive(Default)]
pub struct MapBlocks(pub Mutex<BTreeMap<[u8; 32], Bytes>>);

impl BlockSource for MapBlocks {
    fn read_block(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<Bytes>, finkfs_raft::network::BlockSourceError> {
        Ok(self.0.lock().unwrap().get(&hash).cloned())
    }
}
