//! Moving each node's data directory onto a crash file system.
//!
//! The cluster forms on plain directories; then, with every node down,
//! each `data/` directory is renamed to `backing/` beside it and a crash
//! file system over `backing/` is mounted at `data/`. Restarted nodes use
//! the same path and no longer know the difference.

use std::fs;
use std::path::Path;

use finkfs_crashfs::{CrashFs, CutReport, Handle, Policy};

/// Name of the backing directory, beside the node's `data/`.
const BACKING_DIR: &str = "backing";

/// The crash file systems of the nodes, by node id.
pub struct CrashDisks {
    disks: Vec<(u64, Handle)>,
}

impl CrashDisks {
    /// Puts the data directory `data_dir` of each `(id, data_dir)` — all of
    /// whose nodes must be down — on a crash file system seeded `seed + id`.
    pub fn mount(nodes: &[(u64, &Path)], seed: u64) -> Result<CrashDisks, String> {
        let mut disks = Vec::new();
        for (id, data_dir) in nodes {
            let parent = data_dir
                .parent()
                .ok_or_else(|| format!("data directory {} has no parent", data_dir.display()))?;
            let backing = parent.join(BACKING_DIR);
            fs::rename(data_dir, &backing)
                .and_then(|()| fs::create_dir(data_dir))
                .map_err(|e| format!("moving {} aside: {e}", data_dir.display()))?;
            let handle = CrashFs::mount(&backing, data_dir, seed.wrapping_add(*id))
                .map_err(|e| format!("node {id}: {e}"))?;
            disks.push((*id, handle));
        }
        Ok(CrashDisks { disks })
    }

    /// The crash file system of node `id`.
    pub fn handle(&self, id: u64) -> Option<&Handle> {
        self.disks.iter().find(|(n, _)| *n == id).map(|(_, h)| h)
    }

    /// Cuts the power of the disks of nodes `ids`, which must be down.
    pub fn cut(&self, ids: &[u64], policy: Policy) -> Result<Vec<(u64, CutReport)>, String> {
        self.disks
            .iter()
            .filter(|(id, _)| ids.contains(id))
            .map(|(id, disk)| {
                disk.power_cut(policy)
                    .map(|report| (*id, report))
                    .map_err(|e| format!("power cut of node {id}: {e}"))
            })
            .collect()
    }
}
