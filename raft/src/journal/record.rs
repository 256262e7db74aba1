//! One journal record: the unit the journal appends, verifies and reads.
//!
//! Byte layout (integers little-endian, format version 2 of the segment that
//! holds it):
//!
//! ```text
//! offset  size  field
//!      0     4  magic        "FKJR"
//!      4     4  payload_len  bytes of payload, <= record_bytes_max
//!      8     8  index        Raft log index
//!     16     8  term         Raft term
//!     24     8  synced_len   bytes of this segment known durable (synced)
//!                            when the record was appended
//!     32    32  checksum     BLAKE3(bytes 4..32 ‖ BLAKE3(payload)), that is
//!                            BLAKE3(payload_len ‖ index ‖ term ‖ synced_len ‖ payload_hash)
//!     64    32  chain        BLAKE3(chain of the previous record ‖ checksum)
//!     96     n  payload
//!   96+n     p  zero padding up to the next multiple of 8 (p < 8)
//! ```
//!
//! The checksum covers the payload through its own BLAKE3 hash so that the
//! expensive part, hashing the payload, does not depend on where the record
//! lands: a producer can hash payloads on its own thread ([`HashedPayload`])
//! while the writer is busy with the previous batch's fsync, and only the
//! 60-byte header hash is left for the writer.
//!
//! The checksum lets a record verify on its own, so a scan can find valid
//! records after damage. The chain links each record to the one before it, so
//! a record that verifies but does not belong (spliced in from another journal,
//! written at the wrong place) is caught. `synced_len` lets recovery prove
//! that bytes were synced: damage below a later record's `synced_len` cannot
//! be a crash. The padding keeps every record at an 8-byte aligned offset,
//! which bounds the forward scan after damage. The padding is not under the
//! checksum but must read as zeros for the record to verify, so that no byte
//! of a record goes unchecked.

use super::Hash;

/// Magic number that starts every record.
pub const MAGIC: u32 = u32::from_le_bytes(*b"FKJR");

pub const MAGIC_OFFSET: usize = 0;
pub const PAYLOAD_LEN_OFFSET: usize = MAGIC_OFFSET + 4;
pub const INDEX_OFFSET: usize = PAYLOAD_LEN_OFFSET + 4;
pub const TERM_OFFSET: usize = INDEX_OFFSET + 8;
pub const SYNCED_LEN_OFFSET: usize = TERM_OFFSET + 8;
pub const CHECKSUM_OFFSET: usize = SYNCED_LEN_OFFSET + 8;
pub const CHAIN_OFFSET: usize = CHECKSUM_OFFSET + 32;
/// Bytes before the payload.
pub const HEADER_BYTES: usize = CHAIN_OFFSET + 32;
/// Every record starts at a multiple of this.
pub const ALIGN_BYTES: u64 = 8;

const _: () = assert!(HEADER_BYTES == 96);
const _: () = assert!((HEADER_BYTES as u64).is_multiple_of(ALIGN_BYTES));

/// Bytes a record with `payload_len` bytes of payload occupies on disk.
pub fn record_bytes(payload_len: u32) -> u64 {
    HEADER_BYTES as u64 + padded(u64::from(payload_len))
}

/// `bytes` rounded up to the record alignment.
pub fn padded(bytes: u64) -> u64 {
    bytes.div_ceil(ALIGN_BYTES) * ALIGN_BYTES
}

/// The chain value of a record, given the chain value before it.
pub fn chain(previous: &Hash, checksum: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(previous);
    hasher.update(checksum);
    *hasher.finalize().as_bytes()
}

/// The fields of a record whose checksum has been verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub payload_len: u32,
    pub index: u64,
    pub term: u64,
    /// Bytes of the segment known synced when this record was appended.
    pub synced_len: u64,
    pub checksum: Hash,
    pub chain: Hash,
}

impl RecordHeader {
    /// Bytes the whole record occupies on disk.
    pub fn record_bytes(&self) -> u64 {
        record_bytes(self.payload_len)
    }
}

/// Where and how a record is written, besides its payload.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub index: u64,
    pub term: u64,
    /// Bytes of the segment synced so far.
    pub synced_len: u64,
    /// Chain value of the record before.
    pub previous_chain: Hash,
}

/// A payload together with its BLAKE3 hash, computed once by
/// [`HashedPayload::new`]. The fields are private so the hash always belongs
/// to the bytes: a caller cannot pair a payload with someone else's hash.
#[derive(Debug, Clone)]
pub struct HashedPayload<B> {
    bytes: B,
    hash: Hash,
}

impl<B: AsRef<[u8]>> HashedPayload<B> {
    /// Hashes `bytes`; this is the costly step, free to run on any thread.
    pub fn new(bytes: B) -> HashedPayload<B> {
        let hash = *blake3::hash(bytes.as_ref()).as_bytes();
        HashedPayload { bytes, hash }
    }

    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    pub fn hash(&self) -> &Hash {
        &self.hash
    }

    /// Gives the payload back.
    pub fn into_bytes(self) -> B {
        self.bytes
    }
}

/// Appends the header of a record to `out` and returns its fields. On disk
/// the payload follows the header, then [`padding`]: the writer hands the
/// three pieces to one vectored write, so the payload is never copied here.
/// The payload must fit in a `u32` length: the caller checks the ceiling.
pub fn encode_header<B: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    at: &Placement,
    payload: &HashedPayload<B>,
) -> RecordHeader {
    let payload_len = u32::try_from(payload.bytes().len())
        .expect("payload length checked against record_bytes_max");
    let Placement {
        index,
        term,
        synced_len,
        previous_chain,
    } = *at;
    let checksum = checksum(payload_len, index, term, synced_len, payload.hash());
    let header = RecordHeader {
        payload_len,
        index,
        term,
        synced_len,
        checksum,
        chain: chain(&previous_chain, &checksum),
    };

    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&synced_len.to_le_bytes());
    out.extend_from_slice(&header.checksum);
    out.extend_from_slice(&header.chain);
    assert_eq!(out.len() - start, HEADER_BYTES);
    debug_assert_eq!(
        Unverified::parse(&out[start..]).map(|u| u.fields),
        Ok(header)
    );
    header
}

/// The zeros that follow a payload of `payload_len` bytes.
pub fn padding(payload_len: u32) -> &'static [u8] {
    const ZEROS: [u8; ALIGN_BYTES as usize] = [0; ALIGN_BYTES as usize];
    let len = padded(u64::from(payload_len)) - u64::from(payload_len);
    &ZEROS[..usize::try_from(len).expect("padding is under 8 bytes")]
}

/// The record checksum: the header fields before it and the payload's hash.
fn checksum(payload_len: u32, index: u64, term: u64, synced_len: u64, payload_hash: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&payload_len.to_le_bytes());
    hasher.update(&index.to_le_bytes());
    hasher.update(&term.to_le_bytes());
    hasher.update(&synced_len.to_le_bytes());
    hasher.update(payload_hash);
    *hasher.finalize().as_bytes()
}

/// A record header read from disk whose fields are not yet trusted: only the
/// claimed payload length may be used, and only after it has been bounded,
/// to find the payload that [`Unverified::verify`] checks.
#[derive(Debug, Clone, Copy)]
pub struct Unverified {
    fields: RecordHeader,
}

impl Unverified {
    /// Parses the first [`HEADER_BYTES`] of `bytes`; checks the magic only.
    pub fn parse(bytes: &[u8]) -> Result<Unverified, String> {
        let Some(bytes) = bytes.get(..HEADER_BYTES) else {
            return Err(format!("record header truncated to {} bytes", bytes.len()));
        };
        let magic = u32_at(bytes, MAGIC_OFFSET);
        if magic != MAGIC {
            return Err(format!("bad record magic {magic:#010x}"));
        }
        let fields = RecordHeader {
            payload_len: u32_at(bytes, PAYLOAD_LEN_OFFSET),
            index: u64_at(bytes, INDEX_OFFSET),
            term: u64_at(bytes, TERM_OFFSET),
            synced_len: u64_at(bytes, SYNCED_LEN_OFFSET),
            checksum: hash_at(bytes, CHECKSUM_OFFSET),
            chain: hash_at(bytes, CHAIN_OFFSET),
        };
        Ok(Unverified { fields })
    }

    /// The payload length the header claims (untrusted).
    pub fn claimed_payload_len(&self) -> u32 {
        self.fields.payload_len
    }

    /// Bytes the record would occupy if its claimed length were true.
    pub fn claimed_record_bytes(&self) -> u64 {
        self.fields.record_bytes()
    }

    /// Starts verification: feed the payload to [`Verifier::update`].
    pub fn verifier(self) -> Verifier {
        Verifier {
            payload_hasher: blake3::Hasher::new(),
            header: self,
        }
    }
}

/// Checksums a payload fed in pieces, then yields the trusted header.
pub struct Verifier {
    payload_hasher: blake3::Hasher,
    header: Unverified,
}

impl Verifier {
    pub fn update(&mut self, payload_piece: &[u8]) {
        self.payload_hasher.update(payload_piece);
    }

    /// Compares the checksum; on success the header fields can be trusted.
    pub fn finish(self) -> Result<RecordHeader, String> {
        let fields = self.header.fields;
        let payload_hash = *self.payload_hasher.finalize().as_bytes();
        let expected = checksum(
            fields.payload_len,
            fields.index,
            fields.term,
            fields.synced_len,
            &payload_hash,
        );
        if expected != fields.checksum {
            return Err("record checksum mismatch".to_string());
        }
        Ok(fields)
    }
}

/// Checks that the padding after a payload is all zeros.
pub fn check_padding(padding: &[u8]) -> Result<(), String> {
    match padding.iter().position(|&b| b != 0) {
        None => Ok(()),
        Some(at) => Err(format!("non-zero padding byte at payload end + {at}")),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn hash_at(bytes: &[u8], at: usize) -> Hash {
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&bytes[at..at + 32]);
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole record as it lands on disk: header, payload, padding.
    fn encode(out: &mut Vec<u8>, at: &Placement, payload: &HashedPayload<&[u8]>) -> RecordHeader {
        out.clear();
        let header = encode_header(out, at, payload);
        out.extend_from_slice(payload.bytes());
        out.extend_from_slice(padding(header.payload_len));
        header
    }

    fn verify(bytes: &[u8]) -> Result<RecordHeader, String> {
        let unverified = Unverified::parse(bytes)?;
        let len = usize::try_from(unverified.claimed_payload_len()).unwrap();
        let payload = bytes.get(HEADER_BYTES..HEADER_BYTES + len).ok_or("short")?;
        let mut verifier = unverified.verifier();
        verifier.update(payload);
        check_padding(&bytes[HEADER_BYTES + len..])?;
        verifier.finish()
    }

    #[test]
    fn encoded_record_verifies_and_is_aligned() {
        let mut out = Vec::new();
        for len in 0..20usize {
            let payload = vec![7u8; len];
            let at = Placement {
                index: 5,
                term: 2,
                synced_len: 80,
                previous_chain: [1u8; 32],
            };
            let header = encode(&mut out, &at, &HashedPayload::new(&payload[..]));
            assert_eq!(out.len() as u64 % ALIGN_BYTES, 0);
            assert_eq!(out.len() as u64, header.record_bytes());
            assert_eq!(verify(&out), Ok(header));
        }
    }

    #[test]
    fn every_bit_flip_in_header_or_payload_is_detected() {
        let mut out = Vec::new();
        let at = Placement {
            index: 9,
            term: 3,
            synced_len: 80,
            previous_chain: [0u8; 32],
        };
        let header = encode(&mut out, &at, &HashedPayload::new(&b"alert payload"[..]));
        for bit in 0..(CHAIN_OFFSET + 13) * 8 {
            let mut damaged = out.clone();
            let at = if bit / 8 < CHAIN_OFFSET {
                bit / 8
            } else {
                HEADER_BYTES + bit / 8 - CHAIN_OFFSET
            };
            damaged[at] ^= 1 << (bit % 8);
            let result = verify(&damaged);
            assert!(
                result.is_err() || result.unwrap() != header,
                "flip at byte {at} undetected"
            );
        }
    }

    #[test]
    fn chain_depends_on_previous_value() {
        let checksum = [3u8; 32];
        assert_ne!(chain(&[0u8; 32], &checksum), chain(&[1u8; 32], &checksum));
    }
}
