//! The snapshot file layout.
//!
//! ```text
//! header
//! offset  size  field
//!      0     8  magic             b"FINKSNAP"
//!      8     4  version u32       SNAPSHOT_VERSION (1)
//!     12     4  flags u32         bit 0: the last log id is present; others zero
//!     16     8  last_index u64    } the last log id the snapshot covers,
//!     24     8  last_term u64     } zero when absent
//!     32     8  last_node u64     }
//!     40     4  membership_len    u32, m
//!     44     4  reserved u32      zero
//!     48     m  membership        the last applied membership (membership.rs)
//!   48+m    32  header_check      BLAKE3(bytes 0..48+m)
//!
//! records, one after another, each starting with a tag u32
//!   1 object       path_len u32, manifest_len u32, path (UTF-8),
//!                  manifest (the manifest encoding, self-checksummed);
//!                  objects in strictly increasing path order (bytewise)
//!   2 unreferenced len u32, hash [32]: a block the index holds that no
//!                  object refers to; strictly increasing hash order, after
//!                  every object
//!   3 end          objects u64, unreferenced u64: the record counts
//!
//! trailer
//!      32  file_check  BLAKE3 of every byte before it
//! ```
//!
//! Integers are little-endian. Blocks are not in the file: objects refer to
//! them by hash (in their manifests), and a node installing the snapshot
//! fetches the ones it lacks from its peers. The header has its own check so
//! that a node can learn what a snapshot covers without reading it whole;
//! the records are trusted only once the file check verifies.

use finkfs_raft::types::{LogId, StoredMembership};

pub(crate) use crate::le::{read_u32, read_u64};
use crate::membership::{
    decode_membership, encode_membership, log_id_fields, make_log_id, MEMBERSHIP_BYTES_MAX,
};

/// Version of the snapshot file format.
pub const SNAPSHOT_VERSION: u32 = 1;
pub(crate) const MAGIC: [u8; 8] = *b"FINKSNAP";

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const FLAGS_OFFSET: usize = VERSION_OFFSET + 4;
const LAST_INDEX_OFFSET: usize = FLAGS_OFFSET + 4;
const LAST_TERM_OFFSET: usize = LAST_INDEX_OFFSET + 8;
const LAST_NODE_OFFSET: usize = LAST_TERM_OFFSET + 8;
const MEMBERSHIP_LEN_OFFSET: usize = LAST_NODE_OFFSET + 8;
const RESERVED_OFFSET: usize = MEMBERSHIP_LEN_OFFSET + 4;
/// Bytes of the header before the membership.
pub(crate) const HEADER_FIXED_BYTES: usize = RESERVED_OFFSET + 4;
pub(crate) const CHECK_BYTES: usize = 32;

const _: () = assert!(HEADER_FIXED_BYTES == 48);

const FLAG_HAS_LAST_LOG_ID: u32 = 1;

pub(crate) const TAG_OBJECT: u32 = 1;
pub(crate) const TAG_UNREFERENCED: u32 = 2;
pub(crate) const TAG_END: u32 = 3;

/// Bytes of an unreferenced-block record after its tag.
pub(crate) const UNREFERENCED_BODY_BYTES: usize = 4 + 32;
/// Bytes of the end record after its tag.
pub(crate) const END_BODY_BYTES: usize = 16;
/// The largest manifest a snapshot record may hold: an object of
/// `OBJECT_BYTES_MAX` in blocks of one byte would be larger, but no
/// replica ever writes such a manifest; this bounds what garbage can make a
/// reader allocate.
pub(crate) const MANIFEST_BYTES_MAX: usize = 64 << 20;

/// What a snapshot covers: the header's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub last_log_id: Option<LogId>,
    pub membership: StoredMembership,
}

/// Encodes the header, its check included.
pub(crate) fn encode_header(header: &SnapshotHeader) -> Vec<u8> {
    let membership = encode_membership(&header.membership);
    let (flags, (index, term, node)) = match &header.last_log_id {
        Some(log_id) => (FLAG_HAS_LAST_LOG_ID, log_id_fields(log_id)),
        None => (0, (0, 0, 0)),
    };
    let mut bytes = Vec::with_capacity(HEADER_FIXED_BYTES + membership.len() + CHECK_BYTES);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&flags.to_le_bytes());
    bytes.extend_from_slice(&index.to_le_bytes());
    bytes.extend_from_slice(&term.to_le_bytes());
    bytes.extend_from_slice(&node.to_le_bytes());
    bytes.extend_from_slice(&(membership.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(bytes.len(), HEADER_FIXED_BYTES);
    bytes.extend_from_slice(&membership);
    let check = blake3::hash(&bytes);
    bytes.extend_from_slice(check.as_bytes());
    debug_assert_eq!(
        decode_header(&bytes[..HEADER_FIXED_BYTES], &bytes[HEADER_FIXED_BYTES..]).as_ref(),
        Ok(header)
    );
    bytes
}

/// The membership length a fixed header announces, bounded, so the reader
/// knows how much more to read before it can check the header.
pub(crate) fn membership_len(fixed: &[u8]) -> Result<usize, String> {
    assert_eq!(fixed.len(), HEADER_FIXED_BYTES);
    if fixed[MAGIC_OFFSET..VERSION_OFFSET] != MAGIC {
        return Err("not a snapshot file (bad magic)".to_string());
    }
    let len = read_u32(fixed, MEMBERSHIP_LEN_OFFSET) as usize;
    if len > MEMBERSHIP_BYTES_MAX {
        return Err(format!("membership of {len} bytes exceeds the maximum"));
    }
    Ok(len)
}

/// Decodes a header from its fixed part and the rest (membership and
/// check), verifying the check before trusting any field.
pub(crate) fn decode_header(fixed: &[u8], rest: &[u8]) -> Result<SnapshotHeader, String> {
    let len = membership_len(fixed)?;
    if rest.len() != len + CHECK_BYTES {
        return Err(format!(
            "header holds {} bytes after its fixed part, expected {}",
            rest.len(),
            len + CHECK_BYTES
        ));
    }
    let (membership, check) = rest.split_at(len);
    let mut hasher = blake3::Hasher::new();
    hasher.update(fixed);
    hasher.update(membership);
    if hasher.finalize().as_bytes()[..] != check[..] {
        return Err("header check mismatch".to_string());
    }
    let version = read_u32(fixed, VERSION_OFFSET);
    if version != SNAPSHOT_VERSION {
        return Err(format!(
            "unsupported snapshot version {version} (this build reads {SNAPSHOT_VERSION})"
        ));
    }
    let flags = read_u32(fixed, FLAGS_OFFSET);
    if flags & !FLAG_HAS_LAST_LOG_ID != 0 || read_u32(fixed, RESERVED_OFFSET) != 0 {
        return Err(format!("unknown header flags {flags:#x} or reserved bits"));
    }
    let (index, term, node) = (
        read_u64(fixed, LAST_INDEX_OFFSET),
        read_u64(fixed, LAST_TERM_OFFSET),
        read_u64(fixed, LAST_NODE_OFFSET),
    );
    let last_log_id = if flags & FLAG_HAS_LAST_LOG_ID != 0 {
        Some(make_log_id(index, term, node))
    } else if (index, term, node) != (0, 0, 0) {
        return Err("a last log id is stored although the flags say none".to_string());
    } else {
        None
    };
    let membership = decode_membership(membership).map_err(|e| e.to_string())?;
    Ok(SnapshotHeader {
        last_log_id,
        membership,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotHeader {
        let membership = finkfs_raft::types::Membership::new_with_defaults(
            vec![std::collections::BTreeSet::from([1u64, 2])],
            [],
        );
        SnapshotHeader {
            last_log_id: Some(make_log_id(40, 3, 1)),
            membership: StoredMembership::new(Some(make_log_id(2, 1, 1)), membership),
        }
    }

    fn split(bytes: &[u8]) -> (&[u8], &[u8]) {
        bytes.split_at(HEADER_FIXED_BYTES)
    }

    #[test]
    fn header_round_trips() {
        for header in [
            sample(),
            SnapshotHeader {
                last_log_id: None,
                membership: StoredMembership::default(),
            },
        ] {
            let bytes = encode_header(&header);
            let (fixed, rest) = split(&bytes);
            assert_eq!(decode_header(fixed, rest), Ok(header));
        }
    }

    #[test]
    fn every_flipped_bit_of_a_header_is_detected() {
        let bytes = encode_header(&sample());
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let (fixed, rest) = split(&damaged);
            // A flipped length bit changes how much is read: the header is
            // then refused for its length or for its check.
            let rest = &rest[..rest.len().min(
                membership_len(fixed)
                    .map(|m| m + CHECK_BYTES)
                    .unwrap_or(rest.len()),
            )];
            assert!(decode_header(fixed, rest).is_err(), "bit {bit}");
        }
    }
}
