//! Guards against panics, unbounded allocations and wrong data when a
//! segment file is truncated, zero-filled or replaced by random bytes: the
//! journal must open, report the damage (naming the file), and serve only
//! records that verify.

mod journal_support;

use std::path::Path;

use finkfs_raft::journal::{Damage, Journal, JournalError, JournalOptions, RecoveryReport};
use finkfs_simdisk::{CrashPolicy, SimDisk};
use journal_support::*;

const LAST: u64 = 60;

/// Deterministic noise (xorshift), so failures replay.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Replacement contents for a segment file, named for the failure message.
fn variants(original: &[u8]) -> Vec<(String, Vec<u8>)> {
    let len = original.len();
    let mut lens = vec![
        0,
        1,
        4,
        40,
        79,
        80,
        81,
        95,
        96,
        97,
        176,
        200,
        len / 2,
        len - 1,
        len,
        len + 333,
    ];
    lens.sort_unstable();
    lens.dedup();
    let mut out = Vec::new();
    for &n in &lens {
        if n < len {
            out.push((format!("truncated to {n}"), original[..n].to_vec()));
        }
        out.push((format!("{n} zero bytes"), vec![0u8; n]));
        out.push((format!("{n} random bytes"), noise(n, n as u64 + 7)));
        if n > 80 {
            let mut kept_header = original[..80].to_vec();
            kept_header.extend(noise(n - 80, n as u64));
            out.push((format!("header then {} random bytes", n - 80), kept_header));
        }
    }
    // A record header claiming a payload far larger than memory.
    let mut huge = original[..80].to_vec();
    huge.extend_from_slice(b"FKJR");
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend(noise(200, 3));
    out.push(("a record claiming a 4 GiB payload".to_string(), huge));
    out
}

fn replace(disk: &SimDisk, path: &Path, bytes: &[u8]) {
    use finkfs_seam::Disk;
    let file = disk.open(path).unwrap();
    file.set_len(0).unwrap();
    file.write_at(0, bytes).unwrap();
    file.set_len(bytes.len() as u64).unwrap();
    file.sync().unwrap();
}

fn mentions(report: &RecoveryReport, path: &Path) -> bool {
    let damage = report.damage.iter().any(|d| match d {
        Damage::CorruptRecord { file, .. }
        | Damage::Gap { file, .. }
        | Damage::ChainBreak { file, .. }
        | Damage::BadSegmentHeader { file, .. }
        | Damage::BadPurgeMarker { file, .. } => file == path,
        _ => false,
    });
    damage || report.torn_tail.as_ref().is_some_and(|t| t.file == path)
}

/// Every record the journal serves is the one appended.
fn assert_serves_only_originals(journal: &Journal, what: &str) {
    for index in 1..=LAST + 5 {
        match journal.read(index) {
            Ok(record) => assert_eq!(
                record.payload,
                payload(index, 1, 0),
                "{what}: record {index}"
            ),
            Err(JournalError::Corrupt { .. } | JournalError::NotFound { .. }) => {}
            Err(other) => panic!("{what}: read {index}: {other}"),
        }
    }
}

fn check_position(position: usize) {
    let options = small_segments();
    let template = SimDisk::new(1);
    let (mut journal, _) = open(&template, &options);
    for index in 1..=LAST {
        journal.append(index, 1, &payload(index, 1, 0)).unwrap();
        journal.sync().unwrap();
    }
    drop(journal);
    let files = segment_files(&template);
    assert!(files.len() > 4);
    let target = match position {
        0 => files[0].clone(),
        1 => files[files.len() / 2].clone(),
        _ => files.last().unwrap().clone(),
    };
    let next = files
        .iter()
        .position(|f| *f == target)
        .and_then(|at| files.get(at + 1))
        .cloned();
    let original = template.current_bytes(&target).unwrap();
    let boundaries: Vec<u64> = placed_records(&original)
        .iter()
        .map(|p| p.offset + p.bytes)
        .collect();
    for (what, bytes) in variants(&original) {
        let what = format!("{} replaced by {what}", target.display());
        let disk = SimDisk::new(2);
        // Rebuild the same journal on a fresh disk, then damage it.
        let (mut journal, _) = open(&disk, &options);
        for index in 1..=LAST {
            journal.append(index, 1, &payload(index, 1, 0)).unwrap();
            journal.sync().unwrap();
        }
        drop(journal);
        replace(&disk, &target, &bytes);
        disk.power_cut_with(CrashPolicy::LoseUnsynced);
        let scanned =
            Journal::scan(&disk, &dir(), &options).unwrap_or_else(|e| panic!("{what}: scan: {e}"));
        let (journal, report) = Journal::open(disk.disk_ref(), dir(), options.clone())
            .unwrap_or_else(|e| panic!("{what}: open: {e}"));
        assert_eq!(scanned.damage, report.damage, "{what}");
        assert_serves_only_originals(&journal, &what);
        if bytes == original {
            assert!(
                report.is_clean() && report.torn_tail.is_none(),
                "{what}: {report:?}"
            );
            continue;
        }
        // Only a last segment cut at a record boundary can lose its end
        // without a trace: that is what a crash before a sync looks like.
        let silent_cut = position == 2
            && original.starts_with(&bytes)
            && (bytes.len() as u64 == SEGMENT_HEADER_BYTES
                || boundaries.contains(&(bytes.len() as u64)));
        let noticed =
            mentions(&report, &target) || next.as_ref().is_some_and(|n| mentions(&report, n));
        assert!(noticed || silent_cut, "{what}: went unnoticed: {report:?}");
        if position != 2 {
            assert!(
                !report.is_clean(),
                "{what}: damage before the last segment was not reported"
            );
        }
    }
}

#[test]
fn bad_first_segment_is_reported_without_panic() {
    check_position(0);
}

#[test]
fn bad_middle_segment_is_reported_without_panic() {
    check_position(1);
}

#[test]
fn bad_last_segment_is_reported_or_cut_without_panic() {
    check_position(2);
}

#[test]
fn stray_files_in_the_journal_directory_are_ignored() {
    use finkfs_seam::Disk;
    let disk = SimDisk::new(3);
    let options = JournalOptions::default();
    let (mut journal, _) = open(&disk, &options);
    fill(&mut journal, 1..=5, 1);
    journal.sync().unwrap();
    drop(journal);
    for name in ["notes.txt", "1.seg", "0000000000000000000x.seg"] {
        let file = disk.create(&dir().join(name)).unwrap();
        file.write_at(0, b"not a segment").unwrap();
        file.sync().unwrap();
    }
    let (journal, report) = open(&disk, &options);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(journal.last(), Some((5, 1)));
}
