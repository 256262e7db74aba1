//! TEST ONLY: a disk on which the Raft log's fsyncs do nothing.
//!
//! A node that acknowledges writes its journal never made durable is the
//! bug the power-cut harness (`finkfs-chaos power-cut`) exists to catch;
//! this wrapper builds that bug on purpose, so that a test can show the
//! harness reports the loss. It is switched on only by the hidden flag
//! `--test-unsafe-skip-journal-fsync` of `finkfs-node` (see
//! `docs/chaos.md`); nothing else constructs it. The fsyncs of the journal
//! and of the meta copies (vote, committed id) are skipped together, files
//! and directories: a power cut then takes both back to the same older
//! state, so the node starts again, consistent with itself, without the
//! writes it acknowledged. Skipping the journal's alone would leave the
//! synced committed id naming lost entries, which the node detects and
//! refuses to start on: a different bug from the one to show.

use std::io::{self, IoSlice};
use std::path::Path;

use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};

/// `inner`, with every fsync under a `journal/` or `meta/` directory a no-op.
#[derive(Debug)]
pub struct SkipRaftLogSync {
    inner: DiskRef,
}

impl SkipRaftLogSync {
    pub fn new(inner: DiskRef) -> SkipRaftLogSync {
        SkipRaftLogSync { inner }
    }

    fn wrap(path: &Path, file: io::Result<FileRef>) -> io::Result<FileRef> {
        let file = file?;
        if !is_raft_log(path) {
            return Ok(file);
        }
        Ok(std::sync::Arc::new(UnsyncedFile { inner: file }))
    }
}

fn is_raft_log(path: &Path) -> bool {
    path.iter()
        .any(|component| component == "journal" || component == "meta")
}

impl Disk for SkipRaftLogSync {
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
        if is_raft_log(path) {
            return Ok(());
        }
        self.inner.sync_dir(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}

/// A journal or meta file whose `sync` claims success without syncing.
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
    fn write_vectored_at(&self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        self.inner.write_vectored_at(offset, bufs)
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
    fn only_paths_under_journal_or_meta_directories_lose_their_fsync() {
        assert!(is_raft_log(&PathBuf::from("groups/0/journal/00000001.seg")));
        assert!(is_raft_log(&PathBuf::from("groups/0/meta/meta.a")));
        assert!(!is_raft_log(&PathBuf::from("groups/0/blocks/000001.pack")));
        assert!(!is_raft_log(&PathBuf::from("groups/0/index.redb")));
        assert!(!is_raft_log(&PathBuf::from("groups/0/snapshots/snap-1")));
    }
}
