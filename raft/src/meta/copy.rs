//! One copy of the meta record (`meta.a` or `meta.b`).
//!
//! Byte layout (integers little-endian); the file holds exactly this:
//!
//! ```text
//! offset  size  field
//!      0     4  magic        "FKMT"
//!      4     4  version      format version (1)
//!      8     8  generation   0 = never saved (then payload_len is 0)
//!     16     4  payload_len  n, <= PAYLOAD_BYTES_MAX
//!     20     n  payload
//!   20+n    32  checksum     BLAKE3(bytes 0..20+n)
//! ```
//!
//! The checksum sits at the end of the file, so decode finds it from the file
//! length and verifies it before reading any field.

/// Magic number that starts every copy.
pub const MAGIC: u32 = u32::from_le_bytes(*b"FKMT");
/// The format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest payload a copy holds: a vote and a few log ids, with room to grow.
pub const PAYLOAD_BYTES_MAX: u32 = 1 << 20;

pub const MAGIC_OFFSET: usize = 0;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + 4;
pub const GENERATION_OFFSET: usize = VERSION_OFFSET + 4;
pub const PAYLOAD_LEN_OFFSET: usize = GENERATION_OFFSET + 8;
pub const PAYLOAD_OFFSET: usize = PAYLOAD_LEN_OFFSET + 4;
pub const CHECKSUM_BYTES: usize = 32;
/// Size of a copy with an empty payload.
pub const EMPTY_COPY_BYTES: usize = PAYLOAD_OFFSET + CHECKSUM_BYTES;
/// Size of the largest valid copy.
pub const COPY_BYTES_MAX: u64 = EMPTY_COPY_BYTES as u64 + PAYLOAD_BYTES_MAX as u64;

const _: () = assert!(EMPTY_COPY_BYTES == 52);

/// A verified copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub generation: u64,
    pub payload: Option<Vec<u8>>,
}

/// Why bytes are not a usable copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyProblem {
    /// Damaged: the offset of the first byte found wrong, and why.
    Damaged { offset: u64, reason: String },
    /// The copy verifies but was written by a newer format.
    UnsupportedVersion(u32),
}

fn damaged(offset: usize, reason: String) -> CopyProblem {
    CopyProblem::Damaged {
        offset: offset as u64,
        reason,
    }
}

/// Encodes a copy. `payload` is None only for generation 0.
pub fn encode(generation: u64, payload: Option<&[u8]>) -> Vec<u8> {
    assert_eq!(
        generation == 0,
        payload.is_none(),
        "generation 0 and only it has no payload"
    );
    let payload = payload.unwrap_or_default();
    let payload_len =
        u32::try_from(payload.len()).expect("payload checked against PAYLOAD_BYTES_MAX");
    assert!(payload_len <= PAYLOAD_BYTES_MAX);
    let mut out = Vec::with_capacity(EMPTY_COPY_BYTES + payload.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(payload);
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    debug_assert_eq!(decode(&out).map(|c| c.generation), Ok(generation));
    out
}

/// Decodes a copy, verifying the checksum before trusting any field.
pub fn decode(bytes: &[u8]) -> Result<Copy, CopyProblem> {
    if bytes.len() < EMPTY_COPY_BYTES {
        return Err(damaged(
            bytes.len(),
            format!(
                "truncated: {} bytes, a copy has at least {EMPTY_COPY_BYTES}",
                bytes.len()
            ),
        ));
    }
    let checksum_at = bytes.len() - CHECKSUM_BYTES;
    let magic = u32_at(bytes, MAGIC_OFFSET);
    if blake3::hash(&bytes[..checksum_at]).as_bytes()[..] != bytes[checksum_at..] {
        if magic != MAGIC {
            return Err(damaged(MAGIC_OFFSET, format!("bad magic {magic:#010x}")));
        }
        return Err(damaged(checksum_at, "checksum mismatch".to_string()));
    }
    if magic != MAGIC {
        return Err(damaged(MAGIC_OFFSET, format!("bad magic {magic:#010x}")));
    }
    let version = u32_at(bytes, VERSION_OFFSET);
    if version != FORMAT_VERSION {
        return Err(CopyProblem::UnsupportedVersion(version));
    }
    let payload_len = u32_at(bytes, PAYLOAD_LEN_OFFSET);
    if payload_len as usize != checksum_at - PAYLOAD_OFFSET {
        let reason = format!(
            "payload length {payload_len} does not match the file size {}",
            bytes.len()
        );
        return Err(damaged(PAYLOAD_LEN_OFFSET, reason));
    }
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[GENERATION_OFFSET..PAYLOAD_LEN_OFFSET]);
    let generation = u64::from_le_bytes(raw);
    let payload = bytes[PAYLOAD_OFFSET..checksum_at].to_vec();
    match (generation, payload.is_empty()) {
        (0, true) => Ok(Copy {
            generation,
            payload: None,
        }),
        (0, false) => Err(damaged(
            GENERATION_OFFSET,
            "generation 0 carries a payload".to_string(),
        )),
        _ => Ok(Copy {
            generation,
            payload: Some(payload),
        }),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_round_trips_with_and_without_payload() {
        assert_eq!(
            decode(&encode(0, None)),
            Ok(Copy {
                generation: 0,
                payload: None
            })
        );
        let copy = decode(&encode(7, Some(b"vote"))).unwrap();
        assert_eq!(
            copy,
            Copy {
                generation: 7,
                payload: Some(b"vote".to_vec())
            }
        );
        let empty = decode(&encode(8, Some(b""))).unwrap();
        assert_eq!(empty.payload, Some(Vec::new()));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let bytes = encode(3, Some(b"term 5 voted for 2"));
        for bit in 0..bytes.len() * 8 {
            let mut copy = bytes.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode(&copy), Err(CopyProblem::Damaged { .. })),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn truncated_and_extended_copies_are_damaged() {
        let bytes = encode(3, Some(b"payload"));
        for len in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..len]), Err(CopyProblem::Damaged { .. })),
                "len {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0u8; 8]);
        assert!(matches!(decode(&longer), Err(CopyProblem::Damaged { .. })));
    }
}
