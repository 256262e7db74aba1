//! Guards against a `finkfs fsck --repair` whose exit code or JSON does not
//! match what it left: 0 when the directory is healthy or safe to start,
//! 1 with the unrecoverable damage listed, and every change named.

mod cli_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cli_support::{finkfs, texts};
use finkfs_node::{ObjectStore, ObjectStoreOptions};
use finkfs_raft::journal::{Journal, JournalOptions};
use finkfs_raft::log_store::DurableState;
use finkfs_raft::meta::MetaStore;
use finkfs_seam::{DiskRef, RealDisk};

const GROUP: &str = "groups/0";
const PACK: &str = "groups/0/blocks/00000000000000000000.pack";
const COPY_A: &str = "groups/0/meta/meta.a";

fn data_dir() -> (tempfile::TempDir, DiskRef) {
    let dir = tempfile::tempdir().unwrap();
    let disk: DiskRef = Arc::new(RealDisk::open(dir.path()).unwrap());
    let group = PathBuf::from(GROUP);
    let mut store =
        ObjectStore::open_with(disk.clone(), group.clone(), ObjectStoreOptions::default()).unwrap();
    for i in 0..4u8 {
        let data = vec![i; 5000 + 300 * usize::from(i)];
        store
            .put(&format!("ztf/raw/alert-{i}.avro"), &data)
            .unwrap();
    }
    drop(store);
    let (mut journal, _) = Journal::open(
        disk.clone(),
        group.join("journal"),
        JournalOptions::default(),
    )
    .unwrap();
    for index in 1..=3 {
        journal.append(index, 0, b"entry").unwrap();
    }
    journal.sync().unwrap();
    let (mut meta, _) = MetaStore::open(disk.clone(), group.join("meta")).unwrap();
    meta.save(&DurableState::default().encode()).unwrap();
    (dir, disk)
}

fn repair(dir: &Path) -> (Option<i32>, serde_json::Value, String) {
    let output = finkfs()
        .arg("fsck")
        .arg("--data-dir")
        .arg(dir)
        .arg("--repair")
        .arg("--json")
        .output()
        .expect("run finkfs fsck --repair");
    let (stdout, stderr) = texts(&output);
    let report = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code(), report, format!("{stdout}{stderr}"))
}

#[test]
fn damaged_vote_copy_is_rewritten_and_exits_0_healthy() {
    let (dir, disk) = data_dir();
    // A pid file left by a node that is gone does not stop the repair.
    std::fs::write(dir.path().join("finkfs-node.pid"), "999999999").unwrap();
    let copy = disk.open(Path::new(COPY_A)).unwrap();
    copy.write_at(30, &[0xAB; 3]).unwrap();
    copy.sync().unwrap();

    let (code, report, text) = repair(dir.path());

    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["before"]["status"], "CORRUPT", "{text}");
    assert_eq!(report["status"], "HEALTHY", "{text}");
    let actions = report["actions"].as_array().unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a["action"] == "rewrote_copy" && a["file"] == COPY_A),
        "{text}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(COPY_A)).unwrap(),
        std::fs::read(dir.path().join("groups/0/meta/meta.b")).unwrap()
    );
}

#[test]
fn damaged_block_without_another_copy_exits_1_listed_unrecoverable() {
    let (dir, disk) = data_dir();
    let pack = disk.open(Path::new(PACK)).unwrap();
    pack.write_at(64 + 56 + 100, &[0xEE; 4]).unwrap();
    pack.sync().unwrap();

    let (code, report, text) = repair(dir.path());

    assert_eq!(code, Some(1), "{text}");
    assert_eq!(report["status"], "DAMAGED", "{text}");
    let left = report["unrecoverable"].as_array().unwrap();
    assert!(
        left.iter()
            .any(|p| p["structure"] == "blocks" && p["file"] == PACK && p["offset"].is_u64()),
        "{text}"
    );
}

#[test]
fn text_report_lists_changes_and_ends_with_the_verdict() {
    let (dir, disk) = data_dir();
    let copy = disk.open(Path::new(COPY_A)).unwrap();
    copy.write_at(30, &[0xAB; 3]).unwrap();
    copy.sync().unwrap();
    let output = finkfs()
        .arg("fsck")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--repair")
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("REPAIR meta rewrote_copy: groups/0/meta/meta.a"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .contains("is HEALTHY"),
        "{stdout}"
    );
}

#[test]
fn damaged_block_is_fetched_from_a_backup_and_exits_0_healthy() {
    let (dir, disk) = data_dir();
    let backup = tempfile::tempdir().unwrap();
    let backup_disk: DiskRef = Arc::new(RealDisk::open(backup.path()).unwrap());
    let target = finkfs_node::backup::BackupTarget::open(backup_disk).unwrap();
    let store = ObjectStore::open(disk.clone(), PathBuf::from(GROUP)).unwrap();
    let path = "ztf/raw/alert-0.avro";
    let original = store.get(path).unwrap();
    for i in 0..4u8 {
        let object = format!("ztf/raw/alert-{i}.avro");
        for block in store.stat(&object).unwrap().unwrap().blocks {
            let data = store.reader().block(&block.hash).unwrap().unwrap();
            target.put_block(&block.hash, &data).unwrap();
        }
    }
    drop(store);
    let pack = disk.open(Path::new(PACK)).unwrap();
    pack.write_at(64 + 56 + 100, &[0xEE; 4]).unwrap();
    pack.sync().unwrap();

    let output = finkfs()
        .arg("fsck")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--repair")
        .arg("--backup")
        .arg(backup.path())
        .arg("--json")
        .output()
        .expect("run finkfs fsck --repair --backup");
    let (stdout, stderr) = texts(&output);
    let text = format!("{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();

    assert_eq!(output.status.code(), Some(0), "{text}");
    assert_eq!(report["before"]["status"], "CORRUPT", "{text}");
    assert_eq!(report["status"], "HEALTHY", "{text}");
    let repaired = &report["blocks"][0]["repaired"];
    assert_eq!(repaired.as_array().map(Vec::len), Some(1), "{text}");
    assert_eq!(repaired[0]["damaged_file"], PACK, "{text}");
    let store = ObjectStore::open(disk, PathBuf::from(GROUP)).unwrap();
    assert_eq!(store.get(path).unwrap(), original, "served byte-identical");
    let damaged = std::fs::read(dir.path().join(PACK)).unwrap();
    assert_eq!(
        damaged[64 + 56 + 100..64 + 56 + 104],
        [0xEE; 4],
        "the damaged copy is kept, not overwritten"
    );
}

#[test]
fn block_sources_need_repair() {
    let (dir, _disk) = data_dir();
    let output = finkfs()
        .arg("fsck")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--backup")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "usage error");
}
