//! `finkfs-chaos sim`: runs worlds of the deterministic simulator
//! (`finkfs_sim::world`) for one seed or a range, prints each run's
//! outcome and digest, and the coverage summed over the range.

use std::ops::Range;
use std::process::ExitCode;

use finkfs_sim::world::{self, Coverage, WorldConfig};

use crate::EXIT_VIOLATIONS;

/// What to simulate.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// One seed to run.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// A range of seeds, `A..B` (B excluded).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<Range<u64>>,
    /// Steps per run (50 ms of virtual time each; faults stop at 80 %).
    #[arg(long, default_value_t = 200)]
    steps: u64,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    nodes: u64,
    /// Also arm I/O errors, full disks, misdirected and lost writes on the
    /// damaged node's disk while it runs (not yet all survived: see
    /// docs/chaos.md).
    #[arg(long)]
    running_faults: bool,
    /// Print each run's event trace to stderr.
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

/// Runs the worlds; exit 0 when none broke an invariant, 2 otherwise.
pub fn run(args: &SimArgs) -> ExitCode {
    if args.trace {
        // Read by the world for every event it records.
        std::env::set_var("FINKFS_SIM_TRACE", "1");
    }
    let seeds = match (&args.seeds, args.seed) {
        (Some(range), _) => range.clone(),
        (None, Some(seed)) => seed..seed + 1,
        (None, None) => 0..1,
    };
    let mut total = Coverage::default();
    let mut failed = Vec::new();
    for seed in seeds {
        let config = WorldConfig {
            seed,
            nodes: args.nodes,
            steps: args.steps,
            bug: None,
            running_faults: args.running_faults,
        };
        let report = world::run(&config);
        total.add(&report.coverage);
        if report.violations.is_empty() {
            println!("seed {seed}: ok, digest {}", report.digest);
        } else {
            println!("seed {seed}: VIOLATIONS, digest {}", report.digest);
            for violation in report.violations.iter().take(5) {
                println!("  {violation}");
            }
            if report.violations.len() > 5 {
                println!("  ... {} more", report.violations.len() - 5);
            }
            println!("  replay: {}", config.replay_line());
            failed.push(seed);
        }
    }
    println!();
    print!("{total}");
    if failed.is_empty() {
        println!("0 violations");
        ExitCode::SUCCESS
    } else {
        println!("seeds with violations ({}): {failed:?}", failed.len());
        ExitCode::from(EXIT_VIOLATIONS)
    }
}
