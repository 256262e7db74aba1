//! `finkfs-chaos sim`: runs worlds of the deterministic simulator
//! (`finkfs_sim::world`) for one seed, a range, or as a soak that keeps
//! drawing new seeds until its time is up; prints each run's outcome and
//! digest, every failure with the line that replays it, and the coverage
//! summed over the runs.
//!
//! Each world is single-threaded, so `--jobs` worlds run at once, one per
//! thread; a world's outcome depends only on its seed, never on which
//! thread ran it or when.

use std::ops::Range;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use finkfs_sim::world::{self, Coverage, RunReport, WorldConfig};

use crate::EXIT_VIOLATIONS;

/// What to simulate.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// One seed to run (with --soak: the first seed of the soak).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// A range of seeds, `A..B` (B excluded).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<Range<u64>>,
    /// Keep running consecutive seeds, from --seed (or from one drawn from
    /// the clock, printed first), until --minutes have passed. Failures
    /// are printed as they are found, with their replay lines.
    #[arg(long, conflicts_with = "seeds")]
    soak: bool,
    /// How long a soak runs, in minutes (fractions allowed).
    #[arg(long, default_value_t = 60.0, requires = "soak", value_parser = parse_minutes)]
    minutes: f64,
    /// Worlds run at once, one per thread (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: Option<u64>,
    /// Steps per run (50 ms of virtual time each; faults stop at 80 %).
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    nodes: u64,
    /// Leave out the faults armed on the damaged node's disk while it
    /// runs (I/O errors, a full disk, misdirected and lost writes): only
    /// power cuts, damage at rest and network faults. Replays runs made
    /// without them.
    #[arg(long)]
    no_running_faults: bool,
    /// Leave out the damage of one object on every replica (about a third
    /// of the runs, once, while every node runs), and with it the check
    /// that the cluster halts that object: DATA_LOSS on every read, never
    /// its bytes, never "not found". Replays runs made without it.
    #[arg(long)]
    no_every_replica_damage: bool,
    /// Print each run's event trace to stderr (use with one job).
    #[arg(long)]
    trace: bool,
}

fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not a range A..B"))?;
    let a: u64 = a.parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("{b:?}: {e}"))?;
    if a >= b {
        return Err(format!("the range {text} holds no seed"));
    }
    Ok(a..b)
}

fn parse_minutes(text: &str) -> Result<f64, String> {
    let minutes: f64 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if !(minutes > 0.0 && minutes <= 1e6) {
        return Err(format!("{text} is not a number of minutes above 0"));
    }
    Ok(minutes)
}

/// Which seeds to run, and until when.
struct Plan {
    seeds: Range<u64>,
    /// A soak stops handing out seeds at this instant.
    deadline: Option<Instant>,
}

impl SimArgs {
    fn plan(&self) -> Plan {
        if self.soak {
            let first = self.seed.unwrap_or_else(clock_seed);
            println!(
                "soak: seeds from {first}, for {} minute(s), {} node(s), {} job(s)",
                self.minutes,
                self.nodes,
                self.jobs()
            );
            return Plan {
                seeds: first..u64::MAX,
                deadline: Some(Instant::now() + Duration::from_secs_f64(self.minutes * 60.0)),
            };
        }
        let seeds = match (&self.seeds, self.seed) {
            (Some(range), _) => range.clone(),
            (None, Some(seed)) => seed..seed + 1,
            (None, None) => 0..1,
        };
        Plan {
            seeds,
            deadline: None,
        }
    }

    fn jobs(&self) -> u64 {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64))
    }

    fn config(&self, seed: u64) -> WorldConfig {
        WorldConfig {
            seed,
            nodes: self.nodes,
            steps: self.steps,
            bug: None,
            running_faults: !self.no_running_faults,
            every_replica_damage: !self.no_every_replica_damage,
        }
    }
}

/// A first seed for a soak that nobody chose: a soak should explore.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_secs() % 1_000_000_000)
}

/// Runs the worlds; exit 0 when none broke an invariant, 2 otherwise.
pub fn run(args: &SimArgs) -> ExitCode {
    if args.trace {
        // Read by the world for every event it records.
        std::env::set_var("FINKFS_SIM_TRACE", "1");
    }
    let plan = args.plan();
    let started = Instant::now();
    let (sender, results) = mpsc::channel::<(u64, RunReport)>();
    let next = AtomicU64::new(plan.seeds.start);
    let mut total = Coverage::default();
    let mut failed = Vec::new();
    let mut runs = 0u64;
    std::thread::scope(|scope| {
        for _ in 0..args.jobs().min(plan.seeds.end - plan.seeds.start) {
            let sender = sender.clone();
            let (next, plan) = (&next, &plan);
            scope.spawn(move || {
                while let Some(seed) = take_seed(next, plan) {
                    let report = world::run(&args.config(seed));
                    if sender.send((seed, report)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        let mut last_progress = Instant::now();
        for (seed, report) in results {
            runs += 1;
            total.add(&report.coverage);
            print_outcome(seed, &report, &args.config(seed));
            if !report.violations.is_empty() {
                failed.push(seed);
            }
            if plan.deadline.is_some() && last_progress.elapsed() >= Duration::from_secs(30) {
                last_progress = Instant::now();
                eprintln!(
                    "soak: {runs} run(s) in {:.0} s, {} power cuts, {} failing seed(s)",
                    started.elapsed().as_secs_f64(),
                    total.cuts_total(),
                    failed.len()
                );
            }
        }
    });
    println!();
    println!("{runs} run(s) in {:.1} s", started.elapsed().as_secs_f64());
    print!("{total}");
    if failed.is_empty() {
        println!("0 violations");
        ExitCode::SUCCESS
    } else {
        failed.sort_unstable();
        println!("seeds with violations ({}): {failed:?}", failed.len());
        ExitCode::from(EXIT_VIOLATIONS)
    }
}

/// The next seed to run, or None once the range or the soak's time is up.
fn take_seed(next: &AtomicU64, plan: &Plan) -> Option<u64> {
    if plan
        .deadline
        .is_some_and(|deadline| Instant::now() >= deadline)
    {
        return None;
    }
    let seed = next.fetch_add(1, Ordering::Relaxed);
    (seed < plan.seeds.end).then_some(seed)
}

fn print_outcome(seed: u64, report: &RunReport, config: &WorldConfig) {
    if report.violations.is_empty() {
        println!("seed {seed}: ok, digest {}", report.digest);
        return;
    }
    println!("seed {seed}: VIOLATIONS, digest {}", report.digest);
    for violation in report.violations.iter().take(5) {
        println!("  {violation}");
    }
    if report.violations.len() > 5 {
        println!("  ... {} more", report.violations.len() - 5);
    }
    println!("  replay: {}", config.replay_line());
}
