//! `finkfs stat REMOTE`: what is stored at a path.

use anyhow::Context;
use clap::Args;

use super::Cluster;
use crate::exit::Outcome;
use crate::format;

const EXAMPLES: &str = "\
Example:
  finkfs stat ztf/raw/year=2021/month=12/day=14/1810386362015015011.avro

Exits with 1 when nothing is stored at the path.";

/// Flags of `finkfs stat`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct StatArgs {
    /// The object path in the cluster.
    pub remote: String,
}

/// Runs `finkfs stat`.
pub async fn run(cluster: Cluster, args: StatArgs) -> anyhow::Result<Outcome> {
    let client = cluster.connect().await?;
    let info = client
        .stat(&args.remote)
        .await
        .with_context(|| format!("cannot stat {}", args.remote))?;
    let Some(info) = info else {
        eprintln!("finkfs: no object at {}", args.remote);
        return Ok(Outcome::Problems);
    };
    outln!("path:    {}", info.path)?;
    outln!(
        "size:    {} bytes ({})",
        info.size,
        format::bytes(info.size)
    )?;
    outln!("blake3:  {}", format::hash(&info.blake3))?;
    outln!(
        "blocks:  {} of up to {} bytes",
        info.block_count,
        info.block_bytes
    )?;
    Ok(Outcome::Clean)
}
