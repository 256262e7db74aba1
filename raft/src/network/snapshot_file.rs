//! `SnapshotFile`: the snapshot data of every finkfs Raft group, for the
//! network and for the state machine alike.
//!
//! A snapshot is an opaque file on a [`finkfs_seam::Disk`]; raft neither
//! knows nor parses what is inside. The handle names the file and carries its
//! length and BLAKE3, so every reader can tell a damaged file from a good one:
//! [`SnapshotFile::read_all`] and [`SnapshotFile::verify`] check both and
//! return [`SnapshotFileError::Corrupt`] (file and offset) on any mismatch,
//! never the bytes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use finkfs_seam::{parent_dir, DiskRef, FileRef};

/// Bytes read per step when hashing a whole file.
pub const SNAPSHOT_READ_STEP_BYTES: usize = 1 << 20;

/// Why a snapshot file could not be written, read or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotFileError {
    /// The disk failed.
    #[error("snapshot file {file}: I/O error at offset {offset}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Where the operation was.
        offset: u64,
        /// What the disk said.
        #[source]
        source: io::Error,
    },
    /// The file is not what its handle says: a different length or BLAKE3.
    #[error("snapshot file {file} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Where the damage was found (the file's length for a whole-file
        /// checksum mismatch).
        offset: u64,
        /// What did not match.
        reason: String,
    },
    /// The file is too large to read into memory on this machine.
    #[error("snapshot file {file} is {bytes} bytes, too large to read into memory")]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// Its length.
        bytes: u64,
    },
}

impl SnapshotFileError {
    fn io(file: &Path, offset: u64, source: io::Error) -> SnapshotFileError {
        SnapshotFileError::Io {
            file: file.to_path_buf(),
            offset,
            source,
        }
    }
}

impl From<SnapshotFileError> for io::Error {
    fn from(error: SnapshotFileError) -> io::Error {
        let kind = match &error {
            SnapshotFileError::Io { source, .. } => source.kind(),
            SnapshotFileError::Corrupt { .. } => io::ErrorKind::InvalidData,
            SnapshotFileError::TooLarge { .. } => io::ErrorKind::OutOfMemory,
        };
        io::Error::new(kind, error)
    }
}

/// A handle to a complete, durable snapshot file: where it is, how long it
/// is and its BLAKE3. Cheap to clone; dropping it leaves the file alone.
#[derive(Clone)]
pub struct SnapshotFile {
    disk: DiskRef,
    path: PathBuf,
    len_bytes: u64,
    blake3: [u8; 32],
}

impl fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotFile")
            .field("path", &self.path)
            .field("len_bytes", &self.len_bytes)
            .field("blake3", &blake3::Hash::from(self.blake3).to_hex().as_str())
            .finish()
    }
}

impl SnapshotFile {
    /// A handle to a file already on `disk` whose length and BLAKE3 the
    /// caller knows (for instance from its own records). Does no I/O; use
    /// [`SnapshotFile::verify`] to check the file against them.
    pub fn from_parts(disk: DiskRef, path: PathBuf, len_bytes: u64, blake3: [u8; 32]) -> Self {
        SnapshotFile {
            disk,
            path,
            len_bytes,
            blake3,
        }
    }

    /// Writes `bytes` to `path` so that after any power cut `path` holds
    /// either its previous contents or all of `bytes` (temporary file,
    /// fsync, rename, directory fsync), and returns the handle.
    pub fn write(disk: DiskRef, path: PathBuf, bytes: &[u8]) -> Result<Self, SnapshotFileError> {
        finkfs_seam::write_file_atomic(disk.as_ref(), &path, bytes)
            .map_err(|e| SnapshotFileError::io(&path, 0, e))?;
        let blake3 = *blake3::hash(bytes).as_bytes();
        Ok(SnapshotFile {
            disk,
            path,
            len_bytes: bytes.len() as u64,
            blake3,
        })
    }

    /// The disk the file is on.
    pub fn disk(&self) -> &DiskRef {
        &self.disk
    }

    /// The file's path on its disk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The BLAKE3 of the whole file.
    pub fn blake3(&self) -> [u8; 32] {
        self.blake3
    }

    /// Opens the file and checks its length against the handle.
    pub fn open(&self) -> Result<FileRef, SnapshotFileError> {
        let file = self
            .disk
            .open(&self.path)
            .map_err(|e| SnapshotFileError::io(&self.path, 0, e))?;
        let len = file
            .len()
            .map_err(|e| SnapshotFileError::io(&self.path, 0, e))?;
        if len != self.len_bytes {
            return Err(SnapshotFileError::Corrupt {
                file: self.path.clone(),
                offset: len.min(self.len_bytes),
                reason: format!(
                    "file is {len} bytes, the snapshot is {} bytes",
                    self.len_bytes
                ),
            });
        }
        Ok(file)
    }

    /// Reads the whole file and checks it against the handle's length and
    /// BLAKE3: the bytes are returned only if they are the snapshot's.
    pub fn read_all(&self) -> Result<Vec<u8>, SnapshotFileError> {
        let file = self.open()?;
        let len = usize::try_from(self.len_bytes).map_err(|_| SnapshotFileError::TooLarge {
            file: self.path.clone(),
            bytes: self.len_bytes,
        })?;
        let mut bytes = vec![0u8; len];
        file.read_at(0, &mut bytes)
            .map_err(|e| SnapshotFileError::io(&self.path, 0, e))?;
        self.check_hash(blake3::hash(&bytes))?;
        Ok(bytes)
    }

    /// Reads the file in steps and checks its length and BLAKE3, without
    /// holding it in memory.
    pub fn verify(&self) -> Result<(), SnapshotFileError> {
        let file = self.open()?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; SNAPSHOT_READ_STEP_BYTES];
        let mut offset = 0u64;
        while offset < self.len_bytes {
            let step = (self.len_bytes - offset).min(SNAPSHOT_READ_STEP_BYTES as u64) as usize;
            file.read_at(offset, &mut buf[..step])
                .map_err(|e| SnapshotFileError::io(&self.path, offset, e))?;
            hasher.update(&buf[..step]);
            offset += step as u64;
        }
        self.check_hash(hasher.finalize())
    }

    /// Checks a BLAKE3 computed over the whole file against the handle's.
    pub fn check_hash(&self, computed: blake3::Hash) -> Result<(), SnapshotFileError> {
        if computed == blake3::Hash::from(self.blake3) {
            return Ok(());
        }
        Err(SnapshotFileError::Corrupt {
            file: self.path.clone(),
            offset: self.len_bytes,
            reason: format!(
                "BLAKE3 of the file is {}, the snapshot's is {}",
                computed.to_hex(),
                blake3::Hash::from(self.blake3).to_hex()
            ),
        })
    }

    /// Moves the file to `to` on the same disk, durably (rename, then fsync
    /// of both directories), and returns the handle at its new place. A state
    /// machine uses it to take a received snapshot out of the network's
    /// incoming directory.
    pub fn rename_to(&self, to: PathBuf) -> Result<SnapshotFile, SnapshotFileError> {
        self.disk
            .rename(&self.path, &to)
            .map_err(|e| SnapshotFileError::io(&to, 0, e))?;
        self.disk
            .sync_dir(parent_dir(&to))
            .map_err(|e| SnapshotFileError::io(parent_dir(&to), 0, e))?;
        if parent_dir(&to) != parent_dir(&self.path) {
            let from_dir = parent_dir(&self.path);
            self.disk
                .sync_dir(from_dir)
                .map_err(|e| SnapshotFileError::io(from_dir, 0, e))?;
        }
        Ok(SnapshotFile {
            path: to,
            ..self.clone()
        })
    }

    /// Removes the file, durably.
    pub fn remove(self) -> Result<(), SnapshotFileError> {
        self.disk
            .remove(&self.path)
            .map_err(|e| SnapshotFileError::io(&self.path, 0, e))?;
        let dir = parent_dir(&self.path);
        self.disk
            .sync_dir(dir)
            .map_err(|e| SnapshotFileError::io(dir, 0, e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use finkfs_simdisk::SimDisk;

    use super::*;

    fn disk() -> (SimDisk, DiskRef) {
        let sim = SimDisk::new(7);
        let disk: DiskRef = Arc::new(sim.clone());
        disk.create_dir_all(Path::new("snapshots")).unwrap();
        (sim, disk)
    }

    #[test]
    fn written_snapshot_reads_back_and_verifies() {
        let (_, disk) = disk();
        let bytes: Vec<u8> = (0..3 * SNAPSHOT_READ_STEP_BYTES + 17)
            .map(|i| i as u8)
            .collect();
        let file = SnapshotFile::write(disk, "snapshots/a.snap".into(), &bytes).unwrap();
        assert_eq!(file.len_bytes(), bytes.len() as u64);
        assert_eq!(file.read_all().unwrap(), bytes);
        file.verify().unwrap();
    }

    #[test]
    fn flipped_bit_is_corrupt_never_data() {
        let (sim, disk) = disk();
        let file = SnapshotFile::write(disk, "snapshots/a.snap".into(), &[5u8; 4096]).unwrap();
        sim.flip_bit(Path::new("snapshots/a.snap"), 100 * 8 + 3)
            .unwrap();
        assert!(matches!(
            file.read_all(),
            Err(SnapshotFileError::Corrupt { .. })
        ));
        assert!(matches!(
            file.verify(),
            Err(SnapshotFileError::Corrupt { .. })
        ));
    }

    #[test]
    fn truncated_file_is_corrupt() {
        let (_, disk) = disk();
        let file =
            SnapshotFile::write(disk.clone(), "snapshots/a.snap".into(), &[5u8; 100]).unwrap();
        disk.open(Path::new("snapshots/a.snap"))
            .unwrap()
            .set_len(60)
            .unwrap();
        let error = file.read_all().unwrap_err();
        assert!(
            matches!(error, SnapshotFileError::Corrupt { offset: 60, .. }),
            "{error}"
        );
    }

    #[test]
    fn renamed_snapshot_survives_power_cut() {
        let (sim, disk) = disk();
        disk.create_dir_all(Path::new("state")).unwrap();
        let file = SnapshotFile::write(disk, "snapshots/a.snap".into(), b"snapshot").unwrap();
        let moved = file.rename_to("state/current.snap".into()).unwrap();
        sim.power_cut();
        assert_eq!(moved.read_all().unwrap(), b"snapshot");
    }
}
