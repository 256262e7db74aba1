//! `finkfs fsck --data-dir DIR`: the offline check of a stopped node's data
//! directory. The checking is `finkfs_node::fsck`; this module only parses
//! the arguments, shows progress, prints the report and sets the exit code.

mod print;
mod progress;
mod repair;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use finkfs_node::fsck::{self, FsckOptions, NoProgress, Progress};
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
--repair refuses to run while a node runs on the directory.

Exit codes: 0 HEALTHY (or SAFE_TO_START after --repair), 1 CORRUPT (damage
found, or left after --repair), 2 usage error or an I/O error that stopped the
check (the directory missing or unreadable, a node running on it).";

/// Arguments of `finkfs fsck`.
#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    /// The node's data directory (its --data-dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
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
}

/// Runs the check; CORRUPT is [`Outcome::Problems`].
pub fn run(args: FsckArgs) -> anyhow::Result<Outcome> {
    if !args.data_dir.is_dir() {
        bail!("{}: no such directory", args.data_dir.display());
    }
    let disk: DiskRef = Arc::new(
        RealDisk::open(&args.data_dir)
            .with_context(|| format!("opening {}", args.data_dir.display()))?,
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
        return if std::io::stderr().is_terminal() {
            let mut bar = progress::Bar::default();
            let outcome = repair::run(&args.data_dir, disk, scratch, args.json, &mut bar);
            bar.finish();
            outcome
        } else {
            repair::run(&args.data_dir, disk, scratch, args.json, &mut NoProgress)
        }
        .with_context(|| format!("repairing {}", args.data_dir.display()));
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
    .with_context(|| format!("checking {}", args.data_dir.display()))?;
    let elapsed = started.elapsed();
    if args.json {
        print::json(&report)?;
    } else {
        print::text(&args.data_dir, &report, elapsed)?;
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
