//! The header at the start of every pack file.
//!
//! ```text
//! offset  size  field
//!      0     8  magic            b"FINKPACK"
//!      8     4  version u32      PACK_VERSION (1)
//!     12     4  reserved u32     zero
//!     16     8  pack_seq u64     the sequence number in the file name
//!     24     8  reserved u64     zero
//!     32    32  checksum         BLAKE3(bytes 0..32)
//!     64        first block record
//! ```
//!
//! All integers are little-endian. The version covers the record layout too
//! (see `record.rs`).

use super::record::RECORD_ALIGN_BYTES;
use crate::le::{read_u32, read_u64};

pub const PACK_MAGIC: [u8; 8] = *b"FINKPACK";
pub const PACK_VERSION: u32 = 1;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const RESERVED_A_OFFSET: usize = VERSION_OFFSET + 4;
const SEQ_OFFSET: usize = RESERVED_A_OFFSET + 4;
const RESERVED_B_OFFSET: usize = SEQ_OFFSET + 8;
const CHECKSUM_OFFSET: usize = RESERVED_B_OFFSET + 8;
/// Bytes of the pack header; the first record starts here.
pub const PACK_HEADER_BYTES: usize = CHECKSUM_OFFSET + 32;

const _: () = assert!(PACK_HEADER_BYTES == 64);
const _: () = assert!(PACK_HEADER_BYTES.is_multiple_of(RECORD_ALIGN_BYTES as usize));

/// Encodes the header of pack `pack_seq`.
pub fn encode(pack_seq: u64) -> [u8; PACK_HEADER_BYTES] {
    let mut bytes = [0u8; PACK_HEADER_BYTES];
    bytes[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&PACK_MAGIC);
    bytes[VERSION_OFFSET..RESERVED_A_OFFSET].copy_from_slice(&PACK_VERSION.to_le_bytes());
    bytes[SEQ_OFFSET..RESERVED_B_OFFSET].copy_from_slice(&pack_seq.to_le_bytes());
    let checksum = blake3::hash(&bytes[..CHECKSUM_OFFSET]);
    bytes[CHECKSUM_OFFSET..].copy_from_slice(checksum.as_bytes());
    let decoded = decode(&bytes, pack_seq);
    assert_eq!(decoded, Ok(()));
    bytes
}

/// Checks a pack header read from the file named for `pack_seq`. The
/// checksum is verified before any field is looked at.
pub fn decode(bytes: &[u8; PACK_HEADER_BYTES], pack_seq: u64) -> Result<(), String> {
    let checksum = blake3::hash(&bytes[..CHECKSUM_OFFSET]);
    if checksum.as_bytes()[..] != bytes[CHECKSUM_OFFSET..] {
        return Err(if bytes.iter().all(|b| *b == 0) {
            "pack header is all zeros".to_string()
        } else {
            "pack header checksum mismatch".to_string()
        });
    }
    if bytes[MAGIC_OFFSET..VERSION_OFFSET] != PACK_MAGIC {
        return Err("bad pack magic".to_string());
    }
    let version = read_u32(bytes, VERSION_OFFSET);
    if version != PACK_VERSION {
        return Err(format!("unsupported pack version {version}"));
    }
    let seq = read_u64(bytes, SEQ_OFFSET);
    if seq != pack_seq {
        return Err(format!(
            "header names pack {seq}, file name says {pack_seq}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_binds_the_sequence_number() {
        let bytes = encode(7);
        assert_eq!(decode(&bytes, 7), Ok(()));
        assert!(decode(&bytes, 8).unwrap_err().contains("names pack 7"));
    }

    #[test]
    fn every_flipped_bit_of_the_header_is_detected() {
        let bytes = encode(3);
        for bit in 0..PACK_HEADER_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged, 3).is_err(), "bit {bit}");
        }
    }
}
