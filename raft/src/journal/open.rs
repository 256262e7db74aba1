//! Opening a journal directory: scan, classify, cut what a crash left, and
//! build the in-memory index. Also the read-only scan for fsck.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use finkfs_seam::{Disk, DiskRef};

use super::marker::{self, MarkerProblem};
use super::recovery::{self, Analysis, TornAction};
use super::report::{Damage, RecoveryReport, TornTail};
use super::scan::{self, SegmentScan};
use super::state::{SegmentRef, State};
use super::{record, segment};
use super::{Journal, JournalError, JournalOptions, Tail};

impl Journal {
    /// Opens (creating `dir` durably if missing), scans and verifies every
    /// segment, cuts a torn tail, reports damage. A damaged journal still
    /// opens: reads of damaged indices return [`JournalError::Corrupt`] and
    /// the caller decides whether it may serve or vote.
    pub fn open(
        disk: DiskRef,
        dir: PathBuf,
        options: JournalOptions,
    ) -> Result<(Journal, RecoveryReport), JournalError> {
        Journal::recover(disk, dir, options)?.finish()
    }

    /// The first half of [`Journal::open`]: scans and classifies, but cuts
    /// nothing yet. The caller learns what a torn tail would remove
    /// ([`RecoveredJournal::torn_tail`]) and may make a decision durable
    /// before [`RecoveredJournal::finish`] cuts it: once cut, the bytes
    /// are gone, and with them the evidence that records may have been
    /// there.
    pub fn recover(
        disk: DiskRef,
        dir: PathBuf,
        options: JournalOptions,
    ) -> Result<RecoveredJournal, JournalError> {
        disk.create_dir_all(&dir)
            .map_err(|e| JournalError::io(&dir, 0, e))?;
        let marker = read_marker(&*disk, &dir)?;
        if marker.damage.is_some() {
            // Dropping an unreadable marker only makes purged (valid) records
            // readable again; it is reported above all else.
            remove_durably(&*disk, &dir, &dir.join(marker::FILE_NAME))?;
        }
        let mut names = list_segments(&*disk, &dir)?;
        if let Some(purged) = marker.purged {
            finish_interrupted_purge(&*disk, &dir, &mut names, purged)?;
        }
        let mut analysis = recovery::analyze(scan_all(&*disk, &names, &options)?, marker.purged);
        analysis.damage.splice(0..0, marker.damage);
        Ok(RecoveredJournal {
            disk,
            dir,
            options,
            analysis,
            purged: marker.purged,
        })
    }

    /// Read-only scan of a journal directory: the same verification and
    /// classification as [`Journal::open`], but nothing is changed (a torn
    /// tail is reported, not cut). An absent directory is an empty journal.
    pub fn scan(
        disk: &dyn Disk,
        dir: &Path,
        options: &JournalOptions,
    ) -> Result<RecoveryReport, JournalError> {
        if !disk.exists(dir).map_err(|e| JournalError::io(dir, 0, e))? {
            return Ok(RecoveryReport::default());
        }
        let marker = read_marker(disk, dir)?;
        let names = list_segments(disk, dir)?;
        let mut analysis = recovery::analyze(scan_all(disk, &names, options)?, marker.purged);
        analysis.damage.splice(0..0, marker.damage);
        let state = build_state(&analysis, marker.purged);
        Ok(build_report(&analysis, &state))
    }
}

/// A journal scanned and classified by [`Journal::recover`], with its
/// torn tail not cut yet.
pub struct RecoveredJournal {
    disk: DiskRef,
    dir: PathBuf,
    options: JournalOptions,
    analysis: Analysis,
    purged: Option<u64>,
}

impl RecoveredJournal {
    /// What [`RecoveredJournal::finish`] will cut as a torn tail.
    pub fn torn_tail(&self) -> Option<TornTail> {
        torn_tail(&self.analysis)
    }

    /// Cuts the torn tail, drops a journal left without records, syncs
    /// what was scanned and opens the journal for appends.
    pub fn finish(self) -> Result<(Journal, RecoveryReport), JournalError> {
        let RecoveredJournal {
            disk,
            dir,
            options,
            mut analysis,
            mut purged,
        } = self;
        if let Some(torn) = &analysis.torn {
            cut_torn(&*disk, &dir, &analysis, torn)?;
        }
        if analysis.entries.is_empty() && analysis.lost.is_empty() && analysis.damage.is_empty() {
            // Only header-only segments or purged records remain: start empty,
            // so the next append may begin a chain at any index.
            remove_everything(&*disk, &dir, &analysis)?;
            analysis.segments.clear();
            purged = None;
        }
        if let Some(last) = analysis.segments.last() {
            // The records just scanned may sit only in the page cache (after
            // a process crash): make them durable before anyone acts on them.
            last.file
                .sync()
                .map_err(|e| JournalError::io(&last.path, last.len, e))?;
        }
        let state = build_state(&analysis, purged);
        let report = build_report(&analysis, &state);
        log_report(&dir, &report);
        let journal = Journal {
            next_index: next_index(&analysis),
            tail: analysis.segments.last().map(|s| Tail {
                key: s.key,
                path: s.path.clone(),
                file: Arc::clone(&s.file),
                len: s.len,
                chain: analysis.last_chain,
                synced: s.len,
            }),
            disk,
            dir,
            options,
            state: Arc::new(RwLock::new(state)),
            poisoned: false,
            unsynced: false,
            scratch: Vec::new(),
        };
        Ok((journal, report))
    }
}

struct Marker {
    purged: Option<u64>,
    damage: Option<Damage>,
}

fn read_marker(disk: &dyn Disk, dir: &Path) -> Result<Marker, JournalError> {
    let path = dir.join(marker::FILE_NAME);
    let io_err = |e: io::Error| JournalError::io(&path, 0, e);
    if !disk.exists(&path).map_err(io_err)? {
        return Ok(Marker {
            purged: None,
            damage: None,
        });
    }
    let file = disk.open(&path).map_err(io_err)?;
    let len = file.len().map_err(io_err)?;
    // Never let a damaged file size drive an allocation.
    let mut bytes =
        vec![0u8; usize::try_from(len.min(marker::MARKER_BYTES as u64 + 1)).expect("small")];
    file.read_at(0, &mut bytes).map_err(io_err)?;
    match marker::decode(&bytes) {
        Ok(purged) => Ok(Marker {
            purged: Some(purged),
            damage: None,
        }),
        Err(MarkerProblem::Damaged(reason)) => Ok(Marker {
            purged: None,
            damage: Some(Damage::BadPurgeMarker { file: path, reason }),
        }),
        Err(MarkerProblem::UnsupportedVersion(version)) => Err(JournalError::UnsupportedVersion {
            file: path,
            version,
            supported: marker::FORMAT_VERSION,
        }),
    }
}

/// Segment files by first index, in index order.
fn list_segments(disk: &dyn Disk, dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let names = disk.list(dir).map_err(|e| JournalError::io(dir, 0, e))?;
    let mut segments = Vec::new();
    for name in names {
        match segment::parse_file_name(&name) {
            Some(index) => segments.push((index, dir.join(name))),
            None if name == marker::FILE_NAME || name == format!("{}.tmp", marker::FILE_NAME) => {}
            None => {
                tracing::warn!(dir = %dir.display(), file = %name, "ignoring a file that is not a journal segment")
            }
        }
    }
    segments.sort_by_key(|(index, _)| *index);
    Ok(segments)
}

/// A purge writes its marker, then deletes whole segments oldest first. A
/// crash in between leaves segments whose records are all purged: finish.
fn finish_interrupted_purge(
    disk: &dyn Disk,
    dir: &Path,
    names: &mut Vec<(u64, PathBuf)>,
    purged: u64,
) -> Result<(), JournalError> {
    let mut done = 0;
    while done + 1 < names.len() && names[done + 1].0 <= purged.saturating_add(1) {
        done += 1;
    }
    for (_, path) in names.drain(..done) {
        tracing::info!(file = %path.display(), purged, "removing a segment left by an interrupted purge");
        remove_durably(disk, dir, &path)?;
    }
    Ok(())
}

fn scan_all(
    disk: &dyn Disk,
    names: &[(u64, PathBuf)],
    options: &JournalOptions,
) -> Result<Vec<SegmentScan>, JournalError> {
    names
        .iter()
        .map(|(index, path)| {
            let file = disk.open(path).map_err(|e| JournalError::io(path, 0, e))?;
            scan::scan_segment(file, path.clone(), *index, options.record_bytes_max)
        })
        .collect()
}

fn cut_torn(
    disk: &dyn Disk,
    dir: &Path,
    analysis: &Analysis,
    torn: &TornAction,
) -> Result<(), JournalError> {
    match torn {
        TornAction::Cut {
            path,
            offset,
            bytes,
        } => {
            tracing::warn!(file = %path.display(), offset, bytes, "cutting the torn tail a crash left");
            let segment = analysis.segments.last().expect("a cut segment is kept");
            debug_assert_eq!(&segment.path, path);
            let io_err = |e| JournalError::io(path, *offset, e);
            segment.file.set_len(*offset).map_err(io_err)?;
            segment.file.sync().map_err(io_err)
        }
        TornAction::Remove { path, bytes } => {
            tracing::warn!(file = %path.display(), bytes, "removing a segment whose creation a crash cut short");
            remove_durably(disk, dir, path)
        }
    }
}

fn remove_everything(disk: &dyn Disk, dir: &Path, analysis: &Analysis) -> Result<(), JournalError> {
    for segment in &analysis.segments {
        remove_durably(disk, dir, &segment.path)?;
    }
    let marker = dir.join(marker::FILE_NAME);
    if disk
        .exists(&marker)
        .map_err(|e| JournalError::io(&marker, 0, e))?
    {
        remove_durably(disk, dir, &marker)?;
    }
    Ok(())
}

/// Removes a file and syncs its directory, so that removals reach the disk
/// in the order they are made.
pub(super) fn remove_durably(disk: &dyn Disk, dir: &Path, path: &Path) -> Result<(), JournalError> {
    disk.remove(path)
        .map_err(|e| JournalError::io(path, 0, e))?;
    disk.sync_dir(dir).map_err(|e| JournalError::io(dir, 0, e))
}

fn build_state(analysis: &Analysis, purged: Option<u64>) -> State {
    State {
        segments: analysis
            .segments
            .iter()
            .map(|s| {
                (
                    s.key,
                    SegmentRef {
                        path: s.path.clone(),
                        file: Arc::clone(&s.file),
                    },
                )
            })
            .collect(),
        entries: analysis.entries.iter().copied().collect(),
        lost: analysis
            .lost
            .iter()
            .map(|l| (l.first, l.clone()))
            .collect::<BTreeMap<_, _>>(),
        purged,
    }
}

/// The index the next append must carry: after the last record, after any
/// index known lost, and no lower than an empty last segment's header says.
fn next_index(analysis: &Analysis) -> Option<u64> {
    let after_record = analysis.entries.last().map(|e| e.index + 1);
    let after_lost = analysis.lost.iter().map(|l| l.last + 1).max();
    let empty_tail = analysis
        .segments
        .last()
        .filter(|s| analysis.entries.last().is_none_or(|e| e.segment != s.key))
        .and_then(|s| s.header)
        .map(|h| h.first_index);
    after_record.max(after_lost).max(empty_tail)
}

fn build_report(analysis: &Analysis, state: &State) -> RecoveryReport {
    let readable = state
        .entries
        .iter()
        .filter(|e| state.lost_at(e.index).is_none())
        .count();
    RecoveryReport {
        segments: analysis.segments.len() as u64,
        records: readable as u64,
        bytes: analysis.segments.iter().map(|s| s.len).sum(),
        first_index: state.first_index(),
        last: state.last(),
        torn_tail: torn_tail(analysis),
        damage: analysis.damage.clone(),
    }
}

/// The torn tail as reported, with the indices its bytes could have held.
fn torn_tail(analysis: &Analysis) -> Option<TornTail> {
    let (file, offset, bytes_cut) = match analysis.torn.as_ref()? {
        TornAction::Cut {
            path,
            offset,
            bytes,
        } => (path.clone(), *offset, *bytes),
        TornAction::Remove { path, bytes } => (path.clone(), 0, *bytes),
    };
    // A segment whose creation was cut short holds at most part of its
    // header: no record.
    let records_max = match analysis.torn.as_ref()? {
        // The deliberate bug of the simulator's tests cuts damaged synced
        // records as torn and, to stay the bug it is, says nothing of them.
        _ if crate::rt::sabotaged(crate::rt::Sabotage::TruncateOnChecksumFailure) => 0,
        TornAction::Cut { .. } => bytes_cut / record::HEADER_BYTES as u64,
        TornAction::Remove { .. } => 0,
    };
    let first_index = next_index(analysis)
        .or_else(|| analysis.segments.last().map(|s| s.key))
        .unwrap_or(0);
    Some(TornTail {
        file,
        offset,
        bytes_cut,
        first_index,
        records_max,
    })
}

fn log_report(dir: &Path, report: &RecoveryReport) {
    for damage in &report.damage {
        tracing::error!(dir = %dir.display(), %damage, "journal damage");
    }
    tracing::info!(
        dir = %dir.display(),
        segments = report.segments,
        records = report.records,
        first_index = ?report.first_index,
        last = ?report.last,
        torn_tail = report.torn_tail.is_some(),
        damaged = report.damage.len(),
        "journal opened"
    );
}
