//! The `finkfs-node` daemon: opens a node's data directory, runs its Raft
//! group, serves the peer, client and metrics endpoints, and shuts down
//! gracefully on SIGTERM or SIGINT.
//!
//! Data directory layout (one [`RealDisk`] rooted at the data directory,
//! every byte through the I/O seam):
//!
//! ```text
//! <data_dir>/groups/<group id>/journal/     the Raft log (journal)
//! <data_dir>/groups/<group id>/meta/        vote, committed and purged ids
//! <data_dir>/groups/<group id>/blocks/      pack files
//! <data_dir>/groups/<group id>/index.redb   the index
//! <data_dir>/groups/<group id>/snapshots/   snapshot files
//! ```
//!
//! The first version hosts group 0 only; the peer service's registry and
//! the layout already take several.

pub mod backup;
pub mod config;
pub mod disk_metrics;
mod group;
pub mod metrics;
pub mod network;
mod prompt_election;
mod tail_floor;
pub mod unsafe_sync;
mod vote_watch;

pub use group::{group_dir, open_group, GroupParts};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use finkfs_raft::journal::JournalOptions;
use finkfs_raft::log_store::{LogStoreError, LogStoreOptions, OpenReport, WriterRun};
use finkfs_raft::network::{serve_peer, PeerChannels, PeerOptions, PeerTransport};
use finkfs_raft::types::{GroupId, NodeId, Raft};
use finkfs_seam::{DiskRef, RealDisk};
use openraft::{Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{ClientService, MemberAddr};
use crate::reader::ObjectReader;
use crate::state_machine::{StateMachine, StateMachineError};
use config::{ConfigError, Flags, NodeConfig};
use disk_metrics::{DiskStats, MeteredDisk};
use metrics::{serve_metrics, MetricsSources};

/// The group every node hosts in this version.
pub const GROUP: GroupId = GroupId(0);
/// Longest time the client service lets calls in flight finish after the
/// shutdown signal.
pub const CLIENT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a node configured with initial members retries initializing.
const INIT_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The settings are not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for the {what} service: {source}")]
    Bind {
        /// Which service.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be opened.
    #[error("cannot open data directory {}: {source}", dir.display())]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The Raft log store could not be opened.
    #[error("cannot open the Raft log: {0}")]
    LogStore(#[from] LogStoreError),
    /// The state machine could not be opened.
    #[error("cannot open the state machine: {0}")]
    StateMachine(#[from] StateMachineError),
    /// openraft refused to start or stopped badly.
    #[error("raft: {0}")]
    Raft(String),
    /// A server task failed.
    #[error("{what} service failed: {reason}")]
    Serve {
        /// Which service.
        what: &'static str,
        /// What failed.
        reason: String,
    },
}

/// A running node; [`RunningNode::shutdown`] stops it.
pub struct RunningNode {
    /// Its id.
    pub id: NodeId,
    /// Where its peer service listens.
    pub peer_addr: SocketAddr,
    /// Where its client service listens.
    pub client_addr: SocketAddr,
    /// Where /metrics is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The addresses it advertises to its peers.
    pub advertised: MemberAddr,
    raft: Raft<StateMachine>,
    reader: ObjectReader,
    log_writer_stopped: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    client_task: JoinHandle<Result<(), tonic::transport::Error>>,
    peer_task: JoinHandle<Result<(), tonic::transport::Error>>,
    other_tasks: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// Its Raft node.
    pub fn raft(&self) -> &Raft<StateMachine> {
        &self.raft
    }

    /// A read handle on its local object store (what this replica holds,
    /// with no read barrier: for inspection and tests).
    pub fn reader(&self) -> &ObjectReader {
        &self.reader
    }

    /// Stops the node: the client service stops accepting and lets calls
    /// in flight finish (bounded), the Raft node shuts down after making
    /// what it applied durable, then the peer and metrics endpoints stop.
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        tracing::info!(id = self.id, "shutting down");
        self.stop.send_replace(true);
        let client = join("client", self.client_task).await;
        let synced = self
            .raft
            .with_state_machine(|sm: &mut StateMachine| Box::pin(sm.sync()))
            .await;
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "making the applied state durable failed"),
            Err(error) => tracing::warn!(%error, "state machine already stopped"),
        }
        self.raft
            .shutdown()
            .await
            .map_err(|e| DaemonError::Raft(format!("shutdown: {e}")))?;
        let peer = join("peer", self.peer_task).await;
        for task in self.other_tasks {
            task.abort();
            let _ = task.await;
        }
        // The index is closed only when its last holder lets go: the state
        // machine's worker, and reads, scrubs or repairs still running on
        // blocking threads (aborting their task does not stop them). A
        // node started again on this directory in the same process before
        // that would open the index file while the old instance still
        // writes it (redb then finds a file length its header disagrees
        // with), so the node is stopped only once the index is closed.
        let mut closed = self.reader.index_closed();
        let mut log_writer_stopped = self.log_writer_stopped;
        drop(self.reader);
        drop(self.raft);
        // The same for the log store: openraft drops it without closing
        // it, and its writer then saves a waiting committed log id. A
        // caller that runs fsck or starts the node again once this returns
        // must not race that write (a repair test found a damaged vote copy
        // rewritten behind its back).
        if !wait_until_closed(&mut log_writer_stopped, INDEX_CLOSE_WAIT).await {
            tracing::warn!(
                id = self.id,
                "the log store's writer still runs {INDEX_CLOSE_WAIT:?} after shutdown"
            );
        }
        if !wait_until_closed(&mut closed, INDEX_CLOSE_WAIT).await {
            // Known to happen after a snapshot install on a learner: some
            // holder outlives the node. A process that exits closes it; an
            // embedding that reopens the directory must wait longer.
            tracing::warn!(
                id = self.id,
                "the index is still open {INDEX_CLOSE_WAIT:?} after shutdown"
            );
        }
        tracing::info!(id = self.id, "stopped");
        client.and(peer)
    }
}

/// Longest wait at shutdown for the last holder of the index to let go,
/// and for the log store's writer to finish.
const INDEX_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Waits until `closed` says true (true), or `limit` passed.
async fn wait_until_closed(closed: &mut watch::Receiver<bool>, limit: Duration) -> bool {
    // The sender lives in what closes and says true before it goes, so an
    // error (sender gone) also means closed.
    let wait = closed.wait_for(|closed| *closed);
    tokio::time::timeout(limit, wait).await.is_ok()
}

async fn join(
    what: &'static str,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
) -> Result<(), DaemonError> {
    match task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(DaemonError::Serve {
            what,
            reason: error.to_string(),
        }),
        Err(error) => Err(DaemonError::Serve {
            what,
            reason: error.to_string(),
        }),
    }
}

/// The bound listeners of a node.
struct Listeners {
    peer: TcpListener,
    client: TcpListener,
    metrics: Option<TcpListener>,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { what, addr, source })
}

async fn bind_all(config: &NodeConfig) -> Result<Listeners, DaemonError> {
    let metrics = match config.metrics_listen {
        Some(addr) => Some(bind("metrics", addr).await?),
        None => None,
    };
    Ok(Listeners {
        peer: bind("peer", config.peer_listen).await?,
        client: bind("client", config.client_listen).await?,
        metrics,
    })
}

fn local(
    listener: &TcpListener,
    what: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, DaemonError> {
    listener
        .local_addr()
        .map_err(|source| DaemonError::Bind { what, addr, source })
}

/// The openraft configuration from the node's settings.
/// openraft's settings; a node that may not vote (see the log store's vote
/// blockers) never stands for election either.
fn raft_config(config: &NodeConfig, may_vote: bool) -> Result<Arc<Config>, DaemonError> {
    let raft = &config.raft;
    let openraft_config = Config {
        cluster_name: "finkfs".to_string(),
        heartbeat_interval: raft.heartbeat_ms,
        election_timeout_min: raft.election_timeout_min_ms,
        election_timeout_max: raft.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(raft.snapshot_every_entries),
        max_in_snapshot_log_to_keep: raft.snapshot_every_entries.min(1000),
        enable_pre_vote: Some(true),
        enable_elect: may_vote,
        // A follower whose data directory was lost or repaired comes back
        // with a shorter log than the leader last saw. openraft's leader
        // otherwise treats that as a bug and panics; finkfs expects it
        // (disks fail, `fsck --repair` cuts damaged journals) and makes it
        // safe on the follower's side instead: such a node refuses votes
        // (DataDirWiped, BelowVouchFloor) until the leader has made its log
        // whole again, so it never elects a leader on a log it lost. The
        // leader just starts replicating to it from scratch.
        allow_log_reversion: Some(true),
        // openraft by default lets a leader that restarts resume leading
        // its old term without an election. That is unsafe here: finkfs
        // saves the committed id and syncs the applied state lazily, so a
        // restarted leader can come back with a committed index older than
        // writes it had acknowledged, and answer linearizable reads from
        // before them (the simulator found it: a read after a power cut of
        // every node missed an acknowledged write). A new election in a new
        // term commits a fresh blank entry first, which brings the commit
        // index past every acknowledged write before any read is served.
        enable_leader_restore: Some(false),
        ..Config::default()
    };
    let validated = openraft_config
        .validate()
        .map_err(|e| DaemonError::Raft(format!("invalid raft settings: {e}")))?;
    Ok(Arc::new(validated))
}

/// The log store's settings: a node started with `--rejoin` was a member
/// of a cluster that exists, so an empty log means its data was lost and it
/// must not vote until it has caught up. (An empty node cannot tell that
/// by itself: a new node waiting for `Init` looks the same, and must vote
/// for the cluster to elect its first leader.)
fn log_store_options(config: &NodeConfig) -> LogStoreOptions {
    LogStoreOptions {
        member_of_existing_cluster: config.rejoin,
        // Under the simulator the writer must be one of the node's tasks:
        // a thread would escape its clock and its power cuts.
        writer_run: if finkfs_raft::rt::simulated() {
            WriterRun::Task
        } else {
            WriterRun::Thread
        },
        journal: JournalOptions {
            segment_bytes_max: config.raft.journal_segment_bytes,
            ..JournalOptions::default()
        },
        ..LogStoreOptions::default()
    }
}

/// Logs, loudly, what opening the log store found wrong.
fn report_log_store(id: NodeId, report: &OpenReport) -> Vec<String> {
    let blockers: Vec<String> = report
        .vote_blockers
        .iter()
        .map(|b| format!("{b:?}"))
        .collect();
    if !blockers.is_empty() {
        tracing::error!(
            id,
            ?blockers,
            "THIS NODE MUST NOT VOTE: its vote or committed log entries are lost or damaged; it keeps running so it can be inspected and repaired"
        );
    }
    blockers
}

/// TEST ONLY: set by `main` from the hidden `--test-unsafe-skip-journal-fsync`
/// flag, so that only the `finkfs-node` binary, started so on purpose by a
/// test, can run with [`unsafe_sync::SkipRaftLogSync`]. Kept out of
/// [`NodeConfig`]: no config file or embedding can turn it on.
static SKIP_JOURNAL_FSYNC: AtomicBool = AtomicBool::new(false);

/// Opens the data directory of `config`, starts its Raft node and its
/// services. Returns once every endpoint listens.
pub async fn start(config: NodeConfig) -> Result<RunningNode, DaemonError> {
    let listeners = bind_all(&config).await?;
    let peer_addr = local(&listeners.peer, "peer", config.peer_listen)?;
    let client_addr = local(&listeners.client, "client", config.client_listen)?;
    let metrics_addr = match (&listeners.metrics, config.metrics_listen) {
        (Some(listener), Some(addr)) => Some(local(listener, "metrics", addr)?),
        _ => None,
    };
    let advertised = config.member_addr(peer_addr, client_addr)?;

    let disk_stats = Arc::new(DiskStats::default());
    let real = RealDisk::open(&config.data_dir).map_err(|source| DaemonError::DataDir {
        dir: config.data_dir.clone(),
        source,
    })?;
    let mut real: DiskRef = Arc::new(real);
    if SKIP_JOURNAL_FSYNC.load(Ordering::Relaxed) {
        tracing::warn!("TEST ONLY: Raft log fsyncs are skipped; acknowledged writes can be lost");
        real = Arc::new(unsafe_sync::SkipRaftLogSync::new(real));
    }
    let disk: DiskRef = Arc::new(MeteredDisk::new(real, Arc::clone(&disk_stats)));

    let (stop, stopped) = watch::channel(false);
    let transport: Arc<dyn PeerTransport> = Arc::new(PeerChannels::new(PeerOptions::default()));
    let parts = open_group(
        &config,
        Arc::clone(&disk),
        transport,
        advertised.clone(),
        stopped.clone(),
    )
    .await?;
    crate::fsck::repair::lock::write_pid_file(&disk).map_err(|source| DaemonError::DataDir {
        dir: config.data_dir.clone(),
        source,
    })?;
    let GroupParts {
        raft,
        reader,
        peer_service,
        client_service,
        vote_blockers: vote_blockers_now,
        counters,
        repair_stats,
        scrub_stats,
        log_reader,
        tasks: mut other_tasks,
        vote_gate,
        log_writer_stopped,
        ..
    } = parts;
    let backup_shown = config
        .backup
        .as_ref()
        .map(|_| Arc::new(crate::backup::BackupState::default()));
    if let Some(state) = &backup_shown {
        client_service.show_backup_status(Arc::clone(state));
    }

    let peer_task = tokio::spawn(serve_peer(
        listeners.peer,
        peer_service,
        until(stopped.clone()),
    ));
    other_tasks.push(prompt_election::spawn(
        &raft,
        config.id,
        &vote_gate,
        prompt_election::Pace {
            every: Duration::from_millis(config.raft.heartbeat_ms),
            for_at_most: Duration::from_millis(config.raft.election_timeout_min_ms),
        },
    ));
    let client_task = tokio::spawn(serve_client(
        listeners.client,
        client_service,
        until(stopped.clone()),
    ));
    let backup_state = config.backup.as_ref().map(|settings| {
        let state = Arc::clone(backup_shown.as_ref().expect("made when backups are on"));
        other_tasks.push(backup::spawn_backups(
            config.id,
            settings.clone(),
            raft.clone(),
            reader.clone(),
            Arc::clone(&state),
            stopped.clone(),
        ));
        other_tasks.push(backup::spawn_archiver(
            config.id,
            settings.clone(),
            raft.clone(),
            log_reader.clone(),
            Arc::clone(&state),
            stopped.clone(),
        ));
        state
    });
    if let Some(listener) = listeners.metrics {
        let sources = Arc::new(MetricsSources {
            id: config.id,
            group: GROUP,
            raft: raft.clone(),
            disk: disk_stats,
            api: counters,
            vote_blockers: vote_blockers_now,
            backup: backup_state,
            scrub: scrub_stats,
            repair: repair_stats,
        });
        other_tasks.push(tokio::spawn(serve_metrics(
            listener,
            sources,
            until(stopped.clone()),
        )));
    }
    if let Some(task) = initial_members_task(&config, &raft) {
        other_tasks.push(task);
    }
    tracing::info!(
        id = config.id,
        peer = %peer_addr,
        client = %client_addr,
        metrics = %metrics::describe(metrics_addr),
        advertised = %advertised,
        data_dir = %config.data_dir.display(),
        "node started"
    );
    Ok(RunningNode {
        id: config.id,
        peer_addr,
        client_addr,
        metrics_addr,
        advertised,
        raft,
        reader,
        log_writer_stopped,
        stop,
        client_task,
        peer_task,
        other_tasks,
    })
}

/// Resolves when `stopped` turns true (or its sender is gone).
async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
}

/// Serves the client service until `shutdown`, then lets calls in flight
/// finish for [`CLIENT_SHUTDOWN_GRACE`].
async fn serve_client(
    listener: TcpListener,
    service: ClientService<StateMachine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (signalled_tx, mut signalled) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        signalled_tx.send_replace(true);
    };
    // tonic ignores `tcp_nodelay` for a listener it did not bind itself,
    // so Nagle is switched off here, on each accepted connection: with it
    // on, a small reply waits for the client's delayed ACK (about 40 ms).
    let incoming = {
        use tokio_stream::StreamExt as _;
        tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
            if let Ok(stream) = &accepted {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "cannot disable Nagle on a client connection");
                }
            }
            accepted
        })
    };
    let server = tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, signal);
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        _ = signalled.wait_for(|s| *s) => {}
    }
    match tokio::time::timeout(CLIENT_SHUTDOWN_GRACE, &mut server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("client calls still running {CLIENT_SHUTDOWN_GRACE:?} after shutdown: dropping them");
            Ok(())
        }
    }
}

/// On a first start with initial members, the member with the smallest id
/// initializes the cluster (retrying until the Raft node takes it).
fn initial_members_task(config: &NodeConfig, raft: &Raft<StateMachine>) -> Option<JoinHandle<()>> {
    let first = config.initial_members.iter().map(|m| m.id).min()?;
    if first != config.id {
        return None;
    }
    let members: std::collections::BTreeMap<NodeId, finkfs_raft::types::Node> = config
        .initial_members
        .iter()
        .map(|m| (m.id, m.addr.to_node()))
        .collect();
    let raft = raft.clone();
    Some(tokio::spawn(async move {
        loop {
            match raft.is_initialized().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot tell whether the cluster is initialized");
                    return;
                }
            }
            match raft.initialize(members.clone()).await {
                Ok(()) => {
                    tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "cluster initialized from the initial members");
                    return;
                }
                Err(error) => tracing::warn!(%error, "initializing the cluster failed; retrying"),
            }
            tokio::time::sleep(INIT_RETRY_INTERVAL).await;
        }
    }))
}

/// Runs a node until SIGTERM or SIGINT, then shuts it down.
pub async fn run(config: NodeConfig) -> Result<(), DaemonError> {
    let node = start(config).await?;
    println!(
        "finkfs-node {} listening: peer {} client {} metrics {}",
        node.id,
        node.peer_addr,
        node.client_addr,
        metrics::describe(node.metrics_addr)
    );
    wait_for_signal().await;
    node.shutdown().await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Sets up logging from `FINKFS_LOG` (or `RUST_LOG`), default `info`.
pub fn init_logging() {
    let filter = std::env::var("FINKFS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The whole `finkfs-node` program: parse, log, run. Exit codes: 0 after a
/// clean shutdown, 1 when the node failed, 2 for bad settings.
pub fn main() -> ExitCode {
    use clap::Parser;
    let flags = Flags::parse();
    init_logging();
    SKIP_JOURNAL_FSYNC.store(flags.test_unsafe_skip_journal_fsync, Ordering::Relaxed);
    let config = match NodeConfig::from_flags(flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("finkfs-node: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("finkfs-node: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "node failed");
            eprintln!("finkfs-node: {error}");
            ExitCode::from(1)
        }
    }
}
