//! The index: which objects exist (path → manifest), where each block lives
//! and how many manifests refer to it, and the last journal entry applied.
//! It is a redb database running on the I/O seam (see `backend.rs`).
//!
//! Every value read is verified (see `values.rs`) before use; redb panics on
//! a damaged file are contained (see `shield.rs`). Once anything fails in a
//! way that leaves redb's state in doubt — a failed commit or sync, a panic —
//! the index is poisoned and refuses all work until reopened.
//!
//! # Crash rules
//!
//! A transaction committed with [`Durability::Immediate`] is durable when
//! `commit` returns. One committed with [`Durability::Eventual`] becomes
//! durable with the next immediate commit and may be lost by a power cut
//! before it. redb recovers to the last durable commit after a crash. The
//! `applied` record is written in the same transaction as the changes it
//! covers, so after any crash it names exactly the last journal entry whose
//! effects the index holds.

mod backend;
mod error;
mod header_shadow;
mod quarantine;
mod rebuild;
mod shield;
mod txn;
mod values;
mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use finkfs_seam::{parent_dir, temporary_sibling, DiskRef, FileRef};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::blocks::BlockLocation;
use crate::hex::hex;
use crate::manifest::Manifest;

pub use error::IndexError;
pub use quarantine::{
    QuarantineRecord, QuarantineStatus, QUARANTINE_KEY_BYTES, QUARANTINE_LIST_MAX,
    QUARANTINE_REASON_BYTES_MAX, QUARANTINE_RECORD_VERSION,
};
pub use txn::IndexTxn;
pub use values::INDEX_FORMAT_VERSION;
pub use view::{BlockTable, CheckedBlockEntry, CheckedObject, IndexView};

use backend::SeamBackend;
use header_shadow::HeaderShadow;
use shield::{drop_shielded, shielded, Poison};
use values::BLOCK_ENTRY_BYTES;

const OBJECTS_NAME: &str = "objects";
const BLOCKS_NAME: &str = "blocks";
const APPLIED_NAME: &str = "applied";
const META_NAME: &str = "meta";
const STAGED_NAME: &str = "staged";
const OBJECTS_NEXT_NAME: &str = "objects_next";
const BLOCKS_NEXT_NAME: &str = "blocks_next";
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new(OBJECTS_NAME);
const BLOCKS: TableDefinition<&[u8; 32], &[u8; BLOCK_ENTRY_BYTES]> =
    TableDefinition::new(BLOCKS_NAME);
const APPLIED: TableDefinition<&str, &[u8]> = TableDefinition::new(APPLIED_NAME);
const META: TableDefinition<&str, &[u8]> = TableDefinition::new(META_NAME);
/// Blocks fetched for a snapshot being installed, not yet part of `blocks`.
const STAGED: TableDefinition<&[u8; 32], &[u8; BLOCK_ENTRY_BYTES]> =
    TableDefinition::new(STAGED_NAME);
/// The tables a snapshot install fills before they replace `objects` and
/// `blocks`, all in one transaction.
const OBJECTS_NEXT: TableDefinition<&str, &[u8]> = TableDefinition::new(OBJECTS_NEXT_NAME);
const BLOCKS_NEXT: TableDefinition<&[u8; 32], &[u8; BLOCK_ENTRY_BYTES]> =
    TableDefinition::new(BLOCKS_NEXT_NAME);
const APPLIED_KEY: &str = "applied";
const MEMBERSHIP_KEY: &str = "membership";
const FORMAT_KEY: &str = "format";

/// `list` returns at most this many entries per call; callers page on with
/// `start_after`.
pub const LIST_LIMIT_MAX: usize = 10_000;

/// The position of the last journal entry applied to the index: its log
/// id (index, term, and the node id of the leader that proposed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub node: u64,
}

/// A block's location and how many manifests refer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    pub location: BlockLocation,
    /// Zero means dead: no manifest refers to it, its space awaits reclaim.
    pub refs: u64,
}

/// When a commit is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Durable before `commit` returns.
    Immediate,
    /// Durable with the next immediate commit; lost by a power cut before it.
    Eventual,
}

/// Tuning of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexOptions {
    /// Memory redb may use to cache pages.
    pub cache_bytes: usize,
    /// Verify the checksum of every page of the file on open (redb's
    /// integrity check). Costs a read of the whole file, and turns damage
    /// anywhere in it into an error at start-up rather than on some later
    /// read.
    pub verify_on_open: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            cache_bytes: 64 * 1024 * 1024,
            verify_on_open: true,
        }
    }
}

/// The index database. Reads take `&self` and may run from many threads.
#[derive(Debug)]
pub struct Index {
    /// `Some` until dropped: taken in `Drop` to close redb under the shield.
    db: Option<redb::Database>,
    file: PathBuf,
    poison: Poison,
    sync_failed: Arc<AtomicBool>,
    /// Turns true once redb is closed, at the end of `Drop`. A waiter
    /// cannot use the `Arc`'s strong count for this: it reaches zero
    /// before the drop runs, while redb still writes its file on close.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Index {
    /// Opens (creating if needed) the index file at `path` with default options.
    pub fn open(disk: DiskRef, path: &Path) -> Result<Index, IndexError> {
        Index::open_with(disk, path, IndexOptions::default())
    }

    /// Opens (creating if needed) the index file at `path`.
    ///
    /// A new index is built under a temporary name, synced, and renamed into
    /// place, so a power cut while creating it never leaves a half-made
    /// index: an index file that exists was complete when it was named.
    pub fn open_with(
        disk: DiskRef,
        path: &Path,
        options: IndexOptions,
    ) -> Result<Index, IndexError> {
        let io = |source| IndexError::Io {
            file: path.to_path_buf(),
            source,
        };
        if !disk.exists(path).map_err(io)? {
            create_new(&disk, path, options)?;
        }
        let file = disk.open(path).map_err(io)?;
        if file.len().map_err(io)? == 0 {
            // redb would take an empty file for a new database; ours never are.
            return Err(IndexError::FileCorrupt {
                file: path.to_path_buf(),
                reason: "index file is empty".to_string(),
            });
        }
        let index = Index::open_file(&disk, file, path, options, Creating::No)?;
        tracing::debug!(file = %path.display(), "index open");
        Ok(index)
    }

    fn open_file(
        disk: &DiskRef,
        file: FileRef,
        path: &Path,
        options: IndexOptions,
        creating: Creating,
    ) -> Result<Index, IndexError> {
        let shadow_path = header_shadow::shadow_path(path);
        let shadow =
            HeaderShadow::open_and_restore(disk, shadow_path.clone(), &file).map_err(|source| {
                IndexError::Io {
                    file: shadow_path,
                    source,
                }
            })?;
        let shadow = Arc::new(shadow);
        let sync_failed = Arc::new(AtomicBool::new(false));
        let backend = SeamBackend::new(file.clone(), shadow.clone(), sync_failed.clone());
        let poison = Poison::default();
        let shown = path.display().to_string();
        let db = shielded(path, &poison, "open", || {
            redb::Builder::new()
                .set_repair_callback(move |repair| {
                    // redb reports progress here both for the integrity pass
                    // run on every open (`verify_on_open`) and for a repair
                    // after a crash; it does not say which, so the message
                    // names both rather than claiming an unclean close.
                    tracing::debug!(file = %shown, progress = repair.progress(), "index integrity pass or repair in progress");
                })
                .set_cache_size(options.cache_bytes)
                .set_check_integrity_on_open(options.verify_on_open)
                .create_with_backend(backend)
                .map_err(|e| IndexError::from_redb(path, e))
        })?;
        let index = Index {
            db: Some(db),
            file: path.to_path_buf(),
            poison,
            sync_failed,
            closed: tokio::sync::watch::Sender::new(false),
        };
        index.init_tables(creating)?;
        // redb may have opened without syncing (nothing to repair): make
        // sure the shadow holds the header now in place.
        shadow.record(&file).map_err(|source| IndexError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        Ok(index)
    }

    /// Shows true once this index is closed and redb has finished
    /// writing its file: only then may another instance open the file.
    pub fn closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// The index file, relative to the disk root.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Verifies the checksum of every page reachable in the file, reading
    /// from the disk, not the cache: for fsck and the scrubber, to find
    /// damage that happened after the index was opened. `Ok(true)`: intact.
    /// `Ok(false)`: redb found the file inconsistent and repaired it (an
    /// unclean state it could rebuild). Damage it cannot repair is
    /// [`IndexError::FileCorrupt`]. Needs `&mut`: no transaction may be live.
    pub fn check_integrity(&mut self) -> Result<bool, IndexError> {
        self.check_usable()?;
        let file = self.file.clone();
        let db = self.db.as_mut().expect("database present until drop");
        let result = shielded(&file, &self.poison, "integrity check", || {
            db.check_integrity()
                .map_err(|e| IndexError::from_redb(&file, e))
        });
        if let Ok(false) = result {
            tracing::warn!(file = %file.display(), "index integrity check repaired the file");
        }
        result
    }

    /// Starts the (single) write transaction.
    pub fn begin_write(&self) -> Result<IndexTxn<'_>, IndexError> {
        let txn = self.guard("begin write", |db| {
            db.begin_write().map_err(|e| self.redb_error(e))
        })?;
        Ok(IndexTxn::new(self, txn))
    }

    /// The manifest of the object at `path`, verified.
    pub fn get_object(&self, path: &str) -> Result<Option<Manifest>, IndexError> {
        self.read("get object", |txn| view::read_object(self, txn, path))
    }

    /// Up to `limit` objects (at most [`LIST_LIMIT_MAX`]) whose path starts
    /// with `prefix`, in path order, after `start_after` if given.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Manifest)>, IndexError> {
        self.read("list", |txn| {
            view::read_list(self, txn, prefix, start_after, limit)
        })
    }

    /// Where block `hash` lives and its reference count, verified.
    pub fn block_location(&self, hash: &[u8; 32]) -> Result<Option<BlockEntry>, IndexError> {
        self.read("get block", |txn| view::read_block(self, txn, hash))
    }

    /// The last journal entry applied, if any was recorded.
    pub fn applied(&self) -> Result<Option<Applied>, IndexError> {
        self.read("get applied", |txn| view::read_applied(self, txn))
    }

    /// The last membership applied (opaque bytes, see `set_membership`).
    pub fn membership(&self) -> Result<Option<Vec<u8>>, IndexError> {
        self.read("get membership", |txn| view::read_membership(self, txn))
    }

    /// Where a block staged for a snapshot install lives, verified.
    pub fn staged_block(&self, hash: &[u8; 32]) -> Result<Option<BlockLocation>, IndexError> {
        self.read("get staged block", |txn| view::read_staged(self, txn, hash))
    }

    /// A consistent read-only view of the whole index as of now, unaffected
    /// by later commits (redb's MVCC read transaction).
    pub fn view(self: &Arc<Self>) -> Result<IndexView, IndexError> {
        let txn = self.guard("begin read", |db| {
            db.begin_read().map_err(|e| self.redb_error(e))
        })?;
        Ok(IndexView::new(self.clone(), txn))
    }

    /// Poisons the index and makes its file refuse every further write,
    /// including the commit redb would make when it is closed. Used when
    /// something the index's pending (eventual) commits refer to can no
    /// longer be made durable, such as blocks whose sync failed: those
    /// commits must die with the process rather than become durable.
    pub fn refuse_writes(&self, reason: String) {
        tracing::error!(file = %self.file.display(), %reason, "index refuses writes until reopened");
        self.poison.set(reason);
        self.sync_failed.store(true, Ordering::Release);
    }

    /// Creates the tables of a new index, or checks the format of an old one.
    fn init_tables(&self, creating: Creating) -> Result<(), IndexError> {
        self.guard("open tables", |db| {
            let txn = db.begin_write().map_err(|e| self.redb_error(e))?;
            let found = {
                let mut meta = txn.open_table(META).map_err(|e| self.redb_error(e))?;
                let found = meta.get(FORMAT_KEY).map_err(|e| self.redb_error(e))?;
                let found = found.map(|v| decode_format(v.value())).transpose()?;
                if found.is_none() && creating == Creating::Yes {
                    for table in [OBJECTS, APPLIED] {
                        txn.open_table(table).map_err(|e| self.redb_error(e))?;
                    }
                    for table in [BLOCKS, STAGED] {
                        txn.open_table(table).map_err(|e| self.redb_error(e))?;
                    }
                    let value = values::encode_format(META_NAME, FORMAT_KEY);
                    meta.insert(FORMAT_KEY, value.as_slice())
                        .map_err(|e| self.redb_error(e))?;
                }
                found
            };
            match (found, creating) {
                (Some(version), _) if version != INDEX_FORMAT_VERSION => {
                    Err(IndexError::UnsupportedVersion {
                        file: self.file.clone(),
                        found: version,
                        expected: INDEX_FORMAT_VERSION,
                    })
                }
                (Some(_), _) => txn.abort().map_err(|e| self.redb_error(e)),
                (None, Creating::Yes) => txn.commit().map_err(|e| self.commit_failed(e)),
                (None, Creating::No) => Err(IndexError::FileCorrupt {
                    file: self.file.clone(),
                    reason: "no format record".to_string(),
                }),
            }
        })
    }

    /// Runs `f` in a read transaction of its own.
    fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        self.guard(what, |db| {
            let txn = db.begin_read().map_err(|e| self.redb_error(e))?;
            f(&txn)
        })
    }

    /// Runs `f` on the database unless poisoned, containing redb panics.
    fn guard<T>(
        &self,
        what: &str,
        f: impl FnOnce(&redb::Database) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        self.check_usable()?;
        let db = self.db.as_ref().expect("database present until drop");
        shielded(&self.file, &self.poison, what, || f(db))
    }

    fn check_usable(&self) -> Result<(), IndexError> {
        if self.sync_failed.load(Ordering::Acquire) {
            self.poison
                .set("a sync of the index file failed".to_string());
        }
        self.poison.check(&self.file)
    }

    fn redb_error(&self, e: impl Into<redb::Error>) -> IndexError {
        IndexError::from_redb(&self.file, e)
    }

    /// A failed commit may or may not have become durable, and redb refuses
    /// further writes: poison the index until it is reopened.
    fn commit_failed(&self, e: impl Into<redb::Error>) -> IndexError {
        let error = self.redb_error(e);
        tracing::error!(file = %self.file.display(), %error, "index commit failed; poisoned until reopened");
        self.poison.set(format!("a commit failed: {error}"));
        error
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            drop_shielded(&self.file, db);
        }
        self.closed.send_replace(true);
    }
}

/// Whether `open_file` is initialising a brand-new index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creating {
    Yes,
    No,
}

/// Builds an empty index under a temporary name and renames it to `path`.
/// The shadow header file is written by the first open under the real name.
fn create_new(disk: &DiskRef, path: &Path, options: IndexOptions) -> Result<(), IndexError> {
    let io = |file: &Path, source| IndexError::Io {
        file: file.to_path_buf(),
        source,
    };
    let tmp = temporary_sibling(path).map_err(|e| io(path, e))?;
    let dir = parent_dir(path);
    disk.create_dir_all(dir).map_err(|e| io(dir, e))?;
    // Leftovers of a power cut during an earlier creation, and a shadow of
    // some older index, which must never be restored into this one.
    for stale in [
        tmp.clone(),
        header_shadow::shadow_path(&tmp),
        header_shadow::shadow_path(path),
    ] {
        if disk.exists(&stale).map_err(|e| io(&stale, e))? {
            disk.remove(&stale).map_err(|e| io(&stale, e))?;
        }
    }
    let file = disk.create(&tmp).map_err(|e| io(&tmp, e))?;
    drop(Index::open_file(
        disk,
        file.clone(),
        &tmp,
        options,
        Creating::Yes,
    )?);
    file.sync().map_err(|e| io(&tmp, e))?;
    let tmp_shadow = header_shadow::shadow_path(&tmp);
    disk.remove(&tmp_shadow).map_err(|e| io(&tmp_shadow, e))?;
    disk.rename(&tmp, path).map_err(|e| io(path, e))?;
    disk.sync_dir(dir).map_err(|e| io(dir, e))?;
    tracing::info!(file = %path.display(), "created a new index");
    Ok(())
}

fn decode_object(path: &str, value: &[u8]) -> Result<Manifest, IndexError> {
    values::decode_manifest(OBJECTS_NAME, path, value).map_err(|reason| IndexError::Corrupt {
        table: OBJECTS_NAME,
        key: path.to_string(),
        reason,
    })
}

fn decode_block(hash: &[u8; 32], value: &[u8]) -> Result<BlockEntry, IndexError> {
    values::decode_block_entry(BLOCKS_NAME, hash, value).map_err(|reason| IndexError::Corrupt {
        table: BLOCKS_NAME,
        key: hex(hash),
        reason,
    })
}

fn decode_applied(value: &[u8]) -> Result<Applied, IndexError> {
    values::decode_applied(APPLIED_NAME, APPLIED_KEY, value).map_err(|reason| IndexError::Corrupt {
        table: APPLIED_NAME,
        key: APPLIED_KEY.to_string(),
        reason,
    })
}

fn decode_membership(value: &[u8]) -> Result<Vec<u8>, IndexError> {
    values::decode_membership(APPLIED_NAME, MEMBERSHIP_KEY, value).map_err(|reason| {
        IndexError::Corrupt {
            table: APPLIED_NAME,
            key: MEMBERSHIP_KEY.to_string(),
            reason,
        }
    })
}

fn decode_staged(hash: &[u8; 32], value: &[u8]) -> Result<BlockEntry, IndexError> {
    values::decode_block_entry(STAGED_NAME, hash, value).map_err(|reason| IndexError::Corrupt {
        table: STAGED_NAME,
        key: hex(hash),
        reason,
    })
}

fn decode_format(value: &[u8]) -> Result<u32, IndexError> {
    values::decode_format(META_NAME, FORMAT_KEY, value).map_err(|reason| IndexError::Corrupt {
        table: META_NAME,
        key: FORMAT_KEY.to_string(),
        reason,
    })
}
