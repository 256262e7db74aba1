//! A simulated disk: an in-memory implementation of the I/O seam
//! ([`finkfs_seam::Disk`]) that models what a power cut and a failing
//! medium do to stored data, so tests of every crate (and the whole-cluster
//! simulator) can cut the power under any structure and replay the outcome.
//!
//! # Determinism
//!
//! A [`SimDisk`] is built from one `u64` seed. Every random choice — the
//! fate of each unsynced write, which sectors of a torn write take new bytes,
//! which metadata operations survive, fault draws — comes from one seeded
//! RNG, and the simulator visits files in inode order and directories in name
//! order. The same seed and the same sequence of calls give the same disk,
//! byte for byte, and the same fault log. Fault rates set to zero draw
//! nothing, so turning faults on for one test does not reshuffle the others.
//! A `SimDisk` is `Clone` (clones share one disk), `Send` and `Sync`.
//!
//! # Files
//!
//! Each file (inode) has *durable* bytes, what survives a power cut, and an
//! ordered list of *pending* operations not yet synced: writes and length
//! changes. The running system reads the *current* bytes: durable bytes
//! with the pending operations applied in order. [`finkfs_seam::DiskFile::sync`]
//! makes the file's pending operations durable (`fdatasync`: data and
//! length, not the file's name).
//!
//! # Directories
//!
//! Creating, renaming and removing a file change the tree the running system
//! sees at once, and append an operation to one global ordered log of
//! metadata not yet durable. [`finkfs_seam::Disk::sync_dir`] of a directory
//! marks every logged operation on that directory durable. A rename across
//! directories is two operations — the name leaving the source and the name
//! appearing in the target — each made durable by syncing its own
//! directory, so only syncing both makes the whole rename durable.
//! Directories are known by identity, not by path, so syncing a directory
//! that was renamed still covers what happened in it.
//!
//! `create_dir_all` is durable on return, as the seam promises: each new
//! directory is synced into its parent, which also makes every earlier
//! operation on that parent durable, just as a real directory fsync does.
//! Renaming a *directory* is the one leniency of the model: it is durable at
//! once and makes every earlier metadata operation durable (like a journal
//! commit), because replaying a lost directory move among surviving ones
//! could leave a tree no file system can produce. A directory can replace
//! only an empty directory, and a file never replaces a directory.
//!
//! # Power cuts
//!
//! [`SimDisk::power_cut`] uses [`CrashPolicy::Random`]:
//!
//! * each pending write is independently lost, kept, or torn (one chance in
//!   three each). A torn write is applied sector by sector — sectors are
//!   [`SECTOR_BYTES`] long and aligned to file offsets — and each sector it
//!   covers independently keeps its old bytes, takes the new ones, or gets
//!   random garbage. Only bytes inside the write change: data synced
//!   earlier in a shared sector survives. A torn write that extended the
//!   file leaves it at the write's end, sectors that kept their "old" bytes
//!   past the old end reading as zeros;
//! * each pending length change is kept or dropped (even odds);
//! * of the metadata operations not made durable, a random prefix of the log
//!   survives and the rest are lost, while durable ones always survive, even
//!   after the cut point. So a file created without a directory sync may
//!   vanish, a rename may revert, a removed file may come back. A rename
//!   across directories whose target half survived and source half did not
//!   leaves the file under both names; each name then has its own copy.
//!
//! [`SimDisk::power_cut_with`] takes [`CrashPolicy::LoseUnsynced`] (lose
//! everything not synced) or [`CrashPolicy::KeepUnsynced`] (keep it all)
//! for tests that need a fixed outcome. After any cut, current bytes equal
//! durable bytes, nothing is pending, files no name reaches are gone, and
//! every handle opened before the cut is stale: each of its methods fails
//! with `io::ErrorKind::Other`, "stale handle: opened before a power cut",
//! so a bug that keeps using old handles shows up.
//!
//! # Faults on command
//!
//! Every injected fault is recorded in the fault log (see below).
//!
//! * [`SimDisk::flip_bit`] and [`SimDisk::zero_sector`] damage bytes at rest,
//!   in both the durable and the current bytes.
//! * [`SimDisk::latent_sector_error`] makes reads touching a sector fail
//!   with EIO until a write touches that sector (the drive remaps it).
//! * [`SimDisk::corrupt_bytes`] overwrites bytes at rest with anything a
//!   test wants to plant.
//! * [`SimDisk::fail_next`] (and [`SimDisk::fail_next_on`], limited to paths
//!   starting with a prefix) fails the next `count` operations of a
//!   [`FaultOp`] kind with an [`IoFault`]: EIO (`finkfs_seam::eio()`) or
//!   ENOSPC (`finkfs_seam::enospc()`). A failed read, write, length change,
//!   create, rename, remove or directory sync changes nothing.
//! * A failed file sync follows what Linux does (fsyncgate): each pending
//!   operation of the file is randomly either made durable or dropped for
//!   good, and it is no longer pending either way, while the current bytes
//!   keep showing it. A retried sync then "succeeds" without the data being
//!   durable: callers must treat a failed sync as data loss and reopen.
//! * [`SimDisk::misdirect_next_write`]: the next write under a prefix lands
//!   a random non-zero whole number of sectors away (within the file or
//!   just past its end), in both views, while the range it was aimed at keeps
//!   its old bytes; the write returns `Ok`.
//! * [`SimDisk::lose_next_write`]: the next write under a prefix returns
//!   `Ok` and shows in the current bytes (the page cache), but never reaches
//!   the durable bytes: a sync skips it and a power cut drops it.
//! * [`SimDisk::set_capacity`] caps the total current length of all files
//!   (including unlinked files still open); a write or length change that
//!   would grow past it fails with ENOSPC and changes nothing.
//! * [`SimDisk::set_fault_rates`] sets [`FaultRates`]: per-operation
//!   probabilities of EIO on reads, writes, syncs and directory syncs, of
//!   ENOSPC on writes, of misdirected and of lost writes, drawn from the
//!   seeded RNG. All default to zero.
//!
//! Prefixes are compared as text. Faults armed for a kind of operation hit
//! only that operation: `create_dir_all` never draws a directory-sync fault.
//!
//! # Inspection
//!
//! [`SimDisk::fault_log`] and [`SimDisk::take_fault_log`] return every
//! [`InjectedFault`] in order: its [`FaultKind`], the file's path, and the
//! byte offset and length where they mean something. [`SimDisk::power_cuts`]
//! counts cuts, [`SimDisk::file_paths`] lists every file the running system
//! sees, and [`SimDisk::durable_bytes`] / [`SimDisk::current_bytes`] show
//! both views of one file.
//!
//! # Limits
//!
//! Files live in memory, up to [`FILE_BYTES_MAX`] bytes each
//! (`FileTooLarge` past it). The data of a removed file is kept until no
//! open handle and no unsynced operation could still reach it.

mod dirops;
mod disk;
mod faults;
mod file;
mod fileops;
mod metalog;
mod namespace;
mod state;

pub use disk::SimDisk;
pub use faults::{CrashPolicy, FaultKind, FaultOp, FaultRates, InjectedFault, IoFault, MetadataOp};
pub use file::{FILE_BYTES_MAX, SECTOR_BYTES};
