//! Guards against backup commands that mislead an operator: a backup that
//! does not restore every object byte-identical, a verify that misses a
//! damaged block or exits 0 on it, and a restore over existing data.

mod cli_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cli_support::{assert_one_line_error, run, texts};
use finkfs_node::{ObjectStore, ObjectStoreOptions};
use finkfs_seam::{DiskRef, RealDisk};

const GROUP: &str = "groups/0";

fn object(i: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 10_000 + 900 * i as usize];
    let mut xof = blake3::Hasher::new()
        .update(&i.to_le_bytes())
        .finalize_xof();
    xof.fill(&mut bytes);
    bytes
}

/// A stopped node's data directory holding `count` objects.
fn data_dir(count: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let disk: DiskRef = Arc::new(RealDisk::open(dir.path()).unwrap());
    let mut store =
        ObjectStore::open_with(disk, PathBuf::from(GROUP), ObjectStoreOptions::default()).unwrap();
    for i in 0..count {
        store.put(&format!("ztf/{i:03}.avro"), &object(i)).unwrap();
    }
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn verify_read_data(target: &Path) -> std::process::Output {
    run(&["backup", "verify", "--target", path(target), "--read-data"])
}

#[test]
fn backup_verify_restore_round_trip_and_damage_exits_1() {
    let node = data_dir(12);
    let target = tempfile::tempdir().unwrap();
    let out = run(&[
        "backup",
        "now",
        "--data-dir",
        path(node.path()),
        "--to",
        path(target.path()),
    ]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("backup 1 taken: 12 blocks"), "{stdout}");

    let out = run(&["backup", "list", "--target", path(target.path())]);
    assert_eq!(out.status.code(), Some(0));
    let out = verify_read_data(target.path());
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("backup 1: INTACT (12 blocks checked"),
        "{stdout}"
    );

    // Restore into an empty directory and read every object back offline.
    let restored = tempfile::tempdir().unwrap();
    let new_dir = restored.path().join("data");
    let restore = |to: &Path| {
        run(&[
            "restore",
            "--from",
            path(target.path()),
            "--to",
            path(to),
            "--id",
            "1",
            "--peer-addr",
            "127.0.0.1:7101",
            "--client-addr",
            "127.0.0.1:7102",
        ])
    };
    let out = restore(&new_dir);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("12 objects"), "{stdout}");
    {
        let disk: DiskRef = Arc::new(RealDisk::open(&new_dir).unwrap());
        let store = ObjectStore::open(disk, PathBuf::from(GROUP)).unwrap();
        for i in 0..12 {
            let got = store.get(&format!("ztf/{i:03}.avro")).unwrap();
            assert!(got == object(i), "object {i} differs after restore");
        }
    }
    // Never over existing data.
    let out = restore(&new_dir);
    assert_one_line_error(&out, 2, "not empty");

    // One flipped bit in one block: verify --read-data names it and exits 1.
    let blocks = target.path().join("blocks");
    let fanout = std::fs::read_dir(&blocks)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let victim = std::fs::read_dir(&fanout)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(&victim, bytes).unwrap();
    let out = verify_read_data(target.path());
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        stdout.contains(name) && stdout.contains("DAMAGED"),
        "{stdout}"
    );
    // And restore refuses to use it, unless told to leave out what it damages.
    let out = restore(&restored.path().join("second"));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let third = restored.path().join("third");
    let out = run(&[
        "restore",
        "--from",
        path(target.path()),
        "--to",
        path(&third),
        "--id",
        "1",
        "--peer-addr",
        "127.0.0.1:7101",
        "--client-addr",
        "127.0.0.1:7102",
        "--skip-damaged",
    ]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let left_out: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("left out (a block it uses is damaged or missing): "))
        .collect();
    assert_eq!(left_out.len(), 1, "{stdout}");
    let disk: DiskRef = Arc::new(RealDisk::open(&third).unwrap());
    let store = ObjectStore::open(disk, PathBuf::from(GROUP)).unwrap();
    for i in 0..12 {
        let name = format!("ztf/{i:03}.avro");
        if name == left_out[0] {
            assert!(store.get(&name).is_err(), "{name} was left out");
        } else {
            assert!(store.get(&name).unwrap() == object(i), "{name} differs");
        }
    }
}

#[test]
fn backup_of_a_directory_that_is_not_a_node_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let out = run(&[
        "backup",
        "now",
        "--data-dir",
        path(empty.path()),
        "--to",
        path(target.path()),
    ]);
    assert_one_line_error(&out, 2, "not a finkfs data directory");
    let out = run(&["backup", "list", "--target", "/nonexistent/finkfs-target"]);
    assert_one_line_error(&out, 2, "no such directory");
}
