//! `finkfs ls [-l] [PREFIX]`: the objects under a prefix, in path order,
//! fetched page by page and printed as each page arrives (so `| head`
//! stops the listing early).

use std::io::Write;

use anyhow::Context;
use clap::Args;

use super::Cluster;
use crate::exit::Outcome;
use crate::format;

/// Objects asked for per page.
pub const LIST_PAGE_OBJECTS: u32 = 1000;

const EXAMPLES: &str = "\
Examples:
  finkfs ls ztf/raw/year=2021/month=12/day=14/
  finkfs ls -l ztf/raw/ | sort -n | tail     # the largest objects

With -l each line is: size in bytes, BLAKE3 (hex), path.";

/// Flags of `finkfs ls`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct LsArgs {
    /// Long listing: size in bytes and BLAKE3 before each path.
    #[arg(short = 'l', long)]
    pub long: bool,
    /// Only paths that start with this (plain text, not a pattern); every
    /// object when absent.
    #[arg(default_value = "")]
    pub prefix: String,
}

/// Runs `finkfs ls`.
pub async fn run(cluster: Cluster, args: LsArgs) -> anyhow::Result<Outcome> {
    let client = cluster.connect().await?;
    let mut out = std::io::stdout().lock();
    let mut start_after: Option<String> = None;
    loop {
        let page = client
            .list(&args.prefix, start_after.as_deref(), LIST_PAGE_OBJECTS)
            .await
            .with_context(|| format!("cannot list {:?}", args.prefix))?;
        for object in &page.objects {
            if args.long {
                writeln!(
                    out,
                    "{:>12}  {}  {}",
                    object.size,
                    format::hash(&object.blake3),
                    object.path
                )
            } else {
                writeln!(out, "{}", object.path)
            }
            .context("cannot write the listing")?;
        }
        out.flush().context("cannot write the listing")?;
        match page.next_start_after {
            Some(next) => start_after = Some(next),
            None => return Ok(Outcome::Clean),
        }
    }
}
