//! The 5-node CI range of the whole-cluster simulator (seeds 0..320): every
//! seed must keep every invariant, the power must be cut at least 5,000
//! times (every node at once at least 1,000 times), a minority larger
//! than one node must be cut and in some runs two nodes take damage, which
//! only 5-node worlds can do, and every fault kind must hit every
//! structure.

mod seeds_support;

use finkfs_sim::world::CutScope;
use seeds_support::*;

#[test]
fn every_seed_of_the_5_node_ci_range_keeps_every_invariant() {
    if override_range().is_some() {
        println!("FINKFS_SIM_SEEDS is set: its range runs in seeds_3 instead");
        return;
    }
    let coverage = run_and_check(5, CI_SEEDS_5);
    assert_cut_floors(&coverage, 5_000, 1_000);
    let minority = coverage.cuts.get(&CutScope::Minority).copied().unwrap_or(0);
    assert!(minority > 0, "no cut of a minority of more than one node");
    assert!(
        coverage.runs_damaging_two_nodes > 0,
        "no run damaged two nodes (a minority of five)"
    );
    assert_damage_on_every_structure(&coverage);
    assert_halts_checked(&coverage);
}
