//! Guards against an fsck whose report depends on its threads or its
//! read-ahead: the journal and vote copies are checked on one thread while
//! the index and packs are checked on another, and what both find must come
//! out as a check on one thread finds it (same problems, same order, same
//! totals), with progress still counting every byte checked.

mod fsck_support;

use std::path::{Path, PathBuf};

use finkfs_node::blocks::RECORD_HEADER_BYTES;
use finkfs_node::fsck::{self, FsckOptions, FsckReport, Progress, Structure};
use finkfs_node::{BlockReader, ScanItem};
use finkfs_simdisk::SimDisk;
use fsck_support::*;

const SECOND_GROUP: &str = "groups/1";

/// Copies every file of `from` to `to`, synced, as a second group.
fn copy_group(sim: &SimDisk, from: &str, to: &str) {
    let disk = sim.disk_ref();
    for path in files_under(sim, from) {
        let target = Path::new(to).join(path.strip_prefix(from).unwrap());
        let dir = target.parent().unwrap();
        disk.create_dir_all(dir).unwrap();
        let file = disk.create(&target).unwrap();
        file.write_at(0, &sim.current_bytes(&path).unwrap())
            .unwrap();
        file.sync().unwrap();
        disk.sync_dir(dir).unwrap();
    }
}

/// Flips a bit inside the second record of the group's first pack.
fn damage_a_pack(sim: &SimDisk, group: &str) -> PathBuf {
    let reader = BlockReader::read_only(sim.disk_ref(), Path::new(group).join("blocks"));
    let seq = reader.packs().unwrap()[0];
    let second = reader
        .scan_pack(seq)
        .unwrap()
        .filter_map(|item| match item.unwrap() {
            ScanItem::Record(location) => Some(location),
            _ => None,
        })
        .nth(1)
        .expect("the fixture's first pack holds several records");
    let pack = reader.pack_path(seq);
    let bit = (second.offset + RECORD_HEADER_BYTES as u64 + 7) * 8;
    sim.flip_bit(&pack, bit).unwrap();
    pack
}

/// Flips a bit inside a record of a segment in the middle of the journal.
fn damage_the_journal(sim: &SimDisk, group: &str) -> PathBuf {
    let segments: Vec<PathBuf> = files_under(sim, &format!("{group}/journal"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    let segment = segments[segments.len() / 2].clone();
    sim.flip_bit(&segment, (80 + 96 + 20) * 8).unwrap();
    segment
}

/// Two groups, each with a damaged journal and a damaged pack.
async fn two_damaged_groups(seed: u64) -> (SimDisk, Vec<PathBuf>) {
    let (sim, _) = built_sim(seed).await;
    copy_group(&sim, GROUP, SECOND_GROUP);
    let damaged = vec![
        damage_the_journal(&sim, GROUP),
        damage_a_pack(&sim, GROUP),
        damage_the_journal(&sim, SECOND_GROUP),
        damage_a_pack(&sim, SECOND_GROUP),
    ];
    (sim, damaged)
}

fn check(sim: &SimDisk, parallel: bool, read_ahead_bytes: u64) -> FsckReport {
    let options = FsckOptions {
        parallel,
        read_ahead_bytes,
        ..FsckOptions::default()
    };
    let scratch = SimDisk::new(0).disk_ref();
    fsck::check_data_dir(sim.disk_ref(), scratch, &options, &mut fsck::NoProgress)
        .expect("fsck runs to the end")
}

/// The damaged files in the order the report first names them.
fn damaged_files(report: &FsckReport) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for problem in report.damage() {
        let file = PathBuf::from(&problem.file);
        if files.last() != Some(&file) {
            files.push(file);
        }
    }
    files
}

#[tokio::test]
async fn report_is_the_same_on_two_threads_whatever_the_read_ahead() {
    let (sim, damaged) = two_damaged_groups(71).await;
    let one_thread = check(&sim, false, 0);
    assert_eq!(one_thread.totals.groups, 2);
    assert_eq!(
        damaged_files(&one_thread),
        damaged,
        "one thread reports each group's journal, then its packs: {:#?}",
        one_thread.problems
    );
    let structures: Vec<Structure> = one_thread.damage().map(|p| p.structure).collect();
    assert!(structures.contains(&Structure::Journal) && structures.contains(&Structure::Blocks));
    for read_ahead_bytes in [0, 1, 4096, 64 << 10, 64 << 20] {
        for round in 0..3 {
            let two_threads = check(&sim, true, read_ahead_bytes);
            assert_eq!(
                two_threads, one_thread,
                "read-ahead {read_ahead_bytes}, round {round}"
            );
        }
        assert_eq!(check(&sim, false, read_ahead_bytes), one_thread);
    }
}

/// Remembers what it was told.
#[derive(Debug, Default)]
struct Counted {
    total_calls: u32,
    total_bytes: u64,
    checked_bytes: u64,
    files: Vec<PathBuf>,
}

impl Progress for Counted {
    fn total(&mut self, bytes: u64) {
        self.total_calls += 1;
        self.total_bytes = bytes;
    }

    fn checked(&mut self, bytes: u64, file: &Path) {
        assert_eq!(self.total_calls, 1, "the total comes first");
        self.checked_bytes += bytes;
        self.files.push(file.to_path_buf());
    }
}

#[tokio::test]
async fn progress_counts_every_byte_both_threads_checked() {
    let (sim, _) = two_damaged_groups(72).await;
    let mut progress = Counted::default();
    let scratch = SimDisk::new(0).disk_ref();
    let report = fsck::check_data_dir(
        sim.disk_ref(),
        scratch,
        &FsckOptions::default(),
        &mut progress,
    )
    .expect("fsck runs to the end");
    assert_eq!(progress.checked_bytes, report.totals.bytes_checked);
    assert!(progress.checked_bytes <= progress.total_bytes);
    for part in ["journal", "meta", "index.redb", "blocks", "snapshots"] {
        for group in [GROUP, SECOND_GROUP] {
            assert!(
                progress
                    .files
                    .iter()
                    .any(|f| f.starts_with(group) && f.to_string_lossy().contains(part)),
                "no progress for {group} {part}: {:?}",
                progress.files
            );
        }
    }
}
