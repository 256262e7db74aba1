//! Opening a log store: recover the meta store and the journal, reconcile
//! them, decide whether the node may vote, start the writer.

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use finkfs_seam::DiskRef;
use tokio::sync::Semaphore;

use super::durable::DurableState;
use super::error::LogStoreError;
use super::reader::JournalLogReader;
use super::shared::{Shared, SharedState};
use super::vote_gate::{Lost, VoteGate};
use super::writer::{Writer, WriterRun};
use super::{
    JournalLogStore, LogStoreOptions, WriterHandle, JOURNAL_DIR, META_DIR, REJOIN_MARKER,
    WRITE_QUEUE_DEPTH_MAX,
};
use crate::entry_codec::decode_entry;
use crate::journal::{Damage, Journal, RecoveryReport};
use crate::meta::{MetaRecovery, MetaStore};
use crate::types::LogId;

/// What opening found.
#[derive(Debug)]
pub struct OpenReport {
    /// The journal's recovery (torn tail cut, damage found).
    pub journal: RecoveryReport,
    /// The meta store's recovery (damaged copies, lost state).
    pub meta: MetaRecovery,
    /// What the meta store held.
    pub state: DurableState,
    /// Why the node may not vote, as it opened; empty when it may. Some
    /// lift at runtime: [`super::JournalLogStore::vote_gate`] says now.
    pub vote_blockers: Vec<VoteBlocker>,
}

/// A reason the node must not vote or count toward a quorum (invariant 5).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VoteBlocker {
    /// Every copy of the meta store is damaged: the vote, and with it the
    /// promise not to vote twice in a term, is gone.
    VoteLost,
    /// The saved vote is older than the log: a node only takes entries from
    /// a leader after saving a vote at least as new, so a vote behind the
    /// log was lost or rolled back (a meta store replaced or recreated).
    VoteBehindLog {
        /// Term of the saved vote, None if no vote is saved.
        vote_term: Option<u64>,
        /// Term of the newest entry held or purged.
        log_term: u64,
    },
    /// The journal holds damage that a crash does not explain (a torn tail
    /// is not counted). Any durable entry may have been acknowledged to a
    /// leader and counted in a commit, so damage anywhere may be damage to
    /// a committed entry.
    JournalDamaged {
        /// How many pieces of damage the journal reported.
        pieces: u64,
    },
    /// The saved committed log id lies beyond every entry the journal holds
    /// or purged: committed entries are missing.
    CommittedMissing {
        /// The saved committed log id.
        committed: LogId,
        /// The highest index held or purged.
        last_index: Option<u64>,
    },
    /// Entries between the purge point and the first journal record are
    /// missing.
    GapAfterPurge {
        /// The purge point.
        purged_index: u64,
        /// The lowest index the journal holds.
        first_index: u64,
    },
    /// A repair cut damaged entries from the journal: until the log again
    /// reaches the last index the node held before, it may lack entries it
    /// acknowledged. Lifts at runtime when the log reaches the floor.
    BelowVouchFloor {
        /// The last index held before the repair.
        floor: u64,
        /// The highest index the log holds or purged now.
        last_index: Option<u64>,
    },
    /// A torn tail was cut at open: its bytes could have held entries up
    /// to `floor`, synced and acknowledged before damage at rest made them
    /// look torn. Lifts at runtime when the log reaches the floor, or when
    /// every other voter said its log ends below it.
    BelowTailFloor {
        /// The highest index the cut bytes could have held, or lower once
        /// the other voters answered.
        floor: u64,
        /// The highest index the log holds or purged now.
        last_index: Option<u64>,
    },
    /// The data directory held no log although the node is a member of an
    /// existing cluster (it was wiped or replaced): its vote and what it
    /// acknowledged are gone. Lifts at runtime once the node has accepted a
    /// leader and its log reached the commit index that leader announced.
    DataDirWiped {
        /// The leader's commit index to catch up to, once one was seen.
        catch_up_to: Option<u64>,
    },
}

pub(super) fn open(
    disk: DiskRef,
    dir: &Path,
    options: LogStoreOptions,
) -> Result<(JournalLogStore, OpenReport), LogStoreError> {
    let setup = |source| LogStoreError::Setup {
        dir: dir.to_path_buf(),
        source,
    };
    disk.create_dir_all(dir).map_err(setup)?;
    let meta_dir = dir.join(META_DIR);
    let (mut meta, meta_report) = MetaStore::open(Arc::clone(&disk), meta_dir.clone())?;
    let state = match meta.payload() {
        Some(bytes) => DurableState::decode(bytes).map_err(|e| LogStoreError::CorruptState {
            dir: meta_dir.clone(),
            offset: e.offset,
            reason: e.reason,
        })?,
        None => DurableState::default(),
    };
    let recovered = Journal::recover(disk.clone(), dir.join(JOURNAL_DIR), options.journal.clone())?;
    let state = save_tail_floor(&mut meta, state, recovered.torn_tail())?;
    let (mut journal, journal_report) = recovered.finish()?;
    finish_purge(&mut journal, &state)?;
    let state = anchor_unpurged_start(&mut journal, &mut meta, state, options.applied)?;
    let state = purge_damage_applied(
        &mut journal,
        &mut meta,
        state,
        &journal_report,
        meta_report.lost,
        options.applied,
    )?;
    let last = last_log_id(&journal)?;
    let fixed = vote_blockers(&state, &meta_report, &journal_report, &journal, last);
    let (fixed, state) = vouch_for_missing_committed(&mut meta, &meta_dir, fixed, state, last)?;
    let mut state = state;
    let newest = [last, state.purged].into_iter().flatten().max();
    if state
        .tail_floor
        .is_some_and(|floor| newest.is_some_and(|newest| newest.index >= floor))
    {
        // Reached before this start (the log grew back past it and the
        // lifted floor was not saved yet): the writer's next save drops it.
        state.tail_floor = None;
    }
    let shared = Arc::new(Shared::new(SharedState {
        vote: state.vote,
        committed: state.committed,
        purged: state.purged,
        last,
        ..SharedState::default()
    }));
    let empty = last.is_none() && state.purged.is_none();
    let marker = dir.join(REJOIN_MARKER);
    let marked = rejoin_marked(
        &disk,
        &marker,
        !meta_report.lost && options.member_of_existing_cluster && empty,
    )?;
    let lost = if meta_report.lost {
        Some(Lost::Copies)
    } else if marked {
        Some(Lost::Wiped)
    } else {
        None
    };
    let gate = Arc::new(
        VoteGate::new(Arc::clone(&shared), fixed, state.vouch_floor, lost)
            .with_tail_floor(state.tail_floor),
    );
    let vote_blockers = gate.blockers();
    for blocker in &vote_blockers {
        tracing::error!(dir = %dir.display(), ?blocker, "log store opened but the node must not vote");
    }
    let reader = JournalLogReader {
        journal: journal.reader(),
        shared: Arc::clone(&shared),
        dir: journal.dir().to_path_buf(),
    };
    if options.writer_run == WriterRun::Task && tokio::runtime::Handle::try_current().is_err() {
        return Err(setup(io::Error::other(
            "a writer run as a task needs a tokio runtime",
        )));
    }
    // Unbounded: the semaphore of WRITE_QUEUE_DEPTH_MAX bounds it.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (stopped, writer_stopped) = tokio::sync::watch::channel(false);
    let writer = Writer {
        journal,
        meta,
        meta_dir,
        durable: state.clone(),
        shared: Arc::clone(&shared),
        rx,
        committed_save_interval: options.committed_save_interval,
        committed_unsaved: None,
        failed: None,
        rejoin_marker: marked.then(|| (disk.clone(), marker.clone())),
        stopped,
    };
    let handle = match options.writer_run {
        WriterRun::Thread => WriterHandle::Thread(spawn_thread(writer).map_err(setup)?),
        WriterRun::Task => WriterHandle::Task(crate::rt::spawn(writer.run())),
    };
    let store = JournalLogStore {
        dir: dir.to_path_buf(),
        shared,
        reader,
        queue: Arc::new(Semaphore::new(WRITE_QUEUE_DEPTH_MAX)),
        tx,
        writer: Some(handle),
        writer_stopped,
        gate,
    };
    let report = OpenReport {
        journal: journal_report,
        meta: meta_report,
        state,
        vote_blockers,
    };
    Ok((store, report))
}

/// Runs the writer on its own thread, under a single-threaded runtime that
/// only drives its timer.
fn spawn_thread(writer: Writer) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("finkfs-journal-writer".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(writer.run()),
                Err(error) => {
                    // Dropping the writer closes the queue: every write then
                    // fails with WriterStopped.
                    tracing::error!(%error, "the journal writer could not start");
                    writer
                        .shared
                        .poison(format!("the journal writer could not start: {error}"));
                }
            }
        })
}

/// A torn tail is about to be cut: its bytes cannot be told from the last
/// synced records damaged at rest, and those may have been acknowledged to
/// a leader and counted in a commit. The highest index they could have
/// held is saved as the tail floor before they are cut, so that neither
/// this start nor one after a crash midway forgets that the node may have
/// held them.
fn save_tail_floor(
    meta: &mut MetaStore,
    mut state: DurableState,
    torn: Option<crate::journal::TornTail>,
) -> Result<DurableState, LogStoreError> {
    let Some((torn, possible)) = torn.and_then(|t| t.last_index_possible().map(|p| (t, p))) else {
        return Ok(state);
    };
    let floor = state.tail_floor.map_or(possible, |old| old.max(possible));
    tracing::warn!(
        file = %torn.file.display(),
        offset = torn.offset,
        bytes = torn.bytes_cut,
        first_index = torn.first_index,
        tail_floor = floor,
        "a torn tail is cut: it may have held acknowledged entries, so the node does not vote until the other voters say how far their logs reach, or its log reaches the floor"
    );
    state.tail_floor = Some(floor);
    meta.save(&state.encode())?;
    Ok(state)
}

/// A crash between saving the purge point and purging the journal leaves
/// purged records in the journal: drop them now.
fn finish_purge(journal: &mut Journal, state: &DurableState) -> Result<(), LogStoreError> {
    let Some(purged) = state.purged else {
        return Ok(());
    };
    if journal
        .first_index()
        .is_some_and(|first| first <= purged.index)
    {
        tracing::info!(dir = %journal.dir().display(), purged = %purged, "finishing an interrupted purge");
        journal.purge_up_to(purged.index)?;
    }
    Ok(())
}

/// A journal that starts above index 0 with no purge point saved (both
/// meta copies lost with it, or the head segments gone) holds a log openraft
/// cannot start from: it reads from index 0. When the state machine has
/// applied through the entry before the journal's first, those entries are
/// in it: the log is opened as purged through the applied log id (the
/// caller makes a snapshot covering it before openraft starts). Otherwise
/// the entries between are nowhere on this node: the journal is cleared
/// behind a vouch floor at the last index it held, so the node takes the
/// log again from a leader and does not vote until it is back there. Each
/// decision is saved in the meta store before the journal changes, so a
/// crash midway is finished by the next open.
fn anchor_unpurged_start(
    journal: &mut Journal,
    meta: &mut MetaStore,
    mut state: DurableState,
    applied: Option<LogId>,
) -> Result<DurableState, LogStoreError> {
    if state.purged.is_some() {
        return Ok(state);
    }
    let Some(first) = journal.first_index().filter(|&first| first > 0) else {
        return Ok(state);
    };
    match applied.filter(|applied| applied.index + 1 >= first) {
        Some(applied) => {
            tracing::warn!(
                dir = %journal.dir().display(),
                first,
                applied = %applied,
                "the journal starts above index 0 with no purge point saved: opening it as purged through the applied log id"
            );
            state.purged = Some(applied);
            meta.save(&state.encode())?;
            journal.purge_up_to(applied.index)?;
        }
        None => {
            let held = journal.last().map_or(first, |(index, _)| index);
            tracing::warn!(
                dir = %journal.dir().display(),
                first,
                applied = ?applied,
                held,
                "the journal starts above index 0 with no purge point saved and entries before it are not applied: clearing it; the node takes the log again from a leader and does not vote until its log reaches the index it held"
            );
            state.vouch_floor = Some(state.vouch_floor.unwrap_or(0).max(held));
            state.committed = None;
            meta.save(&state.encode())?;
            journal.truncate_after(first - 1)?;
        }
    }
    Ok(state)
}

/// Whether the node is a wiped member that has not caught up yet: the
/// rejoin marker stands (left by `fsck --repair`, or by an earlier start),
/// or `wiped_now` (started with `--rejoin` on an empty log), in which case
/// the marker is written, durably, so that a restart before the node has
/// caught up still finds it: a partial log must not let it vote.
fn rejoin_marked(disk: &DiskRef, marker: &Path, wiped_now: bool) -> Result<bool, LogStoreError> {
    let setup = |source| LogStoreError::Setup {
        dir: marker.to_path_buf(),
        source,
    };
    if disk.exists(marker).map_err(setup)? {
        tracing::warn!(file = %marker.display(), "this node lost its log and vote: it does not vote until it has caught up with a leader");
        return Ok(true);
    }
    if wiped_now {
        finkfs_seam::write_file_atomic(
            &**disk,
            marker,
            b"a wiped member: no vote until caught up with a leader\n",
        )
        .map_err(setup)?;
    }
    Ok(wiped_now)
}

/// Damage in records the state machine has already applied costs nothing:
/// those entries are in it, and a log may always be purged through what
/// was applied (the caller makes a snapshot covering it before openraft
/// starts). So when every piece of damage lies at or below the durable
/// applied index, the purge point is saved there and the journal purged
/// through it: the node starts with a whole log after it, and votes.
/// Cutting the journal before the damage instead would also drop the
/// intact records after it, and when the same record is damaged on every
/// replica, committed entries beyond the applied state would then be lost
/// everywhere. Not done when the vote copies are lost: saving the state
/// would hide that.
fn purge_damage_applied(
    journal: &mut Journal,
    meta: &mut MetaStore,
    mut state: DurableState,
    report: &RecoveryReport,
    meta_lost: bool,
    applied: Option<LogId>,
) -> Result<DurableState, LogStoreError> {
    let Some(applied) = applied else {
        return Ok(state);
    };
    if meta_lost
        || report.damage.is_empty()
        || state
            .purged
            .is_some_and(|purged| purged.index >= applied.index)
        || !report.damage.iter().all(|d| below(d, Some(applied.index)))
    {
        return Ok(state);
    }
    tracing::warn!(
        dir = %journal.dir().display(),
        applied = %applied,
        damage = report.damage.len(),
        "journal damage lies at or below the applied index: those entries are in the state machine; purging the journal through it"
    );
    state.purged = Some(applied);
    meta.save(&state.encode())?;
    journal.purge_up_to(applied.index)?;
    Ok(state)
}

/// The log id of the last record, read back and decoded: the journal
/// knows index and term, the leader's node id is in the payload.
fn last_log_id(journal: &Journal) -> Result<Option<LogId>, LogStoreError> {
    let Some((index, term)) = journal.last() else {
        return Ok(None);
    };
    let record = journal.read(index)?;
    let entry = decode_entry(index, term, Bytes::from(record.payload)).map_err(|source| {
        LogStoreError::CorruptEntry {
            dir: journal.dir().to_path_buf(),
            index,
            source,
        }
    })?;
    Ok(Some(entry.log_id))
}

/// Committed entries the journal no longer holds (a damaged last record
/// cut as torn, a segment lost, a journal cut by a repair) are taken again
/// from a leader, the way `fsck --repair` handles mid-log damage: the saved
/// committed id is lowered to the newest entry held or purged, and a vouch
/// floor at the old committed index is saved with it, durably, before the
/// node runs. The node then starts (openraft cannot start with a committed
/// id beyond the log: it re-applies up to it) and takes the entries from
/// the leader, but does not vote until its log reaches the floor again: a
/// log missing committed entries must never elect a leader. The floor is
/// saved first so that a crash before the entries are back cannot forget
/// it.
fn vouch_for_missing_committed(
    meta: &mut MetaStore,
    meta_dir: &Path,
    mut blockers: Vec<VoteBlocker>,
    mut state: DurableState,
    last: Option<LogId>,
) -> Result<(Vec<VoteBlocker>, DurableState), LogStoreError> {
    let Some(missing) = blockers.iter().find_map(|b| match b {
        VoteBlocker::CommittedMissing { committed, .. } => Some(*committed),
        _ => None,
    }) else {
        return Ok((blockers, state));
    };
    let held = [last, state.purged].into_iter().flatten().max();
    state.committed = held.filter(|log_id| log_id.index < missing.index);
    state.vouch_floor = Some(state.vouch_floor.unwrap_or(0).max(missing.index));
    meta.save(&state.encode())?;
    tracing::warn!(
        dir = %meta_dir.display(),
        committed = %missing,
        held = ?held.map(|log_id| log_id.index),
        "committed entries are missing from the journal: the node takes them again from the leader and does not vote until its log reaches the committed index"
    );
    blockers.retain(|b| !matches!(b, VoteBlocker::CommittedMissing { .. }));
    Ok((blockers, state))
}

fn vote_blockers(
    state: &DurableState,
    meta: &MetaRecovery,
    report: &RecoveryReport,
    journal: &Journal,
    last: Option<LogId>,
) -> Vec<VoteBlocker> {
    let mut blockers = Vec::new();
    // The newest log id the log holds or purged.
    let newest = [last, state.purged].into_iter().flatten().max();
    // A lost vote is the gate's (it lifts on rejoining a leader).
    if !meta.lost {
        blockers.extend(vote_behind_log(state, newest));
    }
    let purged_index = state.purged.map(|purged| purged.index);
    let pieces = report
        .damage
        .iter()
        .filter(|d| !below(d, purged_index))
        .count() as u64;
    if pieces > 0 {
        blockers.push(VoteBlocker::JournalDamaged { pieces });
    }
    let last_index = newest.map(|log_id| log_id.index);
    if let Some(committed) = state.committed {
        if last_index.is_none_or(|last| last < committed.index) {
            blockers.push(VoteBlocker::CommittedMissing {
                committed,
                last_index,
            });
        }
    }
    if let (Some(purged_index), Some(first_index)) = (purged_index, journal.first_index()) {
        if first_index > purged_index + 1 {
            blockers.push(VoteBlocker::GapAfterPurge {
                purged_index,
                first_index,
            });
        }
    }
    blockers
}

/// A saved vote older than the newest entry: the vote was lost or rolled
/// back. Compared by term only, which holds for every leader id scheme.
fn vote_behind_log(state: &DurableState, newest: Option<LogId>) -> Option<VoteBlocker> {
    let log_term = newest?.leader_id.term;
    let vote_term = state.vote.map(|vote| vote.leader_id.term);
    (vote_term.unwrap_or(0) < log_term).then_some(VoteBlocker::VoteBehindLog {
        vote_term,
        log_term,
    })
}

/// Whether a piece of damage provably lies at or below the purge point:
/// damage to purged entries (left by a purge a crash interrupted) is
/// harmless, the snapshot holds what they said.
fn below(damage: &Damage, purged_index: Option<u64>) -> bool {
    let Some(purged) = purged_index else {
        return false;
    };
    match damage {
        Damage::CorruptRecord {
            indices: Some(lost),
            ..
        } => *lost.end() <= purged,
        Damage::Gap { next_index, .. } => *next_index <= purged + 1,
        Damage::ChainBreak { index, .. } => *index <= purged,
        _ => false,
    }
}
