//! How failures become gRPC statuses for clients.
//!
//! | situation                                  | code                 | metadata            |
//! |--------------------------------------------|----------------------|---------------------|
//! | this node follows a known leader           | FAILED_PRECONDITION  | `finkfs-leader`     |
//! | no leader known, no quorum, node stopping  | UNAVAILABLE          |                     |
//! | node not a member of any cluster           | UNAVAILABLE          | `finkfs-not-member` |
//! | bad path, size, hash, range, argument      | INVALID_ARGUMENT / OUT_OF_RANGE |          |
//! | no such object                             | NOT_FOUND            |                     |
//! | damaged data (never served)                | DATA_LOSS            |                     |
//! | refused by the state machine               | FAILED_PRECONDITION  |                     |
//! | anything else                              | INTERNAL             |                     |

use std::fmt::Display;

use finkfs_raft::types::{NodeId, TypeConfig};
use openraft::error::{ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use tonic::metadata::MetadataValue;
use tonic::Status;

use super::member::MemberAddr;
use super::{LEADER_METADATA_KEY, NOT_MEMBER_METADATA_KEY};
use crate::object_path::PathProblem;
use crate::store::StoreError;

/// The answer of a node that does not lead: where the leader is, or that
/// none is known yet.
pub(crate) fn forward(node: NodeId, forward: &ForwardToLeader<TypeConfig>) -> Status {
    let Some(leader) = forward.leader_id else {
        return Status::unavailable(format!(
            "node {node} knows no leader (an election may be in progress); retry"
        ));
    };
    if leader == node {
        // Elected, but its lease is not yet confirmed by a quorum.
        return Status::unavailable(format!(
            "node {node} was just elected and is confirming its leadership; retry"
        ));
    }
    let client = forward
        .leader_node
        .as_ref()
        .and_then(|n| MemberAddr::of(n).ok())
        .and_then(|addr| addr.client);
    let Some(client) = client else {
        return Status::unavailable(format!(
            "node {node} is not the leader; leader {leader} advertises no client address"
        ));
    };
    let mut status = Status::failed_precondition(format!(
        "node {node} is not the leader; the leader is node {leader} at {client}"
    ));
    match MetadataValue::try_from(client.as_str()) {
        Ok(value) => {
            status.metadata_mut().insert(LEADER_METADATA_KEY, value);
        }
        Err(_) => {
            return Status::unavailable(format!(
                "node {node} is not the leader; leader {leader} has an unusable client address {client:?}"
            ))
        }
    }
    status
}

/// The answer of a node outside every cluster.
pub(crate) fn not_member(node: NodeId) -> Status {
    let mut status = Status::unavailable(format!(
        "node {node} is not a member of any cluster; run `finkfs cluster init` or add it"
    ));
    status
        .metadata_mut()
        .insert(NOT_MEMBER_METADATA_KEY, MetadataValue::from(node));
    status
}

/// A failed proposal.
pub(crate) fn write_error(
    node: NodeId,
    error: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
) -> Status {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward(node, f),
        // The entry may or may not commit through the new leader; every
        // write is idempotent, so the client may simply retry it.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => forward(node, f),
        RaftError::APIError(other) => {
            Status::failed_precondition(format!("membership change refused: {other}"))
        }
        RaftError::Fatal(fatal) => stopped(node, fatal),
    }
}

/// A failed read barrier.
pub(crate) fn read_error(
    node: NodeId,
    error: &RaftError<TypeConfig, LinearizableReadError<TypeConfig>>,
) -> Status {
    match error {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => forward(node, f),
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(q)) => Status::unavailable(
            format!("node {node} cannot confirm its leadership with a quorum: {q}"),
        ),
        RaftError::Fatal(fatal) => stopped(node, fatal),
    }
}

/// The Raft node stopped (shutdown or a storage failure).
pub(crate) fn stopped(node: NodeId, error: &impl Display) -> Status {
    Status::unavailable(format!("node {node} has stopped serving: {error}"))
}

/// A request that names a bad path.
pub(crate) fn bad_path(path: &str, problem: &PathProblem) -> Status {
    Status::invalid_argument(format!("invalid object path {path:?}: {problem}"))
}

/// A failed local read or write of the object store.
pub(crate) fn store_error(error: &StoreError) -> Status {
    match error {
        StoreError::BadPath { path, problem } => bad_path(path, problem),
        StoreError::NotFound { path } => Status::not_found(format!("no object at {path}")),
        StoreError::RangeOutOfBounds { .. } => Status::out_of_range(error.to_string()),
        StoreError::TooLarge { .. } | StoreError::BatchTooLarge { .. } => {
            Status::invalid_argument(error.to_string())
        }
        error if error.is_corruption() => {
            tracing::error!(%error, "damaged data refused to a client");
            Status::data_loss(format!("damaged data not served: {error}"))
        }
        error => {
            tracing::error!(%error, "object store failed");
            Status::internal(format!("object store failed: {error}"))
        }
    }
}

/// A blocking task that did not finish (panicked or was cancelled).
pub(crate) fn task_failed(error: &impl Display) -> Status {
    Status::internal(format!("a read task failed: {error}"))
}
