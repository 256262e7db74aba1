//! The backup target: its files and the operations on them, all through the
//! I/O seam and all crash safe (see the module docs for the layout).

use std::path::{Path, PathBuf};

use finkfs_seam::{read_file, write_file_atomic, DiskRef};

use super::manifest::{BackupBlock, BackupManifest};
use super::BackupError;
use crate::hex::hex;
use crate::index::IndexView;
use crate::snapshot::{header_of, write_view, SnapshotError};

pub(super) const BLOCKS_DIR: &str = "blocks";
pub(super) const SNAPSHOTS_DIR: &str = "snapshots";
pub(super) const BACKUPS_DIR: &str = "backups";
const MANIFEST_SUFFIX: &str = ".bkp";
const SNAPSHOT_SUFFIX: &str = ".snap";
/// Digits of a backup's sequence number in its file name (u64::MAX has 20).
const SEQ_DIGITS: usize = 20;

/// Where a snapshot being written to the target is staged.
const BUILDING_SNAPSHOT: &str = "building.snap.tmp";

/// A snapshot stored on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub hash: [u8; 32],
    pub len: u64,
    /// False when the target already held this exact snapshot.
    pub written: bool,
}

/// A backup as listed: its manifest, or why the manifest cannot be read.
#[derive(Debug)]
pub struct ListedBackup {
    pub seq: u64,
    pub file: PathBuf,
    pub manifest: Result<BackupManifest, BackupError>,
}

/// A directory that holds backups.
#[derive(Debug, Clone)]
pub struct BackupTarget {
    disk: DiskRef,
}

impl BackupTarget {
    /// Opens (creating its directories if needed) the target on `disk`.
    pub fn open(disk: DiskRef) -> Result<BackupTarget, BackupError> {
        for dir in [BLOCKS_DIR, SNAPSHOTS_DIR, BACKUPS_DIR] {
            disk.create_dir_all(Path::new(dir))
                .map_err(|e| BackupError::io(dir, e))?;
        }
        Ok(BackupTarget { disk })
    }

    pub fn block_path(hash: &[u8; 32]) -> PathBuf {
        let name = hex(hash);
        Path::new(BLOCKS_DIR).join(&name[..2]).join(name)
    }

    pub fn snapshot_path(hash: &[u8; 32]) -> PathBuf {
        Path::new(SNAPSHOTS_DIR).join(format!("{}{SNAPSHOT_SUFFIX}", hex(hash)))
    }

    pub fn manifest_path(seq: u64) -> PathBuf {
        Path::new(BACKUPS_DIR).join(format!("{seq:0SEQ_DIGITS$}{MANIFEST_SUFFIX}"))
    }

    pub fn has_block(&self, hash: &[u8; 32]) -> Result<bool, BackupError> {
        let path = Self::block_path(hash);
        self.disk
            .exists(&path)
            .map_err(|e| BackupError::io(path, e))
    }

    /// Stores a block unless the target already has one by that name.
    /// Returns whether it wrote. The bytes are checked against `hash` first:
    /// a damaged block never enters a backup under a good name.
    pub fn put_block(&self, hash: &[u8; 32], data: &[u8]) -> Result<bool, BackupError> {
        if blake3::hash(data).as_bytes() != hash {
            return Err(BackupError::Source(format!(
                "block {} does not match its hash",
                hex(hash)
            )));
        }
        if self.has_block(hash)? {
            return Ok(false);
        }
        let path = Self::block_path(hash);
        let dir = finkfs_seam::parent_dir(&path);
        self.disk
            .create_dir_all(dir)
            .and_then(|()| write_file_atomic(&*self.disk, &path, data))
            .map_err(|e| BackupError::io(&path, e))?;
        Ok(true)
    }

    /// Reads a block and checks it against its name.
    pub fn read_block(&self, block: &BackupBlock) -> Result<Vec<u8>, BackupError> {
        let path = Self::block_path(&block.hash);
        let data = self.read_whole(&path)?;
        if data.len() as u64 != block.len {
            return Err(BackupError::corrupt(
                &path,
                0,
                format!(
                    "{} bytes where the manifest names {}",
                    data.len(),
                    block.len
                ),
            ));
        }
        if blake3::hash(&data).as_bytes() != &block.hash {
            return Err(BackupError::corrupt(
                &path,
                0,
                "block does not match its hash",
            ));
        }
        Ok(data)
    }

    /// Stores a snapshot file unless present; returns whether it wrote.
    pub fn put_snapshot(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<bool, BackupError> {
        if blake3::hash(bytes).as_bytes() != hash {
            return Err(BackupError::Source(
                "snapshot does not match its hash".into(),
            ));
        }
        let path = Self::snapshot_path(hash);
        if self
            .disk
            .exists(&path)
            .map_err(|e| BackupError::io(&path, e))?
        {
            return Ok(false);
        }
        write_file_atomic(&*self.disk, &path, bytes).map_err(|e| BackupError::io(&path, e))?;
        Ok(true)
    }

    /// Writes the snapshot of `view` to the target under a temporary name,
    /// then renames it to its whole-file hash (or drops it if the target
    /// already holds that exact snapshot).
    pub fn write_snapshot_of(&self, view: &IndexView) -> Result<StoredSnapshot, BackupError> {
        let tmp = Path::new(SNAPSHOTS_DIR).join(BUILDING_SNAPSHOT);
        let io = |e| BackupError::io(&tmp, e);
        if self.disk.exists(&tmp).map_err(io)? {
            self.disk.remove(&tmp).map_err(io)?;
        }
        let file = self.disk.create(&tmp).map_err(io)?;
        let source = |e: SnapshotError| BackupError::Source(format!("snapshot of the index: {e}"));
        let header = header_of(view).map_err(source)?;
        let (len, hash) = write_view(file, &tmp, &header, view).map_err(source)?;
        let path = Self::snapshot_path(&hash);
        let present = self
            .disk
            .exists(&path)
            .map_err(|e| BackupError::io(&path, e))?;
        if present {
            self.disk.remove(&tmp).map_err(io)?;
        } else {
            self.disk
                .rename(&tmp, &path)
                .and_then(|()| self.disk.sync_dir(Path::new(SNAPSHOTS_DIR)))
                .map_err(|e| BackupError::io(&path, e))?;
        }
        Ok(StoredSnapshot {
            hash,
            len,
            written: !present,
        })
    }

    /// Reads the snapshot a manifest names and checks its length and hash.
    pub fn read_snapshot(&self, manifest: &BackupManifest) -> Result<Vec<u8>, BackupError> {
        let path = Self::snapshot_path(&manifest.snapshot_hash);
        let bytes = self.read_whole(&path)?;
        if bytes.len() as u64 != manifest.snapshot_len
            || blake3::hash(&bytes).as_bytes() != &manifest.snapshot_hash
        {
            return Err(BackupError::corrupt(
                &path,
                0,
                "snapshot does not match its hash",
            ));
        }
        Ok(bytes)
    }

    /// Writes a backup's manifest, the step that makes the backup exist.
    /// Everything it names must already be durable on the target.
    pub fn commit(&self, manifest: &BackupManifest) -> Result<(), BackupError> {
        let path = Self::manifest_path(manifest.seq);
        write_file_atomic(&*self.disk, &path, &manifest.encode())
            .map_err(|e| BackupError::io(path, e))
    }

    /// The sequence number the next backup takes.
    pub fn next_seq(&self) -> Result<u64, BackupError> {
        Ok(self.seqs()?.last().map_or(1, |last| last + 1))
    }

    /// Every backup, oldest first, each with its manifest or why it cannot
    /// be read (a damaged manifest is listed, never skipped).
    pub fn list(&self) -> Result<Vec<ListedBackup>, BackupError> {
        self.seqs()?
            .into_iter()
            .map(|seq| {
                let file = Self::manifest_path(seq);
                let manifest = self.read_manifest_at(&file);
                Ok(ListedBackup {
                    seq,
                    file,
                    manifest,
                })
            })
            .collect()
    }

    /// The manifest of backup `seq`.
    pub fn manifest(&self, seq: u64) -> Result<BackupManifest, BackupError> {
        if !self.seqs()?.contains(&seq) {
            return Err(BackupError::NotFound(seq));
        }
        self.read_manifest_at(&Self::manifest_path(seq))
    }

    fn read_manifest_at(&self, file: &Path) -> Result<BackupManifest, BackupError> {
        let bytes = self.read_whole(file)?;
        BackupManifest::decode(file, &bytes)
    }

    fn seqs(&self) -> Result<Vec<u64>, BackupError> {
        let names = self
            .disk
            .list(Path::new(BACKUPS_DIR))
            .map_err(|e| BackupError::io(BACKUPS_DIR, e))?;
        let mut seqs: Vec<u64> = names
            .iter()
            .filter_map(|name| name.strip_suffix(MANIFEST_SUFFIX))
            .filter(|stem| stem.len() == SEQ_DIGITS)
            .filter_map(|stem| stem.parse().ok())
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Removes a file and syncs its directory, so the removal survives.
    pub(super) fn remove_durably(&self, path: &Path) -> Result<(), BackupError> {
        self.disk
            .remove(path)
            .and_then(|()| self.disk.sync_dir(finkfs_seam::parent_dir(path)))
            .map_err(|e| BackupError::io(path, e))
    }

    pub(super) fn disk(&self) -> &DiskRef {
        &self.disk
    }

    fn read_whole(&self, path: &Path) -> Result<Vec<u8>, BackupError> {
        read_file(&*self.disk, path).map_err(|e| BackupError::io(path, e))
    }
}
