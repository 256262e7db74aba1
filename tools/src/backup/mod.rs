//! `finkfs backup now | list | verify | prune` and `finkfs restore`: the
//! operator's side of backup targets. The work is `finkfs_node::backup`;
//! this module parses arguments, prints and sets the exit code.

mod restore;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Subcommand;
use finkfs_node::backup::{take_backup, BackupTarget, Retention};
use finkfs_node::daemon::GROUP;
use finkfs_node::store::ObjectStore;
use finkfs_seam::{DiskRef, RealDisk};

use crate::exit::Outcome;
use crate::format::bytes as human_bytes;

pub use restore::{run as run_restore, RestoreArgs, LONG_HELP as RESTORE_LONG_HELP};

/// The long help of `finkfs backup`.
pub const LONG_HELP: &str = "\
Backups of a node to a backup target: a directory on another disk or a
network mount. The target is content addressed: each backup copies only the
blocks the target lacks, and a power cut during a backup leaves every
earlier backup intact (layout: docs/format/backup.md).

  finkfs backup now --data-dir /srv/finkfs --to /mnt/backup   back up a stopped node
  finkfs backup list --target /mnt/backup
  finkfs backup verify --target /mnt/backup --read-data        re-hash every byte
  finkfs backup prune --target /mnt/backup --keep-last 24 --keep-daily 7 --keep-weekly 4
  finkfs restore --from /mnt/backup --to /srv/finkfs-new --id 1 ...

Exit codes: 0 success; 1 verify found damage; 2 usage or I/O error.";

/// The backup commands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up a stopped node's data directory to a target now.
    Now {
        /// The node's data directory (its --data-dir). Stop the node first.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The backup target directory (created if missing).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// List the backups on a target, oldest first.
    List {
        /// The backup target directory.
        #[arg(long, value_name = "DIR")]
        target: PathBuf,
    },
    /// Check backups: every file they name is there with its length; with
    /// --read-data, every byte is re-hashed.
    Verify {
        /// The backup target directory.
        #[arg(long, value_name = "DIR")]
        target: PathBuf,
        /// Only this backup (default: every backup).
        #[arg(long)]
        seq: Option<u64>,
        /// Re-hash every block and snapshot (reads all the data).
        #[arg(long)]
        read_data: bool,
    },
    /// Remove the backups retention does not keep, and every block and
    /// snapshot no remaining backup names.
    Prune {
        /// The backup target directory.
        #[arg(long, value_name = "DIR")]
        target: PathBuf,
        /// Keep the newest N backups (at least 1 is always kept).
        #[arg(long, default_value_t = Retention::default().keep_last)]
        keep_last: u32,
        /// Keep the newest backup of each of the last N days that have one.
        #[arg(long, default_value_t = Retention::default().keep_daily)]
        keep_daily: u32,
        /// Keep the newest backup of each of the last N weeks that have one.
        #[arg(long, default_value_t = Retention::default().keep_weekly)]
        keep_weekly: u32,
    },
}

pub fn run(command: BackupCommand) -> anyhow::Result<Outcome> {
    match command {
        BackupCommand::Now { data_dir, to } => now(&data_dir, &to),
        BackupCommand::List { target } => list(&target),
        BackupCommand::Verify {
            target,
            seq,
            read_data,
        } => verify(&target, seq, read_data),
        BackupCommand::Prune {
            target,
            keep_last,
            keep_daily,
            keep_weekly,
        } => prune(
            &target,
            Retention {
                keep_last,
                keep_daily,
                keep_weekly,
            },
        ),
    }
}

/// Opens a target directory, creating it if `create`.
pub fn open_target(dir: &Path, create: bool) -> anyhow::Result<BackupTarget> {
    if create {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    } else if !dir.is_dir() {
        bail!("{}: no such directory", dir.display());
    }
    let disk: DiskRef =
        Arc::new(RealDisk::open(dir).with_context(|| format!("opening {}", dir.display()))?);
    BackupTarget::open(disk).with_context(|| format!("backup target {}", dir.display()))
}

fn now(data_dir: &Path, to: &Path) -> anyhow::Result<Outcome> {
    let group_dir = PathBuf::from(format!("groups/{}", GROUP.0));
    if !data_dir.join(&group_dir).is_dir() {
        bail!(
            "{}: not a finkfs data directory (no {})",
            data_dir.display(),
            group_dir.display()
        );
    }
    let disk: DiskRef = Arc::new(RealDisk::open(data_dir)?);
    let store = ObjectStore::open(disk, group_dir)
        .with_context(|| format!("opening the node's store in {}", data_dir.display()))?;
    let target = open_target(to, true)?;
    let view = store.index().view().context("reading the node's index")?;
    let summary = take_backup(&target, &view, store.reader(), unix_now())?;
    let manifest = &summary.manifest;
    outln!(
        "backup {} taken: {} blocks ({}), log index {}; wrote {} ({} new blocks, {} already on the target)",
        manifest.seq,
        manifest.blocks.len(),
        human_bytes(manifest.block_bytes()),
        manifest.last_log.map_or("none".to_string(), |(i, _)| i.to_string()),
        human_bytes(summary.bytes_written),
        summary.blocks_written,
        summary.blocks_present
    )?;
    Ok(Outcome::Clean)
}

fn list(dir: &Path) -> anyhow::Result<Outcome> {
    let target = open_target(dir, false)?;
    let listed = target.list()?;
    outln!(
        "{:>6}  {:>12}  {:>10}  {:>8}  {:>10}",
        "seq",
        "created",
        "log index",
        "blocks",
        "size"
    )?;
    let mut damaged = false;
    for backup in listed {
        match backup.manifest {
            Ok(m) => outln!(
                "{:>6}  {:>12}  {:>10}  {:>8}  {:>10}",
                m.seq,
                m.created_unix_secs,
                m.last_log.map_or("-".to_string(), |(i, _)| i.to_string()),
                m.blocks.len(),
                human_bytes(m.block_bytes())
            )?,
            Err(error) => {
                damaged = true;
                outln!("{:>6}  DAMAGED: {error}", backup.seq)?
            }
        }
    }
    Ok(Outcome::problems_if(damaged))
}

fn verify(dir: &Path, seq: Option<u64>, read_data: bool) -> anyhow::Result<Outcome> {
    let target = open_target(dir, false)?;
    let seqs: Vec<u64> = match seq {
        Some(seq) => vec![seq],
        None => target.list()?.iter().map(|b| b.seq).collect(),
    };
    let mut problems = 0usize;
    for seq in seqs {
        match target.verify(seq, read_data) {
            Ok(report) => {
                for p in &report.problems {
                    outln!(
                        "backup {seq}: {}: offset {}: {}",
                        p.file.display(),
                        p.offset,
                        p.reason
                    )?;
                }
                problems += report.problems.len();
                outln!(
                    "backup {seq}: {} ({} blocks checked{})",
                    if report.is_intact() {
                        "INTACT"
                    } else {
                        "DAMAGED"
                    },
                    report.blocks_checked,
                    if read_data {
                        format!(", {} re-hashed", human_bytes(report.bytes_read))
                    } else {
                        String::new()
                    }
                )?;
            }
            Err(finkfs_node::backup::BackupError::Corrupt {
                file,
                offset,
                reason,
            }) => {
                problems += 1;
                outln!(
                    "backup {seq}: DAMAGED: {}: offset {offset}: {reason}",
                    file.display()
                )?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(Outcome::problems_if(problems > 0))
}

fn prune(dir: &Path, retention: Retention) -> anyhow::Result<Outcome> {
    let target = open_target(dir, false)?;
    let report = target.prune(&retention)?;
    outln!(
        "kept {} backups, removed {} ({:?}); removed {} blocks ({}) and {} snapshots",
        report.backups_kept.len(),
        report.backups_removed.len(),
        report.backups_removed,
        report.blocks_removed,
        human_bytes(report.block_bytes_removed),
        report.snapshots_removed
    )?;
    if !report.unreadable.is_empty() {
        outln!(
            "damaged manifests {:?} were kept, and no block was removed while they exist",
            report.unreadable
        )?;
        return Ok(Outcome::Problems);
    }
    Ok(Outcome::Clean)
}

/// Seconds since the Unix epoch, for the manifest's creation time.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
