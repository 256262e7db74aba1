//! Guards against the simulated disk drifting from the seam contract the real
//! disk honours: each check runs on both, so code tested on the simulator
//! behaves the same in production.

use std::io;
use std::path::Path;

use finkfs_seam::{read_file, write_file_atomic, Disk, RealDisk};
use finkfs_simdisk::SimDisk;

fn p(path: &str) -> &Path {
    Path::new(path)
}

/// Runs `check` on a fresh simulated disk and a fresh real one.
fn on_both_disks(check: impl Fn(&dyn Disk)) {
    check(&SimDisk::new(7));
    let dir = tempfile::tempdir().unwrap();
    check(&RealDisk::open(dir.path().join("root")).unwrap());
}

#[test]
fn seam_contract_short_read_and_zero_extension() {
    on_both_disks(|disk| {
        let file = disk.create(p("f")).unwrap();
        file.write_at(0, b"abc").unwrap();
        let mut four = [0u8; 4];
        let err = file.read_at(0, &mut four).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = file.read_at(3, &mut four).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        file.write_at(6, b"z").unwrap();
        let mut all = [9u8; 7];
        file.read_at(0, &mut all).unwrap();
        assert_eq!(&all, b"abc\0\0\0z");

        file.set_len(9).unwrap();
        assert_eq!(file.len().unwrap(), 9);
        let mut tail = [9u8; 2];
        file.read_at(7, &mut tail).unwrap();
        assert_eq!(tail, [0, 0]);
        file.set_len(2).unwrap();
        assert_eq!(read_file(disk, p("f")).unwrap(), b"ab");
        assert!(!file.is_empty().unwrap());
    });
}

#[test]
fn empty_write_or_read_past_the_end_succeeds_and_does_not_extend() {
    on_both_disks(|disk| {
        let file = disk.create(p("f")).unwrap();
        file.write_at(100, b"").unwrap();
        assert_eq!(file.len().unwrap(), 0);
        file.read_at(100, &mut []).unwrap();
    });
}

#[test]
fn create_on_existing_is_already_exists_and_needs_a_parent() {
    on_both_disks(|disk| {
        disk.create(p("f")).unwrap();
        let err = disk.create(p("f")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let err = disk.create(p("missing/f")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        disk.create_dir_all(p("d")).unwrap();
        let err = disk.create(p("d")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    });
}

#[test]
fn open_and_remove_of_missing_are_not_found() {
    on_both_disks(|disk| {
        assert_eq!(
            disk.open(p("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            disk.remove(p("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let err = disk.rename(p("nope"), p("other")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!disk.exists(p("nope")).unwrap());
        assert_eq!(
            disk.list(p("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let err = disk.sync_dir(p("nope")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    });
}

#[test]
fn list_is_sorted_and_includes_directories() {
    on_both_disks(|disk| {
        disk.create_dir_all(p("top/mid/leaf")).unwrap();
        disk.create_dir_all(p("top/mid")).unwrap();
        disk.create(p("top/b")).unwrap();
        disk.create(p("top/a.txt")).unwrap();
        assert_eq!(disk.list(p("top")).unwrap(), ["a.txt", "b", "mid"]);
        assert_eq!(disk.list(p("")).unwrap(), ["top"]);
        assert!(disk.exists(p("top/mid/leaf")).unwrap());
        assert!(disk.exists(p("")).unwrap());
    });
}

#[test]
fn escaping_and_malformed_paths_are_invalid_input() {
    on_both_disks(|disk| {
        for bad in ["/abs", "a/../b", "a//b", "a/", "./a"] {
            let err = disk.create(p(bad)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
            let err = disk.exists(p(bad)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    });
}

#[test]
fn rename_replaces_the_target_and_moves_across_directories() {
    on_both_disks(|disk| {
        disk.create_dir_all(p("a")).unwrap();
        disk.create_dir_all(p("b")).unwrap();
        write_file_atomic(disk, p("a/f"), b"first").unwrap();
        write_file_atomic(disk, p("a/g"), b"second").unwrap();
        disk.rename(p("a/g"), p("a/f")).unwrap();
        assert_eq!(read_file(disk, p("a/f")).unwrap(), b"second");
        assert!(!disk.exists(p("a/g")).unwrap());
        disk.rename(p("a/f"), p("b/f")).unwrap();
        assert_eq!(disk.list(p("a")).unwrap(), Vec::<String>::new());
        assert_eq!(read_file(disk, p("b/f")).unwrap(), b"second");
        disk.rename(p("b/f"), p("b/f")).unwrap();
        assert_eq!(read_file(disk, p("b/f")).unwrap(), b"second");
    });
}

#[test]
fn directory_rename_carries_its_files() {
    on_both_disks(|disk| {
        disk.create_dir_all(p("snap/tmp")).unwrap();
        write_file_atomic(disk, p("snap/tmp/data"), b"payload").unwrap();
        disk.rename(p("snap/tmp"), p("snap/live")).unwrap();
        assert_eq!(read_file(disk, p("snap/live/data")).unwrap(), b"payload");
        assert_eq!(disk.list(p("snap")).unwrap(), ["live"]);
    });
}

#[test]
fn removed_file_stays_readable_through_an_open_handle() {
    on_both_disks(|disk| {
        let file = disk.create(p("f")).unwrap();
        file.write_at(0, b"still here").unwrap();
        disk.remove(p("f")).unwrap();
        disk.sync_dir(p("")).unwrap();
        assert!(!disk.exists(p("f")).unwrap());
        let mut buf = [0u8; 10];
        file.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"still here");
    });
}

#[test]
fn directories_cannot_be_opened_or_removed_as_files() {
    on_both_disks(|disk| {
        disk.create_dir_all(p("d")).unwrap();
        assert!(disk.open(p("d")).is_err());
        assert!(disk.remove(p("d")).is_err());
        disk.create(p("f")).unwrap();
        assert!(disk.create_dir_all(p("f")).is_err());
        assert!(disk.create_dir_all(p("f/sub")).is_err());
        assert!(disk.exists(p("f/sub")).is_err());
        assert!(disk.create(p("f/sub")).is_err());
    });
}
