//! The journal: every segment read and verified by the journal's own
//! read-only scan (`Journal::scan`, the same classification as opening it,
//! nothing cut), its findings turned into problems.

use std::path::Path;

use finkfs_raft::journal::{Damage, Journal, JournalError, RecoveryReport};
use finkfs_seam::DiskRef;

use super::report::{Problem, ProblemKind, Structure};
use super::{first_unreadable, is_medium_error, Findings, FsckError, FsckOptions, Progress};

/// What the meta check needs to know of the journal.
#[derive(Debug, Clone, Default)]
pub(crate) struct JournalSummary {
    /// False when the journal could not be read to its end.
    pub read: bool,
    pub first_index: Option<u64>,
    /// `(index, term)` of the last record.
    pub last: Option<(u64, u64)>,
}

pub(crate) fn check(
    disk: &DiskRef,
    dir: &Path,
    options: &super::FsckOptions,
    findings: &mut Findings,
    progress: &mut dyn Progress,
) -> Result<JournalSummary, FsckError> {
    let report = match scan(disk, dir, options) {
        Ok(report) => report,
        Err(JournalError::Io {
            file,
            offset,
            source,
        }) if is_medium_error(&source) => {
            let at = pin_unreadable(disk, &file, offset);
            let detail = format!(
                "the disk cannot read this sector ({source}); the journal check stopped here"
            );
            findings.push(Problem::new(
                Structure::Journal,
                ProblemKind::Unreadable,
                &file,
                Some(at),
                detail,
            ));
            return Ok(JournalSummary::default());
        }
        Err(error) => return Err(fatal(dir, error)),
    };
    findings.totals.journal_segments += report.segments;
    findings.totals.journal_records += report.records;
    findings.totals.bytes_checked += report.bytes;
    progress.checked(report.bytes, dir);
    if let Some(torn) = &report.torn_tail {
        let detail = format!(
            "{} bytes written after the last sync before a crash; the next start cuts them",
            torn.bytes_cut
        );
        findings.push(Problem::new(
            Structure::Journal,
            ProblemKind::TornTail {
                bytes: torn.bytes_cut,
            },
            &torn.file,
            Some(torn.offset),
            detail,
        ));
    }
    for damage in &report.damage {
        findings.push(problem_of(damage));
    }
    Ok(JournalSummary {
        read: true,
        first_index: report.first_index,
        last: report.last,
    })
}

/// The scan reads in large windows and names the window that failed: find
/// the sector in it.
fn pin_unreadable(disk: &DiskRef, file: &Path, offset: u64) -> u64 {
    const WINDOW_BYTES: u64 = 1 << 20;
    match disk.open(file) {
        Ok(handle) => first_unreadable(&handle, offset, WINDOW_BYTES),
        Err(_) => offset,
    }
}

fn scan(disk: &DiskRef, dir: &Path, options: &FsckOptions) -> Result<RecoveryReport, JournalError> {
    Journal::scan(&**disk, dir, &options.journal)
}

fn fatal(dir: &Path, error: JournalError) -> FsckError {
    match error {
        JournalError::Io { file, source, .. } => FsckError::Io { file, source },
        e @ JournalError::UnsupportedVersion { .. } => FsckError::UnsupportedVersion(e.to_string()),
        other => FsckError::io(dir, std::io::Error::other(other.to_string())),
    }
}

/// One piece of journal damage as a problem.
fn problem_of(damage: &Damage) -> Problem {
    let journal = Structure::Journal;
    match damage {
        Damage::CorruptRecord {
            file,
            offset,
            len,
            indices,
            reason,
        } => {
            let lost = indices
                .as_ref()
                .map(|r| format!(", indices {}..={} lost", r.start(), r.end()))
                .unwrap_or_default();
            let detail = format!("{len} bytes hold no record that verifies{lost}: {reason}");
            Problem::new(
                journal,
                ProblemKind::ChecksumMismatch,
                file,
                Some(*offset),
                detail,
            )
        }
        Damage::Gap {
            file,
            offset,
            after_index,
            next_index,
        } => {
            let kind = ProblemKind::IndexGap {
                from: after_index + 1,
                to: next_index.saturating_sub(1),
            };
            let detail = format!("index {after_index} is followed by {next_index}");
            Problem::new(journal, kind, file, Some(*offset), detail)
        }
        Damage::ChainBreak {
            file,
            offset,
            index,
        } => {
            let detail =
                format!("record {index} verifies but does not link to the record before it");
            let kind = ProblemKind::ChainBreak { index: *index };
            Problem::new(journal, kind, file, Some(*offset), detail)
        }
        Damage::BadSegmentHeader { file, reason } => {
            let detail = format!("segment header: {reason}");
            Problem::new(journal, ProblemKind::BadHeader, file, Some(0), detail)
        }
        Damage::BadPurgeMarker { file, reason } => {
            let detail = format!("purge marker: {reason}");
            Problem::new(journal, ProblemKind::BadHeader, file, Some(0), detail)
        }
        other => Problem::new(
            journal,
            ProblemKind::ChecksumMismatch,
            Path::new(""),
            None,
            other.to_string(),
        ),
    }
}
