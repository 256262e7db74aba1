//! Snapshot files: each final snapshot streamed through the snapshot
//! reader (header check, framing, order, counts, file check), and its whole
//! file hashed against the BLAKE3 its name carries. Temporary files are
//! what a crash left while building or receiving one (informational).

use std::path::Path;

use finkfs_seam::DiskRef;

use crate::hex::hex;
use crate::snapshot::{final_name_hash, SnapshotError, SnapshotReader, READ_STEP_BYTES};

use super::report::{Problem, ProblemKind, Structure};
use super::{first_unreadable, is_medium_error, list, Findings, FsckError, Progress};

const INCOMING_DIR: &str = "incoming";

/// Checks the snapshots of a group whose journal was purged through
/// `purged` (from the meta store) and whose index applied up to `applied`
/// (None when the index could not be read).
pub(crate) fn check(
    disk: &DiskRef,
    dir: &Path,
    purged: Option<u64>,
    applied: Option<u64>,
    findings: &mut Findings,
    progress: &mut dyn Progress,
) -> Result<(), FsckError> {
    let mut newest: Option<u64> = None;
    let mut finals = 0;
    for name in list(disk, dir)? {
        let path = dir.join(&name);
        if name.ends_with(".tmp") {
            findings.push(leftover(&path));
        } else if name == INCOMING_DIR {
            for name in list(disk, &path)? {
                findings.push(leftover(&path.join(name)));
            }
        } else if let Some(named) = final_name_hash(&name) {
            finals += 1;
            let (len, last) = check_file(disk, &path, named, findings)?;
            newest = newest.max(last);
            findings.totals.bytes_checked += len;
            progress.checked(len, &path);
        }
    }
    // The journal is purged only behind a snapshot that covers the purged
    // entries (built, or installed from the leader). Without one, a
    // follower that needs those entries cannot be caught up from here.
    if let Some(purged) = purged.filter(|p| *p > 0) {
        let detail = match newest {
            _ if finals > 0 && newest.is_none() => return Ok(()),
            None => format!("the journal was purged through {purged}, but no snapshot remains (deleted?)"),
            Some(last) if last < purged => format!("the journal was purged through {purged}, but the newest snapshot covers only up to {last}"),
            Some(_) => return Ok(()),
        };
        findings.push(uncovered_purge(dir, purged, newest, applied, detail));
    }
    Ok(())
}

/// The problem of a purge no snapshot covers. When the index applied the
/// purged entries, the node builds a new snapshot from it at start; when
/// it did not, the entries in between are on no structure of this node
/// (the start refuses, as `StateMachineError::PurgedBeyondSnapshot`).
fn uncovered_purge(
    dir: &Path,
    purged: u64,
    newest: Option<u64>,
    applied: Option<u64>,
    detail: String,
) -> Problem {
    match applied {
        Some(applied) if applied < purged => {
            let from = newest.max(Some(applied)).map_or(0, |last| last + 1);
            snapshot_problem(
                ProblemKind::EntriesLost { from, to: purged },
                dir,
                None,
                format!(
                    "{detail}, and the index applied only up to {applied}: entries {from}..={purged} are on no structure of this node, which cannot start; wipe its group directory and start it with --rejoin"
                ),
            )
        }
        _ => snapshot_problem(ProblemKind::MissingFile, dir, None, detail),
    }
}

fn leftover(path: &Path) -> Problem {
    let detail =
        "a snapshot being built or received when the node stopped; the next start removes it";
    Problem::new(
        Structure::Snapshots,
        ProblemKind::Leftover,
        path,
        None,
        detail,
    )
}

/// Verifies one final snapshot; its length and, when it verifies, the last
/// log index it covers.
fn check_file(
    disk: &DiskRef,
    path: &Path,
    named: [u8; 32],
    findings: &mut Findings,
) -> Result<(u64, Option<u64>), FsckError> {
    let file = disk.open(path).map_err(|e| FsckError::io(path, e))?;
    let len = file.len().map_err(|e| FsckError::io(path, e))?;
    let last = match read_records(file.clone(), path) {
        Ok(last) => last,
        Err(SnapshotError::Corrupt { offset, reason, .. }) => {
            let detail = format!("the snapshot does not verify: {reason}");
            findings.push(snapshot_problem(
                ProblemKind::ChecksumMismatch,
                path,
                Some(offset),
                detail,
            ));
            return Ok((len, None));
        }
        Err(SnapshotError::Io { offset, source, .. }) if is_medium_error(&source) => {
            let at = first_unreadable(&file, offset, READ_STEP_BYTES as u64);
            let detail = format!("the disk cannot read this sector ({source})");
            findings.push(snapshot_problem(
                ProblemKind::Unreadable,
                path,
                Some(at),
                detail,
            ));
            return Ok((len, None));
        }
        Err(SnapshotError::Io { source, .. }) => return Err(FsckError::io(path, source)),
        Err(other) => {
            return Err(FsckError::io(
                path,
                std::io::Error::other(other.to_string()),
            ))
        }
    };
    match whole_file_hash(&file, len) {
        Ok(hash) if hash == named => {
            findings.totals.snapshots += 1;
            return Ok((len, Some(last.unwrap_or(0))));
        }
        Ok(hash) => {
            let detail = format!(
                "the file hashes to {}, its name says {}",
                hex(&hash),
                hex(&named)
            );
            findings.push(snapshot_problem(
                ProblemKind::ChecksumMismatch,
                path,
                None,
                detail,
            ));
        }
        Err(e) if is_medium_error(&e) => {
            let at = first_unreadable(&file, 0, len);
            let detail = format!("the disk cannot read this sector ({e})");
            findings.push(snapshot_problem(
                ProblemKind::Unreadable,
                path,
                Some(at),
                detail,
            ));
        }
        Err(e) => return Err(FsckError::io(path, e)),
    }
    Ok((len, None))
}

fn snapshot_problem(
    kind: ProblemKind,
    path: &Path,
    offset: Option<u64>,
    detail: String,
) -> Problem {
    Problem::new(Structure::Snapshots, kind, path, offset, detail)
}

/// Streams every record (the reader verifies the file check at the end);
/// the last log index the snapshot covers.
fn read_records(file: finkfs_seam::FileRef, path: &Path) -> Result<Option<u64>, SnapshotError> {
    let mut reader = SnapshotReader::open(file, path)?;
    let last = reader.header().last_log_id.map(|id| id.index);
    while reader.next_record()?.is_some() {}
    Ok(last)
}

fn whole_file_hash(file: &finkfs_seam::FileRef, len: u64) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_STEP_BYTES];
    let mut at = 0;
    while at < len {
        let step = (len - at).min(READ_STEP_BYTES as u64);
        let piece = &mut buf[..usize::try_from(step).expect("bounded by READ_STEP_BYTES")];
        file.read_at(at, piece)?;
        hasher.update(piece);
        at += step;
    }
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uncovered(newest: Option<u64>, applied: Option<u64>) -> Problem {
        uncovered_purge(Path::new("snaps"), 40, newest, applied, "purged".into())
    }

    #[test]
    fn a_purge_the_index_applied_is_a_missing_snapshot_the_node_rebuilds() {
        assert_eq!(uncovered(None, Some(40)).kind, ProblemKind::MissingFile);
        assert_eq!(uncovered(Some(10), Some(55)).kind, ProblemKind::MissingFile);
    }

    #[test]
    fn a_purge_beyond_the_snapshot_and_the_index_is_entries_lost() {
        let lost = uncovered(Some(10), Some(25));
        assert_eq!(lost.kind, ProblemKind::EntriesLost { from: 26, to: 40 });
        assert!(lost.detail.contains("--rejoin"), "{}", lost.detail);
        assert!(lost.kind.is_damage());
        assert_eq!(
            uncovered(Some(30), Some(25)).kind,
            ProblemKind::EntriesLost { from: 31, to: 40 }
        );
        assert_eq!(
            uncovered(None, Some(0)).kind,
            ProblemKind::EntriesLost { from: 1, to: 40 }
        );
    }

    #[test]
    fn an_unreadable_index_leaves_the_question_to_its_repair() {
        assert_eq!(uncovered(None, None).kind, ProblemKind::MissingFile);
    }
}
