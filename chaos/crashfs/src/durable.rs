//! Making state durable (fsync of a file or a directory), and losing what
//! was not (the power cut), on the model of `model.rs`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fuser::Errno;
use rand::Rng;

use crate::backing;
use crate::model::{DirNode, FileNode, Link, Model, Node, ORPHANS_DIR, ROOT_INO};
use crate::policy::{surviving, Policy};

/// What a power cut did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CutReport {
    /// Unsynced writes and truncates held in the cache when the power went.
    pub pending_ops: u64,
    /// How many of them (or of their torn prefixes) reached the backing files.
    pub kept_ops: u64,
}

impl Model {
    /// fsync / fdatasync of a file: its pending operations reach its backing
    /// file, which is fsynced. A file with no durable name gets its content
    /// kept under the orphans directory, where a later directory fsync can
    /// give it a name.
    pub fn fsync_file(&mut self, ino: u64) -> Result<(), Errno> {
        if self.file(ino)?.pending.is_empty() {
            return Ok(());
        }
        let home = match self.file_home(ino) {
            Some(home) => home,
            None => {
                self.ensure_orphans_dir().map_err(Errno::from)?;
                self.file_mut(ino)?.orphaned = true;
                self.orphan_path(ino)
            }
        };
        let file = self.file_mut(ino)?;
        file.durable_len = backing::apply_and_sync(&home, &file.pending).map_err(Errno::from)?;
        file.pending.clear();
        Ok(())
    }

    /// fsync of a directory: its durable entries become exactly its view's.
    pub fn fsync_dir(&mut self, ino: u64) -> Result<(), Errno> {
        let path = self.materialize_dir(ino).map_err(Errno::from)?;
        let dir = self.dir(ino)?;
        let view: Vec<(OsString, u64)> =
            dir.children.iter().map(|(n, c)| (n.clone(), *c)).collect();
        let gone: Vec<(OsString, u64)> = dir
            .durable
            .iter()
            .filter(|(name, _)| !dir.children.contains_key(*name))
            .map(|(n, c)| (n.clone(), *c))
            .collect();
        for (name, child) in view {
            match self.dir(ino)?.durable.get(&name).copied() {
                Some(durable) if durable == child => continue,
                Some(durable) => self.remove_durable(ino, &path, &name, durable)?,
                None => {}
            }
            self.place_durable(ino, &path, name, child)?;
        }
        for (name, child) in gone {
            self.remove_durable(ino, &path, &name, child)?;
        }
        backing::sync_dir(&path).map_err(Errno::from)
    }

    /// The backing directory of `ino`, created under the orphans directory
    /// if the directory has none yet.
    fn materialize_dir(&mut self, ino: u64) -> io::Result<PathBuf> {
        if let Some(path) = self.dir_path(ino) {
            return Ok(path);
        }
        self.ensure_orphans_dir()?;
        let path = self.orphan_path(ino);
        backing::ensure_dir(&path)?;
        if let Ok(dir) = self.dir_mut(ino) {
            dir.orphaned = true;
        }
        Ok(path)
    }

    /// Gives `child` the durable name `name` in directory `parent` (backing `dir`).
    fn place_durable(
        &mut self,
        parent: u64,
        dir: &Path,
        name: OsString,
        child: u64,
    ) -> Result<(), Errno> {
        let target = dir.join(&name);
        let link: Link = (parent, name.clone());
        match self.nodes.get(&child) {
            Some(Node::File(_)) => {
                match self.file_home(child) {
                    Some(home) => fs::hard_link(home, &target),
                    None => backing::create_empty(&target),
                }
                .map_err(Errno::from)?;
                self.file_mut(child)?.durable_links.insert(link);
            }
            Some(Node::Dir(_)) => {
                match self.dir_path(child) {
                    Some(orphan) => fs::rename(orphan, &target),
                    None => fs::create_dir(&target),
                }
                .map_err(Errno::from)?;
                let sub = self.dir_mut(child)?;
                sub.orphaned = false;
                sub.durable_link = Some(link);
            }
            None => return Err(Errno::ENOENT),
        }
        self.dir_mut(parent)?.durable.insert(name, child);
        Ok(())
    }

    /// Removes the durable name `name` of `child` from directory `parent`.
    /// Content that is still reachable from the view or an open handle moves
    /// to the orphans directory instead of being lost.
    fn remove_durable(
        &mut self,
        parent: u64,
        dir: &Path,
        name: &OsString,
        child: u64,
    ) -> Result<(), Errno> {
        let path = dir.join(name);
        let link: Link = (parent, name.clone());
        self.ensure_orphans_dir().map_err(Errno::from)?;
        let orphan = self.orphan_path(child);
        match self.nodes.get_mut(&child) {
            Some(Node::File(f)) => {
                f.durable_links.remove(&link);
                let alive = f.view_links > 0 || f.open_handles > 0;
                if f.durable_links.is_empty() && alive && !f.orphaned {
                    fs::hard_link(&path, &orphan).map_err(Errno::from)?;
                    f.orphaned = true;
                }
                fs::remove_file(&path).map_err(Errno::from)?;
            }
            Some(Node::Dir(d)) => {
                d.durable_link = None;
                d.orphaned = true;
                fs::rename(&path, &orphan).map_err(Errno::from)?;
            }
            None => return Err(Errno::ENOENT),
        }
        self.dir_mut(parent)?.durable.remove(name);
        self.forget_if_unreachable(child);
        Ok(())
    }

    fn ensure_orphans_dir(&self) -> io::Result<()> {
        backing::ensure_dir(&self.backing.join(ORPHANS_DIR))
    }

    /// The power cut: each file's unsynced operations survive as `policy`
    /// decides, every directory change not fsynced is lost, and the view is
    /// rebuilt from what the backing directory holds.
    pub fn power_cut(&mut self, policy: Policy) -> io::Result<CutReport> {
        let mut report = CutReport::default();
        let mut files: Vec<(PathBuf, u64)> = self
            .nodes
            .iter()
            .filter_map(|(ino, node)| match node {
                Node::File(f) if !f.pending.is_empty() && !f.durable_links.is_empty() => {
                    Some((self.file_home(*ino)?, *ino))
                }
                _ => None,
            })
            .collect();
        // Sorted by path, so a seed gives the same cut whatever the inode numbers.
        files.sort();
        for (home, ino) in files {
            let Ok(file) = self.file(ino) else { continue };
            let pending = file.pending.clone();
            let kept = surviving(policy, &pending, &mut self.rng);
            report.pending_ops += pending.len() as u64;
            report.kept_ops += kept.len() as u64;
            backing::apply_and_sync(&home, &kept)?;
        }
        self.reload()?;
        tracing::info!(?policy, ?report, "power cut");
        Ok(report)
    }

    /// Forgets everything in memory and rebuilds the view from the backing
    /// directory, after clearing the orphans directory.
    pub fn reload(&mut self) -> io::Result<()> {
        backing::remove_tree(&self.backing.join(ORPHANS_DIR))?;
        self.nodes.clear();
        self.nodes.insert(ROOT_INO, Node::Dir(DirNode::default()));
        let mut by_backing_ino = HashMap::new();
        let root = self.backing.clone();
        self.scan_dir(ROOT_INO, &root, &mut by_backing_ino)
    }

    fn scan_dir(
        &mut self,
        ino: u64,
        path: &Path,
        seen: &mut HashMap<(u64, u64), u64>,
    ) -> io::Result<()> {
        let mut names: Vec<(OsString, fs::Metadata)> = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if ino == ROOT_INO && entry.file_name() == ORPHANS_DIR {
                continue;
            }
            names.push((entry.file_name(), fs::symlink_metadata(entry.path())?));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, meta) in names {
            let link: Link = (ino, name.clone());
            let child = if meta.is_dir() {
                let child = self.allocate(Node::Dir(DirNode {
                    view_link: Some(link.clone()),
                    durable_link: Some(link),
                    ..DirNode::default()
                }));
                self.scan_dir(child, &path.join(&name), seen)?;
                child
            } else if meta.is_file() {
                self.scan_file(link, &meta, seen)
            } else {
                tracing::warn!(path = %path.join(&name).display(), "ignoring entry that is neither file nor directory");
                continue;
            };
            let dir = self
                .dir_mut(ino)
                .map_err(|e| io::Error::from_raw_os_error(e.code()))?;
            dir.children.insert(name.clone(), child);
            dir.durable.insert(name, child);
        }
        Ok(())
    }

    /// A scanned regular file; hard links of one backing inode share a node.
    fn scan_file(
        &mut self,
        link: Link,
        meta: &fs::Metadata,
        seen: &mut HashMap<(u64, u64), u64>,
    ) -> u64 {
        let key = (meta.dev(), meta.ino());
        if let Some(&ino) = seen.get(&key) {
            if let Ok(file) = self.file_mut(ino) {
                file.view_links += 1;
                file.durable_links.insert(link);
            }
            return ino;
        }
        let ino = self.allocate(Node::File(FileNode {
            view_links: 1,
            durable_links: [link].into_iter().collect(),
            durable_len: meta.len(),
            ..FileNode::default()
        }));
        seen.insert(key, ino);
        ino
    }

    /// Flips one bit, drawn from the seeded generator, of the durable byte at
    /// `offset` of the backing file `path`. Returns the flipped bit's mask.
    pub fn flip_bit(&mut self, path: &Path, offset: u64) -> io::Result<u8> {
        let mask = 1u8 << self.rng.gen_range(0..8u32);
        backing::flip_bits(&self.backing.join(path), offset, mask)?;
        Ok(mask)
    }
}
