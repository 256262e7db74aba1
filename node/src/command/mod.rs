//! The commands the replicated state machine applies, and its answers: the
//! bytes inside an `AppCommand` and an `AppResponse`. Raft carries them as
//! opaque bytes; this module alone gives them meaning.
//!
//! # Command layout
//!
//! ```text
//! offset    size  field
//!      0       4  magic           b"FCMD"
//!      4       4  version u32     COMMAND_VERSION (1)
//!      8       …  body            one command, below
//! len-32      32  check           BLAKE3 of every byte before it except the
//!                                 data bytes of blocks (each block's data is
//!                                 covered by its own hash, checked on decode)
//!
//! body  := kind u32, then by kind:
//!   1 PutObject   path_len u32, manifest_len u32, block_count u32,
//!                 path (UTF-8), manifest (the manifest encoding, which has
//!                 its own checksum), block_count × block (inline blocks)
//!   2 PutBlocks   block_count u32, block_count × block
//!   3 Delete      path_len u32, path (UTF-8)
//!   4 Batch       count u32, count × body; a Batch never holds a Batch
//! block := hash [32] (BLAKE3 of data), data_len u32, data
//! ```
//!
//! Integers are little-endian. The journal checksums each entry on disk, but
//! nothing checksums it on the wire between leader and followers: the check
//! here covers the command end to end, from the leader that encoded it to
//! every replica that applies it, without hashing block data twice.
//!
//! Decode never panics and never allocates more than the input justifies:
//! every count and length is bounded by the bytes that remain. It verifies
//! the check before it decodes a path or a manifest, and every block's data
//! against its hash. A committed command that does not decode is damage on
//! this replica (or a bug), never a reason to skip the entry: the state
//! machine stops rather than diverge from the other replicas.
//!
//! What a command asks may still be refused when applied (a bad path, blocks
//! this replica does not hold): that is a [`Rejection`] in the response, the
//! same on every replica, because it depends only on the replicated state.

mod decode;
mod encode;
mod plan;
mod response;

use bytes::Bytes;

use crate::manifest::Manifest;

pub use decode::CommandDecodeError;
pub use plan::{plan_put, split_object, PutPlan};
pub use response::{
    Outcome, RejectKind, Rejection, Response, ResponseDecodeError, RESPONSE_VERSION,
};

/// Version of the command encoding.
pub const COMMAND_VERSION: u32 = 1;
pub(crate) const COMMAND_MAGIC: [u8; 4] = *b"FCMD";
/// Bytes of the check at the end of a command.
pub(crate) const CHECK_BYTES: usize = 32;
/// Bytes of magic and version.
pub(crate) const PREAMBLE_BYTES: usize = 8;
/// Bytes of a block's hash and length, before its data.
pub(crate) const BLOCK_HEADER_BYTES: usize = 32 + 4;

pub(crate) const KIND_PUT_OBJECT: u32 = 1;
pub(crate) const KIND_PUT_BLOCKS: u32 = 2;
pub(crate) const KIND_DELETE: u32 = 3;
pub(crate) const KIND_BATCH: u32 = 4;

/// The size of the blocks objects are split into.
pub const BLOCK_BYTES: u32 = 1 << 20;
/// The largest block a command may store. Every replica applies the same
/// limit, so a block is refused everywhere or nowhere.
pub const BLOCK_BYTES_MAX: u32 = BLOCK_BYTES;
/// The largest object a command may store.
pub const OBJECT_BYTES_MAX: u64 = 1 << 30;
/// The most bytes of one encoded command (one journal entry). A larger
/// object travels as several `PutBlocks` and a final `PutObject`.
pub const ENTRY_BYTES_MAX: usize = 4 << 20;

const _: () = assert!(BLOCK_BYTES <= BLOCK_BYTES_MAX);
const _: () = assert!((BLOCK_BYTES_MAX as usize) + 4096 < ENTRY_BYTES_MAX);

/// A block of data with its BLAKE3, which is its address.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    pub hash: [u8; 32],
    pub data: Bytes,
}

impl Block {
    /// A block of `data`, hashing it.
    pub fn new(data: Bytes) -> Block {
        Block {
            hash: *blake3::hash(&data).as_bytes(),
            data,
        }
    }
}

impl std::fmt::Debug for Block {
    // Blocks are up to a megabyte of alert data: show the address and size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Block({}, {} bytes)",
            crate::hex::Hex(&self.hash),
            self.data.len()
        )
    }
}

/// One command of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stores `manifest` at `path`, replacing any object there. Its blocks
    /// are the `inline_blocks` (small objects travel whole in one entry) or
    /// were stored by earlier `PutBlocks`; an object whose blocks are
    /// neither is refused, never stored partially.
    PutObject {
        path: String,
        manifest: Manifest,
        inline_blocks: Vec<Block>,
    },
    /// Stores blocks ahead of the `PutObject` of a large object.
    PutBlocks { blocks: Vec<Block> },
    /// Removes the object at `path`.
    Delete { path: String },
    /// Several commands in one entry, applied in order, each on its own.
    Batch(Vec<Command>),
}

impl Command {
    /// Bytes of this command once encoded.
    pub fn encoded_len(&self) -> usize {
        PREAMBLE_BYTES + body_len(self) + CHECK_BYTES
    }

    /// Encodes the command. Panics on a command no correct caller builds (a
    /// batch inside a batch, a length beyond u32).
    pub fn encode(&self) -> Bytes {
        encode::encode(self)
    }

    /// Decodes and verifies a command; see the module docs.
    pub fn decode(bytes: &Bytes) -> Result<Command, CommandDecodeError> {
        decode::decode(bytes)
    }

    /// Commands this one stands for: the elements of a batch, or itself.
    pub fn elements(&self) -> &[Command] {
        match self {
            Command::Batch(commands) => commands,
            other => std::slice::from_ref(other),
        }
    }
}

pub(crate) fn body_len(command: &Command) -> usize {
    let blocks_len = |blocks: &[Block]| -> usize {
        blocks
            .iter()
            .map(|b| BLOCK_HEADER_BYTES + b.data.len())
            .sum()
    };
    4 + match command {
        Command::PutObject {
            path,
            manifest,
            inline_blocks,
        } => 12 + path.len() + manifest.encoded_len() + blocks_len(inline_blocks),
        Command::PutBlocks { blocks } => 4 + blocks_len(blocks),
        Command::Delete { path } => 4 + path.len(),
        Command::Batch(commands) => 4 + commands.iter().map(body_len).sum::<usize>(),
    }
}
