//! `finkfs demo`: the whole point of finkfs in one command, with nothing to
//! configure.
//!
//! It starts a 3-node cluster of real `finkfs-node` processes on
//! 127.0.0.1, creates the cluster, writes a night of alerts, kills the
//! leader with SIGKILL, times the election of a new one, keeps writing
//! while the old leader is down, reads back every alert and compares it
//! byte for byte (BLAKE3) with what was written, restarts the killed node
//! and times its catch-up, then stops every node with SIGTERM. Each step is
//! narrated on stdout; progress goes to stderr. It exits with 0 only if
//! every alert was served byte-identical (and every step worked).

pub(crate) mod alerts;
pub(crate) mod nodes;
pub(crate) mod steps;
mod story;
mod summary;

use std::path::PathBuf;

use clap::Args;

use crate::client::block_on;
use crate::exit::Outcome;
use alerts::Alerts;
use nodes::Timings;

/// Nodes in the demo's cluster.
pub const DEMO_NODES: u64 = 3;
/// Synthetic alerts written when `--count` is not given.
pub const DEMO_COUNT_DEFAULT: u64 = 2000;
/// One alert in this many is written while the old leader is down.
pub const OUTAGE_SHARE: u64 = 10;

/// The long `--help` text (set where the command is declared).
pub const LONG_HELP: &str = "\
Runs the whole story of finkfs on this machine, with nothing to configure:

  1. starts 3 finkfs-node processes on 127.0.0.1 (free ports, temporary data
     directories), and
  2. creates a cluster of them;
  3. writes a night of alerts under ztf/raw/year=2021/month=12/day=14/ and
     reports the throughput (each alert is acknowledged only once it is
     fsynced on 2 of the 3 nodes);
  4. kills the leader with SIGKILL and times the election of a new one;
  5. writes the last tenth of the alerts while the old leader is down;
  6. reads back every alert and checks it is byte-identical (BLAKE3) to what
     was written;
  7. restarts the killed node and times how long it takes to catch up;

then prints a summary and stops the nodes with SIGTERM (also on Ctrl-C or an
error). The data directories are removed unless --keep.

The alerts are synthetic by default: sizes drawn like real ZTF alerts (35-80
KB), incompressible content, everything derived from --seed. --alerts DIR
writes real alert files instead (each under the night's prefix by its name).

The node binary is looked for next to finkfs; `cargo build --release` builds
both. Examples:
  cargo build --release && target/release/finkfs demo
  finkfs demo --count 20000 --seed 7
  finkfs demo --alerts ./ztf-alerts --keep

Exits with 0 only if every alert was served byte-identical after the crash
and every step worked; 1 if a check failed; 2 if the demo could not run.";

/// Flags of `finkfs demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Alerts to write in all (the last tenth while the leader is down).
    /// Default: 2000 synthetic ones; with --alerts, every file in DIR.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: Option<u64>,
    /// Seed of the synthetic alerts (same seed, same bytes).
    #[arg(long, default_value_t = 14)]
    pub seed: u64,
    /// Write the alert files found under DIR instead of synthetic ones.
    #[arg(long, value_name = "DIR")]
    pub alerts: Option<PathBuf>,
    /// Keep the nodes' data directories and logs (their place is printed).
    #[arg(long)]
    pub keep: bool,
    /// The finkfs-node binary (default: the one next to this finkfs).
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Uploads and reads in flight at once.
    #[arg(short = 'j', long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

/// What the demo will do, checked before anything starts.
struct Plan {
    node_bin: PathBuf,
    alerts: Alerts,
    keep: bool,
    in_flight: usize,
    timings: Timings,
}

impl Plan {
    fn checked(args: DemoArgs) -> anyhow::Result<Plan> {
        let node_bin = nodes::find_node_bin(args.node_bin.as_deref())?;
        let alerts = match &args.alerts {
            Some(dir) => Alerts::from_dir(dir, args.count)?,
            None => Alerts::Synthetic {
                seed: args.seed,
                count: args.count.unwrap_or(DEMO_COUNT_DEFAULT),
            },
        };
        Ok(Plan {
            node_bin,
            alerts,
            keep: args.keep,
            in_flight: usize::from(args.jobs),
            timings: Timings::default(),
        })
    }

    /// Alerts written before the crash, then during the outage.
    fn phases(&self) -> (std::ops::Range<u64>, std::ops::Range<u64>) {
        let total = self.alerts.len();
        let before = total - total / OUTAGE_SHARE;
        (0..before, before..total)
    }
}

/// Runs `finkfs demo`; Ctrl-C or SIGTERM stops it and its nodes.
pub fn run(args: DemoArgs) -> anyhow::Result<Outcome> {
    let plan = Plan::checked(args)?;
    block_on(async move {
        tokio::select! {
            outcome = story::tell(plan) => outcome,
            signal = interrupted() => {
                // The demo (and its cluster, whose drop stops the nodes) is
                // dropped when this branch is taken.
                Err(anyhow::anyhow!("interrupted by {signal}; the demo's nodes were stopped"))
            }
        }
    })
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(count: u64) -> Plan {
        Plan {
            node_bin: PathBuf::new(),
            alerts: Alerts::Synthetic { seed: 1, count },
            keep: false,
            in_flight: 1,
            timings: Timings::default(),
        }
    }

    #[test]
    fn a_tenth_of_the_alerts_is_written_during_the_outage() {
        assert_eq!(plan(2000).phases(), (0..1800, 1800..2000));
        assert_eq!(plan(5).phases(), (0..5, 5..5));
    }

    #[test]
    fn missing_node_binary_is_an_error_before_anything_starts() {
        let args = DemoArgs {
            count: Some(1),
            seed: 1,
            alerts: None,
            keep: false,
            node_bin: Some(PathBuf::from("/nonexistent/finkfs-node")),
            jobs: 1,
        };
        let error = Plan::checked(args).err().expect("refused").to_string();
        assert!(error.contains("cargo build --release"), "{error}");
    }
}
