//! redb's storage backend over the I/O seam, so that the simulated disk's
//! power cuts and faults hit the index as they hit every other structure.
//!
//! Each `sync_data` also refreshes the shadow copy of redb's header (see
//! `header_shadow.rs`) once the file is synced.
//!
//! Errors pass through unchanged (EIO stays raw OS error 5, ENOSPC 28), so
//! the index reports them faithfully. After a failed sync the backend refuses
//! every further write and sync: the page cache may hold bytes the disk never
//! got, and nothing must be built on them until the index is reopened.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use finkfs_seam::FileRef;

use super::header_shadow::HeaderShadow;

/// A redb backend writing through a seam file.
#[derive(Debug)]
pub struct SeamBackend {
    file: FileRef,
    shadow: Arc<HeaderShadow>,
    sync_failed: Arc<AtomicBool>,
}

impl SeamBackend {
    /// A backend over `file`; `sync_failed` is raised on the first failed sync.
    pub fn new(file: FileRef, shadow: Arc<HeaderShadow>, sync_failed: Arc<AtomicBool>) -> Self {
        SeamBackend {
            file,
            shadow,
            sync_failed,
        }
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.sync_failed.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "index file sync failed earlier; refusing writes until reopened",
            ));
        }
        Ok(())
    }
}

impl redb::StorageBackend for SeamBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        // The seam already fails a short read with UnexpectedEof, as redb wants.
        self.file.read_at(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.check_usable()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.check_usable()?;
        let result = self
            .file
            .sync()
            .and_then(|()| self.shadow.record(&self.file));
        if let Err(e) = &result {
            tracing::error!(error = %e, "index file sync failed; index poisoned until reopened");
            self.sync_failed.store(true, Ordering::Release);
        }
        result
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.check_usable()?;
        self.file.write_at(offset, data)
    }
}
