//! The block half of `finkfs fsck --repair`: the damaged blocks an fsck
//! report names, in every group it checked, repaired from a running peer or
//! a backup target. The node must be stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use finkfs_raft::types::GroupId;
use finkfs_seam::{DiskRef, RealDisk};
use serde::{Deserialize, Serialize};

use crate::fsck::{FsckReport, GROUPS_DIR};
use crate::state_machine::{BlockFetcher, LocalFetcher};
use crate::store::ObjectStore;

use super::{
    damaged_from_fsck, repair_blocks, BackupBlockSource, PeerAddrFetcher, RepairError, RepairReport,
};

/// Where intact copies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairSource {
    /// Running members, by peer address (`--peer ADDR`, repeatable).
    Peers(Vec<String>),
    /// A backup target directory (`--backup DIR`).
    Backup(PathBuf),
}

/// What the repair changed in one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRepair {
    /// The group directory, relative to the data directory.
    pub group: String,
    #[serde(flatten)]
    pub report: RepairReport,
}

/// Repairs, in the data directory whose root is `disk`, every damaged block
/// `report` names (fsck's `blocks` problems: checksum mismatches, missing
/// and unreadable records), with copies from `source`; one report per group
/// that had block damage. `now_unix_ms` stamps the quarantine records.
pub async fn repair_from_fsck(
    disk: DiskRef,
    report: &FsckReport,
    source: &RepairSource,
    now_unix_ms: u64,
) -> Result<Vec<GroupRepair>, RepairError> {
    let mut done = Vec::new();
    for group in &report.groups {
        let dir = PathBuf::from(group);
        let mut store = ObjectStore::open(disk.clone(), dir.clone())?;
        let damaged = damaged_from_fsck(store.reader(), report)?;
        if damaged.is_empty() {
            continue;
        }
        let fetcher = fetcher(source, group_id(&dir)?)?;
        let repaired = repair_blocks(&mut store, &damaged, &*fetcher, now_unix_ms).await?;
        done.push(GroupRepair {
            group: group.clone(),
            report: repaired,
        });
    }
    Ok(done)
}

/// The group id of a `groups/<id>` directory; a bare group directory
/// (fsck run on the group's own directory) is the daemon's one group.
fn group_id(dir: &Path) -> Result<GroupId, RepairError> {
    if dir.as_os_str().is_empty() {
        return Ok(crate::daemon::GROUP);
    }
    let id = dir
        .strip_prefix(GROUPS_DIR)
        .ok()
        .and_then(|rest| rest.to_str())
        .and_then(|rest| rest.parse::<u64>().ok());
    id.map(GroupId).ok_or_else(|| RepairError::Source {
        reason: format!("{} is not a group directory", dir.display()),
    })
}

fn fetcher(source: &RepairSource, group: GroupId) -> Result<Box<dyn BlockFetcher>, RepairError> {
    Ok(match source {
        RepairSource::Peers(addrs) => Box::new(PeerAddrFetcher::new(addrs.clone(), group)),
        RepairSource::Backup(dir) => {
            let disk = RealDisk::open(dir).map_err(|e| RepairError::Source {
                reason: format!("cannot open backup target {}: {e}", dir.display()),
            })?;
            let source = BackupBlockSource::new(Arc::new(disk));
            Box::new(LocalFetcher::new(Arc::new(source)))
        }
    })
}
