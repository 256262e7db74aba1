//! Conversions between the peer protocol's messages and openraft's types.
//!
//! Decoding trusts nothing: every required field is checked for presence,
//! every fixed-size field for its length, and an AppendEntries message for the
//! shape a protocol-following leader produces (contiguous entries right after
//! `prev_log_id`, leader ids never above the leader's vote). A message that
//! fails is a [`WireError`], which the service answers with
//! `INVALID_ARGUMENT`; nothing malformed reaches openraft, whose engine
//! asserts on input a correct leader never sends.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::vote::{RaftLeaderId, RaftVote};

use super::proto;
use super::{APPEND_MESSAGE_BYTES_MAX, APPEND_MESSAGE_ENTRIES_MAX, MEMBERS_MAX};
use crate::entry_codec::{decode_entry, encode_entry_into, EntryDecodeError, EntryEncodeError};
use crate::types::{
    Entry, LeaderId, LogId, Membership, Node, NodeId, SnapshotMeta, StoredMembership, TypeConfig,
    Vote,
};

/// An AppendEntries request as openraft hands it to the network.
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
/// The outcome of one AppendEntries message in a stream.
pub type StreamAppendResult = openraft::raft::StreamAppendResult<TypeConfig>;
/// Why a follower rejected an AppendEntries message.
pub type StreamAppendError = openraft::raft::StreamAppendError<TypeConfig>;
/// A RequestVote (or Pre-Vote) request.
pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
/// The reply to a RequestVote (or Pre-Vote).
pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
/// The reply to a full snapshot.
pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;

/// Why a peer message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A required field is absent.
    #[error("field `{field}` is missing")]
    Missing {
        /// Name of the field.
        field: &'static str,
    },
    /// A fixed-size field has the wrong length.
    #[error("field `{field}` is {got} bytes, expected {expected}")]
    BadLength {
        /// Name of the field.
        field: &'static str,
        /// Expected length.
        expected: u64,
        /// Length found.
        got: u64,
    },
    /// A repeated field holds more items than the protocol allows.
    #[error("field `{field}` has {count} items, more than {max}")]
    TooMany {
        /// Name of the field.
        field: &'static str,
        /// Items found.
        count: u64,
        /// The ceiling.
        max: u64,
    },
    /// An entry's payload is not a valid entry.
    #[error("entry {index}: {source}")]
    Entry {
        /// Index of the entry.
        index: u64,
        /// What the entry codec said.
        #[source]
        source: EntryDecodeError,
    },
    /// An entry could not be encoded.
    #[error(transparent)]
    EntryEncode(#[from] EntryEncodeError),
    /// Entries do not follow `prev_log_id` and each other without a gap.
    #[error("entry index {got} where {expected} was expected")]
    NotContiguous {
        /// The index that should come next.
        expected: u64,
        /// The index found.
        got: u64,
    },
    /// A log id or vote is out of the order a correct leader produces.
    #[error("out of order: {reason}")]
    Order {
        /// What is out of order.
        reason: String,
    },
    /// The membership is not a valid configuration.
    #[error("invalid membership: {reason}")]
    Membership {
        /// What is wrong with it.
        reason: String,
    },
}

/// Encodes a leader id.
pub fn leader_id_to_proto(leader_id: &LeaderId) -> proto::LeaderId {
    proto::LeaderId {
        term: leader_id.term,
        node_id: leader_id.node_id,
    }
}

fn leader_id_from_proto(
    leader_id: Option<proto::LeaderId>,
    field: &'static str,
) -> Result<LeaderId, WireError> {
    let leader_id = leader_id.ok_or(WireError::Missing { field })?;
    Ok(LeaderId::new(leader_id.term, leader_id.node_id))
}

/// Encodes a vote.
pub fn vote_to_proto(vote: &Vote) -> proto::Vote {
    proto::Vote {
        leader_id: Some(leader_id_to_proto(vote.leader_id())),
        committed: vote.is_committed(),
    }
}

/// Decodes a required vote.
pub fn vote_from_proto(vote: Option<proto::Vote>, field: &'static str) -> Result<Vote, WireError> {
    let vote = vote.ok_or(WireError::Missing { field })?;
    let leader_id = leader_id_from_proto(vote.leader_id, field)?;
    Ok(Vote::from_leader_id(leader_id, vote.committed))
}

/// Encodes an optional log id (absent on the wire when `None`).
pub fn log_id_to_proto(log_id: Option<&LogId>) -> Option<proto::LogId> {
    log_id.map(|log_id| proto::LogId {
        leader_id: Some(leader_id_to_proto(&log_id.leader_id)),
        index: log_id.index,
    })
}

/// Decodes an optional log id.
pub fn log_id_from_proto(
    log_id: Option<proto::LogId>,
    field: &'static str,
) -> Result<Option<LogId>, WireError> {
    let Some(log_id) = log_id else {
        return Ok(None);
    };
    let leader_id = leader_id_from_proto(log_id.leader_id, field)?;
    Ok(Some(LogId::new(leader_id, log_id.index)))
}

fn membership_to_proto(membership: &Membership) -> proto::Membership {
    let configs = membership
        .get_joint_config()
        .iter()
        .map(|voters| proto::VoterSet {
            node_ids: voters.iter().copied().collect(),
        })
        .collect();
    let members = membership
        .nodes()
        .map(|(node_id, node)| proto::Member {
            node_id: *node_id,
            addr: node.addr.clone(),
        })
        .collect();
    proto::Membership { configs, members }
}

fn membership_from_proto(membership: proto::Membership) -> Result<Membership, WireError> {
    check_count("membership.members", membership.members.len(), MEMBERS_MAX)?;
    check_count("membership.configs", membership.configs.len(), 2)?;
    let mut configs: Vec<BTreeSet<NodeId>> = Vec::with_capacity(membership.configs.len());
    for voters in membership.configs {
        check_count(
            "membership.configs.node_ids",
            voters.node_ids.len(),
            MEMBERS_MAX,
        )?;
        configs.push(voters.node_ids.into_iter().collect());
    }
    let mut nodes: BTreeMap<NodeId, Node> = BTreeMap::new();
    for member in membership.members {
        if nodes
            .insert(member.node_id, Node { addr: member.addr })
            .is_some()
        {
            return Err(WireError::Membership {
                reason: format!("node {} listed twice", member.node_id),
            });
        }
    }
    Membership::new(configs, nodes).map_err(|e| WireError::Membership {
        reason: e.to_string(),
    })
}

/// Encodes a stored membership.
pub fn stored_membership_to_proto(stored: &StoredMembership) -> proto::StoredMembership {
    proto::StoredMembership {
        log_id: log_id_to_proto(stored.log_id().as_ref()),
        membership: Some(membership_to_proto(stored.membership())),
    }
}

/// Decodes a required stored membership.
pub fn stored_membership_from_proto(
    stored: Option<proto::StoredMembership>,
    field: &'static str,
) -> Result<StoredMembership, WireError> {
    let stored = stored.ok_or(WireError::Missing { field })?;
    let log_id = log_id_from_proto(stored.log_id, field)?;
    let membership = stored.membership.ok_or(WireError::Missing { field })?;
    Ok(StoredMembership::new(
        log_id,
        membership_from_proto(membership)?,
    ))
}

/// Encodes the header of a snapshot stream.
pub fn snapshot_header_to_proto(vote: &Vote, meta: &SnapshotMeta) -> proto::SnapshotHeader {
    proto::SnapshotHeader {
        vote: Some(vote_to_proto(vote)),
        last_log_id: log_id_to_proto(meta.last_log_id.as_ref()),
        last_membership: Some(stored_membership_to_proto(&meta.last_membership)),
    }
}

/// Decodes the header of a snapshot stream into the leader's vote and the
/// snapshot's metadata, refusing a pair no correct leader sends (openraft
/// asserts on it).
pub fn snapshot_header_from_proto(
    header: proto::SnapshotHeader,
) -> Result<(Vote, SnapshotMeta), WireError> {
    let vote = vote_from_proto(header.vote, "header.vote")?;
    require_committed(&vote)?;
    let last_log_id = log_id_from_proto(header.last_log_id, "header.last_log_id")?;
    let last_membership =
        stored_membership_from_proto(header.last_membership, "header.last_membership")?;
    if let Some(last) = &last_log_id {
        not_above_vote(&last.leader_id, &vote, "snapshot last log id")?;
    }
    if last_membership.log_id().as_ref() > last_log_id.as_ref() {
        return Err(WireError::Order {
            reason: "snapshot membership log id is after the snapshot's last log id".into(),
        });
    }
    Ok((
        vote,
        SnapshotMeta {
            last_log_id,
            last_membership,
        },
    ))
}

/// Encodes one entry: its index and term, and the entry codec's payload.
pub fn entry_to_proto(entry: &Entry) -> Result<proto::Entry, WireError> {
    let mut payload = Vec::new();
    encode_entry_into(entry, &mut payload)?;
    Ok(proto::Entry {
        index: entry.log_id.index,
        term: entry.log_id.leader_id.term,
        payload: Bytes::from(payload),
    })
}

/// Decodes one entry; a normal entry's command shares the message buffer.
pub fn entry_from_proto(entry: proto::Entry) -> Result<Entry, WireError> {
    let index = entry.index;
    decode_entry(index, entry.term, entry.payload)
        .map_err(|source| WireError::Entry { index, source })
}

/// Splits an AppendEntries request into wire messages of at most
/// [`APPEND_MESSAGE_BYTES_MAX`] entry payload bytes and
/// [`APPEND_MESSAGE_ENTRIES_MAX`] entries (at least one entry each, so a
/// single large entry travels alone). Each message is a valid AppendEntries
/// on its own: its `prev_log_id` is the last entry of the message before.
/// A request without entries (a heartbeat or commit update) is one message.
pub fn split_append(
    group_id: u64,
    request: &AppendEntriesRequest,
) -> Result<Vec<proto::AppendRequest>, WireError> {
    let vote = Some(vote_to_proto(&request.vote));
    let leader_commit = log_id_to_proto(request.leader_commit.as_ref());
    let mut messages = Vec::with_capacity(1);
    let mut prev = request.prev_log_id;
    let mut batch_last = prev;
    let mut entries: Vec<proto::Entry> = Vec::new();
    let mut bytes: u64 = 0;
    for entry in &request.entries {
        let encoded = entry_to_proto(entry)?;
        let entry_bytes = encoded.payload.len() as u64;
        let full = bytes + entry_bytes > APPEND_MESSAGE_BYTES_MAX
            || entries.len() >= APPEND_MESSAGE_ENTRIES_MAX;
        if full && !entries.is_empty() {
            messages.push(proto::AppendRequest {
                group_id,
                vote,
                prev_log_id: log_id_to_proto(prev.as_ref()),
                entries: std::mem::take(&mut entries),
                leader_commit,
            });
            prev = batch_last;
            bytes = 0;
        }
        bytes += entry_bytes;
        entries.push(encoded);
        batch_last = Some(entry.log_id);
    }
    messages.push(proto::AppendRequest {
        group_id,
        vote,
        prev_log_id: log_id_to_proto(prev.as_ref()),
        entries,
        leader_commit,
    });
    Ok(messages)
}

/// Decodes and checks one AppendEntries wire message.
pub fn append_from_proto(message: proto::AppendRequest) -> Result<AppendEntriesRequest, WireError> {
    let vote = vote_from_proto(message.vote, "vote")?;
    require_committed(&vote)?;
    let prev_log_id = log_id_from_proto(message.prev_log_id, "prev_log_id")?;
    let leader_commit = log_id_from_proto(message.leader_commit, "leader_commit")?;
    check_count("entries", message.entries.len(), APPEND_MESSAGE_ENTRIES_MAX)?;
    let mut entries = Vec::with_capacity(message.entries.len());
    for entry in message.entries {
        entries.push(entry_from_proto(entry)?);
    }
    check_append_shape(
        &vote,
        prev_log_id.as_ref(),
        &entries,
        leader_commit.as_ref(),
    )?;
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit,
    })
}

/// What a correct leader's AppendEntries looks like: entries contiguous from
/// `prev_log_id`, leader ids non-decreasing, none above the leader's vote.
fn check_append_shape(
    vote: &Vote,
    prev: Option<&LogId>,
    entries: &[Entry],
    leader_commit: Option<&LogId>,
) -> Result<(), WireError> {
    let mut expected = prev.map_or(0, |p| p.index.saturating_add(1));
    let mut last = prev.copied();
    if let Some(prev) = prev {
        not_above_vote(&prev.leader_id, vote, "prev_log_id")?;
    }
    for entry in entries {
        if entry.log_id.index != expected {
            return Err(WireError::NotContiguous {
                expected,
                got: entry.log_id.index,
            });
        }
        if let Some(last) = &last {
            if entry.log_id.leader_id < last.leader_id {
                return Err(WireError::Order {
                    reason: format!(
                        "entry {} has a lower leader id than the one before",
                        expected
                    ),
                });
            }
        }
        not_above_vote(&entry.log_id.leader_id, vote, "entry log id")?;
        last = Some(entry.log_id);
        expected = expected.saturating_add(1);
    }
    if let Some(commit) = leader_commit {
        not_above_vote(&commit.leader_id, vote, "leader_commit")?;
    }
    Ok(())
}

fn require_committed(vote: &Vote) -> Result<(), WireError> {
    if vote.is_committed() {
        return Ok(());
    }
    Err(WireError::Order {
        reason: format!("vote {vote} is not a leader's (committed) vote"),
    })
}

fn not_above_vote(leader_id: &LeaderId, vote: &Vote, what: &str) -> Result<(), WireError> {
    if leader_id <= vote.leader_id() {
        return Ok(());
    }
    Err(WireError::Order {
        reason: format!("{what} leader {leader_id} is above the vote {vote}"),
    })
}

fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), WireError> {
    if count <= max {
        return Ok(());
    }
    Err(WireError::TooMany {
        field,
        count: count as u64,
        max: max as u64,
    })
}

/// Encodes the outcome of one AppendEntries message.
pub fn append_reply_to_proto(result: &StreamAppendResult) -> proto::AppendReply {
    use proto::append_reply::Result as Reply;
    let reply = match result {
        Ok(matching) => Reply::Matching(proto::Matching {
            log_id: log_id_to_proto(matching.as_ref()),
        }),
        Err(StreamAppendError::Conflict(log_id)) => {
            Reply::Conflict(log_id_to_proto(Some(log_id)).unwrap_or_default())
        }
        Err(StreamAppendError::HigherVote(vote)) => Reply::HigherVote(vote_to_proto(vote)),
    };
    proto::AppendReply {
        result: Some(reply),
    }
}

/// Decodes the outcome of one AppendEntries message.
pub fn append_reply_from_proto(reply: proto::AppendReply) -> Result<StreamAppendResult, WireError> {
    use proto::append_reply::Result as Reply;
    match reply.result.ok_or(WireError::Missing { field: "result" })? {
        Reply::Matching(matching) => Ok(Ok(log_id_from_proto(matching.log_id, "matching")?)),
        Reply::Conflict(log_id) => {
            let log_id = log_id_from_proto(Some(log_id), "conflict")?;
            let log_id = log_id.ok_or(WireError::Missing { field: "conflict" })?;
            Ok(Err(StreamAppendError::Conflict(log_id)))
        }
        Reply::HigherVote(vote) => Ok(Err(StreamAppendError::HigherVote(vote_from_proto(
            Some(vote),
            "higher_vote",
        )?))),
    }
}

/// Encodes a RequestVote.
pub fn vote_request_to_proto(group_id: u64, request: &VoteRequest) -> proto::VoteRequest {
    proto::VoteRequest {
        group_id,
        vote: Some(vote_to_proto(&request.vote)),
        last_log_id: log_id_to_proto(request.last_log_id.as_ref()),
        leadership_transfer: request.leadership_transfer,
    }
}

/// Decodes a RequestVote.
pub fn vote_request_from_proto(request: proto::VoteRequest) -> Result<VoteRequest, WireError> {
    let vote = vote_from_proto(request.vote, "vote")?;
    let last_log_id = log_id_from_proto(request.last_log_id, "last_log_id")?;
    let mut decoded = VoteRequest::new(vote, last_log_id);
    decoded.leadership_transfer = request.leadership_transfer;
    Ok(decoded)
}

/// Encodes a vote reply.
pub fn vote_reply_to_proto(response: &VoteResponse) -> proto::VoteReply {
    proto::VoteReply {
        vote: Some(vote_to_proto(&response.vote)),
        vote_granted: response.vote_granted,
        last_log_id: log_id_to_proto(response.last_log_id.as_ref()),
    }
}

/// Decodes a vote reply.
pub fn vote_reply_from_proto(reply: proto::VoteReply) -> Result<VoteResponse, WireError> {
    let vote = vote_from_proto(reply.vote, "vote")?;
    let last_log_id = log_id_from_proto(reply.last_log_id, "last_log_id")?;
    Ok(VoteResponse::new(vote, last_log_id, reply.vote_granted))
}

/// A TransferLeader request.
pub type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
/// The answer to a TransferLeader request.
pub type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;

/// Encodes a TransferLeader request.
pub fn transfer_request_to_proto(
    group_id: u64,
    request: &TransferLeaderRequest,
) -> proto::TransferLeaderRequest {
    proto::TransferLeaderRequest {
        group_id,
        from_leader: Some(vote_to_proto(request.from_leader())),
        to_node_id: *request.to_node_id(),
        last_log_id: log_id_to_proto(request.last_log_id()),
    }
}

/// Decodes a TransferLeader request.
pub fn transfer_request_from_proto(
    request: proto::TransferLeaderRequest,
) -> Result<TransferLeaderRequest, WireError> {
    let from_leader = vote_from_proto(request.from_leader, "from_leader")?;
    require_committed(&from_leader)?;
    let last_log_id = log_id_from_proto(request.last_log_id, "last_log_id")?;
    if let Some(last) = &last_log_id {
        not_above_vote(&last.leader_id, &from_leader, "last_log_id")?;
    }
    Ok(TransferLeaderRequest::new(
        from_leader,
        request.to_node_id,
        last_log_id,
    ))
}

/// Encodes the answer to a TransferLeader request.
pub fn transfer_reply_to_proto(response: &TransferLeaderResponse) -> proto::TransferLeaderReply {
    use openraft::raft::TransferLeaderError;
    use proto::transfer_leader_reply::{Accepted, LogNotFlushed, Result as Reply, VoteChanged};
    let reply = match response {
        Ok(()) => Reply::Accepted(Accepted {}),
        Err(TransferLeaderError::VoteChanged { expected, actual }) => {
            Reply::VoteChanged(VoteChanged {
                expected: Some(vote_to_proto(expected)),
                actual: Some(vote_to_proto(actual)),
            })
        }
        Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
            Reply::LogNotFlushed(LogNotFlushed {
                expected: log_id_to_proto(expected.as_ref()),
                actual: log_id_to_proto(actual.as_ref()),
            })
        }
    };
    proto::TransferLeaderReply {
        result: Some(reply),
    }
}

/// Decodes the answer to a TransferLeader request.
pub fn transfer_reply_from_proto(
    reply: proto::TransferLeaderReply,
) -> Result<TransferLeaderResponse, WireError> {
    use openraft::raft::TransferLeaderError;
    use proto::transfer_leader_reply::Result as Reply;
    match reply.result.ok_or(WireError::Missing { field: "result" })? {
        Reply::Accepted(_) => Ok(Ok(())),
        Reply::VoteChanged(changed) => Ok(Err(TransferLeaderError::VoteChanged {
            expected: vote_from_proto(changed.expected, "vote_changed.expected")?,
            actual: vote_from_proto(changed.actual, "vote_changed.actual")?,
        })),
        Reply::LogNotFlushed(behind) => Ok(Err(TransferLeaderError::LogNotFlushed {
            expected: log_id_from_proto(behind.expected, "log_not_flushed.expected")?,
            actual: log_id_from_proto(behind.actual, "log_not_flushed.actual")?,
        })),
    }
}

/// Reads a 32-byte hash field.
pub fn hash_from_bytes(bytes: &[u8], field: &'static str) -> Result<[u8; 32], WireError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| WireError::BadLength {
        field,
        expected: 32,
        got: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AppCommand, EntryPayload};

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(LeaderId::new(term, node), index)
    }

    fn normal(term: u64, index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Normal(AppCommand(Bytes::from(vec![index as u8; bytes]))),
        }
    }

    fn request(entries: Vec<Entry>) -> AppendEntriesRequest {
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(1, 1, 4)),
            entries,
            leader_commit: Some(log_id(1, 1, 4)),
        }
    }

    #[test]
    fn large_append_splits_into_bounded_contiguous_messages() {
        let entry_bytes = (APPEND_MESSAGE_BYTES_MAX / 3) as usize;
        let entries: Vec<Entry> = (5..12).map(|i| normal(2, i, entry_bytes)).collect();
        let original = request(entries.clone());
        let messages = split_append(7, &original).unwrap();
        assert!(messages.len() > 1);
        let mut rebuilt = Vec::new();
        let mut prev = original.prev_log_id;
        for message in messages {
            assert_eq!(message.group_id, 7);
            let payload: u64 = message.entries.iter().map(|e| e.payload.len() as u64).sum();
            assert!(payload <= APPEND_MESSAGE_BYTES_MAX);
            let decoded = append_from_proto(message).unwrap();
            assert_eq!(decoded.prev_log_id, prev);
            prev = decoded.entries.last().map(|e| e.log_id);
            rebuilt.extend(decoded.entries);
        }
        assert_eq!(rebuilt, entries);
    }

    #[test]
    fn single_entry_above_message_bound_travels_alone() {
        let big = (APPEND_MESSAGE_BYTES_MAX + 1) as usize;
        let original = request(vec![normal(2, 5, 10), normal(2, 6, big), normal(2, 7, 10)]);
        let messages = split_append(0, &original).unwrap();
        let counts: Vec<usize> = messages.iter().map(|m| m.entries.len()).collect();
        assert_eq!(counts, [1, 1, 1]);
    }

    #[test]
    fn heartbeat_is_one_message_without_entries() {
        let messages = split_append(0, &request(Vec::new())).unwrap();
        assert_eq!(messages.len(), 1);
        assert!(messages[0].entries.is_empty());
        let decoded = append_from_proto(messages[0].clone()).unwrap();
        assert_eq!(decoded.prev_log_id, Some(log_id(1, 1, 4)));
    }

    #[test]
    fn gap_after_prev_log_id_is_refused() {
        let mut message = split_append(0, &request(vec![normal(2, 5, 1)]))
            .unwrap()
            .remove(0);
        message.entries[0].index = 6;
        assert!(matches!(
            append_from_proto(message),
            Err(WireError::NotContiguous {
                expected: 5,
                got: 6
            })
        ));
    }

    #[test]
    fn entry_above_the_vote_is_refused() {
        let mut message = split_append(0, &request(vec![normal(2, 5, 1)]))
            .unwrap()
            .remove(0);
        message.entries[0].term = 9;
        assert!(matches!(
            append_from_proto(message),
            Err(WireError::Order { .. })
        ));
    }

    #[test]
    fn uncommitted_vote_in_append_is_refused() {
        let mut message = split_append(0, &request(Vec::new())).unwrap().remove(0);
        message.vote.as_mut().unwrap().committed = false;
        assert!(matches!(
            append_from_proto(message),
            Err(WireError::Order { .. })
        ));
    }

    #[test]
    fn missing_vote_is_a_missing_field() {
        let mut message = split_append(0, &request(Vec::new())).unwrap().remove(0);
        message.vote = None;
        assert!(matches!(
            append_from_proto(message),
            Err(WireError::Missing { field: "vote" })
        ));
    }

    #[test]
    fn garbage_entry_payload_is_an_entry_error() {
        let mut message = split_append(0, &request(vec![normal(2, 5, 1)]))
            .unwrap()
            .remove(0);
        message.entries[0].payload = Bytes::from_static(&[9, 9, 9]);
        assert!(matches!(
            append_from_proto(message),
            Err(WireError::Entry { index: 5, .. })
        ));
    }

    #[test]
    fn every_append_outcome_round_trips() {
        let outcomes: Vec<StreamAppendResult> = vec![
            Ok(None),
            Ok(Some(log_id(2, 1, 9))),
            Err(StreamAppendError::Conflict(log_id(1, 2, 3))),
            Err(StreamAppendError::HigherVote(Vote::new(5, 3))),
        ];
        for outcome in outcomes {
            let decoded = append_reply_from_proto(append_reply_to_proto(&outcome)).unwrap();
            assert_eq!(decoded, outcome);
        }
    }

    #[test]
    fn membership_round_trips_and_unknown_voter_is_refused() {
        let nodes: BTreeMap<NodeId, Node> = (1..=3)
            .map(|id| {
                (
                    id,
                    Node {
                        addr: format!("127.0.0.1:{}", 7000 + id),
                    },
                )
            })
            .collect();
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], nodes).unwrap();
        let stored = StoredMembership::new(Some(log_id(1, 1, 2)), membership);
        let wire = stored_membership_to_proto(&stored);
        assert_eq!(
            stored_membership_from_proto(Some(wire.clone()), "m").unwrap(),
            stored
        );
        let mut bad = wire;
        bad.membership.as_mut().unwrap().configs[0]
            .node_ids
            .push(99);
        assert!(matches!(
            stored_membership_from_proto(Some(bad), "m"),
            Err(WireError::Membership { .. })
        ));
    }

    #[test]
    fn snapshot_beyond_the_vote_is_refused() {
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(7, 1, 10)),
            last_membership: StoredMembership::default(),
        };
        let header = snapshot_header_to_proto(&Vote::new_committed(3, 1), &meta);
        assert!(matches!(
            snapshot_header_from_proto(header),
            Err(WireError::Order { .. })
        ));
        let header = snapshot_header_to_proto(&Vote::new_committed(7, 1), &meta);
        assert_eq!(snapshot_header_from_proto(header).unwrap().1, meta);
    }

    #[test]
    fn every_transfer_leader_answer_round_trips() {
        use openraft::raft::TransferLeaderError;
        let answers: Vec<TransferLeaderResponse> = vec![
            Ok(()),
            Err(TransferLeaderError::VoteChanged {
                expected: Vote::new_committed(2, 1),
                actual: Vote::new(3, 2),
            }),
            Err(TransferLeaderError::LogNotFlushed {
                expected: Some(log_id(2, 1, 9)),
                actual: None,
            }),
        ];
        for answer in answers {
            assert_eq!(
                transfer_reply_from_proto(transfer_reply_to_proto(&answer)).unwrap(),
                answer
            );
        }
        let request =
            TransferLeaderRequest::new(Vote::new_committed(2, 1), 3, Some(log_id(2, 1, 9)));
        let decoded = transfer_request_from_proto(transfer_request_to_proto(5, &request)).unwrap();
        assert_eq!(decoded, request);
    }

    #[test]
    fn short_hash_is_a_length_error() {
        assert!(matches!(
            hash_from_bytes(&[0; 31], "hash"),
            Err(WireError::BadLength {
                expected: 32,
                got: 31,
                ..
            })
        ));
    }
}
