//! [`MeteredDisk`]: the node's disk, timed. It wraps the real disk and
//! counts, per structure (journal, meta, blocks, index, snapshots), how long
//! every fsync takes, how many bytes are written and how many operations
//! fail — without any of those structures knowing: they all write through
//! the seam, so timing the seam times them all.

use std::io::{self, IoSlice};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use finkfs_seam::{Disk, DiskFile, DiskRef, FileRef};

/// The structures fsyncs are attributed to, by the path they touch.
pub const STRUCTURES: [&str; 6] = ["journal", "meta", "blocks", "index", "snapshots", "other"];

/// Upper bounds (seconds) of the fsync latency histogram buckets.
pub const SYNC_BUCKETS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram with fixed buckets (cumulative on render).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; SYNC_BUCKETS_SECONDS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = SYNC_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(SYNC_BUCKETS_SECONDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket bound (the last is +Inf), the total
    /// count and the sum in seconds.
    pub fn read(&self) -> (Vec<u64>, u64, f64) {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut running = 0;
        for bucket in &self.buckets {
            running += bucket.load(Ordering::Relaxed);
            cumulative.push(running);
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, running, sum)
    }
}

/// What is counted for one structure.
#[derive(Debug, Default)]
pub struct StructureStats {
    /// fsync latency (files and directories).
    pub sync: Histogram,
    /// Bytes written.
    pub bytes_written: AtomicU64,
    /// Failed operations (any I/O error).
    pub errors: AtomicU64,
}

/// The counters of every structure.
#[derive(Debug, Default)]
pub struct DiskStats {
    structures: [StructureStats; STRUCTURES.len()],
}

impl DiskStats {
    /// The counters of `structure` (one of [`STRUCTURES`]).
    pub fn structure(&self, structure: &str) -> Option<&StructureStats> {
        let index = STRUCTURES.iter().position(|s| *s == structure)?;
        Some(&self.structures[index])
    }

    /// Every structure's name and counters.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &StructureStats)> {
        STRUCTURES.iter().copied().zip(self.structures.iter())
    }
}

/// The structure a path belongs to (an index into [`STRUCTURES`]).
fn classify(path: &Path) -> usize {
    for component in path.iter().rev() {
        let name = component.to_string_lossy();
        let found = match name.as_ref() {
            "journal" => Some(0),
            "meta" => Some(1),
            "blocks" => Some(2),
            "snapshots" => Some(4),
            other if other.starts_with("index") => Some(3),
            _ => None,
        };
        if let Some(found) = found {
            return found;
        }
    }
    STRUCTURES.len() - 1
}

/// A disk whose every operation is counted in a [`DiskStats`].
#[derive(Debug)]
pub struct MeteredDisk {
    inner: DiskRef,
    stats: Arc<DiskStats>,
}

impl MeteredDisk {
    /// `inner`, counted in `stats`.
    pub fn new(inner: DiskRef, stats: Arc<DiskStats>) -> MeteredDisk {
        MeteredDisk { inner, stats }
    }

    fn counted<T>(&self, path: &Path, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.stats.structures[classify(path)]
                .errors
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn wrap(&self, path: &Path, file: io::Result<FileRef>) -> io::Result<FileRef> {
        let file = self.counted(path, file)?;
        Ok(Arc::new(MeteredFile {
            inner: file,
            stats: Arc::clone(&self.stats),
            structure: classify(path),
        }))
    }
}

impl Disk for MeteredDisk {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        self.wrap(path, self.inner.create(path))
    }
    fn open(&self, path: &Path) -> io::Result<FileRef> {
        self.wrap(path, self.inner.open(path))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.counted(path, self.inner.remove(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.counted(to, self.inner.rename(from, to))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.counted(path, self.inner.create_dir_all(path))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let started = Instant::now();
        let result = self.inner.sync_dir(path);
        self.stats.structures[classify(path)]
            .sync
            .observe(started.elapsed());
        self.counted(path, result)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.counted(dir, self.inner.list(dir))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.counted(path, self.inner.exists(path))
    }
}

/// A file of a [`MeteredDisk`].
#[derive(Debug)]
struct MeteredFile {
    inner: FileRef,
    stats: Arc<DiskStats>,
    structure: usize,
}

impl MeteredFile {
    fn stats(&self) -> &StructureStats {
        &self.stats.structures[self.structure]
    }

    fn counted<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.stats().errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

impl DiskFile for MeteredFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.counted(self.inner.read_at(offset, buf))
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let result = self.counted(self.inner.write_at(offset, buf));
        if result.is_ok() {
            self.stats()
                .bytes_written
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        result
    }
    // Forwarded, not left to the default, which would copy the pieces into
    // one buffer and undo the journal's uncopied batch writes.
    fn write_vectored_at(&self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let result = self.counted(self.inner.write_vectored_at(offset, bufs));
        if result.is_ok() {
            let bytes: usize = bufs.iter().map(|buf| buf.len()).sum();
            self.stats()
                .bytes_written
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
        result
    }
    fn len(&self) -> io::Result<u64> {
        self.counted(self.inner.len())
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.counted(self.inner.set_len(len_bytes))
    }
    fn sync(&self) -> io::Result<()> {
        let started = Instant::now();
        let result = self.inner.sync();
        self.stats().sync.observe(started.elapsed());
        self.counted(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_attributed_to_their_structure() {
        let cases = [
            ("groups/0/journal/00000001.seg", "journal"),
            ("groups/0/meta/copy-a", "meta"),
            ("groups/0/blocks/3.pack", "blocks"),
            ("groups/0/index.redb", "index"),
            ("groups/0/snapshots/incoming/x.tmp", "snapshots"),
            ("groups/0", "other"),
        ];
        for (path, structure) in cases {
            assert_eq!(STRUCTURES[classify(Path::new(path))], structure, "{path}");
        }
    }

    #[test]
    fn writes_syncs_and_errors_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let real: DiskRef = Arc::new(finkfs_seam::RealDisk::open(dir.path()).unwrap());
        let stats = Arc::new(DiskStats::default());
        let disk = MeteredDisk::new(real, Arc::clone(&stats));
        disk.create_dir_all(Path::new("g/journal")).unwrap();
        let file = disk.create(Path::new("g/journal/a")).unwrap();
        file.write_at(0, b"hello").unwrap();
        let pieces = [IoSlice::new(b" vec"), IoSlice::new(b"tored")];
        file.write_vectored_at(5, &pieces).unwrap();
        file.sync().unwrap();
        assert!(disk.open(Path::new("g/journal/missing")).is_err());
        let mut back = [0u8; 14];
        file.read_at(0, &mut back).unwrap();
        assert_eq!(&back, b"hello vectored");
        let journal = stats.structure("journal").unwrap();
        assert_eq!(journal.bytes_written.load(Ordering::Relaxed), 14);
        assert_eq!(journal.sync.read().1, 1);
        assert_eq!(journal.errors.load(Ordering::Relaxed), 1);
        assert_eq!(stats.structure("blocks").unwrap().sync.read().1, 0);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(10));
        let (cumulative, count, sum) = histogram.read();
        assert_eq!(count, 3);
        assert_eq!(cumulative[0], 1);
        assert_eq!(cumulative[5], 2); // <= 5 ms
        assert_eq!(*cumulative.last().unwrap(), 3);
        assert!(sum > 10.0);
    }
}
