//! The encoding of the last applied membership (openraft's
//! `StoredMembership`: a membership and the log id of the entry that
//! introduced it), shared by the index's membership record and the snapshot
//! file header. It has no checksum of its own: both containers carry one.
//!
//! ```text
//! offset  size  field
//!      0     4  flags u32          bit 0: the log id is present; others zero
//!      4     4  json_len u32       n, bytes of the membership
//!      8     8  log_index u64      } the log id of the membership entry,
//!     16     8  log_term u64       } zero when absent
//!     24     8  log_node u64       }
//!     32     n  membership         openraft `Membership` as JSON (as the
//!                                  journal's entry codec stores it)
//! ```

use crate::le::{read_u32, read_u64};
use finkfs_raft::types::{LeaderId, LogId, Membership, StoredMembership};
use openraft::vote::RaftLeaderId;

const FLAGS_OFFSET: usize = 0;
const JSON_LEN_OFFSET: usize = FLAGS_OFFSET + 4;
const LOG_INDEX_OFFSET: usize = JSON_LEN_OFFSET + 4;
const LOG_TERM_OFFSET: usize = LOG_INDEX_OFFSET + 8;
const LOG_NODE_OFFSET: usize = LOG_TERM_OFFSET + 8;
const JSON_OFFSET: usize = LOG_NODE_OFFSET + 8;
/// Bytes before the membership JSON.
pub const MEMBERSHIP_HEADER_BYTES: usize = JSON_OFFSET;
/// The largest membership accepted on decode: far above any real cluster
/// (the peer protocol caps members at 1024), far below harm.
pub const MEMBERSHIP_BYTES_MAX: usize = 1 << 20;

const FLAG_HAS_LOG_ID: u32 = 1;

const _: () = assert!(MEMBERSHIP_HEADER_BYTES == 32);

/// Why bytes are not a stored membership.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipDecodeError {
    #[error("membership record of {len} bytes is shorter than its {MEMBERSHIP_HEADER_BYTES}-byte header")]
    TooShort { len: usize },
    #[error("membership record has unknown flags {flags:#x} at offset {FLAGS_OFFSET}")]
    UnknownFlags { flags: u32 },
    #[error("membership record says {json_len} bytes of membership at offset {JSON_LEN_OFFSET}, holds {held}")]
    Length { json_len: u64, held: u64 },
    #[error("membership record has a log id although its flag says none")]
    StrayLogId,
    #[error("membership at offset {MEMBERSHIP_HEADER_BYTES} does not decode: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
}

/// Encodes a stored membership.
pub fn encode_membership(stored: &StoredMembership) -> Vec<u8> {
    let json = serde_json::to_vec(stored.membership()).expect("a membership always serializes");
    assert!(json.len() <= MEMBERSHIP_BYTES_MAX, "membership too large");
    let (flags, log) = match stored.log_id() {
        Some(log_id) => (FLAG_HAS_LOG_ID, log_id_fields(log_id)),
        None => (0, (0, 0, 0)),
    };
    let mut bytes = Vec::with_capacity(MEMBERSHIP_HEADER_BYTES + json.len());
    bytes.extend_from_slice(&flags.to_le_bytes());
    bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&log.0.to_le_bytes());
    bytes.extend_from_slice(&log.1.to_le_bytes());
    bytes.extend_from_slice(&log.2.to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes
}

/// Decodes a stored membership, checking every field.
pub fn decode_membership(bytes: &[u8]) -> Result<StoredMembership, MembershipDecodeError> {
    if bytes.len() < MEMBERSHIP_HEADER_BYTES {
        return Err(MembershipDecodeError::TooShort { len: bytes.len() });
    }
    let flags = read_u32(bytes, FLAGS_OFFSET);
    if flags & !FLAG_HAS_LOG_ID != 0 {
        return Err(MembershipDecodeError::UnknownFlags { flags });
    }
    let json_len = read_u32(bytes, JSON_LEN_OFFSET) as usize;
    let held = bytes.len() - MEMBERSHIP_HEADER_BYTES;
    if json_len != held || json_len > MEMBERSHIP_BYTES_MAX {
        return Err(MembershipDecodeError::Length {
            json_len: json_len as u64,
            held: held as u64,
        });
    }
    let index = read_u64(bytes, LOG_INDEX_OFFSET);
    let term = read_u64(bytes, LOG_TERM_OFFSET);
    let node = read_u64(bytes, LOG_NODE_OFFSET);
    let log_id = if flags & FLAG_HAS_LOG_ID != 0 {
        Some(make_log_id(index, term, node))
    } else if (index, term, node) != (0, 0, 0) {
        return Err(MembershipDecodeError::StrayLogId);
    } else {
        None
    };
    let membership: Membership = serde_json::from_slice(&bytes[JSON_OFFSET..])
        .map_err(|source| MembershipDecodeError::Json { source })?;
    Ok(StoredMembership::new(log_id, membership))
}

/// The (index, term, leader node) of a log id.
pub fn log_id_fields(log_id: &LogId) -> (u64, u64, u64) {
    (
        log_id.index,
        log_id.leader_id.term,
        log_id.leader_id.node_id,
    )
}

/// The log id with these fields.
pub fn make_log_id(index: u64, term: u64, node: u64) -> LogId {
    LogId::new(LeaderId::new(term, node), index)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use finkfs_raft::types::Node;

    use super::*;

    fn sample() -> StoredMembership {
        let voters = BTreeSet::from([1u64, 2, 3]);
        let nodes = BTreeMap::from([
            (1u64, Node::new("10.0.0.1:7001")),
            (2, Node::new("10.0.0.2:7001")),
            (3, Node::new("10.0.0.3:7001")),
            (4, Node::new("10.0.0.4:7001")),
        ]);
        let membership = Membership::new(vec![voters], nodes).expect("valid membership");
        StoredMembership::new(Some(make_log_id(17, 3, 2)), membership)
    }

    #[test]
    fn stored_membership_round_trips_with_and_without_log_id() {
        let stored = sample();
        assert_eq!(
            decode_membership(&encode_membership(&stored)).unwrap(),
            stored
        );
        let empty = StoredMembership::default();
        assert_eq!(
            decode_membership(&encode_membership(&empty)).unwrap(),
            empty
        );
    }

    #[test]
    fn truncated_or_padded_membership_is_refused() {
        let bytes = encode_membership(&sample());
        for len in 0..bytes.len() {
            assert!(decode_membership(&bytes[..len]).is_err(), "len {len}");
        }
        let mut longer = bytes.clone();
        longer.push(b' ');
        assert!(decode_membership(&longer).is_err());
    }

    #[test]
    fn unknown_flags_and_stray_log_ids_are_refused() {
        let mut bytes = encode_membership(&StoredMembership::default());
        bytes[LOG_TERM_OFFSET] = 1;
        assert!(matches!(
            decode_membership(&bytes),
            Err(MembershipDecodeError::StrayLogId)
        ));
        let mut bytes = encode_membership(&sample());
        bytes[FLAGS_OFFSET] = 0x3;
        assert!(matches!(
            decode_membership(&bytes),
            Err(MembershipDecodeError::UnknownFlags { .. })
        ));
    }
}
