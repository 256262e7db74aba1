//! The 3-node CI range of the whole-cluster simulator (seeds 0..500): every
//! seed must keep every invariant. With the 5-node range (`seeds_5.rs`)
//! that is over ten thousand power cuts; this range alone must cut the
//! power at least 7,500 times, every node at once at least 1,000 times,
//! and inject every kind of disk fault on every structure: bit flips and
//! zeroed sectors at rest, EIO, ENOSPC, misdirected and lost writes while
//! the node runs; and in some runs damage one object on every replica,
//! which must be halted, never served nor dropped.
//!
//! `FINKFS_SIM_SEEDS=A..B` runs another range here instead (for a longer
//! soak), of 3-node worlds, or of 5-node ones with `FINKFS_SIM_NODES=5`.

mod seeds_support;

use seeds_support::*;

#[test]
fn every_seed_of_the_3_node_ci_range_keeps_every_invariant() {
    if let Some((nodes, seeds)) = override_range() {
        run_and_check(nodes, seeds);
        return;
    }
    let coverage = run_and_check(3, CI_SEEDS_3);
    // About 16 cuts a seed, a third of them of every node at once.
    assert_cut_floors(&coverage, 7_500, 1_000);
    assert_damage_on_every_structure(&coverage);
    assert_halts_checked(&coverage);
}
