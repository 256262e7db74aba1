//! `finkfs fsck --data-dir DIR`: the offline check of a stopped node's data
//! directory. The checking is `finkfs_node::fsck`; this module only parses
//! the arguments, shows progress, prints the report and sets the exit code.

mod cluster;
mod print;
mod progress;
mod repair;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use finkfs_node::fsck::{self, FsckOptions, NoProgress, Progress};
use finkfs_node::repair::RepairSource;
use finkfs_seam::{DiskRef, RealDisk};

use crate::exit::Outcome;

/// The long help of `finkfs fsck`.
pub const LONG_HELP: &str = "\
Check every structure of a stopped node's data directory, offline.

Reads and verifies every byte: the journal (each record's checksum, the hash
chain, gaps in the indices), the two vote copies and what they say about the
journal, the index (every page and every value), every block in the packs
against its hash, the index against the packs (blocks missing, blocks nothing
refers to), and the snapshots. Nothing in the directory is changed: files are
only read, and the index is checked on a copy in a scratch directory.

Stop the node first: a running node changes the files under fsck.

The report lists what was checked, then every finding with its file and byte
offset, then the verdict: HEALTHY or CORRUPT. Findings marked `note` are what a
crash normally leaves (a torn journal tail, blocks whose index commit was
lost, temporary files); the node handles them when it starts, and they do not
make the directory CORRUPT. Findings marked `DAMAGE` do.

With --json the same report is printed as one JSON document on stdout (its
shape is described in docs/operations.md). Progress goes to stderr, only on a
terminal.

With --repair, fsck then repairs what the node's own copies allow, checks
again, and lists every change with its file and offset: a torn journal tail is
cut; damaged journal records, snapshots and a damaged index are moved or
copied to quarantine/ in the group directory (never deleted); the journal is
cut before its first damaged record and the node will not vote until the
leader has sent those entries again; a damaged vote copy is rewritten from the
other; the index is rebuilt from the newest intact snapshot. The verdict is
HEALTHY, SAFE_TO_START (start the node: it finishes the repair and does not
vote until it has) or DAMAGED (what is left is listed as UNRECOVERABLE).
Damaged blocks need an intact copy from elsewhere: give --peer ADDR (a running
member's peer address; repeat for several) or --backup DIR (a backup target),
and --repair fetches each one by its BLAKE3, verifies it, writes it to a new
pack and quarantines the damaged copy in the index (its bytes stay on disk).
--repair refuses to run while a node runs on the directory.

Without --data-dir, `finkfs --cluster ADDR fsck` checks a running cluster
online: every member reads and verifies its own copy of every object (nothing
is repaired), and the copies are compared. Objects are reported CORRUPT (a
copy damaged, an intact one elsewhere), MISSING (no intact copy on any member:
restore from a backup), DIVERGED (members at the same log index disagree) or
under-replicated (absent or older on a member that is behind, or on a member
that could not be asked). The verdict is HEALTHY or CORRUPT.

Exit codes: 0 HEALTHY (or SAFE_TO_START after --repair), 1 CORRUPT (damage
found, or left after --repair), 2 usage error or an I/O error that stopped the
check (the directory missing or unreadable, a node running on it, a member of
the cluster that could not be verified).";

/// Arguments of `finkfs fsck`.
#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    /// The node's data directory (its --data-dir). Without it, fsck checks
    /// the running cluster named by --cluster instead.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where the scratch copy of the index goes (default: the system's
    /// temporary directory); it needs room for one index file.
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Repair what can be repaired, then check again and say what changed.
    #[arg(long)]
    pub repair: bool,
    /// With --repair: fetch intact copies of damaged blocks from this
    /// running member of the cluster (its peer address, host:port); repeat
    /// to try several in order.
    #[arg(long = "peer", value_name = "ADDR", requires = "repair")]
    pub peers: Vec<String>,
    /// With --repair: fetch intact copies of damaged blocks from this backup
    /// target (a `finkfs-node --backup-dir`).
    #[arg(
        long,
        value_name = "DIR",
        requires = "repair",
        conflicts_with = "peers"
    )]
    pub backup: Option<PathBuf>,
}

impl FsckArgs {
    /// Where --repair gets intact copies of damaged blocks, if anywhere.
    fn block_source(&self) -> Option<RepairSource> {
        if let Some(dir) = &self.backup {
            return Some(RepairSource::Backup(dir.clone()));
        }
        (!self.peers.is_empty()).then(|| RepairSource::Peers(self.peers.clone()))
    }
}

/// Runs the check of a data directory, or of the running cluster at
/// `cluster` (the global --cluster) when no --data-dir is given; CORRUPT is
/// [`Outcome::Problems`].
pub fn run(args: FsckArgs, cluster: &[String]) -> anyhow::Result<Outcome> {
    let Some(data_dir) = args.data_dir.clone() else {
        if args.repair {
            bail!("--repair works on a stopped node's --data-dir; a running cluster repairs itself (see docs/operations.md)");
        }
        if cluster.is_empty() {
            bail!("give --data-dir DIR (a stopped node) or --cluster ADDR (a running cluster)");
        }
        return cluster::run(cluster, args.json);
    };
    offline(&data_dir, &args)
}

/// `fsck --data-dir DIR` (with or without --repair).
fn offline(data_dir: &std::path::Path, args: &FsckArgs) -> anyhow::Result<Outcome> {
    if !data_dir.is_dir() {
        bail!("{}: no such directory", data_dir.display());
    }
    let disk: DiskRef = Arc::new(
        RealDisk::open(data_dir).with_context(|| format!("opening {}", data_dir.display()))?,
    );
    let scratch_parent = args.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch_dir = tempfile::Builder::new()
        .prefix("finkfs-fsck-")
        .tempdir_in(&scratch_parent)
        .with_context(|| {
            format!(
                "creating a scratch directory in {}",
                scratch_parent.display()
            )
        })?;
    let scratch: DiskRef = Arc::new(RealDisk::open(scratch_dir.path())?);
    if args.repair {
        let source = args.block_source();
        let run = |progress: &mut dyn Progress| {
            let dirs = repair::Dirs {
                data_dir,
                disk,
                scratch,
            };
            repair::run(dirs, source.as_ref(), args.json, progress)
        };
        return if std::io::stderr().is_terminal() {
            let mut bar = progress::Bar::default();
            let outcome = run(&mut bar);
            bar.finish();
            outcome
        } else {
            run(&mut NoProgress)
        }
        .with_context(|| format!("repairing {}", data_dir.display()));
    }
    let started = Instant::now();
    let report = if std::io::stderr().is_terminal() {
        let mut bar = progress::Bar::default();
        let report = check(disk, scratch, &mut bar);
        bar.finish();
        report
    } else {
        check(disk, scratch, &mut NoProgress)
    }
    .with_context(|| format!("checking {}", data_dir.display()))?;
    let elapsed = started.elapsed();
    if args.json {
        print::json(&report)?;
    } else {
        print::text(data_dir, &report, elapsed)?;
    }
    Ok(Outcome::problems_if(!report.is_healthy()))
}

fn check(
    disk: DiskRef,
    scratch: DiskRef,
    progress: &mut dyn Progress,
) -> Result<fsck::FsckReport, fsck::FsckError> {
    fsck::check_data_dir(disk, scratch, &FsckOptions::default(), progress)
}
