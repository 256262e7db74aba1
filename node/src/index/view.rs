//! Reads of the index, from one redb read transaction.
//!
//! An [`IndexView`] sees the index as it was when the view was taken,
//! whatever commits follow (redb is MVCC): a reader can fetch a manifest and
//! then its blocks' locations without a writer changing the index between
//! the two, and a snapshot can be written from a consistent state while the
//! state machine keeps applying. The `Index` read methods use the same
//! functions, each in a read transaction of its own.

use std::ops::Bound;
use std::sync::Arc;

use redb::ReadTransaction;

use crate::manifest::Manifest;

use super::shield::shielded;
use super::{
    decode_applied, decode_block, decode_membership, decode_object, decode_staged, Applied,
    BlockEntry, Index, IndexError, APPLIED, APPLIED_KEY, BLOCKS, LIST_LIMIT_MAX, MEMBERSHIP_KEY,
    OBJECTS, STAGED,
};
use crate::blocks::BlockLocation;

/// A consistent read-only view of the index. Holds the index open.
pub struct IndexView {
    index: Arc<Index>,
    txn: ReadTransaction,
}

impl std::fmt::Debug for IndexView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexView")
            .field("file", &self.index.file)
            .finish_non_exhaustive()
    }
}

impl IndexView {
    pub(super) fn new(index: Arc<Index>, txn: ReadTransaction) -> Self {
        IndexView { index, txn }
    }

    /// The manifest of the object at `path`, verified.
    pub fn get_object(&self, path: &str) -> Result<Option<Manifest>, IndexError> {
        self.run("get object", |index, txn| read_object(index, txn, path))
    }

    /// Up to `limit` objects (at most [`LIST_LIMIT_MAX`]) whose path starts
    /// with `prefix`, in path order, after `start_after` if given.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Manifest)>, IndexError> {
        self.run("list", |index, txn| {
            read_list(index, txn, prefix, start_after, limit)
        })
    }

    /// Where block `hash` lives and its reference count, verified.
    pub fn block_location(&self, hash: &[u8; 32]) -> Result<Option<BlockEntry>, IndexError> {
        self.run("get block", |index, txn| read_block(index, txn, hash))
    }

    /// Up to `limit` block entries (at most [`LIST_LIMIT_MAX`]) in hash
    /// order, after `after` if given, whatever their reference counts.
    pub fn blocks_after(
        &self,
        after: Option<&[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<BlockEntry>, IndexError> {
        self.run("list blocks", |index, txn| {
            read_blocks_after(index, txn, after, limit)
        })
    }

    /// The last journal entry applied, if any was recorded.
    pub fn applied(&self) -> Result<Option<Applied>, IndexError> {
        self.run("get applied", read_applied)
    }

    /// Up to `limit` objects (at most [`LIST_LIMIT_MAX`]) in path order,
    /// after `after` if given, each value verified on its own: a damaged
    /// value comes back as its error in its place, so a checker (fsck) can
    /// report it and go on past it. Damage to the tree itself still ends
    /// the call with an error.
    pub fn check_objects_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CheckedObject>, IndexError> {
        self.run("check objects", |index, txn| {
            check_objects(index, txn, after, limit)
        })
    }

    /// Up to `limit` entries (at most [`LIST_LIMIT_MAX`]) of the `blocks`
    /// or `staged` table in hash order, after `after` if given, each value
    /// verified on its own (see [`Self::check_objects_after`]).
    pub fn check_block_entries_after(
        &self,
        table: BlockTable,
        after: Option<&[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<CheckedBlockEntry>, IndexError> {
        self.run("check block entries", |index, txn| {
            check_block_entries(index, txn, table, after, limit)
        })
    }

    /// The last membership applied (opaque bytes).
    pub fn membership(&self) -> Result<Option<Vec<u8>>, IndexError> {
        self.run("get membership", read_membership)
    }

    fn run<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Index, &ReadTransaction) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let index = &*self.index;
        index.check_usable()?;
        shielded(&index.file, &index.poison, what, || f(index, &self.txn))
    }
}

pub(super) fn read_object(
    index: &Index,
    txn: &ReadTransaction,
    path: &str,
) -> Result<Option<Manifest>, IndexError> {
    let table = txn.open_table(OBJECTS).map_err(|e| index.redb_error(e))?;
    let value = table.get(path).map_err(|e| index.redb_error(e))?;
    value.map(|v| decode_object(path, v.value())).transpose()
}

pub(super) fn read_list(
    index: &Index,
    txn: &ReadTransaction,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Manifest)>, IndexError> {
    let limit = limit.min(LIST_LIMIT_MAX);
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let table = txn.open_table(OBJECTS).map_err(|e| index.redb_error(e))?;
    let range = table
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(|e| index.redb_error(e))?;
    let mut out = Vec::new();
    for item in range {
        if out.len() >= limit {
            break;
        }
        let (key, value) = item.map_err(|e| index.redb_error(e))?;
        let path = key.value();
        if !path.starts_with(prefix) {
            break;
        }
        out.push((path.to_string(), decode_object(path, value.value())?));
    }
    Ok(out)
}

pub(super) fn read_block(
    index: &Index,
    txn: &ReadTransaction,
    hash: &[u8; 32],
) -> Result<Option<BlockEntry>, IndexError> {
    let table = txn.open_table(BLOCKS).map_err(|e| index.redb_error(e))?;
    let value = table.get(hash).map_err(|e| index.redb_error(e))?;
    value.map(|v| decode_block(hash, v.value())).transpose()
}

fn read_blocks_after(
    index: &Index,
    txn: &ReadTransaction,
    after: Option<&[u8; 32]>,
    limit: usize,
) -> Result<Vec<BlockEntry>, IndexError> {
    let limit = limit.min(LIST_LIMIT_MAX);
    let lower = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Unbounded,
    };
    let table = txn.open_table(BLOCKS).map_err(|e| index.redb_error(e))?;
    let range = table
        .range::<&[u8; 32]>((lower, Bound::Unbounded))
        .map_err(|e| index.redb_error(e))?;
    let mut out = Vec::new();
    for item in range {
        if out.len() >= limit {
            break;
        }
        let (key, value) = item.map_err(|e| index.redb_error(e))?;
        out.push(decode_block(key.value(), value.value())?);
    }
    Ok(out)
}

/// An object key and its value, verified on its own.
pub type CheckedObject = (String, Result<Manifest, IndexError>);
/// A block key and its entry, verified on its own.
pub type CheckedBlockEntry = ([u8; 32], Result<BlockEntry, IndexError>);

/// The two tables of block entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTable {
    /// Blocks the index knows (`blocks`).
    Blocks,
    /// Blocks fetched for a snapshot install not yet finished (`staged`).
    Staged,
}

fn check_objects(
    index: &Index,
    txn: &ReadTransaction,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<CheckedObject>, IndexError> {
    let lower = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Unbounded,
    };
    let table = txn.open_table(OBJECTS).map_err(|e| index.redb_error(e))?;
    let range = table
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(|e| index.redb_error(e))?;
    let mut out = Vec::new();
    for item in range.take(limit.min(LIST_LIMIT_MAX)) {
        let (key, value) = item.map_err(|e| index.redb_error(e))?;
        let path = key.value();
        out.push((path.to_string(), decode_object(path, value.value())));
    }
    Ok(out)
}

fn check_block_entries(
    index: &Index,
    txn: &ReadTransaction,
    which: BlockTable,
    after: Option<&[u8; 32]>,
    limit: usize,
) -> Result<Vec<CheckedBlockEntry>, IndexError> {
    let lower = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Unbounded,
    };
    let definition = match which {
        BlockTable::Blocks => BLOCKS,
        BlockTable::Staged => STAGED,
    };
    let table = txn
        .open_table(definition)
        .map_err(|e| index.redb_error(e))?;
    let range = table
        .range::<&[u8; 32]>((lower, Bound::Unbounded))
        .map_err(|e| index.redb_error(e))?;
    let mut out = Vec::new();
    for item in range.take(limit.min(LIST_LIMIT_MAX)) {
        let (key, value) = item.map_err(|e| index.redb_error(e))?;
        let hash = *key.value();
        let entry = match which {
            BlockTable::Blocks => decode_block(&hash, value.value()),
            BlockTable::Staged => decode_staged(&hash, value.value()),
        };
        out.push((hash, entry));
    }
    Ok(out)
}

pub(super) fn read_applied(
    index: &Index,
    txn: &ReadTransaction,
) -> Result<Option<Applied>, IndexError> {
    let table = txn.open_table(APPLIED).map_err(|e| index.redb_error(e))?;
    let value = table.get(APPLIED_KEY).map_err(|e| index.redb_error(e))?;
    value.map(|v| decode_applied(v.value())).transpose()
}

pub(super) fn read_membership(
    index: &Index,
    txn: &ReadTransaction,
) -> Result<Option<Vec<u8>>, IndexError> {
    let table = txn.open_table(APPLIED).map_err(|e| index.redb_error(e))?;
    let value = table.get(MEMBERSHIP_KEY).map_err(|e| index.redb_error(e))?;
    value.map(|v| decode_membership(v.value())).transpose()
}

pub(super) fn read_staged(
    index: &Index,
    txn: &ReadTransaction,
    hash: &[u8; 32],
) -> Result<Option<BlockLocation>, IndexError> {
    let table = txn.open_table(STAGED).map_err(|e| index.redb_error(e))?;
    let value = table.get(hash).map_err(|e| index.redb_error(e))?;
    let entry = value.map(|v| decode_staged(hash, v.value())).transpose()?;
    Ok(entry.map(|e| e.location))
}
