//! The payload of a journal record that holds one Raft log entry.
//!
//! The journal record header already carries the entry's index and term and a
//! BLAKE3 checksum over header and payload, verified before this decode runs;
//! the payload adds what else is needed to rebuild the entry.
//!
//! ```text
//! offset  size  field
//! 0       1     version            = 1
//! 1       1     kind               0 blank, 1 normal, 2 membership
//! 2       8     leader node id     u64 LE (the node id of the log id's leader id)
//! 10      ..    body               blank: empty
//!                                  normal: the command bytes, raw, to the end
//!                                  membership: the membership as JSON, to the end
//! ```
//!
//! The command bytes are stored as they are, with no framing: a multi-megabyte
//! alert file crosses this codec as one copy into the record buffer on write
//! and no copy on read (the decoded command shares the record's buffer).
//! Membership changes are rare and small, so JSON keeps them readable.
//! Described byte by byte in `docs/format/entry.md`.

use bytes::Bytes;
use openraft::vote::RaftLeaderId;

use crate::types::{AppCommand, Entry, EntryPayload, LeaderId, LogId, Membership, NodeId};

/// The payload version this code writes and reads.
pub const ENTRY_VERSION: u8 = 1;

const VERSION_OFFSET: usize = 0;
const KIND_OFFSET: usize = VERSION_OFFSET + 1;
const LEADER_NODE_OFFSET: usize = KIND_OFFSET + 1;
/// Bytes before the body.
pub const ENTRY_HEADER_BYTES: usize = LEADER_NODE_OFFSET + 8;
const _: () = assert!(ENTRY_HEADER_BYTES == 10);

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// Why an entry could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryEncodeError {
    /// The membership could not be serialized.
    #[error("membership of entry {index} cannot be encoded: {source}")]
    Membership {
        /// Index of the entry.
        index: u64,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
}

/// Why a record payload is not a valid entry. Offsets are within the payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryDecodeError {
    /// The payload is shorter than the fixed header.
    #[error("entry payload is {len} bytes, shorter than its {ENTRY_HEADER_BYTES}-byte header")]
    TooShort {
        /// Length of the payload.
        len: u64,
    },
    /// The version byte (offset 0) is not one this code reads.
    #[error(
        "entry payload version {version} at offset 0 is not supported (expected {ENTRY_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// The kind byte (offset 1) is unknown.
    #[error("entry kind {kind} at offset 1 is unknown")]
    UnknownKind {
        /// The kind found.
        kind: u8,
    },
    /// A blank entry has bytes after its header.
    #[error(
        "blank entry has {body_bytes} body bytes at offset {ENTRY_HEADER_BYTES}, expected none"
    )]
    BlankWithBody {
        /// Number of unexpected bytes.
        body_bytes: u64,
    },
    /// The membership body (offset 10) is not valid JSON for a membership.
    #[error("membership body at offset {ENTRY_HEADER_BYTES} does not decode: {source}")]
    Membership {
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
}

/// Encodes `entry` into `buf` (cleared first), the payload of its journal
/// record. `buf` is reused across calls so appends do not allocate.
pub fn encode_entry_into(entry: &Entry, buf: &mut Vec<u8>) -> Result<(), EntryEncodeError> {
    buf.clear();
    let (kind, body_bytes) = match &entry.payload {
        EntryPayload::Blank => (KIND_BLANK, 0),
        EntryPayload::Normal(command) => (KIND_NORMAL, command.0.len()),
        EntryPayload::Membership(_) => (KIND_MEMBERSHIP, 0),
    };
    buf.reserve(ENTRY_HEADER_BYTES + body_bytes);
    buf.push(ENTRY_VERSION);
    buf.push(kind);
    buf.extend_from_slice(&entry.log_id.leader_id.node_id().to_le_bytes());
    assert!(buf.len() == ENTRY_HEADER_BYTES);
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(command) => buf.extend_from_slice(&command.0),
        EntryPayload::Membership(membership) => {
            serde_json::to_writer(&mut *buf, membership).map_err(|source| {
                EntryEncodeError::Membership {
                    index: entry.log_id.index,
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// Rebuilds the entry at `index`, written in `term`, from its record payload.
/// Checks every field; never panics on garbage.
pub fn decode_entry(index: u64, term: u64, payload: Bytes) -> Result<Entry, EntryDecodeError> {
    if payload.len() < ENTRY_HEADER_BYTES {
        return Err(EntryDecodeError::TooShort {
            len: payload.len() as u64,
        });
    }
    let version = payload[VERSION_OFFSET];
    if version != ENTRY_VERSION {
        return Err(EntryDecodeError::UnsupportedVersion { version });
    }
    let kind = payload[KIND_OFFSET];
    let leader_node = read_u64(&payload, LEADER_NODE_OFFSET);
    let body = payload.slice(ENTRY_HEADER_BYTES..);
    let payload = decode_body(kind, body)?;
    let log_id = LogId::new(LeaderId::new(term, leader_node), index);
    Ok(Entry { log_id, payload })
}

fn decode_body(kind: u8, body: Bytes) -> Result<EntryPayload, EntryDecodeError> {
    match kind {
        KIND_BLANK if body.is_empty() => Ok(EntryPayload::Blank),
        KIND_BLANK => Err(EntryDecodeError::BlankWithBody {
            body_bytes: body.len() as u64,
        }),
        KIND_NORMAL => Ok(EntryPayload::Normal(AppCommand(body))),
        KIND_MEMBERSHIP => serde_json::from_slice::<Membership>(&body)
            .map(EntryPayload::Membership)
            .map_err(|source| EntryDecodeError::Membership { source }),
        kind => Err(EntryDecodeError::UnknownKind { kind }),
    }
}

fn read_u64(bytes: &[u8], offset: usize) -> NodeId {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::types::Node;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(LeaderId::new(term, node), index)
    }

    fn round_trip(entry: &Entry) -> Entry {
        let mut buf = Vec::new();
        encode_entry_into(entry, &mut buf).unwrap();
        decode_entry(
            entry.log_id.index,
            entry.log_id.leader_id.term,
            Bytes::from(buf),
        )
        .unwrap()
    }

    #[test]
    fn every_kind_round_trips() {
        let voters = BTreeSet::from([1u64, 2, 3]);
        let nodes: BTreeMap<u64, Node> = voters
            .iter()
            .map(|id| {
                (
                    *id,
                    Node {
                        addr: format!("10.0.0.{id}:7000"),
                    },
                )
            })
            .collect();
        let entries = [
            Entry {
                log_id: log_id(3, 2, 17),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(u64::MAX, u64::MAX, u64::MAX),
                payload: EntryPayload::Normal(AppCommand(Bytes::from_static(b"put alert"))),
            },
            Entry {
                log_id: log_id(1, 0, 0),
                payload: EntryPayload::Normal(AppCommand(Bytes::new())),
            },
            Entry {
                log_id: log_id(5, 1, 9),
                payload: EntryPayload::Membership(Membership::new(vec![voters], nodes).unwrap()),
            },
        ];
        for entry in &entries {
            assert_eq!(&round_trip(entry), entry);
        }
    }

    #[test]
    fn header_layout_is_as_documented() {
        let entry = Entry {
            log_id: log_id(3, 0x0102_0304_0506_0708, 17),
            payload: EntryPayload::Normal(AppCommand(Bytes::from_static(b"xyz"))),
        };
        let mut buf = Vec::new();
        encode_entry_into(&entry, &mut buf).unwrap();
        assert_eq!(buf, [1, 1, 8, 7, 6, 5, 4, 3, 2, 1, b'x', b'y', b'z']);
    }

    #[test]
    fn decoded_command_shares_the_record_buffer() {
        let entry = Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Normal(AppCommand(Bytes::from(vec![7u8; 4096]))),
        };
        let mut buf = Vec::new();
        encode_entry_into(&entry, &mut buf).unwrap();
        let record = Bytes::from(buf);
        let body_start = record.as_ptr() as usize + ENTRY_HEADER_BYTES;
        let decoded = decode_entry(1, 1, record).unwrap();
        let EntryPayload::Normal(command) = decoded.payload else {
            panic!("expected a normal entry");
        };
        assert_eq!(command.0.as_ptr() as usize, body_start);
    }

    /// The membership body is openraft's serde shape: pin it, so an openraft
    /// upgrade that changes it cannot silently orphan existing journals.
    #[test]
    fn membership_json_is_stable() {
        let body = br#"{"configs":[[1,2]],"nodes":{"1":{"addr":"a:1"},"2":{"addr":"b:2"}}}"#;
        let mut payload = vec![1, 2, 5, 0, 0, 0, 0, 0, 0, 0];
        payload.extend_from_slice(body);
        let decoded = decode_entry(4, 3, Bytes::from(payload.clone())).unwrap();
        let nodes = BTreeMap::from([
            (1, Node { addr: "a:1".into() }),
            (2, Node { addr: "b:2".into() }),
        ]);
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], nodes).unwrap();
        let expected = Entry {
            log_id: log_id(3, 5, 4),
            payload: EntryPayload::Membership(membership),
        };
        assert_eq!(decoded, expected);
        let mut encoded = Vec::new();
        encode_entry_into(&expected, &mut encoded).unwrap();
        assert_eq!(encoded, payload);
    }

    proptest! {
        #[test]
        fn random_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_entry(1, 1, Bytes::from(bytes));
        }

        #[test]
        fn normal_entries_round_trip(
            term in any::<u64>(),
            node in any::<u64>(),
            index in any::<u64>(),
            command in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let entry = Entry {
                log_id: log_id(term, node, index),
                payload: EntryPayload::Normal(AppCommand(Bytes::from(command))),
            };
            prop_assert_eq!(round_trip(&entry), entry);
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let decode = |bytes: &[u8]| decode_entry(1, 1, Bytes::copy_from_slice(bytes));
        assert!(matches!(
            decode(&[]),
            Err(EntryDecodeError::TooShort { len: 0 })
        ));
        assert!(matches!(
            decode(&[1; 9]),
            Err(EntryDecodeError::TooShort { len: 9 })
        ));
        assert!(matches!(
            decode(&[0; 10]),
            Err(EntryDecodeError::UnsupportedVersion { version: 0 })
        ));
        assert!(matches!(
            decode(&[1, 9, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(EntryDecodeError::UnknownKind { kind: 9 })
        ));
        assert!(matches!(
            decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 42]),
            Err(EntryDecodeError::BlankWithBody { body_bytes: 1 })
        ));
        assert!(matches!(
            decode(&[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, b'{']),
            Err(EntryDecodeError::Membership { .. })
        ));
    }
}
