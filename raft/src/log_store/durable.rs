//! The log store's durable state: the vote, the committed log id and the
//! last purged log id, kept as the payload of the group's `MetaStore` (two
//! checksummed copies, verified before this decode runs).
//!
//! ```text
//! offset  size  field
//! 0       4     magic              "FKLS"
//! 4       4     version            u32 LE = 3 (2 is still read: 88 bytes, no
//!                                  tail floor; 1 too: 80 bytes, no floor at all)
//! 8       4     flags              u32 LE: bit 0 vote present, bit 1 vote committed,
//!                                  bit 2 committed present, bit 3 purged present,
//!                                  bit 4 vouch floor present (version >= 2),
//!                                  bit 5 tail floor present (version 3);
//!                                  other bits zero
//! 12      4     reserved           zero
//! 16      8     vote term          u64 LE  } zero when the vote is absent
//! 24      8     vote node id       u64 LE  }
//! 32      8     committed term     u64 LE  }
//! 40      8     committed node id  u64 LE  } zero when committed is absent
//! 48      8     committed index    u64 LE  }
//! 56      8     purged term        u64 LE  }
//! 64      8     purged node id     u64 LE  } zero when purged is absent
//! 72      8     purged index       u64 LE  }
//! 80      8     vouch floor        u64 LE, zero when absent (version >= 2)
//! 88      8     tail floor         u64 LE, zero when absent (version 3)
//! 96            end (88 in version 2, 80 in version 1)
//! ```
//!
//! The vouch floor is set by `finkfs fsck --repair` when it cut damaged
//! entries out of the journal: the last log index the node held before.
//! Until its log again reaches it, the node may lack entries it had
//! acknowledged, so it must not vote, except for a candidate at least as up
//! to date as the log it held (see `vote_gate`).
//!
//! The tail floor is saved before a torn tail is cut: the highest index the
//! cut bytes could have held. Damage at rest to the last synced records
//! looks like a torn write, so those records may have been acknowledged.
//! It blocks the vote like the vouch floor, but also lifts when every other
//! voter has said how far its log reaches (see `vote_gate`).
//!
//! A log id is stored as (term, node id, index): its leader id is
//! `leader_id_adv` (term and node id). Described in `docs/format/entry.md`.

use openraft::vote::{RaftLeaderId, RaftVote};

use crate::types::{LeaderId, LogId, Vote};

/// Identifies this payload among the structures a meta store can hold.
pub const STATE_MAGIC: [u8; 4] = *b"FKLS";
/// The state version this code writes (and reads, with versions 1 and 2).
pub const STATE_VERSION: u32 = 3;
/// The second version: no tail floor, [`STATE_BYTES_V2`] long.
pub const STATE_VERSION_V2: u32 = 2;
/// The first version: no floor at all, [`STATE_BYTES_V1`] long.
pub const STATE_VERSION_V1: u32 = 1;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 4;
const FLAGS_OFFSET: usize = VERSION_OFFSET + 4;
const RESERVED_OFFSET: usize = FLAGS_OFFSET + 4;
const VOTE_OFFSET: usize = RESERVED_OFFSET + 4;
const COMMITTED_OFFSET: usize = VOTE_OFFSET + 16;
const PURGED_OFFSET: usize = COMMITTED_OFFSET + 24;
const FLOOR_OFFSET: usize = PURGED_OFFSET + 24;
const TAIL_FLOOR_OFFSET: usize = FLOOR_OFFSET + 8;
/// Length of a version 1 state.
pub const STATE_BYTES_V1: usize = FLOOR_OFFSET;
/// Length of a version 2 state.
pub const STATE_BYTES_V2: usize = TAIL_FLOOR_OFFSET;
/// Length of an encoded state.
pub const STATE_BYTES: usize = TAIL_FLOOR_OFFSET + 8;
const _: () = assert!(STATE_BYTES_V1 == 80 && STATE_BYTES_V2 == 88 && STATE_BYTES == 96);

const FLAG_VOTE: u32 = 1 << 0;
const FLAG_VOTE_COMMITTED: u32 = 1 << 1;
const FLAG_COMMITTED: u32 = 1 << 2;
const FLAG_PURGED: u32 = 1 << 3;
const FLAG_FLOOR: u32 = 1 << 4;
const FLAG_TAIL_FLOOR: u32 = 1 << 5;
const FLAGS_V1: u32 = FLAG_VOTE | FLAG_VOTE_COMMITTED | FLAG_COMMITTED | FLAG_PURGED;
const FLAGS_V2: u32 = FLAGS_V1 | FLAG_FLOOR;
const FLAGS_KNOWN: u32 = FLAGS_V2 | FLAG_TAIL_FLOOR;

/// What the log store keeps outside the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableState {
    /// The last vote saved.
    pub vote: Option<Vote>,
    /// The last committed log id saved (a lower bound of the true one).
    pub committed: Option<LogId>,
    /// Entries up to and including this log id were purged.
    pub purged: Option<LogId>,
    /// Set by a repair that cut damaged entries: the node must not vote
    /// while its log ends below this index.
    pub vouch_floor: Option<u64>,
    /// Saved before a torn tail was cut: the highest index the cut bytes
    /// could have held. The node must not vote while its log ends below it,
    /// unless every other voter says its log ends lower.
    pub tail_floor: Option<u64>,
}

/// Why a state payload does not decode. `offset` is within the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log store state at offset {offset}: {reason}")]
pub struct StateDecodeError {
    /// Where the offending field starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl DurableState {
    /// The fixed-size encoding described in the module docs.
    pub fn encode(&self) -> [u8; STATE_BYTES] {
        let mut out = [0u8; STATE_BYTES];
        let mut flags = 0u32;
        if let Some(vote) = &self.vote {
            flags |= FLAG_VOTE;
            if vote.is_committed() {
                flags |= FLAG_VOTE_COMMITTED;
            }
            let leader = vote.leader_id();
            put_u64(&mut out, VOTE_OFFSET, leader.term());
            put_u64(&mut out, VOTE_OFFSET + 8, *leader.node_id());
        }
        if let Some(committed) = &self.committed {
            flags |= FLAG_COMMITTED;
            put_log_id(&mut out, COMMITTED_OFFSET, committed);
        }
        if let Some(purged) = &self.purged {
            flags |= FLAG_PURGED;
            put_log_id(&mut out, PURGED_OFFSET, purged);
        }
        if let Some(floor) = self.vouch_floor {
            flags |= FLAG_FLOOR;
            put_u64(&mut out, FLOOR_OFFSET, floor);
        }
        if let Some(floor) = self.tail_floor {
            flags |= FLAG_TAIL_FLOOR;
            put_u64(&mut out, TAIL_FLOOR_OFFSET, floor);
        }
        out[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(&STATE_MAGIC);
        out[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&STATE_VERSION.to_le_bytes());
        out[FLAGS_OFFSET..FLAGS_OFFSET + 4].copy_from_slice(&flags.to_le_bytes());
        out
    }

    /// Decodes and checks every field; never panics on garbage.
    pub fn decode(bytes: &[u8]) -> Result<DurableState, StateDecodeError> {
        if ![STATE_BYTES, STATE_BYTES_V2, STATE_BYTES_V1].contains(&bytes.len()) {
            let reason = format!(
                "{} bytes, expected {STATE_BYTES} (or {STATE_BYTES_V2}, {STATE_BYTES_V1})",
                bytes.len()
            );
            return Err(problem(0, reason));
        }
        if bytes[MAGIC_OFFSET..MAGIC_OFFSET + 4] != STATE_MAGIC {
            return Err(problem(
                MAGIC_OFFSET,
                "bad magic, not a log store state".into(),
            ));
        }
        let version = get_u32(bytes, VERSION_OFFSET);
        let (expected_len, known) = match version {
            STATE_VERSION => (STATE_BYTES, FLAGS_KNOWN),
            STATE_VERSION_V2 => (STATE_BYTES_V2, FLAGS_V2),
            STATE_VERSION_V1 => (STATE_BYTES_V1, FLAGS_V1),
            _ => {
                let reason = format!(
                    "version {version} is not supported (expected {STATE_VERSION}, {STATE_VERSION_V2} or {STATE_VERSION_V1})"
                );
                return Err(problem(VERSION_OFFSET, reason));
            }
        };
        if bytes.len() != expected_len {
            let reason = format!("{} bytes, version {version} is {expected_len}", bytes.len());
            return Err(problem(0, reason));
        }
        let flags = get_u32(bytes, FLAGS_OFFSET);
        if flags & !known != 0 {
            return Err(problem(FLAGS_OFFSET, format!("unknown flags {flags:#x}")));
        }
        if flags & FLAG_VOTE_COMMITTED != 0 && flags & FLAG_VOTE == 0 {
            return Err(problem(
                FLAGS_OFFSET,
                "vote committed without a vote".into(),
            ));
        }
        if get_u32(bytes, RESERVED_OFFSET) != 0 {
            return Err(problem(
                RESERVED_OFFSET,
                "reserved field is not zero".into(),
            ));
        }
        let vote = decode_vote(bytes, flags)?;
        let committed = decode_log_id(bytes, COMMITTED_OFFSET, flags & FLAG_COMMITTED != 0)?;
        let purged = decode_log_id(bytes, PURGED_OFFSET, flags & FLAG_PURGED != 0)?;
        let vouch_floor = decode_u64(bytes, FLOOR_OFFSET, flags & FLAG_FLOOR != 0)?;
        let tail_floor = decode_u64(bytes, TAIL_FLOOR_OFFSET, flags & FLAG_TAIL_FLOOR != 0)?;
        Ok(DurableState {
            vote,
            committed,
            purged,
            vouch_floor,
            tail_floor,
        })
    }
}

fn decode_vote(bytes: &[u8], flags: u32) -> Result<Option<Vote>, StateDecodeError> {
    let term = get_u64(bytes, VOTE_OFFSET);
    let node = get_u64(bytes, VOTE_OFFSET + 8);
    if flags & FLAG_VOTE == 0 {
        return absent(bytes, VOTE_OFFSET, 16).map(|()| None);
    }
    let committed = flags & FLAG_VOTE_COMMITTED != 0;
    Ok(Some(Vote::from_leader_id(
        LeaderId::new(term, node),
        committed,
    )))
}

/// An optional u64 field; absent from shorter, older versions (whose known
/// flags already refused a set flag for it).
fn decode_u64(bytes: &[u8], offset: usize, present: bool) -> Result<Option<u64>, StateDecodeError> {
    if bytes.len() < offset + 8 {
        return Ok(None);
    }
    if !present {
        return absent(bytes, offset, 8).map(|()| None);
    }
    Ok(Some(get_u64(bytes, offset)))
}

fn decode_log_id(
    bytes: &[u8],
    offset: usize,
    present: bool,
) -> Result<Option<LogId>, StateDecodeError> {
    if !present {
        return absent(bytes, offset, 24).map(|()| None);
    }
    let term = get_u64(bytes, offset);
    let node = get_u64(bytes, offset + 8);
    let index = get_u64(bytes, offset + 16);
    Ok(Some(LogId::new(LeaderId::new(term, node), index)))
}

/// An absent field must be all zeros: anything else was not written by us.
fn absent(bytes: &[u8], offset: usize, len: usize) -> Result<(), StateDecodeError> {
    if bytes[offset..offset + len].iter().any(|b| *b != 0) {
        return Err(problem(offset, "absent field is not zero".into()));
    }
    Ok(())
}

fn problem(offset: usize, reason: String) -> StateDecodeError {
    StateDecodeError {
        offset: offset as u64,
        reason,
    }
}

fn put_log_id(out: &mut [u8], offset: usize, log_id: &LogId) {
    put_u64(out, offset, log_id.leader_id.term());
    put_u64(out, offset + 8, *log_id.leader_id.node_id());
    put_u64(out, offset + 16, log_id.index);
}

fn put_u64(out: &mut [u8], offset: usize, value: u64) {
    out[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn get_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

fn get_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(LeaderId::new(term, node), index)
    }

    #[test]
    fn empty_and_full_states_round_trip() {
        let empty = DurableState::default();
        assert_eq!(DurableState::decode(&empty.encode()).unwrap(), empty);
        let full = DurableState {
            vote: Some(Vote::from_leader_id(LeaderId::new(9, 2), true)),
            committed: Some(log_id(8, 1, 1000)),
            purged: Some(log_id(7, 3, 500)),
            vouch_floor: Some(1200),
            tail_floor: Some(1300),
        };
        assert_eq!(DurableState::decode(&full.encode()).unwrap(), full);
    }

    #[test]
    fn version_2_state_still_reads_without_a_tail_floor() {
        let state = DurableState {
            vote: Some(Vote::from_leader_id(LeaderId::new(3, 1), true)),
            committed: Some(log_id(3, 1, 40)),
            purged: None,
            vouch_floor: Some(41),
            tail_floor: None,
        };
        let mut v2 = state.encode()[..STATE_BYTES_V2].to_vec();
        v2[4..8].copy_from_slice(&STATE_VERSION_V2.to_le_bytes());
        assert_eq!(DurableState::decode(&v2).unwrap(), state);
        let mut with_tail_flag = v2.clone();
        with_tail_flag[8] |= FLAG_TAIL_FLOOR as u8;
        assert_eq!(DurableState::decode(&with_tail_flag).unwrap_err().offset, 8);
    }

    #[test]
    fn version_1_state_still_reads_without_a_floor() {
        let state = DurableState {
            vote: Some(Vote::from_leader_id(LeaderId::new(3, 1), true)),
            committed: Some(log_id(3, 1, 40)),
            purged: None,
            vouch_floor: None,
            tail_floor: None,
        };
        let mut v1 = state.encode()[..STATE_BYTES_V1].to_vec();
        v1[4..8].copy_from_slice(&STATE_VERSION_V1.to_le_bytes());
        assert_eq!(DurableState::decode(&v1).unwrap(), state);
        let mut with_floor_flag = v1.clone();
        with_floor_flag[8] |= FLAG_FLOOR as u8;
        assert_eq!(
            DurableState::decode(&with_floor_flag).unwrap_err().offset,
            8
        );
    }

    #[test]
    fn layout_is_as_documented() {
        let state = DurableState {
            vote: Some(Vote::from_leader_id(LeaderId::new(5, 6), false)),
            committed: None,
            purged: Some(log_id(1, 2, 3)),
            vouch_floor: Some(77),
            tail_floor: Some(78),
        };
        let bytes = state.encode();
        assert_eq!(&bytes[0..4], b"FKLS");
        assert_eq!(bytes[4..8], 3u32.to_le_bytes());
        assert_eq!(
            bytes[8..12],
            (FLAG_VOTE | FLAG_PURGED | FLAG_FLOOR | FLAG_TAIL_FLOOR).to_le_bytes()
        );
        assert_eq!(bytes[80..88], 77u64.to_le_bytes());
        assert_eq!(bytes[88..96], 78u64.to_le_bytes());
        assert_eq!(bytes[16..24], 5u64.to_le_bytes());
        assert_eq!(bytes[24..32], 6u64.to_le_bytes());
        assert!(bytes[32..56].iter().all(|b| *b == 0));
        assert_eq!(bytes[72..80], 3u64.to_le_bytes());
    }

    #[test]
    fn bad_fields_name_their_offset() {
        let good = DurableState::default().encode();
        let offset_of = |bytes: &[u8]| DurableState::decode(bytes).unwrap_err().offset;
        assert_eq!(offset_of(&good[..79]), 0);
        assert_eq!(offset_of(&good[..80]), 0);
        assert_eq!(offset_of(&good[..88]), 0);
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(offset_of(&bad), 0);
        let mut bad = good;
        bad[4] = 4;
        assert_eq!(offset_of(&bad), 4);
        let mut bad = good;
        bad[8] = 0x40;
        assert_eq!(offset_of(&bad), 8);
        let mut bad = good;
        bad[8] = FLAG_VOTE_COMMITTED as u8;
        assert_eq!(offset_of(&bad), 8);
        let mut bad = good;
        bad[13] = 1;
        assert_eq!(offset_of(&bad), 12);
        let mut bad = good;
        bad[50] = 1;
        assert_eq!(offset_of(&bad), 32);
        let mut bad = good;
        bad[85] = 1;
        assert_eq!(offset_of(&bad), 80);
        let mut bad = good;
        bad[93] = 1;
        assert_eq!(offset_of(&bad), 88);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = DurableState::decode(&bytes);
        }

        #[test]
        fn any_state_round_trips(
            vote in proptest::option::of((any::<u64>(), any::<u64>(), any::<bool>())),
            committed in proptest::option::of((any::<u64>(), any::<u64>(), any::<u64>())),
            purged in proptest::option::of((any::<u64>(), any::<u64>(), any::<u64>())),
            vouch_floor in proptest::option::of(any::<u64>()),
            tail_floor in proptest::option::of(any::<u64>()),
        ) {
            let state = DurableState {
                vote: vote.map(|(t, n, c)| Vote::from_leader_id(LeaderId::new(t, n), c)),
                committed: committed.map(|(t, n, i)| log_id(t, n, i)),
                purged: purged.map(|(t, n, i)| log_id(t, n, i)),
                vouch_floor,
                tail_floor,
            };
            prop_assert_eq!(DurableState::decode(&state.encode()).unwrap(), state);
        }
    }
}
