//! One block record inside a pack file.
//!
//! ```text
//! offset  size  field
//!      0     4  magic            b"FBLK"
//!      4     4  data_len u32     bytes of block data that follow the header
//!      8    32  hash             BLAKE3(data): the block's address
//!     40    16  header_check     BLAKE3(bytes 0..40 ‖ pack_seq u64 ‖ offset u64)[0..16]
//!     56     …  data             data_len bytes
//!      …     …  padding          zeros up to the next multiple of 8
//! ```
//!
//! `offset` is the record's own offset in the pack and `pack_seq` the pack's
//! sequence number; neither is stored, both are mixed into `header_check`.
//! A record copied, or a write misdirected, to another place therefore fails
//! its header check where it lands. The block's address (its hash) is also
//! kept apart, in the index: reading checks that the header names the hash
//! the index expects and that the data hashes to it.

pub const RECORD_MAGIC: [u8; 4] = *b"FBLK";
/// Records start at multiples of this many bytes.
pub const RECORD_ALIGN_BYTES: u64 = 8;
/// No record holds more data than this, whatever the options say: a ceiling
/// on what a damaged header can make a reader allocate.
pub const RECORD_DATA_BYTES_LIMIT: u32 = 64 * 1024 * 1024;

const MAGIC_OFFSET: usize = 0;
const DATA_LEN_OFFSET: usize = MAGIC_OFFSET + 4;
const HASH_OFFSET: usize = DATA_LEN_OFFSET + 4;
const CHECK_OFFSET: usize = HASH_OFFSET + 32;
const CHECK_BYTES: usize = 16;
/// Bytes of a record header; the data starts here.
pub const RECORD_HEADER_BYTES: usize = CHECK_OFFSET + CHECK_BYTES;

const _: () = assert!(RECORD_HEADER_BYTES == 56);
const _: () = assert!((RECORD_HEADER_BYTES as u64).is_multiple_of(RECORD_ALIGN_BYTES));

/// The fields of a verified record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub data_len: u32,
    pub hash: [u8; 32],
}

/// Bytes a record with `data_len` bytes of data takes, padding included.
pub fn record_bytes(data_len: u32) -> u64 {
    let unpadded = RECORD_HEADER_BYTES as u64 + u64::from(data_len);
    unpadded.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

/// Encodes the header of a record placed at `offset` in pack `pack_seq`.
pub fn encode(header: &RecordHeader, pack_seq: u64, offset: u64) -> [u8; RECORD_HEADER_BYTES] {
    assert!(header.data_len <= RECORD_DATA_BYTES_LIMIT);
    assert_eq!(offset % RECORD_ALIGN_BYTES, 0);
    let mut bytes = [0u8; RECORD_HEADER_BYTES];
    bytes[MAGIC_OFFSET..DATA_LEN_OFFSET].copy_from_slice(&RECORD_MAGIC);
    bytes[DATA_LEN_OFFSET..HASH_OFFSET].copy_from_slice(&header.data_len.to_le_bytes());
    bytes[HASH_OFFSET..CHECK_OFFSET].copy_from_slice(&header.hash);
    let check = header_check(&bytes, pack_seq, offset);
    bytes[CHECK_OFFSET..].copy_from_slice(&check);
    assert_eq!(decode(&bytes, pack_seq, offset), Ok(*header));
    bytes
}

/// Decodes the header of the record at `offset` in pack `pack_seq`,
/// verifying its check before trusting any field.
pub fn decode(
    bytes: &[u8; RECORD_HEADER_BYTES],
    pack_seq: u64,
    offset: u64,
) -> Result<RecordHeader, String> {
    if bytes[CHECK_OFFSET..] != header_check(bytes, pack_seq, offset) {
        return Err(describe_bad_header(bytes));
    }
    if bytes[MAGIC_OFFSET..DATA_LEN_OFFSET] != RECORD_MAGIC {
        return Err("bad record magic".to_string());
    }
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[DATA_LEN_OFFSET..HASH_OFFSET]);
    let data_len = u32::from_le_bytes(word);
    if data_len > RECORD_DATA_BYTES_LIMIT {
        return Err(format!(
            "record data length {data_len} exceeds the format limit"
        ));
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&bytes[HASH_OFFSET..CHECK_OFFSET]);
    Ok(RecordHeader { data_len, hash })
}

/// Whether `bytes` start with the record magic: a cheap filter before a
/// full decode when scanning for the next record after damage.
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.len() >= RECORD_MAGIC.len() && bytes[..RECORD_MAGIC.len()] == RECORD_MAGIC
}

fn header_check(
    bytes: &[u8; RECORD_HEADER_BYTES],
    pack_seq: u64,
    offset: u64,
) -> [u8; CHECK_BYTES] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&bytes[..CHECK_OFFSET]);
    hasher.update(&pack_seq.to_le_bytes());
    hasher.update(&offset.to_le_bytes());
    let mut check = [0u8; CHECK_BYTES];
    check.copy_from_slice(&hasher.finalize().as_bytes()[..CHECK_BYTES]);
    check
}

// A more specific reason than "checksum mismatch" helps whoever reads the
// report: zeros point at a lost or never-written record, a valid-looking
// record for another place at a misdirected write.
fn describe_bad_header(bytes: &[u8; RECORD_HEADER_BYTES]) -> String {
    if bytes.iter().all(|b| *b == 0) {
        "record header is all zeros (lost or never-written record)".to_string()
    } else if bytes[MAGIC_OFFSET..DATA_LEN_OFFSET] != RECORD_MAGIC {
        "no record header here (bad magic)".to_string()
    } else {
        "record header check mismatch (damaged, or a record written for another place)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordHeader {
        RecordHeader {
            data_len: 1234,
            hash: *blake3::hash(b"x").as_bytes(),
        }
    }

    #[test]
    fn record_header_round_trips() {
        let bytes = encode(&sample(), 2, 64);
        assert_eq!(decode(&bytes, 2, 64), Ok(sample()));
    }

    #[test]
    fn header_is_bound_to_its_pack_and_offset() {
        let bytes = encode(&sample(), 2, 64);
        assert!(decode(&bytes, 3, 64).is_err());
        assert!(decode(&bytes, 2, 72).is_err());
    }

    #[test]
    fn every_flipped_bit_of_a_record_header_is_detected() {
        let bytes = encode(&sample(), 2, 64);
        for bit in 0..RECORD_HEADER_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged, 2, 64).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn record_bytes_pads_to_eight() {
        assert_eq!(record_bytes(0), 56);
        assert_eq!(record_bytes(1), 64);
        assert_eq!(record_bytes(8), 64);
        assert_eq!(record_bytes(9), 72);
    }
}
