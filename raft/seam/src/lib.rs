//! The I/O seam: one small trait through which every durable byte of finkfs
//! is written and read — journal, vote copies, blocks, index, snapshots,
//! backups.
//!
//! Two implementations exist: [`RealDisk`] here (files, `fsync`, directory
//! `fsync`) and the simulated disk of the `finkfs-simdisk` crate, which models
//! what a power cut does to everything that was not synced. Because nothing
//! else touches `std::fs` for durable data, the simulator can cut the power
//! under every structure.
//!
//! # Contract
//!
//! * Paths are relative to the disk's root, use `/` separators, and never
//!   contain `..`, empty segments, or NUL; anything else is `InvalidInput`.
//! * `read_at` fills the whole buffer or fails: a short read is
//!   `UnexpectedEof`, never a partial success.
//! * A write past the end extends the file; the gap reads as zeros.
//! * Nothing written is durable until [`DiskFile::sync`] returns `Ok`. A file
//!   created, renamed or removed is durable in its directory only after
//!   [`Disk::sync_dir`] of that directory returns `Ok`.
//! * After `sync` fails, the caller must assume every write since the last
//!   successful sync is lost, even if a later read returns it (the page cache
//!   may hold bytes the disk never got). Callers poison themselves and reopen.
//! * Injected or real faults surface as `io::Error`: EIO as raw OS error 5,
//!   ENOSPC as raw OS error 28 (kind `StorageFull`).

mod path;
mod real;

use std::fmt;
use std::io::{self, IoSlice};
use std::path::Path;
use std::sync::Arc;

pub use path::{check_relative_path, PathError};
pub use real::RealDisk;

/// A handle to one open file on a [`Disk`]. Shared between threads: reads and
/// writes at explicit offsets carry no cursor.
pub trait DiskFile: Send + Sync + fmt::Debug {
    /// Reads exactly `buf.len()` bytes at `offset`; a short read is
    /// `UnexpectedEof`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Writes the concatenation of `bufs` at `offset`: the same bytes, the
    /// same outcome and the same fault model as one `write_at` of the joined
    /// buffer (a power cut may keep, lose or tear any part of it; an error
    /// may leave any part of it written). The default joins the pieces and
    /// calls `write_at`; [`RealDisk`] writes them without the copy.
    fn write_vectored_at(&self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        self.write_at(offset, &join(bufs))
    }
    /// Current length in bytes (as the running system sees it, synced or not).
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends the file; extended bytes read as zeros.
    fn set_len(&self, len_bytes: u64) -> io::Result<()>;
    /// Makes every write and length change so far durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
}

/// The concatenation of `bufs`, in one buffer.
pub fn join(bufs: &[IoSlice<'_>]) -> Vec<u8> {
    let total = bufs.iter().map(|buf| buf.len()).sum();
    let mut joined = Vec::with_capacity(total);
    for buf in bufs {
        joined.extend_from_slice(buf);
    }
    joined
}

/// A shared handle to an open file.
pub type FileRef = Arc<dyn DiskFile>;

/// A directory tree of durable files. See the crate docs for the contract.
pub trait Disk: Send + Sync + fmt::Debug + 'static {
    /// Creates a new empty file and opens it for reading and writing. Fails
    /// with `AlreadyExists` if it exists. Its directory entry is durable only
    /// after `sync_dir` of its directory.
    fn create(&self, path: &Path) -> io::Result<FileRef>;
    /// Opens an existing file for reading and writing; `NotFound` if absent.
    fn open(&self, path: &Path) -> io::Result<FileRef>;
    /// Removes a file. Durable after `sync_dir` of its directory.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from`. Durable after `sync_dir` of both
    /// directories.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents, durably: each directory
    /// created is synced into its parent before this returns.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of a directory (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (files and directories), sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
}

/// A shared handle to a disk.
pub type DiskRef = Arc<dyn Disk>;

/// Writes `bytes` to `path` so that, after any power cut, `path` holds either
/// its old contents or all of `bytes`: write a temporary file, sync it,
/// rename it over `path`, sync the directory.
pub fn write_file_atomic(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temporary_sibling(path)?;
    if disk.exists(&tmp)? {
        disk.remove(&tmp)?;
    }
    let file = disk.create(&tmp)?;
    file.write_at(0, bytes)?;
    file.sync()?;
    drop(file);
    disk.rename(&tmp, path)?;
    disk.sync_dir(parent_dir(path))
}

/// Reads a whole file into memory.
pub fn read_file(disk: &dyn Disk, path: &Path) -> io::Result<Vec<u8>> {
    let file = disk.open(path)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file larger than memory"))?;
    let mut bytes = vec![0u8; len];
    file.read_at(0, &mut bytes)?;
    Ok(bytes)
}

/// The directory holding `path` (the root is the empty path).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// The name of the temporary file used to replace `path` atomically.
pub fn temporary_sibling(path: &Path) -> io::Result<std::path::PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok(parent_dir(path).join(format!("{name}.tmp")))
}

/// The error for an injected or real EIO.
pub fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

/// The error for an injected or real ENOSPC.
pub fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}
