//! Plain file operations on the backing directory.
//!
//! The crash file system sits beneath the I/O seam: the backing directory is
//! its disk, and this module is the only place that touches it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::pending::PendingOp;

/// Reads up to `buf.len()` bytes at `offset`; bytes past the end stay as they
/// are (the caller passes zeros). Returns how many bytes were read.
pub fn read_at(path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let file = File::open(path)?;
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Replays `ops` onto the file at `path` (created if missing), fsyncs it,
/// and returns its new length.
pub fn apply_and_sync(path: &Path, ops: &[PendingOp]) -> io::Result<u64> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    for op in ops {
        match op {
            PendingOp::Write { offset, bytes } => file.write_all_at(bytes, *offset)?,
            PendingOp::SetLen { len_bytes } => file.set_len(*len_bytes)?,
        }
    }
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// Creates an empty file at `path` and fsyncs it.
pub fn create_empty(path: &Path) -> io::Result<()> {
    File::create(path)?.sync_all()
}

/// Makes the entries of the directory at `path` durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Creates `path` as a directory unless it already is one.
pub fn ensure_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}

/// Removes `path` and everything below it; a missing path is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Flips the bits of `mask` in the byte at `offset` of the file at `path`.
pub fn flip_bits(path: &Path, offset: u64, mask: u8) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset)?;
    byte[0] ^= mask;
    file.write_all_at(&byte, offset)?;
    file.sync_all()
}

/// Removes the file at `path`.
pub fn remove_file(path: &Path) -> io::Result<()> {
    fs::remove_file(path)
}
