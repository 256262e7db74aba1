//! The command line of `finkfs`: the commands and the global flags. Each
//! command's own flags live in its module.

use clap::{Parser, Subcommand};

use crate::exit::EXIT_CODES_HELP;
use crate::{backup, bench, client, demo, fsck};

const ABOUT: &str = "finkfs: a resilient, Raft-replicated store for astronomical alert lakes";

const LONG_ABOUT: &str = "\
finkfs: a resilient, Raft-replicated store for astronomical alert lakes.

Every object is acknowledged only once it is fsynced on a majority of nodes,
and every byte read is checked against its BLAKE3.

Try it on one machine, with nothing to configure:
  finkfs demo

Check a stopped node's data directory, offline, or every copy of a cluster:
  finkfs fsck --data-dir /srv/finkfs
  finkfs --cluster 10.0.0.1:7002 fsck

Talk to a cluster (the client address of any node; the leader is found):
  finkfs --cluster 10.0.0.1:7002,10.0.0.2:7002 put alert.avro ztf/raw/alert.avro
  export FINKFS_CLUSTER=10.0.0.1:7002
  finkfs ls -l ztf/raw/
  finkfs status";

/// The `finkfs` command line.
#[derive(Debug, Parser)]
#[command(
    name = "finkfs",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES_HELP,
    arg_required_else_help = true,
    propagate_version = true
)]
pub struct Cli {
    /// Client addresses (HOST:PORT) of one or more nodes of the cluster,
    /// comma separated. Any node will do: requests find the leader.
    #[arg(
        long,
        global = true,
        env = "FINKFS_CLUSTER",
        hide_env_values = true,
        value_name = "ADDR[,ADDR…]",
        value_delimiter = ','
    )]
    pub cluster: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// put, get, ls, stat, rm, status, cluster: talk to a cluster.
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Run 3 nodes here, write a night of alerts, kill the leader, check every alert.
    #[command(long_about = demo::LONG_HELP)]
    Demo(demo::DemoArgs),
    /// Measure finkfs against the physical limits of this machine's disk.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Check a stopped node's data directory (offline, --repair mends it), or
    /// every member's copies of a running cluster (--cluster).
    #[command(long_about = fsck::LONG_HELP)]
    Fsck(fsck::FsckArgs),
    /// Back up a node, and list, verify or prune the backups of a target.
    #[command(subcommand, long_about = backup::LONG_HELP)]
    Backup(backup::BackupCommand),
    /// Restore a backup into an empty data directory as a new one-node cluster.
    #[command(long_about = backup::RESTORE_LONG_HELP)]
    Restore(backup::RestoreArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
