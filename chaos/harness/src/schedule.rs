//! The seeded schedule of a run: which nodes each cut hits, when it comes,
//! whether a second cut hits them while they recover, whether one node's
//! files are damaged while it is down.
//!
//! Every choice is drawn from one generator seeded by the run's seed, so a
//! seed replays the same schedule (the moments are counted in acknowledged
//! puts and milliseconds, so the exact state cut still varies with timing).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Longest extra wait after the acks before a cut: a random moment within
/// a write, a group commit or an apply sync.
const CUT_DELAY_MS_MAX: u64 = 300;
/// Window after a restart in which a second cut hits a recovering node.
const RECOVERY_CUT_MS: std::ops::RangeInclusive<u64> = 5..=400;
/// Cycles per block of the mixed schedule; each block has one cut of all.
const MIXED_BLOCK: u32 = 3;

/// Which nodes lose power at each cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One cut in every three of all nodes, the others drawn among all,
    /// a minority and one node.
    Mixed,
    /// Every node at once: only what a majority fsynced survives.
    All,
    /// A random minority (at least one node); the majority serves on.
    Minority,
    /// One node, the next in turn; the others serve on.
    One,
}

/// What one cycle does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The nodes killed and cut, ascending.
    pub victims: Vec<u64>,
    /// Puts acknowledged since the previous cut before this one comes.
    pub acks: u64,
    /// Extra wait after those acks.
    pub delay: Duration,
    /// A second cut this long after the victims were started again, while
    /// they recover, before they are started for good.
    pub recovery_cut: Option<Duration>,
    /// Whether the damaged node's files get a bit flipped, if it is a victim.
    pub damage: bool,
}

impl Step {
    /// Whether every node of `nodes` loses power.
    pub fn cuts_all(&self, nodes: usize) -> bool {
        self.victims.len() == nodes
    }
}

/// How often the optional faults come, in percent of the cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Odds {
    pub recovery_cut_percent: u32,
    pub damage_percent: u32,
}

/// The generator of the steps.
#[derive(Debug)]
pub struct Schedule {
    rng: StdRng,
    scope: Scope,
    acks_per_cycle: u64,
    odds: Odds,
    /// The cycle of the current mixed block that cuts every node.
    all_in_block: u32,
}

impl Schedule {
    pub fn new(seed: u64, scope: Scope, acks_per_cycle: u64, odds: Odds) -> Schedule {
        Schedule {
            rng: StdRng::seed_from_u64(seed ^ 0x5ced_u64.rotate_left(40)),
            scope,
            acks_per_cycle,
            odds,
            all_in_block: 0,
        }
    }

    /// The step of cycle `cycle` (from 0) over the nodes `alive` (the ones
    /// that still start), ascending.
    pub fn step(&mut self, cycle: u32, alive: &[u64]) -> Step {
        let victims = self.victims(cycle, alive);
        let acks = self.rng.gen_range(1..=2 * self.acks_per_cycle);
        let delay = Duration::from_millis(self.rng.gen_range(0..=CUT_DELAY_MS_MAX));
        let recovery_cut = self
            .chance(self.odds.recovery_cut_percent)
            .then(|| Duration::from_millis(self.rng.gen_range(RECOVERY_CUT_MS)));
        let damage = self.chance(self.odds.damage_percent);
        Step {
            victims,
            acks,
            delay,
            recovery_cut,
            damage,
        }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.gen_range(0..100) < percent
    }

    fn victims(&mut self, cycle: u32, alive: &[u64]) -> Vec<u64> {
        let scope = match self.scope {
            Scope::Mixed => {
                if cycle.is_multiple_of(MIXED_BLOCK) {
                    self.all_in_block = self.rng.gen_range(0..MIXED_BLOCK);
                }
                if cycle % MIXED_BLOCK == self.all_in_block {
                    Scope::All
                } else {
                    *[Scope::All, Scope::Minority, Scope::One]
                        .choose(&mut self.rng)
                        .expect("three scopes")
                }
            }
            fixed => fixed,
        };
        let mut victims = match scope {
            Scope::All | Scope::Mixed => alive.to_vec(),
            Scope::One => vec![alive[cycle as usize % alive.len()]],
            Scope::Minority => {
                let most = (alive.len().saturating_sub(1) / 2).max(1);
                let count = self.rng.gen_range(1..=most);
                alive
                    .choose_multiple(&mut self.rng, count)
                    .copied()
                    .collect()
            }
        };
        victims.sort_unstable();
        victims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODDS: Odds = Odds {
        recovery_cut_percent: 30,
        damage_percent: 30,
    };

    #[test]
    fn a_seed_replays_the_same_schedule() {
        let mut a = Schedule::new(9, Scope::Mixed, 10, ODDS);
        let mut b = Schedule::new(9, Scope::Mixed, 10, ODDS);
        for cycle in 0..50 {
            assert_eq!(a.step(cycle, &[1, 2, 3]), b.step(cycle, &[1, 2, 3]));
        }
    }

    #[test]
    fn mixed_schedule_cuts_every_node_in_every_block_and_a_minority_too() {
        let mut schedule = Schedule::new(3, Scope::Mixed, 10, ODDS);
        let steps: Vec<Step> = (0..30).map(|c| schedule.step(c, &[1, 2, 3])).collect();
        for block in steps.chunks(MIXED_BLOCK as usize) {
            assert!(block.iter().any(|s| s.cuts_all(3)), "{block:?}");
        }
        assert!(steps.iter().any(|s| s.victims.len() == 1), "{steps:?}");
        assert!(steps.iter().any(|s| s.recovery_cut.is_some()));
        assert!(steps.iter().all(|s| (1..=20).contains(&s.acks)));
    }

    #[test]
    fn minority_never_cuts_a_majority() {
        let mut schedule = Schedule::new(4, Scope::Minority, 5, ODDS);
        let nodes = [1, 2, 3, 4, 5];
        let sizes: Vec<usize> = (0..40)
            .map(|c| schedule.step(c, &nodes).victims.len())
            .collect();
        assert!(sizes.iter().all(|n| (1..=2).contains(n)), "{sizes:?}");
        assert!(sizes.contains(&2), "{sizes:?}");
    }
}
