//! `finkfs-chaos`: chaos harnesses over real `finkfs-node` processes, and
//! the deterministic simulator of a whole cluster in one process.
//!
//! `finkfs-chaos sim --seed S` (or `--seeds A..B`) runs simulated worlds:
//! see `finkfs_sim::world` and `docs/chaos.md`.
//!
//! `finkfs-chaos power-cut` runs a cluster whose data directories sit on
//! crash file systems and loops: write load, SIGKILL and power cut of one
//! node, a minority or every node (sometimes again while they recover),
//! bit flips at rest on one node, fsck of every cut node, restart, and a
//! read-back of every acknowledged object; then it prints a summary.
//!
//! Exit codes: 0 the run passed; 1 it could not run (no `/dev/fuse`, no
//! node binary, bad arguments); 2 it ran and found violations (the summary
//! lists them, with the seed and the command that replays the run); 101 the
//! harness itself broke (the panic message says where).

mod check;
mod damage;
mod mounts;
mod offline_fsck;
mod power_cut;
mod recovery;
mod schedule;
mod sim;
mod summary;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use finkfs_crashfs::Policy;

use crate::schedule::{Odds, Scope};

/// Exit code of a run that found violations.
const EXIT_VIOLATIONS: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "finkfs-chaos",
    about = "Chaos harnesses over real finkfs-node processes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Cut the power of nodes again and again under a write load.
    PowerCut(PowerCutArgs),
    /// Simulate a whole cluster in one process, on simulated disks and
    /// network, under power cuts, disk damage and network faults drawn
    /// from a seed; check every invariant after every step.
    Sim(sim::SimArgs),
}

#[derive(clap::Args, Debug)]
struct PowerCutArgs {
    /// Cycles to run (each one cut, plus a recovery cut now and then).
    #[arg(long, default_value_t = 3)]
    cycles: u32,
    /// Seed of the schedule and of every crash file system (node `i` gets
    /// `seed + i`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mean puts acknowledged between two cuts (each gap is drawn from
    /// 1..=2×this).
    #[arg(long, default_value_t = 40)]
    acks_per_cycle: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: u64,
    /// Nodes in the cluster (3, 5 or 7).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// What a cut does to unsynced writes.
    #[arg(long, value_enum, default_value_t = PolicyArg::Random)]
    policy: PolicyArg,
    /// Which nodes lose power at each cut: a seeded mix (one cut in three
    /// of all nodes), or always all, a minority, or one in turn.
    #[arg(long, value_enum, default_value_t = ScopeArg::Mixed)]
    scope: ScopeArg,
    /// Percent of cycles with a second cut while the nodes recover.
    #[arg(long, default_value_t = 25)]
    recovery_cut_percent: u32,
    /// Percent of cycles that flip a bit at rest on the damaged node (when
    /// it is among the cut nodes).
    #[arg(long, default_value_t = 25)]
    damage_percent: u32,
}

impl PowerCutArgs {
    fn replay(&self) -> String {
        format!(
            "finkfs-chaos power-cut --cycles {} --seed {} --acks-per-cycle {} --writers {} \
             --nodes {} --policy {} --scope {} --recovery-cut-percent {} --damage-percent {}",
            self.cycles,
            self.seed,
            self.acks_per_cycle,
            self.writers,
            self.nodes,
            value_name(self.policy),
            value_name(self.scope),
            self.recovery_cut_percent,
            self.damage_percent
        )
    }
}

fn value_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScopeArg {
    Mixed,
    All,
    Minority,
    One,
}

impl From<ScopeArg> for Scope {
    fn from(arg: ScopeArg) -> Scope {
        match arg {
            ScopeArg::Mixed => Scope::Mixed,
            ScopeArg::All => Scope::All,
            ScopeArg::Minority => Scope::Minority,
            ScopeArg::One => Scope::One,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PolicyArg {
    LoseUnsynced,
    KeepRandom,
    TearLast,
    Reorder,
    Random,
}

impl From<PolicyArg> for Policy {
    fn from(arg: PolicyArg) -> Policy {
        match arg {
            PolicyArg::LoseUnsynced => Policy::LoseUnsynced,
            PolicyArg::KeepRandom => Policy::KeepRandom,
            PolicyArg::TearLast => Policy::TearLast,
            PolicyArg::Reorder => Policy::Reorder,
            PolicyArg::Random => Policy::Random,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The simulated nodes log what real ones would (thousands of power
    // cuts' worth): off unless asked for.
    let default_filter = match cli.command {
        Command::Sim(_) => "off",
        Command::PowerCut(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FINKFS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Sim(args) => return sim::run(&args),
        Command::PowerCut(args) => power_cut::Plan {
            cycles: args.cycles,
            seed: args.seed,
            acks_per_cycle: args.acks_per_cycle,
            writers: args.writers,
            nodes: args.nodes,
            policy: args.policy.into(),
            scope: args.scope.into(),
            odds: Odds {
                recovery_cut_percent: args.recovery_cut_percent,
                damage_percent: args.damage_percent,
            },
            replay: args.replay(),
        }
        .validate()
        .and_then(power_cut::run),
    };
    match result {
        Ok(summary) if summary.passed() => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Ok(summary) => {
            println!("{summary}");
            ExitCode::from(EXIT_VIOLATIONS)
        }
        Err(error) => {
            eprintln!("finkfs-chaos: {error}");
            ExitCode::FAILURE
        }
    }
}
