//! `finkfs bench fsck`: the offline check's speed against the sequential
//! read bandwidth of the same disk, both read from a cold page cache.
//!
//! fsck reads every byte of the journal and the packs and verifies its
//! BLAKE3, so the most it can reach is the disk's sequential read speed; the
//! ratio says what the checking adds (hashing, record parsing, index
//! lookups, the index copy). Each round measures both, one after the other:
//! a file of `--bytes` written with fdatasync and read back in 1 MiB reads,
//! then `fsck::check_data_dir` (what `finkfs fsck --data-dir` runs) on a
//! data directory built once, before the rounds, by the node's own journal
//! and state machine. Before every timed read the page cache is emptied
//! (see [`CacheDrop`]); the ratio is taken within each round and its median
//! reported.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use finkfs_node::command::{plan_put, Command, BLOCK_BYTES, ENTRY_BYTES_MAX};
use finkfs_node::fsck::{self, FsckOptions, FsckReport};
use finkfs_node::membership::make_log_id;
use finkfs_node::state_machine::{NoFetcher, StateMachine, StateMachineOptions};
use finkfs_raft::entry_codec::encode_entry_into;
use finkfs_raft::journal::{Journal, JournalOptions};
use finkfs_raft::log_store::{DurableState, JOURNAL_DIR, META_DIR};
use finkfs_raft::meta::MetaStore;
use finkfs_raft::types::{AppCommand, Entry, EntryPayload, Vote};
use finkfs_seam::{DiskRef, RealDisk};

use super::stats::{median, mib_per_s};
use crate::bench::size::{parse_size, ByteSize};

#[derive(Debug, Args)]
pub struct FsckBenchArgs {
    /// Directory on the disk to measure; a temporary folder is made inside it
    /// and removed afterwards. It needs room for about three times --bytes.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Bytes of objects in the data directory, and of the file read for the
    /// disk's sequential read bandwidth (e.g. 1GiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    bytes: ByteSize,
    /// Interleaved rounds; medians are taken over them.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// How far fsck's read-ahead thread may run ahead of the check (0 turns
    /// it off, to see what it brings).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    read_ahead: ByteSize,
}

/// Reads of the raw side are 1 MiB each, as in the definition of the limit.
const READ_BYTES: u64 = 1 << 20;
/// The data directory's one group, as the daemon lays it out.
const GROUP: &str = "groups/0";
/// Object sizes, in turn: alerts of tens of KiB (one entry each, blocks
/// inline) and a cutout bundle of a few MiB (blocks in entries of their own).
const OBJECT_SIZES: [usize; 4] = [48_000, 71_000, 95_000, (3 << 20) + 17];
/// Journal bytes between two syncs, and entries applied in one call.
const BUILD_BATCH_BYTES: usize = 64 << 20;
/// The term and leader of every entry of the built log.
const TERM: u64 = 1;
const LEADER: u64 = 1;

pub fn run(args: &FsckBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(args.bytes.0 > 0, "--bytes must be positive");
    let scratch = tempfile::Builder::new()
        .prefix(".finkfs-bench-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("cannot make a scratch directory in {}", args.dir.display()))?;
    let data_path = scratch.path().join("data");
    let raw_path = scratch.path().join("raw");
    let index_path = scratch.path().join("fsck-index");
    for dir in [&data_path, &raw_path, &index_path] {
        std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let data: DiskRef = Arc::new(RealDisk::open(&data_path)?);
    let raw: DiskRef = Arc::new(RealDisk::open(&raw_path)?);
    let cache = CacheDrop::detect(&data_path);

    eprintln!(
        "finkfs bench fsck: {} rounds, {} of objects, fsck read-ahead {}, in {}; {}",
        args.rounds,
        args.bytes,
        args.read_ahead,
        args.dir.display(),
        cache.describe()
    );
    let started = Instant::now();
    let built = build_data_dir(&data, args.bytes.0).context("building the data directory")?;
    eprintln!(
        "  data directory built in {:.1} s: {} objects, {} bytes of objects",
        started.elapsed().as_secs_f64(),
        built.objects,
        built.object_bytes
    );

    let mut rows = Vec::new();
    for round in 0..args.rounds {
        let read = measure_read(&raw, &raw_path, args.bytes.0, cache)
            .with_context(|| format!("round {round}: sequential read"))?;
        let check = measure_fsck(&data, &data_path, &index_path, cache, args.read_ahead)
            .with_context(|| format!("round {round}: fsck"))?;
        eprintln!(
            "  round {}/{}: read {:.1} MiB/s, fsck {:.1} MiB/s",
            round + 1,
            args.rounds,
            read.mib_s,
            check.mib_s
        );
        rows.push((read, check));
    }
    println!("fsck read-ahead: {}", args.read_ahead);
    print_table(&rows, cache);
    Ok(())
}

/// One timed read: what was read, in how long.
#[derive(Debug, Clone, Copy)]
struct Sample {
    bytes: u64,
    seconds: f64,
    mib_s: f64,
}

impl Sample {
    fn new(bytes: u64, seconds: f64) -> Sample {
        Sample {
            bytes,
            seconds,
            mib_s: mib_per_s(bytes, seconds),
        }
    }
}

fn print_table(rows: &[(Sample, Sample)], cache: CacheDrop) {
    println!("page cache: {}", cache.describe());
    println!(
        "{:>5} {:>14} {:>12} {:>14} {:>12} {:>10} {:>8}",
        "round", "read bytes", "read MiB/s", "fsck bytes", "fsck s", "fsck MiB/s", "÷ read"
    );
    for (n, (read, check)) in rows.iter().enumerate() {
        println!(
            "{:>5} {:>14} {:>12.1} {:>14} {:>12.3} {:>10.1} {:>8.2}",
            n + 1,
            read.bytes,
            read.mib_s,
            check.bytes,
            check.seconds,
            check.mib_s,
            check.mib_s / read.mib_s
        );
    }
    let reads: Vec<f64> = rows.iter().map(|(r, _)| r.mib_s).collect();
    let checks: Vec<f64> = rows.iter().map(|(_, c)| c.mib_s).collect();
    let ratios: Vec<f64> = rows.iter().map(|(r, c)| c.mib_s / r.mib_s).collect();
    println!(
        "{:>5} {:>14} {:>12.1} {:>14} {:>12} {:>10.1} {:>8.2}",
        "p50",
        "",
        median(&reads),
        "",
        "",
        median(&checks),
        median(&ratios)
    );
}

/// The disk's sequential read bandwidth: a file written and synced through
/// the seam, dropped from the page cache, read in 1 MiB reads.
fn measure_read(
    disk: &DiskRef,
    root: &Path,
    bytes: u64,
    cache: CacheDrop,
) -> anyhow::Result<Sample> {
    let name = Path::new("sequential");
    let file = disk.create(name)?;
    let chunk = payload(0, READ_BYTES as usize);
    let mut offset = 0u64;
    while offset < bytes {
        let len = READ_BYTES.min(bytes - offset);
        file.write_at(offset, &chunk[..len as usize])?;
        offset += len;
    }
    file.sync()?;
    disk.sync_dir(Path::new(""))?;
    drop(file);
    cache.drop_cached(root)?;

    let start = Instant::now();
    let file = disk.open(name)?;
    let mut buf = vec![0u8; READ_BYTES as usize];
    let mut offset = 0u64;
    let mut fold = 0u8;
    while offset < bytes {
        let len = READ_BYTES.min(bytes - offset) as usize;
        file.read_at(offset, &mut buf[..len])?;
        // Touch the bytes so the read cannot be optimised away.
        fold ^= buf[len - 1];
        offset += len as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(fold);
    drop(file);
    disk.remove(name)?;
    Ok(Sample::new(bytes, seconds))
}

/// One offline check of the data directory from a cold page cache; its
/// speed counts every byte it read and verified.
fn measure_fsck(
    data: &DiskRef,
    data_root: &Path,
    index_root: &Path,
    cache: CacheDrop,
    read_ahead: ByteSize,
) -> anyhow::Result<Sample> {
    let scratch_dir = tempfile::Builder::new()
        .prefix("round-")
        .tempdir_in(index_root)?;
    let scratch: DiskRef = Arc::new(RealDisk::open(scratch_dir.path())?);
    cache.drop_cached(data_root)?;
    let options = FsckOptions {
        read_ahead_bytes: read_ahead.0,
        ..FsckOptions::default()
    };
    let mut phases = Phases::new();
    let report = fsck::check_data_dir(data.clone(), scratch, &options, &mut phases)?;
    let seconds = phases.start.elapsed().as_secs_f64();
    ensure_healthy(&report)?;
    phases.show();
    Ok(Sample::new(report.totals.bytes_checked, seconds))
}

/// How far a check was when each kind of file (journal, packs, other) was
/// done: its bytes, and the seconds from the start to its last progress
/// report. The journal and the packs are checked at the same time, each
/// from the start, so each kind's rate is its bytes over that time.
#[derive(Debug)]
struct Phases {
    start: Instant,
    /// (kind, bytes, seconds since the start), in the order reported.
    reports: Vec<(&'static str, u64, f64)>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            start: Instant::now(),
            reports: Vec::new(),
        }
    }

    fn show(&self) {
        let mut line = String::from("    fsck phases:");
        for kind in ["journal", "packs", "other"] {
            let (bytes, done) = self
                .reports
                .iter()
                .filter(|(k, _, _)| *k == kind)
                .fold((0, 0.0), |(b, d): (u64, f64), (_, bytes, at)| {
                    (b + bytes, d.max(*at))
                });
            if done > 0.0 {
                line += &format!(
                    " {kind} {:.1} MiB done at {done:.3} s ({:.1} MiB/s);",
                    bytes as f64 / f64::from(1 << 20),
                    mib_per_s(bytes, done)
                );
            }
        }
        eprintln!("{line}");
    }
}

impl fsck::Progress for Phases {
    fn checked(&mut self, bytes: u64, file: &Path) {
        let at = self.start.elapsed().as_secs_f64();
        let text = file.to_string_lossy();
        let kind = if text.ends_with(JOURNAL_DIR) {
            "journal"
        } else if text.contains("/blocks/") {
            "packs"
        } else {
            "other"
        };
        self.reports.push((kind, bytes, at));
    }
}

fn ensure_healthy(report: &FsckReport) -> anyhow::Result<()> {
    anyhow::ensure!(
        report.is_healthy(),
        "fsck found damage in the data directory the benchmark built: {:#?}",
        report.problems
    );
    Ok(())
}

/// How the page cache is emptied before a timed read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheDrop {
    /// `echo 1 > /proc/sys/vm/drop_caches` (needs root): the whole cache.
    Kernel,
    /// `posix_fadvise(DONTNEED)` on every file under the measured directory.
    Fadvise,
    /// Neither works: the numbers are cache-warm.
    Warm,
}

const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

impl CacheDrop {
    fn detect(dir: &Path) -> CacheDrop {
        if drop_kernel_caches().is_ok() {
            CacheDrop::Kernel
        } else if advise_dont_need(dir).is_ok() {
            CacheDrop::Fadvise
        } else {
            CacheDrop::Warm
        }
    }

    fn describe(self) -> &'static str {
        match self {
            CacheDrop::Kernel => {
                "dropped before every timed read (echo 1 > /proc/sys/vm/drop_caches)"
            }
            CacheDrop::Fadvise => {
                "dropped before every timed read (posix_fadvise DONTNEED on each file)"
            }
            CacheDrop::Warm => "NOT dropped (no root, no fadvise): the numbers are cache-warm",
        }
    }

    /// Empties the cache of the files under `dir` (all of it for `Kernel`).
    fn drop_cached(self, dir: &Path) -> anyhow::Result<()> {
        match self {
            CacheDrop::Kernel => drop_kernel_caches().context("dropping the page cache"),
            CacheDrop::Fadvise => advise_dont_need(dir).context("posix_fadvise DONTNEED"),
            CacheDrop::Warm => Ok(()),
        }
    }
}

/// Drops clean pages only; every file measured was synced before.
fn drop_kernel_caches() -> std::io::Result<()> {
    std::fs::write(DROP_CACHES, b"1")
}

/// A hint to the kernel about cached pages, not I/O on durable data, so it
/// goes to the files directly rather than through the seam (which has no
/// such call).
fn advise_dont_need(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            advise_dont_need(&path)?;
        } else {
            let file = std::fs::File::open(&path)?;
            rustix::fs::fadvise(&file, 0, None::<NonZeroU64>, rustix::fs::Advice::DontNeed)?;
        }
    }
    Ok(())
}

/// What the built data directory holds.
#[derive(Debug)]
struct Built {
    objects: u64,
    object_bytes: u64,
}

/// Builds a node's data directory holding about `bytes` of objects, as a
/// node that took the writes would have it: every command in the journal
/// (synced), applied by the state machine (its packs and index synced), the
/// vote and commit index saved.
fn build_data_dir(disk: &DiskRef, bytes: u64) -> anyhow::Result<Built> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let group = PathBuf::from(GROUP);
    let (mut journal, _) = Journal::open(
        disk.clone(),
        group.join(JOURNAL_DIR),
        JournalOptions::default(),
    )?;
    let sm = StateMachine::open(
        disk.clone(),
        group.clone(),
        StateMachineOptions::default(),
        Arc::new(NoFetcher),
    )?;
    let mut built = Built {
        objects: 0,
        object_bytes: 0,
    };
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    let mut next_index = 1u64;
    let mut buf = Vec::new();
    while built.object_bytes < bytes {
        let len = OBJECT_SIZES[(built.objects % OBJECT_SIZES.len() as u64) as usize];
        let path = format!("ztf/raw/day=14/alert-{:08}.avro", built.objects);
        let data = Bytes::from(payload(built.objects + 1, len));
        for command in plan_put(&path, data, BLOCK_BYTES, ENTRY_BYTES_MAX).commands {
            let entry = entry(next_index, &command);
            buf.clear();
            encode_entry_into(&entry, &mut buf)?;
            journal.append(next_index, TERM, &buf)?;
            batch_bytes += buf.len();
            batch.push(entry);
            next_index += 1;
        }
        built.objects += 1;
        built.object_bytes += len as u64;
        if batch_bytes >= BUILD_BATCH_BYTES {
            journal.sync()?;
            runtime.block_on(sm.apply_entries(std::mem::take(&mut batch)))?;
            batch_bytes = 0;
        }
    }
    journal.sync()?;
    runtime.block_on(sm.apply_entries(batch))?;
    runtime.block_on(sm.sync())?;
    drop(sm);
    drop(journal);
    save_state(disk, &group, next_index - 1)?;
    Ok(built)
}

fn entry(index: u64, command: &Command) -> Entry {
    Entry {
        log_id: make_log_id(index, TERM, LEADER),
        payload: EntryPayload::Normal(AppCommand(command.encode())),
    }
}

/// The vote and commit index a member that took every write would save.
fn save_state(disk: &DiskRef, group: &Path, last_index: u64) -> anyhow::Result<()> {
    let (mut meta, _) = MetaStore::open(disk.clone(), group.join(META_DIR))?;
    let state = DurableState {
        vote: Some(Vote::new_committed(TERM, LEADER)),
        committed: Some(make_log_id(last_index, TERM, LEADER)),
        purged: None,
        vouch_floor: None,
        tail_floor: None,
    };
    meta.save(&state.encode())?;
    Ok(())
}

/// Incompressible bytes, different for each seed, so no layer below can
/// compress or deduplicate them.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let mut reader = blake3::Hasher::new()
        .update(b"finkfs bench fsck payload")
        .update(&seed.to_le_bytes())
        .finalize_xof();
    reader.fill(&mut bytes);
    bytes
}
