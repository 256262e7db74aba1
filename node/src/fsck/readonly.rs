//! A view of a disk that refuses every change. fsck reads a data directory
//! through it, so that no code path it reuses (journal, meta, blocks,
//! snapshots) can write, sync, create, rename or remove anything there,
//! whatever that code would do on its own.

use std::io;
use std::path::Path;
use std::sync::Arc;

use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};

/// The error every refused change returns.
fn refused(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("fsck never modifies the data directory (refused {what})"),
    )
}

/// A disk whose files can only be read.
#[derive(Debug)]
pub struct ReadOnlyDisk {
    inner: DiskRef,
}

impl ReadOnlyDisk {
    pub fn wrap(inner: DiskRef) -> DiskRef {
        Arc::new(ReadOnlyDisk { inner })
    }
}

impl Disk for ReadOnlyDisk {
    fn create(&self, _path: &Path) -> io::Result<FileRef> {
        Err(refused("create"))
    }

    fn open(&self, path: &Path) -> io::Result<FileRef> {
        let inner = self.inner.open(path)?;
        Ok(Arc::new(ReadOnlyFile { inner }))
    }

    fn remove(&self, _path: &Path) -> io::Result<()> {
        Err(refused("remove"))
    }

    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Err(refused("rename"))
    }

    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Err(refused("create_dir_all"))
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Err(refused("sync_dir"))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}

/// A file that can only be read.
#[derive(Debug)]
struct ReadOnlyFile {
    inner: FileRef,
}

impl DiskFile for ReadOnlyFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, _offset: u64, _buf: &[u8]) -> io::Result<()> {
        Err(refused("write"))
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, _len_bytes: u64) -> io::Result<()> {
        Err(refused("set_len"))
    }

    fn sync(&self) -> io::Result<()> {
        Err(refused("sync"))
    }
}
