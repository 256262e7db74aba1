//! Offline check of a node's data directory (`finkfs fsck`), on a stopped
//! node: every structure of every group is read and verified, and the two
//! halves that must agree (index and packs, meta and journal) are compared.
//!
//! One module per structure (`journal`, `meta`, `index`, `blocks`,
//! `snapshots`); each reuses the verifying decoders of the structure's own
//! module and turns what they find into typed [`Problem`]s with file and
//! offset. The report says `HEALTHY` or `CORRUPT`: the traces a crash
//! leaves (a torn journal tail, blocks whose index commit was lost,
//! temporary files) are listed as informational, never as damage.
//!
//! The journal and vote copies are checked on one thread while the index
//! and packs are checked on another (`streams`), each stream with its own
//! read-ahead (`prefetch`); the report is the same as on one thread.
//!
//! fsck never modifies the data directory: everything is read through
//! [`readonly::ReadOnlyDisk`], which refuses any change. The index is the one
//! structure that cannot be opened without writing (redb recovers and
//! commits, the header shadow is restored on open), so it is copied through
//! the seam onto a scratch disk and the copy is checked.
//!
//! A sector the disk cannot read (EIO) is reported as an `Unreadable`
//! problem and ends the check of that structure only; any other I/O error
//! (a permission refused, a missing directory) stops fsck with
//! [`FsckError`], since the report would be incomplete.

mod blocks;
mod index;
mod journal;
mod meta;
mod prefetch;
mod readonly;
pub mod repair;
mod report;
mod snapshots;
mod streams;

use std::io;
use std::path::{Path, PathBuf};

use finkfs_raft::journal::JournalOptions;
use finkfs_raft::log_store::{JOURNAL_DIR, META_DIR};
use finkfs_seam::{DiskRef, FileRef};

pub use readonly::ReadOnlyDisk;
pub use report::{FsckReport, Problem, ProblemKind, Status, Structure, Totals, REPORT_VERSION};

/// Where the groups of a data directory live.
pub const GROUPS_DIR: &str = "groups";
const BLOCKS_DIR: &str = "blocks";
const INDEX_FILE: &str = "index.redb";
const SNAPSHOTS_DIR: &str = crate::state_machine::SNAPSHOTS_DIR;

/// Settings of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckOptions {
    /// The journal's ceilings, as the node runs with them.
    pub journal: JournalOptions,
    /// Memory redb may use to cache index pages.
    pub index_cache_bytes: usize,
    /// How far read-ahead threads read the files ahead of the check, so
    /// the disk reads while the check hashes; 0 for none.
    pub read_ahead_bytes: u64,
    /// Whether the journal and vote copies are checked on one thread while
    /// the index and packs are checked on another. The report is the same
    /// either way.
    pub parallel: bool,
}

impl Default for FsckOptions {
    fn default() -> Self {
        FsckOptions {
            journal: JournalOptions::default(),
            index_cache_bytes: 64 << 20,
            read_ahead_bytes: 64 << 20,
            parallel: true,
        }
    }
}

/// Hears how far a check is. The totals are file sizes, so a caller can
/// show bytes per second against the disk's sequential read speed.
pub trait Progress {
    /// Bytes of every file fsck will read; called once, first.
    fn total(&mut self, _bytes: u64) {}
    /// `bytes` more were read and verified (the last of them in `file`).
    fn checked(&mut self, _bytes: u64, _file: &Path) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Why fsck could not run to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsckError {
    /// Nothing in the directory looks like a node's data.
    #[error("not a finkfs data directory: no {GROUPS_DIR}/, and no journal/, meta/, blocks/ or index.redb")]
    NotADataDir,
    /// The disk refused an operation other than a read of damaged media.
    #[error("I/O error on {}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A structure written by a newer version of finkfs: it cannot be judged.
    #[error("{0}")]
    UnsupportedVersion(String),
    /// The scratch copy of the index could not be made.
    #[error("cannot copy the index to the scratch directory: {0}")]
    Scratch(#[source] io::Error),
}

impl FsckError {
    pub(crate) fn io(file: &Path, source: io::Error) -> FsckError {
        FsckError::Io {
            file: file.to_path_buf(),
            source,
        }
    }
}

/// Whether an I/O error is the medium failing a read (a latent sector
/// error), which fsck reports as damage rather than stopping on.
pub(crate) fn is_medium_error(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc_eio())
}

/// The first sector in `from..from + len` that the disk cannot read, so an
/// unreadable spot is reported where it is; `from` if none can be found.
pub(crate) fn first_unreadable(file: &FileRef, from: u64, len: u64) -> u64 {
    const SECTOR_BYTES: u64 = 512;
    let mut buf = [0u8; SECTOR_BYTES as usize];
    let end = from.saturating_add(len);
    let mut at = from - from % SECTOR_BYTES;
    while at < end {
        let n = (end - at).min(SECTOR_BYTES);
        let piece = &mut buf[..usize::try_from(n).expect("at most one sector")];
        if let Err(e) = file.read_at(at, piece) {
            if is_medium_error(&e) {
                return at;
            }
        }
        at += n;
    }
    from
}

fn libc_eio() -> i32 {
    finkfs_seam::eio()
        .raw_os_error()
        .expect("eio() carries an OS error code")
}

/// Checks every group of the data directory on `disk` (its root). The
/// index is copied to `scratch` (an empty directory on any disk with room
/// for it) and checked there. Nothing on `disk` is changed.
pub fn check_data_dir(
    disk: DiskRef,
    scratch: DiskRef,
    options: &FsckOptions,
    progress: &mut dyn Progress,
) -> Result<FsckReport, FsckError> {
    let disk = ReadOnlyDisk::wrap(disk);
    let groups = find_groups(&disk)?;
    let total = groups
        .iter()
        .map(|g| group_bytes(&disk, g))
        .sum::<Result<u64, FsckError>>()?;
    progress.total(total);
    let findings = streams::check_groups(&disk, &scratch, &groups, options, progress)?;
    let names = groups.iter().map(|g| g.display().to_string()).collect();
    Ok(FsckReport::new(names, findings.totals, findings.problems))
}

/// What the checks of one data directory gathered so far.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub totals: Totals,
    pub problems: Vec<Problem>,
    /// The log index the group's index applied, when it could be read (set
    /// by the index check; the snapshot check of the same group needs it).
    pub applied_index: Option<u64>,
}

impl Findings {
    pub fn push(&mut self, problem: Problem) {
        tracing::debug!(%problem, "fsck finding");
        self.problems.push(problem);
    }

    /// Adds what a later check found.
    pub fn absorb(&mut self, later: Findings) {
        self.totals.add(&later.totals);
        self.problems.extend(later.problems);
    }
}

/// The group directories: `groups/<id>/` each, or the root itself when it
/// is one group's directory (a store laid out without the daemon).
pub(crate) fn find_groups(disk: &DiskRef) -> Result<Vec<PathBuf>, FsckError> {
    let groups = Path::new(GROUPS_DIR);
    if exists(disk, groups)? {
        let names = disk.list(groups).map_err(|e| FsckError::io(groups, e))?;
        return Ok(names.into_iter().map(|n| groups.join(n)).collect());
    }
    for part in [JOURNAL_DIR, META_DIR, BLOCKS_DIR, INDEX_FILE] {
        if exists(disk, Path::new(part))? {
            return Ok(vec![PathBuf::new()]);
        }
    }
    Err(FsckError::NotADataDir)
}

pub(crate) fn exists(disk: &DiskRef, path: &Path) -> Result<bool, FsckError> {
    disk.exists(path).map_err(|e| FsckError::io(path, e))
}

/// Names in `dir`, none if it does not exist.
pub(crate) fn list(disk: &DiskRef, dir: &Path) -> Result<Vec<String>, FsckError> {
    if !exists(disk, dir)? {
        return Ok(Vec::new());
    }
    disk.list(dir).map_err(|e| FsckError::io(dir, e))
}

/// Length of a file, None if it is a directory or cannot be opened as a file.
fn file_len(disk: &DiskRef, path: &Path) -> Option<u64> {
    disk.open(path).and_then(|f| f.len()).ok()
}

/// Bytes of the files fsck reads in one group (for progress only).
fn group_bytes(disk: &DiskRef, group: &Path) -> Result<u64, FsckError> {
    let mut total = 0;
    for dir in [JOURNAL_DIR, META_DIR, BLOCKS_DIR, SNAPSHOTS_DIR] {
        let dir = group.join(dir);
        for name in list(disk, &dir)? {
            total += file_len(disk, &dir.join(name)).unwrap_or(0);
        }
    }
    let index = group.join(INDEX_FILE);
    if exists(disk, &index)? {
        total += file_len(disk, &index).unwrap_or(0);
    }
    Ok(total)
}
