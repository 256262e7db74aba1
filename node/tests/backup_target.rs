//! Guards against backups that cannot be trusted: copying every block again
//! each time, missing a damaged or absent block on verify, and a power cut
//! during a backup that damages the backups taken before it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use finkfs_node::backup::{take_backup, BackupError, BackupTarget, Retention};
use finkfs_node::store::ObjectStore;
use finkfs_seam::{Disk, DiskRef, FileRef};
use finkfs_simdisk::SimDisk;

/// Alert-sized, distinct, incompressible objects.
fn alert(i: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 20_000 + (i as usize * 997) % 40_000];
    let mut xof = blake3::Hasher::new()
        .update(&i.to_le_bytes())
        .finalize_xof();
    xof.fill(&mut bytes);
    bytes
}

struct Node {
    store: ObjectStore,
}

impl Node {
    fn new(objects: std::ops::Range<u64>) -> Node {
        let disk = SimDisk::new(11).disk_ref();
        let mut store = ObjectStore::open(disk.clone(), PathBuf::from("node")).unwrap();
        for i in objects {
            store.put(&format!("ztf/{i:06}.avro"), &alert(i)).unwrap();
        }
        Node { store }
    }

    fn add(&mut self, objects: std::ops::Range<u64>) {
        for i in objects {
            self.store
                .put(&format!("ztf/{i:06}.avro"), &alert(i))
                .unwrap();
        }
    }

    fn backup(
        &self,
        target: &BackupTarget,
        now: u64,
    ) -> Result<finkfs_node::backup::BackupSummary, BackupError> {
        let view = self.store.index().view().unwrap();
        take_backup(target, &view, self.store.reader(), now)
    }
}

#[test]
fn second_backup_after_one_percent_more_data_writes_about_one_percent() {
    let mut node = Node::new(0..400);
    let target = BackupTarget::open(SimDisk::new(1).disk_ref()).unwrap();
    let first = node.backup(&target, 1_000).unwrap();
    node.add(400..404);
    let second = node.backup(&target, 2_000).unwrap();
    println!(
        "first backup wrote {} bytes ({} blocks); second, after 1% more objects, wrote {} bytes ({} blocks, {} already there)",
        first.bytes_written, first.blocks_written, second.bytes_written, second.blocks_written, second.blocks_present
    );
    assert_eq!(first.blocks_present, 0);
    assert_eq!(second.blocks_written, 4, "only the new objects' blocks");
    assert_eq!(second.blocks_present, first.blocks_written);
    let ratio = second.bytes_written as f64 / first.bytes_written as f64;
    assert!(
        (0.005..0.03).contains(&ratio),
        "second backup wrote {ratio:.4} of the first"
    );
    for seq in [first.manifest.seq, second.manifest.seq] {
        let report = target.verify(seq, true).unwrap();
        assert!(report.is_intact(), "{report:?}");
    }
}

#[test]
fn verify_read_data_finds_a_flipped_bit_and_plain_verify_a_missing_block() {
    let node = Node::new(0..30);
    let sim = SimDisk::new(2);
    let target = BackupTarget::open(sim.disk_ref()).unwrap();
    let backup = node.backup(&target, 1_000).unwrap().manifest;
    let victim = BackupTarget::block_path(&backup.blocks[5].hash);
    sim.flip_bit(&victim, 8 * 1000 + 3).unwrap();

    let quick = target.verify(backup.seq, false).unwrap();
    assert!(quick.is_intact(), "a flip keeps the length: {quick:?}");
    let full = target.verify(backup.seq, true).unwrap();
    assert_eq!(full.problems.len(), 1, "{full:?}");
    assert_eq!(full.problems[0].file, victim);
    assert!(target.read_block(&backup.blocks[5]).is_err());

    let gone = BackupTarget::block_path(&backup.blocks[9].hash);
    sim.disk_ref().remove(&gone).unwrap();
    let quick = target.verify(backup.seq, false).unwrap();
    assert_eq!(quick.problems.len(), 1, "{quick:?}");
    assert_eq!(
        (
            quick.problems[0].file.clone(),
            quick.problems[0].reason.as_str()
        ),
        (gone, "missing")
    );
}

#[test]
fn damaged_manifest_is_listed_as_damaged_and_blocks_prune() {
    let node = Node::new(0..10);
    let sim = SimDisk::new(3);
    let target = BackupTarget::open(sim.disk_ref()).unwrap();
    let first = node.backup(&target, 1_000).unwrap().manifest;
    let second = node.backup(&target, 2_000).unwrap().manifest;
    sim.flip_bit(BackupTarget::manifest_path(first.seq), 8 * 20)
        .unwrap();
    let listed = target.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(matches!(
        listed[0].manifest,
        Err(BackupError::Corrupt { .. })
    ));
    assert_eq!(listed[1].manifest.as_ref().unwrap(), &second);
    let report = target
        .prune(&Retention {
            keep_last: 1,
            keep_daily: 0,
            keep_weekly: 0,
        })
        .unwrap();
    assert_eq!(report.unreadable, vec![first.seq]);
    assert_eq!(report.blocks_removed, 0);
    assert!(target.verify(second.seq, true).unwrap().is_intact());
}

#[test]
fn prune_removes_what_no_kept_backup_names_and_keeps_the_rest_intact() {
    let mut node = Node::new(0..20);
    let target = BackupTarget::open(SimDisk::new(4).disk_ref()).unwrap();
    let old = node.backup(&target, 1_000).unwrap().manifest;
    // Replace every object: the old blocks are named by the old backup only.
    for i in 0..20 {
        node.store.delete(&format!("ztf/{i:06}.avro")).unwrap();
    }
    node.add(100..120);
    let new = node.backup(&target, 2_000).unwrap().manifest;
    let report = target
        .prune(&Retention {
            keep_last: 1,
            keep_daily: 0,
            keep_weekly: 0,
        })
        .unwrap();
    assert_eq!(report.backups_removed, vec![old.seq]);
    assert_eq!(report.backups_kept, vec![new.seq]);
    let only_old = old
        .blocks
        .iter()
        .filter(|b| !new.blocks.contains(b))
        .count() as u64;
    assert_eq!(report.blocks_removed, only_old);
    assert_eq!(report.snapshots_removed, 1);
    assert!(target.verify(new.seq, true).unwrap().is_intact());
    assert!(matches!(
        target.verify(old.seq, false),
        Err(BackupError::NotFound(_))
    ));
}

/// A disk that cuts the power of a SimDisk at its n-th directory operation
/// (create, rename, remove, directory sync) and fails that operation.
#[derive(Debug)]
struct CutAt {
    sim: SimDisk,
    inner: DiskRef,
    left: AtomicU64,
}

impl CutAt {
    fn tick(&self) -> io::Result<()> {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.sim.power_cut();
            return Err(io::Error::other("power cut"));
        }
        Ok(())
    }
}

impl Disk for CutAt {
    fn create(&self, path: &Path) -> io::Result<FileRef> {
        self.tick()?;
        self.inner.create(path)
    }
    fn open(&self, path: &Path) -> io::Result<FileRef> {
        self.inner.open(path)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.tick()?;
        self.inner.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.tick()?;
        self.inner.rename(from, to)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.tick()?;
        self.inner.sync_dir(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}

#[test]
fn power_cut_at_any_point_of_a_backup_leaves_earlier_backups_verifiable() {
    let before = Node::new(0..12);
    let after = Node::new(0..16);
    for cut_at in 1u64.. {
        let sim = SimDisk::new(100 + cut_at);
        let target = BackupTarget::open(sim.disk_ref()).unwrap();
        let first = before.backup(&target, 1_000).unwrap().manifest;
        let cutting = BackupTarget::open(Arc::new(CutAt {
            sim: sim.clone(),
            inner: sim.disk_ref(),
            left: AtomicU64::new(cut_at),
        }))
        .unwrap();
        let finished = after.backup(&cutting, 2_000).is_ok();
        if finished {
            // The cut point lies past the end of the backup: every point seen.
            assert!(cut_at > 10, "only {} cut points", cut_at - 1);
            break;
        }
        let reopened = BackupTarget::open(sim.disk_ref()).unwrap();
        let report = reopened.verify(first.seq, true).unwrap();
        assert!(report.is_intact(), "cut at op {cut_at}: {report:?}");
        // The interrupted backup either does not exist or is whole.
        for listed in reopened.list().unwrap() {
            let manifest = listed
                .manifest
                .unwrap_or_else(|e| panic!("cut at op {cut_at}: {e}"));
            assert!(
                reopened.verify(manifest.seq, true).unwrap().is_intact(),
                "cut at op {cut_at}"
            );
        }
    }
}
