//! Everything one simulated disk holds, behind one lock: files, the two
//! directory trees, the metadata log, the fault plan and the one RNG every
//! random choice is drawn from.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::faults::{CrashPolicy, FaultKind, FaultOp, FaultPlan, InjectedFault, IoFault};
use crate::file::{FileState, FILE_BYTES_MAX};
use crate::metalog::MetaLog;
use crate::namespace::{Entry, Ino, Namespace, ROOT};

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) seed: u64,
    pub(crate) rng: SmallRng,
    /// How many power cuts happened; a handle from an older epoch is stale.
    pub(crate) epoch: u64,
    next_ino: Ino,
    pub(crate) files: BTreeMap<Ino, FileState>,
    /// The tree the running system sees.
    pub(crate) running: Namespace,
    /// The tree folded from durable metadata operations.
    pub(crate) durable: Namespace,
    pub(crate) log: MetaLog,
    /// Files unlinked from `running` whose data may still be needed.
    pub(crate) orphans: BTreeSet<Ino>,
    pub(crate) plan: FaultPlan,
    pub(crate) fault_log: Vec<InjectedFault>,
}

impl State {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            rng: SmallRng::seed_from_u64(seed),
            epoch: 0,
            next_ino: ROOT + 1,
            files: BTreeMap::new(),
            running: Namespace::new(),
            durable: Namespace::new(),
            log: MetaLog::default(),
            orphans: BTreeSet::new(),
            plan: FaultPlan::default(),
            fault_log: Vec::new(),
        }
    }

    pub(crate) fn new_ino(&mut self) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// A draw that consumes the RNG only when the rate is set, so enabling
    /// no faults leaves every other random choice unchanged.
    pub(crate) fn draw(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.gen_bool(rate)
    }

    /// An armed failure or a rate-drawn one for `op` on `paths`, recorded in
    /// the fault log. `at` is the byte range involved, if any.
    pub(crate) fn injected(
        &mut self,
        op: FaultOp,
        paths: &[&Path],
        at: Option<(u64, u64)>,
    ) -> Option<IoFault> {
        let fault = self.plan.take_armed(op, paths).or_else(|| self.drawn(op))?;
        let (offset, len) = at.unzip();
        let kind = fault.kind(op);
        tracing::debug!(?kind, path = %paths[0].display(), ?offset, "injected fault");
        self.fault_log.push(InjectedFault {
            kind,
            path: paths[0].to_owned(),
            offset,
            len,
        });
        Some(fault)
    }

    fn drawn(&mut self, op: FaultOp) -> Option<IoFault> {
        let rates = self.plan.rates;
        let eio = match op {
            FaultOp::Read => rates.read_eio,
            FaultOp::Write => rates.write_eio,
            FaultOp::Sync => rates.sync_eio,
            FaultOp::SyncDir => rates.sync_dir_eio,
            FaultOp::Create | FaultOp::Rename | FaultOp::Remove => 0.0,
        };
        if self.draw(eio) {
            return Some(IoFault::Eio);
        }
        (op == FaultOp::Write && self.draw(rates.enospc)).then_some(IoFault::Enospc)
    }

    /// Bytes in use: every file's running length, except unlinked files no
    /// handle holds open.
    fn used_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter(|(ino, file)| !self.orphans.contains(ino) || file.is_open())
            .map(|(_, file)| file.len())
            .sum()
    }

    /// Fails with ENOSPC, recorded, if growing file `ino` to `new_len` bytes
    /// would exceed the capacity.
    pub(crate) fn check_capacity(&mut self, ino: Ino, new_len: u64) -> io::Result<()> {
        let (Some(capacity), Some(file)) = (self.plan.capacity_bytes, self.files.get(&ino)) else {
            return Ok(());
        };
        let old_len = file.len();
        if new_len <= old_len || self.used_bytes() - old_len + new_len <= capacity {
            return Ok(());
        }
        let fault = InjectedFault::at(
            FaultKind::Enospc { op: FaultOp::Write },
            &file.path,
            old_len,
            new_len - old_len,
        );
        self.fault_log.push(fault);
        Err(finkfs_seam::enospc())
    }

    /// Drops the data of unlinked files that no handle holds and no logged
    /// operation could bring back.
    pub(crate) fn collect_garbage(&mut self) {
        let dead: Vec<Ino> = self
            .orphans
            .iter()
            .copied()
            .filter(|ino| !self.log.references(*ino))
            .filter(|ino| self.files.get(ino).is_none_or(|f| !f.is_open()))
            .collect();
        for ino in dead {
            self.orphans.remove(&ino);
            self.files.remove(&ino);
        }
    }

    /// The file at `path` in the running tree.
    pub(crate) fn file_at(&mut self, path: &Path) -> io::Result<&mut FileState> {
        let path = crate::disk::checked(path)?;
        match self.running.resolve(path)? {
            Entry::File(ino) => self.files.get_mut(&ino).ok_or_else(|| missing_inode(path)),
            Entry::Dir(_) => Err(is_a_directory(path)),
        }
    }

    /// Every file in the running tree, sorted.
    pub(crate) fn file_paths(&self) -> Vec<PathBuf> {
        self.running.files().into_iter().map(|(p, _)| p).collect()
    }

    /// Cuts the power: pending file ops meet their fate, a prefix of the
    /// unsynced metadata survives, and every open handle goes stale.
    pub(crate) fn power_cut(&mut self, policy: CrashPolicy) {
        for file in self.files.values_mut() {
            file.power_cut(policy, &mut self.rng, &mut self.fault_log);
        }
        let at_risk = self.log.len();
        let survivors = match policy {
            CrashPolicy::LoseUnsynced => 0,
            CrashPolicy::KeepUnsynced => at_risk,
            CrashPolicy::Random => self.rng.gen_range(0..=at_risk),
        };
        for lost in self.log.replay_into(&mut self.durable, survivors) {
            let kind = FaultKind::MetadataReverted { op: lost.kind() };
            self.fault_log.push(InjectedFault::on(kind, &lost.path));
        }
        self.keep_reachable_files();
        self.running = self.durable.clone();
        self.orphans.clear();
        self.epoch += 1;
        tracing::debug!(
            seed = self.seed,
            epoch = self.epoch,
            lost_metadata_ops = at_risk - survivors,
            "power cut"
        );
    }

    /// After a power cut: keeps the files the durable tree reaches, each
    /// under one name. A rename across directories whose target half
    /// survived but whose source half did not leaves a file under two names;
    /// the second gets a copy of its own, as a file system check would.
    fn keep_reachable_files(&mut self) {
        let mut old = std::mem::take(&mut self.files);
        for (path, ino) in self.durable.files() {
            let file = if let Some(file) = old.remove(&ino) {
                file
            } else if let Some(first) = self.files.get(&ino) {
                let copy = first.clone();
                let fresh = self.new_ino();
                self.durable.repoint_file(&path, fresh);
                self.insert_after_cut(fresh, copy, path);
                continue;
            } else {
                debug_assert!(false, "durable tree names unknown inode {ino}");
                FileState::new(path.clone())
            };
            self.insert_after_cut(ino, file, path);
        }
    }

    fn insert_after_cut(&mut self, ino: Ino, mut file: FileState, path: PathBuf) {
        file.path = path;
        file.handles = Arc::new(());
        self.files.insert(ino, file);
    }
}

/// Checks `offset + len` against the largest simulated file.
pub(crate) fn checked_end(offset: u64, len: usize) -> io::Result<u64> {
    offset
        .checked_add(len as u64)
        .filter(|end| *end <= FILE_BYTES_MAX)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("end past {FILE_BYTES_MAX} bytes, the simulated file size limit"),
            )
        })
}

pub(crate) fn is_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::IsADirectory,
        format!("{}: is a directory", path.display()),
    )
}

fn missing_inode(path: &Path) -> io::Error {
    io::Error::other(format!("{}: simulated inode missing", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_file_data_dropped_once_nothing_can_reach_it() {
        let mut state = State::new(1);
        let opened = state.create(Path::new("f")).unwrap();
        state.remove(Path::new("f")).unwrap();
        // The unsynced removal could be undone, and a handle is open.
        assert_eq!(state.files.len(), 1);
        state.sync_dir(Path::new("")).unwrap();
        assert_eq!(state.files.len(), 1, "collected while a handle is open");
        drop(opened);
        state.sync_dir(Path::new("")).unwrap();
        assert!(state.files.is_empty());
        assert!(state.orphans.is_empty());
    }

    #[test]
    fn replaced_file_kept_while_its_rename_may_revert() {
        let mut state = State::new(1);
        drop(state.create(Path::new("f")).unwrap());
        drop(state.create(Path::new("g")).unwrap());
        state.sync_dir(Path::new("")).unwrap();
        state.rename(Path::new("g"), Path::new("f")).unwrap();
        assert_eq!(state.files.len(), 2);
        state.sync_dir(Path::new("")).unwrap();
        assert_eq!(state.files.len(), 1);
    }
}
