//! Damage on every replica of a structure that other structures back up:
//! a journal record, the snapshots, one of the two vote copies, or the
//! index.
//!
//! Unlike a block damaged everywhere (the halt check, `halt`), nothing is
//! lost here: a put's journal record is applied in every node's index and
//! its bytes are in the packs, and a snapshot is a copy of the index. So the
//! checker expects every object to stay served, byte-identical, and the
//! cluster to serve again once the nodes are repaired: each node finds the
//! damage when it next starts (a journal that does not verify, a snapshot
//! that does not), and refuses, or starts without a vote, until the
//! operator's `fsck --repair` has cut or quarantined the damaged copy.

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::Rng;

use super::halt::{pick_settled_object, NotNow};
use super::node::SimNode;
use crate::model::Value;

const JOURNAL_DIR: &str = "groups/0/journal";
const SNAPSHOTS_DIR: &str = "groups/0/snapshots";
const META_DIR: &str = "groups/0/meta";
const INDEX_FILE: &str = "groups/0/index.redb";
/// How a manifest begins, in the index's pages.
const MANIFEST_MAGIC: &[u8] = b"FMAN";
/// Bytes of an object that locate its journal record.
const NEEDLE_BYTES: usize = 64;

/// Which structure a run damages on every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The journal record of one settled object.
    JournalRecord,
    /// Every snapshot file.
    Snapshots,
}

impl Target {
    pub fn draw(rng: &mut SmallRng) -> Target {
        if rng.gen_bool(0.5) {
            Target::JournalRecord
        } else {
            Target::Snapshots
        }
    }
}

/// Damages `target` on every node's disk; a description of each copy
/// damaged. Every node must run and hold a copy.
pub(crate) fn damage(
    target: Target,
    nodes: &[SimNode],
    settled: &[(String, Value)],
    rng: &mut SmallRng,
) -> Result<Vec<String>, NotNow> {
    match target {
        Target::JournalRecord => damage_journal_record(nodes, settled, rng),
        Target::Snapshots => damage_snapshots(nodes, rng),
    }
}

/// Flips one bit inside the journal record of one settled object on every
/// node: its bytes, as every node's store serves them, found once in every
/// node's journal (not yet purged anywhere).
fn damage_journal_record(
    nodes: &[SimNode],
    settled: &[(String, Value)],
    rng: &mut SmallRng,
) -> Result<Vec<String>, NotNow> {
    let path = pick_settled_object(settled, rng)?;
    let live = nodes[0].live.as_ref().ok_or(NotNow::NotEverywhere)?;
    let bytes = live.reader.get(path).map_err(|_| NotNow::NotEverywhere)?;
    if bytes.len() < 2 * NEEDLE_BYTES {
        return Err(NotNow::NotEverywhere);
    }
    let middle = bytes.len() / 2;
    let needle = &bytes[middle..middle + NEEDLE_BYTES];
    let mut hits = Vec::new();
    for node in nodes {
        if node.live.is_none() {
            return Err(NotNow::NotEverywhere);
        }
        hits.push(find_once(node, JOURNAL_DIR, "seg", needle).ok_or(NotNow::NotEverywhere)?);
    }
    let mut damaged = Vec::new();
    for (node, (file, at)) in nodes.iter().zip(hits) {
        let bit = (at + rng.gen_range(0..NEEDLE_BYTES as u64)) * 8 + rng.gen_range(0..8);
        node.disk
            .flip_bit(&file, bit)
            .expect("the segment holding the record exists");
        damaged.push(format!(
            "node {}: flipped a bit of {path}'s record in {} at {}",
            node.id,
            file.display(),
            bit / 8
        ));
    }
    Ok(damaged)
}

/// Flips one bit in the second half of every final snapshot file of every
/// node (the header stays readable, the records or the check do not).
/// Every node must run, and one at least hold a snapshot: every snapshot
/// file of the cluster is damaged (nodes build them at different moments,
/// and one that holds none keeps its state in its index alone).
fn damage_snapshots(nodes: &[SimNode], rng: &mut SmallRng) -> Result<Vec<String>, NotNow> {
    let mut files = Vec::new();
    for node in nodes {
        if node.live.is_none() {
            return Err(NotNow::NotEverywhere);
        }
        files.push(files_in(node, SNAPSHOTS_DIR, "snap"));
    }
    if files.iter().all(|f| f.is_empty()) {
        return Err(NotNow::NotEverywhere);
    }
    let mut damaged = Vec::new();
    for (node, snapshots) in nodes.iter().zip(files) {
        for file in snapshots {
            let len = node
                .disk
                .current_bytes(&file)
                .expect("a listed snapshot exists")
                .len() as u64;
            let at = len / 2 + rng.gen_range(0..(len / 2).max(1));
            node.disk
                .flip_bit(&file, at * 8 + rng.gen_range(0..8))
                .expect("a listed snapshot exists");
            damaged.push(format!(
                "node {}: flipped a bit of {} at {at}",
                node.id,
                file.display()
            ));
        }
    }
    Ok(damaged)
}

/// Flips one bit of one vote copy (`meta.a` or `meta.b`, the same on
/// every node) on every node: each still holds the other copy, from which
/// its next start rewrites the damaged one (and its next save overwrites
/// it anyway).
pub(crate) fn damage_vote_copy(
    nodes: &[SimNode],
    rng: &mut SmallRng,
) -> Result<Vec<String>, NotNow> {
    if nodes.iter().any(|node| node.live.is_none()) {
        return Err(NotNow::NotEverywhere);
    }
    let name = if rng.gen_bool(0.5) {
        "meta.a"
    } else {
        "meta.b"
    };
    let copy = Path::new(META_DIR).join(name);
    let mut damaged = Vec::new();
    for node in nodes {
        let Ok(bytes) = node.disk.current_bytes(&copy) else {
            return Err(NotNow::NotEverywhere);
        };
        if bytes.is_empty() {
            return Err(NotNow::NotEverywhere);
        }
        let at = rng.gen_range(0..bytes.len() as u64);
        node.disk
            .flip_bit(&copy, at * 8 + rng.gen_range(0..8))
            .expect("the vote copy exists");
        damaged.push(format!(
            "node {}: flipped a bit of {} at {at}",
            node.id,
            copy.display()
        ));
    }
    Ok(damaged)
}

/// Flips one bit in every manifest the index file holds (the live leaves of
/// its objects table), on every node: each rebuilds its index, at its next
/// start, from its snapshot, its journal and its packs (`fsck --repair`).
pub(crate) fn damage_index(nodes: &[SimNode], rng: &mut SmallRng) -> Result<Vec<String>, NotNow> {
    if nodes.iter().any(|node| node.live.is_none()) {
        return Err(NotNow::NotEverywhere);
    }
    let index = Path::new(INDEX_FILE);
    let mut found = Vec::new();
    for node in nodes {
        let Ok(bytes) = node.disk.current_bytes(index) else {
            return Err(NotNow::NotEverywhere);
        };
        let manifests: Vec<u64> = bytes
            .windows(MANIFEST_MAGIC.len())
            .enumerate()
            .filter(|(_, window)| *window == MANIFEST_MAGIC)
            .map(|(at, _)| at as u64)
            .collect();
        if manifests.is_empty() {
            return Err(NotNow::NothingSettled);
        }
        found.push(manifests);
    }
    let mut damaged = Vec::new();
    for (node, manifests) in nodes.iter().zip(found) {
        for &at in &manifests {
            let byte = at + MANIFEST_MAGIC.len() as u64 + rng.gen_range(0..16);
            node.disk
                .flip_bit(index, byte * 8 + rng.gen_range(0..8))
                .expect("the index file exists");
        }
        damaged.push(format!(
            "node {}: flipped a bit in each of {} manifests of {}",
            node.id,
            manifests.len(),
            index.display()
        ));
    }
    Ok(damaged)
}

/// The files directly in `dir` (not below it) with `extension`.
fn files_in(node: &SimNode, dir: &str, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = node
        .disk
        .file_paths()
        .into_iter()
        .filter(|file| file.parent() == Some(Path::new(dir)))
        .filter(|file| file.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// The one place `needle` lies in the files of `dir`; None when it lies in
/// none or in several.
fn find_once(node: &SimNode, dir: &str, extension: &str, needle: &[u8]) -> Option<(PathBuf, u64)> {
    let mut hits = Vec::new();
    for file in files_in(node, dir, extension) {
        let bytes = node.disk.current_bytes(&file).ok()?;
        for (at, window) in bytes.windows(needle.len()).enumerate() {
            if window == needle {
                hits.push((file.clone(), at as u64));
            }
        }
    }
    match hits.len() {
        1 => hits.pop(),
        _ => None,
    }
}
