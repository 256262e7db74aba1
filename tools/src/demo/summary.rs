//! The demo's summary and verdict, and the final stop of its nodes.
//!
//! The summary lines have stable labels (`written`, `crash`, `listed`,
//! `read back`, `catch-up`, `result`) so scripts and tests can read them.

use std::io;
use std::time::Duration;

use super::nodes::{LocalCluster, Stopped};
use super::story::Record;
use super::{alerts, Plan, DEMO_NODES};
use crate::format;
use crate::progress::Totals;

/// Prints the summary; whether the demo passed: every alert written and
/// served byte-identical after the crash, the listing complete, the
/// restarted node caught up.
pub(super) fn print(
    plan: &Plan,
    cluster: &LocalCluster,
    record: &Record,
    elapsed: Duration,
) -> io::Result<bool> {
    let total = plan.alerts.len();
    outln!("\nSummary")?;
    let pids: Vec<String> = record.pids.iter().map(u32::to_string).collect();
    line(
        "nodes",
        &format!(
            "{DEMO_NODES} finkfs-node processes on 127.0.0.1 (first pids {})",
            pids.join(", ")
        ),
    )?;
    line("written", &written(record, total))?;
    line("crash", &crash(record))?;
    if let Some(listed) = record.listed {
        line(
            "listed",
            &format!("{listed} objects under {}", alerts::night_prefix()),
        )?;
    }
    let read_back = match &record.read_back {
        Some(r) => format!(
            "{}/{total} byte-identical (BLAKE3), {} differing, {} missing, {} unreadable",
            r.identical, r.differing, r.missing, r.errors
        ),
        None => "not reached".to_string(),
    };
    line("read back", &read_back)?;
    let catch_up = match (&record.catch_up, &record.failover) {
        (Some(c), Some(f)) => format!(
            "node {} restarted and applied through log index {} in {}",
            f.killed,
            c.target,
            format::seconds(c.elapsed)
        ),
        _ => "not reached".to_string(),
    };
    line("catch-up", &catch_up)?;
    line("time", &format::seconds(elapsed))?;
    if plan.keep {
        line("kept", &cluster.root().display().to_string())?;
    }
    let (passed, verdict) = verdict(record, total);
    line("result", &verdict)?;
    Ok(passed)
}

fn written(record: &Record, total: u64) -> String {
    let stored = record.loaded.stored.len();
    let bytes: u64 = record.loaded.stored.values().map(|(_, size)| size).sum();
    let phase = |totals: &Option<Totals>, when: &str| match totals {
        Some(t) => format!("{} {when} at {:.1} MB/s", t.files_ok, t.mb_per_s()),
        None => format!("none {when}"),
    };
    format!(
        "{stored} of {total} alerts, {}: {}, {}; {} failed",
        format::bytes(bytes),
        phase(&record.before_crash, "before the crash"),
        phase(&record.during_outage, "during the outage"),
        record.loaded.failed
    )
}

fn crash(record: &Record) -> String {
    match &record.failover {
        Some(f) => format!(
            "leader node {} killed with SIGKILL; node {} elected in {} (term {} -> {})",
            f.killed,
            f.leader,
            format::seconds(f.elapsed),
            f.old_term,
            f.new_term
        ),
        None => "not reached".to_string(),
    }
}

/// Whether the demo passed, and the `result` line.
fn verdict(record: &Record, total: u64) -> (bool, String) {
    let stored = record.loaded.stored.len() as u64;
    let every_alert_identical = record
        .read_back
        .as_ref()
        .is_some_and(|r| r.identical == total && stored == total);
    if let Some(halted) = &record.halted {
        return (false, format!("FAIL: {halted}"));
    }
    if !every_alert_identical {
        return (
            false,
            "FAIL: not every alert was served byte-identical".to_string(),
        );
    }
    if record.listed != Some(total) {
        return (
            false,
            "FAIL: the cluster lists a different number of alerts than were written".to_string(),
        );
    }
    if record.catch_up.is_none() {
        return (
            false,
            "FAIL: the restarted node did not catch up".to_string(),
        );
    }
    (
        true,
        "PASS: every alert was served byte-identical after the leader crash".to_string(),
    )
}

/// Stops the nodes with SIGTERM and says how they ended.
pub(super) fn stop(cluster: &mut LocalCluster, keep: bool) -> io::Result<()> {
    outln!()?;
    let stopped = cluster.shutdown();
    let clean = stopped
        .iter()
        .all(|(_, how)| matches!(how, Stopped::Exited(status) if status.success()));
    if clean {
        outln!(
            "Stopped the {} nodes with SIGTERM (each exited cleanly).",
            stopped.len()
        )?;
    } else {
        for (id, how) in &stopped {
            outln!("node {id}: {how:?}")?;
        }
    }
    if keep {
        outln!("Data and logs kept in {}", cluster.root().display())
    } else {
        outln!("Removed {}", cluster.root().display())
    }
}

fn line(label: &str, text: &str) -> io::Result<()> {
    outln!("  {label:<10} {text}")
}

#[cfg(test)]
mod tests {
    use super::super::steps::{CatchUp, ReadBack};
    use super::*;

    fn record(total: u64, identical: u64) -> Record {
        let mut record = Record::default();
        for i in 0..total {
            record.loaded.stored.insert(format!("a/{i}"), ([0; 32], 1));
        }
        record.listed = Some(total);
        record.read_back = Some(ReadBack {
            identical,
            ..ReadBack::default()
        });
        record.catch_up = Some(CatchUp {
            target: 1,
            elapsed: Duration::ZERO,
        });
        record
    }

    #[test]
    fn every_alert_identical_passes() {
        assert!(verdict(&record(5, 5), 5).0);
    }

    #[test]
    fn one_alert_not_identical_fails() {
        let (passed, text) = verdict(&record(5, 4), 5);
        assert!(!passed);
        assert!(text.contains("not every alert"), "{text}");
    }

    #[test]
    fn an_alert_never_written_fails_even_if_the_rest_read_back() {
        assert!(!verdict(&record(4, 4), 5).0);
    }

    #[test]
    fn a_stopped_story_or_missing_catch_up_fails() {
        let mut halted = record(5, 5);
        halted.halted = Some("no leader".into());
        assert!(!verdict(&halted, 5).0);
        let mut stuck = record(5, 5);
        stuck.catch_up = None;
        assert!(!verdict(&stuck, 5).0);
    }
}
