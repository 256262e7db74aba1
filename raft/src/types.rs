//! The openraft type configuration of finkfs and the aliases the other crates
//! use.
//!
//! Raft here replicates opaque bytes: the node crate encodes and decodes its
//! own commands and responses, so nothing in this crate knows what an object,
//! a block or a path is.

use std::fmt;

use bytes::Bytes;
use openraft::RaftTypeConfig;
use serde::{Deserialize, Serialize};

/// The id of one Raft node (one member of one group). Stable for the life of
/// the node's data directory.
pub type NodeId = u64;

/// What a member advertises to its peers: the address of its peer gRPC
/// service.
pub type Node = openraft::BasicNode;

/// The id of one Raft group (shard). One process may host several groups, so
/// the group id appears in the data-directory layout and in every peer RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u64);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group-{}", self.0)
    }
}

/// An application command carried by a normal log entry: opaque bytes that the
/// state machine decodes. `Bytes` so that a command read back from the journal
/// shares the record's buffer instead of being copied.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCommand(pub Bytes);

impl AppCommand {
    /// The command's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AppCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppCommand({} bytes)", self.0.len())
    }
}

impl fmt::Display for AppCommand {
    // Commands can be megabytes of alert data: show the size, never the bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command({} bytes)", self.0.len())
    }
}

/// The state machine's answer to one command: opaque bytes.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppResponse(pub Bytes);

impl fmt::Debug for AppResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppResponse({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// The openraft type configuration of every finkfs Raft group.
    ///
    /// The leader id is openraft's default (`leader_id_adv`: term and node id),
    /// so a log id carries the proposing leader's node id; the entry codec
    /// stores it in each entry.
    pub TypeConfig:
        D = AppCommand,
        R = AppResponse,
        NodeId = NodeId,
        Node = Node,
        Term = u64,
        AsyncRuntime = crate::rt::FinkRuntime,
);

/// The term of a leader.
pub type Term = <TypeConfig as RaftTypeConfig>::Term;
/// A leader id as granted by a vote: term and node id.
pub type LeaderId = <TypeConfig as RaftTypeConfig>::LeaderId;
/// The leader id stored in a log id (for `leader_id_adv`, the same type).
pub type CommittedLeaderId = <LeaderId as openraft::vote::RaftLeaderId>::Committed;
/// The identity of a log entry: leader id and index.
pub type LogId = openraft::LogId<CommittedLeaderId>;
/// A vote: the leader id a node voted for, and whether a quorum granted it.
pub type Vote = <TypeConfig as RaftTypeConfig>::Vote;
/// One log entry.
pub type Entry = <TypeConfig as RaftTypeConfig>::Entry;
/// What a log entry carries.
pub type EntryPayload = openraft::EntryPayload<AppCommand, NodeId, Node>;
/// A cluster membership configuration.
pub type Membership = openraft::Membership<NodeId, Node>;
/// A membership with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<CommittedLeaderId, NodeId, Node>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::storage::SnapshotMeta<CommittedLeaderId, NodeId, Node>;
/// A snapshot whose data is of type `D`.
pub type Snapshot<D> = openraft::storage::Snapshot<CommittedLeaderId, NodeId, Node, D>;
/// The first and last log ids a log store holds.
pub type LogState = openraft::storage::LogState<TypeConfig>;
/// The callback a log store fires once appended entries are durable.
pub type IOFlushed = openraft::storage::IOFlushed<TypeConfig>;
/// A storage error as openraft reports it.
pub type StorageError = openraft::StorageError<TypeConfig>;
/// A Raft node of one group with state machine `SM`.
pub type Raft<SM> = openraft::Raft<TypeConfig, SM>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_display_shows_size_not_bytes() {
        let command = AppCommand(Bytes::from_static(b"secret alert payload"));
        assert_eq!(command.to_string(), "command(20 bytes)");
        assert_eq!(format!("{command:?}"), "AppCommand(20 bytes)");
    }

    #[test]
    fn group_id_display_names_the_group() {
        assert_eq!(GroupId(7).to_string(), "group-7");
    }
}
