//! The index: a copy verified page by page by redb, then every value
//! verified by its own check, and the index's own consistency (every block a
//! manifest names is known, reference counts match the manifests).
//!
//! Why a copy: redb cannot open a file without the right to write it (it
//! recovers an unclean file and commits on open), and opening also restores
//! the header shadow in place. fsck must leave the data directory exactly as
//! it found it, so it copies `index.redb` and `index.redb.header` through
//! the seam onto a scratch disk and opens the copy, which then goes through
//! exactly what the node's own open would do.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use finkfs_seam::{DiskRef, FileRef};

use crate::hex::hex;
use crate::index::{BlockTable, Index, IndexError, IndexOptions, IndexView, LIST_LIMIT_MAX};
use crate::manifest::Manifest;

use super::report::{Problem, ProblemKind, Structure};
use super::{
    exists, first_unreadable, is_medium_error, list, Findings, FsckError, FsckOptions, Progress,
};
use super::{BLOCKS_DIR, INDEX_FILE};

/// Bytes copied at a time.
const COPY_STEP_BYTES: u64 = 1 << 20;
/// Suffix of the header shadow file next to the index.
const SHADOW_SUFFIX: &str = ".header";

/// A record the index says is live, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiveBlock {
    pub hash: [u8; 32],
    pub len: u32,
    /// In the `staged` table (a snapshot install in progress), not `blocks`.
    pub staged: bool,
}

/// What the index says the packs must hold.
#[derive(Debug, Default)]
pub(crate) struct IndexContent {
    /// Live records by (pack, offset).
    pub live: BTreeMap<(u64, u64), LiveBlock>,
}

/// Checks the index of `group`; its content when it could be read.
pub(crate) fn check(
    disk: &DiskRef,
    scratch: &DiskRef,
    scratch_dir: &Path,
    group: &Path,
    options: &FsckOptions,
    findings: &mut Findings,
    progress: &mut dyn Progress,
) -> Result<Option<IndexContent>, FsckError> {
    let path = group.join(INDEX_FILE);
    if !exists(disk, &path)? {
        let packs = list(disk, &group.join(BLOCKS_DIR))?.len();
        if packs > 0 {
            let detail = format!("the index is missing but {packs} files are in blocks/: every object is unreachable");
            findings.push(index_problem(ProblemKind::MissingFile, &path, detail));
        }
        return Ok(None);
    }
    let copy = scratch_dir.join(INDEX_FILE);
    scratch
        .create_dir_all(scratch_dir)
        .map_err(FsckError::Scratch)?;
    let Some(bytes) = copy_file(disk, scratch, &path, &copy, findings)? else {
        return Ok(None);
    };
    let shadow = shadow_of(&path);
    if exists(disk, &shadow)?
        && copy_file(disk, scratch, &shadow, &shadow_of(&copy), findings)?.is_none()
    {
        return Ok(None);
    }
    findings.totals.bytes_checked += bytes;
    progress.checked(bytes, &path);
    let index_options = IndexOptions {
        cache_bytes: options.index_cache_bytes,
        verify_on_open: true,
    };
    let index = match Index::open_with(scratch.clone(), &copy, index_options) {
        Ok(index) => Arc::new(index),
        Err(error) => {
            damage_or_fatal(error, &path, findings)?;
            return Ok(None);
        }
    };
    let content = read_content(&index, &path, findings);
    drop(index);
    for leftover in [copy.clone(), shadow_of(&copy)] {
        // The scratch copy is ours; failing to remove it changes nothing.
        let _ = scratch.remove(&leftover);
    }
    match content {
        Ok(content) => Ok(Some(content)),
        Err(error) => {
            damage_or_fatal(error, &path, findings)?;
            Ok(None)
        }
    }
}

fn shadow_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(SHADOW_SUFFIX);
    PathBuf::from(name)
}

/// Copies `from` (data directory) to `to` (scratch); its length, or None
/// when the disk could not read it (reported).
fn copy_file(
    disk: &DiskRef,
    scratch: &DiskRef,
    from: &Path,
    to: &Path,
    findings: &mut Findings,
) -> Result<Option<u64>, FsckError> {
    let source = disk.open(from).map_err(|e| FsckError::io(from, e))?;
    let len = source.len().map_err(|e| FsckError::io(from, e))?;
    if scratch.exists(to).map_err(FsckError::Scratch)? {
        scratch.remove(to).map_err(FsckError::Scratch)?;
    }
    let target = scratch.create(to).map_err(FsckError::Scratch)?;
    let mut buf = Vec::new();
    let mut at = 0;
    while at < len {
        let step = (len - at).min(COPY_STEP_BYTES);
        buf.resize(usize::try_from(step).expect("a step fits in memory"), 0);
        if !read(&source, at, &mut buf, from, findings)? {
            return Ok(None);
        }
        target.write_at(at, &buf).map_err(FsckError::Scratch)?;
        at += step;
    }
    Ok(Some(len))
}

/// Reads at `at`; false after an unreadable sector (reported).
fn read(
    file: &FileRef,
    at: u64,
    buf: &mut [u8],
    path: &Path,
    findings: &mut Findings,
) -> Result<bool, FsckError> {
    match file.read_at(at, buf) {
        Ok(()) => Ok(true),
        Err(e) if is_medium_error(&e) => {
            let detail = format!("the disk cannot read this sector ({e})");
            let mut problem = index_problem(ProblemKind::Unreadable, path, detail);
            problem.offset = Some(first_unreadable(file, at, buf.len() as u64));
            findings.push(problem);
            Ok(false)
        }
        Err(e) => Err(FsckError::io(path, e)),
    }
}

/// An index error found while checking: damage is reported (naming the
/// file in the data directory, not the copy); anything else stops fsck.
fn damage_or_fatal(
    error: IndexError,
    path: &Path,
    findings: &mut Findings,
) -> Result<(), FsckError> {
    let detail = match error {
        IndexError::FileCorrupt { reason, .. } => {
            format!("redb found the file damaged: {reason}")
        }
        IndexError::Corrupt { table, key, reason } => {
            format!("value in table {table} for key {key}: {reason}")
        }
        IndexError::Database { reason, .. } => format!("redb refused the file: {reason}"),
        IndexError::Poisoned { reason, .. } => format!("redb failed on the file: {reason}"),
        IndexError::UnsupportedVersion {
            found, expected, ..
        } => {
            return Err(FsckError::UnsupportedVersion(format!(
                "{} has index format version {found}, this build reads {expected}",
                path.display()
            )))
        }
        IndexError::Io { source, .. } => return Err(FsckError::Scratch(source)),
        other => format!("{other}"),
    };
    findings.push(index_problem(ProblemKind::ChecksumMismatch, path, detail));
    Ok(())
}

fn index_problem(kind: ProblemKind, path: &Path, detail: String) -> Problem {
    Problem::new(Structure::Index, kind, path, None, detail)
}

/// How often, and with which length, manifests name one block.
#[derive(Debug, Default)]
struct Named {
    count: u64,
    len: u32,
    /// One object that names it, for the report.
    by: String,
}

fn read_content(
    index: &Arc<Index>,
    path: &Path,
    findings: &mut Findings,
) -> Result<IndexContent, IndexError> {
    let view = index.view()?;
    match view.applied() {
        Ok(applied) => findings.applied_index = applied.map(|a| a.index),
        Err(error) => report_value(error, path, findings),
    }
    if let Err(error) = view.membership() {
        report_value(error, path, findings);
    }
    let named = read_objects(&view, path, findings)?;
    let mut content = IndexContent::default();
    let mut known: HashMap<[u8; 32], (u32, u64)> = HashMap::new();
    for table in [BlockTable::Blocks, BlockTable::Staged] {
        let mut after = None;
        loop {
            let page = view.check_block_entries_after(table, after.as_ref(), LIST_LIMIT_MAX)?;
            for (hash, entry) in &page {
                match entry {
                    Ok(entry) => {
                        let live = LiveBlock {
                            hash: *hash,
                            len: entry.location.len,
                            staged: table == BlockTable::Staged,
                        };
                        add_live(
                            &mut content,
                            entry.location.pack,
                            entry.location.offset,
                            live,
                            path,
                            findings,
                        );
                        if table == BlockTable::Blocks {
                            known.insert(*hash, (entry.location.len, entry.refs));
                            findings.totals.blocks += 1;
                            findings.totals.block_bytes += u64::from(entry.location.len);
                        }
                    }
                    Err(error) => report_value(clone_corrupt(error), path, findings),
                }
            }
            match page.last() {
                Some((hash, _)) if page.len() == LIST_LIMIT_MAX => after = Some(*hash),
                _ => break,
            }
        }
    }
    compare_refs(&named, &known, path, findings);
    Ok(content)
}

fn read_objects(
    view: &IndexView,
    path: &Path,
    findings: &mut Findings,
) -> Result<HashMap<[u8; 32], Named>, IndexError> {
    let mut named: HashMap<[u8; 32], Named> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = view.check_objects_after(after.as_deref(), LIST_LIMIT_MAX)?;
        for (object, manifest) in &page {
            match manifest {
                Ok(manifest) => count_object(object, manifest, &mut named, findings),
                Err(error) => report_value(clone_corrupt(error), path, findings),
            }
        }
        match page.last() {
            Some((object, _)) if page.len() == LIST_LIMIT_MAX => after = Some(object.clone()),
            _ => break,
        }
    }
    Ok(named)
}

fn count_object(
    object: &str,
    manifest: &Manifest,
    named: &mut HashMap<[u8; 32], Named>,
    findings: &mut Findings,
) {
    findings.totals.objects += 1;
    findings.totals.object_bytes += manifest.object_len;
    for block in &manifest.blocks {
        let entry = named.entry(block.hash).or_insert_with(|| Named {
            count: 0,
            len: block.len,
            by: object.to_string(),
        });
        entry.count += 1;
    }
}

/// Every named block must be known with the same length, and every known
/// block's reference count must equal the manifests naming it.
fn compare_refs(
    named: &HashMap<[u8; 32], Named>,
    known: &HashMap<[u8; 32], (u32, u64)>,
    path: &Path,
    findings: &mut Findings,
) {
    let mut missing: Vec<_> = named
        .iter()
        .filter(|(hash, n)| known.get(*hash).is_none_or(|(len, _)| *len != n.len))
        .collect();
    missing.sort_by(|a, b| a.1.by.cmp(&b.1.by).then(a.0.cmp(b.0)));
    for (hash, n) in missing {
        let detail = match known.get(hash) {
            None => format!(
                "object {} names block {} of {} bytes, which the index does not know",
                n.by,
                hex(hash),
                n.len
            ),
            Some((len, _)) => format!(
                "object {} names block {} of {} bytes, the index knows it with {len} bytes",
                n.by,
                hex(hash),
                n.len
            ),
        };
        let kind = ProblemKind::MissingBlock { hash: hex(hash) };
        findings.push(index_problem(kind, path, detail));
    }
    let mut wrong: Vec<_> = known
        .iter()
        .filter_map(|(hash, (_, stored))| {
            let counted = named.get(hash).map_or(0, |n| n.count);
            (counted != *stored).then_some((*hash, *stored, counted))
        })
        .collect();
    wrong.sort();
    for (hash, stored, counted) in wrong {
        let detail = format!(
            "block {} has reference count {stored}, but {counted} manifest entries name it",
            hex(&hash)
        );
        let kind = ProblemKind::RefCountMismatch {
            hash: hex(&hash),
            stored,
            counted,
        };
        findings.push(index_problem(kind, path, detail));
    }
}

fn add_live(
    content: &mut IndexContent,
    pack: u64,
    offset: u64,
    live: LiveBlock,
    path: &Path,
    findings: &mut Findings,
) {
    match content.live.get(&(pack, offset)) {
        Some(other) if other.hash != live.hash => {
            let detail = format!(
                "blocks {} and {} are both said to live in pack {pack} at offset {offset}",
                hex(&other.hash),
                hex(&live.hash)
            );
            let kind = ProblemKind::MissingBlock {
                hash: hex(&live.hash),
            };
            findings.push(index_problem(kind, path, detail));
        }
        Some(_) => {}
        None => {
            content.live.insert((pack, offset), live);
        }
    }
}

/// A damaged value: reported, the check goes on.
fn report_value(error: IndexError, path: &Path, findings: &mut Findings) {
    let detail = match error {
        IndexError::Corrupt { table, key, reason } => {
            format!("value in table {table} for key {key}: {reason}")
        }
        other => other.to_string(),
    };
    findings.push(index_problem(ProblemKind::ChecksumMismatch, path, detail));
}

/// Per-value errors come back by reference; they are always `Corrupt`.
fn clone_corrupt(error: &IndexError) -> IndexError {
    match error {
        IndexError::Corrupt { table, key, reason } => IndexError::Corrupt {
            table,
            key: key.clone(),
            reason: reason.clone(),
        },
        other => IndexError::Database {
            file: PathBuf::new(),
            reason: other.to_string(),
        },
    }
}
