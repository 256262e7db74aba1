//! Status and membership calls.

use std::collections::{BTreeMap, BTreeSet};

use finkfs_raft::types::{Membership, Node, NodeId, TypeConfig};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::storage::RaftStateMachine;
use openraft::{ChangeMembers, Instant as _, RaftMetrics, ServerState};
use tonic::Status;

use super::errors::{stopped, write_error};
use super::member::MemberAddr;
use super::proto::{self, Health, Member, MemberSpec, MembershipReply, Role, StatusReply};
use super::server::Shared;
use super::INIT_MEMBERS_MAX;

/// This node's view of its cluster.
pub(crate) fn status<SM>(shared: &Shared<SM>) -> StatusReply
where
    SM: RaftStateMachine<TypeConfig>,
{
    let metrics = shared.raft.metrics().borrow_watched().clone();
    let leader_client_addr = metrics
        .current_leader
        .and_then(|leader| {
            metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .cloned()
        })
        .and_then(|node| MemberAddr::of(&node).ok())
        .and_then(|addr| addr.client)
        .unwrap_or_default();
    StatusReply {
        node_id: shared.id,
        group_id: shared.group.0,
        state: state_name(metrics.state).to_string(),
        leader_id: metrics.current_leader,
        leader_client_addr,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        commit_index: metrics.local_committed.map(|log_id| log_id.index),
        last_applied: metrics.last_applied.map(|log_id| log_id.index),
        members: members(metrics.membership_config.membership(), Some(&metrics)),
        may_vote: shared.vote_blockers.borrow().is_empty(),
        vote_blockers: shared.vote_blockers.borrow().clone(),
        backup: shared
            .backup
            .get()
            .map(|state| backup_status(&state.status())),
    }
}

fn backup_status(status: &crate::backup::BackupStatus) -> proto::BackupStatus {
    proto::BackupStatus {
        successes: status.successes,
        failures: status.failures,
        last_success_unix: status.last_success_unix,
        last_seq: status.last_seq,
        last_size_bytes: status.last_size_bytes,
        last_written_bytes: status.last_written_bytes,
        last_error: status.last_error.clone().unwrap_or_default(),
        archived_index: status.archived_index,
        archive_failures: status.archive_failures,
    }
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// The members of `membership`, with their health when `metrics` is a
/// leader's.
pub(crate) fn members(
    membership: &Membership,
    metrics: Option<&RaftMetrics<TypeConfig>>,
) -> Vec<Member> {
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| {
            let (peer_addr, client_addr) = match MemberAddr::of(node) {
                Ok(addr) => (addr.peer, addr.client.unwrap_or_default()),
                Err(_) => (node.addr.clone(), String::new()),
            };
            let role = if voters.contains(id) {
                Role::Voter
            } else {
                Role::Learner
            };
            Member {
                id: *id,
                peer_addr,
                client_addr,
                role: role as i32,
                health: metrics.and_then(|m| health(m, *id)),
            }
        })
        .collect()
}

/// Replication progress of member `id`, known only to a leader.
fn health(metrics: &RaftMetrics<TypeConfig>, id: NodeId) -> Option<Health> {
    let replication = metrics.replication.as_ref()?;
    let matched_index = replication.get(&id)?.as_ref().map(|log_id| log_id.index);
    let last = metrics.last_log_index.unwrap_or(0);
    let lag_entries = match matched_index {
        Some(matched) => last.saturating_sub(matched),
        None => metrics.last_log_index.map_or(0, |last| last + 1),
    };
    let last_ack_ms = metrics
        .heartbeat
        .as_ref()
        .and_then(|heartbeat| heartbeat.get(&id).cloned().flatten())
        .map(|instant| {
            u64::try_from(instant.into_inner().elapsed().as_millis()).unwrap_or(u64::MAX)
        });
    Some(Health {
        matched_index,
        lag_entries,
        last_ack_ms,
    })
}

/// Creates a cluster of `specs` (empty: this node alone).
pub(crate) async fn init<SM>(
    shared: &Shared<SM>,
    specs: Vec<MemberSpec>,
) -> Result<MembershipReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    if specs.len() > INIT_MEMBERS_MAX {
        return Err(Status::invalid_argument(format!(
            "{} members exceed the maximum of {INIT_MEMBERS_MAX}",
            specs.len()
        )));
    }
    let nodes = if specs.is_empty() {
        BTreeMap::from([(shared.id, shared.me.to_node())])
    } else {
        member_nodes(&specs)?
    };
    if !nodes.contains_key(&shared.id) {
        return Err(Status::invalid_argument(format!(
            "init must be sent to one of the new members; node {} is not among them",
            shared.id
        )));
    }
    let initialized = shared
        .raft
        .is_initialized()
        .await
        .map_err(|e| stopped(shared.id, &e))?;
    if initialized {
        return Err(Status::already_exists(format!(
            "node {} already belongs to a cluster",
            shared.id
        )));
    }
    tracing::info!(members = ?nodes.keys().collect::<Vec<_>>(), "initializing the cluster");
    shared
        .raft
        .initialize(nodes.clone())
        .await
        .map_err(|e| match e {
            openraft::error::RaftError::APIError(api) => {
                Status::failed_precondition(format!("init refused: {api}"))
            }
            openraft::error::RaftError::Fatal(fatal) => stopped(shared.id, &fatal),
        })?;
    // Calls made once Init returned must find this node a member.
    let id = shared.id;
    shared
        .raft
        .wait(Some(shared.options.write_timeout))
        .metrics(
            move |m| m.membership_config.membership().get_node(&id).is_some(),
            "the initial membership is visible",
        )
        .await
        .map_err(|e| {
            Status::unavailable(format!("initialized, but the membership did not show: {e}"))
        })?;
    let voters = BTreeSet::from_iter(nodes.keys().copied());
    let membership = Membership::new(vec![voters], nodes)
        .map_err(|e| Status::internal(format!("membership: {e}")))?;
    Ok(MembershipReply {
        log_index: 0,
        members: members(&membership, None),
    })
}

/// Applies a membership change on the leader.
pub(crate) async fn change<SM>(
    shared: &Shared<SM>,
    change: ChangeMembers<NodeId, Node>,
    retain: bool,
) -> Result<MembershipReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    shared.require_leader()?;
    let response = shared
        .with_write_timeout(shared.raft.change_membership(change, retain))
        .await?
        .map_err(|e| write_error(shared.id, &e))?;
    membership_reply(shared, response.log_id.index, response.membership)
}

/// Adds a learner on the leader.
pub(crate) async fn add_learner<SM>(
    shared: &Shared<SM>,
    spec: Option<MemberSpec>,
    blocking: bool,
) -> Result<MembershipReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let spec = spec.ok_or_else(|| Status::invalid_argument("AddLearner without a member"))?;
    let (id, node) = member_node(&spec)?;
    shared.require_leader()?;
    tracing::info!(id, addr = %node.addr, blocking, "adding a learner");
    let response = shared
        .raft
        .add_learner(id, node, blocking)
        .await
        .map_err(|e| write_error(shared.id, &e))?;
    membership_reply(shared, response.log_id.index, response.membership)
}

/// Removes members: voters leave the voter set, then every named member
/// leaves the cluster.
pub(crate) async fn remove<SM>(
    shared: &Shared<SM>,
    ids: Vec<u64>,
) -> Result<MembershipReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let ids: BTreeSet<NodeId> = ids.into_iter().collect();
    if ids.is_empty() {
        return Err(Status::invalid_argument("Remove names no member"));
    }
    shared.require_leader()?;
    let membership = shared
        .raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .clone();
    let voters: BTreeSet<NodeId> = membership
        .voter_ids()
        .filter(|id| ids.contains(id))
        .collect();
    let unknown: Vec<NodeId> = ids
        .iter()
        .copied()
        .filter(|id| membership.get_node(id).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(Status::not_found(format!(
            "no members {unknown:?} in the cluster"
        )));
    }
    if !voters.is_empty() {
        change(shared, ChangeMembers::RemoveVoters(voters), false).await?;
    }
    // Removed voters left with `retain = false` are gone already; what is
    // left of `ids` are learners.
    let left: BTreeSet<NodeId> = {
        let metrics = shared.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        ids.iter()
            .copied()
            .filter(|id| membership.get_node(id).is_some())
            .collect()
    };
    if left.is_empty() {
        let metrics = shared.raft.metrics().borrow_watched().clone();
        let log_index = metrics.membership_config.log_id().map_or(0, |l| l.index);
        return Ok(MembershipReply {
            log_index,
            members: members(metrics.membership_config.membership(), Some(&metrics)),
        });
    }
    change(shared, ChangeMembers::RemoveNodes(left), false).await
}

fn membership_reply<SM>(
    shared: &Shared<SM>,
    log_index: u64,
    membership: Option<Membership>,
) -> Result<MembershipReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let metrics = shared.raft.metrics().borrow_watched().clone();
    let membership = membership.unwrap_or_else(|| metrics.membership_config.membership().clone());
    Ok(MembershipReply {
        log_index,
        members: members(&membership, Some(&metrics)),
    })
}

/// The openraft nodes of `specs`, each address checked; duplicates refused.
fn member_nodes(specs: &[MemberSpec]) -> Result<BTreeMap<NodeId, Node>, Status> {
    let mut nodes = BTreeMap::new();
    for spec in specs {
        let (id, node) = member_node(spec)?;
        if nodes.insert(id, node).is_some() {
            return Err(Status::invalid_argument(format!(
                "member {id} is named twice"
            )));
        }
    }
    Ok(nodes)
}

fn member_node(spec: &proto::MemberSpec) -> Result<(NodeId, Node), Status> {
    let addr = MemberAddr::new(&spec.peer_addr, &spec.client_addr)
        .map_err(|e| Status::invalid_argument(format!("member {}: {e}", spec.id)))?;
    Ok((spec.id, addr.to_node()))
}
