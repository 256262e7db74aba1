//! Guards against a repair that deletes a damaged index or snapshot instead
//! of quarantining it, that leaves a node with packs but no index (it would
//! refuse to start), or that rebuilds an index missing objects the
//! snapshot and the journal still hold.

mod fsck_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use finkfs_node::fsck::repair::{self, RepairReport, RepairStatus, QUARANTINE_DIR};
use finkfs_node::fsck::{FsckOptions, NoProgress, ProblemKind, Structure};
use finkfs_node::state_machine::{NoFetcher, StateMachine};
use finkfs_raft::entry_codec::decode_entry;
use finkfs_raft::journal::{Journal, JournalOptions};
use finkfs_simdisk::SimDisk;
use fsck_support::*;

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

fn in_quarantine(sim: &SimDisk) -> Vec<PathBuf> {
    files_under(sim, &format!("{GROUP}/{QUARANTINE_DIR}"))
}

/// Opens the repaired group as a node would, replays the journal after
/// what the index applied (as openraft does at start), and reads every
/// object back.
async fn assert_every_object_reads_back(sim: &SimDisk, built: &Built) {
    let disk = sim.disk_ref();
    let sm = StateMachine::open(
        disk.clone(),
        PathBuf::from(GROUP),
        sm_options(),
        Arc::new(NoFetcher),
    )
    .expect("the repaired state machine opens");
    let reader = sm.reader();
    let applied = reader.applied().expect("applied").map(|a| a.index);
    let (journal, _) = Journal::open(disk, PathBuf::from(JOURNAL), JournalOptions::default())
        .expect("the journal opens");
    let from = applied.map_or(0, |a| a + 1);
    let mut entries = Vec::new();
    for index in from..=built.last_index {
        let record = journal
            .read(index)
            .expect("the journal holds what the index lacks");
        entries
            .push(decode_entry(index, record.term, Bytes::from(record.payload)).expect("decodes"));
    }
    sm.apply_entries(entries).await.expect("replay");
    for (path, data) in &built.objects {
        assert_eq!(
            &reader.get(path).expect("the object reads back")[..],
            &data[..],
            "{path}"
        );
    }
}

#[tokio::test]
async fn damaged_index_is_quarantined_with_its_packs_and_rebuilt_from_the_snapshot() {
    let (sim, built) = built_sim(61).await;
    for at in find_all(&sim, Path::new(INDEX), b"FMAN") {
        sim.flip_bit(INDEX, (at + 40) * 8).unwrap();
    }
    let damaged = sim.current_bytes(INDEX).unwrap();

    let report = repair_sim(&sim);

    assert_ne!(report.status, RepairStatus::Damaged, "{report:#?}");
    assert!(
        report.actions.iter().any(|a| a.action == "rebuilt_index"),
        "{report:#?}"
    );
    assert!(
        report
            .after
            .problems
            .iter()
            .all(|p| p.structure != Structure::Index || !p.kind.is_damage()),
        "{:#?}",
        report.after.problems
    );
    let kept = in_quarantine(&sim);
    let old_index = kept
        .iter()
        .find(|p| p.ends_with("index.redb"))
        .expect("the old index is kept");
    assert_eq!(sim.current_bytes(old_index).unwrap(), damaged);
    assert!(
        kept.iter()
            .any(|p| p.to_string_lossy().contains("/blocks/")),
        "{kept:?}"
    );
    assert_every_object_reads_back(&sim, &built).await;
}

#[tokio::test]
async fn deleted_and_truncated_index_are_rebuilt() {
    for seed in [62, 63] {
        let (sim, built) = built_sim(seed).await;
        if seed == 62 {
            delete(&sim, Path::new(INDEX));
        } else {
            let len = sim.current_bytes(INDEX).unwrap().len() as u64;
            truncate(&sim, Path::new(INDEX), len / 2);
        }
        let report = repair_sim(&sim);
        assert_ne!(
            report.status,
            RepairStatus::Damaged,
            "seed {seed}: {report:#?}"
        );
        assert_every_object_reads_back(&sim, &built).await;
    }
}

#[tokio::test]
async fn damaged_snapshot_is_quarantined_and_the_node_may_start() {
    let (sim, _) = built_sim(64).await;
    let snapshot = files_under(&sim, SNAPSHOTS)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .expect("a snapshot");
    sim.flip_bit(&snapshot, 200 * 8).unwrap();

    let report = repair_sim(&sim);

    assert_eq!(report.status, RepairStatus::SafeToStart, "{report:#?}");
    assert!(!sim.file_paths().contains(&snapshot));
    assert!(in_quarantine(&sim)
        .iter()
        .any(|p| p.file_name() == snapshot.file_name()));
    assert!(report
        .after
        .damage()
        .all(|p| p.structure == Structure::Snapshots && p.kind == ProblemKind::MissingFile));
}

/// The index damaged, no intact snapshot, the log purged: nothing on the
/// node can rebuild its state, so the repair takes the log and vote too.
/// The node must then not look new (a new node votes with an empty log):
/// the repair leaves a `REJOIN` marker, and the log store opens as a wiped
/// member without a vote even when the node is started without --rejoin.
#[tokio::test]
async fn index_without_a_snapshot_behind_a_purged_log_leaves_a_wiped_member_that_does_not_vote() {
    let (sim, _) = built_sim(65).await;
    for snapshot in files_under(&sim, SNAPSHOTS) {
        sim.disk_ref().remove(&snapshot).unwrap();
    }
    let index = Path::new(INDEX);
    let len = sim.current_bytes(index).unwrap().len() as u64;
    sim.flip_bit(index, (len / 2) * 8).unwrap();
    for at in find_all(&sim, index, b"FMAN") {
        sim.flip_bit(index, (at + 8) * 8).unwrap();
    }

    let report = repair_sim(&sim);
    assert_eq!(report.status, RepairStatus::SafeToStart, "{report:#?}");
    assert!(
        report.actions.iter().any(|a| a.action == "marked_rejoin"),
        "{report:#?}"
    );
    let marker = Path::new(GROUP).join(finkfs_raft::log_store::REJOIN_MARKER);
    assert!(sim.file_paths().contains(&marker), "no marker");
    assert!(files_under(&sim, JOURNAL).is_empty() && files_under(&sim, META).is_empty());

    let (store, _) = finkfs_raft::log_store::JournalLogStore::open(
        sim.disk_ref(),
        Path::new(GROUP),
        finkfs_raft::log_store::LogStoreOptions::default(),
    )
    .expect("the log store opens");
    let blockers = store.vote_blockers();
    assert!(
        blockers
            .iter()
            .any(|b| matches!(b, finkfs_raft::log_store::VoteBlocker::DataDirWiped { .. })),
        "an emptied node would vote: {blockers:?}"
    );
    store.close().await.unwrap();
}
