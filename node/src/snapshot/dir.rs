//! The snapshot directory of one state machine: which snapshot is current,
//! building a new one from an index view, and taking in a received one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use finkfs_raft::network::SnapshotFile;
use finkfs_raft::types::{Snapshot, SnapshotMeta, StoredMembership};
use finkfs_seam::{DiskRef, FileRef};

use crate::index::{IndexError, IndexView};
use crate::membership::{decode_membership, make_log_id};

use super::format::SnapshotHeader;
use super::reader::{SnapshotReader, READ_STEP_BYTES};
use super::writer::SnapshotWriter;
use super::SnapshotError;

/// Records read from the index per page while building a snapshot.
pub const SNAPSHOT_PAGE_RECORDS: usize = 4096;

const FINAL_PREFIX: &str = "snap-";
const FINAL_SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".tmp";
const INSTALL_NAME: &str = "install.snap.tmp";

/// The snapshots of one state machine. Shared between the state machine and
/// the tasks that build snapshots.
#[derive(Debug)]
pub struct SnapshotDir {
    disk: DiskRef,
    dir: PathBuf,
    state: Mutex<DirState>,
}

#[derive(Debug, Default)]
struct DirState {
    current: Option<Snapshot<SnapshotFile>>,
    builds: u64,
}

impl SnapshotDir {
    /// Opens (creating if needed) the directory, removes temporary files a
    /// crash left, and finds the current snapshot.
    pub fn open(disk: DiskRef, dir: PathBuf) -> Result<Arc<SnapshotDir>, SnapshotError> {
        disk.create_dir_all(&dir)
            .map_err(|e| SnapshotError::io(&dir, 0, e))?;
        let snapshots = SnapshotDir {
            disk,
            dir,
            state: Mutex::default(),
        };
        snapshots.remove_leftovers()?;
        let current = snapshots.find_current()?;
        if let Some(current) = &current {
            tracing::info!(file = %current.snapshot.path().display(), last = ?current.meta.last_log_id, "current snapshot");
        }
        snapshots.lock().current = current;
        Ok(Arc::new(snapshots))
    }

    /// The directory, relative to the disk root.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current snapshot, if any.
    pub fn current(&self) -> Option<Snapshot<SnapshotFile>> {
        self.lock().current.clone()
    }

    /// Writes a snapshot of `view` and makes it current (temporary file,
    /// sync, rename, directory sync; older snapshots removed after).
    pub fn build(&self, view: &IndexView) -> Result<Snapshot<SnapshotFile>, SnapshotError> {
        let header = header_of(view)?;
        let tmp = {
            let mut state = self.lock();
            state.builds += 1;
            self.dir
                .join(format!("build-{}{FINAL_SUFFIX}{TEMP_SUFFIX}", state.builds))
        };
        let written = self.write(&tmp, &header, view);
        let (len, blake3) = match written {
            Ok(done) => done,
            Err(error) => {
                self.remove_quietly(&tmp);
                return Err(error);
            }
        };
        let path = self.final_path(&blake3);
        self.disk
            .rename(&tmp, &path)
            .map_err(|e| SnapshotError::io(&path, 0, e))?;
        self.sync_dir()?;
        let file = SnapshotFile::from_parts(self.disk.clone(), path, len, blake3);
        let meta = SnapshotMeta {
            last_log_id: header.last_log_id,
            last_membership: header.membership,
        };
        tracing::info!(file = %file.path().display(), bytes = len, last = ?meta.last_log_id, "snapshot built");
        let snapshot = Snapshot {
            meta,
            snapshot: file,
        };
        self.promote(&snapshot)?;
        Ok(snapshot)
    }

    fn write(
        &self,
        tmp: &Path,
        header: &SnapshotHeader,
        view: &IndexView,
    ) -> Result<(u64, [u8; 32]), SnapshotError> {
        let file = self.create_fresh(tmp)?;
        write_view(file, tmp, header, view)
    }

    /// Brings a received snapshot file into this directory for install:
    /// moved (same disk) or copied (another disk) to a temporary name. Our
    /// own snapshot files are used in place.
    pub(crate) fn take_in(&self, file: &SnapshotFile) -> Result<SnapshotFile, SnapshotError> {
        if self.is_own_final(file) {
            return Ok(file.clone());
        }
        let tmp = self.dir.join(INSTALL_NAME);
        self.remove_if_exists(&tmp)?;
        if same_disk(file.disk(), &self.disk) {
            return Ok(file.rename_to(tmp)?);
        }
        self.copy_in(file, &tmp)?;
        Ok(SnapshotFile::from_parts(
            self.disk.clone(),
            tmp,
            file.len_bytes(),
            file.blake3(),
        ))
    }

    /// Gives an installed snapshot its final name (durably), unless it has
    /// it already.
    pub(crate) fn seal(&self, file: SnapshotFile) -> Result<SnapshotFile, SnapshotError> {
        if self.is_own_final(&file) {
            return Ok(file);
        }
        Ok(file.rename_to(self.final_path(&file.blake3()))?)
    }

    /// Removes a snapshot taken in for an install that failed; our own
    /// final files stay.
    pub(crate) fn discard(&self, file: SnapshotFile) {
        if self.is_own_final(&file) {
            return;
        }
        let path = file.path().to_path_buf();
        if let Err(error) = file.remove() {
            tracing::warn!(file = %path.display(), %error, "could not remove a snapshot that failed to install");
        }
    }

    /// Makes `snapshot` current unless a newer one is, then removes every
    /// other snapshot file (the new one is already durable).
    pub(crate) fn promote(&self, snapshot: &Snapshot<SnapshotFile>) -> Result<(), SnapshotError> {
        let mut state = self.lock();
        if let Some(current) = &state.current {
            if current.meta.last_log_id > snapshot.meta.last_log_id {
                tracing::info!(stale = ?snapshot.meta.last_log_id, current = ?current.meta.last_log_id, "a newer snapshot is current; keeping it");
                return Ok(());
            }
        }
        state.current = Some(snapshot.clone());
        let keep = snapshot.snapshot.path().to_path_buf();
        let mut removed = false;
        for name in self.list()? {
            let path = self.dir.join(&name);
            if is_final_name(&name) && path != keep {
                self.disk
                    .remove(&path)
                    .map_err(|e| SnapshotError::io(&path, 0, e))?;
                removed = true;
            }
        }
        if removed {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn find_current(&self) -> Result<Option<Snapshot<SnapshotFile>>, SnapshotError> {
        let mut best: Option<Snapshot<SnapshotFile>> = None;
        for name in self.list()? {
            let Some(blake3) = final_name_hash(&name) else {
                continue;
            };
            let path = self.dir.join(&name);
            match self.describe(&path, blake3) {
                Ok(found) => {
                    if best
                        .as_ref()
                        .is_none_or(|b| b.meta.last_log_id < found.meta.last_log_id)
                    {
                        best = Some(found);
                    }
                }
                // A derived file: the index is the state. Report it; it is
                // replaced by the next snapshot built or installed.
                Err(error) => {
                    tracing::error!(file = %path.display(), %error, "ignoring a damaged snapshot")
                }
            }
        }
        Ok(best)
    }

    /// The snapshot at `path`, from its verified header and its name, once
    /// the whole file hashes to the BLAKE3 its name carries. Checked at
    /// every start (about a second per GiB): a damaged snapshot found only
    /// when the node sends it to a follower stopped the node's Raft core,
    /// again after every restart, so a leader with one never caught up a
    /// follower that needed a snapshot.
    fn describe(
        &self,
        path: &Path,
        blake3: [u8; 32],
    ) -> Result<Snapshot<SnapshotFile>, SnapshotError> {
        let file = self
            .disk
            .open(path)
            .map_err(|e| SnapshotError::io(path, 0, e))?;
        let len = file.len().map_err(|e| SnapshotError::io(path, 0, e))?;
        let hashed = hash_whole_file(&file, len).map_err(|e| SnapshotError::io(path, 0, e))?;
        if hashed != blake3 {
            return Err(SnapshotError::corrupt(
                path,
                0,
                "the file does not hash to the BLAKE3 its name carries".to_string(),
            ));
        }
        let reader = SnapshotReader::open(file, path)?;
        let header = reader.header().clone();
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: header.last_log_id,
                last_membership: header.membership,
            },
            snapshot: SnapshotFile::from_parts(self.disk.clone(), path.to_path_buf(), len, blake3),
        })
    }

    fn remove_leftovers(&self) -> Result<(), SnapshotError> {
        let mut removed = false;
        for name in self.list()? {
            if name.ends_with(TEMP_SUFFIX) {
                let path = self.dir.join(&name);
                tracing::info!(file = %path.display(), "removing a snapshot file a crash left unfinished");
                self.disk
                    .remove(&path)
                    .map_err(|e| SnapshotError::io(&path, 0, e))?;
                removed = true;
            }
        }
        if removed {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn copy_in(&self, from: &SnapshotFile, to: &Path) -> Result<(), SnapshotError> {
        let source = from.open()?;
        let target = self.create_fresh(to)?;
        let mut buf = vec![0u8; READ_STEP_BYTES];
        let mut offset = 0u64;
        while offset < from.len_bytes() {
            let step = (from.len_bytes() - offset).min(READ_STEP_BYTES as u64) as usize;
            source
                .read_at(offset, &mut buf[..step])
                .map_err(|e| SnapshotError::io(from.path(), offset, e))?;
            target
                .write_at(offset, &buf[..step])
                .map_err(|e| SnapshotError::io(to, offset, e))?;
            offset += step as u64;
        }
        target.sync().map_err(|e| SnapshotError::io(to, 0, e))?;
        self.sync_dir()
    }

    fn create_fresh(&self, path: &Path) -> Result<FileRef, SnapshotError> {
        self.remove_if_exists(path)?;
        self.disk
            .create(path)
            .map_err(|e| SnapshotError::io(path, 0, e))
    }

    fn remove_if_exists(&self, path: &Path) -> Result<(), SnapshotError> {
        let io = |e| SnapshotError::io(path, 0, e);
        if self.disk.exists(path).map_err(io)? {
            self.disk.remove(path).map_err(io)?;
        }
        Ok(())
    }

    fn remove_quietly(&self, path: &Path) {
        if let Err(error) = self.remove_if_exists(path) {
            tracing::warn!(file = %path.display(), %error, "could not remove a temporary snapshot");
        }
    }

    fn is_own_final(&self, file: &SnapshotFile) -> bool {
        same_disk(file.disk(), &self.disk)
            && file.path().parent() == Some(self.dir.as_path())
            && file
                .path()
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_final_name)
    }

    fn final_path(&self, blake3: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{FINAL_PREFIX}{}{FINAL_SUFFIX}",
            crate::hex::hex(blake3)
        ))
    }

    fn list(&self) -> Result<Vec<String>, SnapshotError> {
        self.disk
            .list(&self.dir)
            .map_err(|e| SnapshotError::io(&self.dir, 0, e))
    }

    fn sync_dir(&self) -> Result<(), SnapshotError> {
        self.disk
            .sync_dir(&self.dir)
            .map_err(|e| SnapshotError::io(&self.dir, 0, e))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DirState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a view of the index covers, as a snapshot header.
/// Writes the snapshot of `view` under `header` into `file` (at `tmp`, for
/// error reports) and syncs it; returns its length and whole-file BLAKE3.
pub fn write_view(
    file: FileRef,
    tmp: &Path,
    header: &SnapshotHeader,
    view: &IndexView,
) -> Result<(u64, [u8; 32]), SnapshotError> {
    let mut writer = SnapshotWriter::new(file, tmp, header)?;
    let mut after: Option<String> = None;
    loop {
        let page = view.list("", after.as_deref(), SNAPSHOT_PAGE_RECORDS)?;
        for (path, manifest) in &page {
            writer.object(path, manifest)?;
        }
        match page.last() {
            Some((path, _)) if page.len() == SNAPSHOT_PAGE_RECORDS => after = Some(path.clone()),
            _ => break,
        }
    }
    let mut after: Option<[u8; 32]> = None;
    loop {
        let page = view.blocks_after(after.as_ref(), SNAPSHOT_PAGE_RECORDS)?;
        for entry in page.iter().filter(|e| e.refs == 0) {
            writer.unreferenced(&entry.location.hash, entry.location.len)?;
        }
        match page.last() {
            Some(entry) if page.len() == SNAPSHOT_PAGE_RECORDS => after = Some(entry.location.hash),
            _ => break,
        }
    }
    writer.finish()
}

/// The header of a snapshot of `view`: its applied log id and membership.
pub fn header_of(view: &IndexView) -> Result<SnapshotHeader, SnapshotError> {
    let last_log_id = view
        .applied()?
        .map(|a| make_log_id(a.index, a.term, a.node));
    let membership = match view.membership()? {
        None => StoredMembership::default(),
        Some(bytes) => decode_membership(&bytes).map_err(|e| IndexError::Corrupt {
            table: "applied",
            key: "membership".to_string(),
            reason: e.to_string(),
        })?,
    };
    Ok(SnapshotHeader {
        last_log_id,
        membership,
    })
}

fn is_final_name(name: &str) -> bool {
    final_name_hash(name).is_some()
}

/// The BLAKE3 a final snapshot name (`snap-<hex>.snap`) carries; None for
/// any other name.
pub fn final_name_hash(name: &str) -> Option<[u8; 32]> {
    let hex = name
        .strip_prefix(FINAL_PREFIX)?
        .strip_suffix(FINAL_SUFFIX)?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

/// Whether two handles are the same disk (the same shared object).
fn same_disk(a: &DiskRef, b: &DiskRef) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// The BLAKE3 of the first `len` bytes of `file`, read a step at a time.
fn hash_whole_file(file: &FileRef, len: u64) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_STEP_BYTES];
    let mut at = 0;
    while at < len {
        let step = (len - at).min(READ_STEP_BYTES as u64) as usize;
        file.read_at(at, &mut buf[..step])?;
        hasher.update(&buf[..step]);
        at += step as u64;
    }
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_names_carry_the_file_hash() {
        let hash = [0xab; 32];
        let name = format!("snap-{}.snap", crate::hex::hex(&hash));
        assert_eq!(final_name_hash(&name), Some(hash));
        for other in [
            "snap-ab.snap",
            &format!("snap-{}.snap", "AB".repeat(32)),
            "build-1.snap.tmp",
            "install.snap.tmp",
            "incoming",
            &format!("snap-{}.snap", "zz".repeat(32)),
        ] {
            assert_eq!(final_name_hash(other), None, "{other}");
        }
    }
}
