//! `finkfs rm REMOTE`: removes an object.

use anyhow::Context;
use clap::Args;

use super::Cluster;
use crate::exit::Outcome;

const EXAMPLES: &str = "\
Examples:
  finkfs rm ztf/raw/year=2021/month=12/day=14/1810386362015015011.avro
  finkfs rm -f maybe/there.avro     # no error if nothing is there

Exits with 1 when nothing was stored at the path (unless -f).";

/// Flags of `finkfs rm`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct RmArgs {
    /// A path with no object is not a problem.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The object path in the cluster.
    pub remote: String,
}

/// Runs `finkfs rm`.
pub async fn run(cluster: Cluster, args: RmArgs) -> anyhow::Result<Outcome> {
    let client = cluster.connect().await?;
    let outcome = client
        .delete(&args.remote)
        .await
        .with_context(|| format!("cannot remove {}", args.remote))?;
    if outcome.existed {
        outln!("removed {} (log index {})", args.remote, outcome.log_index)?;
        return Ok(Outcome::Clean);
    }
    if args.force {
        return Ok(Outcome::Clean);
    }
    eprintln!("finkfs: no object at {}", args.remote);
    Ok(Outcome::Problems)
}
