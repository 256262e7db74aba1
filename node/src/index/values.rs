//! Encodings of the values stored in the index tables.
//!
//! Every value ends with a 16-byte check bound to its table and key:
//!
//! ```text
//! check = BLAKE3-derive-key("finkfs index value v1",
//!           table_len u32 ‖ table ‖ key_len u32 ‖ key ‖ body)[0..16]
//! ```
//!
//! so a value that is damaged, or that turns up under another key (a key
//! whose bits flipped in a leaf page), fails its check when read.
//!
//! `objects` (key: object path, UTF-8):
//! ```text
//!      0     m  manifest      the manifest encoding (manifest.rs), self-checksummed
//!      m    16  check
//! ```
//!
//! `blocks` (key: block hash, 32 bytes), fixed 48 bytes:
//! ```text
//!      0     4  version u32   BLOCK_ENTRY_VERSION (1)
//!      4     4  len u32       bytes of block data
//!      8     8  pack u64      pack sequence number
//!     16     8  offset u64    record offset in the pack
//!     24     8  refs u64      manifests referring to the block (0: dead, awaiting reclaim)
//!     32    16  check
//! ```
//!
//! `staged` (key: block hash, 32 bytes): a block fetched for a snapshot
//! being installed, the same 48-byte layout as `blocks` with refs zero.
//!
//! `applied` (key: "applied"), 48 bytes:
//! ```text
//!      0     4  version u32   APPLIED_VERSION (2)
//!      4     4  reserved u32  zero
//!      8     8  index u64     last journal index applied
//!     16     8  term u64      its term
//!     24     8  node u64      node id of the leader that proposed it
//!     32    16  check
//! ```
//!
//! `applied` (key: "membership"), 24 + n bytes:
//! ```text
//!      0     4  version u32   MEMBERSHIP_RECORD_VERSION (1)
//!      4     4  len u32       n
//!      8     n  body          the last applied membership, opaque here
//!                             (the state machine's stored-membership encoding)
//!    8+n    16  check
//! ```
//!
//! `meta` (key: "format"), 24 bytes:
//! ```text
//!      0     4  version u32   INDEX_FORMAT_VERSION (2)
//!      4     4  reserved u32  zero
//!      8    16  check
//! ```

use crate::blocks::BlockLocation;
use crate::manifest::Manifest;

use super::{Applied, BlockEntry};
use crate::le::{read_u32, read_u64};

const CHECK_BYTES: usize = 16;
const CHECK_CONTEXT: &str = "finkfs index value v1";

/// Version of the index as a whole (tables and value layouts). Version 2
/// added the leader node to `applied`, the `membership` record and the
/// `staged` table.
pub const INDEX_FORMAT_VERSION: u32 = 2;
pub const BLOCK_ENTRY_VERSION: u32 = 1;
pub const APPLIED_VERSION: u32 = 2;
pub const MEMBERSHIP_RECORD_VERSION: u32 = 1;

pub const BLOCK_ENTRY_BYTES: usize = 32 + CHECK_BYTES;
pub const APPLIED_BYTES: usize = 32 + CHECK_BYTES;
const MEMBERSHIP_HEADER_BYTES: usize = 8;
pub const FORMAT_BYTES: usize = 8 + CHECK_BYTES;

fn check(table: &str, key: &[u8], body: &[u8]) -> [u8; CHECK_BYTES] {
    let mut hasher = blake3::Hasher::new_derive_key(CHECK_CONTEXT);
    hasher.update(&(table.len() as u32).to_le_bytes());
    hasher.update(table.as_bytes());
    hasher.update(&(key.len() as u32).to_le_bytes());
    hasher.update(key);
    hasher.update(body);
    let mut out = [0u8; CHECK_BYTES];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..CHECK_BYTES]);
    out
}

/// Appends the check of `body` under `table`/`key`.
pub fn seal(table: &str, key: &[u8], mut body: Vec<u8>) -> Vec<u8> {
    let check = check(table, key, &body);
    body.extend_from_slice(&check);
    body
}

/// The body of a sealed value, once its check verifies.
pub fn unseal<'a>(table: &str, key: &[u8], value: &'a [u8]) -> Result<&'a [u8], String> {
    if value.len() < CHECK_BYTES {
        return Err(format!(
            "value of {} bytes is shorter than its check",
            value.len()
        ));
    }
    let (body, stored) = value.split_at(value.len() - CHECK_BYTES);
    if stored != check(table, key, body) {
        return Err("value check mismatch (damaged, or stored under another key)".to_string());
    }
    Ok(body)
}

pub fn encode_manifest(table: &str, path: &str, manifest: &Manifest) -> Vec<u8> {
    seal(table, path.as_bytes(), manifest.encode())
}

pub fn decode_manifest(table: &str, path: &str, value: &[u8]) -> Result<Manifest, String> {
    let body = unseal(table, path.as_bytes(), value)?;
    Manifest::decode(body).map_err(|e| e.to_string())
}

pub fn encode_block_entry(table: &str, entry: &BlockEntry) -> [u8; BLOCK_ENTRY_BYTES] {
    let loc = &entry.location;
    let mut body = Vec::with_capacity(BLOCK_ENTRY_BYTES);
    body.extend_from_slice(&BLOCK_ENTRY_VERSION.to_le_bytes());
    body.extend_from_slice(&loc.len.to_le_bytes());
    body.extend_from_slice(&loc.pack.to_le_bytes());
    body.extend_from_slice(&loc.offset.to_le_bytes());
    body.extend_from_slice(&entry.refs.to_le_bytes());
    let sealed = seal(table, &loc.hash, body);
    let mut out = [0u8; BLOCK_ENTRY_BYTES];
    out.copy_from_slice(&sealed);
    debug_assert_eq!(
        decode_block_entry(table, &loc.hash, &out).as_ref(),
        Ok(entry)
    );
    out
}

pub fn decode_block_entry(
    table: &str,
    hash: &[u8; 32],
    value: &[u8],
) -> Result<BlockEntry, String> {
    let body = unseal(table, hash, value)?;
    if body.len() != BLOCK_ENTRY_BYTES - CHECK_BYTES {
        return Err(format!("block entry of {} bytes", value.len()));
    }
    let version = read_u32(body, 0);
    if version != BLOCK_ENTRY_VERSION {
        return Err(format!("unsupported block entry version {version}"));
    }
    Ok(BlockEntry {
        location: BlockLocation {
            hash: *hash,
            len: read_u32(body, 4),
            pack: read_u64(body, 8),
            offset: read_u64(body, 16),
        },
        refs: read_u64(body, 24),
    })
}

pub fn encode_applied(table: &str, key: &str, applied: &Applied) -> Vec<u8> {
    let mut body = Vec::with_capacity(APPLIED_BYTES);
    body.extend_from_slice(&APPLIED_VERSION.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&applied.index.to_le_bytes());
    body.extend_from_slice(&applied.term.to_le_bytes());
    body.extend_from_slice(&applied.node.to_le_bytes());
    seal(table, key.as_bytes(), body)
}

pub fn decode_applied(table: &str, key: &str, value: &[u8]) -> Result<Applied, String> {
    let body = unseal(table, key.as_bytes(), value)?;
    if body.len() != APPLIED_BYTES - CHECK_BYTES {
        return Err(format!("applied record of {} bytes", value.len()));
    }
    let version = read_u32(body, 0);
    if version != APPLIED_VERSION {
        return Err(format!("unsupported applied record version {version}"));
    }
    Ok(Applied {
        index: read_u64(body, 8),
        term: read_u64(body, 16),
        node: read_u64(body, 24),
    })
}

pub fn encode_membership(table: &str, key: &str, membership: &[u8]) -> Vec<u8> {
    let len = u32::try_from(membership.len()).expect("membership record under 4 GiB");
    let mut body = Vec::with_capacity(MEMBERSHIP_HEADER_BYTES + membership.len() + CHECK_BYTES);
    body.extend_from_slice(&MEMBERSHIP_RECORD_VERSION.to_le_bytes());
    body.extend_from_slice(&len.to_le_bytes());
    body.extend_from_slice(membership);
    seal(table, key.as_bytes(), body)
}

/// The opaque membership bytes of a verified membership record.
pub fn decode_membership(table: &str, key: &str, value: &[u8]) -> Result<Vec<u8>, String> {
    let body = unseal(table, key.as_bytes(), value)?;
    if body.len() < MEMBERSHIP_HEADER_BYTES {
        return Err(format!("membership record of {} bytes", value.len()));
    }
    let version = read_u32(body, 0);
    if version != MEMBERSHIP_RECORD_VERSION {
        return Err(format!("unsupported membership record version {version}"));
    }
    let len = read_u32(body, 4) as usize;
    if body.len() - MEMBERSHIP_HEADER_BYTES != len {
        return Err(format!(
            "membership record says {len} bytes, holds {}",
            body.len() - MEMBERSHIP_HEADER_BYTES
        ));
    }
    Ok(body[MEMBERSHIP_HEADER_BYTES..].to_vec())
}

pub fn encode_format(table: &str, key: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(FORMAT_BYTES);
    body.extend_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    seal(table, key.as_bytes(), body)
}

/// The format version recorded in the index.
pub fn decode_format(table: &str, key: &str, value: &[u8]) -> Result<u32, String> {
    let body = unseal(table, key.as_bytes(), value)?;
    if body.len() != FORMAT_BYTES - CHECK_BYTES {
        return Err(format!("format record of {} bytes", value.len()));
    }
    Ok(read_u32(body, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> BlockEntry {
        BlockEntry {
            location: BlockLocation {
                hash: [7; 32],
                pack: 3,
                offset: 64,
                len: 1000,
            },
            refs: 2,
        }
    }

    #[test]
    fn block_entry_round_trips() {
        let bytes = encode_block_entry("blocks", &entry());
        assert_eq!(decode_block_entry("blocks", &[7; 32], &bytes), Ok(entry()));
    }

    #[test]
    fn value_under_another_key_fails_its_check() {
        let bytes = encode_block_entry("blocks", &entry());
        assert!(decode_block_entry("blocks", &[8; 32], &bytes).is_err());
        let applied = Applied {
            index: 5,
            term: 2,
            node: 1,
        };
        let applied = encode_applied("applied", "applied", &applied);
        assert!(decode_applied("applied", "other", &applied).is_err());
    }

    #[test]
    fn every_flipped_bit_of_a_block_entry_is_detected() {
        let bytes = encode_block_entry("blocks", &entry());
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_block_entry("blocks", &[7; 32], &damaged).is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn applied_and_format_round_trip() {
        let applied = Applied {
            index: 9,
            term: 4,
            node: 3,
        };
        let bytes = encode_applied("applied", "applied", &applied);
        assert_eq!(bytes.len(), APPLIED_BYTES);
        assert_eq!(decode_applied("applied", "applied", &bytes), Ok(applied));
        let format = encode_format("meta", "format");
        assert_eq!(
            decode_format("meta", "format", &format),
            Ok(INDEX_FORMAT_VERSION)
        );
    }

    #[test]
    fn membership_record_round_trips_and_detects_damage() {
        let bytes = encode_membership("applied", "membership", b"{\"voters\":[1]}");
        assert_eq!(
            decode_membership("applied", "membership", &bytes),
            Ok(b"{\"voters\":[1]}".to_vec())
        );
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_membership("applied", "membership", &damaged).is_err(),
                "bit {bit}"
            );
        }
    }
}
