//! `finkfs fsck --data-dir DIR --repair`: the repair of a stopped node's
//! data directory. The repairing is `finkfs_node::fsck::repair`; this module
//! refuses a running node, prints what changed and sets the exit code.

use std::path::Path;

use anyhow::bail;
use finkfs_node::fsck::repair::{self, lock, RepairReport, RepairStatus};
use finkfs_node::fsck::{FsckOptions, Progress};
use finkfs_seam::DiskRef;

use crate::exit::Outcome;

/// Repairs the directory on `disk`; SAFE_TO_START and HEALTHY are
/// [`Outcome::Clean`], DAMAGED is [`Outcome::Problems`].
pub fn run(
    data_dir: &Path,
    disk: DiskRef,
    scratch: DiskRef,
    json: bool,
    progress: &mut dyn Progress,
) -> anyhow::Result<Outcome> {
    if let Some(pid) = lock::running_node(&disk)? {
        bail!(
            "{}: a finkfs node (process {pid}) is running on this directory; stop it before repairing",
            data_dir.display()
        );
    }
    let report = repair::repair_data_dir(disk, scratch, &FsckOptions::default(), progress)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        text(data_dir, &report)?;
    }
    Ok(Outcome::problems_if(report.status == RepairStatus::Damaged))
}

fn text(data_dir: &Path, report: &RepairReport) -> anyhow::Result<()> {
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
            "damage is left that no copy on this node can repair: see docs/operations.md"
        }
    };
    outln!(
        "The data directory {} is {} ({meaning})",
        data_dir.display(),
        report.status
    )?;
    Ok(())
}
