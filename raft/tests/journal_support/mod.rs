//! Shared by the journal and meta tests: deterministic payloads, the
//! documented on-disk layout (so tests can aim damage at exact records), and
//! disk wrappers that count syncs, slow them down, or cut the power after a
//! chosen number of operations.
#![allow(dead_code)]

use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use finkfs_raft::journal::{Journal, JournalOptions, RecoveryReport};
use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};
use finkfs_simdisk::SimDisk;

/// The journal directory every test uses.
pub const DIR: &str = "groups/1/journal";
/// Bytes of a segment header (docs/format/journal.md).
pub const SEGMENT_HEADER_BYTES: u64 = 80;
/// Bytes of a record before its payload (docs/format/journal.md).
pub const RECORD_HEADER_BYTES: u64 = 96;

pub fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

/// Bytes a record with `payload_len` bytes of payload takes on disk.
pub fn record_bytes(payload_len: usize) -> u64 {
    RECORD_HEADER_BYTES + (payload_len as u64).div_ceil(8) * 8
}

/// A payload that differs for every (index, term, salt), of varying length.
pub fn payload(index: u64, term: u64, salt: u64) -> Vec<u8> {
    let len = ((index * 37 + term * 11 + salt * 5) % 160 + 1) as usize;
    (0..len)
        .map(|i| {
            (index as u8).wrapping_mul(31) ^ (term as u8) ^ (salt as u8).rotate_left(3) ^ (i as u8)
        })
        .collect()
}

/// Options with tiny segments so that tests roll often.
pub fn small_segments() -> JournalOptions {
    JournalOptions {
        segment_bytes_max: 1024,
        record_bytes_max: 1 << 16,
    }
}

/// The path of the segment whose first index is `first`.
pub fn segment_path(first: u64) -> PathBuf {
    dir().join(format!("{first:020}.seg"))
}

pub fn open(disk: &SimDisk, options: &JournalOptions) -> (Journal, RecoveryReport) {
    Journal::open(disk.disk_ref(), dir(), options.clone()).expect("journal opens")
}

/// Appends `indices` at `term` with `payload(index, term, 0)`.
pub fn fill(journal: &mut Journal, indices: RangeInclusive<u64>, term: u64) {
    for index in indices {
        journal
            .append(index, term, &payload(index, term, 0))
            .expect("append");
    }
}

/// Segment files of the journal, in index order.
pub fn segment_files(disk: &SimDisk) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = disk
        .file_paths()
        .into_iter()
        .filter(|p| p.starts_with(DIR) && p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// A record as the documented layout places it in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub offset: u64,
    pub index: u64,
    pub bytes: u64,
}

/// Walks a well-formed segment file by the documented layout.
pub fn placed_records(bytes: &[u8]) -> Vec<Placed> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES as usize;
    while at + RECORD_HEADER_BYTES as usize <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let index = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        let size = record_bytes(len);
        if at as u64 + size > bytes.len() as u64 {
            break;
        }
        out.push(Placed {
            offset: at as u64,
            index,
            bytes: size,
        });
        at += size as usize;
    }
    out
}

/// Where record `index` sits: its segment file and placement.
pub fn locate(disk: &SimDisk, index: u64) -> (PathBuf, Placed) {
    for path in segment_files(disk) {
        let bytes = disk.current_bytes(&path).unwrap();
        if let Some(placed) = placed_records(&bytes)
            .into_iter()
            .find(|p| p.index == index)
        {
            return (path, placed);
        }
    }
    panic!("record {index} not found on disk");
}

/// A disk that counts file and directory syncs, and can make file syncs
/// slow while flagging that one is in progress.
#[derive(Debug, Clone)]
pub struct CountingDisk {
    inner: DiskRef,
    /// Calls of `write_at` and `write_vectored_at`, one each.
    pub writes: Arc<AtomicU64>,
    pub file_syncs: Arc<AtomicU64>,
    pub dir_syncs: Arc<AtomicU64>,
    pub in_sync: Arc<AtomicBool>,
    pub sync_delay: Arc<Mutex<Duration>>,
}

impl CountingDisk {
    pub fn new(inner: DiskRef) -> CountingDisk {
        CountingDisk {
            inner,
            writes: Arc::default(),
            file_syncs: Arc::default(),
            dir_syncs: Arc::default(),
            in_sync: Arc::default(),
            sync_delay: Arc::default(),
        }
    }

    pub fn syncs(&self) -> (u64, u64) {
        (
            self.file_syncs.load(Ordering::SeqCst),
            self.dir_syncs.load(Ordering::SeqCst),
        )
    }

    fn wrap(&self, file: FileRef) -> FileRef {
        Arc::new(CountingFile {
            inner: file,
            disk: self.clone(),
        })
    }
}

#[derive(Debug)]
struct CountingFile {
    inner: FileRef,
    disk: CountingDisk,
}

impl DiskFile for CountingFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.disk.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write_at(offset, buf)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[io::IoSlice<'_>]) -> io::Result<()> {
        self.disk.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write_vectored_at(offset, bufs)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn sync(&self) -> io::Result<()> {
        self.disk.file_syncs.fetch_add(1, Ordering::SeqCst);
        let delay = *self.disk.sync_delay.lock().unwrap();
        self.disk.in_sync.store(true, Ordering::SeqCst);
        std::thread::sleep(delay);
        let result = self.inner.sync();
        self.disk.in_sync.store(false, Ordering::SeqCst);
        result
    }
}

impl Disk for CountingDisk {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        Ok(self.wrap(self.inner.create(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<FileRef> {
        Ok(self.wrap(self.inner.open(path)?))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.dir_syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync_dir(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}

/// A simulated disk whose power goes off just before the n-th operation
/// that changes something (write, length change, sync, create, remove,
/// rename, directory sync), so crashes land inside multi-step operations.
/// Once off, every operation fails, as if the process died with it.
#[derive(Debug, Clone)]
pub struct Tripwire {
    sim: SimDisk,
    countdown: Arc<Mutex<Option<u64>>>,
    tripped: Arc<AtomicBool>,
}

impl Tripwire {
    pub fn new(sim: SimDisk) -> Tripwire {
        Tripwire {
            sim,
            countdown: Arc::default(),
            tripped: Arc::default(),
        }
    }

    /// Cut the power before the `ops`-th next changing operation (0: the next).
    pub fn arm(&self, ops: u64) {
        *self.countdown.lock().unwrap() = Some(ops);
    }

    /// Marks the power off without cutting it (the caller cut it already).
    pub fn trip_now(&self) {
        self.tripped.store(true, Ordering::SeqCst);
    }

    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    fn check(&self) -> io::Result<()> {
        if self.tripped() {
            return Err(io::Error::other("power is off"));
        }
        Ok(())
    }

    /// Counts one changing operation; cuts the power when the count runs out.
    fn change(&self) -> io::Result<()> {
        self.check()?;
        let mut countdown = self.countdown.lock().unwrap();
        match *countdown {
            Some(0) => {
                *countdown = None;
                self.sim.power_cut();
                self.tripped.store(true, Ordering::SeqCst);
                Err(io::Error::other("power cut"))
            }
            Some(n) => {
                *countdown = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn wrap(&self, file: FileRef) -> FileRef {
        Arc::new(TripwireFile {
            inner: file,
            wire: self.clone(),
        })
    }
}

#[derive(Debug)]
struct TripwireFile {
    inner: FileRef,
    wire: Tripwire,
}

impl DiskFile for TripwireFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.wire.check()?;
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.wire.change()?;
        self.inner.write_at(offset, buf)
    }
    fn len(&self) -> io::Result<u64> {
        self.wire.check()?;
        self.inner.len()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.wire.change()?;
        self.inner.set_len(len_bytes)
    }
    fn sync(&self) -> io::Result<()> {
        self.wire.change()?;
        self.inner.sync()
    }
}

impl Disk for Tripwire {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        self.change()?;
        Ok(self.wrap(self.sim.create(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<FileRef> {
        self.check()?;
        Ok(self.wrap(self.sim.open(path)?))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.change()?;
        self.sim.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.change()?;
        self.sim.rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.change()?;
        self.sim.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.change()?;
        self.sim.sync_dir(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.check()?;
        self.sim.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.check()?;
        self.sim.exists(path)
    }
}
