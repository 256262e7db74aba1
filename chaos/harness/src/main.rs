//! `finkfs-chaos`: chaos harnesses over real `finkfs-node` processes.
//!
//! `finkfs-chaos power-cut` runs a three-node cluster whose data
//! directories sit on crash file systems, and loops: write load, SIGKILL
//! of every node (or of one), power cut of its disk, restart; then it
//! checks that every acknowledged object reads back byte-identical.
//!
//! Exit codes: 0 the run passed; 1 it could not run (no `/dev/fuse`, no
//! node binary, bad arguments); 101 an invariant failed (the panic message
//! says which, and the seed to replay it).

mod mounts;
mod power_cut;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use finkfs_crashfs::Policy;

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
    /// Cut the power of every node again and again under a write load.
    PowerCut(PowerCutArgs),
}

#[derive(clap::Args, Debug)]
struct PowerCutArgs {
    /// Power cuts to run.
    #[arg(long, default_value_t = 3)]
    cycles: u32,
    /// Seed of every crash file system (node `i` gets `seed + i`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Puts acknowledged between two cuts.
    #[arg(long, default_value_t = 40)]
    acks_per_cycle: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: u64,
    /// What a cut does to unsynced writes.
    #[arg(long, value_enum, default_value_t = PolicyArg::Random)]
    policy: PolicyArg,
    /// Which nodes lose power at each cut: all at once, or one in turn.
    #[arg(long, value_enum, default_value_t = ScopeArg::All)]
    scope: ScopeArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScopeArg {
    All,
    One,
}

impl From<ScopeArg> for power_cut::Scope {
    fn from(arg: ScopeArg) -> power_cut::Scope {
        match arg {
            ScopeArg::All => power_cut::Scope::All,
            ScopeArg::One => power_cut::Scope::One,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FINKFS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::PowerCut(args) => power_cut::Plan::new(
            args.cycles,
            args.seed,
            args.acks_per_cycle,
            args.writers,
            args.policy.into(),
            args.scope.into(),
        )
        .and_then(power_cut::run),
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("finkfs-chaos: {error}");
            ExitCode::FAILURE
        }
    }
}
