//! The power-cut scenario: load, SIGKILL nodes, cut their disks, restart,
//! and at the end check every acknowledged object.
//!
//! With `Scope::All` every node's disk loses power at once (the whole-rack
//! failure of the design's fault model), so nothing survives but what the
//! nodes fsynced; with `Scope::One` one node at a time loses power while
//! the other two serve on. A Put acknowledged before a cut was fsynced on a
//! majority, so it must read back byte-identical however the cut treats the
//! unsynced rest.

use std::fmt;
use std::time::Duration;

use finkfs_crashfs::{CutReport, Policy};
use finkfs_tests::load::{verify, WriteLoad};
use finkfs_tests::{LocalCluster, Settings};

use crate::mounts::CrashDisks;

/// Longest wait for any phase (acks, restart, leader).
const PHASE_TIMEOUT: Duration = Duration::from_secs(90);
/// Cuts a run may ask for: each takes seconds, and a run must end.
const CYCLES_MAX: u32 = 1000;
/// Writers a run may ask for.
const WRITERS_MAX: u64 = 64;
/// Puts acknowledged after the last restart, to show the cluster serves again.
const ACKS_AFTER_LAST_CUT: u64 = 10;

/// Which nodes lose power at each cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every node at once: only what a majority fsynced survives.
    All,
    /// One node, the next in turn; the other two keep serving.
    One,
}

/// A checked power-cut run.
#[derive(Debug, Clone)]
pub struct Plan {
    cycles: u32,
    seed: u64,
    acks_per_cycle: u64,
    writers: u64,
    policy: Policy,
    scope: Scope,
}

impl Plan {
    pub fn new(
        cycles: u32,
        seed: u64,
        acks_per_cycle: u64,
        writers: u64,
        policy: Policy,
        scope: Scope,
    ) -> Result<Plan, String> {
        if !(1..=CYCLES_MAX).contains(&cycles) {
            return Err(format!("--cycles must be 1..={CYCLES_MAX}, not {cycles}"));
        }
        if !(1..=WRITERS_MAX).contains(&writers) {
            return Err(format!(
                "--writers must be 1..={WRITERS_MAX}, not {writers}"
            ));
        }
        if acks_per_cycle == 0 {
            return Err("--acks-per-cycle must be at least 1".to_string());
        }
        Ok(Plan {
            cycles,
            seed,
            acks_per_cycle,
            writers,
            policy,
            scope,
        })
    }
}

/// What a passing run did.
#[derive(Debug)]
pub struct Summary {
    seed: u64,
    cuts: Vec<(u64, Vec<(u64, CutReport)>)>,
    acked: usize,
    failed: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (acked, reports)) in self.cuts.iter().enumerate() {
            write!(f, "cut {}: after {acked} acknowledged puts;", n + 1)?;
            for (id, report) in reports {
                write!(
                    f,
                    " node {id} kept {}/{} unsynced ops;",
                    report.kept_ops, report.pending_ops
                )?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "power-cut passed (seed {}): {} puts acknowledged, all read back intact; {} failed",
            self.seed, self.acked, self.failed
        )
    }
}

/// Runs the plan; `Err` when it cannot run. A broken invariant panics with
/// the seed in the message.
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
    // Declared first so that it drops last: on a panic the cluster kills its
    // nodes before the disks unmount (a mount in use cannot be unmounted).
    let mut disks_slot: Option<CrashDisks> = None;
    let mut cluster = LocalCluster::start(Settings::default()).await;
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
    let load = WriteLoad::new("power-cut", plan.seed);
    let steps = async {
        let result = cut_cycles(&plan, &mut cluster, disks, &load).await;
        load.stop();
        result
    };
    let ((), outcome) = tokio::join!(load.run(&client, plan.writers), steps);
    let cuts = outcome.map_err(|e| format!("seed {}: {e}", plan.seed))?;

    let report = load.report();
    let verified = verify(&client, &report).await;
    assert_eq!(verified.acked, report.acked(), "seed {}", plan.seed);
    cluster.kill_many(&ids);
    drop(disks_slot);
    Ok(Summary {
        seed: plan.seed,
        cuts,
        acked: report.acked(),
        failed: report.failed(),
    })
}

type CutLog = Vec<(u64, Vec<(u64, CutReport)>)>;

async fn cut_cycles(
    plan: &Plan,
    cluster: &mut LocalCluster,
    disks: &CrashDisks,
    load: &WriteLoad,
) -> Result<CutLog, String> {
    let ids = cluster.ids();
    let mut cuts = Vec::new();
    for cycle in 0..plan.cycles {
        load.wait_for_acks(load.acked() + plan.acks_per_cycle, PHASE_TIMEOUT)
            .await?;
        let victims = match plan.scope {
            Scope::All => ids.clone(),
            Scope::One => {
                vec![ids[(plan.seed.wrapping_add(u64::from(cycle)) % ids.len() as u64) as usize]]
            }
        };
        cluster.kill_many(&victims);
        let acked_at_cut = load.acked();
        let reports = disks.cut(&victims, plan.policy)?;
        for id in &victims {
            cluster.restart(*id).await;
        }
        cluster.wait_for_leader(PHASE_TIMEOUT).await;
        cuts.push((acked_at_cut, reports));
    }
    load.wait_for_acks(load.acked() + ACKS_AFTER_LAST_CUT, PHASE_TIMEOUT)
        .await?;
    Ok(cuts)
}
