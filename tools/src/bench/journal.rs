//! `finkfs bench journal`: the journal's append throughput with group commit
//! against the raw fdatasync'd sequential write bandwidth of the same disk.
//!
//! Both sides write the same number of bytes into fresh files and call
//! `fdatasync` after the same number of bytes (one group-commit batch), so
//! the ratio isolates what the journal adds: record headers, BLAKE3 over
//! every byte, segment rolls.
//!
//! Each batch is appended with one `Journal::append_batch` and synced with
//! one `Journal::sync`, as the log store's writer does a group commit.
//!
//! The journal is measured two ways. *Inline*: one thread hashes each
//! payload, appends and syncs, so hashing and I/O never overlap. *Pipelined*:
//! a producer thread hashes payloads ([`HashedPayload`]) and hands them to the
//! journal thread, which appends and syncs — the shape of the log store,
//! where entries are encoded and hashed by the caller while the writer
//! thread waits on the previous batch's fsync.
//!
//! Rounds are interleaved (raw, journal, raw, …) in a rotating order; the
//! ratio to raw is computed within each round and its median reported,
//! because the disk's speed drifts during a run.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use finkfs_raft::journal::{Append, HashedPayload, Journal, JournalOptions};
use finkfs_seam::{Disk, DiskRef, RealDisk};

use super::stats::{median, mib_per_s};
use crate::bench::size::{parse_size, ByteSize};

#[derive(Debug, Args)]
pub struct JournalBenchArgs {
    /// Directory on the disk to measure; a temporary folder is made inside it
    /// and removed afterwards.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Interleaved rounds; medians are taken over them.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Bytes written by each workload in each round (e.g. 256MiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    bytes_per_run: ByteSize,
    /// Bytes written between two fdatasyncs, on both sides (one group-commit batch).
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    batch_bytes: ByteSize,
    /// Journal record sizes to measure, comma separated.
    #[arg(long, default_value = "64KiB,1MiB", value_delimiter = ',', value_parser = parse_size)]
    record_sizes: Vec<ByteSize>,
}

/// Raw writes are 1 MiB each, as in the definition of the disk's limit.
const RAW_WRITE_BYTES: u64 = 1 << 20;

/// Where the journal's payloads are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hashing {
    /// By the appending thread, before each write.
    Inline,
    /// By a producer thread, overlapping the journal thread's I/O.
    Pipelined,
}

#[derive(Debug, Clone, Copy)]
enum Workload {
    Raw,
    Journal { record_bytes: u64, hashing: Hashing },
}

impl Workload {
    fn label(self) -> String {
        match self {
            Workload::Raw => "raw fdatasync'd sequential write, 1 MiB writes".to_string(),
            Workload::Journal {
                record_bytes,
                hashing,
            } => {
                let how = match hashing {
                    Hashing::Inline => "hashed inline",
                    Hashing::Pipelined => "hashed by producer",
                };
                format!("journal append, {} records, {how}", ByteSize(record_bytes))
            }
        }
    }
}

/// Hashed payloads the producer may run ahead of the journal thread: enough
/// to hash the next batch during the current batch's fsync, bounded so the
/// producer cannot buffer the whole run.
const PIPELINE_DEPTH_BYTES: u64 = 8 << 20;

pub fn run(args: &JournalBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        args.batch_bytes.0 > 0 && args.bytes_per_run.0 >= args.batch_bytes.0,
        "--bytes-per-run must be at least --batch-bytes, and both positive"
    );
    let scratch = tempfile::Builder::new()
        .prefix(".finkfs-bench-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("cannot make a scratch directory in {}", args.dir.display()))?;
    let disk: DiskRef = Arc::new(RealDisk::open(scratch.path())?);

    let mut workloads = vec![Workload::Raw];
    for size in &args.record_sizes {
        for hashing in [Hashing::Inline, Hashing::Pipelined] {
            workloads.push(Workload::Journal {
                record_bytes: size.0,
                hashing,
            });
        }
    }
    let mut samples_mib_s = vec![Vec::new(); workloads.len()];

    eprintln!(
        "finkfs bench journal: {} rounds of {} per workload, fdatasync every {}, in {}",
        args.rounds,
        args.bytes_per_run,
        args.batch_bytes,
        args.dir.display()
    );
    for round in 0..args.rounds {
        for step in 0..workloads.len() {
            // Rotate the order so no workload always runs right after another.
            let slot = (step + round as usize) % workloads.len();
            let run_dir = PathBuf::from(format!("run-{round}-{slot}"));
            disk.create_dir_all(&run_dir)?;
            let seconds = measure(&disk, &run_dir, workloads[slot], args)
                .with_context(|| format!("round {round}: {}", workloads[slot].label()))?;
            samples_mib_s[slot].push(mib_per_s(args.bytes_per_run.0, seconds));
            remove_run(scratch.path(), &run_dir)?;
        }
        eprintln!("  round {}/{} done", round + 1, args.rounds);
    }

    // The ratio is taken within each round (raw and journal measured
    // seconds apart) and its median reported: the disk's speed drifts
    // between rounds more than within one.
    println!(
        "{:<52} {:>12} {:>16}",
        "workload", "MiB/s (p50)", "÷ raw (p50 of rounds)"
    );
    for (workload, samples) in workloads.iter().zip(&samples_mib_s) {
        let ratios: Vec<f64> = samples
            .iter()
            .zip(&samples_mib_s[0])
            .map(|(own, raw)| own / raw)
            .collect();
        println!(
            "{:<52} {:>12.1} {:>16.2}",
            workload.label(),
            median(samples),
            median(&ratios)
        );
    }
    Ok(())
}

fn measure(
    disk: &DiskRef,
    dir: &Path,
    workload: Workload,
    args: &JournalBenchArgs,
) -> anyhow::Result<f64> {
    match workload {
        Workload::Raw => measure_raw(disk.as_ref(), dir, args),
        Workload::Journal {
            record_bytes,
            hashing: Hashing::Inline,
        } => measure_journal_inline(disk, dir, record_bytes, args),
        Workload::Journal {
            record_bytes,
            hashing: Hashing::Pipelined,
        } => measure_journal_pipelined(disk, dir, record_bytes, args),
    }
}

fn measure_raw(disk: &dyn Disk, dir: &Path, args: &JournalBenchArgs) -> anyhow::Result<f64> {
    let chunk = payload(RAW_WRITE_BYTES);
    let start = Instant::now();
    let file = disk.create(&dir.join("raw"))?;
    disk.sync_dir(dir)?;
    let mut offset = 0u64;
    let mut unsynced = 0u64;
    while offset < args.bytes_per_run.0 {
        let len = RAW_WRITE_BYTES.min(args.bytes_per_run.0 - offset);
        file.write_at(offset, &chunk[..len as usize])?;
        offset += len;
        unsynced += len;
        if unsynced >= args.batch_bytes.0 {
            file.sync()?;
            unsynced = 0;
        }
    }
    file.sync()?;
    Ok(start.elapsed().as_secs_f64())
}

fn measure_journal_inline(
    disk: &DiskRef,
    dir: &Path,
    record_bytes: u64,
    args: &JournalBenchArgs,
) -> anyhow::Result<f64> {
    let record = payload(record_bytes);
    let records = args.bytes_per_run.0.div_ceil(record_bytes);
    let per_batch = records_per_batch(record_bytes, args);
    let start = Instant::now();
    let (mut journal, _) =
        Journal::open(disk.clone(), dir.join("journal"), JournalOptions::default())?;
    let mut next = 1u64;
    while next <= records {
        let count = per_batch.min(records - next + 1);
        let hashed: Vec<HashedPayload<&[u8]>> = (0..count)
            .map(|_| HashedPayload::new(&record[..]))
            .collect();
        next = commit(&mut journal, next, &hashed)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn measure_journal_pipelined(
    disk: &DiskRef,
    dir: &Path,
    record_bytes: u64,
    args: &JournalBenchArgs,
) -> anyhow::Result<f64> {
    let record: Arc<[u8]> = payload(record_bytes).into();
    let records = args.bytes_per_run.0.div_ceil(record_bytes);
    let per_batch = usize::try_from(records_per_batch(record_bytes, args))?;
    let depth = usize::try_from((PIPELINE_DEPTH_BYTES / record_bytes).max(1))?;
    let start = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<HashedPayload<Arc<[u8]>>>(depth);
    let producer = thread::Builder::new()
        .name("bench-producer".into())
        .spawn(move || {
            for _ in 0..records {
                // Every record is hashed anew, as every log entry would be.
                if tx.send(HashedPayload::new(Arc::clone(&record))).is_err() {
                    return;
                }
            }
        })?;
    let (mut journal, _) =
        Journal::open(disk.clone(), dir.join("journal"), JournalOptions::default())?;
    let mut next = 1u64;
    let mut batch = Vec::with_capacity(per_batch);
    for hashed in rx {
        batch.push(hashed);
        if batch.len() == per_batch {
            next = commit(&mut journal, next, &batch)?;
            batch.clear();
        }
    }
    next = commit(&mut journal, next, &batch)?;
    let elapsed = start.elapsed().as_secs_f64();
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))?;
    anyhow::ensure!(next - 1 == records, "the producer stopped early");
    Ok(elapsed)
}

/// Records between two syncs: the first count whose bytes reach the batch.
fn records_per_batch(record_bytes: u64, args: &JournalBenchArgs) -> u64 {
    args.batch_bytes.0.div_ceil(record_bytes).max(1)
}

/// One group commit, as the log store's writer does it: the batch appended
/// in one call, then one sync. Returns the index after the batch.
fn commit<B: AsRef<[u8]>>(
    journal: &mut Journal,
    first: u64,
    batch: &[HashedPayload<B>],
) -> anyhow::Result<u64> {
    let appends: Vec<Append<'_, B>> = (first..)
        .zip(batch)
        .map(|(index, payload)| Append {
            index,
            term: 1,
            payload,
        })
        .collect();
    journal.append_batch(&appends)?;
    journal.sync()?;
    Ok(first + batch.len() as u64)
}

/// Incompressible bytes, so no layer below can cheat by compressing.
fn payload(len: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len as usize];
    let mut reader = blake3::Hasher::new()
        .update(b"finkfs bench payload")
        .finalize_xof();
    reader.fill(&mut bytes);
    bytes
}

/// Scratch data of a finished run is not durable data: it is removed with
/// `std::fs` directly rather than through the seam, which removes files only.
fn remove_run(scratch: &Path, run_dir: &Path) -> anyhow::Result<()> {
    let path = scratch.join(run_dir);
    std::fs::remove_dir_all(&path).with_context(|| format!("cannot remove {}", path.display()))
}
