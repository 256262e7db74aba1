//! `finkfs fsck --data-dir DIR --repair`: the repair of a stopped node's
//! data directory. The repairing is `finkfs_node::fsck::repair` (what the
//! node's own copies allow) and, given `--peer` or `--backup`,
//! `finkfs_node::repair::repair_from_fsck` (damaged blocks fetched by hash);
//! this module refuses a running node, prints what changed and sets the
//! exit code.

use std::path::Path;

use anyhow::{bail, Context};
use finkfs_node::fsck::repair::{self, lock, RepairReport, RepairStatus};
use finkfs_node::fsck::{FsckOptions, FsckReport, Progress, Structure};
use finkfs_node::repair::{now_unix_ms, repair_from_fsck, GroupRepair, RepairSource};
use finkfs_seam::DiskRef;

use crate::exit::Outcome;

/// The directories a repair works on.
pub struct Dirs<'a> {
    /// The data directory, as the operator named it.
    pub data_dir: &'a Path,
    /// The data directory as a disk.
    pub disk: DiskRef,
    /// An empty directory for the checks' index copies.
    pub scratch: DiskRef,
}

/// Repairs the data directory; SAFE_TO_START and HEALTHY are
/// [`Outcome::Clean`], DAMAGED is [`Outcome::Problems`]. With a block
/// source, damaged blocks the node's own copies cannot mend are fetched
/// from it, and the directory is repaired and checked once more.
pub fn run(
    dirs: Dirs<'_>,
    source: Option<&RepairSource>,
    json: bool,
    progress: &mut dyn Progress,
) -> anyhow::Result<Outcome> {
    let Dirs {
        data_dir,
        disk,
        scratch,
    } = dirs;
    if let Some(pid) = lock::running_node(&disk)? {
        bail!(
            "{}: a finkfs node (process {pid}) is running on this directory; stop it before repairing",
            data_dir.display()
        );
    }
    let options = FsckOptions::default();
    let mut report = repair::repair_data_dir(disk.clone(), scratch.clone(), &options, progress)?;
    let mut blocks = Vec::new();
    if let Some(source) = source {
        if has_block_damage(&report.after) {
            blocks = fetch_blocks(disk.clone(), &report.after, source)?;
            let again = repair::repair_data_dir(disk, scratch, &options, progress)?;
            report.actions.extend(again.actions);
            report.pending = again.pending;
            report.after = again.after;
            report.unrecoverable = again.unrecoverable;
            report.status = again.status;
        }
    }
    if json {
        // The repair report's shape, with the block repairs added.
        let mut value = serde_json::to_value(&report)?;
        value["blocks"] = serde_json::to_value(&blocks)?;
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        text(data_dir, &report, &blocks)?;
    }
    Ok(Outcome::problems_if(report.status == RepairStatus::Damaged))
}

fn has_block_damage(report: &FsckReport) -> bool {
    report.damage().any(|p| p.structure == Structure::Blocks)
}

/// Fetches every damaged block `report` names from `source`.
fn fetch_blocks(
    disk: DiskRef,
    report: &FsckReport,
    source: &RepairSource,
) -> anyhow::Result<Vec<GroupRepair>> {
    // A runtime of its own: the CLI is synchronous, the fetchers are not.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime for block fetches")?;
    let repaired = runtime.block_on(repair_from_fsck(disk, report, source, now_unix_ms()));
    repaired.context("repairing damaged blocks")
}

fn text(data_dir: &Path, report: &RepairReport, blocks: &[GroupRepair]) -> anyhow::Result<()> {
    outln!("finkfs fsck --repair of {}", data_dir.display())?;
    outln!(
        " Before:          {} ({} damage)",
        report.before.status,
        report.before.damage().count()
    )?;
    outln!(" Changes:         {}", report.actions.len())?;
    outln!(
        " After:           {} ({} damage)",
        report.after.status,
        report.after.damage().count()
    )?;
    outln!()?;
    for problem in &report.before.problems {
        outln!("found: {problem}")?;
    }
    for action in &report.actions {
        outln!("{action}")?;
    }
    for group in blocks {
        for block in &group.report.repaired {
            outln!(
                "repaired block {} at {}@{}: intact copy written at {}@{}, damaged copy quarantined",
                block.hash,
                block.damaged_file,
                block.damaged_offset,
                block.new_file,
                block.new_offset
            )?;
        }
        for block in &group.report.unrepairable {
            outln!(
                "could not repair block {} at {}@{}: {}",
                block.hash,
                block.file,
                block.offset,
                block.reason
            )?;
        }
    }
    for pending in &report.pending {
        outln!("WHEN STARTED {pending}")?;
    }
    for problem in &report.after.problems {
        outln!("left: {problem}")?;
    }
    for problem in &report.unrecoverable {
        outln!("UNRECOVERABLE {problem}")?;
    }
    outln!()?;
    let meaning = match report.status {
        RepairStatus::Healthy => "nothing damaged is left",
        RepairStatus::SafeToStart => {
            "start the node: it finishes the repair itself and does not vote until it has"
        }
        RepairStatus::Damaged => {
            "damage is left that no copy on this node can repair: for damaged blocks give --peer ADDR or --backup DIR; see docs/operations.md"
        }
    };
    outln!(
        "The data directory {} is {} ({meaning})",
        data_dir.display(),
        report.status
    )?;
    Ok(())
}
