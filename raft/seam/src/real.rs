//! The real disk: plain files under a root directory. This is the only place
//! in finkfs that calls `std::fs` for durable data.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::path::checked;
use crate::{Disk, DiskFile, FileRef};

/// Files under `root`, synced with `fdatasync` and directory `fsync`.
#[derive(Debug, Clone)]
pub struct RealDisk {
    root: PathBuf,
}

impl RealDisk {
    /// A disk rooted at `root`, which is created (durably) if missing.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            fs::create_dir_all(&root)?;
            if let Some(parent) = root.parent() {
                sync_directory(if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                })?;
            }
        }
        Ok(Self { root })
    }

    /// The directory this disk lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(self.root.join(checked(path)?))
    }
}

fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Most pieces one `pwritev` takes (Linux's `IOV_MAX`; more is `EINVAL`).
const IOV_MAX: usize = 1024;

#[derive(Debug)]
struct RealFile {
    file: File,
}

impl DiskFile for RealFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// `pwritev`, repeated after a short write, at most [`IOV_MAX`] pieces
    /// at a time: the kernel copies each piece straight into the page cache.
    fn write_vectored_at(&self, mut offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let mut pieces: Vec<IoSlice<'_>> = bufs.to_vec();
        let mut rest: &mut [IoSlice<'_>] = &mut pieces;
        IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            let call = rest.len().min(IOV_MAX);
            match rustix::io::pwritev(&self.file, &rest[..call], offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    offset += written as u64;
                    IoSlice::advance_slices(&mut rest, written);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Disk for RealDisk {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.full(path)?)?;
        Ok(Arc::new(RealFile { file }))
    }

    fn open(&self, path: &Path) -> io::Result<FileRef> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.full(path)?)?;
        Ok(Arc::new(RealFile { file }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(self.full(path)?)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(self.full(from)?, self.full(to)?)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        checked(path)?;
        // Create one level at a time so that each new directory can be synced
        // into its parent: a power cut must not lose a directory whose files
        // were already synced.
        let mut current = PathBuf::new();
        for segment in path.iter() {
            let parent = current.clone();
            current.push(segment);
            let full = self.root.join(&current);
            match fs::create_dir(&full) {
                Ok(()) => sync_directory(&self.root.join(&parent))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && full.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        sync_directory(&self.full(path)?)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.full(dir)?)? {
            let name = entry?.file_name();
            let name = name.into_string().map_err(|n| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("file name {n:?} is not UTF-8"),
                )
            })?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.full(path)?.try_exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_file, write_file_atomic};

    fn disk() -> (tempfile::TempDir, RealDisk) {
        let dir = tempfile::tempdir().unwrap();
        let disk = RealDisk::open(dir.path().join("data")).unwrap();
        (dir, disk)
    }

    #[test]
    fn short_read_is_an_error_not_a_partial_success() {
        let (_dir, disk) = disk();
        let file = disk.create(Path::new("f")).unwrap();
        file.write_at(0, b"abc").unwrap();
        let mut buf = [0u8; 4];
        let err = file.read_at(0, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn write_past_end_extends_with_zeros() {
        let (_dir, disk) = disk();
        let file = disk.create(Path::new("f")).unwrap();
        file.write_at(4, b"x").unwrap();
        let mut buf = [9u8; 5];
        file.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0\0\0x");
        assert_eq!(file.len().unwrap(), 5);
    }

    #[test]
    fn vectored_write_lands_as_the_concatenation() {
        let (_dir, disk) = disk();
        let file = disk.create(Path::new("f")).unwrap();
        file.write_at(0, b"0123456789").unwrap();
        // More pieces than one pwritev takes, empty ones among them.
        let pieces: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![(i % 251) as u8; (i % 3) as usize])
            .collect();
        let slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
        file.write_vectored_at(4, &slices).unwrap();
        let joined = crate::join(&slices);
        let mut back = vec![0u8; 4 + joined.len()];
        file.read_at(0, &mut back).unwrap();
        assert_eq!(&back[..4], b"0123");
        assert_eq!(&back[4..], &joined[..]);
        assert_eq!(file.len().unwrap(), 4 + joined.len() as u64);
    }

    #[test]
    fn create_refuses_existing_and_escaping_paths() {
        let (_dir, disk) = disk();
        disk.create(Path::new("f")).unwrap();
        let err = disk.create(Path::new("f")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let err = disk.create(Path::new("../escape")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_lists_sorted() {
        let (_dir, disk) = disk();
        disk.create_dir_all(Path::new("a/b")).unwrap();
        write_file_atomic(&disk, Path::new("a/b/f"), b"old contents").unwrap();
        write_file_atomic(&disk, Path::new("a/b/f"), b"new").unwrap();
        assert_eq!(read_file(&disk, Path::new("a/b/f")).unwrap(), b"new");
        disk.create(Path::new("a/b/e")).unwrap();
        assert_eq!(disk.list(Path::new("a/b")).unwrap(), vec!["e", "f"]);
    }
}
