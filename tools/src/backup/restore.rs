//! `finkfs restore --from TARGET --to DATA_DIR`: a new one-member cluster
//! from a backup, that other nodes can then join.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use finkfs_node::api::MemberAddr;
use finkfs_node::backup::{restore, OnDamage, RestorePoint};
use finkfs_node::daemon::GROUP;
use finkfs_seam::{DiskRef, RealDisk};

use super::open_target;
use crate::exit::Outcome;

/// The long help of `finkfs restore`.
pub const LONG_HELP: &str = "\
Restore a backup into an empty data directory, as the only member of a new
cluster. By default the newest backup is restored and the journal archived
after it replayed (everything up to the archive's end); --at LOG_INDEX
stops at that index (point in time), --seq N restores one backup as it is. Start finkfs-node on that directory with the same --id and
addresses; it elects itself and serves every object of the backup. Add the
other nodes with `finkfs cluster add` (they copy everything from it).

Every block is verified against its hash as it is copied: a damaged or
missing block stops the restore with an error naming it, and nothing is
started. Check a target first with `finkfs backup verify --read-data`. With
--skip-damaged, the objects that use a damaged or missing block are left out
(and listed) and everything else is restored.";

/// Arguments of `finkfs restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup target directory.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The new node's data directory: must be empty or absent.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Restore exactly this backup, without replaying the journal archive.
    #[arg(long, conflicts_with = "at")]
    seq: Option<u64>,
    /// Restore the state right after this log index: the newest backup at
    /// or before it, then the archived journal up to it (point in time).
    /// Default: the newest backup and all of the archive after it.
    #[arg(long, value_name = "LOG_INDEX")]
    at: Option<u64>,
    /// Leave out every object that uses a damaged or missing block (listed
    /// on stdout) instead of refusing; every block is re-hashed first.
    #[arg(long)]
    skip_damaged: bool,
    /// The id the restored node will run with (its --id).
    #[arg(long)]
    id: u64,
    /// The peer address the restored node will advertise (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    peer_addr: String,
    /// The client address the restored node will advertise (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    client_addr: String,
}

pub fn run(args: RestoreArgs) -> anyhow::Result<Outcome> {
    let member = MemberAddr::new(&args.peer_addr, &args.client_addr)
        .context("--peer-addr / --client-addr")?;
    let target = open_target(&args.from, false)?;
    let point = match (args.seq, args.at) {
        (Some(seq), _) => RestorePoint::Backup(seq),
        (None, Some(index)) => RestorePoint::LogIndex(index),
        (None, None) => RestorePoint::ArchiveEnd,
    };
    if args.to.exists() && std::fs::read_dir(&args.to)?.next().is_some() {
        bail!(
            "{}: not empty; restore only into an empty directory",
            args.to.display()
        );
    }
    std::fs::create_dir_all(&args.to).with_context(|| format!("creating {}", args.to.display()))?;
    let disk: DiskRef = Arc::new(RealDisk::open(&args.to)?);
    let group_dir = PathBuf::from(format!("groups/{}", GROUP.0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let on_damage = if args.skip_damaged {
        OnDamage::SkipObjects
    } else {
        OnDamage::Refuse
    };
    let report = runtime.block_on(restore(
        &target,
        point,
        on_damage,
        disk,
        &group_dir,
        args.id,
        member.to_node(),
    ))?;
    outln!(
        "restored backup {} (log index {}): {} objects, {} blocks into {}",
        report.seq,
        report
            .last_log
            .map_or("none".to_string(), |(i, _)| i.to_string()),
        report.objects,
        report.blocks,
        args.to.display()
    )?;
    for path in &report.skipped {
        outln!("left out (a block it uses is damaged or missing): {path}")?;
    }
    outln!(
        "start it with: finkfs-node --id {} --data-dir {} --peer-listen {} --client-listen {}",
        args.id,
        args.to.display(),
        args.peer_addr,
        args.client_addr
    )?;
    Ok(Outcome::Clean)
}
