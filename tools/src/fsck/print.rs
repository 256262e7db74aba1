//! The report of `finkfs fsck`, for people (modelled on `hdfs fsck`: what
//! was checked, each finding with file and offset, the verdict last) and
//! for machines (`--json`).

use std::path::Path;
use std::time::Duration;

use finkfs_node::fsck::FsckReport;

use crate::format;

/// The report as one JSON document.
pub fn json(report: &FsckReport) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    outln!("{text}")?;
    Ok(())
}

/// The report as text.
pub fn text(data_dir: &Path, report: &FsckReport, elapsed: Duration) -> anyhow::Result<()> {
    let t = &report.totals;
    outln!("finkfs fsck of {}", data_dir.display())?;
    outln!(
        " Groups:          {} ({})",
        t.groups,
        report.groups.join(", ")
    )?;
    outln!(
        " Objects:         {} ({})",
        t.objects,
        format::bytes(t.object_bytes)
    )?;
    outln!(
        " Blocks:          {} ({})",
        t.blocks,
        format::bytes(t.block_bytes)
    )?;
    outln!(
        " Packs:           {} ({} block records verified)",
        t.packs,
        t.block_records
    )?;
    outln!(
        " Journal:         {} segments, {} records verified",
        t.journal_segments,
        t.journal_records
    )?;
    outln!(" Snapshots:       {} verified", t.snapshots)?;
    outln!(
        " Bytes verified:  {} in {} ({:.1} MB/s)",
        format::bytes(t.bytes_checked),
        format::seconds(elapsed),
        format::mb_per_s(t.bytes_checked, elapsed)
    )?;
    let damage = report.damage().count();
    let notes = report.problems.len() - damage;
    outln!(" Damage:          {damage}")?;
    outln!(" Notes:           {notes}")?;
    if !report.problems.is_empty() {
        outln!()?;
    }
    for problem in &report.problems {
        outln!("{problem}")?;
    }
    outln!()?;
    outln!(
        "The data directory {} is {}",
        data_dir.display(),
        report.status
    )?;
    Ok(())
}
