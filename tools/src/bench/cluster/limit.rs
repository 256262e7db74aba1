//! The physical limit, measured on the disk under test in every round: the
//! fdatasync'd sequential write bandwidth with 1 MiB writes (as the peers'
//! disk probe, `fio --bs=1M --fdatasync=1`), the latency of a small
//! fdatasync'd append, and the sequential read bandwidth of the file just
//! written with its pages dropped from the cache.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use finkfs_seam::{Disk, RealDisk};

use super::latency::Latencies;
use crate::bench::stats::mib_per_s;

/// Size of each write of the bandwidth measurement.
const WRITE_BYTES: usize = 1 << 20;
/// Size of each fdatasync'd append of the latency measurement.
pub const APPEND_BYTES: usize = 4096;

/// How much the limit measurement writes.
#[derive(Debug, Clone, Copy)]
pub struct LimitSizes {
    /// Bytes of the sequential write (and read).
    pub sequential_bytes: u64,
    /// Number of small fdatasync'd appends.
    pub appends: u32,
}

/// One round's limit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Limit {
    /// fdatasync'd sequential write bandwidth, 1 MiB writes.
    pub write_mib_s: f64,
    /// Latency of one 4 KiB append + fdatasync, median.
    pub append_p50_ms: f64,
    /// The same, 99th percentile.
    pub append_p99_ms: f64,
    /// Sequential read bandwidth, 1 MiB reads, cold cache.
    pub read_mib_s: f64,
}

/// Measures the limit in a scratch directory under `dir`.
pub fn measure(dir: &Path, sizes: LimitSizes) -> anyhow::Result<Limit> {
    let scratch = tempfile::Builder::new()
        .prefix("finkfs-limit-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot make a scratch directory in {}", dir.display()))?;
    let disk = RealDisk::open(scratch.path())?;
    let write_s = sequential_write(&disk, Path::new("sequential"), sizes.sequential_bytes)?;
    let appends = small_appends(&disk, Path::new("appends"), sizes.appends)?;
    let read_s = sequential_read(&scratch.path().join("sequential"))?;
    Ok(Limit {
        write_mib_s: mib_per_s(sizes.sequential_bytes, write_s),
        append_p50_ms: appends.quantile_ms(0.50),
        append_p99_ms: appends.quantile_ms(0.99),
        read_mib_s: mib_per_s(sizes.sequential_bytes, read_s),
    })
}

/// 1 MiB writes into a fresh file, each followed by an fdatasync; seconds.
fn sequential_write(disk: &RealDisk, path: &Path, bytes: u64) -> anyhow::Result<f64> {
    let chunk = incompressible(WRITE_BYTES);
    let start = Instant::now();
    let file = disk.create(path)?;
    let mut offset = 0u64;
    while offset < bytes {
        let len = (WRITE_BYTES as u64).min(bytes - offset);
        file.write_at(offset, &chunk[..len as usize])?;
        file.sync()?;
        offset += len;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// `count` appends of [`APPEND_BYTES`], each followed by an fdatasync.
fn small_appends(disk: &RealDisk, path: &Path, count: u32) -> anyhow::Result<Latencies> {
    let record = incompressible(APPEND_BYTES);
    let file = disk.create(path)?;
    let mut latencies = Latencies::default();
    for n in 0..u64::from(count) {
        let start = Instant::now();
        file.write_at(n * APPEND_BYTES as u64, &record)?;
        file.sync()?;
        latencies.record(start.elapsed());
    }
    Ok(latencies)
}

/// Reads `path` in 1 MiB reads after asking the kernel to drop its pages
/// (they are clean after the fdatasyncs, so it can); seconds. Reading is
/// not durable I/O, so this goes around the seam.
fn sequential_read(path: &Path) -> anyhow::Result<f64> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
        .with_context(|| format!("cannot drop the cached pages of {}", path.display()))?;
    let mut buf = vec![0u8; WRITE_BYTES];
    let start = Instant::now();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Incompressible bytes, so no layer below can cheat by compressing.
pub fn incompressible(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"finkfs bench cluster payload")
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}
