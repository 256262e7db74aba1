//! Helpers shared by the integration tests of finkfs-node.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use finkfs_node::{BlockStoreOptions, IndexOptions, ObjectStoreOptions};
use finkfs_seam::{DiskRef, RealDisk};
use finkfs_simdisk::SimDisk;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A simulated disk and the same disk as a seam handle.
pub fn sim(seed: u64) -> (SimDisk, DiskRef) {
    let disk = SimDisk::new(seed);
    let disk_ref = disk.disk_ref();
    (disk, disk_ref)
}

/// A real disk in a fresh temporary directory (kept alive by the guard).
pub fn real() -> (tempfile::TempDir, DiskRef) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let disk = RealDisk::open(dir.path().join("data")).expect("real disk");
    (dir, Arc::new(disk))
}

/// `len` pseudo-random bytes, the same for the same seed.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    bytes
}

pub fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// Small blocks and packs so that tests cross block and pack boundaries
/// without megabytes of data.
pub fn small_block_options() -> BlockStoreOptions {
    BlockStoreOptions {
        pack_bytes_max: 256 * 1024,
        block_bytes_max: 16 * 1024,
    }
}

pub fn small_store_options() -> ObjectStoreOptions {
    ObjectStoreOptions {
        blocks: small_block_options(),
        index: IndexOptions {
            cache_bytes: 4 * 1024 * 1024,
            verify_on_open: true,
        },
        ..ObjectStoreOptions::default()
    }
}

pub fn blocks_dir() -> PathBuf {
    PathBuf::from("node/blocks")
}

pub fn pack_path(seq: u64) -> PathBuf {
    blocks_dir().join(finkfs_node::blocks::pack_file_name(seq))
}

/// Copies one file of `from` into `to` (synced), to replay damage on a
/// pristine copy.
pub fn copy_file(from: &[u8], to: &SimDisk, path: &Path) {
    use finkfs_seam::Disk;
    if let Some(parent) = path.parent() {
        to.create_dir_all(parent).expect("directory");
    }
    let file = to.create(path).expect("create copy");
    file.write_at(0, from).expect("write copy");
    file.sync().expect("sync copy");
    to.sync_dir(path.parent().unwrap_or(Path::new("")))
        .expect("sync dir");
}

/// A disk that cuts the power of a [`SimDisk`] in the middle of whatever is
/// running: the `countdown`-th write, length change or sync (file or
/// directory) triggers the cut instead of happening. Everything after it
/// fails, as the simulator makes every handle stale.
#[derive(Debug, Clone)]
pub struct CrashingDisk {
    sim: SimDisk,
    countdown: Arc<std::sync::atomic::AtomicU64>,
}

impl CrashingDisk {
    /// Cuts the power at the `countdown`-th mutating operation (0: never).
    pub fn new(sim: SimDisk, countdown: u64) -> Self {
        CrashingDisk {
            sim,
            countdown: Arc::new(std::sync::atomic::AtomicU64::new(countdown)),
        }
    }

    /// Whether the cut has happened.
    pub fn cut(&self) -> bool {
        self.countdown.load(std::sync::atomic::Ordering::SeqCst) == u64::MAX
    }

    /// Counts one mutating operation; cuts the power when the count is due.
    fn tick(&self) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let left = self.countdown.load(Ordering::SeqCst);
        match left {
            0 => Ok(()),
            u64::MAX => Err(std::io::Error::other("power is off")),
            1 => {
                self.countdown.store(u64::MAX, Ordering::SeqCst);
                self.sim.power_cut();
                Err(std::io::Error::other("power cut"))
            }
            n => {
                self.countdown.store(n - 1, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    fn wrap(&self, file: finkfs_seam::FileRef) -> finkfs_seam::FileRef {
        Arc::new(CrashingFile {
            disk: self.clone(),
            inner: file,
        })
    }
}

#[derive(Debug)]
struct CrashingFile {
    disk: CrashingDisk,
    inner: finkfs_seam::FileRef,
}

impl finkfs_seam::DiskFile for CrashingFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.disk.tick()?;
        self.inner.write_at(offset, buf)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len_bytes: u64) -> std::io::Result<()> {
        self.disk.tick()?;
        self.inner.set_len(len_bytes)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.disk.tick()?;
        self.inner.sync()
    }
}

impl finkfs_seam::Disk for CrashingDisk {
    fn create(&self, path: &Path) -> std::io::Result<finkfs_seam::FileRef> {
        self.tick()?;
        Ok(self.wrap(self.sim.create(path)?))
    }
    fn open(&self, path: &Path) -> std::io::Result<finkfs_seam::FileRef> {
        Ok(self.wrap(self.sim.open(path)?))
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.tick()?;
        self.sim.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.tick()?;
        self.sim.rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.sim.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.tick()?;
        self.sim.sync_dir(path)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.sim.list(dir)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        self.sim.exists(path)
    }
}
