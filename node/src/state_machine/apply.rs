//! Applying one command to the block store and an open index transaction.
//!
//! Every outcome depends only on the command and the replicated state (the
//! index content, identical on every replica at the same log position), so
//! every replica decides the same. A refused command changes nothing: each
//! is checked whole before its first change. Blocks are written to packs
//! without a sync; the caller syncs them before any immediate index commit.

use std::collections::{HashMap, HashSet};

use crate::blocks::BlockStore;
use crate::command::{
    Block, Command, Outcome, RejectKind, Rejection, Response, BLOCK_BYTES_MAX, OBJECT_BYTES_MAX,
};
use crate::hex::hex;
use crate::index::IndexTxn;
use crate::manifest::Manifest;
use crate::object_path::check_object_path;

use super::StateMachineError;

/// Applies commands within one index transaction.
pub(crate) struct Applier<'a, 'i> {
    pub blocks: &'a mut BlockStore,
    pub txn: &'a mut IndexTxn<'i>,
    /// Blocks written within this transaction: known intact.
    written: HashSet<[u8; 32]>,
}

impl<'a, 'i> Applier<'a, 'i> {
    pub fn new(blocks: &'a mut BlockStore, txn: &'a mut IndexTxn<'i>) -> Self {
        Applier {
            blocks,
            txn,
            written: HashSet::new(),
        }
    }

    /// Applies a command (each element of a batch on its own).
    pub fn apply(&mut self, command: &Command) -> Result<Response, StateMachineError> {
        match command {
            Command::Batch(elements) => {
                let mut outcomes = Vec::with_capacity(elements.len());
                for element in elements {
                    outcomes.push(self.element(element)?);
                }
                Ok(Response::Batch(outcomes))
            }
            single => Ok(Response::Single(self.element(single)?)),
        }
    }

    fn element(&mut self, command: &Command) -> Result<Outcome, StateMachineError> {
        match command {
            Command::PutObject {
                path,
                manifest,
                inline_blocks,
            } => self.put_object(path, manifest, inline_blocks),
            Command::PutBlocks { blocks } => self.put_blocks(blocks),
            Command::Delete { path } => self.delete(path),
            Command::Batch(_) => unreachable!("decode refuses a batch inside a batch"),
        }
    }

    fn put_blocks(&mut self, blocks: &[Block]) -> Result<Outcome, StateMachineError> {
        if let Some(big) = blocks
            .iter()
            .find(|b| b.data.len() > BLOCK_BYTES_MAX as usize)
        {
            return Ok(rejected(
                RejectKind::TooLarge,
                format!(
                    "block {} of {} bytes exceeds the maximum of {BLOCK_BYTES_MAX}",
                    hex(&big.hash),
                    big.data.len()
                ),
            ));
        }
        let (mut new, mut known) = (0u32, 0u32);
        for block in blocks {
            if self.store_block(block)? {
                new += 1;
            } else {
                known += 1;
            }
        }
        Ok(Outcome::Blocks { new, known })
    }

    fn put_object(
        &mut self,
        path: &str,
        manifest: &Manifest,
        inline: &[Block],
    ) -> Result<Outcome, StateMachineError> {
        if let Some(rejection) = self.check_put(path, manifest, inline)? {
            return Ok(Outcome::Rejected(rejection));
        }
        for block in inline {
            self.store_block(block)?;
        }
        // New references before old ones are dropped, so a block shared by
        // both versions never falls to zero on the way.
        for block in &manifest.blocks {
            self.txn.block_ref_inc(&block.hash)?;
        }
        let old = self.txn.put_object(path, manifest)?;
        if let Some(old) = &old {
            for block in &old.blocks {
                self.txn.block_ref_dec(&block.hash)?;
            }
        }
        Ok(Outcome::Put {
            object_len: manifest.object_len,
            object_hash: manifest.object_hash,
            replaced: old.is_some(),
        })
    }

    /// Why a put must be refused, if it must; changes nothing.
    fn check_put(
        &mut self,
        path: &str,
        manifest: &Manifest,
        inline: &[Block],
    ) -> Result<Option<Rejection>, StateMachineError> {
        if let Err(problem) = check_object_path(path) {
            let reason = format!("invalid object path {path:?}: {problem}");
            return Ok(Some(rejection(RejectKind::BadPath, reason)));
        }
        if manifest.object_len > OBJECT_BYTES_MAX || manifest.block_bytes > BLOCK_BYTES_MAX {
            let reason = format!(
                "object of {} bytes in blocks of {} exceeds the limits ({OBJECT_BYTES_MAX} bytes, blocks of {BLOCK_BYTES_MAX})",
                manifest.object_len, manifest.block_bytes
            );
            return Ok(Some(rejection(RejectKind::TooLarge, reason)));
        }
        let wanted: HashMap<[u8; 32], u32> =
            manifest.blocks.iter().map(|b| (b.hash, b.len)).collect();
        for block in inline {
            if wanted.get(&block.hash) != Some(&(block.data.len() as u32)) {
                let reason = format!(
                    "inline block {} of {} bytes is not in the manifest of {path:?}",
                    hex(&block.hash),
                    block.data.len()
                );
                return Ok(Some(rejection(RejectKind::InlineMismatch, reason)));
            }
        }
        let carried: HashSet<[u8; 32]> = inline.iter().map(|b| b.hash).collect();
        let mut missing = Vec::new();
        let mut checked = HashSet::new();
        for hash in manifest.blocks.iter().map(|b| b.hash) {
            if carried.contains(&hash) || !checked.insert(hash) {
                continue;
            }
            if self.txn.block_entry(&hash)?.is_none() {
                missing.push(hash);
            }
        }
        if let Some(first) = missing.first() {
            let reason = format!(
                "{} blocks of {path:?} are neither inline nor stored (first: {})",
                missing.len(),
                hex(first)
            );
            return Ok(Some(rejection(RejectKind::MissingBlocks, reason)));
        }
        Ok(None)
    }

    fn delete(&mut self, path: &str) -> Result<Outcome, StateMachineError> {
        if let Err(problem) = check_object_path(path) {
            let reason = format!("invalid object path {path:?}: {problem}");
            return Ok(rejected(RejectKind::BadPath, reason));
        }
        let Some(old) = self.txn.delete_object(path)? else {
            return Ok(Outcome::NotFound);
        };
        for block in &old.blocks {
            self.txn.block_ref_dec(&block.hash)?;
        }
        Ok(Outcome::Deleted {
            object_len: old.object_len,
        })
    }

    /// Makes sure an intact copy of `block` is stored and known to the
    /// index (with no new reference). Returns whether it was new.
    fn store_block(&mut self, block: &Block) -> Result<bool, StateMachineError> {
        let Some(entry) = self.txn.block_entry(&block.hash)? else {
            let location = self.blocks.put(block.hash, &block.data)?;
            self.txn.add_block_with_refs(&block.hash, &location, 0)?;
            self.written.insert(block.hash);
            return Ok(true);
        };
        // We hold the data: if the stored copy rotted, or cannot be read,
        // this is the moment to store a good one (same block, same refs).
        if !self.written.contains(&block.hash) {
            if let Err(error) = self.blocks.read(&entry.location) {
                tracing::warn!(%error, "stored copy of a block is unreadable; writing a fresh copy");
                let location = self.blocks.put(block.hash, &block.data)?;
                self.txn.relocate_block(&block.hash, &location)?;
                self.written.insert(block.hash);
            }
        }
        Ok(false)
    }
}

fn rejection(kind: RejectKind, reason: String) -> Rejection {
    Rejection { kind, reason }
}

fn rejected(kind: RejectKind, reason: String) -> Outcome {
    Outcome::Rejected(rejection(kind, reason))
}
