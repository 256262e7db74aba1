//! The write transaction of the index. Changes become visible and durable
//! together, at `commit`; dropping the transaction discards them.

use redb::ReadableTable;

use crate::blocks::BlockLocation;
use crate::manifest::Manifest;

use super::shield::{drop_shielded, shielded};
use super::{
    decode_applied, decode_block, decode_membership, decode_object, values, Applied, BlockEntry,
    Durability, Index, IndexError, APPLIED, APPLIED_KEY, APPLIED_NAME, BLOCKS, BLOCKS_NAME,
    MEMBERSHIP_KEY, OBJECTS, OBJECTS_NAME,
};

/// One write transaction. Every value it reads is verified.
pub struct IndexTxn<'a> {
    index: &'a Index,
    /// `None` once committed, or once a redb panic made it unusable.
    txn: Option<redb::WriteTransaction>,
}

impl<'a> IndexTxn<'a> {
    pub(super) fn new(index: &'a Index, txn: redb::WriteTransaction) -> Self {
        IndexTxn {
            index,
            txn: Some(txn),
        }
    }

    /// Records `manifest` for `path`, returning the manifest it replaces.
    pub fn put_object(
        &mut self,
        path: &str,
        manifest: &Manifest,
    ) -> Result<Option<Manifest>, IndexError> {
        let value = values::encode_manifest(OBJECTS_NAME, path, manifest);
        self.run("put object", |index, txn| {
            let mut table = txn.open_table(OBJECTS).map_err(|e| index.redb_error(e))?;
            let old = table
                .insert(path, value.as_slice())
                .map_err(|e| index.redb_error(e))?;
            old.map(|v| decode_object(path, v.value())).transpose()
        })
    }

    /// Removes the object at `path`, returning its manifest if it existed.
    pub fn delete_object(&mut self, path: &str) -> Result<Option<Manifest>, IndexError> {
        self.run("delete object", |index, txn| {
            let mut table = txn.open_table(OBJECTS).map_err(|e| index.redb_error(e))?;
            let old = table.remove(path).map_err(|e| index.redb_error(e))?;
            old.map(|v| decode_object(path, v.value())).transpose()
        })
    }

    /// The manifest of `path` as this transaction sees it.
    pub fn get_object(&mut self, path: &str) -> Result<Option<Manifest>, IndexError> {
        self.run("get object", |index, txn| {
            let table = txn.open_table(OBJECTS).map_err(|e| index.redb_error(e))?;
            let value = table.get(path).map_err(|e| index.redb_error(e))?;
            value.map(|v| decode_object(path, v.value())).transpose()
        })
    }

    /// The entry of block `hash` as this transaction sees it.
    pub fn block_entry(&mut self, hash: &[u8; 32]) -> Result<Option<BlockEntry>, IndexError> {
        self.run("get block", |index, txn| {
            let table = txn.open_table(BLOCKS).map_err(|e| index.redb_error(e))?;
            let value = table.get(hash).map_err(|e| index.redb_error(e))?;
            value.map(|v| decode_block(hash, v.value())).transpose()
        })
    }

    /// Records a new block with one reference. Fails if the block is known.
    pub fn add_block(
        &mut self,
        hash: &[u8; 32],
        location: &BlockLocation,
    ) -> Result<(), IndexError> {
        self.add_block_with_refs(hash, location, 1)
    }

    /// Records a new block with `refs` references (zero for a block stored
    /// ahead of the manifest that will refer to it). Fails if it is known.
    pub fn add_block_with_refs(
        &mut self,
        hash: &[u8; 32],
        location: &BlockLocation,
        refs: u64,
    ) -> Result<(), IndexError> {
        assert_eq!(&location.hash, hash, "location of another block");
        if self.block_entry(hash)?.is_some() {
            return Err(IndexError::BlockExists { hash: *hash });
        }
        self.write_block(&BlockEntry {
            location: *location,
            refs,
        })
    }

    /// Points a known block at a new copy (after its old copy was found
    /// damaged), keeping its reference count.
    pub fn relocate_block(
        &mut self,
        hash: &[u8; 32],
        location: &BlockLocation,
    ) -> Result<(), IndexError> {
        assert_eq!(&location.hash, hash, "location of another block");
        let entry = self
            .block_entry(hash)?
            .ok_or(IndexError::BlockMissing { hash: *hash })?;
        self.write_block(&BlockEntry {
            location: *location,
            refs: entry.refs,
        })
    }

    /// Adds a reference to a known block; returns the new count.
    pub fn block_ref_inc(&mut self, hash: &[u8; 32]) -> Result<u64, IndexError> {
        let mut entry = self
            .block_entry(hash)?
            .ok_or(IndexError::BlockMissing { hash: *hash })?;
        entry.refs = entry.refs.checked_add(1).ok_or(IndexError::RefCount {
            hash: *hash,
            what: "overflow",
        })?;
        self.write_block(&entry)?;
        Ok(entry.refs)
    }

    /// Drops a reference to a known block; returns the references left. A
    /// block left with none stays recorded (dead) until space is reclaimed.
    pub fn block_ref_dec(&mut self, hash: &[u8; 32]) -> Result<u64, IndexError> {
        let mut entry = self
            .block_entry(hash)?
            .ok_or(IndexError::BlockMissing { hash: *hash })?;
        entry.refs = entry.refs.checked_sub(1).ok_or(IndexError::RefCount {
            hash: *hash,
            what: "fall below zero",
        })?;
        self.write_block(&entry)?;
        Ok(entry.refs)
    }

    /// Records the last journal entry whose effects this transaction holds.
    pub fn set_applied(&mut self, applied: Applied) -> Result<(), IndexError> {
        let value = values::encode_applied(APPLIED_NAME, APPLIED_KEY, &applied);
        self.run("set applied", |index, txn| {
            let mut table = txn.open_table(APPLIED).map_err(|e| index.redb_error(e))?;
            table
                .insert(APPLIED_KEY, value.as_slice())
                .map_err(|e| index.redb_error(e))?;
            Ok(())
        })
    }

    /// Records the last membership applied: opaque bytes (the state
    /// machine's encoding), kept beside the applied position so that both
    /// always describe the same point of the journal.
    pub fn set_membership(&mut self, membership: &[u8]) -> Result<(), IndexError> {
        let value = values::encode_membership(APPLIED_NAME, MEMBERSHIP_KEY, membership);
        self.run("set membership", |index, txn| {
            let mut table = txn.open_table(APPLIED).map_err(|e| index.redb_error(e))?;
            table
                .insert(MEMBERSHIP_KEY, value.as_slice())
                .map_err(|e| index.redb_error(e))?;
            Ok(())
        })
    }

    /// The membership as this transaction sees it.
    pub fn membership(&mut self) -> Result<Option<Vec<u8>>, IndexError> {
        self.run("get membership", |index, txn| {
            let table = txn.open_table(APPLIED).map_err(|e| index.redb_error(e))?;
            let value = table.get(MEMBERSHIP_KEY).map_err(|e| index.redb_error(e))?;
            value.map(|v| decode_membership(v.value())).transpose()
        })
    }

    /// Forgets the applied position and the membership (an install of a
    /// snapshot that covers no entry).
    pub fn clear_applied(&mut self) -> Result<(), IndexError> {
        self.run("clear applied", |index, txn| {
            let mut table = txn.open_table(APPLIED).map_err(|e| index.redb_error(e))?;
            table.remove(APPLIED_KEY).map_err(|e| index.redb_error(e))?;
            table
                .remove(MEMBERSHIP_KEY)
                .map_err(|e| index.redb_error(e))?;
            Ok(())
        })
    }

    /// The applied position as this transaction sees it.
    pub fn applied(&mut self) -> Result<Option<Applied>, IndexError> {
        self.run("get applied", |index, txn| {
            let table = txn.open_table(APPLIED).map_err(|e| index.redb_error(e))?;
            let value = table.get(APPLIED_KEY).map_err(|e| index.redb_error(e))?;
            value.map(|v| decode_applied(v.value())).transpose()
        })
    }

    /// Commits every change of this transaction at once. With
    /// [`Durability::Immediate`] they are durable before this returns. A
    /// failure poisons the index: the commit may or may not have landed.
    pub fn commit(mut self, durability: Durability) -> Result<(), IndexError> {
        let index = self.index;
        index.check_usable()?;
        let mut txn = self.txn.take().ok_or_else(|| poisoned(index))?;
        shielded(&index.file, &index.poison, "commit", move || {
            let level = match durability {
                Durability::Immediate => redb::Durability::Immediate,
                Durability::Eventual => redb::Durability::None,
            };
            txn.set_durability(level).map_err(|e| index.redb_error(e))?;
            txn.commit().map_err(|e| index.commit_failed(e))
        })
    }

    fn write_block(&mut self, entry: &BlockEntry) -> Result<(), IndexError> {
        let value = values::encode_block_entry(BLOCKS_NAME, entry);
        let hash = entry.location.hash;
        self.run("write block", |index, txn| {
            let mut table = txn.open_table(BLOCKS).map_err(|e| index.redb_error(e))?;
            table
                .insert(&hash, &value)
                .map_err(|e| index.redb_error(e))?;
            Ok(())
        })
    }

    /// Runs `f` on the open transaction unless the index is poisoned. After
    /// a redb panic the transaction is dropped (under the shield) for good.
    pub(super) fn run<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Index, &redb::WriteTransaction) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let index = self.index;
        index.check_usable()?;
        let txn = self.txn.as_ref().ok_or_else(|| poisoned(index))?;
        let result = shielded(&index.file, &index.poison, what, || f(index, txn));
        if index.poison.check(&index.file).is_err() {
            if let Some(txn) = self.txn.take() {
                drop_shielded(&index.file, txn);
            }
        }
        result
    }
}

impl Drop for IndexTxn<'_> {
    fn drop(&mut self) {
        // An uncommitted transaction is rolled back by redb's drop, which
        // writes to the file and so runs under the shield too.
        if let Some(txn) = self.txn.take() {
            drop_shielded(&self.index.file, txn);
        }
    }
}

fn poisoned(index: &Index) -> IndexError {
    index
        .poison
        .check(&index.file)
        .err()
        .unwrap_or(IndexError::Poisoned {
            file: index.file.clone(),
            reason: "the transaction was abandoned after a failure".to_string(),
        })
}
