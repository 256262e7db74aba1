//! [`NodeDisk`]: the disk one incarnation of a simulated node sees.
//!
//! It wraps the node's simulated disk, which outlives incarnations, and
//! adds three things the simulator needs:
//!
//! * **a fence**: once the incarnation ends ([`NodeDisk::power_off`]), every
//!   call on the disk and on every file opened through it fails with
//!   [`PoweredOff`], so a task that escaped the power cut changes nothing;
//! * **counters** of operations per structure (journal, meta, packs, index,
//!   snapshots), for the coverage report;
//! * **a tripwire**: "cut the power at the n-th mutating operation under
//!   this path prefix". The tripped operation is not performed; the disk
//!   fences itself at once and remembers what tripped it, so the simulator
//!   can cut the power exactly there — inside a recovery, a snapshot install
//!   or an apply batch.
//!
//! Every handle holds the incarnation's [`Incarnation`] through an `Arc`;
//! the simulator keeps a `Weak` and, after a power cut and dropping its own
//! handles, checks that no strong reference is left (a handle leaked by a
//! task that outlived its node).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, IoSlice};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use finkfs_raft::log_store::{JOURNAL_DIR, META_DIR};
use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};

/// The structure a path belongs to, by the data directory's layout
/// (`docs/format.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Structure {
    /// Journal segments.
    Journal,
    /// Vote and meta copies.
    Meta,
    /// Block packs.
    Packs,
    /// The redb index.
    Index,
    /// Snapshot files, built or received.
    Snapshots,
    /// Anything else.
    Other,
}

impl Structure {
    /// The structure of `path`.
    pub fn of(path: &Path) -> Structure {
        let mut structure = Structure::Other;
        for component in path.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            let name = name.to_string_lossy();
            structure = match name.as_ref() {
                JOURNAL_DIR => Structure::Journal,
                META_DIR => Structure::Meta,
                "blocks" => Structure::Packs,
                "snapshots" => Structure::Snapshots,
                n if n.starts_with("index.redb") => Structure::Index,
                _ => continue,
            };
        }
        structure
    }
}

/// Operations on one structure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// `read_at`, `len`, `open`, `list`, `exists`.
    pub reads: u64,
    /// `write_at`, `write_vectored_at`, `set_len`.
    pub writes: u64,
    /// `sync`, `sync_dir`.
    pub syncs: u64,
    /// `create`, `remove`, `rename`, `create_dir_all`.
    pub namespace: u64,
}

impl OpCounts {
    /// Operations that change the disk.
    pub fn mutating(&self) -> u64 {
        self.writes + self.syncs + self.namespace
    }
}

/// Where a tripwire cut the power.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    /// The operation that was not performed.
    pub op: &'static str,
    /// Its path.
    pub path: PathBuf,
    /// Its structure.
    pub structure: Structure,
}

/// The error every call returns once the incarnation has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node is powered off")]
pub struct PoweredOff;

/// Whether `error` is the fence's [`PoweredOff`].
pub fn is_powered_off(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<PoweredOff>().is_some())
}

fn powered_off() -> io::Error {
    io::Error::other(PoweredOff)
}

#[derive(Debug)]
struct Tripwire {
    prefix: PathBuf,
    /// Mutating operations under the prefix still allowed.
    remaining: u64,
}

#[derive(Debug, Default)]
struct FenceState {
    off: bool,
    counts: BTreeMap<Structure, OpCounts>,
    wire: Option<Tripwire>,
    trip: Option<Trip>,
}

/// One incarnation's fence, counters and tripwire, shared by the disk and
/// every file opened through it.
#[derive(Debug, Default)]
pub struct Incarnation {
    state: Mutex<FenceState>,
}

enum Kind {
    Read,
    Write,
    Sync,
    Namespace,
}

impl Incarnation {
    fn lock(&self) -> std::sync::MutexGuard<'_, FenceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits one operation, or refuses it because the power is off (or is
    /// cut by this very operation).
    fn admit(&self, op: &'static str, kind: Kind, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if state.off {
            return Err(powered_off());
        }
        let structure = Structure::of(path);
        let counts = state.counts.entry(structure).or_default();
        match kind {
            Kind::Read => counts.reads += 1,
            Kind::Write => counts.writes += 1,
            Kind::Sync => counts.syncs += 1,
            Kind::Namespace => counts.namespace += 1,
        }
        if matches!(kind, Kind::Read) {
            return Ok(());
        }
        let Some(wire) = state.wire.as_mut() else {
            return Ok(());
        };
        if !path.starts_with(&wire.prefix) {
            return Ok(());
        }
        if wire.remaining > 0 {
            wire.remaining -= 1;
            return Ok(());
        }
        state.wire = None;
        state.off = true;
        state.trip = Some(Trip {
            op,
            path: path.to_path_buf(),
            structure,
        });
        Err(powered_off())
    }
}

/// The disk of one incarnation of a node. See the module documentation.
#[derive(Clone)]
pub struct NodeDisk {
    inner: DiskRef,
    incarnation: Arc<Incarnation>,
}

impl fmt::Debug for NodeDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeDisk")
            .field("inner", &self.inner)
            .field("off", &self.incarnation.lock().off)
            .finish()
    }
}

impl NodeDisk {
    /// A new incarnation over `inner`, powered.
    pub fn new(inner: DiskRef) -> NodeDisk {
        NodeDisk {
            inner,
            incarnation: Arc::default(),
        }
    }

    /// Cuts the power at the mutating operation under `prefix` that comes
    /// after `allowed` others have been performed there (0: the next one).
    pub fn arm_tripwire(&self, prefix: &Path, allowed: u64) {
        self.incarnation.lock().wire = Some(Tripwire {
            prefix: prefix.to_path_buf(),
            remaining: allowed,
        });
    }

    /// Ends the incarnation: every call fails from now on.
    /// Removes the tripwire, if it has not fired.
    pub fn disarm_tripwire(&self) {
        self.incarnation.lock().wire = None;
    }

    pub fn power_off(&self) {
        self.incarnation.lock().off = true;
    }

    /// Whether the incarnation has ended (by [`Self::power_off`] or a trip).
    pub fn is_off(&self) -> bool {
        self.incarnation.lock().off
    }

    /// What the tripwire cut, if it went off.
    pub fn trip(&self) -> Option<Trip> {
        self.incarnation.lock().trip.clone()
    }

    /// Operations so far, per structure.
    pub fn counts(&self) -> BTreeMap<Structure, OpCounts> {
        self.incarnation.lock().counts.clone()
    }

    /// A weak reference to the incarnation: once the simulator has dropped
    /// its handles after a power cut, a live strong count means something
    /// still holds this incarnation's disk or files.
    pub fn watch(&self) -> Weak<Incarnation> {
        Arc::downgrade(&self.incarnation)
    }

    fn file(&self, path: &Path, inner: FileRef) -> FileRef {
        Arc::new(NodeFile {
            inner,
            path: path.to_path_buf(),
            incarnation: Arc::clone(&self.incarnation),
        })
    }
}

impl Disk for NodeDisk {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        self.incarnation.admit("create", Kind::Namespace, path)?;
        let file = self.inner.create(path)?;
        Ok(self.file(path, file))
    }

    fn open(&self, path: &Path) -> io::Result<FileRef> {
        self.incarnation.admit("open", Kind::Read, path)?;
        let file = self.inner.open(path)?;
        Ok(self.file(path, file))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.incarnation.admit("remove", Kind::Namespace, path)?;
        self.inner.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.incarnation.admit("rename", Kind::Namespace, to)?;
        self.inner.rename(from, to)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.incarnation
            .admit("create_dir_all", Kind::Namespace, path)?;
        self.inner.create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.incarnation.admit("sync_dir", Kind::Sync, path)?;
        self.inner.sync_dir(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.incarnation.admit("list", Kind::Read, dir)?;
        self.inner.list(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.incarnation.admit("exists", Kind::Read, path)?;
        self.inner.exists(path)
    }
}

/// A file opened through a [`NodeDisk`]: fenced and counted with it.
struct NodeFile {
    inner: FileRef,
    path: PathBuf,
    incarnation: Arc<Incarnation>,
}

impl fmt::Debug for NodeFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeFile")
            .field("path", &self.path)
            .finish()
    }
}

impl DiskFile for NodeFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.incarnation.admit("read_at", Kind::Read, &self.path)?;
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.incarnation
            .admit("write_at", Kind::Write, &self.path)?;
        self.inner.write_at(offset, buf)
    }

    fn write_vectored_at(&self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        self.incarnation
            .admit("write_vectored_at", Kind::Write, &self.path)?;
        self.inner.write_vectored_at(offset, bufs)
    }

    fn len(&self) -> io::Result<u64> {
        self.incarnation.admit("len", Kind::Read, &self.path)?;
        self.inner.len()
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.incarnation.admit("set_len", Kind::Write, &self.path)?;
        self.inner.set_len(len_bytes)
    }

    fn sync(&self) -> io::Result<()> {
        self.incarnation.admit("sync", Kind::Sync, &self.path)?;
        self.inner.sync()
    }
}
