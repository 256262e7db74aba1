//! What the two CI range tests share: running a range two worlds at a
//! time. The ranges run in two test binaries, one process each, so that a
//! process holds the disks of one range's worlds at most.

// Each of the two range tests uses part of it.
#![allow(dead_code)]

use std::ops::Range;

use finkfs_sim::world::{self, Coverage, CutScope, DiskFaultKind, WorldConfig};
use finkfs_sim::Structure;

/// The 3-node seeds CI runs: 0..500, as the issue of the simulator asks;
/// 0..660 all pass.
pub const CI_SEEDS_3: Range<u64> = 0..500;
/// The 5-node seeds CI runs; 0..320 all pass.
pub const CI_SEEDS_5: Range<u64> = 0..320;
const STEPS: u64 = 200;

/// The range `FINKFS_SIM_SEEDS=A..B` asks for instead of the CI ranges, of
/// 3-node worlds or of 5-node ones with `FINKFS_SIM_NODES=5`.
pub fn override_range() -> Option<(u64, Range<u64>)> {
    let text = std::env::var("FINKFS_SIM_SEEDS").ok()?;
    let (a, b) = text
        .split_once("..")
        .expect("FINKFS_SIM_SEEDS is a range A..B");
    let nodes = std::env::var("FINKFS_SIM_NODES").map_or(3, |n| n.parse().expect("3 or 5"));
    Some((
        nodes,
        a.parse().expect("a seed")..b.parse().expect("a seed"),
    ))
}

/// Runs the seeds of `range` that `pick` keeps, on this thread.
fn run_share(nodes: u64, range: Range<u64>, pick: impl Fn(u64) -> bool) -> (Coverage, Vec<String>) {
    let mut coverage = Coverage::default();
    let mut failures = Vec::new();
    for seed in range.filter(|s| pick(*s)) {
        let config = WorldConfig {
            seed,
            nodes,
            steps: STEPS,
            bug: None,
            running_faults: true,
            every_replica_damage: true,
        };
        let report = world::run(&config);
        coverage.add(&report.coverage);
        if !report.violations.is_empty() {
            failures.push(format!(
                "seed {seed}: {}\n  replay: {}",
                report.violations.join("\n  "),
                config.replay_line()
            ));
        }
    }
    (coverage, failures)
}

/// Runs a range two worlds at a time, one per core: each world is
/// single-threaded.
pub fn run_range(nodes: u64, seeds: Range<u64>) -> (Coverage, Vec<String>) {
    let other = {
        let seeds = seeds.clone();
        std::thread::spawn(move || run_share(nodes, seeds, |s| s % 2 == 1))
    };
    let (mut coverage, mut failures) = run_share(nodes, seeds, |s| s % 2 == 0);
    let (more, more_failures) = other.join().expect("the second share ran");
    coverage.add(&more);
    failures.extend(more_failures);
    (coverage, failures)
}

/// Runs `seeds` of `nodes`-node worlds, prints the coverage and fails on
/// any violation, naming each seed with its replay line.
pub fn run_and_check(nodes: u64, seeds: Range<u64>) -> Coverage {
    let (coverage, failures) = run_range(nodes, seeds.clone());
    println!("{nodes} nodes, seeds {seeds:?}\n{coverage}");
    assert!(
        failures.is_empty(),
        "{} seeds broke an invariant:\n{}",
        failures.len(),
        failures.join("\n")
    );
    coverage
}

/// The floors a CI range must reach, so that a change to the schedule
/// cannot silently stop testing something.
pub fn assert_cut_floors(coverage: &Coverage, cuts: u64, all_nodes: u64) {
    assert!(
        coverage.cuts_total() >= cuts,
        "{} power cuts",
        coverage.cuts_total()
    );
    let all = coverage.cuts.get(&CutScope::All).copied().unwrap_or(0);
    assert!(all >= all_nodes, "{all} cuts of every node at once");
    assert!(coverage.cuts_during_recovery > 0 && coverage.cuts_mid_operation > 0);
    assert!(
        coverage.cuts_in_snapshot_writes > 0,
        "no cut in a snapshot write"
    );
    assert!(coverage.partitions > 0 && coverage.lossy_periods > 0);
    assert!(coverage.final_reads > 0 && coverage.acknowledged > 0);
}

/// Objects damaged on every replica, and reads that found them halted;
/// journal records and snapshots damaged on every replica; nodes that
/// started without a vote over journal damage, repaired by the operator.
pub fn assert_halts_checked(coverage: &Coverage) {
    assert!(
        coverage.objects_damaged_on_every_replica > 0,
        "no object damaged on every replica"
    );
    assert!(
        coverage.halted_reads_refused > 0,
        "no read refused an object damaged on every replica"
    );
    assert!(
        coverage.journal_records_damaged_on_every_replica > 0,
        "no journal record damaged on every replica"
    );
    assert!(
        coverage.snapshots_damaged_on_every_replica > 0,
        "no snapshots damaged on every replica"
    );
    assert!(
        coverage.vote_copies_damaged_on_every_replica > 0,
        "no vote copy damaged on every replica"
    );
    assert!(
        coverage.indexes_damaged_on_every_replica > 0,
        "no index damaged on every replica"
    );
    assert!(
        coverage.boots_blocked_on_journal_damage > 0,
        "no node started without a vote over journal damage, to be repaired"
    );
}

/// Every kind of damage, at rest and while running, on every structure:
/// bit flips, zeroed sectors, EIO, ENOSPC, misdirected and lost writes.
pub fn assert_damage_on_every_structure(coverage: &Coverage) {
    for structure in [
        Structure::Journal,
        Structure::Meta,
        Structure::Packs,
        Structure::Index,
        Structure::Snapshots,
    ] {
        for kind in [
            DiskFaultKind::BitFlip,
            DiskFaultKind::ZeroedSector,
            DiskFaultKind::Eio,
            DiskFaultKind::Enospc,
            DiskFaultKind::MisdirectedWrite,
            DiskFaultKind::LostWrite,
        ] {
            let n = coverage
                .disk_faults
                .get(&(structure, kind))
                .copied()
                .unwrap_or(0);
            assert!(n > 0, "no {kind:?} on {structure:?}");
        }
    }
}
