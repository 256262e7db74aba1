//! The seeded choices of the fault schedule.

use std::path::PathBuf;

use finkfs_raft::types::NodeId;
use finkfs_simdisk::{CrashPolicy, FaultOp, IoFault, SimDisk, SECTOR_BYTES};
use rand::rngs::SmallRng;
use rand::Rng;

use super::report::{CutScope, DiskFaultKind};
use crate::node_disk::Structure;

/// What a power cut does to unsynced writes.
pub(crate) fn crash_policy(rng: &mut SmallRng) -> CrashPolicy {
    match rng.gen_range(0..10) {
        0 => CrashPolicy::LoseUnsynced,
        1 => CrashPolicy::KeepUnsynced,
        _ => CrashPolicy::Random,
    }
}

/// Which nodes a cut takes: a scope and how many of `n` nodes.
pub(crate) fn cut_scope(rng: &mut SmallRng, n: usize) -> (CutScope, usize) {
    let minority = (n - 1) / 2;
    let majority = n / 2 + 1;
    match rng.gen_range(0..100) {
        0..35 => (CutScope::One, 1),
        35..50 if minority > 1 => (CutScope::Minority, minority),
        35..50 => (CutScope::One, 1),
        50..65 if majority < n => (CutScope::Majority, majority),
        50..65 => (CutScope::All, n),
        _ => (CutScope::All, n),
    }
}

/// Fisher–Yates with the schedule's stream.
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut SmallRng) {
    for i in (1..items.len()).rev() {
        let j = rng.gen_range(0..=i);
        items.swap(i, j);
    }
}

/// Damages one durable file of `disk` (powered off): picks a structure,
/// a file of it, and a bit flip or a zeroed sector. What it did, or
/// `None` when the disk holds no file to damage.
pub(crate) fn damage(disk: &SimDisk, rng: &mut SmallRng) -> Option<(DiskFaultKind, PathBuf, u64)> {
    let mut files: Vec<(Structure, PathBuf, u64)> = disk
        .file_paths()
        .into_iter()
        .filter_map(|path| {
            let len = disk.durable_bytes(&path).ok()?.len() as u64;
            let structure = Structure::of(&path);
            (len > 0 && structure != Structure::Other).then_some((structure, path, len))
        })
        .collect();
    if files.is_empty() {
        return None;
    }
    files.sort();
    // Structures first, so a structure with many files is not favoured.
    let mut structures: Vec<Structure> = files.iter().map(|f| f.0).collect();
    structures.dedup();
    let structure = structures[rng.gen_range(0..structures.len())];
    let of: Vec<&(Structure, PathBuf, u64)> = files.iter().filter(|f| f.0 == structure).collect();
    let (_, path, len) = of[rng.gen_range(0..of.len())].clone();
    if rng.gen_bool(0.5) {
        let bit = rng.gen_range(0..len * 8);
        disk.flip_bit(&path, bit).ok()?;
        Some((DiskFaultKind::BitFlip, path, bit / 8))
    } else {
        let sectors = len.div_ceil(SECTOR_BYTES);
        let sector = rng.gen_range(0..sectors);
        disk.zero_sector(&path, sector).ok()?;
        Some((DiskFaultKind::ZeroedSector, path, sector * SECTOR_BYTES))
    }
}

/// Arms one fault on the next operation of a running node's disk under a
/// structure's directory: an I/O error, a full disk, a misdirected or a
/// lost write. What it armed.
/// The nodes whose disks take damage in a run: one; in half the worlds of
/// five nodes, two (a minority larger than one node).
pub(crate) fn victims(rng: &mut SmallRng, nodes: u64) -> Vec<NodeId> {
    let first = rng.gen_range(1..=nodes);
    if nodes < 5 || !rng.gen_bool(0.5) {
        return vec![first];
    }
    let mut second = rng.gen_range(1..nodes);
    if second >= first {
        second += 1;
    }
    vec![first, second]
}

pub(crate) fn running_fault(disk: &SimDisk, rng: &mut SmallRng) -> (DiskFaultKind, &'static str) {
    const PREFIXES: [&str; 5] = [
        "groups/0/journal",
        "groups/0/meta",
        "groups/0/blocks",
        "groups/0/index.redb",
        "groups/0/snapshots",
    ];
    let prefix = PREFIXES[rng.gen_range(0..PREFIXES.len())];
    let kind = match rng.gen_range(0..4) {
        0 => {
            let op = [FaultOp::Read, FaultOp::Write, FaultOp::Sync][rng.gen_range(0..3)];
            disk.fail_next_on(prefix, op, IoFault::Eio, 1);
            DiskFaultKind::Eio
        }
        1 => {
            let op = [FaultOp::Write, FaultOp::Create][rng.gen_range(0..2)];
            disk.fail_next_on(prefix, op, IoFault::Enospc, 1);
            DiskFaultKind::Enospc
        }
        2 => {
            disk.misdirect_next_write(prefix);
            DiskFaultKind::MisdirectedWrite
        }
        _ => {
            disk.lose_next_write(prefix);
            DiskFaultKind::LostWrite
        }
    };
    (kind, prefix)
}
