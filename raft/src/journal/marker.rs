//! The purge marker: the durable record of how far the journal was purged
//! inside a segment that could not yet be deleted.
//!
//! Byte layout (integers little-endian), file `purged` in the journal
//! directory, replaced atomically (temporary file, sync, rename, sync dir):
//!
//! ```text
//! offset  size  field
//!      0     4  magic           "FKJP"
//!      4     4  version         1
//!      8     8  purged_through  records with index <= this are purged
//!     16    32  checksum        BLAKE3(bytes 0..16)
//!     48        end
//! ```
//!
//! Without it, records purged from the oldest segment would come back after
//! a restart. The marker exists only while the journal holds records above
//! it; the journal removes it whenever it becomes empty, so a new chain
//! starting at a lower index is never hidden by a stale marker.

/// File name of the marker inside the journal directory.
pub const FILE_NAME: &str = "purged";
/// Magic number that starts the marker.
pub const MAGIC: u32 = u32::from_le_bytes(*b"FKJP");
/// The marker format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

pub const MAGIC_OFFSET: usize = 0;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + 4;
pub const PURGED_OFFSET: usize = VERSION_OFFSET + 4;
pub const CHECKSUM_OFFSET: usize = PURGED_OFFSET + 8;
pub const MARKER_BYTES: usize = CHECKSUM_OFFSET + 32;

const _: () = assert!(MARKER_BYTES == 48);

/// Why a marker could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerProblem {
    Damaged(String),
    UnsupportedVersion(u32),
}

pub fn encode(purged_through: u64) -> [u8; MARKER_BYTES] {
    let mut out = [0u8; MARKER_BYTES];
    out[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&MAGIC.to_le_bytes());
    out[VERSION_OFFSET..PURGED_OFFSET].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[PURGED_OFFSET..CHECKSUM_OFFSET].copy_from_slice(&purged_through.to_le_bytes());
    let checksum = blake3::hash(&out[..CHECKSUM_OFFSET]);
    out[CHECKSUM_OFFSET..].copy_from_slice(checksum.as_bytes());
    out
}

/// Decodes a marker, verifying its checksum before trusting any field.
pub fn decode(bytes: &[u8]) -> Result<u64, MarkerProblem> {
    if bytes.len() != MARKER_BYTES {
        return Err(MarkerProblem::Damaged(format!(
            "purge marker is {} bytes, expected {MARKER_BYTES}",
            bytes.len()
        )));
    }
    if blake3::hash(&bytes[..CHECKSUM_OFFSET]).as_bytes()[..] != bytes[CHECKSUM_OFFSET..] {
        return Err(MarkerProblem::Damaged(
            "purge marker checksum mismatch".to_string(),
        ));
    }
    let field = |at: usize| {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(raw)
    };
    if field(MAGIC_OFFSET) != MAGIC {
        return Err(MarkerProblem::Damaged(format!(
            "bad purge marker magic {:#010x}",
            field(MAGIC_OFFSET)
        )));
    }
    if field(VERSION_OFFSET) != FORMAT_VERSION {
        return Err(MarkerProblem::UnsupportedVersion(field(VERSION_OFFSET)));
    }
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[PURGED_OFFSET..CHECKSUM_OFFSET]);
    Ok(u64::from_le_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_damage_is_detected() {
        let bytes = encode(77);
        assert_eq!(decode(&bytes), Ok(77));
        for bit in 0..MARKER_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode(&damaged), Err(MarkerProblem::Damaged(_))),
                "bit {bit}"
            );
        }
        assert!(matches!(
            decode(&bytes[..10]),
            Err(MarkerProblem::Damaged(_))
        ));
    }
}
