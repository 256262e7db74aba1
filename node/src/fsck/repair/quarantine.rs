//! `quarantine/` in a group directory: where a repair puts what it takes
//! out of service. Nothing damaged is ever deleted: a file is copied there
//! before it is cut, or moved there whole. Each repair run gets its own
//! numbered subdirectory (`quarantine/<n>/`, the lowest unused number), and
//! every file keeps its path relative to the group directory, so
//! `quarantine/3/journal/00000000000000000001.seg` is the journal segment
//! as it was when the third repair ran. Layout in `docs/format/quarantine.md`.

use std::path::{Path, PathBuf};

use finkfs_seam::DiskRef;

use super::super::{exists, FsckError};

/// The quarantine directory of a group.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Bytes copied at a time.
const COPY_STEP_BYTES: u64 = 1 << 20;

/// One repair run's quarantine subdirectory, created on first use.
#[derive(Debug)]
pub(crate) struct Quarantine {
    disk: DiskRef,
    group: PathBuf,
    dir: Option<PathBuf>,
}

impl Quarantine {
    pub fn new(disk: DiskRef, group: &Path) -> Quarantine {
        Quarantine {
            disk,
            group: group.to_path_buf(),
            dir: None,
        }
    }

    /// The run's directory, made durable the first time.
    fn dir(&mut self) -> Result<PathBuf, FsckError> {
        if let Some(dir) = &self.dir {
            return Ok(dir.clone());
        }
        let root = self.group.join(QUARANTINE_DIR);
        let mut n = 1u64;
        while exists(&self.disk, &root.join(n.to_string()))? {
            n += 1;
        }
        let dir = root.join(n.to_string());
        self.disk
            .create_dir_all(&dir)
            .map_err(|e| FsckError::io(&dir, e))?;
        for synced in [self.group.clone(), root] {
            self.disk
                .sync_dir(&synced)
                .map_err(|e| FsckError::io(&synced, e))?;
        }
        self.dir = Some(dir.clone());
        Ok(dir)
    }

    /// Where `file` (relative to the disk root, inside the group) goes.
    fn target(&mut self, file: &Path) -> Result<PathBuf, FsckError> {
        let relative = file.strip_prefix(&self.group).unwrap_or(file);
        let target = self.dir()?.join(relative);
        let parent = finkfs_seam::parent_dir(&target).to_path_buf();
        self.disk
            .create_dir_all(&parent)
            .map_err(|e| FsckError::io(&parent, e))?;
        Ok(target)
    }

    /// Copies `file` into quarantine, durably; the copy's path. Sectors the
    /// disk cannot read are copied as zeros (the fsck report names them).
    pub fn copy_in(&mut self, file: &Path) -> Result<PathBuf, FsckError> {
        let target = self.target(file)?;
        let source = self.disk.open(file).map_err(|e| FsckError::io(file, e))?;
        let len = source.len().map_err(|e| FsckError::io(file, e))?;
        let copy = self
            .disk
            .create(&target)
            .map_err(|e| FsckError::io(&target, e))?;
        let mut buf = Vec::new();
        let mut at = 0;
        while at < len {
            let step = (len - at).min(COPY_STEP_BYTES);
            buf.resize(usize::try_from(step).expect("a step fits in memory"), 0);
            if let Err(e) = source.read_at(at, &mut buf) {
                if !super::super::is_medium_error(&e) {
                    return Err(FsckError::io(file, e));
                }
                buf.iter_mut().for_each(|b| *b = 0);
            }
            copy.write_at(at, &buf)
                .map_err(|e| FsckError::io(&target, e))?;
            at += step;
        }
        copy.sync().map_err(|e| FsckError::io(&target, e))?;
        self.sync_parent(&target)?;
        Ok(target)
    }

    /// Moves `file` into quarantine, durably (both directories synced);
    /// the new path.
    pub fn move_in(&mut self, file: &Path) -> Result<PathBuf, FsckError> {
        let target = self.target(file)?;
        self.disk
            .rename(file, &target)
            .map_err(|e| FsckError::io(file, e))?;
        self.sync_parent(&target)?;
        self.sync_parent(file)?;
        Ok(target)
    }

    fn sync_parent(&self, file: &Path) -> Result<(), FsckError> {
        let parent = finkfs_seam::parent_dir(file);
        self.disk
            .sync_dir(parent)
            .map_err(|e| FsckError::io(parent, e))
    }
}
