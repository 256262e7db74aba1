//! The vote copies: both read and verified by the meta store's read-only
//! recovery (`MetaStore::scan`), the state they hold decoded, and compared
//! with the journal as the log store does when it opens (invariant 5): a
//! vote behind the log, committed entries missing, or a gap after the purge
//! point mean the node must not vote.

use std::path::Path;

use finkfs_raft::log_store::DurableState;
use finkfs_raft::meta::{MetaError, MetaStore, COPY_NAMES, PAYLOAD_OFFSET};
use finkfs_seam::DiskRef;

use super::journal::JournalSummary;
use super::report::{Problem, ProblemKind, Structure};
use super::{is_medium_error, Findings, FsckError, Progress};

pub(crate) fn check(
    disk: &DiskRef,
    dir: &Path,
    journal: &JournalSummary,
    findings: &mut Findings,
    progress: &mut dyn Progress,
) -> Result<Option<u64>, FsckError> {
    let recovery = match MetaStore::scan(&**disk, dir) {
        Ok(recovery) => recovery,
        Err(MetaError::Io {
            file,
            offset,
            source,
        }) if is_medium_error(&source) => {
            let detail = format!("the disk cannot read this sector ({source})");
            findings.push(Problem::new(
                Structure::Meta,
                ProblemKind::Unreadable,
                &file,
                Some(offset),
                detail,
            ));
            return Ok(None);
        }
        Err(MetaError::Io { file, source, .. }) => return Err(FsckError::Io { file, source }),
        Err(other) => return Err(FsckError::UnsupportedVersion(other.to_string())),
    };
    let bytes = copies_bytes(disk, dir);
    findings.totals.bytes_checked += bytes;
    progress.checked(bytes, dir);
    for damage in &recovery.damaged {
        findings.push(Problem::new(
            Structure::Meta,
            ProblemKind::BadCopy,
            &damage.file,
            Some(damage.offset),
            damage.reason.clone(),
        ));
    }
    let copy_a = dir.join(COPY_NAMES[0]);
    if recovery.lost {
        let detail = "no copy verifies: the vote is lost and the node must not vote";
        findings.push(Problem::new(
            Structure::Meta,
            ProblemKind::VoteLost,
            dir,
            None,
            detail,
        ));
        return Ok(None);
    }
    let state = match recovery.payload.as_deref().map(DurableState::decode) {
        None => DurableState::default(),
        Some(Ok(state)) => state,
        Some(Err(e)) => {
            let offset = PAYLOAD_OFFSET as u64 + e.offset;
            let detail = format!("the copies verify but hold no valid log store state: {e}");
            findings.push(Problem::new(
                Structure::Meta,
                ProblemKind::BadState,
                &copy_a,
                Some(offset),
                detail,
            ));
            return Ok(None);
        }
    };
    if journal.read {
        compare_with_journal(&state, journal, &copy_a, findings);
    }
    Ok(state.purged.map(|p| p.index))
}

/// The checks of the log store's open (invariant 5), reported as problems.
fn compare_with_journal(
    state: &DurableState,
    journal: &JournalSummary,
    copy: &Path,
    findings: &mut Findings,
) {
    let purged = state.purged.map(|p| (p.index, p.leader_id.term));
    let newest = [journal.last, purged].into_iter().flatten().max();
    let vote_term = state.vote.map(|v| v.leader_id.term);
    if let Some((index, term)) = newest {
        // Entries of term 0 (a fresh node's first membership) need no vote.
        if vote_term.unwrap_or(0) < term {
            let detail = format!(
                "the saved vote (term {vote_term:?}) is behind the log (entry {index} of term {term}): the vote was lost or rolled back"
            );
            findings.push(bad_state(copy, detail));
        }
    }
    if let Some(committed) = state.committed {
        let last = newest.map(|(index, _)| index);
        if last.is_none_or(|last| last < committed.index) {
            let detail = format!(
                "committed index {} lies beyond every entry held or purged (last {last:?}): committed entries are missing",
                committed.index
            );
            findings.push(bad_state(copy, detail));
        }
    }
    if let (Some((purged_index, _)), Some(first)) = (purged, journal.first_index) {
        if first > purged_index + 1 {
            let detail =
                format!("entries purged through {purged_index}, but the journal starts at {first}");
            let kind = ProblemKind::IndexGap {
                from: purged_index + 1,
                to: first - 1,
            };
            findings.push(Problem::new(Structure::Meta, kind, copy, None, detail));
        }
    }
}

fn bad_state(copy: &Path, detail: String) -> Problem {
    Problem::new(Structure::Meta, ProblemKind::BadState, copy, None, detail)
}

/// Bytes of the copies (for the totals; both were read by the scan).
fn copies_bytes(disk: &DiskRef, dir: &Path) -> u64 {
    COPY_NAMES
        .iter()
        .filter_map(|name| disk.open(&dir.join(name)).and_then(|f| f.len()).ok())
        .sum()
}
