//! Read-ahead for fsck: a thread that reads the files the check is about to
//! verify, a bounded distance ahead of it, so that the disk delivers the next
//! bytes while the checker hashes the current ones.
//!
//! The checker reads a piece, then hashes it; alone it leaves the disk idle
//! while it hashes and the CPU idle while it waits for the disk. The
//! prefetcher reads the same files in the same order (its plan: one stream
//! of the check) into a buffer it throws away: what it read is in the page
//! cache when the checker asks for it. It stays at most `ahead_bytes` ahead
//! of what the checker has read through the view it returns, so on a store
//! larger than memory it never evicts what the checker has yet to read.
//!
//! It only reads, through the same read-only view of the disk; an error it
//! meets ends its work on that file and is left for the checker to find and
//! report (an unreadable sector is reported with its offset by the check,
//! not here).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};

/// Bytes the prefetcher reads at once. Small reads cost less CPU than large
/// ones for the same bytes (the buffer stays in the CPU's cache; 128 KiB
/// reads took half the CPU time of 4 MiB reads from a cold page cache),
/// and the kernel's own read-ahead still keeps the disk busy.
const CHUNK_BYTES: u64 = 128 << 10;

/// What the checker has read so far, and whether the check is over.
#[derive(Debug, Default)]
struct Progress {
    consumed: u64,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    progress: Mutex<Progress>,
    moved: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        // A panic while holding this lock leaves plain counters behind.
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn consumed(&self, bytes: u64) {
        self.lock().consumed += bytes;
        self.moved.notify_one();
    }

    /// Waits until `ahead` is less than `window` past what the checker
    /// read; false once the check is over.
    fn wait_for_room(&self, ahead: u64, window: u64) -> bool {
        let mut progress = self.lock();
        while !progress.stop && ahead >= progress.consumed.saturating_add(window) {
            progress = self.moved.wait(progress).unwrap_or_else(|e| e.into_inner());
        }
        !progress.stop
    }
}

/// The read-ahead thread of one check; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Prefetcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Prefetcher {
    /// Starts reading the files `plan` lists on `disk`, in that order, at
    /// most `ahead_bytes` ahead of the reads made through the disk it
    /// returns (the checker's view). With `ahead_bytes` 0, under the
    /// simulator, or if no thread can be started, the check runs without
    /// read-ahead (and `plan` is not called).
    pub fn start(
        disk: DiskRef,
        ahead_bytes: u64,
        plan: impl FnOnce(&DiskRef) -> Vec<PathBuf>,
    ) -> (Prefetcher, DiskRef) {
        let shared = Arc::new(Shared::default());
        let counted: DiskRef = Arc::new(CountingDisk {
            inner: disk.clone(),
            shared: shared.clone(),
        });
        let mut prefetcher = Prefetcher {
            shared: shared.clone(),
            thread: None,
        };
        // Under the simulator every thread must be its own: a stray reader
        // would make a run impossible to replay.
        if ahead_bytes == 0 || finkfs_raft::rt::simulated() {
            return (prefetcher, counted);
        }
        let plan = plan(&disk);
        let spawned = std::thread::Builder::new()
            .name("fsck-read-ahead".into())
            .spawn(move || read_ahead(&disk, &plan, &shared, ahead_bytes));
        match spawned {
            Ok(thread) => prefetcher.thread = Some(thread),
            Err(error) => tracing::warn!(%error, "fsck runs without read-ahead"),
        }
        (prefetcher, counted)
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.moved.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread only reads; a panic in it has nothing to undo.
            let _ = thread.join();
        }
    }
}

fn read_ahead(disk: &DiskRef, plan: &[PathBuf], shared: &Shared, window: u64) {
    let mut buf = vec![0u8; CHUNK_BYTES as usize];
    let mut ahead = 0u64;
    for path in plan {
        // A directory, a missing file: nothing to read ahead.
        let Ok(file) = disk.open(path) else { continue };
        let Ok(len) = file.len() else { continue };
        let mut offset = 0;
        while offset < len {
            if !shared.wait_for_room(ahead, window) {
                return;
            }
            let n = CHUNK_BYTES.min(len - offset);
            let piece = &mut buf[..usize::try_from(n).expect("a chunk fits in memory")];
            if file.read_at(offset, piece).is_err() {
                break;
            }
            offset += n;
            ahead += n;
        }
    }
}

/// The checker's view of the disk: reads are counted, so the prefetcher
/// knows how far the check is.
#[derive(Debug)]
struct CountingDisk {
    inner: DiskRef,
    shared: Arc<Shared>,
}

impl Disk for CountingDisk {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        self.inner.create(path)
    }

    fn open(&self, path: &Path) -> io::Result<FileRef> {
        let inner = self.inner.open(path)?;
        Ok(Arc::new(CountingFile {
            inner,
            shared: self.shared.clone(),
        }))
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
        self.inner.sync_dir(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}

#[derive(Debug)]
struct CountingFile {
    inner: FileRef,
    shared: Arc<Shared>,
}

impl DiskFile for CountingFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let read = self.inner.read_at(offset, buf);
        self.shared.consumed(buf.len() as u64);
        read
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, buf)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }

    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetcher_waits_for_the_checker_and_stops_when_told() {
        let shared = Arc::new(Shared::default());
        assert!(shared.wait_for_room(0, 10), "room at the start");
        shared.consumed(5);
        assert!(shared.wait_for_room(14, 10), "5 read, 14 ahead, window 10");
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| shared.wait_for_room(100, 10));
            shared.lock().stop = true;
            shared.moved.notify_all();
            assert!(!waiter.join().expect("no panic"), "a stop ends the wait");
        });
    }
}
