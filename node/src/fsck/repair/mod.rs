//! `finkfs fsck --repair`: check a stopped node's data directory, repair
//! what can be repaired on the node alone, check again, and say what
//! changed.
//!
//! What it does, structure by structure (each action is reported with its
//! file and offset):
//!
//! * journal: a torn tail is cut, as the next start would. Damage in the
//!   middle (a record that does not verify, a chain break, a gap, a bad
//!   segment header) is never dropped unseen: every segment from the one
//!   holding the first damaged record on is copied to `quarantine/`, the
//!   journal is cut before that record, and a *vouch floor* (the last index
//!   the node held) is saved with the vote. The node then stays out of
//!   elections until its log reaches the floor again by replication from
//!   the leader, which re-sends what it lacks (invariant 5). A saved
//!   committed index beyond the cut is lowered to the cut (it is only ever
//!   a lower bound; the leader tells the node again).
//! * meta: a damaged copy is rewritten from the good one. With both lost,
//!   nothing can be rewritten without forgetting that the vote is lost: the
//!   node starts with a `VoteLost` blocker that lifts once it has rejoined
//!   a leader and caught up (see the log store's `vote_gate`).
//! * index: moved to `quarantine/` with the packs it described, and rebuilt
//!   from the newest intact snapshot, its blocks taken from the quarantined
//!   packs; the node re-applies the journal after the snapshot at start.
//!   Without a snapshot and with a purged log, the node's log and vote go
//!   to quarantine too, and a `REJOIN` marker makes it a wiped member (no
//!   vote until caught up) even if it is started without `--rejoin`.
//! * snapshots: a damaged snapshot is moved to `quarantine/`. The node
//!   rebuilds a snapshot from its index at start when none is left.
//! * blocks: a damaged block is left where it is and listed: the running
//!   node repairs it from a peer (read repair, scrub).
//!
//! Exit status, as the CLI maps it: the result is `HEALTHY` (nothing left),
//! `SAFE_TO_START` (what is left the node handles itself, without voting
//! until it has), or `DAMAGED` (listed as unrecoverable here).

mod index;
mod journal;
pub mod lock;
mod quarantine;
mod snapshots;

use std::path::{Path, PathBuf};

use finkfs_raft::log_store::{JOURNAL_DIR, META_DIR};
use finkfs_seam::DiskRef;
use serde::{Deserialize, Serialize};

use super::report::{FsckReport, Problem, ProblemKind, Structure};
use super::{check_data_dir, find_groups, FsckError, FsckOptions, NoProgress, Progress};

pub use quarantine::QUARANTINE_DIR;

/// Version of the repair report's JSON shape (fields are only added).
pub const REPAIR_REPORT_VERSION: u32 = 1;

/// One change a repair made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairAction {
    pub structure: Structure,
    /// What was done: `cut_torn_tail`, `quarantined`, `truncated`,
    /// `rewrote_copy`, `set_vouch_floor`, `set_tail_floor`, `lowered_committed`,
    /// `rebuilt_index`, `marked_rejoin`.
    pub action: String,
    /// The file changed, relative to the data directory.
    pub file: String,
    pub offset: Option<u64>,
    /// What and why, for a person.
    pub detail: String,
}

impl RepairAction {
    pub(crate) fn new(
        structure: Structure,
        action: &str,
        file: &Path,
        offset: Option<u64>,
        detail: impl Into<String>,
    ) -> RepairAction {
        RepairAction {
            structure,
            action: action.to_string(),
            file: file.display().to_string(),
            offset,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for RepairAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "REPAIR {} {}: {}",
            self.structure, self.action, self.file
        )?;
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The verdict after a repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RepairStatus {
    /// Nothing damaged is left.
    Healthy,
    /// What is left the node handles itself once started, and it will not
    /// vote until it has (a lost vote, a log below its vouch floor).
    SafeToStart,
    /// Damage is left that this repair could not fix.
    Damaged,
}

impl std::fmt::Display for RepairStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RepairStatus::Healthy => "HEALTHY",
            RepairStatus::SafeToStart => "SAFE_TO_START",
            RepairStatus::Damaged => "DAMAGED",
        })
    }
}

/// What a repair found, did, and left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// [`REPAIR_REPORT_VERSION`].
    pub version: u32,
    /// The check before any change.
    pub before: FsckReport,
    /// Every change, in the order made.
    pub actions: Vec<RepairAction>,
    /// What the node will still do by itself when started, for a person.
    pub pending: Vec<String>,
    /// The check after the repair.
    pub after: FsckReport,
    /// Damage left that neither this repair nor the started node fixes.
    pub unrecoverable: Vec<Problem>,
    pub status: RepairStatus,
}

/// Checks, repairs and checks again the data directory on `disk` (a
/// stopped node's: the caller checks it is not running, see [`lock`]).
/// `scratch` is an empty directory for the index copies the checks make.
pub fn repair_data_dir(
    disk: DiskRef,
    scratch: DiskRef,
    options: &FsckOptions,
    progress: &mut dyn Progress,
) -> Result<RepairReport, FsckError> {
    let before = check_data_dir(disk.clone(), scratch.clone(), options, progress)?;
    let mut work = Work::default();
    for group in find_groups(&disk)? {
        let problems: Vec<&Problem> = before
            .problems
            .iter()
            .filter(|p| Path::new(&p.file).starts_with(&group))
            .collect();
        repair_group(&disk, &group, &problems, options, &mut work)?;
    }
    let after = check_data_dir(disk, scratch, options, &mut NoProgress)?;
    Ok(conclude(before, work, after))
}

/// What the repair of every group gathered.
#[derive(Debug, Default)]
pub(crate) struct Work {
    pub actions: Vec<RepairAction>,
    pub pending: Vec<String>,
}

fn repair_group(
    disk: &DiskRef,
    group: &Path,
    problems: &[&Problem],
    options: &FsckOptions,
    work: &mut Work,
) -> Result<(), FsckError> {
    let mut quarantine = quarantine::Quarantine::new(disk.clone(), group);
    let of = |structure: Structure| -> Vec<&Problem> {
        problems
            .iter()
            .copied()
            .filter(|p| p.structure == structure)
            .collect()
    };
    journal::repair(
        disk,
        &GroupDirs::new(group),
        &of(Structure::Journal),
        &of(Structure::Meta),
        options,
        &mut quarantine,
        work,
    )?;
    let index_damaged = of(Structure::Index).iter().any(|p| p.kind.is_damage());
    let snapshots_left = snapshots::repair(
        disk,
        group,
        &of(Structure::Snapshots),
        &mut quarantine,
        work,
    )?;
    if index_damaged {
        index::repair(disk, group, snapshots_left, &mut quarantine, work)?;
    }
    Ok(())
}

/// The paths of one group's structures.
#[derive(Debug)]
pub(crate) struct GroupDirs {
    pub journal: PathBuf,
    pub meta: PathBuf,
}

impl GroupDirs {
    fn new(group: &Path) -> GroupDirs {
        GroupDirs {
            journal: group.join(JOURNAL_DIR),
            meta: group.join(META_DIR),
        }
    }
}

/// Whether a problem left after the repair is one the started node
/// handles itself without voting meanwhile.
fn handled_by_node(problem: &Problem, vote_lost: bool) -> bool {
    match (&problem.structure, &problem.kind) {
        // The VoteLost blocker lifts once the node rejoined a leader, and
        // its first saved vote rewrites both copies.
        (Structure::Meta, ProblemKind::VoteLost) => true,
        (Structure::Meta, ProblemKind::BadCopy) => vote_lost,
        // Blocks: read repair and the scrubber fetch them from a peer.
        (Structure::Blocks, ProblemKind::ChecksumMismatch)
        | (Structure::Blocks, ProblemKind::Unreadable)
        | (Structure::Blocks, ProblemKind::MissingBlock { .. }) => false,
        // No snapshot left: the node builds one from its index at start.
        (Structure::Snapshots, ProblemKind::MissingFile) => true,
        _ => !problem.kind.is_damage(),
    }
}

fn conclude(before: FsckReport, work: Work, after: FsckReport) -> RepairReport {
    let vote_lost = after.damage().any(|p| p.kind == ProblemKind::VoteLost);
    let unrecoverable: Vec<Problem> = after
        .damage()
        .filter(|p| !handled_by_node(p, vote_lost))
        .cloned()
        .collect();
    let status = if !unrecoverable.is_empty() {
        RepairStatus::Damaged
    } else if after.is_healthy() && work.pending.is_empty() {
        RepairStatus::Healthy
    } else {
        RepairStatus::SafeToStart
    };
    RepairReport {
        version: REPAIR_REPORT_VERSION,
        before,
        actions: work.actions,
        pending: work.pending,
        after,
        unrecoverable,
        status,
    }
}
