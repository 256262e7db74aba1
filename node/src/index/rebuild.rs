//! Replacing the whole content of the index with a snapshot's, in one
//! transaction, and staging the blocks fetched for it beforehand.
//!
//! Installing a snapshot first fetches the blocks it needs and this node
//! lacks, writes them to packs and records them in `staged` (apart from
//! `blocks`, so that the index content does not change before the install
//! commits). Then one transaction:
//!
//! 1. [`IndexTxn::begin_rebuild`] empties `objects_next` and `blocks_next`;
//! 2. [`IndexTxn::rebuild_object`] and [`IndexTxn::rebuild_unreferenced`]
//!    fill them from the snapshot, taking each block's location from
//!    `blocks` (blocks this node had) or `staged` (blocks just fetched), and
//!    counting references from the manifests;
//! 3. [`IndexTxn::finish_rebuild`] drops `objects`, `blocks` and `staged`
//!    and renames the new tables into their place.
//!
//! With the applied position and membership set in the same transaction,
//! the index moves from its old content to the snapshot's at one commit:
//! nothing half-installed is ever visible or durable. Memory stays bounded
//! whatever the snapshot's size: everything goes through redb tables.

use redb::ReadableTable;

use crate::blocks::BlockLocation;
use crate::hex::hex;
use crate::manifest::Manifest;

use super::txn::IndexTxn;
use super::values::{self, BLOCK_ENTRY_BYTES};
use super::{
    decode_block, decode_staged, BlockEntry, Index, IndexError, BLOCKS, BLOCKS_NAME, BLOCKS_NEXT,
    OBJECTS, OBJECTS_NAME, OBJECTS_NEXT, STAGED, STAGED_NAME,
};

impl IndexTxn<'_> {
    /// Records a block fetched for a snapshot install (refs zero).
    pub fn stage_block(&mut self, location: &BlockLocation) -> Result<(), IndexError> {
        let value = values::encode_block_entry(
            STAGED_NAME,
            &BlockEntry {
                location: *location,
                refs: 0,
            },
        );
        let hash = location.hash;
        self.run("stage block", |index, txn| {
            let mut table = txn.open_table(STAGED).map_err(|e| index.redb_error(e))?;
            table
                .insert(&hash, &value)
                .map_err(|e| index.redb_error(e))?;
            Ok(())
        })
    }

    /// The location of a staged block, verified.
    pub fn staged_block(&mut self, hash: &[u8; 32]) -> Result<Option<BlockLocation>, IndexError> {
        self.run("get staged block", |index, txn| {
            let table = txn.open_table(STAGED).map_err(|e| index.redb_error(e))?;
            let value = table.get(hash).map_err(|e| index.redb_error(e))?;
            let entry = value.map(|v| decode_staged(hash, v.value())).transpose()?;
            Ok(entry.map(|e| e.location))
        })
    }

    /// Starts filling the tables that will replace `objects` and `blocks`.
    pub fn begin_rebuild(&mut self) -> Result<(), IndexError> {
        self.run("begin rebuild", |index, txn| {
            txn.delete_table(OBJECTS_NEXT)
                .map_err(|e| index.redb_error(e))?;
            txn.delete_table(BLOCKS_NEXT)
                .map_err(|e| index.redb_error(e))?;
            txn.open_table(OBJECTS_NEXT)
                .map_err(|e| index.redb_error(e))?;
            txn.open_table(BLOCKS_NEXT)
                .map_err(|e| index.redb_error(e))?;
            Ok(())
        })
    }

    /// Adds an object of the snapshot, taking one reference per block
    /// occurrence. A block found in neither `blocks` nor `staged` is
    /// [`IndexError::BlockMissing`].
    pub fn rebuild_object(&mut self, path: &str, manifest: &Manifest) -> Result<(), IndexError> {
        let value = values::encode_manifest(OBJECTS_NAME, path, manifest);
        self.run("rebuild object", |index, txn| {
            let mut objects = txn
                .open_table(OBJECTS_NEXT)
                .map_err(|e| index.redb_error(e))?;
            let old = objects
                .insert(path, value.as_slice())
                .map_err(|e| index.redb_error(e))?;
            if old.is_some() {
                return Err(IndexError::Corrupt {
                    table: OBJECTS_NAME,
                    key: path.to_string(),
                    reason: "the snapshot lists this object twice".to_string(),
                });
            }
            let mut next = txn
                .open_table(BLOCKS_NEXT)
                .map_err(|e| index.redb_error(e))?;
            for block in &manifest.blocks {
                let existing = next
                    .get(&block.hash)
                    .map_err(|e| index.redb_error(e))?
                    .map(|v| decode_block(&block.hash, v.value()))
                    .transpose()?;
                let entry = match existing {
                    Some(mut entry) => {
                        entry.refs = entry.refs.checked_add(1).ok_or(IndexError::RefCount {
                            hash: block.hash,
                            what: "overflow",
                        })?;
                        entry
                    }
                    None => BlockEntry {
                        location: known_location(index, txn, &block.hash, block.len)?,
                        refs: 1,
                    },
                };
                let value = values::encode_block_entry(BLOCKS_NAME, &entry);
                next.insert(&block.hash, &value)
                    .map_err(|e| index.redb_error(e))?;
            }
            Ok(())
        })
    }

    /// Adds a block of the snapshot that no object refers to (stored ahead
    /// of its manifest, or left by a delete): it stays known, refs zero.
    pub fn rebuild_unreferenced(&mut self, hash: &[u8; 32], len: u32) -> Result<(), IndexError> {
        self.run("rebuild block", |index, txn| {
            let mut next = txn
                .open_table(BLOCKS_NEXT)
                .map_err(|e| index.redb_error(e))?;
            if next.get(hash).map_err(|e| index.redb_error(e))?.is_some() {
                return Err(IndexError::Corrupt {
                    table: BLOCKS_NAME,
                    key: hex(hash),
                    reason: "the snapshot lists as unreferenced a block its objects refer to"
                        .to_string(),
                });
            }
            let entry = BlockEntry {
                location: known_location(index, txn, hash, len)?,
                refs: 0,
            };
            let value: [u8; BLOCK_ENTRY_BYTES] = values::encode_block_entry(BLOCKS_NAME, &entry);
            next.insert(hash, &value).map_err(|e| index.redb_error(e))?;
            Ok(())
        })
    }

    /// Replaces `objects` and `blocks` with the rebuilt tables and empties
    /// `staged`.
    pub fn finish_rebuild(&mut self) -> Result<(), IndexError> {
        self.run("finish rebuild", |index, txn| {
            txn.delete_table(OBJECTS).map_err(|e| index.redb_error(e))?;
            txn.delete_table(BLOCKS).map_err(|e| index.redb_error(e))?;
            txn.delete_table(STAGED).map_err(|e| index.redb_error(e))?;
            txn.rename_table(OBJECTS_NEXT, OBJECTS)
                .map_err(|e| index.redb_error(e))?;
            txn.rename_table(BLOCKS_NEXT, BLOCKS)
                .map_err(|e| index.redb_error(e))?;
            txn.open_table(STAGED).map_err(|e| index.redb_error(e))?;
            Ok(())
        })
    }
}

/// Where this node keeps block `hash`: in `blocks` (its old content) or in
/// `staged` (fetched for the install). Its length must be `len`.
fn known_location(
    index: &Index,
    txn: &redb::WriteTransaction,
    hash: &[u8; 32],
    len: u32,
) -> Result<BlockLocation, IndexError> {
    let blocks = txn.open_table(BLOCKS).map_err(|e| index.redb_error(e))?;
    let found = blocks.get(hash).map_err(|e| index.redb_error(e))?;
    let location = match found.map(|v| decode_block(hash, v.value())).transpose()? {
        Some(entry) => Some(entry.location),
        None => {
            let staged = txn.open_table(STAGED).map_err(|e| index.redb_error(e))?;
            let value = staged.get(hash).map_err(|e| index.redb_error(e))?;
            let entry = value.map(|v| decode_staged(hash, v.value())).transpose()?;
            entry.map(|e| e.location)
        }
    };
    let location = location.ok_or(IndexError::BlockMissing { hash: *hash })?;
    if location.len != len {
        return Err(IndexError::Corrupt {
            table: BLOCKS_NAME,
            key: hex(hash),
            reason: format!(
                "block is {} bytes here, {len} bytes in the snapshot",
                location.len
            ),
        });
    }
    Ok(location)
}
