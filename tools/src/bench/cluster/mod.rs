//! `finkfs bench cluster`: finkfs against the physical limit of the disk
//! and against two peers, etcd and Ceph, in one run.
//!
//! Each round measures, in this order: the limit (fdatasync'd sequential
//! write and read bandwidth, small fdatasync'd append latency); replicated
//! ingest on a fresh 3-node cluster of real `finkfs-node` processes on
//! 127.0.0.1 for each object kind (alerts, 1 MiB, large) and client count,
//! with the commit latency of a single alert and reads of the alerts after
//! the busiest alert run; then, with `--peers`, etcd and Ceph at the same
//! sizes and client counts, one system up at a time. After the rounds,
//! recovery after every node lost power. Each workload gets a fresh cluster
//! in a directory under `--dir`, removed afterwards, so the peak RSS of its
//! nodes is that workload's and the disk never holds more than one.

mod disk;
mod ingest;
mod latency;
mod limit;
mod payload;
mod peers;
mod read;
mod recovery;
mod rss;
mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::bench::size::{parse_size, ByteSize};
use crate::demo::nodes::{self, LocalCluster, Timings};
use crate::demo::steps;
use ingest::{Budget, Workload};
use payload::{ObjectKind, Payloads};
use read::ReadKind;
use table::{IngestSample, Reads, RecoveryOutcome, Report, Round, Settings};

/// Nodes in the measured cluster.
const NODES: u64 = 3;
/// Size the peers are benched at for alert-sized objects (~ a ZTF alert).
pub const PEER_ALERT_BYTES: u64 = 55_000;
/// Size of the medium objects.
const MIB: u64 = 1 << 20;
/// Write-amplification guess for the disk-space checks when no 1 MiB run
/// measured it (the journal and the blocks each hold the payload once).
const AMPLIFICATION_GUESS: f64 = 2.5;
/// Share of the free disk space a workload may fill.
const DISK_SHARE_MAX: f64 = 0.8;
/// A workload refuses to start with less room than this for its objects.
const WORKLOAD_ROOM_MIN: u64 = 64 << 20;

/// The long `--help` text.
pub const LONG_HELP: &str = "\
Measures finkfs on this machine against the disk's own limit and, with
--peers, against etcd and Ceph, interleaved in rounds (limit, finkfs, etcd,
Ceph; repeated --rounds times), and prints medians and ratios:

  limit      fdatasync'd sequential write (1 MiB writes), 4 KiB append +
             fdatasync latency, sequential read with a cold cache
  ingest     3 finkfs-node processes on 127.0.0.1, alerts (--alerts DIR, or
             synthetic 35-80 KB ones), 1 MiB and --large-bytes objects, with
             each --clients count: MiB/s, obj/s, ratio to limit/3, bytes
             written per byte ingested per node, latency, peak RSS, CPU
  commit     one alert, one client: p50/p99 and the ratio to one fdatasync
  read       whole-object and 4 KiB range reads of the alerts
  recovery   SIGKILL of every node (the power-cut stand-in) with
             --recovery-bytes stored, then the time to the first
             acknowledged write
  peers      <DIR>/etcd.sh and <DIR>/ceph.sh at 55000 B and 1 MiB, with 1
             and the largest client count, one system up at a time

The table goes to stdout (--json for machines), progress to stderr. Targets
are reported as met or missed; they never fail the command. --quick runs a
few seconds with tiny sizes (for CI: its numbers mean nothing).

Examples:
  cargo build --release -p finkfs-tools -p finkfs-node
  target/release/finkfs bench cluster --dir /var/tmp/fb --alerts ALERT_DIR \\
      --peers PEERS_DIR --rounds 3 --seconds 10 --recovery-bytes 5GB
  finkfs bench cluster --quick --dir /tmp";

/// Flags of `finkfs bench cluster`.
#[derive(Debug, Args)]
pub struct ClusterBenchArgs {
    /// Directory on the disk to measure (not tmpfs); the nodes' data and the
    /// limit's scratch files go in a temporary folder inside it.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Write the alert files of DIR (cycled, each stamped unique) instead of
    /// synthetic alerts.
    #[arg(long, value_name = "DIR")]
    alerts: Option<PathBuf>,
    /// Directory holding etcd.sh and ceph.sh: bench the peers in the same run.
    #[arg(long, value_name = "DIR")]
    peers: Option<PathBuf>,
    /// Interleaved rounds; medians are taken over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Seconds of each ingest, read and peer workload.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Concurrent clients of the ingest workloads, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Bytes stored before the power cut of the recovery measurement
    /// (default 5GB; 0 skips it).
    #[arg(long, value_parser = parse_size)]
    recovery_bytes: Option<ByteSize>,
    /// Size of the large objects.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    large_bytes: ByteSize,
    /// A few seconds in all: tiny sizes, one round, no peers (for CI).
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The finkfs-node binary (default: the one next to this finkfs).
    #[arg(long, value_name = "PATH")]
    node_bin: Option<PathBuf>,
}

/// What the run will do, checked before anything starts.
struct Plan {
    dir: PathBuf,
    filesystem: &'static str,
    node_bin: PathBuf,
    alerts: Option<PathBuf>,
    peers: Option<PathBuf>,
    rounds: u32,
    duration: Duration,
    clients: Vec<usize>,
    recovery_bytes: u64,
    large_bytes: u64,
    limit: limit::LimitSizes,
    budget_bytes_max: u64,
    settle: Duration,
    quick: bool,
    json: bool,
}

impl Plan {
    fn checked(args: ClusterBenchArgs) -> anyhow::Result<Plan> {
        let filesystem = disk::check_on_disk(&args.dir)?;
        let node_bin = nodes::find_node_bin(args.node_bin.as_deref())?;
        anyhow::ensure!(
            args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0,
            "--seconds must be more than 0 and at most 3600"
        );
        anyhow::ensure!(
            !args.clients.is_empty() && args.clients.iter().all(|&c| (1..=256).contains(&c)),
            "--clients takes counts from 1 to 256, such as 1,4,16"
        );
        anyhow::ensure!(
            args.large_bytes.0 >= MIB && args.large_bytes.0 <= 1 << 30,
            "--large-bytes must be from 1MiB to 1GiB"
        );
        if let Some(peers) = &args.peers {
            anyhow::ensure!(!args.quick, "--quick runs no peers: drop --peers");
            for peer in peers::PEERS {
                let script = peers.join(format!("{peer}.sh"));
                anyhow::ensure!(script.is_file(), "--peers: {} is missing", script.display());
            }
        }
        let mut clients = args.clients;
        clients.sort_unstable();
        clients.dedup();
        let quick = args.quick;
        Ok(Plan {
            dir: args.dir,
            filesystem,
            node_bin,
            alerts: args.alerts,
            peers: args.peers,
            rounds: if quick { 1 } else { args.rounds },
            duration: Duration::from_secs_f64(if quick { 0.5 } else { args.seconds }),
            clients: if quick { vec![1, 4] } else { clients },
            recovery_bytes: match (quick, args.recovery_bytes) {
                (true, _) => 4 * MIB,
                (false, Some(bytes)) => bytes.0,
                (false, None) => 5_000_000_000,
            },
            large_bytes: if quick { 4 * MIB } else { args.large_bytes.0 },
            limit: limit::LimitSizes {
                sequential_bytes: if quick { 8 * MIB } else { 256 * MIB },
                appends: if quick { 20 } else { 200 },
            },
            budget_bytes_max: if quick { 64 * MIB } else { 2 << 30 },
            settle: Duration::from_millis(if quick { 200 } else { 1000 }),
            quick,
            json: args.json,
        })
    }

    /// Every ingest workload of a round, in order.
    fn workloads(&self) -> Vec<Workload> {
        let mut kinds = vec![ObjectKind::Alerts, ObjectKind::Fixed(MIB)];
        if self.large_bytes != MIB {
            kinds.push(ObjectKind::Fixed(self.large_bytes));
        }
        kinds
            .iter()
            .flat_map(|&kind| {
                self.clients
                    .iter()
                    .map(move |&clients| Workload { kind, clients })
            })
            .collect()
    }
}

/// The object templates of each kind, made once.
struct Templates {
    alerts: Arc<Payloads>,
    mib: Arc<Payloads>,
    large: Arc<Payloads>,
}

impl Templates {
    fn of(&self, kind: ObjectKind) -> Arc<Payloads> {
        match kind {
            ObjectKind::Alerts => self.alerts.clone(),
            ObjectKind::Fixed(MIB) => self.mib.clone(),
            ObjectKind::Fixed(_) => self.large.clone(),
        }
    }
}

/// Runs `finkfs bench cluster`.
pub fn run(args: ClusterBenchArgs) -> anyhow::Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let plan = Plan::checked(args)?;
    let scratch = tempfile::Builder::new()
        .prefix(".finkfs-bench-cluster-")
        .tempdir_in(&plan.dir)
        .with_context(|| format!("cannot make a scratch directory in {}", plan.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let templates = Templates {
        alerts: Arc::new(Payloads::alerts(plan.alerts.as_deref())?),
        mib: Arc::new(Payloads::fixed(MIB)?),
        large: Arc::new(Payloads::fixed(plan.large_bytes)?),
    };
    let settings = Settings {
        rounds: plan.rounds,
        seconds: plan.duration.as_secs_f64(),
        clients: plan.clients.clone(),
        alerts: describe_alerts(&plan, &templates.alerts),
        large_bytes: plan.large_bytes,
        dir: plan.dir.display().to_string(),
        filesystem: plan.filesystem.to_string(),
        load_average_at_start: load_average(),
        quick: plan.quick,
        command,
    };
    eprintln!(
        "finkfs bench cluster: {} round(s), {} ingest workloads of {:.1} s each{}",
        plan.rounds,
        plan.workloads().len(),
        plan.duration.as_secs_f64(),
        if plan.peers.is_some() {
            ", peers etcd and ceph"
        } else {
            ""
        }
    );
    let mut rounds = Vec::new();
    for round in 0..plan.rounds {
        eprintln!("round {}/{}", round + 1, plan.rounds);
        rounds.push(run_round(
            &plan,
            scratch.path(),
            &templates,
            &runtime,
            round,
        )?);
    }
    let recovery = runtime.block_on(recovery_phase(&plan, scratch.path(), &rounds));
    let report = Report {
        settings,
        rounds,
        recovery,
    };
    if plan.json {
        table::print_json(&report)?;
    } else {
        table::print_text(&report)?;
    }
    Ok(())
}

/// One round: limit, every finkfs workload, the peers.
fn run_round(
    plan: &Plan,
    scratch: &Path,
    templates: &Templates,
    runtime: &tokio::runtime::Runtime,
    round: u32,
) -> anyhow::Result<Round> {
    eprintln!("  limit: fdatasync'd write, append latency, cold read");
    let limit = limit::measure(scratch, plan.limit)?;
    eprintln!(
        "    write {:.1} MiB/s, append p50 {:.3} ms, read {:.1} MiB/s",
        limit.write_mib_s, limit.append_p50_ms, limit.read_mib_s
    );
    let max_clients = plan.clients.iter().copied().max().unwrap_or(1);
    let mut result = Round {
        limit,
        ingest: Vec::new(),
        commit: None,
        reads: None,
        peers: Vec::new(),
        peer_errors: Vec::new(),
    };
    for workload in plan.workloads() {
        let with_reads = workload.kind == ObjectKind::Alerts && workload.clients == max_clients;
        let run = runtime.block_on(finkfs_workload(
            plan,
            scratch,
            templates.of(workload.kind),
            workload,
            with_reads,
        ))?;
        let sample = sample(&run, &result.limit, workload);
        eprintln!(
            "    {:.1} MiB/s, {:.1} obj/s, p50 {:.2} ms, peak RSS {:.0} MiB{}",
            sample.mib_per_s,
            sample.ops_per_s,
            sample.p50_ms,
            sample.peak_rss_mib,
            if sample.capped {
                " (stopped early at the byte cap)"
            } else {
                ""
            }
        );
        if workload.kind == ObjectKind::Alerts && workload.clients == 1 {
            result.commit = Some(latency::CommitLatency::new(
                &run.ingested.latencies,
                result.limit.append_p50_ms,
            ));
        }
        result.ingest.push(sample);
        result.reads = result.reads.or(run.reads);
    }
    if let Some(dir) = &plan.peers {
        let seconds = plan.duration.as_secs_f64().ceil() as u64;
        let mut benches = vec![(PEER_ALERT_BYTES, max_clients), (MIB, max_clients)];
        if max_clients != 1 {
            benches.extend([(PEER_ALERT_BYTES, 1), (MIB, 1)]);
        }
        for peer in peers::PEERS {
            // A peer that fails (a full disk, a daemon that died) costs its
            // figures for this round, not the whole run.
            match peers::run(dir, peer, &benches, seconds, round) {
                Ok(lines) => result.peers.extend(lines),
                Err(error) => {
                    eprintln!("  {peer} failed: {error:#}");
                    result.peer_errors.push(format!("{error:#}"));
                }
            }
        }
    }
    Ok(result)
}

/// What one finkfs workload brought back.
struct WorkloadRun {
    ingested: ingest::Ingested,
    peak_rss_bytes: u64,
    reads: Option<Reads>,
}

/// Starts a fresh cluster, runs `workload` (and the reads, if asked),
/// stops the cluster and removes its data.
async fn finkfs_workload(
    plan: &Plan,
    scratch: &Path,
    payloads: Arc<Payloads>,
    workload: Workload,
    with_reads: bool,
) -> anyhow::Result<WorkloadRun> {
    eprintln!(
        "  finkfs: {} x {} client(s), {:.1} s",
        workload.label(),
        workload.clients,
        plan.duration.as_secs_f64()
    );
    let mut cluster =
        LocalCluster::start_under(&plan.node_bin, NODES, Timings::default(), scratch).await?;
    let (client, _, _) = steps::init(&cluster).await?;
    let pids: Vec<u32> = cluster.nodes().iter().filter_map(|n| n.pid()).collect();
    let budget = Budget {
        duration: plan.duration,
        bytes_max: plan.budget_bytes_max.min(disk_room(scratch)?),
        settle: plan.settle,
    };
    let ingested = ingest::run(&client, &pids, payloads, workload, budget, 0).await?;
    let peak_rss_bytes = max_peak_rss(&pids)?;
    let reads = if with_reads {
        Some(reads(plan, &client, &pids, &ingested, workload.clients).await?)
    } else {
        None
    };
    cluster.check_running()?;
    cluster.shutdown();
    Ok(WorkloadRun {
        ingested,
        peak_rss_bytes,
        reads,
    })
}

/// Whole-object and range reads of what `ingested` stored.
async fn reads(
    plan: &Plan,
    client: &finkfs_node::client::Client,
    pids: &[u32],
    ingested: &ingest::Ingested,
    clients: usize,
) -> anyhow::Result<Reads> {
    let objects = Arc::new(ingested.stored.clone());
    let reset = pids.iter().all(|&pid| rss::reset_peak(pid));
    eprintln!(
        "  finkfs: reads of {} alerts, {clients} client(s)",
        objects.len()
    );
    let whole = read::run(
        client,
        objects.clone(),
        ReadKind::Whole,
        clients,
        plan.duration,
    )
    .await?;
    let range = read::run(client, objects, ReadKind::Range, clients, plan.duration).await?;
    let peak = max_peak_rss(pids)?;
    if !reset {
        eprintln!("    (the kernel refused to reset the peak RSS: it includes the ingest)");
    }
    Ok(Reads {
        clients,
        whole,
        range,
        peak_rss_mib: peak as f64 / MIB as f64,
    })
}

/// Bytes a workload may ingest without filling the disk: three nodes each
/// write about [`AMPLIFICATION_GUESS`] times what they store.
fn disk_room(scratch: &Path) -> anyhow::Result<u64> {
    let free = disk::free_bytes(scratch)?;
    let room = (free as f64 * DISK_SHARE_MAX / (NODES as f64 * AMPLIFICATION_GUESS)) as u64;
    anyhow::ensure!(
        room >= WORKLOAD_ROOM_MIN,
        "only {} MB free on the disk under test: not enough for a workload",
        free / 1_000_000
    );
    Ok(room)
}

fn max_peak_rss(pids: &[u32]) -> anyhow::Result<u64> {
    let mut peak = 0;
    for &pid in pids {
        peak = peak.max(rss::peak_rss_bytes(pid)?);
    }
    Ok(peak)
}

/// The table row of one workload.
fn sample(run: &WorkloadRun, limit: &limit::Limit, workload: Workload) -> IngestSample {
    let ingested = &run.ingested;
    IngestSample {
        workload: workload.label(),
        clients: workload.clients,
        ops_per_s: ingested.ops_per_s(),
        mib_per_s: ingested.mib_per_s(),
        over_limit_3: ingested.mib_per_s() / (limit.write_mib_s / NODES as f64),
        amplification_per_node: ingested.amplification_per_node(NODES as usize),
        p50_ms: ingested.latencies.quantile_ms(0.50),
        p99_ms: ingested.latencies.quantile_ms(0.99),
        peak_rss_mib: run.peak_rss_bytes as f64 / MIB as f64,
        nodes_cpu_percent: ingested.nodes.cpu_percent,
        bench_cpu_percent: ingested.bench_cpu_percent,
        errors: ingested.errors,
        capped: ingested.capped,
    }
}

/// Recovery after a power cut of every node, if the disk has room for it.
async fn recovery_phase(plan: &Plan, scratch: &Path, rounds: &[Round]) -> RecoveryOutcome {
    if plan.recovery_bytes == 0 {
        return RecoveryOutcome::Skipped("--recovery-bytes 0".into());
    }
    let amplifications: Vec<f64> = rounds
        .iter()
        .flat_map(|r| r.ingest.iter())
        .filter(|s| s.workload == "1MiB")
        .map(|s| s.amplification_per_node)
        .collect();
    let amplification = if amplifications.is_empty() {
        AMPLIFICATION_GUESS
    } else {
        crate::bench::stats::median(&amplifications)
    };
    let needed = (plan.recovery_bytes as f64 * NODES as f64 * amplification * 1.2) as u64;
    match disk::free_bytes(scratch) {
        Ok(free) if free < needed => {
            return RecoveryOutcome::Skipped(format!(
                "{} bytes stored would need about {needed} bytes on disk (3 nodes, amplification {amplification:.2}); {free} are free",
                plan.recovery_bytes
            ))
        }
        Err(error) => return RecoveryOutcome::Skipped(format!("{error:#}")),
        Ok(_) => {}
    }
    eprintln!(
        "recovery: {} bytes stored, then every node SIGKILLed",
        plan.recovery_bytes
    );
    match recovery_run(plan, scratch).await {
        Ok(points) => RecoveryOutcome::Measured(points),
        Err(error) => RecoveryOutcome::Skipped(format!("failed: {error:#}")),
    }
}

async fn recovery_run(plan: &Plan, scratch: &Path) -> anyhow::Result<Vec<recovery::Recovery>> {
    let mut cluster =
        LocalCluster::start_under(&plan.node_bin, NODES, Timings::default(), scratch).await?;
    let (client, _, _) = steps::init(&cluster).await?;
    // A small amount first, then the full one: recovery should not grow
    // with what is stored.
    let small = (plan.recovery_bytes / 16).clamp(MIB.min(plan.recovery_bytes), plan.recovery_bytes);
    let points = recovery::measure(&mut cluster, &client, &[small, plan.recovery_bytes]).await?;
    cluster.shutdown();
    Ok(points)
}

fn describe_alerts(plan: &Plan, alerts: &Payloads) -> String {
    let kind = if plan.alerts.is_some() {
        "real alert files"
    } else {
        "synthetic alerts sized like ZTF's (35-80 KB)"
    };
    format!(
        "{} {kind}, mean {:.1} KB, each stamped unique",
        alerts.templates(),
        alerts.mean_bytes() / 1000.0
    )
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
