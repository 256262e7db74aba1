//! The header that starts every segment file, and segment file names.
//!
//! Byte layout (integers little-endian):
//!
//! ```text
//! offset  size  field
//!      0     4  magic        "FKJS"
//!      4     4  version      format version of the segment and its records (2)
//!      8     8  first_index  index of the first record of this segment
//!     16    32  prev_chain   chain value of the record before first_index,
//!                            all zeros when a new chain starts here
//!     48    32  checksum     BLAKE3(bytes 0..48)
//!     80        first record
//! ```
//!
//! The header is written and synced, and the directory synced, before any
//! record is appended to the segment, so a header that does not verify in a
//! file no longer than the header is a creation cut short by a crash.

use super::Hash;

/// Magic number that starts every segment file.
pub const MAGIC: u32 = u32::from_le_bytes(*b"FKJS");
/// The segment format this code writes and reads.
///
/// Version 2 checksums a record's payload through its BLAKE3 hash (see
/// `record.rs`); version 1, a development format never released, hashed the
/// payload after the header fields. A version 1 segment is refused as an
/// unsupported version, not misread.
pub const FORMAT_VERSION: u32 = 2;

pub const MAGIC_OFFSET: usize = 0;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + 4;
pub const FIRST_INDEX_OFFSET: usize = VERSION_OFFSET + 4;
pub const PREV_CHAIN_OFFSET: usize = FIRST_INDEX_OFFSET + 8;
pub const CHECKSUM_OFFSET: usize = PREV_CHAIN_OFFSET + 32;
/// Bytes of the header; the first record starts here.
pub const HEADER_BYTES: usize = CHECKSUM_OFFSET + 32;

const _: () = assert!(HEADER_BYTES == 80);
const _: () = assert!((HEADER_BYTES as u64).is_multiple_of(super::record::ALIGN_BYTES));

/// Suffix of segment file names.
pub const FILE_SUFFIX: &str = ".seg";
/// Digits of the zero-padded first index in a segment file name (u64::MAX has 20).
pub const NAME_DIGITS: usize = 20;

/// The decoded, verified header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_index: u64,
    pub prev_chain: Hash,
}

/// Why a header could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The bytes do not verify: damage, or a creation cut short.
    Damaged(String),
    /// The header verifies but was written by a newer format.
    UnsupportedVersion(u32),
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&MAGIC.to_le_bytes());
        out[VERSION_OFFSET..FIRST_INDEX_OFFSET].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[FIRST_INDEX_OFFSET..PREV_CHAIN_OFFSET].copy_from_slice(&self.first_index.to_le_bytes());
        out[PREV_CHAIN_OFFSET..CHECKSUM_OFFSET].copy_from_slice(&self.prev_chain);
        let checksum = blake3::hash(&out[..CHECKSUM_OFFSET]);
        out[CHECKSUM_OFFSET..].copy_from_slice(checksum.as_bytes());
        debug_assert_eq!(SegmentHeader::decode(&out), Ok(*self));
        out
    }

    /// Decodes a header, verifying its checksum before trusting any field.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        let Some(bytes) = bytes.get(..HEADER_BYTES) else {
            return Err(HeaderProblem::Damaged(format!(
                "segment header truncated: {} of {HEADER_BYTES} bytes",
                bytes.len()
            )));
        };
        let magic = read_u32(bytes, MAGIC_OFFSET);
        if blake3::hash(&bytes[..CHECKSUM_OFFSET]).as_bytes()[..] != bytes[CHECKSUM_OFFSET..] {
            let why = if magic == MAGIC {
                "segment header checksum mismatch".to_string()
            } else {
                format!("bad segment magic {magic:#010x}")
            };
            return Err(HeaderProblem::Damaged(why));
        }
        if magic != MAGIC {
            return Err(HeaderProblem::Damaged(format!(
                "bad segment magic {magic:#010x}"
            )));
        }
        let version = read_u32(bytes, VERSION_OFFSET);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::UnsupportedVersion(version));
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[FIRST_INDEX_OFFSET..PREV_CHAIN_OFFSET]);
        let mut prev_chain = [0u8; 32];
        prev_chain.copy_from_slice(&bytes[PREV_CHAIN_OFFSET..CHECKSUM_OFFSET]);
        Ok(SegmentHeader {
            first_index: u64::from_le_bytes(first),
            prev_chain,
        })
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

/// The file name of the segment whose first record is `first_index`; names
/// sort in index order.
pub fn file_name(first_index: u64) -> String {
    format!("{first_index:0width$}{FILE_SUFFIX}", width = NAME_DIGITS)
}

/// The first index a segment file name encodes, or None if `name` is not a
/// segment name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(FILE_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_any_bit_flip_is_detected() {
        let header = SegmentHeader {
            first_index: 42,
            prev_chain: [9u8; 32],
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for bit in 0..HEADER_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    SegmentHeader::decode(&damaged),
                    Err(HeaderProblem::Damaged(_))
                ),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn names_sort_by_index_and_parse_back() {
        assert_eq!(file_name(1), "00000000000000000001.seg");
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("purged"), None);
        assert_eq!(parse_file_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_file_name("1.seg"), None);
    }
}
