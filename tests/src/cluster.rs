//! [`LocalCluster`]: real `finkfs-node` processes on 127.0.0.1.
//!
//! Nodes get free ports and temporary directories and keep both across
//! restarts. The first start passes every node the `--initial-member`
//! list (the node with the smallest id initializes the cluster); restarts
//! and added nodes get none, so a wiped node comes back empty and joins
//! only when the cluster adds it. Raft timings are short (heartbeat 50 ms,
//! election 300–600 ms) so that failover tests are quick.
//!
//! Every method panics with a clear message when the cluster does not do
//! what it must; a panicking test prints the tail of every node's log and
//! keeps the node directories. Children are killed when the cluster is
//! dropped, on panic too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use finkfs_node::api::proto::{MemberSpec, StatusReply};
use finkfs_node::client::{Client, ClientOptions, RetryOptions};

use crate::binary::node_binary;
use crate::metrics;
use crate::node::{NodeProcess, LOG_TAIL_LINES};
use crate::poll;

/// Attempts at the first start when a picked port turns out to be taken.
const START_ATTEMPTS_MAX: u32 = 3;
/// Longest wait for the first leader of a new cluster.
pub const FIRST_LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How a cluster's nodes are configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Nodes of the first cluster (ids 1..=nodes).
    pub nodes: u64,
    /// `--heartbeat-ms`.
    pub heartbeat_ms: u64,
    /// `--election-timeout-min-ms`.
    pub election_timeout_min_ms: u64,
    /// `--election-timeout-max-ms`.
    pub election_timeout_max_ms: u64,
    /// `--snapshot-every-entries`, if not the node's default.
    pub snapshot_every_entries: Option<u64>,
    /// `--object-bytes-max`, if not the node's default.
    pub object_bytes_max: Option<u64>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            nodes: 3,
            heartbeat_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every_entries: None,
            object_bytes_max: None,
        }
    }
}

/// Client settings for tests: retries outlast an election or a restart,
/// and stay well inside a test's time.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        stream_timeout: Duration::from_secs(60),
        retry: RetryOptions {
            attempts_max: 200,
            elapsed_max: Duration::from_secs(20),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(300),
        },
    }
}

/// Settings of the harness's own probes: one attempt, quick answers.
fn probe_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        stream_timeout: Duration::from_secs(10),
        retry: RetryOptions {
            attempts_max: 1,
            elapsed_max: Duration::from_secs(2),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
        },
    }
}

/// Real `finkfs-node` processes forming one cluster.
pub struct LocalCluster {
    binary: PathBuf,
    settings: Settings,
    nodes: BTreeMap<u64, NodeProcess>,
    probe: Option<Client>,
    /// Marker objects written by [`LocalCluster::force_leader`].
    markers: u64,
}

impl LocalCluster {
    /// Starts `settings.nodes` nodes, lets them form a cluster, and waits
    /// for its first leader.
    pub async fn start(settings: Settings) -> LocalCluster {
        let binary = node_binary().unwrap_or_else(|message| panic!("{message}"));
        let mut cluster = LocalCluster {
            binary,
            settings,
            nodes: BTreeMap::new(),
            probe: None,
            markers: 0,
        };
        for attempt in 1..=START_ATTEMPTS_MAX {
            match cluster.start_first_members().await {
                Ok(()) => break,
                Err(error) if attempt < START_ATTEMPTS_MAX && cluster.any_failed_to_bind() => {
                    eprintln!("e2e: a picked port was taken, starting again: {error}");
                    cluster.nodes.clear();
                }
                Err(error) => panic!("cluster did not start: {error}"),
            }
        }
        cluster.wait_for_leader(FIRST_LEADER_TIMEOUT).await;
        cluster
    }

    async fn start_first_members(&mut self) -> Result<(), String> {
        for id in 1..=self.settings.nodes {
            self.nodes.insert(id, NodeProcess::new(id)?);
        }
        let initial: Vec<String> = self
            .nodes
            .values()
            .map(|n| format!("{}={},{}", n.id, n.peer_addr, n.client_addr))
            .collect();
        for id in self.ids() {
            let mut args = self.node_args(id);
            for member in &initial {
                args.push("--initial-member".to_string());
                args.push(member.clone());
            }
            let binary = self.binary.clone();
            self.node_mut(id).spawn(&binary, &args)?;
        }
        for node in self.nodes.values_mut() {
            node.wait_ready().await?;
        }
        Ok(())
    }

    fn any_failed_to_bind(&self) -> bool {
        self.nodes.values().any(NodeProcess::failed_to_bind)
    }

    /// The flags node `id` is started with, initial members aside (also
    /// what a harness needs to start it again by hand).
    pub fn node_args(&self, id: u64) -> Vec<String> {
        let node = self.node(id);
        let s = &self.settings;
        let mut args: Vec<String> = vec![
            "--id".into(),
            id.to_string(),
            "--data-dir".into(),
            node.data_dir().display().to_string(),
            "--peer-listen".into(),
            node.peer_addr.clone(),
            "--client-listen".into(),
            node.client_addr.clone(),
            "--metrics-listen".into(),
            node.metrics_addr.clone(),
            "--heartbeat-ms".into(),
            s.heartbeat_ms.to_string(),
            "--election-timeout-min-ms".into(),
            s.election_timeout_min_ms.to_string(),
            "--election-timeout-max-ms".into(),
            s.election_timeout_max_ms.to_string(),
        ];
        if let Some(entries) = s.snapshot_every_entries {
            args.extend(["--snapshot-every-entries".into(), entries.to_string()]);
        }
        if let Some(bytes) = s.object_bytes_max {
            args.extend(["--object-bytes-max".into(), bytes.to_string()]);
        }
        args
    }

    /// The settings the nodes run with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every node id, running or not.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The ids of the nodes whose process runs.
    pub fn running_ids(&mut self) -> Vec<u64> {
        self.nodes
            .values_mut()
            .filter_map(|n| n.is_running().then_some(n.id))
            .collect()
    }

    /// Node `id`.
    pub fn node(&self, id: u64) -> &NodeProcess {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProcess {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// Node `id`'s client address.
    pub fn client_addr(&self, id: u64) -> String {
        self.node(id).client_addr.clone()
    }

    /// Every node's client address.
    pub fn client_addrs(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.client_addr.clone()).collect()
    }

    /// Node `id` as a membership call names it.
    pub fn member_spec(&self, id: u64) -> MemberSpec {
        let node = self.node(id);
        MemberSpec {
            id,
            peer_addr: node.peer_addr.clone(),
            client_addr: node.client_addr.clone(),
        }
    }

    /// A client that knows every node.
    pub async fn client(&self) -> Client {
        self.client_of(&self.ids()).await
    }

    /// A client that knows only the nodes `ids`.
    pub async fn client_of(&self, ids: &[u64]) -> Client {
        let addrs: Vec<String> = ids.iter().map(|id| self.client_addr(*id)).collect();
        Client::connect_with(addrs.clone(), client_options())
            .await
            .unwrap_or_else(|e| panic!("client cannot connect to {addrs:?}: {e}"))
    }

    /// SIGKILL to node `id`; returns once it is gone.
    pub fn kill(&mut self, id: u64) {
        self.node_mut(id).kill();
    }

    /// SIGKILL to the nodes `ids` at once (every signal is sent before
    /// the first process is reaped).
    pub fn kill_many(&mut self, ids: &[u64]) {
        for id in ids {
            self.node_mut(*id).send_kill();
        }
        for id in ids {
            self.node_mut(*id).kill();
        }
    }

    /// SIGTERM to node `id`; its exit status.
    pub async fn stop(&mut self, id: u64) -> ExitStatus {
        self.node_mut(id)
            .terminate()
            .await
            .unwrap_or_else(|e| panic!("stopping node {id}: {e}"))
    }

    /// Starts node `id` again on its data directory and ports (no initial
    /// members: an empty directory stays outside the cluster until added).
    pub async fn restart(&mut self, id: u64) {
        self.restart_with(id, &[]).await;
    }

    /// [`Self::restart`] with `extra` flags (`--rejoin` for a wiped member).
    pub async fn restart_with(&mut self, id: u64, extra: &[&str]) {
        let mut args = self.node_args(id);
        args.extend(extra.iter().map(|a| a.to_string()));
        let binary = self.binary.clone();
        let node = self.node_mut(id);
        let started = match node.spawn(&binary, &args) {
            Ok(()) => node.wait_ready().await,
            Err(error) => Err(error),
        };
        started.unwrap_or_else(|e| panic!("restarting node {id}: {e}"));
    }

    /// Deletes node `id`'s data directory; it must be down.
    pub fn wipe(&mut self, id: u64) {
        self.node_mut(id)
            .wipe()
            .unwrap_or_else(|e| panic!("wiping node {id}: {e}"));
    }

    /// Starts a new, empty node `id` that belongs to no cluster.
    pub async fn add_node(&mut self, id: u64) {
        assert!(!self.nodes.contains_key(&id), "node {id} exists already");
        let node = NodeProcess::new(id).unwrap_or_else(|e| panic!("{e}"));
        self.nodes.insert(id, node);
        for attempt in 1..=START_ATTEMPTS_MAX {
            let args = self.node_args(id);
            let binary = self.binary.clone();
            let node = self.node_mut(id);
            let started = match node.spawn(&binary, &args) {
                Ok(()) => node.wait_ready().await,
                Err(error) => Err(error),
            };
            match started {
                Ok(()) => return,
                Err(_) if attempt < START_ATTEMPTS_MAX && node.failed_to_bind() => {
                    node.repick_ports();
                }
                Err(error) => panic!("starting node {id}: {error}"),
            }
        }
    }

    /// Node `id`'s answer to Status.
    pub async fn status_of(&mut self, id: u64) -> Result<StatusReply, String> {
        let addr = self.client_addr(id);
        let probe = self.probe().await?;
        probe
            .status_of(&addr)
            .await
            .map_err(|e| format!("status of node {id}: {e}"))
    }

    /// The harness's own client (one attempt per call), made on first use.
    async fn probe(&mut self) -> Result<Client, String> {
        if let Some(probe) = &self.probe {
            return Ok(probe.clone());
        }
        let addrs = self.client_addrs();
        let probe = Client::connect_with(addrs, probe_options())
            .await
            .map_err(|e| format!("no node answers: {e}"))?;
        self.probe = Some(probe.clone());
        Ok(probe)
    }

    /// Waits until every running member names the same leader, which runs
    /// and says it leads; its id.
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.agreed_leader().await {
                Ok(Some(leader)) => return leader,
                Ok(None) => "no running member".to_string(),
                Err(seen) => seen,
            };
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}: {last}"
            );
            tokio::time::sleep(poll::POLL_INTERVAL).await;
        }
    }

    /// The leader every running member agrees on, if they do.
    async fn agreed_leader(&mut self) -> Result<Option<u64>, String> {
        let mut views = Vec::new();
        for id in self.running_ids() {
            let status = self.status_of(id).await?;
            if status.members.iter().any(|m| m.id == id) {
                views.push((id, status));
            }
        }
        let leaders: Vec<Option<u64>> = views.iter().map(|(_, s)| s.leader_id).collect();
        let seen = || format!("leaders seen by the running members: {leaders:?}");
        let Some(Some(leader)) = leaders.first().copied() else {
            return Err(seen());
        };
        if leaders.iter().any(|l| *l != Some(leader)) {
            return Err(seen());
        }
        let leads = views
            .iter()
            .any(|(id, status)| *id == leader && status.state == "leader");
        if leads {
            Ok(Some(leader))
        } else {
            Err(seen())
        }
    }

    /// Makes voter `target` the leader of a three-voter cluster whose
    /// nodes all run, so that the reads that follow are served from its
    /// state machine. The client API has no leadership transfer, so the
    /// Raft election rule does it: with one other voter `a` stopped, a
    /// marker object is committed on `target` and the third voter `b`;
    /// then `b` is stopped and `a` restarted. `a` lacks the marker, so it
    /// cannot win `target`'s vote: only `target` can be elected. `a` is
    /// the current leader when that is not `target` (it ends up running,
    /// as a follower). Returns the id of `b`, left stopped.
    pub async fn force_leader(&mut self, target: u64, client: &Client) -> u64 {
        let running = self.running_ids();
        assert_eq!(
            running.len(),
            3,
            "force_leader needs three running nodes: {running:?}"
        );
        assert!(running.contains(&target), "node {target} is not running");
        let current = self.wait_for_leader(FIRST_LEADER_TIMEOUT).await;
        let mut others: Vec<u64> = running.into_iter().filter(|id| *id != target).collect();
        others.sort_by_key(|id| *id != current);
        let (a, b) = (others[0], others[1]);
        let status = self.stop(a).await;
        assert!(status.success(), "node {a} exited with {status} on SIGTERM");
        self.markers += 1;
        let marker = format!("e2e-force-leader/{}", self.markers);
        client
            .put(&marker, bytes::Bytes::from_static(b"marker"))
            .await
            .unwrap_or_else(|e| panic!("marker write with node {a} down: {e}"));
        let status = self.stop(b).await;
        assert!(status.success(), "node {b} exited with {status} on SIGTERM");
        self.restart(a).await;
        let leader = self.wait_for_leader(FIRST_LEADER_TIMEOUT).await;
        assert_eq!(
            leader, target,
            "only node {target} holds the marker, yet {leader} leads"
        );
        b
    }

    /// The text of node `id`'s /metrics page.
    pub async fn metrics_of(&self, id: u64) -> Result<String, String> {
        metrics::scrape(&self.node(id).metrics_addr).await
    }

    /// A gauge of node `id`'s /metrics page.
    pub async fn gauge_of(&self, id: u64, name: &str) -> Result<u64, String> {
        let page = self.metrics_of(id).await?;
        let value =
            metrics::gauge(&page, name).ok_or_else(|| format!("node {id} reports no {name}"))?;
        Ok(value as u64)
    }

    /// The snapshots node `id` installed since its last start: for each,
    /// the number of blocks it fetched from a peer (from its log lines
    /// `snapshot installed ... fetched=N`).
    pub fn snapshots_installed(&self, id: u64) -> Vec<u64> {
        self.node(id)
            .log_of_run()
            .lines()
            .filter(|line| line.contains("snapshot installed"))
            .map(|line| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix("fetched="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("node {id}: no block count in {line:?}"))
            })
            .collect()
    }

    /// Whether node `id`'s log since its last start contains `needle`.
    pub fn run_log_contains(&self, id: u64, needle: &str) -> bool {
        self.node(id).log_of_run().contains(needle)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in self.nodes.values_mut() {
                eprintln!("{}", node.tail(LOG_TAIL_LINES));
                node.keep_dir();
                eprintln!(
                    "node {} directory kept at {}",
                    node.id,
                    node.dir().display()
                );
            }
        }
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        self.kill_many(&ids);
    }
}
