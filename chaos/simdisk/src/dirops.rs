//! Directory operations. Each changes the running tree at once and is
//! logged; it reaches the durable tree when its directory is synced. Paths
//! are validated by the caller.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::faults::FaultOp;
use crate::file::FileState;
use crate::fileops::HandleId;
use crate::namespace::{not_a_directory, not_found, split, Entry, Ino, MetaOp};
use crate::state::{is_a_directory, State};

/// What opening a file yields: its handle id and the token that keeps an
/// unlinked file's data alive while the handle exists.
pub(crate) struct Opened {
    pub(crate) id: HandleId,
    pub(crate) token: Option<Arc<()>>,
}

/// A rename, resolved and checked, before it runs.
struct RenamePlan<'a> {
    from_dir: Ino,
    from_name: &'a str,
    to_dir: Ino,
    to_name: &'a str,
    existing: Option<Entry>,
}

impl State {
    pub(crate) fn create(&mut self, path: &Path) -> io::Result<Opened> {
        let (parent, name) = split(path).ok_or_else(|| is_a_directory(path))?;
        let dir = self.running.resolve_dir(parent)?;
        if self.running.entries(dir).contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: already exists", path.display()),
            ));
        }
        if let Some(fault) = self.injected(FaultOp::Create, &[path], None) {
            return Err(fault.error());
        }
        let ino = self.new_ino();
        self.files.insert(ino, FileState::new(path.to_owned()));
        let name = name.to_owned();
        self.record(MetaOp::Create { dir, name, ino }, path);
        Ok(self.handle(ino))
    }

    pub(crate) fn open(&mut self, path: &Path) -> io::Result<Opened> {
        match self.running.resolve(path)? {
            Entry::File(ino) => Ok(self.handle(ino)),
            Entry::Dir(_) => Err(is_a_directory(path)),
        }
    }

    /// A handle to `ino`, taken under the same lock as the lookup so the
    /// file cannot be collected in between.
    fn handle(&self, ino: Ino) -> Opened {
        let id = HandleId {
            ino,
            epoch: self.epoch,
        };
        let token = self.files.get(&ino).map(|f| Arc::clone(&f.handles));
        Opened { id, token }
    }

    /// Applies `op` to the running tree and logs it for the durable one.
    fn record(&mut self, op: MetaOp, path: &Path) {
        self.running.apply(&op);
        self.log.push(op, path.to_owned());
    }

    pub(crate) fn remove(&mut self, path: &Path) -> io::Result<()> {
        let (parent, name) = split(path).ok_or_else(|| is_a_directory(path))?;
        let dir = self.running.resolve_dir(parent)?;
        let ino = match self.running.entries(dir).get(name) {
            Some(Entry::File(ino)) => *ino,
            Some(Entry::Dir(_)) => return Err(is_a_directory(path)),
            None => return Err(not_found(path)),
        };
        if let Some(fault) = self.injected(FaultOp::Remove, &[path], None) {
            return Err(fault.error());
        }
        let name = name.to_owned();
        self.record(MetaOp::Remove { dir, name, ino }, path);
        self.orphans.insert(ino);
        self.collect_garbage();
        Ok(())
    }

    pub(crate) fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let root = || invalid(from, "the root cannot be renamed or replaced");
        let (from_parent, from_name) = split(from).ok_or_else(root)?;
        let (to_parent, to_name) = split(to).ok_or_else(root)?;
        let from_dir = self.running.resolve_dir(from_parent)?;
        let moved = *self
            .running
            .entries(from_dir)
            .get(from_name)
            .ok_or_else(|| not_found(from))?;
        let to_dir = self.running.resolve_dir(to_parent)?;
        let plan = RenamePlan {
            from_dir,
            from_name,
            to_dir,
            to_name,
            existing: self.running.entries(to_dir).get(to_name).copied(),
        };
        self.check_rename(&plan, moved, to)?;
        if let Some(fault) = self.injected(FaultOp::Rename, &[from, to], None) {
            return Err(fault.error());
        }
        if from_dir == to_dir && from_name == to_name {
            return Ok(());
        }
        match moved {
            Entry::File(ino) => self.rename_file(&plan, ino, from, to),
            Entry::Dir(ino) => self.rename_dir(&plan, ino),
        }
        self.collect_garbage();
        Ok(())
    }

    /// The rules of rename(2) the simulator enforces: a file never replaces
    /// a directory; a directory replaces only an empty directory and never
    /// moves into itself.
    fn check_rename(&self, plan: &RenamePlan, moved: Entry, to: &Path) -> io::Result<()> {
        match (moved, plan.existing) {
            (Entry::File(_), Some(Entry::Dir(_))) => Err(is_a_directory(to)),
            (Entry::Dir(_), Some(Entry::File(_))) => Err(not_a_directory(to)),
            (Entry::Dir(moved), Some(Entry::Dir(existing)))
                if moved != existing && !self.running.entries(existing).is_empty() =>
            {
                Err(io::Error::new(
                    io::ErrorKind::DirectoryNotEmpty,
                    format!("{}: directory not empty", to.display()),
                ))
            }
            (Entry::Dir(moved), _) if self.running.contains_dir(moved, plan.to_dir) => {
                Err(invalid(to, "a directory cannot move into itself"))
            }
            _ => Ok(()),
        }
    }

    /// Within one directory a rename is one atomic operation; across
    /// directories it is two halves, each durable with its own directory.
    fn rename_file(&mut self, plan: &RenamePlan, ino: Ino, from: &Path, to: &Path) {
        let replaced = match plan.existing {
            Some(Entry::File(old)) if old != ino => Some(old),
            _ => None,
        };
        let from_name = plan.from_name.to_owned();
        let to_name = plan.to_name.to_owned();
        if plan.from_dir == plan.to_dir {
            let op = MetaOp::Rename {
                dir: plan.to_dir,
                from: from_name,
                to: to_name,
                ino,
                replaced,
            };
            self.record(op, to);
        } else {
            let unlink = MetaOp::Unlink {
                dir: plan.from_dir,
                name: from_name,
                ino,
            };
            self.record(unlink, from);
            let link = MetaOp::Link {
                dir: plan.to_dir,
                name: to_name,
                ino,
                replaced,
            };
            self.record(link, to);
        }
        if let Some(file) = self.files.get_mut(&ino) {
            file.path = to.to_owned();
        }
        self.orphans.extend(replaced);
    }

    /// Directory renames are not simulated as losable: they commit every
    /// earlier metadata operation and are durable at once. Replaying a lost
    /// directory move around surviving ones could tear the tree apart.
    fn rename_dir(&mut self, plan: &RenamePlan, ino: Ino) {
        self.log.make_all_durable(&mut self.durable);
        let from = (plan.from_dir, plan.from_name);
        let to = (plan.to_dir, plan.to_name);
        self.durable.move_dir(from, to, ino);
        self.running.move_dir(from, to, ino);
        for (path, file_ino) in self.running.files() {
            if let Some(file) = self.files.get_mut(&file_ino) {
                file.path = path;
            }
        }
    }

    /// Creates missing directories; each is synced into its parent, so it is
    /// durable on return, as the seam promises.
    pub(crate) fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let mut dir = crate::namespace::ROOT;
        let mut so_far = std::path::PathBuf::new();
        for segment in crate::namespace::segments(path) {
            so_far.push(segment);
            dir = match self.running.entries(dir).get(segment) {
                Some(Entry::Dir(child)) => *child,
                Some(Entry::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{}: a file is in the way", so_far.display()),
                    ))
                }
                None => self.make_dir(dir, segment, &so_far),
            };
        }
        Ok(())
    }

    fn make_dir(&mut self, parent: Ino, name: &str, path: &Path) -> Ino {
        let ino = self.new_ino();
        let name = name.to_owned();
        self.record(
            MetaOp::MkDir {
                dir: parent,
                name,
                ino,
            },
            path,
        );
        self.mark_dir_durable(parent);
        ino
    }

    pub(crate) fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        let dir = self.running.resolve_dir(path)?;
        if let Some(fault) = self.injected(FaultOp::SyncDir, &[path], None) {
            return Err(fault.error());
        }
        self.mark_dir_durable(dir);
        self.collect_garbage();
        Ok(())
    }

    fn mark_dir_durable(&mut self, dir: Ino) {
        self.log.make_durable(dir, &mut self.durable);
    }

    pub(crate) fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let dir = self.running.resolve_dir(path)?;
        Ok(self.running.entries(dir).keys().cloned().collect())
    }

    pub(crate) fn exists(&self, path: &Path) -> io::Result<bool> {
        match self.running.resolve(path) {
            Ok(_) => Ok(true),
            // A file used as a directory is an error, as on the real disk.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn invalid(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {why}", path.display()),
    )
}
