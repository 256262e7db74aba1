//! The ordered log of metadata operations not yet durable.
//!
//! Every create, remove and rename is appended here. `sync_dir(d)` makes each
//! logged operation on `d` durable, which folds it into the durable tree at
//! once and drops it from the log. Folding early is faithful: every operation
//! changes the entries of one directory only, so operations on different
//! directories commute, and within one directory the durable operations
//! always precede the others. A power cut keeps a random prefix of what is
//! still logged, replayed in the original order.
//!
//! The log is indexed by directory and by inode so that a sync, or asking
//! whether an inode may come back, costs no scan of a long log (one that a
//! never-synced directory keeps from emptying).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::faults::MetadataOp;
use crate::namespace::{Ino, MetaOp, Namespace};

/// One logged operation, with the path it named (for the fault log).
#[derive(Debug, Clone)]
pub(crate) struct LoggedOp {
    pub(crate) op: MetaOp,
    pub(crate) path: PathBuf,
}

impl LoggedOp {
    /// How the fault log names this operation.
    pub(crate) fn kind(&self) -> MetadataOp {
        match self.op {
            MetaOp::Create { .. } | MetaOp::MkDir { .. } => MetadataOp::Create,
            MetaOp::Remove { .. } => MetadataOp::Remove,
            MetaOp::Rename { .. } => MetadataOp::Rename,
            MetaOp::Unlink { .. } => MetadataOp::RenameUnlink,
            MetaOp::Link { .. } => MetadataOp::RenameLink,
        }
    }
}

/// Operations applied to the running tree but not yet to the durable one.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetaLog {
    next_seq: u64,
    ops: BTreeMap<u64, LoggedOp>,
    /// Sequence numbers of the logged operations on each directory.
    by_dir: BTreeMap<Ino, Vec<u64>>,
    /// How many logged operations name each inode.
    refs: BTreeMap<Ino, usize>,
}

impl MetaLog {
    pub(crate) fn push(&mut self, op: MetaOp, path: PathBuf) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_dir.entry(op.dir()).or_default().push(seq);
        for ino in op.inodes() {
            *self.refs.entry(ino).or_default() += 1;
        }
        self.ops.insert(seq, LoggedOp { op, path });
    }

    fn take(&mut self, seq: u64) -> Option<LoggedOp> {
        let logged = self.ops.remove(&seq)?;
        for ino in logged.op.inodes() {
            if let Some(count) = self.refs.get_mut(&ino) {
                *count -= 1;
                if *count == 0 {
                    self.refs.remove(&ino);
                }
            }
        }
        Some(logged)
    }

    /// Makes every logged operation on directory `dir` durable: folds them,
    /// in order, into `durable`.
    pub(crate) fn make_durable(&mut self, dir: Ino, durable: &mut Namespace) {
        for seq in self.by_dir.remove(&dir).unwrap_or_default() {
            if let Some(logged) = self.take(seq) {
                durable.apply(&logged.op);
            }
        }
    }

    /// Makes everything logged durable (a journal commit).
    pub(crate) fn make_all_durable(&mut self, durable: &mut Namespace) {
        let lost = self.replay_into(durable, usize::MAX);
        debug_assert!(lost.is_empty());
    }

    /// Whether a logged operation still names inode `ino`: a power cut could
    /// bring it back, so its data must be kept.
    pub(crate) fn references(&self, ino: Ino) -> bool {
        self.refs.contains_key(&ino)
    }

    /// How many operations a power cut may lose.
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Empties the log into `durable` as a power cut leaves it: the first
    /// `survivors` operations are applied in order; the rest are returned.
    pub(crate) fn replay_into(
        &mut self,
        durable: &mut Namespace,
        survivors: usize,
    ) -> Vec<LoggedOp> {
        let ops = std::mem::take(&mut self.ops);
        self.by_dir.clear();
        self.refs.clear();
        let mut lost = Vec::new();
        for (position, logged) in ops.into_values().enumerate() {
            if position < survivors {
                durable.apply(&logged.op);
            } else {
                lost.push(logged);
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::{Entry, ROOT};
    use std::path::Path;

    fn create(dir: Ino, name: &str, ino: Ino) -> MetaOp {
        MetaOp::Create {
            dir,
            name: name.into(),
            ino,
        }
    }

    fn mkdir(name: &str, ino: Ino) -> MetaOp {
        MetaOp::MkDir {
            dir: ROOT,
            name: name.into(),
            ino,
        }
    }

    #[test]
    fn sync_folds_only_the_synced_directory() {
        let mut durable = Namespace::new();
        durable.apply(&mkdir("d", 7));
        let mut log = MetaLog::default();
        log.push(create(ROOT, "a", 1), "a".into());
        log.push(create(7, "b", 2), "d/b".into());
        log.push(create(ROOT, "c", 3), "c".into());
        log.make_durable(ROOT, &mut durable);
        assert!(durable.resolve(Path::new("a")).is_ok());
        assert!(durable.resolve(Path::new("c")).is_ok());
        assert!(durable.resolve(Path::new("d/b")).is_err());
        assert_eq!(log.len(), 1);
        assert!(log.references(2));
        assert!(!log.references(3));
    }

    #[test]
    fn power_cut_keeps_a_prefix_of_what_was_logged() {
        let mut durable = Namespace::new();
        durable.apply(&mkdir("d", 7));
        let mut log = MetaLog::default();
        log.push(create(7, "early", 1), "d/early".into());
        log.push(create(ROOT, "synced", 2), "synced".into());
        log.push(create(ROOT, "late", 3), "late".into());
        log.push(create(7, "later", 4), "d/later".into());
        log.make_durable(ROOT, &mut durable);
        let lost = log.replay_into(&mut durable, 1);
        let lost_paths: Vec<&Path> = lost.iter().map(|l| l.path.as_path()).collect();
        assert_eq!(lost_paths, [Path::new("d/later")]);
        assert_eq!(
            durable.resolve(Path::new("synced")).unwrap(),
            Entry::File(2)
        );
        assert_eq!(durable.resolve(Path::new("late")).unwrap(), Entry::File(3));
        assert_eq!(
            durable.resolve(Path::new("d/early")).unwrap(),
            Entry::File(1)
        );
        assert_eq!(log.len(), 0);
        assert!(!log.references(1));
    }
}
