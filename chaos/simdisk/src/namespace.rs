//! The directory tree: which name in which directory points to which inode.
//!
//! Directories and files are both inodes. Operations name the directory they
//! change by its inode, not its path, so a directory keeps its identity (and
//! `sync_dir` keeps working) across a rename of the directory itself.
//!
//! The simulator keeps two trees: the one the running system sees, and the
//! one every durable metadata operation has been folded into. Both are
//! changed by [`Namespace::apply`], which is deliberately tolerant: on a power
//! cut, surviving operations are replayed without the lost ones, so an
//! operation may find its source already gone. It then does the part that
//! still makes sense and never panics.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// An inode number, unique for the life of one simulated disk.
pub(crate) type Ino = u64;

/// The inode of the root directory.
pub(crate) const ROOT: Ino = 0;

/// What a directory entry points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    File(Ino),
    Dir(Ino),
}

/// One change to a single directory. A rename across directories is logged
/// as an `Unlink` in the source and a `Link` in the target, so each half is
/// made durable by a `sync_dir` of its own directory. `replaced` is the file
/// a rename overwrote: its data must outlive the operation, since a power
/// cut may undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetaOp {
    Create {
        dir: Ino,
        name: String,
        ino: Ino,
    },
    Remove {
        dir: Ino,
        name: String,
        ino: Ino,
    },
    Rename {
        dir: Ino,
        from: String,
        to: String,
        ino: Ino,
        replaced: Option<Ino>,
    },
    Unlink {
        dir: Ino,
        name: String,
        ino: Ino,
    },
    Link {
        dir: Ino,
        name: String,
        ino: Ino,
        replaced: Option<Ino>,
    },
    MkDir {
        dir: Ino,
        name: String,
        ino: Ino,
    },
}

impl MetaOp {
    /// The one directory this operation changes.
    pub(crate) fn dir(&self) -> Ino {
        match self {
            MetaOp::Create { dir, .. }
            | MetaOp::Remove { dir, .. }
            | MetaOp::Rename { dir, .. }
            | MetaOp::Unlink { dir, .. }
            | MetaOp::Link { dir, .. }
            | MetaOp::MkDir { dir, .. } => *dir,
        }
    }

    /// The inodes this operation names: its subject, and the file a rename
    /// replaced.
    pub(crate) fn inodes(&self) -> impl Iterator<Item = Ino> {
        let (ino, replaced) = match self {
            MetaOp::Rename { ino, replaced, .. } | MetaOp::Link { ino, replaced, .. } => {
                (*ino, *replaced)
            }
            MetaOp::Create { ino, .. }
            | MetaOp::Remove { ino, .. }
            | MetaOp::Unlink { ino, .. }
            | MetaOp::MkDir { ino, .. } => (*ino, None),
        };
        std::iter::once(ino).chain(replaced)
    }
}

/// A tree of directories keyed by inode; each maps names to entries.
#[derive(Debug, Clone)]
pub(crate) struct Namespace {
    dirs: BTreeMap<Ino, BTreeMap<String, Entry>>,
}

impl Namespace {
    /// A tree holding only the empty root directory.
    pub(crate) fn new() -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(ROOT, BTreeMap::new());
        Self { dirs }
    }

    /// Follows `path` (already validated) from the root. The empty path is
    /// the root. A missing segment is `NotFound`; a file used as a directory
    /// is `NotADirectory`.
    pub(crate) fn resolve(&self, path: &Path) -> io::Result<Entry> {
        let mut entry = Entry::Dir(ROOT);
        for segment in segments(path) {
            let Entry::Dir(dir) = entry else {
                return Err(not_a_directory(path));
            };
            entry = *self
                .entries(dir)
                .get(segment)
                .ok_or_else(|| not_found(path))?;
        }
        Ok(entry)
    }

    /// Resolves `path` to a directory inode.
    pub(crate) fn resolve_dir(&self, path: &Path) -> io::Result<Ino> {
        match self.resolve(path)? {
            Entry::Dir(ino) => Ok(ino),
            Entry::File(_) => Err(not_a_directory(path)),
        }
    }

    /// The entries of directory `dir`; empty if the inode is unknown.
    pub(crate) fn entries(&self, dir: Ino) -> &BTreeMap<String, Entry> {
        static EMPTY: BTreeMap<String, Entry> = BTreeMap::new();
        self.dirs.get(&dir).unwrap_or(&EMPTY)
    }

    /// Whether directory `ancestor` is `dir` or contains it, at any depth.
    pub(crate) fn contains_dir(&self, ancestor: Ino, dir: Ino) -> bool {
        if ancestor == dir {
            return true;
        }
        self.entries(ancestor).values().any(|entry| match entry {
            Entry::Dir(child) => self.contains_dir(*child, dir),
            Entry::File(_) => false,
        })
    }

    /// Applies one operation. A file is never linked over a directory, and a
    /// removal only removes the inode it names.
    pub(crate) fn apply(&mut self, op: &MetaOp) {
        match op {
            MetaOp::Create { dir, name, ino } | MetaOp::Link { dir, name, ino, .. } => {
                self.link_file(*dir, name, *ino);
            }
            MetaOp::Remove { dir, name, ino } | MetaOp::Unlink { dir, name, ino } => {
                self.unlink_file(*dir, name, *ino);
            }
            MetaOp::Rename {
                dir, from, to, ino, ..
            } => {
                self.unlink_file(*dir, from, *ino);
                self.link_file(*dir, to, *ino);
            }
            MetaOp::MkDir { dir, name, ino } => self.make_dir(*dir, name, *ino),
        }
    }

    fn link_file(&mut self, dir: Ino, name: &str, ino: Ino) {
        if let Some(entries) = self.dirs.get_mut(&dir) {
            if !matches!(entries.get(name), Some(Entry::Dir(_))) {
                entries.insert(name.to_owned(), Entry::File(ino));
            }
        }
    }

    fn unlink_file(&mut self, dir: Ino, name: &str, ino: Ino) {
        if let Some(entries) = self.dirs.get_mut(&dir) {
            if entries.get(name) == Some(&Entry::File(ino)) {
                entries.remove(name);
            }
        }
    }

    fn make_dir(&mut self, dir: Ino, name: &str, ino: Ino) {
        if let Some(entries) = self.dirs.get_mut(&dir) {
            entries.insert(name.to_owned(), Entry::Dir(ino));
            self.dirs.entry(ino).or_default();
        }
    }

    /// Moves directory `ino` from `from` to `to`, replacing an empty
    /// directory there if any. The caller has checked that the move is legal.
    pub(crate) fn move_dir(&mut self, from: (Ino, &str), to: (Ino, &str), ino: Ino) {
        if let Some(entries) = self.dirs.get_mut(&from.0) {
            entries.remove(from.1);
        }
        let Some(entries) = self.dirs.get_mut(&to.0) else {
            return;
        };
        if let Some(Entry::Dir(replaced)) = entries.insert(to.1.to_owned(), Entry::Dir(ino)) {
            self.dirs.remove(&replaced);
        }
    }

    /// Every file in the tree with its path, sorted by path.
    pub(crate) fn files(&self) -> Vec<(PathBuf, Ino)> {
        let mut out = Vec::new();
        self.collect_files(ROOT, PathBuf::new(), &mut out);
        out.sort();
        out
    }

    fn collect_files(&self, dir: Ino, prefix: PathBuf, out: &mut Vec<(PathBuf, Ino)>) {
        for (name, entry) in self.entries(dir) {
            let path = prefix.join(name);
            match entry {
                Entry::File(ino) => out.push((path, *ino)),
                Entry::Dir(child) => self.collect_files(*child, path, out),
            }
        }
    }

    /// Points the entry at `path` (a file) to `ino`. Used after a power cut
    /// to give a file that ended up under two names a copy of its own.
    pub(crate) fn repoint_file(&mut self, path: &Path, ino: Ino) {
        let Some((parent, name)) = split(path) else {
            return;
        };
        if let Ok(Entry::Dir(dir)) = self.resolve(parent) {
            if let Some(entry @ Entry::File(_)) =
                self.dirs.get_mut(&dir).and_then(|e| e.get_mut(name))
            {
                *entry = Entry::File(ino);
            }
        }
    }
}

/// The segments of a validated relative path (none for the root).
pub(crate) fn segments(path: &Path) -> impl Iterator<Item = &str> {
    path.to_str()
        .unwrap_or("")
        .split('/')
        .filter(|segment| !segment.is_empty())
}

/// Splits a validated path into its parent directory and final name; `None`
/// for the root.
pub(crate) fn split(path: &Path) -> Option<(&Path, &str)> {
    let name = path.file_name()?.to_str()?;
    Some((finkfs_seam::parent_dir(path), name))
}

pub(crate) fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

pub(crate) fn not_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("{}: not a directory", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(ns: &mut Namespace, dir: Ino, name: &str, ino: Ino) {
        let op = MetaOp::Create {
            dir,
            name: name.into(),
            ino,
        };
        ns.apply(&op);
    }

    #[test]
    fn resolve_reports_missing_and_file_used_as_directory() {
        let mut ns = Namespace::new();
        ns.apply(&MetaOp::MkDir {
            dir: ROOT,
            name: "d".into(),
            ino: 1,
        });
        create(&mut ns, 1, "f", 2);
        assert_eq!(ns.resolve(Path::new("d/f")).unwrap(), Entry::File(2));
        assert_eq!(ns.resolve(Path::new("")).unwrap(), Entry::Dir(ROOT));
        let missing = ns.resolve(Path::new("d/g")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let through_file = ns.resolve(Path::new("d/f/x")).unwrap_err();
        assert_eq!(through_file.kind(), io::ErrorKind::NotADirectory);
    }

    #[test]
    fn removal_of_a_replaced_inode_leaves_the_new_one() {
        let mut ns = Namespace::new();
        create(&mut ns, ROOT, "f", 1);
        create(&mut ns, ROOT, "f", 2);
        ns.apply(&MetaOp::Remove {
            dir: ROOT,
            name: "f".into(),
            ino: 1,
        });
        assert_eq!(ns.resolve(Path::new("f")).unwrap(), Entry::File(2));
    }

    #[test]
    fn file_never_linked_over_a_directory() {
        let mut ns = Namespace::new();
        ns.apply(&MetaOp::MkDir {
            dir: ROOT,
            name: "d".into(),
            ino: 1,
        });
        create(&mut ns, ROOT, "d", 2);
        assert_eq!(ns.resolve(Path::new("d")).unwrap(), Entry::Dir(1));
    }

    #[test]
    fn files_are_listed_in_path_order() {
        let mut ns = Namespace::new();
        ns.apply(&MetaOp::MkDir {
            dir: ROOT,
            name: "a".into(),
            ino: 1,
        });
        create(&mut ns, 1, "z", 2);
        create(&mut ns, ROOT, "a.txt", 3);
        create(&mut ns, ROOT, "0", 4);
        let paths: Vec<PathBuf> = ns.files().into_iter().map(|(p, _)| p).collect();
        let expected: Vec<PathBuf> = ["0", "a/z", "a.txt"].iter().map(PathBuf::from).collect();
        assert_eq!(paths, expected);
    }
}
