//! The in-memory state of the crash file system: what processes see.
//!
//! Two namespaces are kept side by side. The *view* (`children`, `view_links`)
//! is what `lookup` and `readdir` show, changed at once by create, mkdir,
//! rename, unlink and rmdir. The *durable* namespace (`durable`,
//! `durable_links`) mirrors the backing directory and changes only when a
//! directory is fsynced (see `durable.rs`). A power cut throws the view away
//! and rebuilds it from the backing directory.
//!
//! A file's bytes are its durable content (a backing file, or none) plus the
//! operations issued since its last fsync (`pending`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fuser::{Errno, FileAttr, FileType, INodeNo};
use rand::rngs::StdRng;

use crate::backing;
use crate::pending::{len_after_all, PendingOp};

/// The root directory's inode number, fixed by FUSE.
pub const ROOT_INO: u64 = 1;
/// Directory in the backing root that holds the durable content of inodes
/// that have no durable name. It is emptied at every power cut and hidden
/// from the mount.
pub const ORPHANS_DIR: &str = ".crashfs-orphans";

/// A directory entry: the directory's inode and the name in it.
pub type Link = (u64, OsString);

#[derive(Debug, Default)]
pub struct FileNode {
    pub view_links: u32,
    pub open_handles: u32,
    pub durable_links: BTreeSet<Link>,
    /// The durable content lives at `ORPHANS_DIR/<ino>` (possibly besides links).
    pub orphaned: bool,
    pub durable_len: u64,
    pub pending: Vec<PendingOp>,
}

#[derive(Debug, Default)]
pub struct DirNode {
    /// Where the directory appears in the view; `None` for the root or after rmdir.
    pub view_link: Option<Link>,
    pub children: BTreeMap<OsString, u64>,
    pub durable: BTreeMap<OsString, u64>,
    pub durable_link: Option<Link>,
    /// The backing directory lives at `ORPHANS_DIR/<ino>`.
    pub orphaned: bool,
}

#[derive(Debug)]
pub enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// The whole state, behind one mutex.
#[derive(Debug)]
pub struct Model {
    pub backing: PathBuf,
    pub nodes: HashMap<u64, Node>,
    /// Never reused, not even across power cuts, so the kernel cannot confuse
    /// an inode it still remembers with a new one.
    pub next_ino: u64,
    pub rng: StdRng,
}

impl Model {
    pub fn file(&self, ino: u64) -> Result<&FileNode, Errno> {
        match self.nodes.get(&ino) {
            Some(Node::File(f)) => Ok(f),
            Some(Node::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    pub fn file_mut(&mut self, ino: u64) -> Result<&mut FileNode, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            Some(Node::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    pub fn dir(&self, ino: u64) -> Result<&DirNode, Errno> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    pub fn dir_mut(&mut self, ino: u64) -> Result<&mut DirNode, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    pub fn orphan_path(&self, ino: u64) -> PathBuf {
        self.backing.join(ORPHANS_DIR).join(ino.to_string())
    }

    /// The backing directory of `ino`, if it has one yet.
    pub fn dir_path(&self, ino: u64) -> Option<PathBuf> {
        if ino == ROOT_INO {
            return Some(self.backing.clone());
        }
        let dir = self.dir(ino).ok()?;
        match &dir.durable_link {
            Some((parent, name)) => Some(self.dir_path(*parent)?.join(name)),
            None if dir.orphaned => Some(self.orphan_path(ino)),
            None => None,
        }
    }

    /// The backing file holding the durable content of `ino`, if any.
    pub fn file_home(&self, ino: u64) -> Option<PathBuf> {
        let file = self.file(ino).ok()?;
        if let Some((parent, name)) = file.durable_links.iter().next() {
            return Some(self.dir_path(*parent)?.join(name));
        }
        file.orphaned.then(|| self.orphan_path(ino))
    }

    pub fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let (kind, size, nlink, perm) = match self.nodes.get(&ino) {
            Some(Node::File(f)) => (
                FileType::RegularFile,
                len_after_all(f.durable_len, &f.pending),
                f.view_links,
                0o644,
            ),
            Some(Node::Dir(_)) => (FileType::Directory, 0, 2, 0o755),
            None => return Err(Errno::ENOENT),
        };
        let now = SystemTime::now();
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let child = *self.dir(parent)?.children.get(name).ok_or(Errno::ENOENT)?;
        self.attr(child)
    }

    pub fn allocate(&mut self, node: Node) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    fn check_new_name(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        if parent == ROOT_INO && name == ORPHANS_DIR {
            return Err(Errno::EPERM);
        }
        if self.dir(parent)?.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// Creates and opens a new empty file.
    pub fn create_file(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        self.check_new_name(parent, name)?;
        let ino = self.allocate(Node::File(FileNode {
            view_links: 1,
            open_handles: 1,
            ..FileNode::default()
        }));
        self.dir_mut(parent)?.children.insert(name.to_owned(), ino);
        self.attr(ino)
    }

    pub fn mkdir(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        self.check_new_name(parent, name)?;
        let ino = self.allocate(Node::Dir(DirNode {
            view_link: Some((parent, name.to_owned())),
            ..DirNode::default()
        }));
        self.dir_mut(parent)?.children.insert(name.to_owned(), ino);
        self.attr(ino)
    }

    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let child = *self.dir(parent)?.children.get(name).ok_or(Errno::ENOENT)?;
        self.file(child)?;
        self.dir_mut(parent)?.children.remove(name);
        let file = self.file_mut(child)?;
        file.view_links -= 1;
        self.forget_if_unreachable(child);
        Ok(())
    }

    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let child = *self.dir(parent)?.children.get(name).ok_or(Errno::ENOENT)?;
        if !self.dir(child)?.children.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.dir_mut(parent)?.children.remove(name);
        self.dir_mut(child)?.view_link = None;
        self.forget_if_unreachable(child);
        Ok(())
    }

    /// Renames a file. Renaming a directory is refused with `EXDEV` (tools
    /// then copy): a moved directory would drag durable entries of other
    /// directories along, which this model does not follow.
    pub fn rename(&mut self, from: Link, to: Link, no_replace: bool) -> Result<(), Errno> {
        let child = *self
            .dir(from.0)?
            .children
            .get(&from.1)
            .ok_or(Errno::ENOENT)?;
        if self.dir(child).is_ok() {
            return Err(Errno::EXDEV);
        }
        if to.0 == ROOT_INO && to.1 == ORPHANS_DIR {
            return Err(Errno::EPERM);
        }
        let replaced = self.dir(to.0)?.children.get(&to.1).copied();
        if let Some(old) = replaced {
            if no_replace {
                return Err(Errno::EEXIST);
            }
            if old == child {
                return Ok(());
            }
            self.file(old)?;
            self.file_mut(old)?.view_links -= 1;
        }
        self.dir_mut(from.0)?.children.remove(&from.1);
        self.dir_mut(to.0)?.children.insert(to.1, child);
        if let Some(old) = replaced {
            self.forget_if_unreachable(old);
        }
        Ok(())
    }

    pub fn open(&mut self, ino: u64) -> Result<(), Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => f.open_handles += 1,
            Some(Node::Dir(_)) => {}
            None => return Err(Errno::ENOENT),
        }
        Ok(())
    }

    pub fn release(&mut self, ino: u64) {
        if let Ok(file) = self.file_mut(ino) {
            file.open_handles = file.open_handles.saturating_sub(1);
            self.forget_if_unreachable(ino);
        }
    }

    /// Drops a node nothing can reach any more: not in the view, not open,
    /// and without a durable name.
    pub fn forget_if_unreachable(&mut self, ino: u64) {
        let drop_orphan = match self.nodes.get(&ino) {
            Some(Node::File(f)) => {
                if f.view_links > 0 || f.open_handles > 0 || !f.durable_links.is_empty() {
                    return;
                }
                f.orphaned
            }
            Some(Node::Dir(d)) => {
                // An orphaned directory may still hold durable entries; it goes at the next cut.
                if d.view_link.is_some() || d.durable_link.is_some() || d.orphaned {
                    return;
                }
                false
            }
            None => return,
        };
        if drop_orphan {
            let path = self.orphan_path(ino);
            if let Err(error) = backing::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "could not remove orphan file");
            }
        }
        self.nodes.remove(&ino);
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let file = self.file(ino)?;
        let len = len_after_all(file.durable_len, &file.pending);
        if offset >= len {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (len - offset).min(u64::from(size)) as usize];
        if offset < file.durable_len {
            if let Some(home) = self.file_home(ino) {
                let durable = (file.durable_len - offset).min(buf.len() as u64) as usize;
                backing::read_at(&home, offset, &mut buf[..durable]).map_err(Errno::from)?;
            }
        }
        for op in &file.pending {
            op.overlay(offset, &mut buf);
        }
        Ok(buf)
    }

    pub fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<u32, Errno> {
        let written = u32::try_from(bytes.len()).map_err(|_| Errno::EFBIG)?;
        self.file_mut(ino)?.pending.push(PendingOp::Write {
            offset,
            bytes: bytes.to_vec(),
        });
        Ok(written)
    }

    pub fn set_len(&mut self, ino: u64, len_bytes: u64) -> Result<(), Errno> {
        self.file_mut(ino)?
            .pending
            .push(PendingOp::SetLen { len_bytes });
        Ok(())
    }

    /// `.`, `..` and the view's entries of directory `ino`.
    pub fn entries(&self, ino: u64) -> Result<Vec<(u64, FileType, OsString)>, Errno> {
        let dir = self.dir(ino)?;
        let parent = dir.view_link.as_ref().map_or(ROOT_INO, |(p, _)| *p);
        let mut out = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (parent, FileType::Directory, OsString::from("..")),
        ];
        for (name, child) in &dir.children {
            let kind = match self.nodes.get(child) {
                Some(Node::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            out.push((*child, kind, name.clone()));
        }
        Ok(out)
    }
}

/// How long the kernel may cache entries and attributes: not at all, so
/// that a power cut is seen at once.
pub const TTL: Duration = Duration::ZERO;

/// Checks that `path` names something inside the backing directory.
pub fn relative_inside(path: &Path) -> bool {
    use std::path::Component;
    path.components().all(|c| matches!(c, Component::Normal(_)))
        && path.components().next().is_some()
}
