//! Repair of a group's snapshots: a snapshot that does not verify is moved
//! to quarantine (a node must never install or send it). The node needs no
//! snapshot to start while its index is intact: openraft builds one from
//! the state machine when the journal was purged and none is left.

use std::path::{Path, PathBuf};

use finkfs_seam::DiskRef;

use super::super::report::{Problem, ProblemKind, Structure};
use super::super::{list, FsckError, SNAPSHOTS_DIR};
use super::quarantine::Quarantine;
use super::{RepairAction, Work};
use crate::snapshot::final_name_hash;

/// Quarantines every damaged snapshot; the intact final snapshots left,
/// newest name last.
pub(super) fn repair(
    disk: &DiskRef,
    group: &Path,
    problems: &[&Problem],
    quarantine: &mut Quarantine,
    work: &mut Work,
) -> Result<Vec<PathBuf>, FsckError> {
    for problem in problems {
        let damaged = matches!(
            problem.kind,
            ProblemKind::ChecksumMismatch | ProblemKind::Unreadable
        );
        let file = Path::new(&problem.file);
        if !damaged || !disk.exists(file).map_err(|e| FsckError::io(file, e))? {
            continue;
        }
        let moved = quarantine.move_in(file)?;
        work.actions.push(RepairAction::new(
            Structure::Snapshots,
            "quarantined",
            file,
            problem.offset,
            format!(
                "a snapshot that does not verify, moved to {}",
                moved.display()
            ),
        ));
    }
    let dir = group.join(SNAPSHOTS_DIR);
    let mut left: Vec<PathBuf> = list(disk, &dir)?
        .into_iter()
        .filter(|name| final_name_hash(name).is_some())
        .map(|name| dir.join(name))
        .collect();
    left.sort();
    Ok(left)
}
