//! Guards against a snapshot reader that trusts a damaged, truncated,
//! zero-filled or foreign file (returning its records, panicking, or
//! allocating what a garbage length asks), and a snapshot directory that
//! picks a damaged or unfinished file as current.

mod sm_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use finkfs_node::manifest::{Manifest, ManifestBlock};
use finkfs_node::snapshot::{
    SnapshotDir, SnapshotError, SnapshotHeader, SnapshotReader, SnapshotRecord, SnapshotWriter,
};
use finkfs_raft::types::StoredMembership;
use finkfs_seam::DiskRef;
use finkfs_simdisk::SimDisk;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sm_support::{log_id, membership};

const FILE: &str = "snap/test.snap";

fn header() -> SnapshotHeader {
    SnapshotHeader {
        last_log_id: Some(log_id(1234)),
        membership: StoredMembership::new(Some(log_id(3)), membership(&[1, 2, 3])),
    }
}

fn manifest(i: u64) -> Manifest {
    let len = 1 + i % 9000;
    Manifest {
        object_len: len,
        object_hash: *blake3::hash(&i.to_le_bytes()).as_bytes(),
        block_bytes: 4096,
        blocks: (0..len.div_ceil(4096))
            .map(|b| ManifestBlock {
                hash: *blake3::hash(&(i * 1000 + b).to_le_bytes()).as_bytes(),
                len: (len - b * 4096).min(4096) as u32,
            })
            .collect(),
    }
}

fn records(objects: u64, blocks: u64) -> Vec<SnapshotRecord> {
    let mut out: Vec<SnapshotRecord> = (0..objects)
        .map(|i| SnapshotRecord::Object {
            path: format!("ztf/obj-{i:08}"),
            manifest: manifest(i),
        })
        .collect();
    let hashes: BTreeSet<[u8; 32]> = (0..blocks)
        .map(|i| *blake3::hash(&(u64::MAX - i).to_le_bytes()).as_bytes())
        .collect();
    out.extend(
        hashes
            .into_iter()
            .map(|hash| SnapshotRecord::Unreferenced { hash, len: 100 }),
    );
    out
}

fn write(disk: &DiskRef, path: &Path, records: &[SnapshotRecord]) -> Vec<u8> {
    disk.create_dir_all(path.parent().unwrap()).unwrap();
    if disk.exists(path).unwrap() {
        disk.remove(path).unwrap();
    }
    let file = disk.create(path).unwrap();
    let mut writer = SnapshotWriter::new(file, path, &header()).unwrap();
    for record in records {
        match record {
            SnapshotRecord::Object { path, manifest } => writer.object(path, manifest).unwrap(),
            SnapshotRecord::Unreferenced { hash, len } => writer.unreferenced(hash, *len).unwrap(),
        }
    }
    let (len, _) = writer.finish().unwrap();
    let bytes = finkfs_seam::read_file(disk.as_ref(), path).unwrap();
    assert_eq!(bytes.len() as u64, len);
    bytes
}

fn read_all(
    disk: &DiskRef,
    path: &Path,
) -> Result<(SnapshotHeader, Vec<SnapshotRecord>), SnapshotError> {
    let file = disk.open(path).unwrap();
    let mut reader = SnapshotReader::open(file, path)?;
    let mut out = Vec::new();
    while let Some(record) = reader.next_record()? {
        out.push(record);
    }
    Ok((reader.header().clone(), out))
}

fn place(disk: &DiskRef, path: &Path, bytes: &[u8]) {
    disk.create_dir_all(path.parent().unwrap()).unwrap();
    finkfs_seam::write_file_atomic(disk.as_ref(), path, bytes).unwrap();
}

#[test]
fn records_round_trip_across_read_and_write_buffers() {
    let disk = SimDisk::new(1).disk_ref();
    let expected = records(20_000, 300);
    let bytes = write(&disk, Path::new(FILE), &expected);
    assert!(bytes.len() > 3 << 20, "the file spans several buffers");
    let (found_header, found) = read_all(&disk, Path::new(FILE)).unwrap();
    assert_eq!(found_header, header());
    assert_eq!(found, expected);
}

#[test]
fn every_truncation_is_an_error() {
    let disk = SimDisk::new(2).disk_ref();
    let bytes = write(&disk, Path::new(FILE), &records(50, 5));
    let path = Path::new("snap/cut.snap");
    for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        place(&disk, path, &bytes[..len]);
        let error = read_all(&disk, path).expect_err("a truncated snapshot is never read whole");
        assert!(
            matches!(error, SnapshotError::Corrupt { .. }),
            "len {len}: {error}"
        );
    }
}

#[test]
fn flipped_bits_anywhere_are_detected() {
    let disk = SimDisk::new(3).disk_ref();
    let bytes = write(&disk, Path::new(FILE), &records(40, 5));
    let path = Path::new("snap/flipped.snap");
    let mut rng = SmallRng::seed_from_u64(3);
    for _ in 0..400 {
        let bit = rng.gen_range(0..bytes.len() * 8);
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        place(&disk, path, &damaged);
        let error = read_all(&disk, path).expect_err("a damaged snapshot is never read whole");
        assert!(
            matches!(error, SnapshotError::Corrupt { .. }),
            "bit {bit}: {error}"
        );
    }
}

#[test]
fn zero_filled_and_random_files_are_refused_without_panic() {
    let disk = SimDisk::new(4).disk_ref();
    let path = Path::new("snap/garbage.snap");
    let mut rng = SmallRng::seed_from_u64(4);
    for len in [0usize, 10, 200, 4096, 1 << 20] {
        place(&disk, path, &vec![0u8; len]);
        assert!(read_all(&disk, path).is_err(), "zeros of {len}");
        let random: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        place(&disk, path, &random);
        assert!(read_all(&disk, path).is_err(), "random of {len}");
    }
    // A valid magic followed by a huge membership length: refused by its
    // bound, not by an allocation.
    let mut lying = b"FINKSNAP".to_vec();
    lying.extend_from_slice(&1u32.to_le_bytes());
    lying.extend_from_slice(&[0u8; 28]);
    lying.extend_from_slice(&u32::MAX.to_le_bytes());
    lying.resize(200, 0);
    place(&disk, path, &lying);
    assert!(matches!(
        read_all(&disk, path),
        Err(SnapshotError::Corrupt { .. })
    ));
}

/// A file with a valid header and file check around `body` (records and
/// end record as raw bytes): only the structure checks can refuse it.
fn sealed(disk: &DiskRef, body: &[u8]) -> PathBuf {
    let empty = write(disk, Path::new("snap/empty.snap"), &[]);
    let membership_len = u32::from_le_bytes(empty[40..44].try_into().unwrap()) as usize;
    let header_len = 48 + membership_len + 32;
    let mut bytes = empty[..header_len].to_vec();
    bytes.extend_from_slice(body);
    let check = blake3::hash(&bytes);
    bytes.extend_from_slice(check.as_bytes());
    let path = PathBuf::from("snap/sealed.snap");
    place(disk, &path, &bytes);
    path
}

fn object_record(path: &str, manifest: &Manifest) -> Vec<u8> {
    let encoded = manifest.encode();
    let mut out = 1u32.to_le_bytes().to_vec();
    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
    out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(&encoded);
    out
}

fn end_record(objects: u64, blocks: u64) -> Vec<u8> {
    let mut out = 3u32.to_le_bytes().to_vec();
    out.extend_from_slice(&objects.to_le_bytes());
    out.extend_from_slice(&blocks.to_le_bytes());
    out
}

#[test]
fn well_sealed_but_malformed_records_are_refused() {
    let disk = SimDisk::new(5).disk_ref();
    let m = manifest(1);
    let mut out_of_order = object_record("b", &m);
    out_of_order.extend(object_record("a", &m));
    out_of_order.extend(end_record(2, 0));
    let mut duplicate = object_record("a", &m);
    duplicate.extend(object_record("a", &m));
    duplicate.extend(end_record(2, 0));
    let mut bad_path = object_record("a/../b", &m);
    bad_path.extend(end_record(1, 0));
    let mut miscounted = object_record("a", &m);
    miscounted.extend(end_record(2, 0));
    let mut unknown_tag = 9u32.to_le_bytes().to_vec();
    unknown_tag.extend(end_record(0, 0));
    let mut huge_manifest = 1u32.to_le_bytes().to_vec();
    huge_manifest.extend_from_slice(&1u32.to_le_bytes());
    huge_manifest.extend_from_slice(&u32::MAX.to_le_bytes());
    huge_manifest.push(b'a');
    let mut trailing = end_record(0, 0);
    trailing.extend_from_slice(&[0u8; 8]);
    for (name, body) in [
        ("out of order", out_of_order),
        ("duplicate", duplicate),
        ("bad path", bad_path),
        ("miscounted", miscounted),
        ("unknown tag", unknown_tag),
        ("huge manifest", huge_manifest),
        ("trailing bytes", trailing),
        ("no end record", object_record("a", &m)),
    ] {
        let path = sealed(&disk, &body);
        let error = read_all(&disk, &path).expect_err(name);
        assert!(
            matches!(error, SnapshotError::Corrupt { .. }),
            "{name}: {error}"
        );
    }
    let path = sealed(&disk, &end_record(0, 0));
    assert_eq!(read_all(&disk, &path).unwrap().1, []);
}

#[test]
fn directory_ignores_damaged_snapshots_and_removes_unfinished_ones() {
    let sim = SimDisk::new(6);
    let disk: DiskRef = Arc::new(sim.clone());
    let dir = PathBuf::from("groups/0/snapshots");
    let good = write(&disk, &dir.join("staging"), &records(3, 1));
    disk.remove(&dir.join("staging")).unwrap();
    let good_name = format!("snap-{}.snap", blake3::hash(&good).to_hex());
    place(&disk, &dir.join(&good_name), &good);
    let mut damaged = good.clone();
    damaged[60] ^= 0xff;
    let damaged_name = format!("snap-{}.snap", blake3::hash(&damaged).to_hex());
    place(&disk, &dir.join(&damaged_name), &damaged);
    for leftover in ["build-7.snap.tmp", "install.snap.tmp"] {
        place(&disk, &dir.join(leftover), b"half written");
    }
    disk.create_dir_all(&dir.join("incoming")).unwrap();

    let snapshots = SnapshotDir::open(disk.clone(), dir.clone()).unwrap();
    let current = snapshots.current().expect("the intact snapshot is current");
    assert_eq!(current.snapshot.path(), dir.join(&good_name));
    assert_eq!(current.meta.last_log_id, header().last_log_id);
    current.snapshot.verify().unwrap();
    let mut left = disk.list(&dir).unwrap();
    left.sort();
    let mut expected = vec![damaged_name, good_name, "incoming".to_string()];
    expected.sort();
    assert_eq!(
        left, expected,
        "temporary files removed, the rest left alone"
    );
}

/// Bit rot in a snapshot's records after it was named: its header still
/// verifies, but the file no longer hashes to its name. It must not be made
/// current (a node would find out only when sending it to a follower).
#[test]
fn directory_does_not_make_a_snapshot_current_whose_body_rotted() {
    let sim = SimDisk::new(7);
    let disk: DiskRef = Arc::new(sim.clone());
    let dir = PathBuf::from("groups/0/snapshots");
    let good = write(&disk, &dir.join("staging"), &records(40, 3));
    disk.remove(&dir.join("staging")).unwrap();
    let name = format!("snap-{}.snap", blake3::hash(&good).to_hex());
    place(&disk, &dir.join(&name), &good);
    assert!(SnapshotDir::open(disk.clone(), dir.clone())
        .unwrap()
        .current()
        .is_some());

    let at = (good.len() as u64 / 2) * 8 + 3;
    sim.flip_bit(dir.join(&name), at).unwrap();
    let snapshots = SnapshotDir::open(disk.clone(), dir.clone()).unwrap();
    assert!(
        snapshots.current().is_none(),
        "a rotted snapshot was made current"
    );
    assert!(
        disk.exists(&dir.join(&name)).unwrap(),
        "left for fsck and the next build"
    );
}
