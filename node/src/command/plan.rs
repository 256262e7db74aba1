//! Turning an object into the commands that store it: small objects travel
//! whole in one `PutObject` with their blocks inline; larger ones as
//! `PutBlocks` entries of bounded size, then a `PutObject` referring to
//! the blocks stored before it.

use std::collections::HashSet;

use bytes::Bytes;

use crate::manifest::{Manifest, ManifestBlock};

use super::{Block, Command, BLOCK_HEADER_BYTES, CHECK_BYTES, PREAMBLE_BYTES};

/// Bytes of a `PutBlocks` command with no blocks.
const PUT_BLOCKS_EMPTY_BYTES: usize = PREAMBLE_BYTES + 8 + CHECK_BYTES;

/// The commands that store one object, in the order they must be proposed.
#[derive(Debug, Clone)]
pub struct PutPlan {
    /// The manifest the object will have.
    pub manifest: Manifest,
    /// `PutBlocks` commands (possibly none), then one `PutObject`.
    pub commands: Vec<Command>,
}

/// Splits `data` into blocks of `block_bytes` (zero-copy slices), hashing
/// each block and the whole object once.
pub fn split_object(data: &Bytes, block_bytes: u32) -> (Manifest, Vec<Block>) {
    assert!(block_bytes > 0, "block size must be positive");
    let step = block_bytes as usize;
    let mut blocks = Vec::with_capacity(data.len().div_ceil(step));
    let mut start = 0;
    while start < data.len() {
        let end = (start + step).min(data.len());
        blocks.push(Block::new(data.slice(start..end)));
        start = end;
    }
    let manifest = Manifest {
        object_len: data.len() as u64,
        object_hash: *blake3::hash(data).as_bytes(),
        block_bytes,
        blocks: blocks
            .iter()
            .map(|b| ManifestBlock {
                hash: b.hash,
                len: b.data.len() as u32,
            })
            .collect(),
    };
    (manifest, blocks)
}

/// The commands that store `data` at `path`: each encodes to at most
/// `entry_bytes_max` bytes, except a final `PutObject` whose manifest alone
/// is larger (an object of millions of blocks). Blocks the object holds
/// twice are sent once.
pub fn plan_put(path: &str, data: Bytes, block_bytes: u32, entry_bytes_max: usize) -> PutPlan {
    assert!(
        PUT_BLOCKS_EMPTY_BYTES + BLOCK_HEADER_BYTES + block_bytes as usize <= entry_bytes_max,
        "an entry of {entry_bytes_max} bytes cannot hold a block of {block_bytes}"
    );
    let (manifest, blocks) = split_object(&data, block_bytes);
    let mut seen = HashSet::with_capacity(blocks.len());
    let unique: Vec<Block> = blocks.into_iter().filter(|b| seen.insert(b.hash)).collect();
    let whole = Command::PutObject {
        path: path.to_string(),
        manifest: manifest.clone(),
        inline_blocks: unique,
    };
    if whole.encoded_len() <= entry_bytes_max {
        return PutPlan {
            manifest,
            commands: vec![whole],
        };
    }
    let Command::PutObject { inline_blocks, .. } = whole else {
        unreachable!("built as a PutObject above");
    };
    let mut commands = chunk_blocks(inline_blocks, entry_bytes_max);
    commands.push(Command::PutObject {
        path: path.to_string(),
        manifest: manifest.clone(),
        inline_blocks: Vec::new(),
    });
    PutPlan { manifest, commands }
}

/// `PutBlocks` commands of at most `entry_bytes_max` bytes each.
fn chunk_blocks(blocks: Vec<Block>, entry_bytes_max: usize) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = PUT_BLOCKS_EMPTY_BYTES;
    for block in blocks {
        let block_bytes = BLOCK_HEADER_BYTES + block.data.len();
        if !current.is_empty() && current_bytes + block_bytes > entry_bytes_max {
            commands.push(Command::PutBlocks {
                blocks: std::mem::take(&mut current),
            });
            current_bytes = PUT_BLOCKS_EMPTY_BYTES;
        }
        current_bytes += block_bytes;
        current.push(block);
    }
    if !current.is_empty() {
        commands.push(Command::PutBlocks { blocks: current });
    }
    for command in &commands {
        assert!(command.encoded_len() <= entry_bytes_max);
    }
    commands
}
