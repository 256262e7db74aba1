//! Pack file names and a bounded cache of open pack handles shared by readers.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use finkfs_seam::{DiskRef, FileRef};

/// Open pack handles kept for readers. Past this many, one is closed before
/// another is opened: a store of many packs must not run out of descriptors.
pub const OPEN_PACKS_MAX: usize = 256;

const PACK_SUFFIX: &str = ".pack";
const PACK_SEQ_DIGITS: usize = 20;

/// The file name of pack `seq`: its sequence number zero padded, so that
/// names sort in sequence order.
pub fn pack_file_name(seq: u64) -> String {
    format!("{seq:0width$}{PACK_SUFFIX}", width = PACK_SEQ_DIGITS)
}

/// The sequence number of a pack file name, or `None` for any other name.
pub fn parse_pack_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(PACK_SUFFIX)?;
    if digits.len() != PACK_SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The open handles of a store's packs, usable from many threads.
#[derive(Debug)]
pub struct PackFiles {
    disk: DiskRef,
    dir: PathBuf,
    /// Ordered, so that the eviction victim does not depend on a hasher's
    /// random keys: a simulated run must replay exactly.
    open: RwLock<BTreeMap<u64, FileRef>>,
}

impl PackFiles {
    pub fn new(disk: DiskRef, dir: PathBuf) -> Self {
        PackFiles {
            disk,
            dir,
            open: RwLock::new(BTreeMap::new()),
        }
    }

    /// The path of pack `seq`, relative to the disk root.
    pub fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(pack_file_name(seq))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn disk(&self) -> &DiskRef {
        &self.disk
    }

    /// A handle on pack `seq`, opening the file if no reader holds it yet.
    pub fn get(&self, seq: u64) -> io::Result<FileRef> {
        let cached = self
            .open
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&seq)
            .cloned();
        if let Some(file) = cached {
            return Ok(file);
        }
        let file = self.disk.open(&self.path(seq))?;
        self.insert(seq, file.clone());
        Ok(file)
    }

    /// Remembers a handle (for a pack just created).
    pub fn insert(&self, seq: u64, file: FileRef) {
        let mut open = self.open.write().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= OPEN_PACKS_MAX && !open.contains_key(&seq) {
            // The lowest sequence goes (the oldest pack, least likely to
            // be written): a closed pack is simply reopened on its next
            // read. Readers still holding the handle keep it alive.
            if let Some(victim) = open.keys().next().copied() {
                open.remove(&victim);
            }
        }
        open.insert(seq, file);
        assert!(open.len() <= OPEN_PACKS_MAX);
    }

    /// Sequence numbers of every pack in the directory, ascending. Other
    /// names are left alone and reported.
    pub fn list(&self) -> io::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        for name in self.disk.list(&self.dir)? {
            match parse_pack_file_name(&name) {
                Some(seq) => seqs.push(seq),
                None => {
                    tracing::warn!(dir = %self.dir.display(), %name, "ignoring a file that is not a pack")
                }
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_names_round_trip_and_sort_by_sequence() {
        assert_eq!(pack_file_name(42), "00000000000000000042.pack");
        assert_eq!(
            parse_pack_file_name(&pack_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert!(pack_file_name(9) < pack_file_name(10));
    }

    #[test]
    fn other_names_are_not_packs() {
        for name in [
            "42.pack",
            "0000000000000000004x.pack",
            "00000000000000000042.tmp",
            "",
        ] {
            assert_eq!(parse_pack_file_name(name), None, "{name}");
        }
    }
}
