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

use std::collections::HashSet;
use std::path::PathBuf;

use finkfs_seam::DiskRef;

use crate::blocks::{BlockError, BlockStore, BlockStoreOptions};
use crate::index::{Applied, Durability, Index, IndexError, IndexOptions, IndexTxn};
use crate::manifest::{Manifest, ManifestBlock};
use crate::object_path::{check_object_path, PathProblem};

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
    index: Index,
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
        let index = Index::open_with(disk, &index_path, options.index)?;
        Ok(ObjectStore {
            blocks,
            index,
            options,
        })
    }

    /// The block store, for scrubbing and fsck.
    pub fn blocks(&self) -> &BlockStore {
        &self.blocks
    }

    /// The index, for scrubbing and fsck.
    pub fn index(&self) -> &Index {
        &self.index
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
        if !writer.written.is_empty() {
            writer.blocks.sync()?;
        }
        if let Some(applied) = applied {
            txn.set_applied(applied)?;
        }
        txn.commit(Durability::Immediate)?;
        Ok(outcomes)
    }

    /// The whole object at `path`, every block and the object hash verified.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, StoreError> {
        let manifest = self.manifest(path)?;
        let mut data = Vec::with_capacity(usize::try_from(manifest.object_len).unwrap_or(0));
        for block in &manifest.blocks {
            let loc = self.locate(path, block)?;
            data.extend_from_slice(&self.blocks.read(&loc)?);
        }
        if data.len() as u64 != manifest.object_len {
            return Err(corrupt(
                path,
                format!(
                    "blocks hold {} bytes, manifest says {}",
                    data.len(),
                    manifest.object_len
                ),
            ));
        }
        if blake3::hash(&data).as_bytes() != &manifest.object_hash {
            return Err(corrupt(
                path,
                "object does not hash to the hash in its manifest".to_string(),
            ));
        }
        Ok(data)
    }

    /// `len` bytes of the object at `path` from `start`. Every block touched
    /// is verified whole.
    pub fn get_range(&self, path: &str, start: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let manifest = self.manifest(path)?;
        let end = start
            .checked_add(len)
            .filter(|end| *end <= manifest.object_len);
        let Some(end) = end else {
            return Err(StoreError::RangeOutOfBounds {
                path: path.to_string(),
                start,
                len,
                object_len: manifest.object_len,
            });
        };
        let block_bytes = u64::from(manifest.block_bytes);
        let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut pos = start;
        while pos < end {
            let index = pos / block_bytes;
            let block_start = index * block_bytes;
            let block = &manifest.blocks[index as usize];
            let from = (pos - block_start) as u32;
            let take = (end - pos).min(u64::from(block.len) - u64::from(from)) as u32;
            let loc = self.locate(path, block)?;
            data.extend_from_slice(&self.blocks.read_range(&loc, from, take)?);
            pos += u64::from(take);
        }
        assert_eq!(data.len() as u64, len);
        Ok(data)
    }

    /// The manifest of the object at `path`, if any.
    pub fn stat(&self, path: &str) -> Result<Option<Manifest>, StoreError> {
        check_path(path)?;
        Ok(self.index.get_object(path)?)
    }

    /// Objects whose path starts with `prefix`, in path order, after
    /// `start_after` if given; at most `limit` (capped, see the index).
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Manifest)>, StoreError> {
        Ok(self.index.list(prefix, start_after, limit)?)
    }

    /// The last journal position applied, if any.
    pub fn applied(&self) -> Result<Option<Applied>, StoreError> {
        Ok(self.index.applied()?)
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

    fn manifest(&self, path: &str) -> Result<Manifest, StoreError> {
        check_path(path)?;
        self.index
            .get_object(path)?
            .ok_or_else(|| StoreError::NotFound {
                path: path.to_string(),
            })
    }

    fn locate(
        &self,
        path: &str,
        block: &ManifestBlock,
    ) -> Result<crate::blocks::BlockLocation, StoreError> {
        let entry = self.index.block_location(&block.hash)?;
        let Some(entry) = entry else {
            let reason = format!(
                "block {} is missing from the index",
                crate::hex::hex(&block.hash)
            );
            return Err(corrupt(path, reason));
        };
        if entry.location.len != block.len {
            let reason = format!(
                "block {} is {} bytes in the index, {} in the manifest",
                crate::hex::hex(&block.hash),
                entry.location.len,
                block.len
            );
            return Err(corrupt(path, reason));
        }
        Ok(entry.location)
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

fn check_path(path: &str) -> Result<(), StoreError> {
    check_object_path(path).map_err(|problem| StoreError::BadPath {
        path: path.to_string(),
        problem,
    })
}

fn corrupt(path: &str, reason: String) -> StoreError {
    StoreError::Corrupt {
        path: path.to_string(),
        reason,
    }
}
