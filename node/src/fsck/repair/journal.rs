//! Repair of the journal and the meta copies of one group.
//!
//! Opening the journal cuts a torn tail exactly as the node's start does.
//! Damage in the middle is cut out behind a quarantine copy, and the vouch
//! floor saved with the vote keeps the node out of elections until its log
//! has grown back past what it held (see the module docs of `repair`).
//! Opening the meta store rewrites a damaged copy from the good one.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use finkfs_raft::entry_codec::decode_entry;
use finkfs_raft::journal::{Journal, JournalError};
use finkfs_raft::log_store::DurableState;
use finkfs_raft::meta::{MetaError, MetaStore};
use finkfs_raft::types::LogId;
use finkfs_seam::DiskRef;

use super::super::report::{Problem, ProblemKind, Structure};
use super::super::{FsckError, FsckOptions};
use super::quarantine::Quarantine;
use super::{GroupDirs, RepairAction, Work};

pub(super) fn repair(
    disk: &DiskRef,
    dirs: &GroupDirs,
    journal_problems: &[&Problem],
    meta_problems: &[&Problem],
    options: &FsckOptions,
    quarantine: &mut Quarantine,
    work: &mut Work,
) -> Result<(), FsckError> {
    if journal_problems.is_empty() && meta_problems.is_empty() {
        return Ok(());
    }
    let recovered = Journal::recover(disk.clone(), dirs.journal.clone(), options.journal.clone())
        .map_err(|e| journal_error(&dirs.journal, e))?;
    let (mut meta, recovery) =
        MetaStore::open(disk.clone(), dirs.meta.clone()).map_err(|e| meta_error(&dirs.meta, e))?;
    for damage in &recovery.damaged {
        if !recovery.lost {
            work.actions.push(RepairAction::new(
                Structure::Meta,
                "rewrote_copy",
                &damage.file,
                Some(damage.offset),
                format!("rewritten from the copy that verifies ({})", damage.reason),
            ));
        }
    }
    let tail_floor = recovered
        .torn_tail()
        .and_then(|torn| torn.last_index_possible());
    if let (Some(floor), false) = (tail_floor, recovery.lost) {
        // Before the cut: once cut, nothing says the node may have held them.
        save_tail_floor(&mut meta, floor, dirs, work)?;
    }
    let (mut journal, opened) = recovered
        .finish()
        .map_err(|e| journal_error(&dirs.journal, e))?;
    let damaged_files: Vec<PathBuf> = opened
        .damage
        .iter()
        .map(|d| d.file().to_path_buf())
        .collect();
    for problem in journal_problems {
        if let ProblemKind::TornTail { bytes } = problem.kind {
            work.actions.push(RepairAction::new(
                Structure::Journal,
                "cut_torn_tail",
                Path::new(&problem.file),
                problem.offset,
                format!("{bytes} bytes written after the last sync before a crash were cut"),
            ));
        }
    }
    let cut = cut_damage(&mut journal, &damaged_files, quarantine, work)?;
    let last = match cut {
        Some(_) => last_log_id(&journal, &dirs.journal)?,
        None => None,
    };
    drop(journal);
    if recovery.lost {
        work.pending.push(format!(
            "{}: every meta copy is damaged, the vote is lost: the node will not vote until it has accepted a leader and caught up with it",
            dirs.meta.display()
        ));
        return Ok(());
    }
    if let Some(floor) = cut {
        save_floor(&mut meta, floor, last, dirs, work)?;
    }
    Ok(())
}

/// Cuts the journal before its first damaged record, after copying every
/// segment from there on into quarantine; the vouch floor (the highest
/// index held before) when it cut. Damage that no index could be put on
/// (`damaged_files`: a segment whose header and records are all
/// unreadable) is cut from the first index of its segment, with a floor as
/// high as that segment could have reached.
fn cut_damage(
    journal: &mut Journal,
    damaged_files: &[PathBuf],
    quarantine: &mut Quarantine,
    work: &mut Work,
) -> Result<Option<u64>, FsckError> {
    let dir = journal.dir().to_path_buf();
    let strays = journal
        .stray_segment_files()
        .map_err(|e| journal_error(&dir, e))?;
    for stray in &strays {
        let moved = quarantine.move_in(stray)?;
        work.actions.push(RepairAction::new(
            Structure::Journal,
            "quarantined",
            stray,
            None,
            format!(
                "a segment whose header does not verify, moved to {}",
                moved.display()
            ),
        ));
    }
    let placed = journal.first_damaged_index();
    // No record of such a segment verifies, so the journal cannot cut
    // inside it: it and every later segment move to quarantine whole.
    let unplaced = match placed {
        Some(_) => None,
        None => journal.damaged_segment_span(damaged_files),
    };
    let Some(first_bad) = placed.or(unplaced.map(|(first, _)| first)) else {
        return Ok(None);
    };
    let held = [
        journal.last().map(|(index, _)| index),
        Some(first_bad),
        unplaced.map(|(_, last)| last),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(first_bad);
    for file in journal.segment_files_from(first_bad) {
        let detail = if unplaced.is_some() {
            let moved = quarantine.move_in(&file)?;
            format!(
                "moved to {}: no index of the damaged segment can be read, so it and the segments after it are taken out whole",
                moved.display()
            )
        } else {
            let copy = quarantine.copy_in(&file)?;
            format!("copied to {} before the cut", copy.display())
        };
        work.actions.push(RepairAction::new(
            Structure::Journal,
            "quarantined",
            &file,
            None,
            detail,
        ));
    }
    if unplaced.is_none() {
        let first = journal.first_index().unwrap_or(first_bad);
        let result = if first_bad > first {
            journal.truncate_after(first_bad - 1)
        } else {
            // Nothing before the damage verifies: the whole log goes.
            journal.purge_up_to(held)
        };
        result.map_err(|e| journal_error(&dir, e))?;
    }
    work.actions.push(RepairAction::new(
        Structure::Journal,
        "truncated",
        &dir,
        None,
        format!(
            "every record from index {first_bad} on was taken out (the journal held up to {held}); the leader sends them again"
        ),
    ));
    Ok(Some(held))
}

/// The log store state the meta store holds (default when it holds none).
fn saved_state(meta: &MetaStore, dirs: &GroupDirs) -> Result<DurableState, FsckError> {
    match meta.payload().map(DurableState::decode) {
        None => Ok(DurableState::default()),
        Some(Ok(state)) => Ok(state),
        Some(Err(e)) => Err(FsckError::UnsupportedVersion(format!(
            "{}: {e}",
            dirs.meta.display()
        ))),
    }
}

/// Saves the tail floor: the highest index a torn tail about to be cut
/// could have held (synced records damaged at rest look torn, and may have
/// been acknowledged).
fn save_tail_floor(
    meta: &mut MetaStore,
    floor: u64,
    dirs: &GroupDirs,
    work: &mut Work,
) -> Result<(), FsckError> {
    let mut state = saved_state(meta, dirs)?;
    let floor = state.tail_floor.map_or(floor, |old| old.max(floor));
    state.tail_floor = Some(floor);
    meta.save(&state.encode())
        .map_err(|e| meta_error(&dirs.meta, e))?;
    work.actions.push(RepairAction::new(
        Structure::Meta,
        "set_tail_floor",
        &dirs.meta,
        None,
        format!(
            "tail floor {floor} saved: the torn tail could have held entries up to index {floor}; the node will not vote until every other voter has said how far its log reaches, or its log reaches index {floor}"
        ),
    ));
    Ok(())
}

/// Saves the vouch floor with the vote, and lowers a saved committed log
/// id the journal no longer reaches.
fn save_floor(
    meta: &mut MetaStore,
    floor: u64,
    last: Option<LogId>,
    dirs: &GroupDirs,
    work: &mut Work,
) -> Result<(), FsckError> {
    let mut state = saved_state(meta, dirs)?;
    state.vouch_floor = Some(state.vouch_floor.map_or(floor, |old| old.max(floor)));
    let reach = [last, state.purged].into_iter().flatten().max();
    if let Some(committed) = state.committed {
        if reach.is_none_or(|reach| reach.index < committed.index) {
            work.actions.push(RepairAction::new(
                Structure::Meta,
                "lowered_committed",
                &dirs.meta,
                None,
                format!(
                    "the saved committed index {} lies beyond the cut journal; lowered to {:?} (the leader announces it again)",
                    committed.index,
                    reach.map(|r| r.index)
                ),
            ));
            state.committed = reach;
        }
    }
    meta.save(&state.encode())
        .map_err(|e| meta_error(&dirs.meta, e))?;
    work.actions.push(RepairAction::new(
        Structure::Meta,
        "set_vouch_floor",
        &dirs.meta,
        None,
        format!(
            "vouch floor {floor} saved: until its log reaches index {floor} again, the node does not stand for election and votes only for a candidate whose log reaches it"
        ),
    ));
    work.pending.push(format!(
        "{}: the node stays out of elections until the leader has re-sent its log up to index {floor}",
        dirs.journal.display()
    ));
    Ok(())
}

/// The log id of the last record (its leader's node id is in the payload).
fn last_log_id(journal: &Journal, dir: &Path) -> Result<Option<LogId>, FsckError> {
    let Some((index, term)) = journal.last() else {
        return Ok(None);
    };
    let record = journal.read(index).map_err(|e| journal_error(dir, e))?;
    let entry = decode_entry(index, term, Bytes::from(record.payload))
        .map_err(|e| FsckError::io(dir, std::io::Error::other(format!("entry {index}: {e}"))))?;
    Ok(Some(entry.log_id))
}

fn journal_error(dir: &Path, error: JournalError) -> FsckError {
    match error {
        JournalError::Io { file, source, .. } => FsckError::Io { file, source },
        other => FsckError::io(dir, std::io::Error::other(other.to_string())),
    }
}

fn meta_error(dir: &Path, error: MetaError) -> FsckError {
    match error {
        MetaError::Io { file, source, .. } => FsckError::Io { file, source },
        other => FsckError::io(dir, std::io::Error::other(other.to_string())),
    }
}
