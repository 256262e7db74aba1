//! `finkfs fsck` on a stopped node, in-process through the library: its
//! findings sorted into crash traces (expected after any cut), damage on
//! the node the harness damaged (expected), and damage anywhere else (a
//! violation: something the node wrote, or failed to write, is broken).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use finkfs_node::fsck::{check_data_dir, FsckOptions, NoProgress};
use finkfs_seam::{DiskRef, RealDisk};

/// What fsck found on one node.
#[derive(Debug, Default)]
pub struct Findings {
    /// Problems by kind name (crash traces and damage alike).
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Damage problems, described with file and offset.
    pub damage: Vec<String>,
}

/// Checks the durable state of a node: `backing` is the backing directory
/// of its crash file system, which after a cut holds exactly what the disk
/// kept.
pub fn check(backing: &Path) -> Result<Findings, String> {
    let disk: DiskRef =
        Arc::new(RealDisk::open(backing).map_err(|e| format!("fsck: {}: {e}", backing.display()))?);
    let scratch_dir = tempfile::tempdir().map_err(|e| format!("fsck scratch: {e}"))?;
    let scratch: DiskRef =
        Arc::new(RealDisk::open(scratch_dir.path()).map_err(|e| format!("fsck scratch: {e}"))?);
    let report = check_data_dir(disk, scratch, &FsckOptions::default(), &mut NoProgress)
        .map_err(|e| format!("fsck of {}: {e}", backing.display()))?;
    let mut findings = Findings::default();
    for problem in &report.problems {
        *findings.by_kind.entry(problem.kind.name()).or_default() += 1;
        if problem.kind.is_damage() {
            findings.damage.push(format!(
                "{} in {} at {:?}: {}",
                problem.kind.name(),
                problem.file,
                problem.offset,
                problem.detail
            ));
        }
    }
    Ok(findings)
}
