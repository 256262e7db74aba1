//! [`SimDisk`]: the public face of the simulator, its knobs and its
//! inspection methods, and the seam implementation over the shared state.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use finkfs_seam::{check_relative_path, Disk, DiskFile, DiskRef, FileRef};

use crate::dirops::Opened;
use crate::faults::{CrashPolicy, FaultKind, FaultOp, FaultRates, InjectedFault, IoFault};
use crate::file::SECTOR_BYTES;
use crate::fileops::HandleId;
use crate::state::{checked_end, State};

/// An in-memory disk that implements the seam and models power cuts and
/// media faults. Cloning yields another handle to the same disk. See the
/// crate docs for the model.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    /// An empty disk whose every random choice comes from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new(seed))),
        }
    }

    /// The seed this disk was built with, to print when a run fails.
    pub fn seed(&self) -> u64 {
        self.lock().seed
    }

    /// This disk as the seam's shared handle.
    pub fn disk_ref(&self) -> DiskRef {
        Arc::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a test thread must not hide the disk from the checker.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts the power with [`CrashPolicy::Random`].
    pub fn power_cut(&self) {
        self.power_cut_with(CrashPolicy::Random);
    }

    /// Cuts the power: unsynced writes and metadata meet their fate under
    /// `policy`, and every handle opened before now goes stale.
    pub fn power_cut_with(&self, policy: CrashPolicy) {
        self.lock().power_cut(policy);
    }

    /// How many power cuts this disk has seen.
    pub fn power_cuts(&self) -> u64 {
        self.lock().epoch
    }

    /// Fails the next `count` operations of kind `op`, on any path.
    pub fn fail_next(&self, op: FaultOp, fault: IoFault, count: u64) {
        self.fail_next_on("", op, fault, count);
    }

    /// Fails the next `count` operations of kind `op` on paths starting with
    /// `prefix` (compared as text, so `journal/seg-` works).
    pub fn fail_next_on(&self, prefix: &str, op: FaultOp, fault: IoFault, count: u64) {
        self.lock().plan.arm(op, fault, count, prefix);
    }

    /// The next non-empty write under `prefix` lands a non-zero whole number
    /// of sectors away from where it was aimed, and returns `Ok`.
    pub fn misdirect_next_write(&self, prefix: &str) {
        self.lock().plan.arm_misdirect(prefix);
    }

    /// The next non-empty write under `prefix` returns `Ok`, shows in reads,
    /// and never becomes durable.
    pub fn lose_next_write(&self, prefix: &str) {
        self.lock().plan.arm_lose(prefix);
    }

    /// Forgets every fault armed by `fail_next*`, `misdirect_next_write`
    /// and `lose_next_write` that has not fired yet.
    pub fn disarm_faults(&self) {
        self.lock().plan.disarm_all();
    }

    /// Caps the total running length of all files; growing past it is ENOSPC.
    pub fn set_capacity(&self, capacity_bytes: Option<u64>) {
        self.lock().plan.capacity_bytes = capacity_bytes;
    }

    /// Sets per-operation fault probabilities. Panics on a rate outside 0..=1.
    pub fn set_fault_rates(&self, rates: FaultRates) {
        rates.assert_valid();
        self.lock().plan.rates = rates;
    }

    /// Flips bit `bit_offset` of a file at rest (durable and running views).
    pub fn flip_bit(&self, path: impl AsRef<Path>, bit_offset: u64) -> io::Result<()> {
        self.at_rest(path.as_ref(), FaultKind::BitFlip, bit_offset, 1, |f| {
            f.flip_bit(bit_offset)
        })
    }

    /// Zeroes sector `sector_index` of a file at rest.
    pub fn zero_sector(&self, path: impl AsRef<Path>, sector_index: u64) -> io::Result<()> {
        let offset = sector_index.saturating_mul(SECTOR_BYTES);
        self.at_rest(
            path.as_ref(),
            FaultKind::ZeroedSector,
            offset,
            SECTOR_BYTES,
            |f| f.zero_sector(sector_index),
        )
    }

    /// Makes reads of sector `sector_index` of a file fail with EIO until a
    /// write touches that sector (a latent sector error).
    pub fn latent_sector_error(&self, path: impl AsRef<Path>, sector_index: u64) -> io::Result<()> {
        let offset = sector_index.saturating_mul(SECTOR_BYTES);
        let kind = FaultKind::LatentSectorError;
        self.at_rest(path.as_ref(), kind, offset, SECTOR_BYTES, |f| {
            f.mark_bad_sector(sector_index)
        })
    }

    /// Overwrites bytes of a file at rest with `bytes`, extending it with
    /// zeros if needed: for tests that plant garbage.
    pub fn corrupt_bytes(
        &self,
        path: impl AsRef<Path>,
        offset: u64,
        bytes: &[u8],
    ) -> io::Result<()> {
        checked_end(offset, bytes.len())?;
        let len = bytes.len() as u64;
        self.at_rest(path.as_ref(), FaultKind::PlantedBytes, offset, len, |f| {
            f.plant(offset, bytes);
            Ok(())
        })
    }

    fn at_rest(
        &self,
        path: &Path,
        kind: FaultKind,
        offset: u64,
        len: u64,
        change: impl FnOnce(&mut crate::file::FileState) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut state = self.lock();
        change(state.file_at(path)?)?;
        let fault = InjectedFault::at(kind, path, offset, len);
        state.fault_log.push(fault);
        Ok(())
    }

    /// Every fault injected so far, in order.
    pub fn fault_log(&self) -> Vec<InjectedFault> {
        self.lock().fault_log.clone()
    }

    /// Every fault injected so far, clearing the log.
    pub fn take_fault_log(&self) -> Vec<InjectedFault> {
        std::mem::take(&mut self.lock().fault_log)
    }

    /// The paths of all files the running system sees, sorted.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        self.lock().file_paths()
    }

    /// The bytes of a file that would survive a power cut now.
    pub fn durable_bytes(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        Ok(self.lock().file_at(path.as_ref())?.durable.clone())
    }

    /// The bytes of a file as the running system reads them.
    pub fn current_bytes(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        Ok(self.lock().file_at(path.as_ref())?.current.clone())
    }

    fn file(&self, opened: Opened) -> FileRef {
        Arc::new(SimFile {
            disk: self.clone(),
            id: opened.id,
            _open: opened.token,
        })
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // try_lock: formatting must never deadlock against a held lock.
        match self.state.try_lock() {
            Ok(state) => f
                .debug_struct("SimDisk")
                .field("seed", &state.seed)
                .field("power_cuts", &state.epoch)
                .field("files", &state.files.len())
                .finish(),
            Err(_) => f.write_str("SimDisk { <busy> }"),
        }
    }
}

/// Validates a path as the seam requires (`InvalidInput` otherwise).
pub(crate) fn checked(path: &Path) -> io::Result<&Path> {
    check_relative_path(path).map_err(|why| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {:?} {why}", path.display().to_string()),
        )
    })?;
    Ok(path)
}

impl Disk for SimDisk {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        let opened = self.lock().create(checked(path)?)?;
        Ok(self.file(opened))
    }

    fn open(&self, path: &Path) -> io::Result<FileRef> {
        let opened = self.lock().open(checked(path)?)?;
        Ok(self.file(opened))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.lock().remove(checked(path)?)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.lock().rename(checked(from)?, checked(to)?)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.lock().create_dir_all(checked(path)?)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.lock().sync_dir(checked(path)?)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.lock().list(checked(dir)?)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.lock().exists(checked(path)?)
    }
}

/// An open file. It names its inode and the power-cut epoch it was opened
/// in; after a power cut every method fails, so code that keeps using old
/// handles is caught.
struct SimFile {
    disk: SimDisk,
    id: HandleId,
    /// Keeps an unlinked file's data alive while this handle exists.
    _open: Option<Arc<()>>,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("ino", &self.id.ino)
            .field("epoch", &self.id.epoch)
            .finish()
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.disk.lock().read_at(self.id, offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.disk.lock().write_at(self.id, offset, buf)
    }

    /// One write of the concatenation: a vectored write is torn, lost or
    /// kept by a power cut exactly as that write would be.
    fn write_vectored_at(&self, offset: u64, bufs: &[io::IoSlice<'_>]) -> io::Result<()> {
        let joined = finkfs_seam::join(bufs);
        self.disk.lock().write_at(self.id, offset, &joined)
    }

    fn len(&self) -> io::Result<u64> {
        self.disk.lock().len(self.id)
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.disk.lock().set_len(self.id, len_bytes)
    }

    fn sync(&self) -> io::Result<()> {
        self.disk.lock().sync(self.id)
    }
}
