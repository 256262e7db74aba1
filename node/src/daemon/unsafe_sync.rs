//! TEST ONLY: a disk on which the journal's fsyncs do nothing.
//!
//! A node that acknowledges writes its journal never made durable is the
//! bug the power-cut harness (`finkfs-chaos power-cut`) exists to catch;
//! this wrapper builds that bug on purpose, so that a test can show the
//! harness reports the loss. It is switched on only by the hidden flag
//! `--test-unsafe-skip-journal-fsync` of `finkfs-node` (see
//! `docs/chaos.md`); nothing else constructs it. Directory fsyncs and the
//! fsyncs of every other structure are passed through, so the node still
//! starts after a power cut and loses only what the journal held.

use std::io;
use std::path::Path;

use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};

/// `inner`, with every file fsync under a `journal/` directory a no-op.
#[derive(Debug)]
pub struct SkipJournalSync {
    inner: DiskRef,
}

impl SkipJournalSync {
    pub fn new(inner: DiskRef) -> SkipJournalSync {
        SkipJournalSync { inner }
    }

    fn wrap(path: &Path, file: io::Result<FileRef>) -> io::Result<FileRef> {
        let file = file?;
        if !is_journal(path) {
            return Ok(file);
        }
        Ok(std::sync::Arc::new(UnsyncedFile { inner: file }))
    }
}

fn is_journal(path: &Path) -> bool {
    path.iter().any(|component| component == "journal")
}

impl Disk for SkipJournalSync {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        Self::wrap(path, self.inner.create(path))
    }
    fn open(&self, path: &Path) -> io::Result<FileRef> {
        Self::wrap(path, self.inner.open(path))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}

/// A journal file whose `sync` claims success without syncing.
#[derive(Debug)]
struct UnsyncedFile {
    inner: FileRef,
}

impl DiskFile for UnsyncedFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn only_paths_under_a_journal_directory_lose_their_fsync() {
        assert!(is_journal(&PathBuf::from("groups/0/journal/00000001.seg")));
        assert!(!is_journal(&PathBuf::from("groups/0/meta/vote.0")));
        assert!(!is_journal(&PathBuf::from("groups/0/blocks/journal.pack")));
    }
}
