//! One node's Raft group, opened and wired the way production runs it, but
//! not listening anywhere: [`open_group`] opens the log store and the state
//! machine on a disk, starts the Raft node over a peer transport and builds
//! the peer and client services. The daemon then puts the services behind
//! TCP listeners; the deterministic simulator attaches the peer service to
//! its simulated network and calls the client service directly. Both boot a
//! node through this one function, so the simulator tests the code that
//! runs in production, not a copy of it.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use finkfs_raft::log_store::{
    JournalLogReader, JournalLogStore, LogStoreOptions, OpenReport, VoteGate,
};
use finkfs_raft::network::PeerTransport;
use finkfs_raft::network::{GroupHandle, GroupRegistry, PeerClient, PeerNetwork, PeerService};
use finkfs_raft::types::{Membership, Raft, StoredMembership};
use finkfs_seam::DiskRef;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::NodeConfig;
use super::network::{MemberNetwork, PeerBlockFetcher};
use super::{
    log_store_options, raft_config, report_log_store, tail_floor, vote_watch, DaemonError, GROUP,
};
use crate::api::{ApiCounters, ApiOptions, ClientService, MemberAddr};
use crate::reader::ObjectReader;
use crate::repair::{ReadRepair, RepairStats, RepairingBlockSource};
use crate::scrub::{spawn_scrubber, ScrubStats, Scrubber};
use crate::state_machine::{StateMachine, StateMachineOptions};

/// The directory of the group's files on the node's disk.
pub fn group_dir() -> PathBuf {
    PathBuf::from(format!("groups/{}", GROUP.0))
}

/// A node's opened group: its Raft node and the services that answer for
/// it, plus the handles the daemon's other tasks (metrics, backups) read.
pub struct GroupParts {
    /// The Raft node.
    pub raft: Raft<StateMachine>,
    /// A read handle on the local object store (no read barrier).
    pub reader: ObjectReader,
    /// What the node answers to its peers.
    pub peer_service: PeerService<StateMachine>,
    /// What the node answers to clients.
    pub client_service: ClientService<StateMachine>,
    /// What opening the log store found (torn tail cut, vote blockers).
    pub open_report: OpenReport,
    /// Whether the node may vote, kept current while it runs.
    pub vote_gate: Arc<VoteGate>,
    /// The vote blockers as Status and /metrics show them.
    pub vote_blockers: watch::Receiver<Vec<String>>,
    /// The client service's counters.
    pub counters: Arc<ApiCounters>,
    /// Block repairs done by reads and the scrubber.
    pub repair_stats: Arc<RepairStats>,
    /// The scrubber's progress (zero when it is off).
    pub scrub_stats: Arc<ScrubStats>,
    /// Reads committed entries the way replication does (the journal
    /// archiver of backups uses it).
    pub log_reader: JournalLogReader,
    /// The group's own background tasks: the vote watch and the scrubber.
    pub tasks: Vec<JoinHandle<()>>,
    /// Turns true once the log store's writer has made its last write
    /// (openraft drops the store at shutdown without closing it).
    pub log_writer_stopped: watch::Receiver<bool>,
}

/// The members a snapshot install during openraft's start fetches blocks
/// from: the newer of the applied membership and the newest snapshot's
/// (the applied one is empty when a repair rebuilt the index).
async fn members_known_at_start(
    state_machine: &mut StateMachine,
    applied: StoredMembership,
) -> Result<Membership, DaemonError> {
    let snapshot = state_machine
        .get_current_snapshot()
        .await
        .map_err(|e| DaemonError::Raft(format!("reading the newest snapshot before start: {e}")))?
        .map(|snapshot| snapshot.meta.last_membership);
    let newest = match snapshot {
        Some(snapshot) if snapshot.log_id() > applied.log_id() => snapshot,
        _ => applied,
    };
    Ok(newest.membership().clone())
}

/// Opens the group of `config.id` on `disk`: the log store, the state
/// machine, the Raft node over `transport`, the peer and client services
/// (advertising `advertised`), and the group's background tasks, which run
/// until `stopped` turns true. Tasks are started with
/// `finkfs_raft::rt::spawn`, so under the simulator they belong to the node.
pub async fn open_group(
    config: &NodeConfig,
    disk: DiskRef,
    transport: Arc<dyn PeerTransport>,
    advertised: MemberAddr,
    stopped: watch::Receiver<bool>,
) -> Result<GroupParts, DaemonError> {
    let group_dir = group_dir();
    let raft_cell = Arc::new(OnceLock::new());
    let members_at_start = Arc::new(OnceLock::new());
    let fetcher = || {
        PeerBlockFetcher::new(
            config.id,
            GROUP,
            PeerClient::over(Arc::clone(&transport)),
            Arc::clone(&raft_cell),
            Arc::clone(&members_at_start),
        )
    };
    let sm_options = StateMachineOptions {
        sync_entries: config.apply.sync_entries,
        sync_interval: config.apply.sync_interval,
        ..StateMachineOptions::default()
    };
    let mut state_machine = StateMachine::open(
        Arc::clone(&disk),
        group_dir.clone(),
        sm_options,
        Arc::new(fetcher()),
    )?;
    // The state machine opens first: its applied log id lets the log store
    // open a log whose purge point was lost with the meta store.
    let (applied, membership) = state_machine
        .applied_state()
        .await
        .map_err(|e| DaemonError::Raft(format!("reading the applied state before start: {e}")))?;
    // Set once, here: nothing else sets it.
    let _ = members_at_start.set(members_known_at_start(&mut state_machine, membership).await?);
    let log_store_options = LogStoreOptions {
        applied,
        ..log_store_options(config)
    };
    let (mut log_store, open_report) =
        JournalLogStore::open(Arc::clone(&disk), &group_dir, log_store_options)?;
    let initial_blockers = report_log_store(config.id, &open_report);
    let vote_gate = log_store.vote_gate();
    let log_writer_stopped = log_store.writer_stopped();
    let log_reader = log_store.get_log_reader().await;

    let reader = state_machine.reader();
    let snapshot_dir = state_machine.snapshot_dir().to_path_buf();
    let repair_stats = Arc::new(RepairStats::default());
    let read_repair = ReadRepair::new(
        state_machine.repair_handle(),
        Arc::new(fetcher()),
        Arc::clone(&repair_stats),
    );

    // openraft panics at start when its purge point lies beyond the newest
    // snapshot, and may itself purge up to the applied index: a snapshot
    // covering that purge is made durable first, or the start refused.
    let log_state = log_store
        .get_log_state()
        .await
        .map_err(|e| DaemonError::Raft(format!("reading the log state before start: {e}")))?;
    state_machine
        .cover_log_purge(log_state.last_purged_log_id, log_state.last_log_id)
        .await?;

    let network = MemberNetwork::new(PeerNetwork::over(config.id, GROUP, Arc::clone(&transport)));
    let raft = Raft::new(
        config.id,
        raft_config(config, initial_blockers.is_empty())?,
        network,
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| DaemonError::Raft(format!("start: {e}")))?;
    // Set once, just made: nothing else sets it.
    let _ = raft_cell.set(raft.clone());

    let registry = Arc::new(GroupRegistry::new());
    let handle = GroupHandle::new(raft.clone(), Arc::clone(&disk), snapshot_dir)
        .with_block_source(Arc::new(RepairingBlockSource::new(
            reader.clone(),
            read_repair.clone(),
        )))
        .with_vote_gate(Arc::clone(&vote_gate));
    registry.insert(GROUP, handle);

    let api_options = ApiOptions {
        object_bytes_max: config.object_bytes_max,
        write_timeout: config.write_timeout,
        ..ApiOptions::default()
    };
    // Starts from what openraft was configured with, not from the gate as
    // it is now: a blocker that lifted during the start (a vouch floor met
    // by the applied state) must still turn elections back on.
    let (blockers_shown, vote_blockers) = watch::channel(initial_blockers);
    let client_service = ClientService::new(
        config.id,
        GROUP,
        raft.clone(),
        reader.clone(),
        advertised,
        api_options,
        vote_blockers.clone(),
    );
    let counters = client_service.counters();
    client_service.repair_reads(read_repair.clone());

    let mut tasks = vec![vote_watch::spawn(
        config.id,
        Arc::clone(&vote_gate),
        raft.clone(),
        blockers_shown,
        stopped.clone(),
    )];
    if vote_gate.tail_floor().is_some() {
        tasks.push(tail_floor::spawn(
            config.id,
            GROUP,
            Arc::clone(&vote_gate),
            raft.clone(),
            PeerClient::over(Arc::clone(&transport)),
            stopped.clone(),
        ));
    }
    let scrub_stats = Arc::new(ScrubStats::default());
    if config.scrub.is_enabled() {
        let scrubber = Scrubber::new(
            reader.clone(),
            read_repair,
            Arc::clone(&disk),
            group_dir.join(finkfs_raft::log_store::JOURNAL_DIR),
            config.scrub,
            Arc::clone(&scrub_stats),
        );
        tasks.push(spawn_scrubber(scrubber, stopped));
    }
    Ok(GroupParts {
        raft,
        reader,
        peer_service: PeerService::new(registry),
        client_service,
        open_report,
        vote_gate,
        vote_blockers,
        counters,
        repair_stats,
        scrub_stats,
        log_reader,
        tasks,
        log_writer_stopped,
    })
}
