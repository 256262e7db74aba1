//! Decoding of commands (layout in `mod.rs`), in two steps: first the
//! framing is walked, every length bounded by the bytes that remain, and the
//! check computed over everything but block data; only once the check
//! matches are paths, manifests and block data decoded and verified.

use std::ops::Range;

use bytes::Bytes;

use crate::manifest::{Manifest, ManifestError};

use super::{
    Block, Command, BLOCK_HEADER_BYTES, CHECK_BYTES, COMMAND_MAGIC, COMMAND_VERSION, KIND_BATCH,
    KIND_DELETE, KIND_PUT_BLOCKS, KIND_PUT_OBJECT, PREAMBLE_BYTES,
};

/// The smallest encoded body: a Delete of an empty path.
const BODY_BYTES_MIN: usize = 8;

/// Why bytes are not a valid command. Offsets are within the command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandDecodeError {
    #[error("command of {len} bytes is too short to hold its magic, version, body and check")]
    TooShort { len: u64 },
    #[error("bad command magic at offset 0")]
    BadMagic,
    #[error("command version {version} at offset 4 is not supported (expected {COMMAND_VERSION})")]
    UnsupportedVersion { version: u32 },
    #[error("command kind {kind} at offset {offset} is unknown")]
    UnknownKind { offset: u64, kind: u32 },
    #[error("a batch at offset {offset} inside a batch")]
    NestedBatch { offset: u64 },
    #[error("field at offset {offset} needs {needed} bytes, only {left} remain")]
    Truncated { offset: u64, needed: u64, left: u64 },
    #[error("count {count} at offset {offset} cannot fit in the {left} bytes that remain")]
    CountTooLarge { offset: u64, count: u64, left: u64 },
    #[error("{extra} unexpected bytes after the command body at offset {offset}")]
    TrailingBytes { offset: u64, extra: u64 },
    #[error("command check mismatch: damaged in transit or on disk")]
    CheckMismatch,
    #[error("path at offset {offset} is not UTF-8")]
    PathNotUtf8 { offset: u64 },
    #[error("manifest at offset {offset} is invalid: {source}")]
    Manifest {
        offset: u64,
        #[source]
        source: ManifestError,
    },
    #[error("block data at offset {offset} does not hash to its address {hash}")]
    BlockHashMismatch { offset: u64, hash: String },
}

/// A command whose framing was walked but whose contents are not yet
/// trusted: ranges into the input.
enum Raw {
    PutObject {
        path: Range<usize>,
        manifest: Range<usize>,
        blocks: Vec<RawBlock>,
    },
    PutBlocks(Vec<RawBlock>),
    Delete(Range<usize>),
    Batch(Vec<Raw>),
}

struct RawBlock {
    hash: Range<usize>,
    data: Range<usize>,
}

/// Walks the framing, hashing every byte it reads except block data.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    check: blake3::Hasher,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.end - self.pos
    }

    fn take(&mut self, len: usize) -> Result<Range<usize>, CommandDecodeError> {
        if len > self.left() {
            return Err(CommandDecodeError::Truncated {
                offset: self.pos as u64,
                needed: len as u64,
                left: self.left() as u64,
            });
        }
        let range = self.pos..self.pos + len;
        self.pos += len;
        Ok(range)
    }

    fn meta(&mut self, len: usize) -> Result<Range<usize>, CommandDecodeError> {
        let range = self.take(len)?;
        self.check.update(&self.bytes[range.clone()]);
        Ok(range)
    }

    fn u32(&mut self) -> Result<u32, CommandDecodeError> {
        let range = self.meta(4)?;
        let mut word = [0u8; 4];
        word.copy_from_slice(&self.bytes[range]);
        Ok(u32::from_le_bytes(word))
    }

    /// A count of items of at least `item_bytes_min` bytes each.
    fn count(&mut self, item_bytes_min: usize) -> Result<usize, CommandDecodeError> {
        let offset = self.pos as u64;
        let count = self.u32()? as usize;
        if count > self.left() / item_bytes_min {
            return Err(CommandDecodeError::CountTooLarge {
                offset,
                count: count as u64,
                left: self.left() as u64,
            });
        }
        Ok(count)
    }

    fn body(&mut self, top_level: bool) -> Result<Raw, CommandDecodeError> {
        let offset = self.pos as u64;
        match self.u32()? {
            KIND_PUT_OBJECT => {
                let path_len = self.u32()? as usize;
                let manifest_len = self.u32()? as usize;
                let count = self.count(BLOCK_HEADER_BYTES)?;
                let path = self.meta(path_len)?;
                let manifest = self.meta(manifest_len)?;
                let blocks = self.blocks(count)?;
                Ok(Raw::PutObject {
                    path,
                    manifest,
                    blocks,
                })
            }
            KIND_PUT_BLOCKS => {
                let count = self.count(BLOCK_HEADER_BYTES)?;
                Ok(Raw::PutBlocks(self.blocks(count)?))
            }
            KIND_DELETE => {
                let path_len = self.u32()? as usize;
                Ok(Raw::Delete(self.meta(path_len)?))
            }
            KIND_BATCH if top_level => {
                let count = self.count(BODY_BYTES_MIN)?;
                let mut elements = Vec::with_capacity(count);
                for _ in 0..count {
                    elements.push(self.body(false)?);
                }
                Ok(Raw::Batch(elements))
            }
            KIND_BATCH => Err(CommandDecodeError::NestedBatch { offset }),
            kind => Err(CommandDecodeError::UnknownKind { offset, kind }),
        }
    }

    fn blocks(&mut self, count: usize) -> Result<Vec<RawBlock>, CommandDecodeError> {
        let mut blocks = Vec::with_capacity(count);
        for _ in 0..count {
            let hash = self.meta(32)?;
            let len = self.u32()? as usize;
            let data = self.take(len)?;
            blocks.push(RawBlock { hash, data });
        }
        Ok(blocks)
    }
}

pub(super) fn decode(bytes: &Bytes) -> Result<Command, CommandDecodeError> {
    if bytes.len() < PREAMBLE_BYTES + BODY_BYTES_MIN + CHECK_BYTES {
        return Err(CommandDecodeError::TooShort {
            len: bytes.len() as u64,
        });
    }
    let end = bytes.len() - CHECK_BYTES;
    let mut reader = Reader {
        bytes,
        pos: 0,
        end,
        check: blake3::Hasher::new(),
    };
    let magic = reader.meta(4)?;
    let version = reader.u32()?;
    let raw = reader.body(true);
    // Where the framing broke or ended early, which bytes are block data
    // is unknown: the rest is checked as if none were. Damage still fails
    // the check; a well-checked command with broken framing (an encoder
    // bug) gets the precise error below.
    reader.check.update(&bytes[reader.pos..end]);
    // The check decides first: damaged bytes are reported as damage, not as
    // whatever field they happened to break.
    if reader.check.finalize().as_bytes()[..] != bytes[end..] {
        return Err(CommandDecodeError::CheckMismatch);
    }
    let raw = raw?;
    if bytes[magic] != COMMAND_MAGIC {
        return Err(CommandDecodeError::BadMagic);
    }
    if version != COMMAND_VERSION {
        return Err(CommandDecodeError::UnsupportedVersion { version });
    }
    if reader.pos != end {
        return Err(CommandDecodeError::TrailingBytes {
            offset: reader.pos as u64,
            extra: (end - reader.pos) as u64,
        });
    }
    build(bytes, raw)
}

fn build(bytes: &Bytes, raw: Raw) -> Result<Command, CommandDecodeError> {
    Ok(match raw {
        Raw::PutObject {
            path,
            manifest,
            blocks,
        } => Command::PutObject {
            path: path_at(bytes, path)?,
            manifest: Manifest::decode(&bytes[manifest.clone()]).map_err(|source| {
                CommandDecodeError::Manifest {
                    offset: manifest.start as u64,
                    source,
                }
            })?,
            inline_blocks: build_blocks(bytes, blocks)?,
        },
        Raw::PutBlocks(blocks) => Command::PutBlocks {
            blocks: build_blocks(bytes, blocks)?,
        },
        Raw::Delete(path) => Command::Delete {
            path: path_at(bytes, path)?,
        },
        Raw::Batch(elements) => Command::Batch(
            elements
                .into_iter()
                .map(|raw| build(bytes, raw))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn path_at(bytes: &Bytes, range: Range<usize>) -> Result<String, CommandDecodeError> {
    let offset = range.start as u64;
    std::str::from_utf8(&bytes[range])
        .map(str::to_string)
        .map_err(|_| CommandDecodeError::PathNotUtf8 { offset })
}

fn build_blocks(bytes: &Bytes, raw: Vec<RawBlock>) -> Result<Vec<Block>, CommandDecodeError> {
    raw.into_iter()
        .map(|block| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&bytes[block.hash]);
            // Shares the entry's buffer: no copy of the data.
            let data = bytes.slice(block.data.clone());
            if blake3::hash(&data).as_bytes() != &hash {
                return Err(CommandDecodeError::BlockHashMismatch {
                    offset: block.data.start as u64,
                    hash: crate::hex::hex(&hash),
                });
            }
            Ok(Block { hash, data })
        })
        .collect()
}
