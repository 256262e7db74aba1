//! Damage at rest: one bit flipped in a file that finkfs verifies (a block
//! pack, a journal segment, a snapshot) of one stopped node.
//!
//! Only ever one node is damaged in a run, so a majority of intact copies
//! exists and every acknowledged object must still be served intact.

use std::fs;
use std::path::{Path, PathBuf};

use finkfs_crashfs::Handle;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// Directories whose files carry checksums the node verifies on read.
const VERIFIED_DIRS: [&str; 3] = ["blocks", "journal", "snapshots"];

/// One flipped bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub node: u64,
    /// The file, relative to the node's data directory.
    pub file: PathBuf,
    pub offset: u64,
}

/// Flips a random bit of a random verified file of the disk `handle`
/// (whose node must be down, after its power cut). `None` when the node
/// has no such file yet.
pub fn flip_one(node: u64, handle: &Handle, rng: &mut StdRng) -> Result<Option<Injected>, String> {
    let mut files = Vec::new();
    collect(handle.backing(), Path::new(""), &mut files)
        .map_err(|e| format!("listing node {node}'s files: {e}"))?;
    // A kind first, then a file of it: packs are many and journal
    // segments few, and both must be hit.
    let kinds: Vec<&str> = VERIFIED_DIRS
        .iter()
        .copied()
        .filter(|dir| files.iter().any(|(f, _)| in_dir(f, dir)))
        .collect();
    let Some(kind) = kinds.choose(rng) else {
        return Ok(None);
    };
    let of_kind: Vec<_> = files.iter().filter(|(f, _)| in_dir(f, kind)).collect();
    let Some((file, len)) = of_kind.choose(rng).map(|f| (*f).clone()) else {
        return Ok(None);
    };
    let offset = rng.gen_range(0..len);
    handle
        .flip_bit(&file, offset)
        .map_err(|e| format!("flipping a bit of node {node}'s {}: {e}", file.display()))?;
    Ok(Some(Injected { node, file, offset }))
}

/// Non-empty files under a verified directory, with their lengths, in a
/// stable order (so a seed picks the same file from the same tree).
fn collect(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = rel.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() && !entry.file_name().to_string_lossy().starts_with(".crashfs") {
            collect(root, &path, out)?;
        } else if kind.is_file() && is_verified(&path) {
            let len = entry.metadata()?.len();
            if len > 0 {
                out.push((path, len));
            }
        }
    }
    Ok(())
}

fn is_verified(path: &Path) -> bool {
    VERIFIED_DIRS.iter().any(|dir| in_dir(path, dir))
}

fn in_dir(path: &Path, dir: &str) -> bool {
    path.iter().any(|c| c == dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_packs_journal_segments_and_snapshots_are_damaged() {
        assert!(is_verified(Path::new("groups/0/blocks/000001.pack")));
        assert!(is_verified(Path::new("groups/0/journal/00000001.seg")));
        assert!(is_verified(Path::new("groups/0/snapshots/snap-1")));
        assert!(!is_verified(Path::new("groups/0/index.redb")));
        assert!(!is_verified(Path::new("groups/0/meta/vote.0")));
    }
}
