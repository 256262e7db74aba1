//! `finkfs put LOCAL REMOTE`: stores one local file (or stdin, `-`);
//! with `-r`, a whole directory (see [`super::put_dir`]).

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use finkfs_node::check_object_path;

use super::{put_dir, Cluster};
use crate::exit::Outcome;
use crate::format;
use crate::upload::FileSource;

const EXAMPLES: &str = "\
Examples:
  finkfs put alert.avro ztf/raw/year=2021/month=12/day=14/1810386362015015011.avro
  gzip -c night.log | finkfs put - logs/2021-12-14.log.gz
  finkfs put -r ./night-2021-12-14 ztf/raw/year=2021/month=12/day=14";

/// Flags of `finkfs put`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct PutArgs {
    /// Upload the directory LOCAL and everything under it: each file goes
    /// to REMOTE/<its path under LOCAL>. Files upload concurrently (small
    /// ones batched); a failed file is reported and the others go on.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// With -r: uploads in flight at once.
    #[arg(short = 'j', long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// The local file, `-` for stdin (held in memory), or with -r a directory.
    pub local: PathBuf,
    /// The object path in the cluster (with -r: the prefix to store under),
    /// such as ztf/raw/year=2021/month=12/day=14/1810386362015015011.avro.
    pub remote: String,
}

/// Runs `finkfs put`.
pub async fn run(cluster: Cluster, args: PutArgs) -> anyhow::Result<Outcome> {
    if args.recursive {
        return put_dir::run(cluster, args).await;
    }
    check_object_path(&args.remote)
        .map_err(|problem| anyhow::anyhow!("bad object path {:?}: {problem}", args.remote))?;
    let client;
    let stored = if args.local.as_os_str() == "-" {
        let data = read_stdin()?;
        let blake3 = *blake3::hash(&data).as_bytes();
        client = cluster.connect().await?;
        client.put_checked(&args.remote, data, Some(blake3)).await
    } else {
        let (source, blake3) = FileSource::hashed(args.local.clone())
            .await
            .with_context(|| format!("cannot read {}", args.local.display()))?;
        client = cluster.connect().await?;
        client.put_source(&args.remote, &source, Some(blake3)).await
    };
    let stored = stored.with_context(|| format!("cannot store {}", args.remote))?;
    outln!(
        "stored {}: {} ({} bytes), blake3 {}, log index {}",
        args.remote,
        format::bytes(stored.size),
        stored.size,
        format::hash(&stored.blake3),
        stored.log_index
    )?;
    Ok(Outcome::Clean)
}

fn read_stdin() -> anyhow::Result<Bytes> {
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut data)
        .context("cannot read stdin")?;
    Ok(Bytes::from(data))
}
