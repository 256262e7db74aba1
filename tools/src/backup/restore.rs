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
    /// Point in time. A number is a log index: the state right after it
    /// (the newest backup at or before it, then the archived journal up to
    /// it). A UTC time, 2026-11-21T18:00:00Z, or @UNIX_SECONDS: the state
    /// the target held then (the newest backup taken by then, then the
    /// journal archived by then). Default: the newest backup and all of the
    /// archive after it.
    #[arg(long, value_name = "LOG_INDEX|TIME", value_parser = parse_point)]
    at: Option<RestorePoint>,
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

/// `--at`: a log index, `@UNIX_SECONDS`, or `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn parse_point(text: &str) -> Result<RestorePoint, String> {
    if let Ok(index) = text.parse::<u64>() {
        return Ok(RestorePoint::LogIndex(index));
    }
    if let Some(secs) = text.strip_prefix('@') {
        return secs
            .parse()
            .map(RestorePoint::Time)
            .map_err(|_| format!("{text}: @ must be followed by Unix seconds"));
    }
    parse_utc(text)
        .map(RestorePoint::Time)
        .ok_or_else(|| format!("{text}: not a log index, @UNIX_SECONDS or YYYY-MM-DDTHH:MM:SSZ"))
}

/// Seconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SSZ`.
fn parse_utc(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() != 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
        || bytes[19] != b'Z'
    {
        return None;
    }
    let field = |range: std::ops::Range<usize>| text.get(range)?.parse::<u64>().ok();
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > 31
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), shifted so March is
    // the first month and leap days fall at the end of a year.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era;
    let days_since_epoch = days.checked_sub(719_468)?;
    Some(days_since_epoch * 86_400 + hour * 3600 + minute * 60 + second)
}

pub fn run(args: RestoreArgs) -> anyhow::Result<Outcome> {
    let member = MemberAddr::new(&args.peer_addr, &args.client_addr)
        .context("--peer-addr / --client-addr")?;
    let target = open_target(&args.from, false)?;
    let point = match (args.seq, args.at) {
        (Some(seq), _) => RestorePoint::Backup(seq),
        (None, Some(point)) => point,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_takes_a_log_index_unix_seconds_or_a_utc_time() {
        assert_eq!(parse_point("881240"), Ok(RestorePoint::LogIndex(881_240)));
        assert_eq!(
            parse_point("@1795000000"),
            Ok(RestorePoint::Time(1_795_000_000))
        );
        assert_eq!(
            parse_point("1970-01-01T00:00:00Z"),
            Ok(RestorePoint::Time(0))
        );
        // `date -u -d 2026-11-21T18:00:00Z +%s`
        assert_eq!(
            parse_point("2026-11-21T18:00:00Z"),
            Ok(RestorePoint::Time(1_795_284_000))
        );
        assert_eq!(
            parse_point("2000-03-01T00:00:00Z"),
            Ok(RestorePoint::Time(951_868_800))
        );
        for bad in [
            "",
            "@",
            "@x",
            "yesterday",
            "2026-11-21 18:00:00",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(parse_point(bad).is_err(), "{bad}");
        }
    }
}
