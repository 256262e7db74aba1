//! Guards against a simulated disk that keeps directory entries a real one
//! can lose: a create, rename or remove is durable only once its directory
//! (both directories, for a move) has been synced.

use std::path::Path;

use finkfs_seam::{read_file, write_file_atomic, Disk};
use finkfs_simdisk::{CrashPolicy, FaultKind, MetadataOp, SimDisk};

fn p(path: &str) -> &Path {
    Path::new(path)
}

const SEEDS: u64 = 200;

/// Creates `d/f` with synced contents, syncing the directory only if asked,
/// then cuts the power; returns whether `d/f` survived.
fn created_file_survives(seed: u64, sync_dir: bool) -> bool {
    let disk = SimDisk::new(seed);
    disk.create_dir_all(p("d")).unwrap();
    let file = disk.create(p("d/f")).unwrap();
    file.write_at(0, b"contents").unwrap();
    file.sync().unwrap();
    if sync_dir {
        disk.sync_dir(p("d")).unwrap();
    }
    disk.power_cut();
    let survived = disk.exists(p("d/f")).unwrap();
    if survived {
        assert_eq!(read_file(&disk, p("d/f")).unwrap(), b"contents");
    }
    survived
}

#[test]
fn file_created_without_dir_sync_may_vanish() {
    let vanished = (0..SEEDS).find(|&seed| !created_file_survives(seed, false));
    let seed = vanished.expect("no seed lost an unsynced directory entry");
    // The same seed replays the same loss.
    assert!(!created_file_survives(seed, false));
    assert!((0..SEEDS).any(|seed| created_file_survives(seed, false)));
}

#[test]
fn file_created_with_dir_sync_never_vanishes() {
    for seed in 0..SEEDS {
        assert!(created_file_survives(seed, true), "seed {seed}");
    }
}

#[test]
fn vanished_create_is_recorded_as_metadata_reverted() {
    let disk = SimDisk::new(0);
    disk.create(p("f")).unwrap();
    disk.power_cut_with(CrashPolicy::LoseUnsynced);
    assert!(disk.file_paths().is_empty());
    let log = disk.fault_log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].kind,
        FaultKind::MetadataReverted {
            op: MetadataOp::Create
        }
    );
    assert_eq!(log[0].path, p("f"));
}

/// Replaces `f` (holding "old", fully durable) with "new" by a rename,
/// syncing the directory afterwards only if asked; returns what `f` holds
/// after a power cut.
fn contents_after_replace(seed: u64, sync_dir: bool) -> Vec<u8> {
    let disk = SimDisk::new(seed);
    write_file_atomic(&disk, p("f"), b"old").unwrap();
    let tmp = disk.create(p("f.tmp")).unwrap();
    tmp.write_at(0, b"new").unwrap();
    tmp.sync().unwrap();
    disk.rename(p("f.tmp"), p("f")).unwrap();
    if sync_dir {
        disk.sync_dir(p("")).unwrap();
    }
    disk.power_cut();
    read_file(&disk, p("f")).unwrap()
}

#[test]
fn rename_without_dir_sync_may_revert() {
    let outcomes: Vec<Vec<u8>> = (0..SEEDS)
        .map(|s| contents_after_replace(s, false))
        .collect();
    assert!(outcomes.iter().any(|c| c == b"old"), "no rename reverted");
    assert!(outcomes.iter().any(|c| c == b"new"), "no rename survived");
    assert!(outcomes.iter().all(|c| c == b"old" || c == b"new"));
}

#[test]
fn rename_with_dir_sync_never_reverts() {
    for seed in 0..SEEDS {
        assert_eq!(contents_after_replace(seed, true), b"new", "seed {seed}");
    }
}

/// Replaces `vote` the way `write_file_atomic` does (create a temporary,
/// write, sync, rename, sync the directory), cutting the power after the
/// create and `steps` more steps; returns what `vote` holds afterwards.
fn vote_after_cut_at_step(seed: u64, steps: usize) -> Vec<u8> {
    let disk = SimDisk::new(seed);
    write_file_atomic(&disk, p("vote"), &[1; 600]).unwrap();
    let tmp = disk.create(p("vote.tmp")).unwrap();
    let rest: [&dyn Fn(); 4] = [
        &|| tmp.write_at(0, &[2; 600]).unwrap(),
        &|| tmp.sync().unwrap(),
        &|| disk.rename(p("vote.tmp"), p("vote")).unwrap(),
        &|| disk.sync_dir(p("")).unwrap(),
    ];
    for step in rest.iter().take(steps) {
        step();
    }
    disk.power_cut();
    read_file(&disk, p("vote")).unwrap()
}

#[test]
fn atomic_replace_leaves_old_or_new_never_a_mix() {
    for seed in 0..SEEDS {
        for steps in 0..4 {
            let now = vote_after_cut_at_step(seed, steps);
            assert!(
                now == [1; 600] || now == [2; 600],
                "seed {seed} step {steps}"
            );
        }
        assert_eq!(vote_after_cut_at_step(seed, 4), [2; 600], "seed {seed}");
    }
}

#[test]
fn remove_without_dir_sync_may_be_undone() {
    let mut undone = 0;
    for seed in 0..SEEDS {
        let disk = SimDisk::new(seed);
        write_file_atomic(&disk, p("segment"), b"purged").unwrap();
        disk.remove(p("segment")).unwrap();
        disk.power_cut();
        if disk.exists(p("segment")).unwrap() {
            assert_eq!(read_file(&disk, p("segment")).unwrap(), b"purged");
            undone += 1;
        }
    }
    assert!(
        undone > 0 && undone < SEEDS,
        "{undone} of {SEEDS} removals undone"
    );
}

#[test]
fn remove_with_dir_sync_is_final() {
    for seed in 0..SEEDS {
        let disk = SimDisk::new(seed);
        write_file_atomic(&disk, p("segment"), b"purged").unwrap();
        disk.remove(p("segment")).unwrap();
        disk.sync_dir(p("")).unwrap();
        disk.power_cut();
        assert!(!disk.exists(p("segment")).unwrap(), "seed {seed}");
    }
}

/// Moves a durable `a/f` to `b/f`, syncing the listed directories, then cuts
/// the power; returns (exists at a/f, exists at b/f).
fn move_outcome(seed: u64, synced: &[&str]) -> (bool, bool) {
    let disk = SimDisk::new(seed);
    disk.create_dir_all(p("a")).unwrap();
    disk.create_dir_all(p("b")).unwrap();
    write_file_atomic(&disk, p("a/f"), b"moved").unwrap();
    disk.rename(p("a/f"), p("b/f")).unwrap();
    for dir in synced {
        disk.sync_dir(p(dir)).unwrap();
    }
    disk.power_cut();
    let (in_a, in_b) = (
        disk.exists(p("a/f")).unwrap(),
        disk.exists(p("b/f")).unwrap(),
    );
    for (present, path) in [(in_a, "a/f"), (in_b, "b/f")] {
        if present {
            assert_eq!(read_file(&disk, p(path)).unwrap(), b"moved");
        }
    }
    (in_a, in_b)
}

#[test]
fn rename_across_directories_is_durable_only_after_both_are_synced() {
    for seed in 0..SEEDS {
        assert_eq!(
            move_outcome(seed, &["a", "b"]),
            (false, true),
            "seed {seed}"
        );
    }
    // Only the target synced: the source name may come back as well.
    let target_only: Vec<_> = (0..SEEDS).map(|s| move_outcome(s, &["b"])).collect();
    assert!(target_only.iter().all(|&(_, in_b)| in_b));
    assert!(target_only.contains(&(true, true)));
    // Only the source synced: the file may be lost from both.
    let source_only: Vec<_> = (0..SEEDS).map(|s| move_outcome(s, &["a"])).collect();
    assert!(source_only.iter().all(|&(in_a, _)| !in_a));
    assert!(source_only.contains(&(false, false)));
}

#[test]
fn file_under_two_names_after_a_cut_has_independent_copies() {
    let seed = (0..SEEDS)
        .find(|&s| move_outcome(s, &["b"]) == (true, true))
        .expect("no seed left the file under both names");
    let disk = SimDisk::new(seed);
    disk.create_dir_all(p("a")).unwrap();
    disk.create_dir_all(p("b")).unwrap();
    write_file_atomic(&disk, p("a/f"), b"moved").unwrap();
    disk.rename(p("a/f"), p("b/f")).unwrap();
    disk.sync_dir(p("b")).unwrap();
    disk.power_cut();
    let in_b = disk.open(p("b/f")).unwrap();
    in_b.write_at(0, b"B").unwrap();
    assert_eq!(read_file(&disk, p("a/f")).unwrap(), b"moved");
    assert_eq!(read_file(&disk, p("b/f")).unwrap(), b"Boved");
}

#[test]
fn create_dir_all_is_durable_on_return() {
    for seed in 0..SEEDS {
        let disk = SimDisk::new(seed);
        disk.create_dir_all(p("x/y/z")).unwrap();
        disk.power_cut();
        assert!(disk.exists(p("x/y/z")).unwrap(), "seed {seed}");
    }
}

#[test]
fn sync_of_a_renamed_directory_covers_entries_made_before_the_move() {
    for seed in 0..SEEDS {
        let disk = SimDisk::new(seed);
        disk.create_dir_all(p("snap/tmp")).unwrap();
        let file = disk.create(p("snap/tmp/data")).unwrap();
        file.write_at(0, b"payload").unwrap();
        file.sync().unwrap();
        // The directory move commits the earlier create as well.
        disk.rename(p("snap/tmp"), p("snap/live")).unwrap();
        let late = disk.create(p("snap/live/late")).unwrap();
        late.sync().unwrap();
        disk.sync_dir(p("snap/live")).unwrap();
        disk.power_cut();
        assert_eq!(read_file(&disk, p("snap/live/data")).unwrap(), b"payload");
        assert!(disk.exists(p("snap/live/late")).unwrap(), "seed {seed}");
        assert!(!disk.exists(p("snap/tmp")).unwrap(), "seed {seed}");
    }
}

#[test]
fn unsynced_directory_entries_are_lost_in_log_order() {
    // A later entry never survives an earlier unsynced one in the same log.
    for seed in 0..SEEDS {
        let disk = SimDisk::new(seed);
        for name in ["1", "2", "3", "4"] {
            disk.create(p(name)).unwrap();
        }
        disk.power_cut();
        let names = disk.list(p("")).unwrap();
        let expected: Vec<String> = ["1", "2", "3", "4"][..names.len()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, expected, "seed {seed}");
    }
}
