//! The local object store: objects (path → bytes) split into blocks in the
//! block store, found through the index. The replicated state machine
//! applies committed journal entries to it.
//!
//! Layout under the store's directory: `blocks/` (pack files) and
//! `index.redb`.
//!
//! # Write order
//!
//! A batch writes its new blocks (page cache), syncs the block store, and
//! only then commits the index transaction that refers to them, together
//! with the applied journal position. After any crash the index therefore
//! refers only to durable blocks, and blocks written by a batch that never
//! committed are dead space. Deleting an object only decrements reference
//! counts; reclaiming the space of blocks nobody refers to is future work.
//!
//! A writer may also commit index transactions with
//! [`Durability::Eventual`] over blocks not yet synced (the state machine
//! does, see `state_machine`). redb makes such commits durable at the next
//! immediate commit *or when the index is closed*, so the store syncs its
//! blocks before every immediate commit it makes and again when it is
//! dropped, before the index closes; if that sync fails, the index is told
//! to refuse writes, so that the pending commits die with the process
//! instead of becoming durable over lost blocks.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use finkfs_seam::DiskRef;

use crate::blocks::{BlockError, BlockStore, BlockStoreOptions};
use crate::index::{Applied, Durability, Index, IndexError, IndexOptions, IndexTxn};
use crate::manifest::{Manifest, ManifestBlock};
use crate::object_path::PathProblem;
use crate::reader::{check_path, ObjectReader};

const BLOCKS_DIR: &str = "blocks";
const INDEX_FILE: &str = "index.redb";

/// Options of an object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStoreOptions {
    pub blocks: BlockStoreOptions,
    pub index: IndexOptions,
    /// The largest object accepted.
    pub object_bytes_max: u64,
    /// The most operations one `apply` accepts.
    pub batch_ops_max: usize,
}

impl Default for ObjectStoreOptions {
    fn default() -> Self {
        ObjectStoreOptions {
            blocks: BlockStoreOptions::default(),
            index: IndexOptions::default(),
            object_bytes_max: 1024 * 1024 * 1024,
            batch_ops_max: 4096,
        }
    }
}

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("invalid object path {path:?}: {problem}")]
    BadPath { path: String, problem: PathProblem },
    #[error("no object at {path}")]
    NotFound { path: String },
    /// The object's pieces disagree (a block the index lost, an object hash
    /// that does not match its blocks); no data is returned.
    #[error("object {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    /// The index file is gone while packs remain: the store must be
    /// rebuilt (from the journal or a peer), not started empty.
    #[error("index {} is missing but {packs} pack files exist; refusing to start an empty index", .file.display())]
    IndexMissing { file: PathBuf, packs: usize },
    #[error("object of {len_bytes} bytes exceeds the maximum of {max_bytes}")]
    TooLarge { len_bytes: u64, max_bytes: u64 },
    #[error("batch of {ops} operations exceeds the maximum of {max}")]
    BatchTooLarge { ops: usize, max: usize },
    #[error("range of {len} bytes at {start} lies outside object {path} of {object_len} bytes")]
    RangeOutOfBounds {
        path: String,
        start: u64,
        len: u64,
        object_len: u64,
    },
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl StoreError {
    /// Whether this error reports damage (as opposed to a failed operation
    /// or a bad request).
    pub fn is_corruption(&self) -> bool {
        match self {
            StoreError::Corrupt { .. } | StoreError::IndexMissing { .. } => true,
            StoreError::Block(e) => e.is_corruption(),
            StoreError::Index(e) => e.is_corruption(),
            _ => false,
        }
    }
}

/// One change in a batch.
#[derive(Debug, Clone, Copy)]
pub enum ObjectOp<'a> {
    Put { path: &'a str, data: &'a [u8] },
    Delete { path: &'a str },
}

/// What one change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    /// The manifest now stored for the path.
    Put(Manifest),
    /// The manifest removed, if the path held an object.
    Deleted(Option<Manifest>),
}

/// Objects on one disk: block store plus index.
#[derive(Debug)]
pub struct ObjectStore {
    blocks: BlockStore,
    index: Arc<Index>,
    reader: ObjectReader,
    options: ObjectStoreOptions,
}

impl ObjectStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(disk: DiskRef, dir: PathBuf) -> Result<ObjectStore, StoreError> {
        ObjectStore::open_with(disk, dir, ObjectStoreOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`.
    pub fn open_with(
        disk: DiskRef,
        dir: PathBuf,
        options: ObjectStoreOptions,
    ) -> Result<ObjectStore, StoreError> {
        disk.create_dir_all(&dir).map_err(|source| BlockError::Io {
            file: dir.clone(),
            source,
        })?;
        let blocks = BlockStore::open(disk.clone(), dir.join(BLOCKS_DIR), options.blocks)?;
        let index_path = dir.join(INDEX_FILE);
        let index_exists = disk.exists(&index_path).map_err(|source| IndexError::Io {
            file: index_path.clone(),
            source,
        })?;
        if !index_exists {
            // The index is created (durably) before the first block is
            // written, so packs without an index mean the index was lost.
            // Starting an empty one would silently drop every object.
            let packs = blocks.packs()?.len();
            if packs > 0 {
                return Err(StoreError::IndexMissing {
                    file: index_path,
                    packs,
                });
            }
        }
        let index = Arc::new(Index::open_with(disk, &index_path, options.index)?);
        let reader = ObjectReader::new(index.clone(), blocks.reader());
        Ok(ObjectStore {
            blocks,
            index,
            reader,
            options,
        })
    }

    /// The block store, for scrubbing and fsck.
    pub fn blocks(&self) -> &BlockStore {
        &self.blocks
    }

    /// The index, for scrubbing and fsck.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &ObjectStoreOptions {
        &self.options
    }

    /// A read handle usable from other threads while this store writes.
    pub fn reader(&self) -> &ObjectReader {
        &self.reader
    }

    /// The block store and the index, for a writer that builds its own
    /// index transactions (the state machine). Such a writer must call
    /// [`Self::sync_blocks`] before any immediate commit.
    pub fn parts_mut(&mut self) -> (&mut BlockStore, &Arc<Index>) {
        (&mut self.blocks, &self.index)
    }

    /// Makes every block written so far durable. If the sync fails, the
    /// index refuses writes from then on (see the module docs): index
    /// commits that refer to those blocks must never become durable.
    pub fn sync_blocks(&mut self) -> Result<(), StoreError> {
        sync_blocks_or_refuse(&mut self.blocks, &self.index).map_err(StoreError::from)
    }

    /// Stores `data` at `path`, replacing any object there; durable on return.
    pub fn put(&mut self, path: &str, data: &[u8]) -> Result<Manifest, StoreError> {
        match self.apply(&[ObjectOp::Put { path, data }], None)?.pop() {
            Some(OpOutcome::Put(manifest)) => Ok(manifest),
            other => unreachable!("a put yields a put outcome, got {other:?}"),
        }
    }

    /// Deletes the object at `path`; durable on return. Returns its manifest
    /// if there was one.
    pub fn delete(&mut self, path: &str) -> Result<Option<Manifest>, StoreError> {
        match self.apply(&[ObjectOp::Delete { path }], None)?.pop() {
            Some(OpOutcome::Deleted(old)) => Ok(old),
            other => unreachable!("a delete yields a delete outcome, got {other:?}"),
        }
    }

    /// Applies a batch of changes atomically, recording `applied` (the
    /// journal position the batch comes from) in the same index transaction.
    /// Every path is checked before anything is written. Durable on return:
    /// new blocks are synced before the index commits.
    pub fn apply(
        &mut self,
        ops: &[ObjectOp<'_>],
        applied: Option<Applied>,
    ) -> Result<Vec<OpOutcome>, StoreError> {
        self.check_batch(ops)?;
        let mut txn = self.index.begin_write()?;
        let mut writer = BlockWriter {
            blocks: &mut self.blocks,
            block_bytes: self.options.blocks.block_bytes_max,
            written: HashSet::new(),
        };
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            outcomes.push(match op {
                ObjectOp::Put { path, data } => {
                    OpOutcome::Put(writer.put_object(&mut txn, path, data)?)
                }
                ObjectOp::Delete { path } => OpOutcome::Deleted(delete_object(&mut txn, path)?),
            });
        }
        // Also syncs blocks of earlier eventual commits, which this
        // immediate commit makes durable too.
        sync_blocks_or_refuse(writer.blocks, &self.index)?;
        if let Some(applied) = applied {
            txn.set_applied(applied)?;
        }
        txn.commit(Durability::Immediate)?;
        Ok(outcomes)
    }

    /// The whole object at `path`, every block and the object hash verified.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, StoreError> {
        self.reader.get(path)
    }

    /// `len` bytes of the object at `path` from `start`. Every block touched
    /// is verified whole.
    pub fn get_range(&self, path: &str, start: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        self.reader.get_range(path, start, len)
    }

    /// The manifest of the object at `path`, if any.
    pub fn stat(&self, path: &str) -> Result<Option<Manifest>, StoreError> {
        self.reader.stat(path)
    }

    /// Objects whose path starts with `prefix`, in path order, after
    /// `start_after` if given; at most `limit` (capped, see the index).
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Manifest)>, StoreError> {
        self.reader.list(prefix, start_after, limit)
    }

    /// The last journal position applied, if any.
    pub fn applied(&self) -> Result<Option<Applied>, StoreError> {
        self.reader.applied()
    }

    fn check_batch(&self, ops: &[ObjectOp<'_>]) -> Result<(), StoreError> {
        if ops.len() > self.options.batch_ops_max {
            return Err(StoreError::BatchTooLarge {
                ops: ops.len(),
                max: self.options.batch_ops_max,
            });
        }
        for op in ops {
            match op {
                ObjectOp::Put { path, data } => {
                    check_path(path)?;
                    if data.len() as u64 > self.options.object_bytes_max {
                        return Err(StoreError::TooLarge {
                            len_bytes: data.len() as u64,
                            max_bytes: self.options.object_bytes_max,
                        });
                    }
                }
                ObjectOp::Delete { path } => check_path(path)?,
            }
        }
        Ok(())
    }
}

/// Writes the blocks of one batch, deduplicating against the index.
struct BlockWriter<'a> {
    blocks: &'a mut BlockStore,
    block_bytes: u32,
    /// Blocks written by this batch (not yet synced).
    written: HashSet<[u8; 32]>,
}

impl BlockWriter<'_> {
    /// Writes the blocks of `data` and records its manifest at `path`,
    /// dropping the references of the manifest it replaces.
    fn put_object(
        &mut self,
        txn: &mut IndexTxn<'_>,
        path: &str,
        data: &[u8],
    ) -> Result<Manifest, StoreError> {
        let mut manifest = Manifest {
            object_len: data.len() as u64,
            object_hash: *blake3::hash(data).as_bytes(),
            block_bytes: self.block_bytes,
            blocks: Vec::with_capacity(data.len().div_ceil(self.block_bytes as usize)),
        };
        for chunk in data.chunks(self.block_bytes as usize) {
            let hash = *blake3::hash(chunk).as_bytes();
            self.put_block(txn, hash, chunk)?;
            manifest.blocks.push(ManifestBlock {
                hash,
                len: chunk.len() as u32,
            });
        }
        // New references are taken before old ones are dropped, so a block
        // shared by the old and new versions never falls to zero.
        if let Some(old) = txn.put_object(path, &manifest)? {
            drop_references(txn, &old)?;
        }
        Ok(manifest)
    }

    /// Takes one reference to block `hash`, writing it unless an intact
    /// copy is already stored.
    fn put_block(
        &mut self,
        txn: &mut IndexTxn<'_>,
        hash: [u8; 32],
        chunk: &[u8],
    ) -> Result<(), StoreError> {
        let Some(entry) = txn.block_entry(&hash)? else {
            let loc = self.blocks.put(hash, chunk)?;
            txn.add_block(&hash, &loc)?;
            self.written.insert(hash);
            return Ok(());
        };
        // A copy stored earlier may have rotted since: dedup only onto a
        // copy that verifies, otherwise write a fresh one and repoint.
        if !self.written.contains(&hash) {
            match self.blocks.read(&entry.location) {
                Ok(_) => {}
                Err(e) if e.is_corruption() => {
                    tracing::warn!(error = %e, "stored copy of a block is damaged; writing a fresh copy");
                    let loc = self.blocks.put(hash, chunk)?;
                    txn.relocate_block(&hash, &loc)?;
                    self.written.insert(hash);
                }
                Err(e) => return Err(e.into()),
            }
        }
        txn.block_ref_inc(&hash)?;
        Ok(())
    }
}

fn delete_object(txn: &mut IndexTxn<'_>, path: &str) -> Result<Option<Manifest>, StoreError> {
    let old = txn.delete_object(path)?;
    if let Some(old) = &old {
        drop_references(txn, old)?;
    }
    Ok(old)
}

fn drop_references(txn: &mut IndexTxn<'_>, manifest: &Manifest) -> Result<(), StoreError> {
    for block in &manifest.blocks {
        txn.block_ref_dec(&block.hash)?;
    }
    Ok(())
}

/// Syncs `blocks`; on failure makes `index` refuse writes, so that no
/// pending eventual commit referring to the lost blocks becomes durable.
pub(crate) fn sync_blocks_or_refuse(
    blocks: &mut BlockStore,
    index: &Index,
) -> Result<(), BlockError> {
    let result = blocks.sync();
    if let Err(error) = &result {
        index.refuse_writes(format!("blocks could not be made durable: {error}"));
    }
    result
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        // Closing the index makes its eventual commits durable: the blocks
        // they refer to must be durable first.
        if self.blocks.is_poisoned() {
            self.index
                .refuse_writes("the block store was poisoned by a failed sync".to_string());
        } else if self.blocks.has_unsynced() {
            if let Err(error) = sync_blocks_or_refuse(&mut self.blocks, &self.index) {
                tracing::error!(%error, "could not sync blocks while closing the store");
            }
        }
    }
}
