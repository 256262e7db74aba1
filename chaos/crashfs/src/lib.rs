//! A crash-simulating FUSE file system, in the spirit of LazyFS.
//!
//! It passes I/O through to a backing directory but holds every write that
//! has not been fsynced in its own cache, and every directory change (create,
//! mkdir, rename, unlink, rmdir) that has not been made durable by an fsync
//! of that directory. On [`Handle::power_cut`] it drops that cache, keeping
//! some of it if the [`Policy`] says so, and rebuilds what the mount shows
//! from the backing directory: the next process to open the mount sees what
//! a real disk would have held after losing power.
//!
//! The file system runs in the process that mounts it, in a background
//! thread; the power cut is triggered through the [`Handle`] by that
//! process. The processes doing I/O on the mount are separate and are
//! expected to be killed (SIGKILL) before the cut, as a power failure kills
//! them; their open files are closed by the kernel and need nothing from us.
//!
//! The backing directory always holds exactly the durable state (plus a
//! hidden orphans directory, emptied at every cut and at mount, for the
//! content of files that were fsynced but have no durable name yet). The
//! per-file model is the durable content plus the list of operations since
//! the last fsync, replayed over it on every read (`pending.rs`).
//!
//! Mounting needs `/dev/fuse` and root (the mount is made directly, without
//! the `fusermount3` helper or libfuse).

mod backing;
mod durable;
mod fs;
mod model;
mod pending;
mod policy;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fuser::{BackgroundSession, Config, MountOption};
use rand::rngs::StdRng;
use rand::SeedableRng;

pub use durable::CutReport;
pub use pending::SECTOR_BYTES;
pub use policy::Policy;

use model::{relative_inside, Model, ROOT_INO};

/// Errors of the crash file system's handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrashFsError {
    #[error("cannot mount the crash file system on {mountpoint}: {source}")]
    Mount {
        mountpoint: PathBuf,
        source: io::Error,
    },
    #[error("backing directory {path}: {source}")]
    Backing { path: PathBuf, source: io::Error },
    #[error("path {path} is not a plain relative path inside the mount")]
    BadPath { path: PathBuf },
    #[error("the crash file system's state was left inconsistent by a panic")]
    Poisoned,
}

/// Entry point: `CrashFs::mount(backing, mountpoint, seed)`.
#[derive(Debug)]
pub struct CrashFs;

impl CrashFs {
    /// Mounts a crash file system over `backing` at `mountpoint` (both
    /// existing directories). `seed` drives every random choice of later
    /// power cuts and bit flips, so a seed replays the same faults for the
    /// same sequence of operations.
    pub fn mount(
        backing: impl AsRef<Path>,
        mountpoint: impl AsRef<Path>,
        seed: u64,
    ) -> Result<Handle, CrashFsError> {
        let backing = backing.as_ref().to_path_buf();
        let mountpoint = mountpoint.as_ref().to_path_buf();
        let backing_error = |source| CrashFsError::Backing {
            path: backing.clone(),
            source,
        };
        let backing_abs = backing.canonicalize().map_err(backing_error)?;
        let mut model = Model {
            backing: backing_abs,
            nodes: Default::default(),
            next_ino: ROOT_INO + 1,
            rng: StdRng::seed_from_u64(seed),
        };
        model.reload().map_err(backing_error)?;
        let model = Arc::new(Mutex::new(model));
        let filesystem = fs::CrashFilesystem {
            model: Arc::clone(&model),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("crashfs".to_string()),
            MountOption::Subtype("crashfs".to_string()),
        ];
        let session = fuser::spawn_mount(filesystem, &mountpoint, &config).map_err(|source| {
            CrashFsError::Mount {
                mountpoint: mountpoint.clone(),
                source,
            }
        })?;
        tracing::info!(backing = %backing.display(), mountpoint = %mountpoint.display(), seed, "crash file system mounted");
        Ok(Handle {
            session: Some(session),
            model,
            mountpoint,
            backing,
        })
    }
}

/// A mounted crash file system. Dropping it unmounts; the backing directory
/// then holds the durable state, as after a [`Policy::LoseUnsynced`] cut.
#[derive(Debug)]
pub struct Handle {
    session: Option<BackgroundSession>,
    model: Arc<Mutex<Model>>,
    mountpoint: PathBuf,
    backing: PathBuf,
}

impl Handle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Cuts the power: unsynced writes survive as `policy` says, directory
    /// changes not made durable by a directory fsync are lost, and the mount
    /// shows the backing directory's state from now on. Kill the processes
    /// using the mount first: a file they still hold open becomes stale.
    pub fn power_cut(&self, policy: Policy) -> Result<CutReport, CrashFsError> {
        let mut model = self.model.lock().map_err(|_| CrashFsError::Poisoned)?;
        model
            .power_cut(policy)
            .map_err(|source| CrashFsError::Backing {
                path: self.backing.clone(),
                source,
            })
    }

    /// Flips one seeded-random bit of the durable byte at `offset` of the
    /// file `path` (relative to the mount), as bit rot between runs would.
    /// Meant for after a power cut: an unsynced write over that byte would
    /// still hide the flip until then. Returns the mask of the flipped bit.
    pub fn flip_bit(&self, path: impl AsRef<Path>, offset: u64) -> Result<u8, CrashFsError> {
        let path = path.as_ref();
        if !relative_inside(path) {
            return Err(CrashFsError::BadPath {
                path: path.to_path_buf(),
            });
        }
        let mut model = self.model.lock().map_err(|_| CrashFsError::Poisoned)?;
        model
            .flip_bit(path, offset)
            .map_err(|source| CrashFsError::Backing {
                path: self.backing.join(path),
                source,
            })
    }

    /// Unmounts and waits for the file system thread to end.
    pub fn unmount(mut self) -> Result<(), CrashFsError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), CrashFsError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        session
            .umount_and_join()
            .map_err(|source| CrashFsError::Mount {
                mountpoint: self.mountpoint.clone(),
                source,
            })?;
        let mut model = self.model.lock().map_err(|_| CrashFsError::Poisoned)?;
        model.reload().map_err(|source| CrashFsError::Backing {
            path: self.backing.clone(),
            source,
        })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(error) = self.unmount_inner() {
            tracing::warn!(%error, "unmounting the crash file system failed");
        }
    }
}
