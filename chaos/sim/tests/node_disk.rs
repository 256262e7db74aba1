//! Guards against a power cut the simulator cannot place or cannot enforce:
//! the tripwire must fire at exactly the n-th mutating operation under its
//! prefix and perform nothing from then on, a fenced disk and every file
//! opened through it must refuse every call, counts must land on the right
//! structure, and a handle outliving its incarnation must be detectable.

use std::path::Path;
use std::sync::Arc;

use finkfs_seam::{Disk, DiskRef};
use finkfs_sim::{is_powered_off, NodeDisk, Structure};
use finkfs_simdisk::SimDisk;

fn node_disk() -> (Arc<SimDisk>, NodeDisk) {
    let sim = Arc::new(SimDisk::new(1));
    let inner: DiskRef = sim.clone();
    (sim, NodeDisk::new(inner))
}

#[test]
fn tripwire_cuts_at_the_nth_mutating_op_under_its_prefix_and_performs_it_not() {
    let (sim, disk) = node_disk();
    disk.create_dir_all(Path::new("groups/0/journal")).unwrap();
    disk.create_dir_all(Path::new("groups/0/meta")).unwrap();
    let segment = disk.create(Path::new("groups/0/journal/seg")).unwrap();
    let meta = disk.create(Path::new("groups/0/meta/a")).unwrap();
    disk.arm_tripwire(Path::new("groups/0/journal"), 2);

    meta.write_at(0, b"not under the prefix").unwrap();
    segment.write_at(0, b"first").unwrap();
    let _ = segment.len().unwrap(); // reads do not count
    segment.write_at(5, b"second").unwrap();
    let third = segment.sync();
    assert!(is_powered_off(&third.unwrap_err()), "the third op trips");

    let trip = disk.trip().expect("the wire went off");
    assert_eq!(trip.op, "sync");
    assert_eq!(trip.structure, Structure::Journal);
    assert!(disk.is_off());
    // The tripped sync was not performed: the bytes are written but none is
    // durable; the disk below still works for the next incarnation.
    let path = Path::new("groups/0/journal/seg");
    assert_eq!(sim.current_bytes(path).unwrap(), b"firstsecond");
    assert!(sim.durable_bytes(path).unwrap().is_empty(), "never fsynced");
    sim.open(path).unwrap().sync().unwrap();
    assert_eq!(sim.durable_bytes(path).unwrap(), b"firstsecond");
}

#[test]
fn fenced_disk_and_its_open_files_refuse_every_call() {
    let (_sim, disk) = node_disk();
    disk.create_dir_all(Path::new("groups/0/blocks")).unwrap();
    let pack = disk.create(Path::new("groups/0/blocks/p1")).unwrap();
    pack.write_at(0, b"block").unwrap();
    disk.power_off();

    let mut buf = [0u8; 5];
    assert!(is_powered_off(&pack.read_at(0, &mut buf).unwrap_err()));
    assert!(is_powered_off(&pack.write_at(0, b"x").unwrap_err()));
    assert!(is_powered_off(&pack.sync().unwrap_err()));
    assert!(is_powered_off(&pack.len().unwrap_err()));
    assert!(is_powered_off(
        &disk.list(Path::new("groups/0/blocks")).unwrap_err()
    ));
    assert!(is_powered_off(
        &disk.create(Path::new("groups/0/blocks/p2")).unwrap_err()
    ));
    assert!(is_powered_off(
        &disk
            .rename(Path::new("groups/0/blocks/p1"), Path::new("x"))
            .unwrap_err()
    ));
    assert!(disk.trip().is_none(), "a plain power off is not a trip");
}

#[test]
fn operations_are_counted_per_structure() {
    let (_sim, disk) = node_disk();
    for dir in ["groups/0/journal", "groups/0/meta", "groups/0/blocks"] {
        disk.create_dir_all(Path::new(dir)).unwrap();
    }
    let segment = disk.create(Path::new("groups/0/journal/s")).unwrap();
    segment.write_at(0, b"r").unwrap();
    let pieces = [std::io::IoSlice::new(b"ab"), std::io::IoSlice::new(b"c")];
    segment.write_vectored_at(1, &pieces).unwrap();
    segment.sync().unwrap();
    disk.sync_dir(Path::new("groups/0/journal")).unwrap();
    let index = disk.create(Path::new("groups/0/index.redb")).unwrap();
    index.write_at(0, b"i").unwrap();
    let mut byte = [0u8; 1];
    index.read_at(0, &mut byte).unwrap();

    let counts = disk.counts();
    let journal = counts[&Structure::Journal];
    assert_eq!(
        (
            journal.writes,
            journal.syncs,
            journal.namespace,
            journal.reads
        ),
        (2, 2, 2, 0)
    );
    let index = counts[&Structure::Index];
    assert_eq!((index.writes, index.reads, index.namespace), (1, 1, 1));
    assert_eq!(counts[&Structure::Meta].mutating(), 1);
    assert_eq!(counts[&Structure::Packs].mutating(), 1);
}

#[test]
fn a_handle_that_outlives_its_incarnation_is_detected() {
    let (_sim, disk) = node_disk();
    let watch = disk.watch();
    let leaked = disk.create(Path::new("snap")).unwrap();
    disk.power_off();
    drop(disk);
    assert_eq!(watch.strong_count(), 1, "the open file still holds it");
    drop(leaked);
    assert_eq!(watch.strong_count(), 0, "nothing holds it any more");
}

#[test]
fn paths_map_to_their_structures() {
    let cases = [
        ("groups/0/journal/00000001.seg", Structure::Journal),
        ("groups/0/meta/vote.a", Structure::Meta),
        ("groups/0/blocks/pack-1", Structure::Packs),
        ("groups/0/index.redb", Structure::Index),
        ("groups/0/index.redb.header", Structure::Index),
        (
            "groups/0/snapshots/incoming/receiving.part",
            Structure::Snapshots,
        ),
        ("node.toml", Structure::Other),
    ];
    for (path, structure) in cases {
        assert_eq!(Structure::of(Path::new(path)), structure, "{path}");
    }
}
