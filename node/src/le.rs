//! Little-endian fixed-width fields of the node's on-disk formats. Callers
//! check lengths (and checksums) before reading, so an out-of-range offset
//! is a programmer error and panics.

/// The `u32` stored little-endian at `offset`.
pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

/// The `u64` stored little-endian at `offset`.
pub(crate) fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}
