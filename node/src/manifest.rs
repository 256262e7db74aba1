//! Object manifests: how an object (path → bytes) is split into blocks.
//!
//! ```text
//! offset     size  field
//!      0        4  magic            b"FMAN"
//!      4        4  version u32      MANIFEST_VERSION (1)
//!      8        8  object_len u64   bytes of the whole object
//!     16       32  object_hash      BLAKE3 of the whole object (end-to-end check)
//!     48        4  block_bytes u32  size of every block but the last
//!     52        4  block_count u32  n
//!     56     36·n  blocks           n × (hash [32], len u32)
//!  56+36·n     32  checksum         BLAKE3(bytes 0..56+36·n)
//! ```
//!
//! Integers are little-endian. Invariants (checked on decode, asserted on
//! encode): `block_bytes ≥ 1`; `n = ⌈object_len / block_bytes⌉`; every block
//! but the last holds `block_bytes` bytes, the last the remainder, none zero;
//! an empty object has no blocks.

use crate::le::{read_u32, read_u64};

/// Version of the manifest encoding.
pub const MANIFEST_VERSION: u32 = 1;
const MAGIC: [u8; 4] = *b"FMAN";

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 4;
const OBJECT_LEN_OFFSET: usize = VERSION_OFFSET + 4;
const OBJECT_HASH_OFFSET: usize = OBJECT_LEN_OFFSET + 8;
const BLOCK_BYTES_OFFSET: usize = OBJECT_HASH_OFFSET + 32;
const BLOCK_COUNT_OFFSET: usize = BLOCK_BYTES_OFFSET + 4;
const BLOCKS_OFFSET: usize = BLOCK_COUNT_OFFSET + 4;
const ENTRY_BYTES: usize = 32 + 4;
const CHECKSUM_BYTES: usize = 32;
/// Bytes of a manifest with no blocks.
pub const MANIFEST_BYTES_MIN: usize = BLOCKS_OFFSET + CHECKSUM_BYTES;

const _: () = assert!(BLOCKS_OFFSET == 56);

/// One block of an object, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ManifestBlock {
    /// BLAKE3 of the block: its address in the block store.
    pub hash: [u8; 32],
    /// Bytes in the block.
    pub len: u32,
}

/// How one object is split into blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub object_len: u64,
    pub object_hash: [u8; 32],
    pub block_bytes: u32,
    pub blocks: Vec<ManifestBlock>,
}

/// Why bytes are not a valid manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("manifest of {len_bytes} bytes is shorter than the minimum {MANIFEST_BYTES_MIN}")]
    TooShort { len_bytes: usize },
    #[error("manifest checksum mismatch")]
    ChecksumMismatch,
    #[error("bad manifest magic")]
    BadMagic,
    #[error("unsupported manifest version {0}")]
    UnsupportedVersion(u32),
    #[error("inconsistent manifest: {0}")]
    Inconsistent(String),
}

impl Manifest {
    /// Bytes of this manifest once encoded.
    pub fn encoded_len(&self) -> usize {
        MANIFEST_BYTES_MIN + ENTRY_BYTES * self.blocks.len()
    }

    /// Encodes the manifest. Panics if it breaks its invariants: a caller
    /// that builds a wrong manifest has a bug that must not reach the disk.
    pub fn encode(&self) -> Vec<u8> {
        if let Err(why) = self.check() {
            panic!("encoding an invalid manifest: {why}");
        }
        let count = u32::try_from(self.blocks.len()).expect("block count checked");
        let mut bytes = Vec::with_capacity(self.encoded_len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        bytes.extend_from_slice(&self.object_len.to_le_bytes());
        bytes.extend_from_slice(&self.object_hash);
        bytes.extend_from_slice(&self.block_bytes.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
        for block in &self.blocks {
            bytes.extend_from_slice(&block.hash);
            bytes.extend_from_slice(&block.len.to_le_bytes());
        }
        let checksum = blake3::hash(&bytes);
        bytes.extend_from_slice(checksum.as_bytes());
        assert_eq!(bytes.len(), self.encoded_len());
        debug_assert_eq!(Manifest::decode(&bytes).as_ref(), Ok(self));
        bytes
    }

    /// Decodes a manifest, verifying the checksum before trusting any field.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() < MANIFEST_BYTES_MIN {
            return Err(ManifestError::TooShort {
                len_bytes: bytes.len(),
            });
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        if blake3::hash(body).as_bytes()[..] != checksum[..] {
            return Err(ManifestError::ChecksumMismatch);
        }
        if body[MAGIC_OFFSET..VERSION_OFFSET] != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        let version = read_u32(body, VERSION_OFFSET);
        if version != MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion(version));
        }
        let count = read_u32(body, BLOCK_COUNT_OFFSET) as usize;
        let entries_bytes = body.len() - BLOCKS_OFFSET;
        if entries_bytes != count.saturating_mul(ENTRY_BYTES) {
            return Err(ManifestError::Inconsistent(format!(
                "{count} blocks need {} bytes of entries, found {entries_bytes}",
                count.saturating_mul(ENTRY_BYTES)
            )));
        }
        let mut object_hash = [0u8; 32];
        object_hash.copy_from_slice(&body[OBJECT_HASH_OFFSET..BLOCK_BYTES_OFFSET]);
        let mut manifest = Manifest {
            object_len: read_u64(body, OBJECT_LEN_OFFSET),
            object_hash,
            block_bytes: read_u32(body, BLOCK_BYTES_OFFSET),
            blocks: Vec::with_capacity(count),
        };
        for entry in body[BLOCKS_OFFSET..].chunks_exact(ENTRY_BYTES) {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&entry[..32]);
            let len = read_u32(entry, 32);
            manifest.blocks.push(ManifestBlock { hash, len });
        }
        manifest.check().map_err(ManifestError::Inconsistent)?;
        Ok(manifest)
    }

    /// The structural invariants listed in the module docs.
    pub fn check(&self) -> Result<(), String> {
        if self.block_bytes == 0 {
            return Err("block size is zero".to_string());
        }
        let expected_count = self.object_len.div_ceil(u64::from(self.block_bytes));
        if expected_count > u64::from(u32::MAX) {
            return Err(format!(
                "object of {} bytes needs too many blocks",
                self.object_len
            ));
        }
        if self.blocks.len() as u64 != expected_count {
            return Err(format!(
                "object of {} bytes in blocks of {} needs {expected_count} blocks, manifest lists {}",
                self.object_len,
                self.block_bytes,
                self.blocks.len()
            ));
        }
        let mut remaining = self.object_len;
        for (i, block) in self.blocks.iter().enumerate() {
            let expected = remaining.min(u64::from(self.block_bytes));
            if u64::from(block.len) != expected {
                return Err(format!(
                    "block {i} holds {} bytes, expected {expected}",
                    block.len
                ));
            }
            remaining -= expected;
        }
        assert_eq!(remaining, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(object_len: u64, block_bytes: u32) -> Manifest {
        let count = object_len.div_ceil(u64::from(block_bytes));
        let blocks = (0..count)
            .map(|i| {
                let start = i * u64::from(block_bytes);
                let len = (object_len - start).min(u64::from(block_bytes)) as u32;
                ManifestBlock {
                    hash: *blake3::hash(&i.to_le_bytes()).as_bytes(),
                    len,
                }
            })
            .collect();
        Manifest {
            object_len,
            object_hash: *blake3::hash(b"object").as_bytes(),
            block_bytes,
            blocks,
        }
    }

    #[test]
    fn manifests_round_trip_including_empty_objects() {
        for (len, block) in [
            (0, 1024),
            (1, 1024),
            (1024, 1024),
            (5 * 1024 * 1024 + 7, 1024 * 1024),
        ] {
            let manifest = sample(len, block);
            assert_eq!(Manifest::decode(&manifest.encode()), Ok(manifest));
        }
    }

    #[test]
    fn every_flipped_bit_of_a_manifest_is_detected() {
        let bytes = sample(3000, 1024).encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(Manifest::decode(&damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn truncated_or_zeroed_manifest_is_an_error() {
        let bytes = sample(3000, 1024).encode();
        for len in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..len]).is_err(), "len {len}");
        }
        assert_eq!(
            Manifest::decode(&vec![0u8; bytes.len()]),
            Err(ManifestError::ChecksumMismatch)
        );
    }

    #[test]
    fn well_checksummed_but_inconsistent_manifest_is_refused() {
        // A block count that does not match the object length, sealed with a
        // valid checksum: decode must still refuse it.
        let mut manifest = sample(3000, 1024);
        manifest.blocks.pop();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        bytes.extend_from_slice(&manifest.object_len.to_le_bytes());
        bytes.extend_from_slice(&manifest.object_hash);
        bytes.extend_from_slice(&manifest.block_bytes.to_le_bytes());
        bytes.extend_from_slice(&(manifest.blocks.len() as u32).to_le_bytes());
        for block in &manifest.blocks {
            bytes.extend_from_slice(&block.hash);
            bytes.extend_from_slice(&block.len.to_le_bytes());
        }
        let checksum = blake3::hash(&bytes);
        bytes.extend_from_slice(checksum.as_bytes());
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestError::Inconsistent(_))
        ));
    }

    #[test]
    fn huge_block_count_in_garbage_does_not_allocate() {
        // A count of u32::MAX in a 88-byte buffer is refused by the length
        // check before any allocation sized by the count.
        let mut bytes = sample(0, 1024).encode();
        let body_len = bytes.len() - CHECKSUM_BYTES;
        bytes[BLOCK_COUNT_OFFSET..BLOCKS_OFFSET].copy_from_slice(&u32::MAX.to_le_bytes());
        let checksum = blake3::hash(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(checksum.as_bytes());
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestError::Inconsistent(_))
        ));
    }
}
