//! Guards against a simulated power cut that is kinder (or crueller) than a
//! real one: unsynced data must be at risk, synced data never, torn writes
//! must tear at sector granularity, and handles from before the cut must die.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use finkfs_seam::{read_file, Disk};
use finkfs_simdisk::{CrashPolicy, FaultKind, InjectedFault, SimDisk, SECTOR_BYTES};

fn p(path: &str) -> &Path {
    Path::new(path)
}

/// A disk holding `path` with `bytes` synced, its directory entry included.
fn disk_with_synced(seed: u64, path: &str, bytes: &[u8]) -> SimDisk {
    let disk = SimDisk::new(seed);
    let file = disk.create(p(path)).unwrap();
    file.write_at(0, bytes).unwrap();
    file.sync().unwrap();
    disk.sync_dir(p("")).unwrap();
    disk
}

#[test]
fn unsynced_write_lost_with_lose_policy() {
    let disk = disk_with_synced(1, "f", b"synced");
    let file = disk.open(p("f")).unwrap();
    file.write_at(6, b" and not").unwrap();
    file.set_len(3).unwrap();
    assert_eq!(read_file(&disk, p("f")).unwrap(), b"syn");
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    assert_eq!(read_file(&disk, p("f")).unwrap(), b"synced");
    let kinds: Vec<FaultKind> = disk.fault_log().iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FaultKind::LostUnsynced, FaultKind::LostUnsynced]);
}

#[test]
fn unsynced_write_kept_with_keep_policy() {
    let disk = disk_with_synced(1, "f", b"synced");
    let file = disk.open(p("f")).unwrap();
    file.write_at(6, b" too").unwrap();
    disk.create(p("unsynced-entry")).unwrap();
    disk.power_cut_with(CrashPolicy::KeepUnsynced);
    assert_eq!(read_file(&disk, p("f")).unwrap(), b"synced too");
    assert!(disk.exists(p("unsynced-entry")).unwrap());
}

#[test]
fn synced_write_survives_every_power_cut() {
    for seed in 0..200 {
        let disk = SimDisk::new(seed);
        disk.create_dir_all(p("j")).unwrap();
        let mut expected = Vec::new();
        for round in 0..4u8 {
            let name = format!("j/seg-{round}");
            let file = disk.create(p(&name)).unwrap();
            // 700 bytes: the synced data ends mid-sector, so the unsynced
            // write after it shares a sector with it.
            let synced = vec![round + 1; 700];
            file.write_at(0, &synced).unwrap();
            file.sync().unwrap();
            disk.sync_dir(p("j")).unwrap();
            expected.push((name.clone(), synced));
            file.write_at(700, &[0xEE; 900]).unwrap();
            file.write_at(100, &[0xDD; 10]).unwrap();
            disk.create(p("j/unsynced")).ok();
            disk.power_cut();
            for (name, synced) in &expected {
                let now = disk.durable_bytes(name).unwrap();
                let ok = now.len() >= 700
                    && now[..100] == synced[..100]
                    && now[110..700] == synced[110..];
                assert!(ok, "seed {seed} round {round}: {name} lost synced bytes");
            }
        }
    }
}

/// Which of old, new or garbage each sector piece of a torn write holds.
fn classify(bytes: &[u8], old: u8, new: u8) -> &'static str {
    if bytes.iter().all(|&b| b == old) {
        "old"
    } else if bytes.iter().all(|&b| b == new) {
        "new"
    } else {
        "garbage"
    }
}

#[test]
fn torn_write_mixes_old_new_garbage_at_sector_granularity() {
    let sector = SECTOR_BYTES as usize;
    let (start, len) = (sector / 2, 4 * sector);
    let mut seen = BTreeSet::new();
    let mut mixed_tears = 0;
    for seed in 0..200 {
        let disk = disk_with_synced(seed, "f", &vec![0xAA; 6 * sector]);
        let file = disk.open(p("f")).unwrap();
        file.write_at(start as u64, &vec![0x55; len]).unwrap();
        disk.take_fault_log();
        disk.power_cut();
        let log = disk.take_fault_log();
        if log[0].kind != FaultKind::TornWrite {
            continue;
        }
        let after = disk.durable_bytes("f").unwrap();
        assert!(after[..start].iter().all(|&b| b == 0xAA), "seed {seed}");
        assert!(
            after[start + len..].iter().all(|&b| b == 0xAA),
            "seed {seed}"
        );
        // Pieces: the write cut at every sector boundary (aligned to file
        // offsets, so the first and last pieces are half sectors).
        let mut kinds = BTreeSet::new();
        let mut piece_start = start;
        while piece_start < start + len {
            let piece_end = ((piece_start / sector + 1) * sector).min(start + len);
            let kind = classify(&after[piece_start..piece_end], 0xAA, 0x55);
            kinds.insert(kind);
            seen.insert(kind);
            piece_start = piece_end;
        }
        if kinds.len() > 1 {
            mixed_tears += 1;
        }
    }
    assert_eq!(seen, BTreeSet::from(["garbage", "new", "old"]));
    assert!(
        mixed_tears > 0,
        "no torn write mixed outcomes across sectors"
    );
}

#[test]
fn torn_append_leaves_zeros_where_old_bytes_were_kept() {
    let mut found = false;
    for seed in 0..200 {
        let disk = disk_with_synced(seed, "f", b"head");
        let file = disk.open(p("f")).unwrap();
        file.write_at(4, &[0x55; 2000]).unwrap();
        disk.take_fault_log();
        disk.power_cut();
        if disk.fault_log()[0].kind != FaultKind::TornWrite {
            continue;
        }
        let after = disk.durable_bytes("f").unwrap();
        assert_eq!(after.len(), 2004, "seed {seed}");
        assert_eq!(&after[..4], b"head");
        if classify(&after[4..512], 0, 0x55) == "old" {
            found = true;
        }
    }
    assert!(
        found,
        "no seed kept the old (absent, so zero) bytes of a sector"
    );
}

#[test]
fn stale_handle_after_power_cut_errors() {
    let disk = disk_with_synced(3, "f", b"data");
    let old = disk.open(p("f")).unwrap();
    disk.power_cut();
    let mut buf = [0u8; 4];
    let errors = [
        old.read_at(0, &mut buf).unwrap_err(),
        old.write_at(0, b"x").unwrap_err(),
        old.len().unwrap_err(),
        old.set_len(0).unwrap_err(),
        old.sync().unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(err.to_string(), "stale handle: opened before a power cut");
    }
    let fresh = disk.open(p("f")).unwrap();
    fresh.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"data");
    assert_eq!(disk.power_cuts(), 1);
}

/// A workload touching every kind of random choice; returns all that a
/// checker could observe afterwards.
fn scenario(seed: u64) -> (Vec<PathBuf>, Vec<Vec<u8>>, Vec<InjectedFault>) {
    let disk = SimDisk::new(seed);
    disk.create_dir_all(p("a/b")).unwrap();
    for i in 0..8u8 {
        let name = format!("a/b/f{i}");
        let file = disk.create(p(&name)).unwrap();
        file.write_at(0, &vec![i; 1500]).unwrap();
        if i % 2 == 0 {
            file.sync().unwrap();
        }
        file.write_at(300, &vec![0xF0 | i; 1200]).unwrap();
        if i == 4 {
            disk.sync_dir(p("a/b")).unwrap();
        }
    }
    disk.rename(p("a/b/f1"), p("a/f1")).unwrap();
    disk.power_cut();
    let paths = disk.file_paths();
    let bytes = paths
        .iter()
        .map(|p| disk.durable_bytes(p).unwrap())
        .collect();
    (paths, bytes, disk.fault_log())
}

#[test]
fn same_seed_same_outcome() {
    for seed in 0..20 {
        assert_eq!(scenario(seed), scenario(seed), "seed {seed}");
    }
    let outcomes: BTreeSet<_> = (0..20).map(|seed| scenario(seed).1).collect();
    assert!(
        outcomes.len() > 1,
        "twenty seeds gave one outcome: nothing is random"
    );
}

#[test]
fn clones_share_one_disk() {
    let disk = SimDisk::new(9);
    let other = disk.clone();
    disk.create(p("f")).unwrap().write_at(0, b"shared").unwrap();
    assert_eq!(read_file(&other, p("f")).unwrap(), b"shared");
    other.power_cut_with(CrashPolicy::LoseUnsynced);
    assert_eq!(disk.power_cuts(), 1);
    assert!(disk.file_paths().is_empty());
}
