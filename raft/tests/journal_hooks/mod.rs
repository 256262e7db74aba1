//! A disk for the log-store tests that runs a test's hooks around the writes
//! and syncs of journal files (to hold, count or observe them), and passes
//! everything else through unchanged.

#![allow(dead_code)]

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};

/// What a test does around journal I/O; every hook defaults to nothing.
pub trait JournalHooks: Debug + Send + Sync + 'static {
    /// Before each write (plain or vectored) to a journal file.
    fn before_write(&self) {}
    /// Before each sync of a journal file.
    fn before_sync(&self) {}
    /// After each successful sync of a journal file.
    fn after_sync(&self) {}
}

/// `inner`, with `hooks` run for the files under `journal_dir`.
pub fn hooked_disk<H: JournalHooks>(inner: DiskRef, journal_dir: &Path, hooks: Arc<H>) -> DiskRef {
    Arc::new(HookedDisk {
        inner,
        journal_dir: journal_dir.to_path_buf(),
        hooks,
    })
}

#[derive(Debug)]
struct HookedDisk<H> {
    inner: DiskRef,
    journal_dir: PathBuf,
    hooks: Arc<H>,
}

#[derive(Debug)]
struct HookedFile<H> {
    inner: FileRef,
    hooks: Option<Arc<H>>,
}

impl<H: JournalHooks> HookedDisk<H> {
    fn wrap(&self, path: &Path, file: FileRef) -> FileRef {
        let hooks = path
            .starts_with(&self.journal_dir)
            .then(|| Arc::clone(&self.hooks));
        Arc::new(HookedFile { inner: file, hooks })
    }
}

impl<H: JournalHooks> DiskFile for HookedFile<H> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if let Some(hooks) = &self.hooks {
            hooks.before_write();
        }
        self.inner.write_at(offset, buf)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[io::IoSlice<'_>]) -> io::Result<()> {
        if let Some(hooks) = &self.hooks {
            hooks.before_write();
        }
        self.inner.write_vectored_at(offset, bufs)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn sync(&self) -> io::Result<()> {
        if let Some(hooks) = &self.hooks {
            hooks.before_sync();
        }
        self.inner.sync()?;
        if let Some(hooks) = &self.hooks {
            hooks.after_sync();
        }
        Ok(())
    }
}

impl<H: JournalHooks> Disk for HookedDisk<H> {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        Ok(self.wrap(path, self.inner.create(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<FileRef> {
        Ok(self.wrap(path, self.inner.open(path)?))
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
