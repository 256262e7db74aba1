//! Finding the damaged blocks to repair: from an fsck report (offline), or
//! by verifying every block the index knows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::blocks::BlockLocation;
use crate::fsck::{FsckReport, ProblemKind, Structure};
use crate::index::LIST_LIMIT_MAX;
use crate::reader::ObjectReader;
use crate::store::StoreError;

use super::DamagedBlock;

/// Every block the index knows whose copy does not verify (or cannot be
/// read), in hash order. Reads the whole block store.
pub fn find_damaged_blocks(reader: &ObjectReader) -> Result<Vec<DamagedBlock>, StoreError> {
    let mut damaged = Vec::new();
    each_location(reader, |location| {
        if let Err(error) = reader.blocks().read(&location) {
            if let Some(block) = DamagedBlock::from_read_error(location, &error) {
                damaged.push(block);
            }
        }
    })?;
    Ok(damaged)
}

/// The damaged blocks an fsck report names (checksum mismatches, missing
/// and unreadable block records of the `blocks` structure), each looked up
/// in the index and verified again: a problem whose block verifies now, or
/// that names no block the index knows, is left out. fsck names files
/// relative to the data directory, the store relative to its disk root: a
/// file matches when one path ends with the other.
pub fn damaged_from_fsck(
    reader: &ObjectReader,
    report: &FsckReport,
) -> Result<Vec<DamagedBlock>, StoreError> {
    let mut by_hash: HashMap<String, BlockLocation> = HashMap::new();
    let mut by_place: HashMap<(PathBuf, u64), BlockLocation> = HashMap::new();
    each_location(reader, |location| {
        by_hash.insert(crate::hex::hex(&location.hash), location);
        let file = reader.blocks().pack_path(location.pack);
        by_place.insert((file, location.offset), location);
    })?;
    let mut damaged: Vec<DamagedBlock> = Vec::new();
    for problem in report.damage() {
        if problem.structure != Structure::Blocks {
            continue;
        }
        let location = match &problem.kind {
            ProblemKind::MissingBlock { hash } => by_hash.get(hash).copied(),
            ProblemKind::ChecksumMismatch | ProblemKind::Unreadable => {
                let file = Path::new(&problem.file);
                problem.offset.and_then(|offset| {
                    by_place
                        .iter()
                        .find(|((pack, at), _)| {
                            *at == offset && (file.ends_with(pack) || pack.ends_with(file))
                        })
                        .map(|(_, location)| *location)
                })
            }
            _ => None,
        };
        let Some(location) = location else {
            continue;
        };
        if damaged.iter().any(|d| d.location == location) {
            continue;
        }
        if let Err(error) = reader.blocks().read(&location) {
            if let Some(block) = DamagedBlock::from_read_error(location, &error) {
                damaged.push(block);
            }
        }
    }
    Ok(damaged)
}

/// Calls `f` with the location of every block the index knows, in pages.
fn each_location(
    reader: &ObjectReader,
    mut f: impl FnMut(BlockLocation),
) -> Result<(), StoreError> {
    let view = reader.index().view()?;
    let mut after: Option<[u8; 32]> = None;
    loop {
        let page = view.blocks_after(after.as_ref(), LIST_LIMIT_MAX)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.location.hash);
        for entry in page {
            f(entry.location);
        }
    }
}
