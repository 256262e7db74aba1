//! The fault vocabulary: which operations can be failed, how, how often, and
//! the record of every fault the disk injected.

use std::io;
use std::path::{Path, PathBuf};

/// A kind of operation that [`crate::SimDisk::fail_next`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FaultOp {
    /// `DiskFile::read_at`.
    Read,
    /// `DiskFile::write_at` and `DiskFile::set_len`.
    Write,
    /// `DiskFile::sync`.
    Sync,
    /// `Disk::sync_dir`.
    SyncDir,
    /// `Disk::create`.
    Create,
    /// `Disk::rename` (matched against both paths).
    Rename,
    /// `Disk::remove`.
    Remove,
}

/// The error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoFault {
    /// `finkfs_seam::eio()`.
    Eio,
    /// `finkfs_seam::enospc()`.
    Enospc,
}

impl IoFault {
    pub(crate) fn error(self) -> io::Error {
        match self {
            IoFault::Eio => finkfs_seam::eio(),
            IoFault::Enospc => finkfs_seam::enospc(),
        }
    }

    pub(crate) fn kind(self, op: FaultOp) -> FaultKind {
        match self {
            IoFault::Eio => FaultKind::Eio { op },
            IoFault::Enospc => FaultKind::Enospc { op },
        }
    }
}

/// Probabilities, each per operation, of faults drawn from the disk's seeded
/// RNG. All zero by default. Each must lie in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    /// A read fails with EIO.
    pub read_eio: f64,
    /// A write or `set_len` fails with EIO, changing nothing.
    pub write_eio: f64,
    /// A file sync fails with EIO (with the failed-fsync semantics).
    pub sync_eio: f64,
    /// A directory sync fails with EIO; nothing becomes durable.
    pub sync_dir_eio: f64,
    /// A write or `set_len` fails with ENOSPC, changing nothing.
    pub enospc: f64,
    /// A write lands at the wrong offset.
    pub misdirect: f64,
    /// A write is acknowledged and never reaches durable storage.
    pub lost_write: f64,
}

impl FaultRates {
    pub(crate) fn assert_valid(&self) {
        let all = [
            self.read_eio,
            self.write_eio,
            self.sync_eio,
            self.sync_dir_eio,
            self.enospc,
            self.misdirect,
            self.lost_write,
        ];
        for rate in all {
            assert!(
                (0.0..=1.0).contains(&rate),
                "fault rate {rate} not in 0..=1"
            );
        }
    }
}

/// What a power cut does to writes and metadata operations not yet synced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrashPolicy {
    /// Each pending write is lost, kept or torn; each pending length change
    /// kept or dropped; a random prefix of unsynced metadata survives.
    #[default]
    Random,
    /// Everything not synced is lost.
    LoseUnsynced,
    /// Everything not synced survives (except writes marked lost).
    KeepUnsynced,
}

/// A metadata operation, as named in [`FaultKind::MetadataReverted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetadataOp {
    /// A file creation.
    Create,
    /// A file removal.
    Remove,
    /// A rename within one directory.
    Rename,
    /// The source half of a rename across directories.
    RenameUnlink,
    /// The target half of a rename across directories.
    RenameLink,
}

/// What kind of fault was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// A power cut tore a pending write sector by sector.
    TornWrite,
    /// A power cut lost a pending write or length change.
    LostUnsynced,
    /// A power cut kept a pending write or length change.
    KeptUnsynced,
    /// A power cut undid a metadata operation not made durable.
    MetadataReverted { op: MetadataOp },
    /// One bit flipped at rest (`offset` is the bit offset).
    BitFlip,
    /// One sector zeroed at rest.
    ZeroedSector,
    /// One sector made unreadable until rewritten.
    LatentSectorError,
    /// Bytes planted at rest by a test.
    PlantedBytes,
    /// An operation failed with EIO.
    Eio { op: FaultOp },
    /// An operation failed with ENOSPC.
    Enospc { op: FaultOp },
    /// A write landed at `landed_at` instead of `offset`.
    Misdirected { landed_at: u64 },
    /// A write was acknowledged and will never be durable.
    LostWrite,
    /// A failed file sync dropped this pending write from durable storage.
    FailedSync,
}

/// One injected fault. `offset` and `len` are in bytes where meaningful; a
/// pending length change lost or kept by a power cut has `offset` = the new
/// length and no `len`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InjectedFault {
    pub kind: FaultKind,
    pub path: PathBuf,
    pub offset: Option<u64>,
    pub len: Option<u64>,
}

impl InjectedFault {
    pub(crate) fn at(kind: FaultKind, path: &Path, offset: u64, len: u64) -> Self {
        Self {
            kind,
            path: path.to_owned(),
            offset: Some(offset),
            len: Some(len),
        }
    }

    pub(crate) fn on(kind: FaultKind, path: &Path) -> Self {
        Self {
            kind,
            path: path.to_owned(),
            offset: None,
            len: None,
        }
    }
}

/// A failure armed by `fail_next`: the next `remaining` operations of kind
/// `op` on a path starting with `prefix` fail with `fault`.
#[derive(Debug, Clone)]
struct Armed {
    op: FaultOp,
    fault: IoFault,
    remaining: u64,
    prefix: String,
}

/// Everything armed or configured to go wrong.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultPlan {
    armed: Vec<Armed>,
    misdirect: Vec<String>,
    lose: Vec<String>,
    pub(crate) rates: FaultRates,
    pub(crate) capacity_bytes: Option<u64>,
}

impl FaultPlan {
    /// Forgets every armed fault that has not fired (rates and capacity
    /// stay).
    pub(crate) fn disarm_all(&mut self) {
        self.armed.clear();
        self.misdirect.clear();
        self.lose.clear();
    }

    pub(crate) fn arm(&mut self, op: FaultOp, fault: IoFault, count: u64, prefix: &str) {
        if count > 0 {
            self.armed.push(Armed {
                op,
                fault,
                remaining: count,
                prefix: prefix.to_owned(),
            });
        }
    }

    /// Consumes one armed failure matching `op` and any of `paths`.
    pub(crate) fn take_armed(&mut self, op: FaultOp, paths: &[&Path]) -> Option<IoFault> {
        let index = self
            .armed
            .iter()
            .position(|a| a.op == op && paths.iter().any(|p| under(p, &a.prefix)))?;
        let armed = &mut self.armed[index];
        armed.remaining -= 1;
        let fault = armed.fault;
        if armed.remaining == 0 {
            self.armed.remove(index);
        }
        Some(fault)
    }

    pub(crate) fn arm_misdirect(&mut self, prefix: &str) {
        self.misdirect.push(prefix.to_owned());
    }

    pub(crate) fn arm_lose(&mut self, prefix: &str) {
        self.lose.push(prefix.to_owned());
    }

    /// Whether a misdirection is armed for `path`; `consume` disarms it.
    pub(crate) fn misdirect_armed(&mut self, path: &Path, consume: bool) -> bool {
        take_prefix(&mut self.misdirect, path, consume)
    }

    /// Whether a lost write is armed for `path`; `consume` disarms it.
    pub(crate) fn lose_armed(&mut self, path: &Path, consume: bool) -> bool {
        take_prefix(&mut self.lose, path, consume)
    }
}

fn take_prefix(prefixes: &mut Vec<String>, path: &Path, consume: bool) -> bool {
    match prefixes.iter().position(|p| under(path, p)) {
        Some(index) => {
            if consume {
                prefixes.remove(index);
            }
            true
        }
        None => false,
    }
}

/// Prefixes match the path as text, so `journal/seg-` selects segment files.
fn under(path: &Path, prefix: &str) -> bool {
    path.to_str().is_some_and(|p| p.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_failure_fires_exactly_count_times_on_matching_paths() {
        let mut plan = FaultPlan::default();
        plan.arm(FaultOp::Write, IoFault::Eio, 2, "journal/");
        let seg = Path::new("journal/seg-1");
        let other = Path::new("blocks/x");
        assert_eq!(plan.take_armed(FaultOp::Write, &[other]), None);
        assert_eq!(plan.take_armed(FaultOp::Read, &[seg]), None);
        assert_eq!(plan.take_armed(FaultOp::Write, &[seg]), Some(IoFault::Eio));
        assert_eq!(plan.take_armed(FaultOp::Write, &[seg]), Some(IoFault::Eio));
        assert_eq!(plan.take_armed(FaultOp::Write, &[seg]), None);
    }

    #[test]
    #[should_panic(expected = "not in 0..=1")]
    fn rate_above_one_is_refused() {
        let rates = FaultRates {
            sync_eio: 1.5,
            ..FaultRates::default()
        };
        rates.assert_valid();
    }
}
