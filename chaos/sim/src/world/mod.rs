//! The world: a whole finkfs cluster in one process on one thread, under a
//! paused tokio clock, driven by one seed (`docs/design-simulation.md`).
//!
//! Every step the world may cut the power of nodes (one, a minority, a
//! majority or all at once, sometimes again while they boot), damage the
//! disk of a powered-off node, partition or degrade the network; starts
//! client operations; advances virtual time; collects the clients' answers
//! into the [`Model`]; and checks the safety properties. Faults stop at
//! 80 % of the steps; the cluster must then serve again within a bounded
//! virtual time, and every path must read back from the leader what the
//! model admits and the same from every replica.

mod client;
mod everywhere;
mod halt;
mod node;
mod panics;
mod report;
mod schedule;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use finkfs_node::api::MemberAddr;
use finkfs_node::daemon::config::{ApplySettings, NodeConfig, RaftSettings};
use finkfs_node::scrub::ScrubSettings;
use finkfs_raft::rt;
use finkfs_raft::types::NodeId;
use finkfs_simdisk::CrashPolicy;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::model::{Model, Observed, Outcome, ReadTicket, Value};
use crate::safety::{NodeView, SafetyChecker};
use crate::{LinkFaults, SimNet};
use client::{Op, Reply};
use node::{BootError, SimNode};
pub use report::{Coverage, CutScope, DiskFaultKind, RunReport};

/// Virtual time one step lasts.
const STEP: Duration = Duration::from_millis(50);
/// A client gives up on an operation after this long: in doubt.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Once faults stop, a leader must accept a write within this long
/// (invariant 7): 20× the election timeout ceiling plus snapshot installs.
const LIVENESS_BOUND: Duration = Duration::from_secs(20);
/// Faults stop at this fraction of the steps.
const FAULT_WINDOW_PERCENT: u64 = 80;
/// Odds that a step cuts the power of some nodes (about one cut per
/// second of virtual time: recovery takes a few hundred milliseconds, so
/// cuts also land during recoveries).
const CUT_ODDS: f64 = 0.1;
/// Odds that a step arms a fault on the next disk operation of the
/// damaged node while it runs.
const RUNNING_FAULT_ODDS: f64 = 0.03;
/// Largest object the workload writes.
const OBJECT_BYTES_MAX: usize = 96 << 10;
/// Odds, at each cut of a node, of aiming a later cut at its next
/// snapshot write (if none is aimed yet).
const SNAPSHOT_WIRE_ODDS: f64 = 0.1;
/// Where a node's snapshot files are written.
const SNAPSHOTS_DIR: &str = "groups/0/snapshots";
/// Share of runs that damage one object on every replica (the halt check).
const HALT_RUN_ODDS: f64 = 0.3;
/// Odds per step, in such a run, of doing it now (if every node runs).
const HALT_STEP_ODDS: f64 = 0.05;

/// What one run simulates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldConfig {
    /// Everything random in the run derives from it.
    pub seed: u64,
    /// Nodes in the cluster (3 or 5).
    pub nodes: u64,
    /// Steps of [`STEP`] virtual time each.
    pub steps: u64,
    /// A deliberate bug built into every node, to show the checker
    /// catches it (tests only).
    pub bug: Option<Bug>,
    /// Also arm faults on the damaged node's disk while it runs: I/O
    /// errors, a full disk, misdirected and lost writes. On in the CLI
    /// and the CI ranges.
    pub running_faults: bool,
    /// In some runs, damage one object on every replica and check that the
    /// cluster halts it (invariant 6). On in the CLI and the CI ranges.
    pub every_replica_damage: bool,
}

/// Deliberate bugs the checker must catch (section 8 of the design).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bug {
    /// The Raft log's fsyncs do nothing: writes are acknowledged before
    /// they are durable.
    AckBeforeFsync,
    /// Reads of blocks and objects skip their BLAKE3 check.
    SkipReadChecksum,
    /// The journal cuts its last segment at the first record that fails
    /// its checksum, as if every damaged record were a torn write.
    TruncateOnChecksumFailure,
}

impl Bug {
    /// The switch in the node's own code that builds this bug in, for the
    /// bugs that live there (the others wrap the node's disk).
    fn sabotage(self) -> Option<rt::Sabotage> {
        match self {
            Bug::AckBeforeFsync => None,
            Bug::SkipReadChecksum => Some(rt::Sabotage::SkipReadChecksum),
            Bug::TruncateOnChecksumFailure => Some(rt::Sabotage::TruncateOnChecksumFailure),
        }
    }
}

impl WorldConfig {
    /// The command that replays this run.
    pub fn replay_line(&self) -> String {
        let mut line = format!(
            "finkfs-chaos sim --seed {} --steps {} --nodes {}",
            self.seed, self.steps, self.nodes
        );
        if !self.running_faults {
            line.push_str(" --no-running-faults");
        }
        if !self.every_replica_damage {
            line.push_str(" --no-every-replica-damage");
        }
        if self.bug.is_some() {
            line.push_str(" (with a deliberate bug built in: replay it from its test)");
        }
        line
    }
}

/// Runs one world to its end, on this thread.
pub fn run(config: &WorldConfig) -> RunReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime can always be built");
    let _hook = rt::install_hook_with(config.seed, config.bug.and_then(Bug::sabotage));
    let panics = panics::Recording::start();
    runtime.block_on(async {
        let mut world = World::new(config.clone(), panics);
        world.run().await;
        world.finish()
    })
}

/// A client operation in flight.
struct Pending {
    op: Op,
    node: NodeId,
    started: Instant,
    reply: oneshot::Receiver<Reply>,
    ticket: Option<ReadTicket>,
}

/// A node that is off and when it comes back.
#[derive(Debug, Clone, Copy)]
struct Down {
    until: Instant,
    /// Cut the power again after this many mutating operations of the boot.
    trip_after: Option<u64>,
    /// Boots refused in a row while every peer ran (not counting those
    /// an injected I/O error failed).
    refusals: u32,
}

struct World {
    config: WorldConfig,
    started: Instant,
    step: u64,
    net: SimNet,
    nodes: Vec<SimNode>,
    node_config: BTreeMap<NodeId, NodeConfig>,
    down: BTreeMap<NodeId, Down>,
    /// The nodes whose disks take damage (at rest and while running): one,
    /// or in half the 5-node worlds two. Always a minority, so every piece
    /// keeps intact copies on a majority.
    victims: Vec<NodeId>,
    /// This run damages one object on every replica once (the halt check).
    halt_planned: bool,
    /// The object damaged on every replica, once it is.
    halted: Option<halt::Halted>,
    /// Power cuts aimed at a node's next snapshot write (a build, or an
    /// install being received), armed in its incarnations until one fires:
    /// how many snapshot operations to let through first.
    snapshot_wires: BTreeMap<NodeId, u64>,
    /// Draws the cuts aimed at snapshot writes: a stream of its own, so
    /// that adding them left the rest of each seed's schedule as it was.
    snapshot_faults: SmallRng,
    /// The structure this run damages on every replica once, besides a
    /// block: a journal record or the snapshots (`everywhere`); None once
    /// done, or when the run does not.
    everywhere_planned: Option<everywhere::Target>,
    /// Draws that plan and its moment: a stream of its own, as above.
    everywhere_faults: SmallRng,
    /// This run damages one vote copy on every replica once.
    vote_copy_planned: bool,
    /// This run damages the index on every replica once.
    index_planned: bool,
    /// Draws that plan and its moment: a stream of its own, as above.
    index_faults: SmallRng,
    /// Draws that plan and its moment: a stream of its own, as above.
    vote_copy_faults: SmallRng,
    faults: SmallRng,
    workload: SmallRng,
    model: Model,
    safety: SafetyChecker,
    pending: Vec<Pending>,
    next_op: u64,
    paths: Vec<String>,
    coverage: Coverage,
    violations: Vec<String>,
    trace: blake3::Hasher,
    heal_at: Option<Instant>,
    panics: panics::Recording,
    members: BTreeMap<NodeId, finkfs_raft::types::Node>,
    /// Node 1 has reported the cluster initialized after a boot.
    initialized: bool,
    /// A leader has been seen: faults start only then. A power cut within
    /// milliseconds of the first `initialize` can leave node 1 with a
    /// durable vote and no membership entry, which openraft then refuses
    /// to initialize again (see `docs/chaos.md`, open findings).
    formed: bool,
}

impl World {
    fn new(config: WorldConfig, panics: panics::Recording) -> World {
        let seed = config.seed;
        let derive = |salt: u64| splitmix(seed ^ splitmix(salt));
        let net = SimNet::new(derive(1), LinkFaults::lan());
        net.keep_events(false);
        if std::env::var_os("FINKFS_SIM_TRACE").is_some() {
            net.set_tap(Arc::new(|tapped: &crate::Tapped<'_>| {
                if let finkfs_raft::network::PeerReply::Vote(reply) = tapped.reply {
                    eprintln!("  tap: {} answered {} {reply:?}", tapped.to, tapped.from);
                }
            }));
        }
        let nodes: Vec<SimNode> = (1..=config.nodes)
            .map(|id| SimNode::new(id, derive(100 + id)))
            .collect();
        let node_config = nodes
            .iter()
            .map(|node| (node.id, node_config(node.id)))
            .collect();
        let mut faults = SmallRng::seed_from_u64(derive(2));
        let victims = schedule::victims(&mut faults, config.nodes);
        let runs_damaging_two_nodes = u64::from(victims.len() > 1);
        // Drawn only when asked for, so runs without it keep their schedules.
        let halt_planned = config.every_replica_damage && faults.gen_bool(HALT_RUN_ODDS);
        let mut everywhere_faults = SmallRng::seed_from_u64(derive(5));
        let everywhere_planned = (config.every_replica_damage
            && everywhere_faults.gen_bool(HALT_RUN_ODDS))
        .then(|| everywhere::Target::draw(&mut everywhere_faults));
        let mut vote_copy_faults = SmallRng::seed_from_u64(derive(6));
        let vote_copy_planned =
            config.every_replica_damage && vote_copy_faults.gen_bool(HALT_RUN_ODDS);
        let mut index_faults = SmallRng::seed_from_u64(derive(7));
        let index_planned = config.every_replica_damage && index_faults.gen_bool(HALT_RUN_ODDS);
        World {
            started: Instant::now(),
            step: 0,
            net,
            nodes,
            node_config,
            down: BTreeMap::new(),
            victims,
            halt_planned,
            halted: None,
            snapshot_wires: BTreeMap::new(),
            snapshot_faults: SmallRng::seed_from_u64(derive(4)),
            everywhere_planned,
            everywhere_faults,
            vote_copy_planned,
            vote_copy_faults,
            index_planned,
            index_faults,
            faults,
            workload: SmallRng::seed_from_u64(derive(3)),
            model: Model::new(),
            safety: SafetyChecker::with_several_leaders_per_term(),
            pending: Vec::new(),
            next_op: 1,
            paths: Vec::new(),
            coverage: Coverage {
                runs: 1,
                runs_damaging_two_nodes,
                ..Coverage::default()
            },
            violations: Vec::new(),
            trace: blake3::Hasher::new(),
            heal_at: None,
            panics,
            members: BTreeMap::new(),
            initialized: false,
            formed: false,
            config,
        }
    }

    /// Writes one line to the trace, stamped with virtual time.
    fn event(&mut self, what: &str) {
        let at = self.started.elapsed().as_micros();
        let line = format!("{at} {} {what}\n", self.step);
        self.trace.update(line.as_bytes());
        if std::env::var_os("FINKFS_SIM_TRACE").is_some() {
            eprint!("{line}");
        }
        tracing::debug!(step = self.step, "{what}");
    }

    fn violation(&mut self, what: String) {
        self.event(&format!("VIOLATION {what}"));
        self.violations.push(format!("step {}: {what}", self.step));
    }

    async fn run(&mut self) {
        self.boot_cluster().await;
        let fault_end = self.config.steps * FAULT_WINDOW_PERCENT / 100;
        for step in 0..self.config.steps {
            self.step = step;
            if step < fault_end && self.formed {
                self.maybe_fault().await;
            } else if step == fault_end {
                self.stop_faults();
            }
            self.cut_tripped().await;
            self.restart_stopped().await;
            self.restart_due().await;
            self.initialize().await;
            self.start_ops();
            tokio::time::sleep(STEP).await;
            self.collect_replies(false);
            self.observe();
            if !self.violations.is_empty() {
                return;
            }
        }
        self.step = self.config.steps;
        self.stop_faults();
        self.end_checks().await;
    }

    async fn boot_cluster(&mut self) {
        for i in 0..self.nodes.len() {
            self.boot(i).await;
        }
        let members: BTreeMap<NodeId, finkfs_raft::types::Node> = self
            .nodes
            .iter()
            .map(|n| (n.id, n.addr.to_node()))
            .collect();
        self.members = members;
        self.initialize().await;
    }

    /// Initializes the cluster from node 1 until it takes: a power cut of
    /// every node can land before the first membership entry is durable,
    /// and then, like the daemon's `--initial-member` start, the world
    /// tries again.
    async fn initialize(&mut self) {
        if self.initialized {
            return;
        }
        let first = self.nodes[0].live.as_ref().map(|l| (l.raft.clone(), l.tag));
        let Some((raft, tag)) = first else {
            return;
        };
        let members = self.members.clone();
        let outcome = rt::in_node(tag, async move {
            if raft.is_initialized().await.unwrap_or(false) {
                return Ok(true);
            }
            raft.initialize(members).await.map(|()| false)
        })
        .await;
        match outcome {
            Ok(true) => self.initialized = true,
            Ok(false) => self.event("cluster initialized"),
            Err(error) => self.event(&format!("initializing failed: {error}")),
        }
    }

    /// Boots node `i`; on failure, schedules what a supervisor or operator
    /// would do.
    async fn boot(&mut self, i: usize) {
        let id = self.nodes[i].id;
        // Faults that fired before the boot are counted now, so that the
        // disk's log shows only what fired during it.
        self.count_fired_faults();
        let down = self.down.remove(&id);
        // A cut anywhere takes the tripwire first; the one aimed at a
        // snapshot write waits for an incarnation without it.
        let aimed = self.snapshot_wires.get(&id).copied();
        let wire = match down.and_then(|d| d.trip_after) {
            Some(allowed) => Some(("", allowed)),
            None => aimed.map(|allowed| (SNAPSHOTS_DIR, allowed)),
        };
        let aimed_at_snapshots = wire.is_some_and(|(prefix, _)| prefix == SNAPSHOTS_DIR);
        let config = self.node_config[&id].clone();
        let booted = self.nodes[i]
            .boot(&self.net, &config, wire, self.config.bug)
            .await;
        match booted {
            Ok(opened) => {
                self.coverage.boots += 1;
                let incarnation = self.nodes[i].incarnation;
                self.event(&format!(
                    "node {id} booted, incarnation {incarnation}: {opened}"
                ));
                if self.nodes[i]
                    .live
                    .as_ref()
                    .is_some_and(|l| l.journal_damaged)
                {
                    self.stop_for_repair(i, down).await;
                }
            }
            Err(BootError::Tripped(why)) => {
                self.coverage.cuts_during_recovery += 1;
                if aimed_at_snapshots {
                    self.snapshot_wires.remove(&id);
                    self.coverage.cuts_in_snapshot_writes += 1;
                }
                self.event(&format!("node {id} lost power while booting: {why}"));
                let until = Instant::now() + self.downtime();
                self.down.insert(
                    id,
                    Down {
                        until,
                        trip_after: None,
                        refusals: 0,
                    },
                );
            }
            Err(BootError::Refused(why)) => self.after_refusal(i, &why, down),
        }
    }

    /// What a supervisor or an operator does with node `i`, whose boot
    /// was refused for `why`; `down` is how it was down before the boot.
    fn after_refusal(&mut self, i: usize, why: &str, down: Option<Down>) {
        let id = self.nodes[i].id;
        self.event(&format!("node {id} refused to start: {why}"));
        let before = down.map_or(0, |d| d.refusals);
        if self.io_error_fired(i) {
            // The disk failed an operation of the boot (EIO, or ENOSPC):
            // refusing is right, and there is nothing to repair. A
            // supervisor starts it again.
            self.coverage.boots_failed_on_io += 1;
            self.event(&format!(
                "node {id}: an injected I/O error failed the boot; starting it again"
            ));
            self.down_for_a_step(id, before);
            return;
        }
        self.coverage.boots_refused += 1;
        if why.contains("--rejoin") {
            // The node says what it needs: its state is on no disk of its
            // own any more. The operator follows the message
            // (docs/operations.md, "After a disk failure").
            self.wipe_and_rejoin(i);
            self.down_for_a_step(id, 0);
            return;
        }
        // A repair may need the peers (blocks a snapshot refers to), so
        // only refusals while every peer runs show that the repair did not
        // do its job.
        let peers_up = (0..self.nodes.len())
            .filter(|&j| j != i)
            .all(|j| self.nodes[j].live.is_some());
        let refusals = before + u32::from(peers_up);
        if refusals > 2 {
            self.violation(format!(
                "node {id} still refuses to start after an offline repair: {why}"
            ));
            return;
        }
        self.repair_offline(i);
        self.down_for_a_step(id, refusals);
    }

    /// What the operator does with a node that started without a vote over
    /// damage in its journal (`finkfs status` shows `JournalDamaged`, which
    /// only a repair lifts): stops it and repairs it as a refusing node
    /// (`docs/operations.md`, "After a power cut"). Left alone, such nodes
    /// would never vote again, and a cluster where a majority had them
    /// could never elect a leader.
    async fn stop_for_repair(&mut self, i: usize, down: Option<Down>) {
        let id = self.nodes[i].id;
        self.coverage.boots_blocked_on_journal_damage += 1;
        // Stopping is a process exit: unsynced writes stay in the page cache.
        if let Some(weak) = self.nodes[i]
            .cut(&self.net, CrashPolicy::KeepUnsynced)
            .await
        {
            if weak.strong_count() != 0 {
                let incarnation = self.nodes[i].incarnation;
                self.violation(format!(
                    "node {id} incarnation {incarnation} still referenced after it was stopped (a task escaped its node)"
                ));
            }
        }
        self.after_refusal(
            i,
            "started without a vote: its journal holds damage (JournalDamaged)",
            down,
        );
    }

    /// Node `id` boots again on the next step.
    fn down_for_a_step(&mut self, id: NodeId, refusals: u32) {
        self.down.insert(
            id,
            Down {
                until: Instant::now() + STEP,
                trip_after: None,
                refusals,
            },
        );
    }

    /// Whether an armed EIO or ENOSPC fired on node `i`'s disk since the
    /// fired faults were last counted.
    fn io_error_fired(&self, i: usize) -> bool {
        self.nodes[i].disk.fault_log().iter().any(|fault| {
            matches!(
                fault.kind,
                finkfs_simdisk::FaultKind::Eio { .. } | finkfs_simdisk::FaultKind::Enospc { .. }
            )
        })
    }

    /// What the operator does with a node that lost its state for good:
    /// wipes its data directory (every file of its disk) and starts it
    /// with `--rejoin`, so that it does not vote until a leader has
    /// brought it up to date.
    fn wipe_and_rejoin(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let disk = self.nodes[i].disk.disk_ref();
        let files = self.nodes[i].disk.file_paths();
        for file in &files {
            // The node is off and the simulated disk has no other user.
            disk.remove(file)
                .expect("a file of a powered-off simulated disk can be removed");
        }
        let mut dirs: Vec<&std::path::Path> =
            files.iter().map(|f| finkfs_seam::parent_dir(f)).collect();
        dirs.sort_unstable();
        dirs.dedup();
        for dir in dirs {
            disk.sync_dir(dir)
                .expect("a directory of a simulated disk can be synced");
        }
        if let Some(config) = self.node_config.get_mut(&id) {
            config.rejoin = true;
        }
        self.coverage.rejoins += 1;
        self.event(&format!(
            "node {id} wiped ({} files) and started again with --rejoin",
            files.len()
        ));
    }

    /// What the operator does with a node that refuses to start:
    /// `finkfs fsck --repair` on its data directory.
    fn repair_offline(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let disk = self.nodes[i].disk.disk_ref();
        let scratch = finkfs_simdisk::SimDisk::new(0).disk_ref();
        let options = finkfs_node::fsck::FsckOptions::default();
        let outcome = finkfs_node::fsck::repair::repair_data_dir(
            disk,
            scratch,
            &options,
            &mut finkfs_node::fsck::NoProgress,
        );
        self.coverage.repairs += 1;
        match outcome {
            Ok(report) => {
                let status = report.status;
                let actions: Vec<String> = report
                    .actions
                    .iter()
                    .map(|a| format!("{} {} ({})", a.action, a.file, a.detail))
                    .collect();
                let left: Vec<String> =
                    report.unrecoverable.iter().map(|p| p.to_string()).collect();
                self.event(&format!(
                    "node {id} repaired offline: {status}: {}{}",
                    actions.join("; "),
                    if left.is_empty() {
                        String::new()
                    } else {
                        format!("; left: {}", left.join("; "))
                    }
                ));
            }
            Err(error) => self.event(&format!("node {id} offline repair failed: {error}")),
        }
    }

    fn downtime(&mut self) -> Duration {
        // Mostly short; sometimes long enough for the leader to purge its
        // log and have to send a snapshot.
        if self.faults.gen_bool(0.2) {
            Duration::from_millis(self.faults.gen_range(2_000..6_000))
        } else {
            Duration::from_millis(self.faults.gen_range(0..1_000))
        }
    }

    /// A node whose tripwire fired after its boot lost power in the middle
    /// of an operation (a journal append, an apply, an fsync): it is cut.
    async fn cut_tripped(&mut self) {
        let tripped: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].live.as_ref().is_some_and(|l| l.disk.is_off()))
            .collect();
        for i in tripped {
            self.coverage.cuts_mid_operation += 1;
            let trip = self.nodes[i].live.as_ref().and_then(|l| l.disk.trip());
            if trip.is_some_and(|t| t.path.starts_with(SNAPSHOTS_DIR)) {
                self.snapshot_wires.remove(&self.nodes[i].id);
                self.coverage.cuts_in_snapshot_writes += 1;
            }
            self.cut(&[i], CutScope::One).await;
        }
    }

    async fn restart_due(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].live.is_none()
                    && self
                        .down
                        .get(&self.nodes[i].id)
                        .is_some_and(|d| d.until <= now)
            })
            .collect();
        for i in due {
            self.boot(i).await;
        }
    }

    /// Cuts the power of the nodes at `indices` at once.
    async fn cut(&mut self, indices: &[usize], scope: CutScope) {
        *self.coverage.cuts.entry(scope).or_default() += 1;
        let names: Vec<String> = indices
            .iter()
            .map(|i| self.nodes[*i].id.to_string())
            .collect();
        self.event(&format!("power cut {scope:?}: nodes {}", names.join(",")));
        for &i in indices {
            let policy = schedule::crash_policy(&mut self.faults);
            let id = self.nodes[i].id;
            if let Some(weak) = self.nodes[i].cut(&self.net, policy).await {
                self.coverage.node_power_cuts += 1;
                if weak.strong_count() != 0 {
                    let incarnation = self.nodes[i].incarnation;
                    self.violation(format!(
                        "node {id} incarnation {incarnation} still referenced after a power cut (a task escaped its node)"
                    ));
                }
            }
            let until = Instant::now() + self.downtime();
            let trip_after = self
                .faults
                .gen_bool(0.25)
                .then(|| self.faults.gen_range(0..400));
            let refusals = self.down.get(&id).map_or(0, |d| d.refusals);
            self.down.insert(
                id,
                Down {
                    until,
                    trip_after,
                    refusals,
                },
            );
            if self.victims.contains(&id) && self.faults.gen_bool(0.5) {
                self.damage_at_rest(i);
            }
            if !self.snapshot_wires.contains_key(&id)
                && self.snapshot_faults.gen_bool(SNAPSHOT_WIRE_ODDS)
            {
                let allowed = self.snapshot_faults.gen_range(0..12);
                self.snapshot_wires.insert(id, allowed);
            }
        }
    }

    fn damage_at_rest(&mut self, i: usize) {
        let id = self.nodes[i].id;
        if let Some((kind, path, at)) = schedule::damage(&self.nodes[i].disk, &mut self.faults) {
            self.event(&format!(
                "node {id}: {kind:?} in {} at {at}",
                path.display()
            ));
        }
    }

    async fn maybe_fault(&mut self) {
        if let Some(heal_at) = self.heal_at {
            if Instant::now() >= heal_at {
                self.net.heal();
                self.net.set_default_faults(LinkFaults::lan());
                self.heal_at = None;
                self.event("network healed");
            }
        }
        if self.faults.gen_bool(CUT_ODDS) {
            let n = self.nodes.len();
            let (scope, count) = schedule::cut_scope(&mut self.faults, n);
            let mut indices: Vec<usize> = (0..n).collect();
            schedule::shuffle(&mut indices, &mut self.faults);
            indices.truncate(count);
            indices.sort_unstable();
            self.cut(&indices, scope).await;
        }
        if self.config.running_faults && self.faults.gen_bool(RUNNING_FAULT_ODDS) {
            self.running_fault();
        }
        if self.halt_planned && self.halted.is_none() && self.faults.gen_bool(HALT_STEP_ODDS) {
            self.damage_every_replica();
        }
        if self.everywhere_planned.is_some() && self.everywhere_faults.gen_bool(HALT_STEP_ODDS) {
            self.damage_structure_everywhere();
        }
        if self.vote_copy_planned && self.vote_copy_faults.gen_bool(HALT_STEP_ODDS) {
            let outcome = everywhere::damage_vote_copy(&self.nodes, &mut self.vote_copy_faults);
            if self.note_damage_everywhere("a vote copy", outcome) {
                self.coverage.vote_copies_damaged_on_every_replica += 1;
                self.vote_copy_planned = false;
            }
        }
        if self.index_planned && self.index_faults.gen_bool(HALT_STEP_ODDS) {
            let outcome = everywhere::damage_index(&self.nodes, &mut self.index_faults);
            if self.note_damage_everywhere("the index", outcome) {
                self.coverage.indexes_damaged_on_every_replica += 1;
                self.index_planned = false;
            }
        }
        if self.heal_at.is_none() && self.faults.gen_bool(0.02) {
            let until = Instant::now() + Duration::from_millis(self.faults.gen_range(300..3_000));
            self.heal_at = Some(until);
            if self.faults.gen_bool(0.5) {
                let n = self.nodes.len();
                let mut order: Vec<usize> = (0..n).collect();
                schedule::shuffle(&mut order, &mut self.faults);
                let split = self.faults.gen_range(1..n);
                let peers: Vec<&str> = order.iter().map(|&i| self.nodes[i].peer()).collect();
                let (a, b) = peers.split_at(split);
                self.net.partition(&[a, b]);
                self.coverage.partitions += 1;
                let text = format!("partition {a:?} | {b:?}");
                self.event(&text);
            } else {
                let p = self.faults.gen_range(0.05..0.4);
                self.net.set_default_faults(LinkFaults::lan().dropping(p));
                self.coverage.lossy_periods += 1;
                self.event(&format!("links lose {p:.2} of messages"));
            }
        }
    }

    /// Damages one object on every replica, if every node runs and holds
    /// a settled one; otherwise tries again on a later step.
    fn damage_every_replica(&mut self) {
        let settled = self.model.settled();
        match halt::damage_every_replica(&self.nodes, &settled, &mut self.faults) {
            Ok((path, damaged)) => {
                // Counted now: a read may meet the damage before the step ends.
                self.count_fired_faults();
                self.event(&format!(
                    "every copy of {path} damaged: {}",
                    damaged.join("; ")
                ));
                self.coverage.objects_damaged_on_every_replica += 1;
                self.halted = Some(halt::Halted {
                    path,
                    data_loss_seen: 0,
                });
            }
            Err(not_now) => self.event(&format!("no object damaged on every replica: {not_now:?}")),
        }
    }

    /// Damages a journal record or the snapshots on every replica, if
    /// every node runs and holds a copy; otherwise tries again later.
    fn damage_structure_everywhere(&mut self) {
        let Some(target) = self.everywhere_planned else {
            return;
        };
        let settled = self.model.settled();
        let outcome =
            everywhere::damage(target, &self.nodes, &settled, &mut self.everywhere_faults);
        if self.note_damage_everywhere(&format!("{target:?}"), outcome) {
            match target {
                everywhere::Target::JournalRecord => {
                    self.coverage.journal_records_damaged_on_every_replica += 1;
                }
                everywhere::Target::Snapshots => {
                    self.coverage.snapshots_damaged_on_every_replica += 1;
                }
            }
            self.everywhere_planned = None;
        }
    }

    /// Logs what damaging `what` on every replica did; whether it was done.
    fn note_damage_everywhere(
        &mut self,
        what: &str,
        outcome: Result<Vec<String>, halt::NotNow>,
    ) -> bool {
        match outcome {
            Ok(damaged) => {
                // Counted now: a read may meet the damage before the step ends.
                self.count_fired_faults();
                self.event(&format!(
                    "{what} damaged on every replica: {}",
                    damaged.join("; ")
                ));
                true
            }
            Err(not_now) => {
                self.event(&format!("no {what} damaged on every replica: {not_now:?}"));
                false
            }
        }
    }

    /// Whether `path` is the object damaged on every replica.
    fn is_halted(&self, path: &str) -> bool {
        self.halted.as_ref().is_some_and(|h| h.path == path)
    }

    /// A read of the halted object refused as damaged: it says so.
    fn note_halt_refusal(&mut self, path: &str, observed: &Observed) {
        if let (Some(halted), Observed::Refused(why)) = (self.halted.as_mut(), observed) {
            if halted.path == path && why.starts_with("DataLoss") {
                halted.data_loss_seen += 1;
                self.coverage.halted_reads_refused += 1;
            }
        }
    }

    /// Arms a fault on the next operation of a damaged node's disk while
    /// it runs (the other nodes keep intact copies).
    fn running_fault(&mut self) {
        let victim = self.victims[self.faults.gen_range(0..self.victims.len())];
        let i = (victim - 1) as usize;
        if self.nodes[i].live.is_none() {
            return;
        }
        let (kind, prefix) = schedule::running_fault(&self.nodes[i].disk, &mut self.faults);
        let id = self.nodes[i].id;
        self.event(&format!(
            "node {id}: next operation under {prefix}: {kind:?}"
        ));
    }

    /// A node whose Raft stopped on a storage error is restarted, as a
    /// supervisor restarts a process that exited: its unsynced writes stay
    /// in the page cache (the disk keeps them).
    async fn restart_stopped(&mut self) {
        let stopped: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].live.as_ref().is_some_and(|l| {
                    !l.disk.is_off() && l.raft.metrics().borrow_watched().running_state.is_err()
                })
            })
            .collect();
        for i in stopped {
            let id = self.nodes[i].id;
            let why = self.nodes[i]
                .live
                .as_ref()
                .and_then(|l| {
                    l.raft
                        .metrics()
                        .borrow_watched()
                        .running_state
                        .clone()
                        .err()
                })
                .map(|e| e.to_string())
                .unwrap_or_default();
            self.event(&format!(
                "node {id} stopped on a fatal error, restarting it: {why}"
            ));
            self.coverage.process_restarts += 1;
            if let Some(weak) = self.nodes[i]
                .cut(&self.net, finkfs_simdisk::CrashPolicy::KeepUnsynced)
                .await
            {
                if weak.strong_count() != 0 {
                    self.violation(format!(
                        "node {id} still referenced after its process was restarted"
                    ));
                }
            }
            self.down_for_a_step(id, 0);
        }
    }

    fn stop_faults(&mut self) {
        self.net.heal();
        self.net.set_default_faults(LinkFaults::lan());
        self.heal_at = None;
        for down in self.down.values_mut() {
            down.trip_after = None;
        }
        self.snapshot_wires.clear();
        for node in &self.nodes {
            node.disk.disarm_faults();
            if let Some(live) = &node.live {
                live.disk.disarm_tripwire();
            }
        }
        self.event("faults stop");
    }

    /// The node that leads, by its own metrics.
    fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.live
                .as_ref()
                .is_some_and(|l| l.raft.metrics().borrow_watched().state == ServerState::Leader)
        })
    }

    fn start_ops(&mut self) {
        for _ in 0..2 {
            if !self.workload.gen_bool(0.6) {
                continue;
            }
            let Some(op) = self.draw_op() else { continue };
            let target = match self.leader() {
                Some(i) if self.workload.gen_bool(0.95) => i,
                _ => self.workload.gen_range(0..self.nodes.len()),
            };
            self.send(target, op);
        }
    }

    fn draw_op(&mut self) -> Option<Op> {
        let roll = self.workload.gen_range(0..100);
        if roll < 35 && !self.paths.is_empty() {
            let path = self.paths[self.workload.gen_range(0..self.paths.len())].clone();
            return Some(Op::Get { path });
        }
        let op_id = self.next_op;
        self.next_op += 1;
        if roll < 47 && !self.paths.is_empty() {
            let path = self.paths[self.workload.gen_range(0..self.paths.len())].clone();
            // The halted object stays as it is, for the checks to read.
            let writable = self.model.writable(&path) && !self.is_halted(&path);
            return writable.then_some(Op::Delete { path });
        }
        let path = if self.paths.is_empty() || self.workload.gen_bool(0.6) {
            let path = format!("alerts/{}/{op_id}.avro", op_id % 7);
            self.paths.push(path.clone());
            path
        } else {
            self.paths[self.workload.gen_range(0..self.paths.len())].clone()
        };
        if !self.model.writable(&path) || self.is_halted(&path) {
            return None;
        }
        let len = if self.workload.gen_bool(0.1) {
            self.workload.gen_range(64 << 10..=OBJECT_BYTES_MAX)
        } else {
            self.workload.gen_range(1 << 10..=56 << 10)
        };
        Some(Op::Put { path, op_id, len })
    }

    fn send(&mut self, i: usize, op: Op) {
        let node = &self.nodes[i];
        let Some(live) = node.live.as_ref() else {
            return;
        };
        let ticket = match &op {
            Op::Get { path } => Some(self.model.begin_read(path)),
            Op::Put { path, op_id, .. } => {
                self.model.send(path, Value::Written(*op_id));
                None
            }
            Op::Delete { path, .. } => {
                self.model.send(path, Value::Absent);
                None
            }
        };
        let reply = client::start(
            live.tag,
            Arc::clone(&live.client),
            live.raft.clone(),
            op.clone(),
        );
        let text = format!("send {op:?} to node {}", node.id);
        let node_id = node.id;
        self.event(&text);
        self.pending.push(Pending {
            op,
            node: node_id,
            started: Instant::now(),
            reply,
            ticket,
        });
    }

    /// Takes in the answers that arrived; `drain` gives up on the rest.
    fn collect_replies(&mut self, drain: bool) {
        let mut still = Vec::new();
        for mut pending in std::mem::take(&mut self.pending) {
            let reply = match pending.reply.try_recv() {
                Ok(reply) => Some(reply),
                Err(oneshot::error::TryRecvError::Closed) => None,
                Err(oneshot::error::TryRecvError::Empty) => {
                    if !drain && pending.started.elapsed() < CLIENT_TIMEOUT {
                        still.push(pending);
                        continue;
                    }
                    None
                }
            };
            self.settle(pending, reply);
        }
        self.pending = still;
    }

    fn settle(&mut self, pending: Pending, reply: Option<Reply>) {
        let Pending {
            op, node, ticket, ..
        } = pending;
        match (op, reply) {
            (Op::Get { path }, reply) => {
                let observed = match reply {
                    Some(Reply::Read(observed)) => observed,
                    _ => Observed::Refused("no answer".to_string()),
                };
                self.event(&format!("read {path} at node {node}: {observed:?}"));
                self.note_halt_refusal(&path, &observed);
                self.check_read(ticket.expect("reads carry a ticket"), &observed, node);
            }
            (Op::Put { path, op_id, .. }, reply) => {
                self.finish_write(&path, Value::Written(op_id), reply, node)
            }
            (Op::Delete { path }, reply) => self.finish_write(&path, Value::Absent, reply, node),
        }
    }

    fn finish_write(&mut self, path: &str, value: Value, reply: Option<Reply>, node: NodeId) {
        let outcome = match reply {
            Some(Reply::Write(outcome)) => outcome,
            _ => Outcome::InDoubt,
        };
        match outcome {
            Outcome::Acknowledged(_) => self.coverage.acknowledged += 1,
            Outcome::Rejected => self.coverage.rejected += 1,
            Outcome::InDoubt => self.coverage.in_doubt += 1,
        }
        self.event(&format!(
            "write {path} = {value} at node {node}: {outcome:?}"
        ));
        self.model.finish(path, value, outcome);
    }

    fn check_read(&mut self, ticket: ReadTicket, observed: &Observed, node: NodeId) {
        self.coverage.reads_checked += 1;
        if let Observed::Refused(why) = observed {
            self.coverage.reads_refused += 1;
            if why.starts_with("DataLoss") && !self.damage_injected() {
                self.violation(format!(
                    "invariant 4: node {node} refused a read as damaged, and no damage was injected: {why}"
                ));
            }
        }
        if let Err(violation) = self.model.end_read(ticket, observed) {
            self.violation(format!("node {node}: {violation}"));
        }
    }

    /// Whether damage that a read may meet was injected (a flipped bit, a
    /// zeroed sector, a misdirected or lost write).
    fn damage_injected(&self) -> bool {
        self.coverage.disk_faults.keys().any(|(_, kind)| {
            matches!(
                kind,
                DiskFaultKind::BitFlip
                    | DiskFaultKind::ZeroedSector
                    | DiskFaultKind::MisdirectedWrite
                    | DiskFaultKind::LostWrite
            )
        })
    }

    /// Counts the faults the simulated disks say fired since the last
    /// call, by the structure of the file they hit.
    fn count_fired_faults(&mut self) {
        for node in &self.nodes {
            for fault in node.disk.take_fault_log() {
                if let Some(kind) = DiskFaultKind::of(&fault.kind) {
                    let structure = crate::Structure::of(&fault.path);
                    *self
                        .coverage
                        .disk_faults
                        .entry((structure, kind))
                        .or_default() += 1;
                }
            }
        }
    }

    /// The per-step safety checks over every powered node.
    fn observe(&mut self) {
        self.count_fired_faults();
        let mut summary = String::new();
        let mut found = Vec::new();
        for node in &self.nodes {
            let Some(live) = node.live.as_ref() else {
                let _ = write!(summary, " {}:off", node.id);
                continue;
            };
            let metrics = live.raft.metrics().borrow_watched().clone();
            let view = NodeView {
                vote_term: metrics.current_term,
                leader: metrics.current_leader,
                leads: metrics.state == ServerState::Leader,
                committed: metrics.local_committed.map(|l| l.index),
                applied: metrics.last_applied.map(|l| l.index),
            };
            let _ = write!(
                summary,
                " {}:t{}{}a{}",
                node.id,
                view.vote_term,
                if view.leads { "L" } else { "" },
                view.applied.map_or(-1, |a| a as i64)
            );
            self.formed |= view.leads;
            if let Err(violation) = self.safety.observe((node.id, live.tag.incarnation), view) {
                found.push(violation.to_string());
            }
        }
        self.event(&format!("state{summary}"));
        found.extend(self.panics.take());
        for violation in found {
            self.violation(violation);
        }
    }

    /// After the faults: every node powered, a leader accepting writes
    /// within the bound, every path read back from the leader and the same
    /// from every replica.
    async fn end_checks(&mut self) {
        let deadline = Instant::now() + LIVENESS_BOUND;
        while Instant::now() < deadline
            && (!self.down.is_empty() || self.nodes.iter().any(|n| n.live.is_none()))
        {
            // A wire that fired just before the faults stopped.
            self.cut_tripped().await;
            self.restart_stopped().await;
            self.restart_all().await;
            self.initialize().await;
            if !self.violations.is_empty() {
                return;
            }
            tokio::time::sleep(STEP).await;
        }
        let probe = self.probe(deadline).await;
        let Some(index) = probe else {
            self.violation(format!(
                "invariant 7: no leader accepted a write within {LIVENESS_BOUND:?} after the faults stopped"
            ));
            return;
        };
        self.wait_applied(index, Instant::now() + LIVENESS_BOUND)
            .await;
        while !self.pending.is_empty() {
            tokio::time::sleep(STEP).await;
            self.collect_replies(false);
            if Instant::now() > deadline + CLIENT_TIMEOUT {
                self.collect_replies(true);
            }
        }
        self.read_back().await;
    }

    async fn restart_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].live.is_none() {
                self.boot(i).await;
            }
        }
    }

    /// Writes a probe object until a leader acknowledges it; its log index.
    async fn probe(&mut self, deadline: Instant) -> Option<u64> {
        let path = "probe/after-faults".to_string();
        while Instant::now() < deadline {
            if let Some(i) = self.leader() {
                let op_id = self.next_op;
                self.next_op += 1;
                let live = self.nodes[i].live.as_ref().expect("a leader is live");
                let op = Op::Put {
                    path: path.clone(),
                    op_id,
                    len: 1024,
                };
                let reply =
                    client::start(live.tag, Arc::clone(&live.client), live.raft.clone(), op);
                let waited = tokio::time::timeout(CLIENT_TIMEOUT, reply).await;
                if let Ok(Ok(Reply::Write(Outcome::Acknowledged(index)))) = waited {
                    self.event(&format!("probe acknowledged at index {index}"));
                    return Some(index);
                }
            }
            tokio::time::sleep(STEP).await;
        }
        None
    }

    async fn wait_applied(&mut self, index: u64, deadline: Instant) {
        while Instant::now() < deadline {
            let behind = self.nodes.iter().any(|n| {
                n.live.as_ref().is_none_or(|l| {
                    l.raft
                        .metrics()
                        .borrow_watched()
                        .last_applied
                        .is_none_or(|a| a.index < index)
                })
            });
            if !behind {
                return;
            }
            tokio::time::sleep(STEP).await;
            self.restart_stopped().await;
            self.restart_all().await;
            self.observe();
        }
        self.violation(format!(
            "invariant 7: not every node applied index {index} within {LIVENESS_BOUND:?} after the faults stopped"
        ));
    }

    /// Every path: from the leader through the client service (checked
    /// against the model), then from each replica's own store (must agree).
    async fn read_back(&mut self) {
        let Some(leader) = self.leader() else {
            self.violation("no leader for the final read-back".to_string());
            return;
        };
        let mut paths = self.paths.clone();
        paths.sort();
        paths.dedup();
        for path in paths {
            let ticket = self.model.begin_read(&path);
            let live = self.nodes[leader]
                .live
                .as_ref()
                .expect("the leader is live");
            let reply = client::start(
                live.tag,
                Arc::clone(&live.client),
                live.raft.clone(),
                Op::Get { path: path.clone() },
            );
            let observed = match tokio::time::timeout(CLIENT_TIMEOUT, reply).await {
                Ok(Ok(Reply::Read(observed))) => observed,
                _ => Observed::Refused("no answer".to_string()),
            };
            self.coverage.final_reads += 1;
            let leader_id = self.nodes[leader].id;
            self.note_halt_refusal(&path, &observed);
            if let Observed::Refused(why) = &observed {
                if self.is_halted(&path) {
                    if !why.starts_with("DataLoss") {
                        self.violation(format!(
                            "invariant 6: the leader (node {leader_id}) did not report {path}, damaged on every replica, as data loss: {why}"
                        ));
                    }
                } else {
                    self.violation(format!(
                        "invariant 1: the leader (node {leader_id}) could not serve {path} after the faults stopped: {why}"
                    ));
                }
                continue;
            }
            self.check_read(ticket, &observed, leader_id);
            self.compare_replicas(&path, &observed);
        }
    }

    fn compare_replicas(&mut self, path: &str, expected: &Observed) {
        let mut found = Vec::new();
        for node in &self.nodes {
            let Some(live) = node.live.as_ref() else {
                continue;
            };
            let observed = match live.reader.get(path) {
                Ok(bytes) => client::observe(&bytes),
                Err(finkfs_node::StoreError::NotFound { .. }) => Observed::NotFound,
                Err(error) => Observed::Refused(error.to_string()),
            };
            // A node whose index took damage refuses the entries it hit,
            // loudly, until a repair rebuilds it (nothing rewrites an index
            // entry at runtime): every node, once the index was damaged on
            // every replica.
            let damaged_here = self.victims.contains(&node.id)
                || self.is_halted(path)
                || self.coverage.indexes_damaged_on_every_replica > 0;
            match (&observed, damaged_here) {
                (o, _) if o == expected => {}
                (Observed::Refused(_), true) => {}
                _ => found.push(format!(
                    "replicas disagree on {path}: leader serves {expected:?}, node {} holds {observed:?}",
                    node.id
                )),
            }
        }
        for violation in found {
            self.violation(violation);
        }
    }

    fn finish(mut self) -> RunReport {
        self.count_fired_faults();
        let counts = self.net.counts();
        self.coverage.messages = counts.sent;
        self.coverage.messages_lost = counts.lost + counts.partitioned;
        self.coverage.steps = self.step;
        self.coverage.terms_with_leader = self.safety.leaders().len() as u64;
        let line = format!("net {counts:?}");
        self.event(&line);
        RunReport {
            seed: self.config.seed,
            coverage: self.coverage,
            violations: self.violations,
            digest: self.trace.finalize().to_hex().to_string(),
        }
    }
}

/// The settings every simulated node runs with: short timeouts so runs
/// are short, small snapshots so installs happen.
fn node_config(id: NodeId) -> NodeConfig {
    let addr = MemberAddr::new(&node::peer_addr(id), &format!("node-{id}:7001"))
        .expect("simulated addresses are host:port");
    NodeConfig {
        id,
        data_dir: std::path::PathBuf::from(format!("node-{id}")),
        peer_listen: ([127, 0, 0, 1], 7000).into(),
        peer_advertise: Some(addr.peer.clone()),
        client_listen: ([127, 0, 0, 1], 7001).into(),
        client_advertise: addr.client.clone(),
        metrics_listen: None,
        initial_members: Vec::new(),
        rejoin: false,
        object_bytes_max: 1 << 20,
        write_timeout: Duration::from_secs(5),
        raft: RaftSettings {
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_every_entries: 64,
            journal_segment_bytes: finkfs_node::daemon::config::JOURNAL_SEGMENT_BYTES_DEFAULT,
        },
        apply: ApplySettings {
            sync_entries: 16,
            sync_interval: Duration::from_millis(100),
        },
        backup: None,
        scrub: ScrubSettings {
            period: Duration::ZERO,
            rate_cap_bytes_per_s: None,
        },
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
