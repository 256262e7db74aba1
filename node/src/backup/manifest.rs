//! A backup's manifest: what one backup holds.
//!
//! Byte layout (integers little-endian):
//!
//! ```text
//! offset   size  field
//!      0      8  magic          "FKBACKUP"
//!      8      4  version        1
//!     12      4  flags          bit 0: the snapshot covers a log id; others 0
//!     16      8  seq            the backup's number, as in its file name
//!     24      8  created        seconds since the Unix epoch
//!     32      8  last index     } the last log id the snapshot covers;
//!     40      8  last term      } zero when absent
//!     48     32  snapshot hash  BLAKE3 of the snapshot file
//!     80      8  snapshot len   bytes of the snapshot file
//!     88      8  block count    n
//!     96   40*n  blocks         n × (hash 32 bytes, len u64), hashes strictly ascending
//! 96+40n     32  checksum       BLAKE3 of every byte before it
//! ```

use std::path::Path;

use super::BackupError;
use crate::le::{read_u32 as u32_at, read_u64 as u64_at};

pub const MAGIC: &[u8; 8] = b"FKBACKUP";
/// The manifest format this code writes and reads.
pub const BACKUP_VERSION: u32 = 1;

const VERSION_OFFSET: usize = 8;
const FLAGS_OFFSET: usize = 12;
const SEQ_OFFSET: usize = 16;
const CREATED_OFFSET: usize = 24;
const LAST_INDEX_OFFSET: usize = 32;
const LAST_TERM_OFFSET: usize = 40;
const SNAPSHOT_HASH_OFFSET: usize = 48;
const SNAPSHOT_LEN_OFFSET: usize = 80;
const BLOCK_COUNT_OFFSET: usize = 88;
const BLOCKS_OFFSET: usize = 96;
const BLOCK_ENTRY_BYTES: usize = 40;
const CHECKSUM_BYTES: usize = 32;
const FLAG_HAS_LOG_ID: u32 = 1;

/// One block a backup names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupBlock {
    pub hash: [u8; 32],
    pub len: u64,
}

/// The decoded, verified manifest of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupManifest {
    pub seq: u64,
    pub created_unix_secs: u64,
    /// (index, term) of the last entry the snapshot covers.
    pub last_log: Option<(u64, u64)>,
    pub snapshot_hash: [u8; 32],
    pub snapshot_len: u64,
    /// Sorted by hash, no duplicates.
    pub blocks: Vec<BackupBlock>,
}

impl BackupManifest {
    /// Bytes of block data the backup names.
    pub fn block_bytes(&self) -> u64 {
        self.blocks.iter().map(|b| b.len).sum()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            BLOCKS_OFFSET + self.blocks.len() * BLOCK_ENTRY_BYTES + CHECKSUM_BYTES,
        );
        let (index, term) = self.last_log.unwrap_or((0, 0));
        let flags = if self.last_log.is_some() {
            FLAG_HAS_LOG_ID
        } else {
            0
        };
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&BACKUP_VERSION.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        for field in [self.seq, self.created_unix_secs, index, term] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(&self.snapshot_hash);
        out.extend_from_slice(&self.snapshot_len.to_le_bytes());
        out.extend_from_slice(&(self.blocks.len() as u64).to_le_bytes());
        debug_assert_eq!(out.len(), BLOCKS_OFFSET);
        for block in &self.blocks {
            out.extend_from_slice(&block.hash);
            out.extend_from_slice(&block.len.to_le_bytes());
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }

    /// Decodes a manifest read from `file`, verifying its checksum before
    /// trusting any field.
    pub fn decode(file: &Path, bytes: &[u8]) -> Result<BackupManifest, BackupError> {
        let corrupt =
            |offset: usize, reason: String| BackupError::corrupt(file, offset as u64, reason);
        if bytes.len() < BLOCKS_OFFSET + CHECKSUM_BYTES {
            return Err(corrupt(
                0,
                format!("manifest truncated to {} bytes", bytes.len()),
            ));
        }
        let body_end = bytes.len() - CHECKSUM_BYTES;
        if blake3::hash(&bytes[..body_end]).as_bytes()[..] != bytes[body_end..] {
            return Err(corrupt(body_end, "manifest checksum mismatch".into()));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt(0, "bad manifest magic".into()));
        }
        let version = u32_at(bytes, VERSION_OFFSET);
        if version != BACKUP_VERSION {
            return Err(corrupt(
                VERSION_OFFSET,
                format!("unsupported manifest version {version}"),
            ));
        }
        let flags = u32_at(bytes, FLAGS_OFFSET);
        if flags & !FLAG_HAS_LOG_ID != 0 {
            return Err(corrupt(FLAGS_OFFSET, format!("unknown flags {flags:#x}")));
        }
        let count = u64_at(bytes, BLOCK_COUNT_OFFSET);
        let expected = u64::try_from(body_end - BLOCKS_OFFSET).unwrap_or(u64::MAX);
        if count.checked_mul(BLOCK_ENTRY_BYTES as u64) != Some(expected) {
            return Err(corrupt(
                BLOCK_COUNT_OFFSET,
                format!("block count {count} does not fit the file"),
            ));
        }
        let mut blocks = Vec::with_capacity(expected as usize / BLOCK_ENTRY_BYTES);
        for (i, entry) in bytes[BLOCKS_OFFSET..body_end]
            .chunks_exact(BLOCK_ENTRY_BYTES)
            .enumerate()
        {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&entry[..32]);
            let block = BackupBlock {
                hash,
                len: u64_at(entry, 32),
            };
            if blocks
                .last()
                .is_some_and(|prev: &BackupBlock| prev.hash >= hash)
            {
                return Err(corrupt(
                    BLOCKS_OFFSET + i * BLOCK_ENTRY_BYTES,
                    "block hashes out of order".into(),
                ));
            }
            blocks.push(block);
        }
        let mut snapshot_hash = [0u8; 32];
        snapshot_hash.copy_from_slice(&bytes[SNAPSHOT_HASH_OFFSET..SNAPSHOT_LEN_OFFSET]);
        let last_log = (flags & FLAG_HAS_LOG_ID != 0).then(|| {
            (
                u64_at(bytes, LAST_INDEX_OFFSET),
                u64_at(bytes, LAST_TERM_OFFSET),
            )
        });
        Ok(BackupManifest {
            seq: u64_at(bytes, SEQ_OFFSET),
            created_unix_secs: u64_at(bytes, CREATED_OFFSET),
            last_log,
            snapshot_hash,
            snapshot_len: u64_at(bytes, SNAPSHOT_LEN_OFFSET),
            blocks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupManifest {
        BackupManifest {
            seq: 7,
            created_unix_secs: 1_790_000_000,
            last_log: Some((120, 3)),
            snapshot_hash: [9u8; 32],
            snapshot_len: 4096,
            blocks: vec![
                BackupBlock {
                    hash: [1u8; 32],
                    len: 100,
                },
                BackupBlock {
                    hash: [2u8; 32],
                    len: 65536,
                },
            ],
        }
    }

    #[test]
    fn manifest_round_trips() {
        let m = sample();
        assert_eq!(
            BackupManifest::decode(Path::new("m"), &m.encode()).unwrap(),
            m
        );
        let empty = BackupManifest {
            last_log: None,
            blocks: vec![],
            ..sample()
        };
        assert_eq!(
            BackupManifest::decode(Path::new("m"), &empty.encode()).unwrap(),
            empty
        );
    }

    #[test]
    fn every_bit_flip_and_truncation_is_refused() {
        let bytes = sample().encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let err = BackupManifest::decode(Path::new("m"), &damaged).unwrap_err();
            assert!(
                matches!(err, BackupError::Corrupt { .. }),
                "bit {bit}: {err}"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                BackupManifest::decode(Path::new("m"), &bytes[..len]).is_err(),
                "len {len}"
            );
        }
    }
}
