//! `finkfs bench`: measurements reported as ratios to a limit measured in the
//! same run, because the disks finkfs runs on change speed under it.

mod cluster;
mod fsck;
mod journal;
mod size;
mod stats;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Journal append throughput with group commit, next to the raw
    /// fdatasync'd sequential write bandwidth of the same disk.
    Journal(journal::JournalBenchArgs),
    /// A 3-node cluster on this machine against the disk's limit and, with
    /// --peers, against etcd and Ceph: ingest, commit latency, reads,
    /// recovery, memory.
    #[command(long_about = cluster::LONG_HELP)]
    Cluster(cluster::ClusterBenchArgs),
    /// The offline check's speed (`finkfs fsck --data-dir`) next to the
    /// sequential read bandwidth of the same disk, from a cold page cache.
    Fsck(fsck::FsckBenchArgs),
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Journal(args) => journal::run(&args),
        BenchCommand::Cluster(args) => cluster::run(args),
        BenchCommand::Fsck(args) => fsck::run(&args),
    }
}
