//! Damage on every replica, and the halt check.
//!
//! In some runs, once, every node's copy of one block of a settled object
//! is damaged at rest while every node runs. No intact copy is left, so
//! the cluster must halt that object: reads refuse it with `DATA_LOSS`,
//! never serve its bytes and never say it is not there, while every other
//! object keeps being served. The model already rejects a "not found" (the
//! acknowledged value is the object) and garbage; this module picks the
//! object, damages it, and tells the final read-back what to expect.

use std::path::PathBuf;

use finkfs_node::blocks::{pack_file_name, RECORD_HEADER_BYTES};
use finkfs_node::BlockLocation;
use rand::rngs::SmallRng;
use rand::Rng;

use super::node::SimNode;
use crate::model::Value;

/// The object whose every copy was damaged.
#[derive(Debug, Clone)]
pub(crate) struct Halted {
    pub path: String,
    /// Reads of it refused with `DATA_LOSS`.
    pub data_loss_seen: u64,
}

/// Why no object could be damaged on every replica this step.
#[derive(Debug)]
pub(crate) enum NotNow {
    /// A node is off, or not every node holds the object yet.
    NotEverywhere,
    /// No settled object to pick.
    NothingSettled,
}

/// Damages one block of one of the `settled` objects on every node's disk
/// (each node's own copy, where its index says it lies): a flipped bit or
/// a zeroed sector in the block's data. Every node must be running and
/// hold the same object. Returns the path and a description of each copy
/// damaged.
pub(crate) fn damage_every_replica(
    nodes: &[SimNode],
    settled: &[(String, Value)],
    rng: &mut SmallRng,
) -> Result<(String, Vec<String>), NotNow> {
    let path = pick_settled_object(settled, rng)?.clone();
    let locations = copies(nodes, &path, rng).ok_or(NotNow::NotEverywhere)?;
    let zero = rng.gen_bool(0.5);
    let mut damaged = Vec::new();
    for (node, location) in nodes.iter().zip(&locations) {
        let file = PathBuf::from("groups/0/blocks").join(pack_file_name(location.pack));
        let data_at = location.offset + RECORD_HEADER_BYTES as u64;
        let at = data_at + rng.gen_range(0..u64::from(location.len.max(1)));
        let done = if zero {
            node.disk
                .zero_sector(&file, at / finkfs_simdisk::SECTOR_BYTES)
                .map(|()| {
                    format!(
                        "node {}: zeroed the sector of {} at {at}",
                        node.id,
                        file.display()
                    )
                })
        } else {
            node.disk
                .flip_bit(&file, at * 8 + rng.gen_range(0..8))
                .map(|()| {
                    format!(
                        "node {}: flipped a bit of {} at {at}",
                        node.id,
                        file.display()
                    )
                })
        };
        // The index named this file a moment ago: failing to damage it is
        // a fault of the harness, not of the node.
        damaged.push(done.expect("the block's pack file exists"));
    }
    Ok((path, damaged))
}

/// One of the `settled` paths that holds an object, drawn.
pub(crate) fn pick_settled_object<'a>(
    settled: &'a [(String, Value)],
    rng: &mut SmallRng,
) -> Result<&'a String, NotNow> {
    let candidates: Vec<&String> = settled
        .iter()
        .filter(|(_, value)| matches!(value, Value::Written(_)))
        .map(|(path, _)| path)
        .collect();
    if candidates.is_empty() {
        return Err(NotNow::NothingSettled);
    }
    Ok(candidates[rng.gen_range(0..candidates.len())])
}

/// Where each node keeps the same block of `path` (one block, drawn), if
/// every node runs and holds the same version of the object.
fn copies(nodes: &[SimNode], path: &str, rng: &mut SmallRng) -> Option<Vec<BlockLocation>> {
    let mut manifests = Vec::new();
    for node in nodes {
        let live = node.live.as_ref()?;
        manifests.push(live.reader.stat(path).ok()??);
    }
    let first = manifests[0].clone();
    if first.blocks.is_empty() || manifests.iter().any(|m| *m != first) {
        return None;
    }
    let block = &first.blocks[rng.gen_range(0..first.blocks.len())];
    nodes
        .iter()
        .map(|node| {
            let live = node.live.as_ref()?;
            let entry = live.reader.index().block_location(&block.hash).ok()??;
            Some(entry.location)
        })
        .collect()
}
