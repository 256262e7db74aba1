//! [`ObjectReader`]: reads of an object store that run concurrently with the
//! writer (the state machine applying entries), from any number of threads.
//!
//! It shares the index (`Arc<Index>`, redb read transactions) and the pack
//! handles (a [`BlockReader`]) with the store. A whole-object read takes its
//! manifest and every block location from one index view, so it sees one
//! version of the object even while the writer replaces it. Every block and
//! every whole object is verified (BLAKE3) before a byte is returned.

use std::sync::Arc;

use bytes::Bytes;
use finkfs_raft::network::{BlockSource, BlockSourceError};

use crate::blocks::{BlockLocation, BlockReader};
use crate::hex::hex;
use crate::index::{Applied, Index, IndexView};
use crate::manifest::{Manifest, ManifestBlock};
use crate::object_path::check_object_path;
use crate::repair::DamagedBlock;
use crate::store::StoreError;

/// A cheap, cloneable, thread-safe read handle on an object store.
#[derive(Debug, Clone)]
pub struct ObjectReader {
    index: Arc<Index>,
    blocks: BlockReader,
}

impl ObjectReader {
    pub(crate) fn new(index: Arc<Index>, blocks: BlockReader) -> Self {
        ObjectReader { index, blocks }
    }

    /// The index, for scrubbing and fsck.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Shows when the index is closed (its last holder let go and redb
    /// finished writing), for a shutdown that must wait for it.
    pub(crate) fn index_closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.index.closed()
    }

    /// The block reader, for scrubbing and fsck.
    pub fn blocks(&self) -> &BlockReader {
        &self.blocks
    }

    /// The whole object at `path`, every block and the object hash verified.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, StoreError> {
        let view = self.index.view()?;
        let manifest = manifest_in(&view, path)?;
        let mut data = Vec::with_capacity(usize::try_from(manifest.object_len).unwrap_or(0));
        for block in &manifest.blocks {
            let loc = locate_in(&view, path, block)?;
            data.extend_from_slice(&self.blocks.read(&loc)?);
        }
        if data.len() as u64 != manifest.object_len {
            let reason = format!(
                "blocks hold {} bytes, manifest says {}",
                data.len(),
                manifest.object_len
            );
            return Err(corrupt(path, reason));
        }
        if blake3::hash(&data).as_bytes() != &manifest.object_hash
            && !crate::blocks::skip_read_checksum()
        {
            let reason = "object does not hash to the hash in its manifest".to_string();
            return Err(corrupt(path, reason));
        }
        Ok(data)
    }

    /// `len` bytes of the object at `path` from `start`. Every block touched
    /// is verified whole.
    pub fn get_range(&self, path: &str, start: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let view = self.index.view()?;
        let manifest = manifest_in(&view, path)?;
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
            let loc = locate_in(&view, path, block)?;
            data.extend_from_slice(&self.blocks.read_range(&loc, from, take)?);
            pos += u64::from(take);
        }
        assert_eq!(data.len() as u64, len);
        Ok(data)
    }

    /// One block of the object at `path`, verified: lets a caller stream a
    /// large object block by block after [`Self::stat`]. Blocks are never
    /// reclaimed while the node runs, so the block stays readable even if
    /// the object is replaced meanwhile.
    pub fn read_object_block(
        &self,
        path: &str,
        block: &ManifestBlock,
    ) -> Result<Vec<u8>, StoreError> {
        let view = self.index.view()?;
        let loc = locate_in(&view, path, block)?;
        Ok(self.blocks.read(&loc)?)
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

    /// The block whose BLAKE3 is `hash`, verified, or `None` when the index
    /// does not know it. Damage is an error, never data.
    pub fn block(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(entry) = self.index.block_location(hash)? else {
            return Ok(None);
        };
        Ok(Some(self.blocks.read(&entry.location)?))
    }
}

impl ObjectReader {
    /// Where block `hash` lies and what is wrong with it, when the index
    /// knows it and its copy does not verify (or cannot be read); `None`
    /// when the block is unknown or reads back intact.
    pub fn damaged_block(&self, hash: &[u8; 32]) -> Result<Option<DamagedBlock>, StoreError> {
        let Some(entry) = self.index.block_location(hash)? else {
            return Ok(None);
        };
        Ok(match self.blocks.read(&entry.location) {
            Ok(_) => None,
            Err(error) => DamagedBlock::from_read_error(entry.location, &error),
        })
    }
}

/// Serves FetchBlock to peers: every block this node's index knows,
/// referenced or not, verified before it leaves.
impl BlockSource for ObjectReader {
    fn read_block(&self, hash: [u8; 32]) -> Result<Option<Bytes>, BlockSourceError> {
        match self.block(&hash) {
            Ok(found) => Ok(found.map(Bytes::from)),
            Err(error) if error.is_corruption() => {
                tracing::error!(block = %hex(&hash), %error, "cannot serve a damaged block");
                Err(Box::new(finkfs_raft::network::DamagedCopy(
                    error.to_string(),
                )))
            }
            Err(error) => {
                tracing::error!(block = %hex(&hash), %error, "cannot serve a block");
                Err(Box::new(error))
            }
        }
    }
}

fn manifest_in(view: &IndexView, path: &str) -> Result<Manifest, StoreError> {
    check_path(path)?;
    view.get_object(path)?.ok_or_else(|| StoreError::NotFound {
        path: path.to_string(),
    })
}

fn locate_in(
    view: &IndexView,
    path: &str,
    block: &ManifestBlock,
) -> Result<BlockLocation, StoreError> {
    let Some(entry) = view.block_location(&block.hash)? else {
        let reason = format!("block {} is missing from the index", hex(&block.hash));
        return Err(corrupt(path, reason));
    };
    if entry.location.len != block.len {
        let reason = format!(
            "block {} is {} bytes in the index, {} in the manifest",
            hex(&block.hash),
            entry.location.len,
            block.len
        );
        return Err(corrupt(path, reason));
    }
    Ok(entry.location)
}

pub(crate) fn check_path(path: &str) -> Result<(), StoreError> {
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
