//! The summary of a run: what was done, what was checked, every violation.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::damage::Injected;

/// Everything a run counts. A run passed when `violations` is empty.
#[derive(Debug, Default)]
pub struct Summary {
    pub seed: u64,
    pub replay: String,
    pub cycles: u32,
    /// Power cuts, recovery cuts included.
    pub cuts: u64,
    /// Cuts of every node at once.
    pub cuts_all: u64,
    /// Second cuts while nodes recovered (and of those, before they served).
    pub recovery_cuts: u64,
    pub recovery_cuts_before_serving: u64,
    /// Distinct acknowledged puts, and reads of them over every check.
    pub acked: u64,
    pub reads_checked: u64,
    /// Acknowledged objects found missing, in any check.
    pub lost: u64,
    pub damaged_served: u64,
    pub refused_damaged: u64,
    pub unreadable: u64,
    /// Acknowledged objects not read back because the cluster stopped serving.
    pub unchecked: u64,
    /// From each cut to the first put sent after it being acknowledged.
    pub serve_again: Vec<Duration>,
    pub fsck_runs: u64,
    pub fsck_by_kind: BTreeMap<&'static str, u64>,
    pub fsck_damage_expected: u64,
    pub damage: Vec<Injected>,
    /// Nodes that refused to start, and whether the harness had damaged them.
    pub fail_stops: Vec<(u64, bool)>,
    pub violations: Vec<String>,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

fn median_max(times: &[Duration]) -> (Duration, Duration) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let max = sorted.last().copied().unwrap_or_default();
    (median, max)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (median, max) = median_max(&self.serve_again);
        writeln!(f, "power-cut summary (seed {})", self.seed)?;
        writeln!(f, "  cycles: {}", self.cycles)?;
        writeln!(
            f,
            "  cuts: {} (all nodes: {}, during recovery: {}, of which before serving: {})",
            self.cuts, self.cuts_all, self.recovery_cuts, self.recovery_cuts_before_serving
        )?;
        writeln!(
            f,
            "  acknowledged writes: {} (reads checked: {})",
            self.acked, self.reads_checked
        )?;
        writeln!(f, "  lost: {}", self.lost)?;
        writeln!(f, "  damaged bytes served: {}", self.damaged_served)?;
        writeln!(
            f,
            "  refused as damaged (DATA_LOSS): {}",
            self.refused_damaged
        )?;
        writeln!(f, "  unreadable: {}", self.unreadable)?;
        writeln!(
            f,
            "  not checked (cluster stopped serving): {}",
            self.unchecked
        )?;
        writeln!(f, "  repairs: 0 (finkfs has no repair yet)")?;
        writeln!(
            f,
            "  time to serve again: median {median:.2?}, max {max:.2?} over {} cuts",
            self.serve_again.len()
        )?;
        let kinds: Vec<String> = self
            .fsck_by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        writeln!(
            f,
            "  fsck: {} runs; findings by kind: {}; damage where injected: {}",
            self.fsck_runs,
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(" ")
            },
            self.fsck_damage_expected
        )?;
        writeln!(f, "  damage injected: {} bit flips", self.damage.len())?;
        for d in &self.damage {
            writeln!(
                f,
                "    node {}: {} at {}",
                d.node,
                d.file.display(),
                d.offset
            )?;
        }
        let fail_stops: Vec<String> = self
            .fail_stops
            .iter()
            .map(|(id, damaged)| {
                let why = if *damaged { "damaged" } else { "NOT damaged" };
                format!("node {id} ({why})")
            })
            .collect();
        writeln!(
            f,
            "  refused to start (fail-stop): {}",
            if fail_stops.is_empty() {
                "none".to_string()
            } else {
                fail_stops.join(", ")
            }
        )?;
        writeln!(f, "  violations: {}", self.violations.len())?;
        for v in &self.violations {
            writeln!(f, "    {v}")?;
        }
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        writeln!(f, "power-cut {verdict} (seed {})", self.seed)?;
        write!(f, "replay: {}", self.replay)
    }
}
