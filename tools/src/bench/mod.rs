//! `finkfs bench`: measurements reported as ratios to a limit measured in the
//! same run, because the disks finkfs runs on change speed under it.

mod journal;
mod size;
mod stats;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Journal append throughput with group commit, next to the raw
    /// fdatasync'd sequential write bandwidth of the same disk.
    Journal(journal::JournalBenchArgs),
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Journal(args) => journal::run(&args),
    }
}
