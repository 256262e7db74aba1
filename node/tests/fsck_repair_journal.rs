//! Guards against a repair that drops damaged journal records unseen, that
//! cuts damage without keeping the node out of elections until the leader
//! has sent the entries again (invariant 5), that loses a vote copy it
//! could rewrite, or that leaves a node unable to start.

mod fsck_support;

use std::path::{Path, PathBuf};

use finkfs_node::fsck::repair::{self, RepairReport, RepairStatus, QUARANTINE_DIR};
use finkfs_node::fsck::{FsckOptions, NoProgress, ProblemKind, Structure};
use finkfs_raft::log_store::{DurableState, JournalLogStore, LogStoreOptions, VoteBlocker};
use finkfs_raft::meta::MetaStore;
use finkfs_simdisk::SimDisk;
use fsck_support::*;

/// Runs the repair, the scratch copies on a disk of their own.
fn repair_sim(sim: &SimDisk) -> RepairReport {
    let scratch = SimDisk::new(0).disk_ref();
    repair::repair_data_dir(
        sim.disk_ref(),
        scratch,
        &FsckOptions::default(),
        &mut NoProgress,
    )
    .expect("the repair runs to the end")
}

fn segments(sim: &SimDisk) -> Vec<PathBuf> {
    let segments: Vec<PathBuf> = files_under(sim, JOURNAL)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert!(segments.len() >= 3, "several segments: {segments:?}");
    segments
}

fn actions<'a>(report: &'a RepairReport, action: &str) -> Vec<&'a repair::RepairAction> {
    report
        .actions
        .iter()
        .filter(|a| a.action == action)
        .collect()
}

fn saved_state(sim: &SimDisk) -> DurableState {
    let recovery = MetaStore::scan(&*sim.disk_ref(), Path::new(META)).expect("scan meta");
    DurableState::decode(recovery.payload.as_deref().expect("a saved state")).expect("decodes")
}

/// The vote blockers of the log store as the node would open it.
async fn blockers_on_open(sim: &SimDisk) -> Vec<VoteBlocker> {
    let (store, _) =
        JournalLogStore::open(sim.disk_ref(), Path::new(GROUP), LogStoreOptions::default())
            .expect("the repaired log store opens");
    let blockers = store.vote_blockers();
    store.close().await.expect("close");
    blockers
}

/// A quarantined copy of `file` from this run, with its bytes.
fn quarantined(sim: &SimDisk, file: &Path) -> Vec<u8> {
    let name = file.file_name().expect("a file name");
    let copy = sim
        .file_paths()
        .into_iter()
        .find(|p| {
            p.starts_with(Path::new(GROUP).join(QUARANTINE_DIR)) && p.file_name() == Some(name)
        })
        .unwrap_or_else(|| panic!("{} was not quarantined", file.display()));
    sim.durable_bytes(&copy).expect("quarantined bytes")
}

#[tokio::test]
async fn mid_log_bit_flip_is_quarantined_cut_and_blocks_the_vote_until_the_floor() {
    let (sim, built) = built_sim(41).await;
    let all = segments(&sim);
    let victim = all[all.len() / 2].clone();
    sim.flip_bit(&victim, (80 + 96 + 20) * 8).unwrap();
    let damaged = sim.current_bytes(&victim).unwrap();

    let report = repair_sim(&sim);

    assert_eq!(report.status, RepairStatus::SafeToStart, "{report:#?}");
    assert!(!report.before.is_healthy());
    assert!(report.after.is_healthy(), "{:#?}", report.after.problems);
    assert_eq!(
        quarantined(&sim, &victim),
        damaged,
        "the damaged bytes are kept as they were"
    );
    assert_eq!(actions(&report, "truncated").len(), 1);
    let state = saved_state(&sim);
    assert_eq!(state.vouch_floor, Some(built.last_index));
    let committed = state.committed.expect("a committed log id").index;
    assert!(
        committed < built.last_index,
        "the committed index was lowered to the cut"
    );
    let blockers = blockers_on_open(&sim).await;
    assert!(
        blockers.iter().any(|b| matches!(b, VoteBlocker::BelowVouchFloor { floor, .. } if *floor == built.last_index)),
        "{blockers:?}"
    );
    assert!(!blockers
        .iter()
        .any(|b| matches!(b, VoteBlocker::JournalDamaged { .. })));
}

#[tokio::test]
async fn deleted_segment_gap_is_cut_before_the_gap() {
    let (sim, built) = built_sim(42).await;
    let all = segments(&sim);
    let victim = all[all.len() / 2].clone();
    delete(&sim, &victim);

    let report = repair_sim(&sim);

    assert_eq!(report.status, RepairStatus::SafeToStart, "{report:#?}");
    assert!(report.after.is_healthy(), "{:#?}", report.after.problems);
    assert!(!sim.file_paths().contains(&victim));
    let later = &all[all.len() / 2 + 1];
    assert!(
        !sim.file_paths().contains(later),
        "nothing after the gap is kept in the journal"
    );
    quarantined(&sim, later);
    assert_eq!(saved_state(&sim).vouch_floor, Some(built.last_index));
}

#[tokio::test]
async fn zeroed_sector_and_truncation_in_the_head_and_tail_are_repaired() {
    for (seed, which, fault) in [
        (43, 0usize, "zero"),
        (44, usize::MAX, "zero"),
        (45, 0, "truncate"),
    ] {
        let (sim, _) = built_sim(seed).await;
        let all = segments(&sim);
        let victim = if which == usize::MAX {
            all[all.len() - 2].clone()
        } else {
            all[which].clone()
        };
        if fault == "zero" {
            sim.zero_sector(&victim, 1).unwrap();
        } else {
            let len = sim.current_bytes(&victim).unwrap().len() as u64;
            truncate(&sim, &victim, len / 2 + 3);
        }
        let report = repair_sim(&sim);
        assert_ne!(
            report.status,
            RepairStatus::Damaged,
            "{fault} in {}: {report:#?}",
            victim.display()
        );
        assert!(
            report
                .after
                .problems
                .iter()
                .all(|p| p.structure != Structure::Journal || !p.kind.is_damage()),
            "{fault}: {:#?}",
            report.after.problems
        );
        assert!(!actions(&report, "quarantined").is_empty());
    }
}

#[tokio::test]
async fn torn_tail_is_cut_behind_a_tail_floor_and_nothing_else_changes() {
    let mut torn = 0;
    let mut floors = 0;
    for seed in 0..seeds(6) {
        let (sim, built) = built_sim(200 + seed).await;
        crash_during_writes(&sim, &built).await;
        let report = repair_sim(&sim);
        assert_eq!(
            report.status,
            RepairStatus::Healthy,
            "seed {seed}: {report:#?}"
        );
        assert!(
            actions(&report, "truncated").is_empty(),
            "a torn tail is no reason to cut the log"
        );
        assert_eq!(saved_state(&sim).vouch_floor, None);
        torn += actions(&report, "cut_torn_tail").len();
        // The cut bytes may have been synced records rotted at rest: the
        // node must not vote on them until the other voters answered.
        if !actions(&report, "set_tail_floor").is_empty() {
            floors += 1;
            assert!(saved_state(&sim).tail_floor.is_some(), "seed {seed}");
            let blockers = blockers_on_open(&sim).await;
            assert!(
                blockers
                    .iter()
                    .any(|b| matches!(b, VoteBlocker::BelowTailFloor { .. })),
                "seed {seed}: {blockers:?}"
            );
        }
    }
    assert!(torn > 0, "no power cut left a torn tail to cut");
    assert!(floors > 0, "no torn tail long enough to hold a record");
}

#[tokio::test]
async fn one_damaged_meta_copy_is_rewritten_from_the_other() {
    let (sim, _) = built_sim(46).await;
    let copy_a = Path::new(META).join("meta.a");
    sim.flip_bit(&copy_a, 40 * 8).unwrap();

    let report = repair_sim(&sim);

    assert_eq!(report.status, RepairStatus::Healthy, "{report:#?}");
    assert_eq!(actions(&report, "rewrote_copy").len(), 1);
    assert_eq!(
        sim.durable_bytes(&copy_a).unwrap(),
        sim.durable_bytes(Path::new(META).join("meta.b")).unwrap()
    );
    assert!(blockers_on_open(&sim).await.is_empty());
}

#[tokio::test]
async fn both_meta_copies_lost_start_safely_without_a_vote() {
    let (sim, _) = built_sim(47).await;
    for name in ["meta.a", "meta.b"] {
        sim.flip_bit(Path::new(META).join(name), 40 * 8).unwrap();
    }

    let report = repair_sim(&sim);

    assert_eq!(report.status, RepairStatus::SafeToStart, "{report:#?}");
    assert!(report
        .after
        .damage()
        .any(|p| p.kind == ProblemKind::VoteLost));
    assert!(!report.pending.is_empty());
    assert!(blockers_on_open(&sim)
        .await
        .contains(&VoteBlocker::VoteLost));
}

/// The last segment with nothing that verifies (header and every record
/// zeroed) says nothing of the indices it held but its file name, and no
/// later segment says where it ended. The repair takes it to quarantine
/// whole (the journal cannot cut inside it) and saves a vouch floor at
/// least as high as anything it could have held: it must not leave the
/// node DAMAGED for good, nor let it vote on the shorter log.
#[tokio::test]
async fn segment_with_nothing_readable_is_moved_out_behind_a_floor() {
    let (sim, _) = built_sim(46).await;
    let all = segments(&sim);
    let last_before = blockers_and_last(&sim).await;
    let victim = all[all.len() - 1].clone();
    let len = sim.current_bytes(&victim).unwrap().len() as u64;
    for sector in 0..len.div_ceil(512) {
        sim.zero_sector(&victim, sector).unwrap();
    }
    let report = repair_sim(&sim);
    assert_eq!(report.status, RepairStatus::SafeToStart, "{report:#?}");
    let moved = actions(&report, "quarantined");
    assert!(
        moved.iter().any(|a| Path::new(&a.file) == victim),
        "{report:#?}"
    );
    assert_eq!(quarantined(&sim, &victim), vec![0u8; len as usize]);
    let floor = saved_state(&sim).vouch_floor.expect("a vouch floor");
    assert!(
        floor >= last_before,
        "floor {floor} below the last index held, {last_before}"
    );
    let blockers = blockers_on_open(&sim).await;
    assert!(
        blockers
            .iter()
            .any(|b| matches!(b, VoteBlocker::BelowVouchFloor { .. })),
        "{blockers:?}"
    );
    assert!(
        !blockers
            .iter()
            .any(|b| matches!(b, VoteBlocker::JournalDamaged { .. })),
        "{blockers:?}"
    );
}

/// The last index the journal holds, before any damage.
async fn blockers_and_last(sim: &SimDisk) -> u64 {
    let (store, report) =
        JournalLogStore::open(sim.disk_ref(), Path::new(GROUP), LogStoreOptions::default())
            .expect("the log store opens");
    store.close().await.expect("close");
    report.journal.last.expect("a journal with records").0
}
