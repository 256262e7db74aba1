//! The check of a data directory as two streams that share nothing until
//! their findings are merged: the log stream (each group's journal, then its
//! vote copies compared with it) and the store stream (each group's index,
//! then its packs compared with it). Both are CPU-bound (BLAKE3 and copies
//! out of the page cache), so on two threads they keep two cores busy; each
//! has a read-ahead of its own, the two within `read_ahead_bytes` together.
//! The snapshots, which need the purge point from the vote copies, are
//! checked as the findings are merged.
//!
//! The report does not depend on the threads: each stream keeps its
//! findings per group, merged in the order a check on one thread finds them
//! (per group: journal, meta, index, packs, snapshots). When the check stops
//! on an error, it is the error a check on one thread would stop on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use finkfs_raft::log_store::{JOURNAL_DIR, META_DIR};
use finkfs_seam::DiskRef;

use super::prefetch::Prefetcher;
use super::{blocks, index, journal, meta, snapshots};
use super::{Findings, FsckError, FsckOptions, Progress, BLOCKS_DIR, INDEX_FILE, SNAPSHOTS_DIR};

/// Progress reports of the stream threads waiting for the calling thread,
/// which hands them on.
const PROGRESS_QUEUE_DEPTH_MAX: usize = 1024;

/// What the log stream found in one group.
#[derive(Debug)]
struct LogPart {
    findings: Findings,
    /// How far the journal was purged, from the vote copies.
    purged: Option<u64>,
}

/// A stream's results, one per group from the first; after an error it
/// checks no group beyond the first that failed in either stream.
type Parts<T> = Vec<Result<T, FsckError>>;

/// Checks `groups` on `disk` (read-only), the index copies on `scratch`.
pub(crate) fn check_groups(
    disk: &DiskRef,
    scratch: &DiskRef,
    groups: &[PathBuf],
    options: &FsckOptions,
    progress: &mut dyn Progress,
) -> Result<Findings, FsckError> {
    let window = options.read_ahead_bytes.div_ceil(2);
    let (_log_ahead, log_disk) = Prefetcher::start(disk.clone(), window, |d| log_plan(d, groups));
    let (_store_ahead, store_disk) =
        Prefetcher::start(disk.clone(), window, |d| store_plan(d, groups));
    let failed = AtomicUsize::new(usize::MAX);
    let log = |progress: &mut dyn Progress| {
        each_group(groups, &failed, |_, group| {
            log_part(&log_disk, group, options, progress)
        })
    };
    let store = |progress: &mut dyn Progress| {
        each_group(groups, &failed, |n, group| {
            store_part(&store_disk, scratch, n, group, options, progress)
        })
    };
    // Under the simulator every thread must be its own: a stray one would
    // make a run impossible to replay.
    let (logs, stores) = if options.parallel && !finkfs_raft::rt::simulated() {
        on_two_threads(log, store, progress)
    } else {
        (log(progress), store(progress))
    };
    merge(&store_disk, groups, logs, stores, progress)
}

/// Runs `check` on each group in turn, until it fails or another stream
/// failed on an earlier group.
fn each_group<T>(
    groups: &[PathBuf],
    failed: &AtomicUsize,
    mut check: impl FnMut(usize, &Path) -> Result<T, FsckError>,
) -> Parts<T> {
    let mut parts = Vec::new();
    for (n, group) in groups.iter().enumerate() {
        if n > failed.load(Ordering::Acquire) {
            break;
        }
        let part = check(n, group);
        let stop = part.is_err();
        parts.push(part);
        if stop {
            failed.fetch_min(n, Ordering::AcqRel);
            break;
        }
    }
    parts
}

fn log_part(
    disk: &DiskRef,
    group: &Path,
    options: &FsckOptions,
    progress: &mut dyn Progress,
) -> Result<LogPart, FsckError> {
    let mut findings = Findings::default();
    let dir = group.join(JOURNAL_DIR);
    let journal = journal::check(disk, &dir, options, &mut findings, progress)?;
    let dir = group.join(META_DIR);
    let purged = meta::check(disk, &dir, &journal, &mut findings, progress)?;
    Ok(LogPart { findings, purged })
}

fn store_part(
    disk: &DiskRef,
    scratch: &DiskRef,
    n: usize,
    group: &Path,
    options: &FsckOptions,
    progress: &mut dyn Progress,
) -> Result<Findings, FsckError> {
    let mut findings = Findings::default();
    let scratch_dir = PathBuf::from(format!("group-{n}"));
    let content = index::check(
        disk,
        scratch,
        &scratch_dir,
        group,
        options,
        &mut findings,
        progress,
    )?;
    let dir = group.join(BLOCKS_DIR);
    blocks::check(disk, &dir, content.as_ref(), &mut findings, progress)?;
    Ok(findings)
}

/// The findings of both streams in the order of a check on one thread,
/// each group's snapshots checked after its packs.
fn merge(
    disk: &DiskRef,
    groups: &[PathBuf],
    logs: Parts<LogPart>,
    stores: Parts<Findings>,
    progress: &mut dyn Progress,
) -> Result<Findings, FsckError> {
    let mut all = Findings::default();
    let (mut logs, mut stores) = (logs.into_iter(), stores.into_iter());
    for group in groups {
        // A stream stops short only after a group where one of them failed,
        // and that failure returns below before the parts run out.
        let log = logs.next().expect("the log stream checked this group")?;
        let store = stores
            .next()
            .expect("the store stream checked this group")?;
        let applied = store.applied_index;
        all.absorb(log.findings);
        all.absorb(store);
        let dir = group.join(SNAPSHOTS_DIR);
        snapshots::check(disk, &dir, log.purged, applied, &mut all, progress)?;
        all.totals.groups += 1;
    }
    Ok(all)
}

/// Runs the two streams on threads of their own, handing their progress
/// reports on from this thread. A stream whose thread cannot be started
/// runs here once the other is done.
fn on_two_threads<L: Send, S: Send>(
    log: impl Fn(&mut dyn Progress) -> L + Copy + Send,
    store: impl Fn(&mut dyn Progress) -> S + Copy + Send,
    progress: &mut dyn Progress,
) -> (L, S) {
    let (sender, reports) = mpsc::sync_channel(PROGRESS_QUEUE_DEPTH_MAX);
    std::thread::scope(|scope| {
        let log_thread = spawn(scope, "fsck-log", sender.clone(), log);
        let store_thread = spawn(scope, "fsck-store", sender, store);
        // Ends once both threads are done and their senders dropped.
        for (bytes, file) in reports {
            progress.checked(bytes, &file);
        }
        (
            join(log_thread, log, progress),
            join(store_thread, store, progress),
        )
    })
}

fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    name: &str,
    sender: SyncSender<(u64, PathBuf)>,
    stream: impl FnOnce(&mut dyn Progress) -> T + Send + 'scope,
) -> Option<ScopedJoinHandle<'scope, T>> {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(scope, move || stream(&mut Relay(sender)));
    match spawned {
        Ok(thread) => Some(thread),
        Err(error) => {
            tracing::warn!(%error, name, "fsck runs this stream on the calling thread");
            None
        }
    }
}

fn join<T>(
    thread: Option<ScopedJoinHandle<'_, T>>,
    stream: impl Fn(&mut dyn Progress) -> T,
    progress: &mut dyn Progress,
) -> T {
    match thread {
        Some(thread) => thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        None => stream(progress),
    }
}

/// A stream thread's progress, sent to the calling thread.
struct Relay(SyncSender<(u64, PathBuf)>);

impl Progress for Relay {
    fn checked(&mut self, bytes: u64, file: &Path) {
        // The receiver outlives the stream threads.
        let _ = self.0.send((bytes, file.to_path_buf()));
    }
}

/// The files the log stream reads at length, in its order (the vote copies
/// are a few KiB: nothing to read ahead).
fn log_plan(disk: &DiskRef, groups: &[PathBuf]) -> Vec<PathBuf> {
    let journals = groups
        .iter()
        .map(|g| sorted_files(disk, &g.join(JOURNAL_DIR)));
    journals.flatten().collect()
}

/// The files the store stream reads, in its order: each group's index and
/// packs, then the snapshots of every group (checked as the streams merge).
fn store_plan(disk: &DiskRef, groups: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for group in groups {
        files.push(group.join(INDEX_FILE));
        files.extend(sorted_files(disk, &group.join(BLOCKS_DIR)));
    }
    for group in groups {
        files.extend(sorted_files(disk, &group.join(SNAPSHOTS_DIR)));
    }
    files
}

/// The names in `dir` sort in the order their contents are read
/// (zero-padded indices and sequence numbers).
fn sorted_files(disk: &DiskRef, dir: &Path) -> Vec<PathBuf> {
    let mut names = disk.list(dir).unwrap_or_default();
    names.sort();
    names.into_iter().map(|name| dir.join(name)).collect()
}
