//! Guards against a `finkfs fsck` whose exit code or JSON does not match
//! what it found: 0 and HEALTHY on a healthy data directory, 1 and CORRUPT
//! with file and offset on a damaged one, 2 when it cannot check at all.

mod cli_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cli_support::{assert_one_line_error, finkfs, texts};
use finkfs_node::{ObjectStore, ObjectStoreOptions};
use finkfs_raft::journal::{Journal, JournalOptions};
use finkfs_raft::log_store::DurableState;
use finkfs_raft::meta::MetaStore;
use finkfs_seam::{DiskRef, RealDisk};

const GROUP: &str = "groups/0";
const PACK: &str = "groups/0/blocks/00000000000000000000.pack";

/// A data directory with a journal, vote copies, packs and an index.
fn healthy_data_dir() -> (tempfile::TempDir, DiskRef) {
    let dir = tempfile::tempdir().unwrap();
    let disk: DiskRef = Arc::new(RealDisk::open(dir.path()).unwrap());
    let group = PathBuf::from(GROUP);
    let mut store =
        ObjectStore::open_with(disk.clone(), group.clone(), ObjectStoreOptions::default()).unwrap();
    for i in 0..5u8 {
        let data = vec![i; 3000 + 700 * usize::from(i)];
        store
            .put(&format!("ztf/raw/alert-{i}.avro"), &data)
            .unwrap();
    }
    drop(store);
    let options = JournalOptions::default();
    let (mut journal, _) = Journal::open(disk.clone(), group.join("journal"), options).unwrap();
    for index in 1..=4 {
        // Term 0: entries a fresh node writes before any vote.
        journal.append(index, 0, b"entry").unwrap();
    }
    journal.sync().unwrap();
    let (mut meta, _) = MetaStore::open(disk.clone(), group.join("meta")).unwrap();
    meta.save(&DurableState::default().encode()).unwrap();
    (dir, disk)
}

fn fsck(dir: &Path, json: bool) -> std::process::Output {
    let mut command = finkfs();
    command.arg("fsck").arg("--data-dir").arg(dir);
    if json {
        command.arg("--json");
    }
    command.output().expect("run finkfs fsck")
}

#[test]
fn healthy_data_dir_exits_0_with_a_healthy_status_line() {
    let (dir, _disk) = healthy_data_dir();
    let output = fsck(dir.path(), false);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.lines().last().unwrap().ends_with("is HEALTHY"),
        "{stdout}"
    );
    assert!(stdout.contains(" Objects:         5"), "{stdout}");
}

#[test]
fn damaged_block_exits_1_and_json_names_file_and_offset() {
    let (dir, disk) = healthy_data_dir();
    let pack = disk.open(Path::new(PACK)).unwrap();
    pack.write_at(64 + 56 + 100, &[0xEE; 4]).unwrap();
    pack.sync().unwrap();
    let output = fsck(dir.path(), true);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(report["status"], "CORRUPT");
    let problems = report["problems"].as_array().unwrap();
    let hit = problems
        .iter()
        .find(|p| p["kind"] == "checksum_mismatch")
        .expect("a checksum mismatch");
    assert_eq!(hit["file"], PACK);
    assert_eq!(hit["offset"], 64);
    assert_eq!(hit["structure"], "blocks");
}

#[test]
fn healthy_json_is_parseable_with_totals() {
    let (dir, _disk) = healthy_data_dir();
    let output = fsck(dir.path(), true);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["version"], 1);
    assert_eq!(report["status"], "HEALTHY");
    assert_eq!(report["totals"]["objects"], 5);
    assert_eq!(report["totals"]["journal_records"], 4);
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn missing_data_dir_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("nothing-here");
    let output = fsck(&gone, false);
    assert_one_line_error(&output, 2, "no such directory");
    assert!(!gone.exists(), "fsck must not create the directory");
}

#[test]
fn directory_without_finkfs_data_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let disk = RealDisk::open(dir.path()).unwrap();
    let notes = finkfs_seam::Disk::create(&disk, Path::new("notes.txt")).unwrap();
    notes.write_at(0, b"hello").unwrap();
    let output = fsck(dir.path(), false);
    assert_one_line_error(&output, 2, "not a finkfs data directory");
}

#[test]
fn help_explains_the_report_and_exit_codes() {
    let output = finkfs().args(["fsck", "--help"]).output().unwrap();
    let (stdout, _) = texts(&output);
    assert_eq!(output.status.code(), Some(0));
    for needle in ["HEALTHY", "CORRUPT", "--data-dir", "--json", "Exit codes"] {
        assert!(stdout.contains(needle), "{needle} missing from: {stdout}");
    }
}
