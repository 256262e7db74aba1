//! The bytes the simulator's workload writes: every object names the
//! operation that wrote it, and every byte of it can be checked.
//!
//! Layout (little-endian):
//!
//! ```text
//! offset  size  field
//!      0     8  magic "FKSIMOBJ"
//!      8     8  op_id: the workload operation that wrote the object
//!     16     8  len: the whole object's length in bytes
//!     24   len-24  filler: BLAKE3 XOF keyed by op_id, so each byte depends
//!                  on the operation and its position
//! ```
//!
//! A read that returns bytes which do not parse, or whose filler does not
//! match its op_id, served damaged data (invariant 2); bytes that parse name
//! exactly the operation whose value the read saw.

/// Bytes before the filler.
pub const HEADER_BYTES: usize = 24;
const MAGIC: &[u8; 8] = b"FKSIMOBJ";

/// Why bytes read back are not a workload object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Shorter than the header, or than the length the header states.
    #[error("{got} bytes, expected {expected}")]
    Length {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The magic is wrong: not an object of this workload.
    #[error("no object header")]
    Magic,
    /// The filler differs from what the op id gives, first at `offset`.
    #[error("byte {offset} differs from what op {op_id} wrote")]
    Filler {
        /// The op id the header names.
        op_id: u64,
        /// First differing byte.
        offset: usize,
    },
}

/// The object operation `op_id` writes, `len` bytes long (at least the
/// header).
pub fn object(op_id: u64, len: usize) -> Vec<u8> {
    let len = len.max(HEADER_BYTES);
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&op_id.to_le_bytes());
    bytes.extend_from_slice(&(len as u64).to_le_bytes());
    bytes.resize(len, 0);
    filler(op_id).fill(&mut bytes[HEADER_BYTES..]);
    bytes
}

/// The op id of an object read back, every byte checked.
pub fn parse(bytes: &[u8]) -> Result<u64, PayloadError> {
    if bytes.len() < HEADER_BYTES {
        return Err(PayloadError::Length {
            got: bytes.len(),
            expected: HEADER_BYTES,
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(PayloadError::Magic);
    }
    let op_id = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if len != bytes.len() as u64 {
        return Err(PayloadError::Length {
            got: bytes.len(),
            expected: usize::try_from(len).unwrap_or(usize::MAX),
        });
    }
    let mut expected = vec![0u8; bytes.len() - HEADER_BYTES];
    filler(op_id).fill(&mut expected);
    if let Some(at) = expected
        .iter()
        .zip(&bytes[HEADER_BYTES..])
        .position(|(e, g)| e != g)
    {
        return Err(PayloadError::Filler {
            op_id,
            offset: HEADER_BYTES + at,
        });
    }
    Ok(op_id)
}

fn filler(op_id: u64) -> blake3::OutputReader {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"finkfs-sim object filler");
    hasher.update(&op_id.to_le_bytes());
    hasher.finalize_xof()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_and_name_their_operation() {
        for (op_id, len) in [(0, 0), (1, 24), (7, 25), (42, 65_536)] {
            let bytes = object(op_id, len);
            assert_eq!(bytes.len(), len.max(HEADER_BYTES));
            assert_eq!(parse(&bytes), Ok(op_id));
        }
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let bytes = object(9, 300);
        for bit in (0..bytes.len() * 8).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(parse(&damaged).is_err(), "bit {bit} flipped unnoticed");
        }
    }

    #[test]
    fn another_operations_object_is_not_mistaken_for_damage() {
        assert_eq!(parse(&object(3, 100)), Ok(3));
        assert_ne!(parse(&object(3, 100)), parse(&object(4, 100)));
    }

    #[test]
    fn truncated_and_foreign_bytes_are_refused() {
        let bytes = object(5, 100);
        assert!(matches!(
            parse(&bytes[..99]),
            Err(PayloadError::Length { .. })
        ));
        assert!(matches!(
            parse(&bytes[..10]),
            Err(PayloadError::Length { .. })
        ));
        assert_eq!(parse(&[0u8; 100]), Err(PayloadError::Magic));
    }
}
