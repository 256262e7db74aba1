//! The disk under test: refuse a RAM-backed directory (it would measure
//! memory, not the disk) and tell how much room is left.

use std::path::Path;

use anyhow::Context;

/// `f_type` of tmpfs and ramfs in `statfs`.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;
const EXT4_MAGIC: i64 = 0xef53;
const XFS_MAGIC: i64 = 0x5846_5342;
const BTRFS_MAGIC: i64 = 0x9123_683e;

/// The file system `dir` is on, by name; an error if it lives in memory.
pub fn check_on_disk(dir: &Path) -> anyhow::Result<&'static str> {
    let stat =
        rustix::fs::statfs(dir).with_context(|| format!("cannot statfs {}", dir.display()))?;
    #[allow(clippy::useless_conversion)]
    let kind = i64::from(stat.f_type);
    anyhow::ensure!(
        kind != TMPFS_MAGIC && kind != RAMFS_MAGIC,
        "{} is on tmpfs/ramfs (memory, not a disk): pass --dir on the disk to measure",
        dir.display()
    );
    Ok(match kind {
        EXT4_MAGIC => "ext4",
        XFS_MAGIC => "xfs",
        BTRFS_MAGIC => "btrfs",
        _ => "other",
    })
}

/// Bytes an unprivileged writer may still put on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let stat =
        rustix::fs::statvfs(dir).with_context(|| format!("cannot statvfs {}", dir.display()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_memory_is_refused_as_a_bench_dir() {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            let error = check_on_disk(shm).unwrap_err().to_string();
            assert!(error.contains("tmpfs"), "{error}");
        }
    }
}
