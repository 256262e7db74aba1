//! The power-cut scenario: a write load; cuts of one node, a minority or
//! every node at random moments, sometimes again while they recover;
//! damage at rest on one node; fsck of every cut node while it is down;
//! and after every cycle, every acknowledged object read back.
//!
//! A Put acknowledged before a cut was fsynced on a majority, so it must
//! read back byte-identical however the cut treats the unsynced rest, and
//! whatever one damaged node holds.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use finkfs_crashfs::Policy;
use finkfs_node::client::Client;
use finkfs_tests::load::{LoadReport, WriteLoad};
use finkfs_tests::{LocalCluster, Settings};
use futures_util::FutureExt;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::check::{self, Checked};
use crate::damage;
use crate::mounts::CrashDisks;
use crate::offline_fsck;
use crate::schedule::{Odds, Schedule, Scope, Step};
use crate::summary::Summary;

/// Longest wait for any phase (acks, restart, leader).
const PHASE_TIMEOUT: Duration = Duration::from_secs(45);
/// Cuts a run may ask for: each takes seconds, and a run must end.
const CYCLES_MAX: u32 = 1000;
/// Writers a run may ask for.
const WRITERS_MAX: u64 = 64;
/// Cluster sizes a run may ask for (odd, so a minority is well defined).
const NODES: [u64; 3] = [3, 5, 7];
/// Examples of each kind of violation kept in the summary.
const EXAMPLES_MAX: usize = 5;

/// A checked power-cut run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub cycles: u32,
    pub seed: u64,
    pub acks_per_cycle: u64,
    pub writers: u64,
    pub nodes: u64,
    pub policy: Policy,
    pub scope: Scope,
    pub odds: Odds,
    /// The command line that replays this run.
    pub replay: String,
}

impl Plan {
    /// Checks the plan's bounds.
    pub fn validate(self) -> Result<Plan, String> {
        if !(1..=CYCLES_MAX).contains(&self.cycles) {
            return Err(format!(
                "--cycles must be 1..={CYCLES_MAX}, not {}",
                self.cycles
            ));
        }
        if !(1..=WRITERS_MAX).contains(&self.writers) {
            return Err(format!(
                "--writers must be 1..={WRITERS_MAX}, not {}",
                self.writers
            ));
        }
        if self.acks_per_cycle == 0 {
            return Err("--acks-per-cycle must be at least 1".to_string());
        }
        if !NODES.contains(&self.nodes) {
            return Err(format!(
                "--nodes must be one of {NODES:?}, not {}",
                self.nodes
            ));
        }
        if self.odds.damage_percent > 100 || self.odds.recovery_cut_percent > 100 {
            return Err("percentages must be 0..=100".to_string());
        }
        Ok(self)
    }
}

/// Runs the plan; `Err` when it cannot run. Violations are in the summary.
pub fn run(plan: Plan) -> Result<Summary, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| format!("/dev/fuse cannot be opened ({e}); power cuts need it and root"))?;
    finkfs_tests::binary::node_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(scenario(plan))
}

async fn scenario(plan: Plan) -> Result<Summary, String> {
    // Declared first so that it drops last: the cluster kills its nodes
    // before the disks unmount (a mount in use cannot be unmounted).
    let mut disks_slot: Option<CrashDisks> = None;
    let settings = Settings {
        nodes: plan.nodes,
        ..Settings::default()
    };
    let mut cluster = LocalCluster::start(settings).await;
    let ids = cluster.ids();
    cluster.kill_many(&ids);
    let data_dirs: Vec<_> = ids
        .iter()
        .map(|id| (*id, cluster.node(*id).data_dir()))
        .collect();
    let borrowed: Vec<_> = data_dirs.iter().map(|(id, d)| (*id, d.as_path())).collect();
    let disks = disks_slot.insert(CrashDisks::mount(&borrowed, plan.seed)?);
    for id in &ids {
        cluster.restart(*id).await;
    }
    cluster.wait_for_leader(PHASE_TIMEOUT).await;

    let client = cluster.client().await;
    let mut run = Run::new(&plan, &ids);
    run.cycles(&plan, &mut cluster, disks, &client)
        .await
        .map_err(|e| format!("seed {}: {e}", plan.seed))?;
    run.summary.acked = run.reports.iter().map(|r| r.acked() as u64).sum();
    if run.serving {
        let checked = check::acknowledged(&client, &run.reports).await;
        run.record(checked, "final check");
    } else {
        run.summary.unchecked = run.summary.acked;
    }
    cluster.kill_many(&ids);
    drop(disks_slot);
    Ok(run.finish())
}

/// The state of a run between cycles.
struct Run {
    summary: Summary,
    /// The one node whose files are damaged.
    damaged_node: u64,
    damaged: bool,
    /// Nodes that refused to start; they stay down.
    out: Vec<u64>,
    /// False once the cluster did not serve again after a cut.
    serving: bool,
    rng: StdRng,
    /// The loads of the cycles so far, each under its own prefix.
    reports: Vec<LoadReport>,
    lost: BTreeSet<String>,
    damaged_served: BTreeSet<String>,
    refused_damaged: BTreeSet<String>,
    unreadable: BTreeSet<String>,
}

impl Run {
    fn new(plan: &Plan, ids: &[u64]) -> Run {
        Run {
            summary: Summary {
                seed: plan.seed,
                replay: plan.replay.clone(),
                ..Summary::default()
            },
            damaged_node: ids[(plan.seed % ids.len() as u64) as usize],
            damaged: false,
            out: Vec::new(),
            serving: true,
            rng: StdRng::seed_from_u64(plan.seed.wrapping_add(0xda_4a9e)),
            reports: Vec::new(),
            lost: BTreeSet::new(),
            damaged_served: BTreeSet::new(),
            refused_damaged: BTreeSet::new(),
            unreadable: BTreeSet::new(),
        }
    }

    /// Runs every cycle: a fresh write load under the cycle's own prefix
    /// runs from before the cut until the cluster acknowledges a put sent
    /// after it; then every acknowledged put of every cycle is read back
    /// (the load stopped, so a check costs reads of what exists, no more).
    async fn cycles(
        &mut self,
        plan: &Plan,
        cluster: &mut LocalCluster,
        disks: &CrashDisks,
        client: &Client,
    ) -> Result<(), String> {
        let ids = cluster.ids();
        let mut schedule = Schedule::new(plan.seed, plan.scope, plan.acks_per_cycle, plan.odds);
        for cycle in 0..plan.cycles {
            let alive: Vec<u64> = ids
                .iter()
                .filter(|id| !self.out.contains(id))
                .copied()
                .collect();
            let step = schedule.step(cycle, &alive);
            let load = WriteLoad::new(
                &format!("power-cut/c{cycle}"),
                plan.seed.wrapping_add(u64::from(cycle)),
            );
            let steps = async {
                let result = self
                    .cycle(plan, cluster, disks, &load, &step, alive.len())
                    .await;
                load.stop();
                result
            };
            let ((), outcome) = tokio::join!(load.run(client, plan.writers), steps);
            self.reports.push(load.report());
            if !outcome? {
                self.serving = false;
                return Ok(());
            }
            let checked = check::acknowledged(client, &self.reports).await;
            self.record(checked, &format!("after cycle {}", cycle + 1));
            self.summary.cycles += 1;
        }
        Ok(())
    }

    /// One cycle, under `load`; false when the cluster did not serve again
    /// (recorded as a violation: the run stops there).
    async fn cycle(
        &mut self,
        plan: &Plan,
        cluster: &mut LocalCluster,
        disks: &CrashDisks,
        load: &WriteLoad,
        step: &Step,
        alive: usize,
    ) -> Result<bool, String> {
        load.wait_for_acks(step.acks, PHASE_TIMEOUT).await?;
        tokio::time::sleep(step.delay).await;
        let cut_at = Instant::now();
        let all = step.cuts_all(alive);
        self.cut(cluster, disks, &step.victims, plan.policy, all)?;
        if step.damage && step.victims.contains(&self.damaged_node) {
            self.damage(disks)?;
        }
        self.fsck(disks, &step.victims)?;
        if let Some(after) = step.recovery_cut {
            let before = crate::recovery::start_and_kill(cluster, &step.victims, after).await?;
            self.summary.recovery_cuts += 1;
            self.summary.recovery_cuts_before_serving += before;
            self.cut(cluster, disks, &step.victims, plan.policy, all)?;
        }
        self.restart(cluster, &step.victims).await;
        let running = cluster.running_ids().len();
        if running <= cluster.ids().len() / 2 {
            self.violation(format!(
                "after {} cuts: only {running} nodes start, too few to serve",
                self.summary.cuts
            ));
            return Ok(false);
        }
        let serving = AssertUnwindSafe(cluster.wait_for_leader(PHASE_TIMEOUT))
            .catch_unwind()
            .await;
        if serving.is_err() {
            self.violation(format!("after {} cuts: no leader", self.summary.cuts));
            return Ok(false);
        }
        match load.wait_for_acks_after(cut_at, 1, PHASE_TIMEOUT).await {
            Ok(acks) => {
                self.summary.serve_again.push(acks[0] - cut_at);
                Ok(true)
            }
            Err(error) => {
                self.violation(format!(
                    "after {} cuts: not serving: {error}",
                    self.summary.cuts
                ));
                Ok(false)
            }
        }
    }

    fn cut(
        &mut self,
        cluster: &mut LocalCluster,
        disks: &CrashDisks,
        victims: &[u64],
        policy: Policy,
        all: bool,
    ) -> Result<(), String> {
        cluster.kill_many(victims);
        disks.cut(victims, policy)?;
        self.summary.cuts += 1;
        if all {
            self.summary.cuts_all += 1;
        }
        Ok(())
    }

    fn damage(&mut self, disks: &CrashDisks) -> Result<(), String> {
        let node = self.damaged_node;
        let handle = disks
            .handle(node)
            .ok_or(format!("no disk for node {node}"))?;
        if let Some(injected) = damage::flip_one(node, handle, &mut self.rng)? {
            self.damaged = true;
            self.summary.damage.push(injected);
        }
        Ok(())
    }

    fn fsck(&mut self, disks: &CrashDisks, victims: &[u64]) -> Result<(), String> {
        for id in victims {
            let handle = disks.handle(*id).ok_or(format!("no disk for node {id}"))?;
            let findings = offline_fsck::check(handle.backing())?;
            self.summary.fsck_runs += 1;
            for (kind, n) in findings.by_kind {
                *self.summary.fsck_by_kind.entry(kind).or_default() += n;
            }
            if *id == self.damaged_node && self.damaged {
                self.summary.fsck_damage_expected += findings.damage.len() as u64;
            } else {
                for damage in findings.damage.iter().take(EXAMPLES_MAX) {
                    self.violation(format!("fsck: damage on undamaged node {id}: {damage}"));
                }
            }
        }
        Ok(())
    }

    /// Starts the victims again; one that refuses stays down (fail-stop),
    /// which is acceptable only for the node the harness damaged.
    async fn restart(&mut self, cluster: &mut LocalCluster, victims: &[u64]) {
        for id in victims {
            let started = AssertUnwindSafe(cluster.restart(*id)).catch_unwind().await;
            if started.is_err() {
                let expected = *id == self.damaged_node && self.damaged;
                self.out.push(*id);
                self.summary.fail_stops.push((*id, expected));
                if !expected {
                    self.violation(format!("node {id} refused to start, yet was not damaged"));
                }
            }
        }
    }

    fn record(&mut self, checked: Checked, when: &str) {
        self.summary.reads_checked += checked.reads();
        let kinds = [
            ("lost", checked.lost, &mut self.lost, true),
            (
                "damaged bytes served",
                checked.damaged_served,
                &mut self.damaged_served,
                true,
            ),
            (
                "refused as damaged",
                checked.refused_damaged,
                &mut self.refused_damaged,
                false,
            ),
            ("unreadable", checked.unreadable, &mut self.unreadable, true),
        ];
        let mut violations = Vec::new();
        for (what, found, seen, violates) in kinds {
            for item in found {
                // Items read "<path>: <why>"; an object counts once.
                let path = item.split(": ").next().unwrap_or(&item).to_string();
                if violates && seen.len() < EXAMPLES_MAX && !seen.contains(&path) {
                    violations.push(format!("{when}: {what}: {item}"));
                }
                seen.insert(path);
            }
        }
        for v in violations {
            self.violation(v);
        }
    }

    fn violation(&mut self, what: String) {
        tracing::error!(seed = self.summary.seed, "{what}");
        self.summary.violations.push(what);
    }

    fn finish(mut self) -> Summary {
        self.summary.lost = self.lost.len() as u64;
        self.summary.damaged_served = self.damaged_served.len() as u64;
        self.summary.refused_damaged = self.refused_damaged.len() as u64;
        self.summary.unreadable = self.unreadable.len() as u64;
        self.summary
    }
}
