//! A checksummed shadow copy of the first page of the index file, kept in
//! a side file (`<index>.header`), so that a power cut that tears redb's
//! header cannot make the whole index unreadable.
//!
//! redb rewrites its header (magic number, layout, the two commit slots) in
//! place at every commit. Its commit slots are checksummed, but the fixed
//! part is not: a torn write that leaves garbage in that sector makes the
//! file unopenable ("not a redb database"), although every page it points to
//! is intact. The seam's fault model includes exactly such torn writes.
//!
//! Protocol, run by the backend at each `sync_data`:
//!
//! 1. sync the index file (data pages and the header redb wrote in place);
//! 2. if the first page changed, write it to the side file and sync that.
//!
//! On open, before redb sees the file, a valid shadow that differs from the
//! first page of the index is written back in place and synced. The shadow
//! always holds a header that was durable and intact in place when it was
//! copied, and that refers only to synced pages; a header written after it
//! belongs to a commit whose sync never completed (never acknowledged), so
//! rolling it back is what a crash means anyway. A torn shadow fails its
//! checksum and is ignored: it was being written, so the header in place
//! was just synced and is intact.
//!
//! ```text
//! offset    size  field
//!      0       8  magic              b"FINKIHDR"
//!      8       4  version u32        SHADOW_VERSION (1)
//!     12       4  header_len u32     SHADOW_BYTES (4096)
//!     16       n  header             the first header_len bytes of the index file
//!   16+n      32  checksum           BLAKE3(bytes 0..16+n)
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use finkfs_seam::{parent_dir, DiskRef, FileRef};

/// Bytes of the index file shadowed: redb's first page, which holds its
/// header and both commit slots.
pub const SHADOW_BYTES: usize = 4096;
pub const SHADOW_VERSION: u32 = 1;
const MAGIC: [u8; 8] = *b"FINKIHDR";

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const LEN_OFFSET: usize = VERSION_OFFSET + 4;
const HEADER_OFFSET: usize = LEN_OFFSET + 4;
const CHECKSUM_OFFSET: usize = HEADER_OFFSET + SHADOW_BYTES;
/// Bytes of the side file.
pub const SHADOW_FILE_BYTES: usize = CHECKSUM_OFFSET + 32;

/// The side file of the index at `index_path`.
pub fn shadow_path(index_path: &Path) -> PathBuf {
    let mut name = index_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".header");
    parent_dir(index_path).join(name)
}

fn encode(header: &[u8]) -> Vec<u8> {
    assert_eq!(header.len(), SHADOW_BYTES);
    let mut bytes = Vec::with_capacity(SHADOW_FILE_BYTES);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&SHADOW_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(SHADOW_BYTES as u32).to_le_bytes());
    bytes.extend_from_slice(header);
    let checksum = blake3::hash(&bytes);
    bytes.extend_from_slice(checksum.as_bytes());
    assert_eq!(bytes.len(), SHADOW_FILE_BYTES);
    bytes
}

/// The shadowed header, if `bytes` hold a valid side file.
fn decode(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() != SHADOW_FILE_BYTES {
        return Err(format!(
            "side file of {} bytes, expected {SHADOW_FILE_BYTES}",
            bytes.len()
        ));
    }
    if blake3::hash(&bytes[..CHECKSUM_OFFSET]).as_bytes()[..] != bytes[CHECKSUM_OFFSET..] {
        return Err("checksum mismatch".to_string());
    }
    if bytes[MAGIC_OFFSET..VERSION_OFFSET] != MAGIC {
        return Err("bad magic".to_string());
    }
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[VERSION_OFFSET..LEN_OFFSET]);
    let version = u32::from_le_bytes(word);
    word.copy_from_slice(&bytes[LEN_OFFSET..HEADER_OFFSET]);
    let len = u32::from_le_bytes(word) as usize;
    if version != SHADOW_VERSION || len != SHADOW_BYTES {
        return Err(format!("unsupported version {version} or length {len}"));
    }
    Ok(&bytes[HEADER_OFFSET..CHECKSUM_OFFSET])
}

/// The side file and the header it last recorded.
#[derive(Debug)]
pub struct HeaderShadow {
    path: PathBuf,
    file: FileRef,
    recorded: Mutex<Option<Vec<u8>>>,
}

impl HeaderShadow {
    /// Opens the side file of `index` (creating it if missing) and, if it
    /// holds a valid header that differs from the one in place, writes it
    /// back into the index file and syncs it.
    pub fn open_and_restore(
        disk: &DiskRef,
        path: PathBuf,
        index: &FileRef,
    ) -> io::Result<HeaderShadow> {
        let file = if disk.exists(&path)? {
            disk.open(&path)?
        } else {
            let file = disk.create(&path)?;
            disk.sync_dir(parent_dir(&path))?;
            file
        };
        let shadow = HeaderShadow {
            path,
            file,
            recorded: Mutex::new(None),
        };
        shadow.restore(index)?;
        Ok(shadow)
    }

    fn restore(&self, index: &FileRef) -> io::Result<()> {
        let len = usize::try_from(self.file.len()?).unwrap_or(usize::MAX);
        if len == 0 {
            return Ok(());
        }
        let mut bytes = vec![0u8; len.min(SHADOW_FILE_BYTES + 1)];
        self.file.read_at(0, &mut bytes)?;
        let header = match decode(&bytes) {
            Ok(header) => header,
            Err(why) => {
                // Torn while being rewritten: the header in place was synced
                // just before, so it stands. The next sync rewrites the copy.
                tracing::warn!(file = %self.path.display(), %why, "ignoring an invalid index header shadow");
                return Ok(());
            }
        };
        if index.len()? < SHADOW_BYTES as u64 {
            // Truncated: no header write can help; redb reports the damage.
            return Ok(());
        }
        let mut in_place = vec![0u8; SHADOW_BYTES];
        index.read_at(0, &mut in_place)?;
        if in_place != header {
            tracing::warn!(file = %self.path.display(), "index header differs from its shadow (power cut during a commit, or damage); restoring it");
            index.write_at(0, header)?;
            index.sync()?;
        }
        *self.recorded.lock().unwrap_or_else(PoisonError::into_inner) = Some(header.to_vec());
        Ok(())
    }

    /// Copies the first page of `index` (already synced) into the side file
    /// and syncs it, unless it is unchanged since the last copy.
    pub fn record(&self, index: &FileRef) -> io::Result<()> {
        if index.len()? < SHADOW_BYTES as u64 {
            return Ok(());
        }
        let mut header = vec![0u8; SHADOW_BYTES];
        index.read_at(0, &mut header)?;
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if recorded.as_deref() == Some(&header[..]) {
            return Ok(());
        }
        // Forget the old copy first: if this write fails, the next record
        // must not skip writing because it looks unchanged.
        *recorded = None;
        self.file.write_at(0, &encode(&header))?;
        self.file.sync()?;
        *recorded = Some(header);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_round_trips_and_detects_damage() {
        let header: Vec<u8> = (0..SHADOW_BYTES).map(|i| i as u8).collect();
        let bytes = encode(&header);
        assert_eq!(decode(&bytes), Ok(&header[..]));
        for byte in [0, 9, 13, 100, SHADOW_FILE_BYTES - 1] {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 0x10;
            assert!(decode(&damaged).is_err(), "byte {byte}");
        }
        assert!(decode(&bytes[..100]).is_err());
    }

    #[test]
    fn shadow_file_sits_next_to_the_index() {
        assert_eq!(
            shadow_path(Path::new("node/index.redb")),
            PathBuf::from("node/index.redb.header")
        );
        assert_eq!(
            shadow_path(Path::new("index.redb")),
            PathBuf::from("index.redb.header")
        );
    }
}
