//! Retention and pruning: which backups to keep (the newest N, the newest of
//! each of the last N days, the newest of each of the last N weeks), and
//! removing the rest with every block and snapshot no kept backup names.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use super::target::{BackupTarget, BLOCKS_DIR, SNAPSHOTS_DIR};
use super::BackupError;
use crate::hex::hex;

const DAY_SECS: u64 = 86_400;
const WEEK_SECS: u64 = 7 * DAY_SECS;

/// Which backups a prune keeps. A backup kept by any rule is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest N backups; at least 1, so pruning never empties a target.
    pub keep_last: u32,
    /// The newest backup of each of the N most recent days that have one
    /// (UTC days).
    pub keep_daily: u32,
    /// The newest backup of each of the N most recent weeks that have one
    /// (weeks counted from the Unix epoch).
    pub keep_weekly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 24,
            keep_daily: 7,
            keep_weekly: 4,
        }
    }
}

/// What a prune removed, and what it left alone and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PruneReport {
    pub backups_kept: Vec<u64>,
    pub backups_removed: Vec<u64>,
    pub blocks_removed: u64,
    pub block_bytes_removed: u64,
    pub snapshots_removed: u64,
    /// Backups whose manifest cannot be read: never removed, and while one
    /// exists no block is removed either (it may name any of them).
    pub unreadable: Vec<u64>,
}

impl Retention {
    /// The sequence numbers to keep among `(seq, created)` pairs.
    pub fn select(&self, backups: &[(u64, u64)]) -> BTreeSet<u64> {
        let mut newest_first = backups.to_vec();
        newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let mut keep: BTreeSet<u64> = newest_first
            .iter()
            .take(self.keep_last.max(1) as usize)
            .map(|(seq, _)| *seq)
            .collect();
        for (period, count) in [(DAY_SECS, self.keep_daily), (WEEK_SECS, self.keep_weekly)] {
            let mut seen = HashSet::new();
            for (seq, created) in &newest_first {
                if seen.len() >= count as usize {
                    break;
                }
                if seen.insert(created / period) {
                    keep.insert(*seq);
                }
            }
        }
        keep
    }
}

impl BackupTarget {
    /// Removes the backups `retention` does not keep, then every block and
    /// snapshot that no remaining backup names. Manifests go first, so a
    /// crash midway leaves unnamed files (removed by the next prune), never
    /// a backup missing a block.
    pub fn prune(&self, retention: &Retention) -> Result<PruneReport, BackupError> {
        let mut report = PruneReport::default();
        let mut readable = Vec::new();
        for listed in self.list()? {
            match listed.manifest {
                Ok(manifest) => readable.push(manifest),
                Err(BackupError::Corrupt { .. }) => report.unreadable.push(listed.seq),
                Err(other) => return Err(other),
            }
        }
        let pairs: Vec<(u64, u64)> = readable
            .iter()
            .map(|m| (m.seq, m.created_unix_secs))
            .collect();
        let keep = retention.select(&pairs);
        let mut named_blocks = HashSet::new();
        let mut named_snapshots = HashSet::new();
        for manifest in &readable {
            if keep.contains(&manifest.seq) {
                report.backups_kept.push(manifest.seq);
                named_snapshots.insert(hex(&manifest.snapshot_hash));
                named_blocks.extend(manifest.blocks.iter().map(|b| hex(&b.hash)));
            } else {
                self.remove_durably(&BackupTarget::manifest_path(manifest.seq))?;
                report.backups_removed.push(manifest.seq);
            }
        }
        if !report.unreadable.is_empty() {
            tracing::warn!(unreadable = ?report.unreadable, "damaged backup manifests: no block removed");
            return Ok(report);
        }
        self.sweep_blocks(&named_blocks, &mut report)?;
        self.sweep_snapshots(&named_snapshots, &mut report)?;
        Ok(report)
    }

    fn sweep_blocks(
        &self,
        named: &HashSet<String>,
        report: &mut PruneReport,
    ) -> Result<(), BackupError> {
        let root = Path::new(BLOCKS_DIR);
        let fanout = self
            .disk()
            .list(root)
            .map_err(|e| BackupError::io(root, e))?;
        for sub in fanout {
            let dir = root.join(&sub);
            let names = self
                .disk()
                .list(&dir)
                .map_err(|e| BackupError::io(&dir, e))?;
            for name in names.into_iter().filter(|n| !named.contains(n)) {
                let path = dir.join(&name);
                let len = self
                    .disk()
                    .open(&path)
                    .and_then(|f| f.len())
                    .map_err(|e| BackupError::io(&path, e))?;
                self.remove_durably(&path)?;
                report.blocks_removed += 1;
                report.block_bytes_removed += len;
            }
        }
        Ok(())
    }

    fn sweep_snapshots(
        &self,
        named: &HashSet<String>,
        report: &mut PruneReport,
    ) -> Result<(), BackupError> {
        let dir = Path::new(SNAPSHOTS_DIR);
        let names = self.disk().list(dir).map_err(|e| BackupError::io(dir, e))?;
        for name in names {
            let stem = name.strip_suffix(".snap").unwrap_or(&name);
            if !named.contains(stem) {
                self.remove_durably(&dir.join(&name))?;
                report.snapshots_removed += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_last_keeps_the_newest_and_never_zero() {
        let backups: Vec<(u64, u64)> = (1..=10).map(|s| (s, s * 60)).collect();
        let r = Retention {
            keep_last: 3,
            keep_daily: 0,
            keep_weekly: 0,
        };
        assert_eq!(r.select(&backups), BTreeSet::from([8, 9, 10]));
        let none = Retention { keep_last: 0, ..r };
        assert_eq!(none.select(&backups), BTreeSet::from([10]));
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        // Four backups a day for five days.
        let backups: Vec<(u64, u64)> = (0..20)
            .map(|i| (i + 1, (i / 4) * DAY_SECS + (i % 4) * 3600))
            .collect();
        let r = Retention {
            keep_last: 1,
            keep_daily: 3,
            keep_weekly: 0,
        };
        assert_eq!(r.select(&backups), BTreeSet::from([12, 16, 20]));
    }
}
