//! Put: one object streamed in chunks, split into blocks as it arrives.
//!
//! Each full block of [`BLOCK_BYTES`] is hashed once (its BLAKE3 is its
//! address) while the whole object's BLAKE3 is computed alongside. An
//! object of at most [`INLINE_OBJECT_BYTES_MAX`] is proposed as one
//! `PutObject` carrying its blocks (through the batcher, so concurrent small
//! puts share entries). A larger one is proposed as `PutBlocks` entries of at
//! most the entry ceiling (`ENTRY_BYTES_MAX`) while the upload goes on, then a
//! `PutObject` that only references them. The size and the expected BLAKE3
//! are checked before the `PutObject` is proposed: a refused upload stores
//! no object (blocks a large one already committed are unreferenced dead
//! space, like the blocks of a replaced object).
//!
//! A retried upload (after a leader change) proposes the same blocks and
//! the same manifest again: blocks deduplicate by hash and the same
//! manifest at the same path applies as a no-op, so nothing is duplicated.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use finkfs_raft::types::TypeConfig;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use openraft::storage::RaftStateMachine;
use tonic::{Status, Streaming};

use super::commands::{expect_blocks, expect_put};
use super::proto::{put_request, PutHeader, PutReply, PutRequest};
use super::server::Shared;
use super::{BLOCK_BYTES, INLINE_OBJECT_BYTES_MAX, PUT_BLOCKS_IN_FLIGHT_MAX, STREAM_IDLE_TIMEOUT};
use crate::command::{
    Block, Command, Outcome, BLOCK_HEADER_BYTES, CHECK_BYTES, ENTRY_BYTES_MAX, PREAMBLE_BYTES,
};
use crate::hex::hex;
use crate::manifest::{Manifest, ManifestBlock};
use crate::object_path::check_object_path;

/// Blocks smaller than this are hashed on the calling task; larger work
/// moves to a blocking thread so one big upload does not stall others.
const HASH_INLINE_BYTES_MAX: usize = 256 << 10;

/// Bytes of a `PutBlocks` command holding no block: preamble, kind,
/// count, check.
const PUT_BLOCKS_EMPTY_BYTES: usize = PREAMBLE_BYTES + 4 + 4 + CHECK_BYTES;

const _: () =
    assert!(PUT_BLOCKS_EMPTY_BYTES + BLOCK_HEADER_BYTES + BLOCK_BYTES as usize <= ENTRY_BYTES_MAX);

/// Serves one Put stream.
pub(crate) async fn put<SM>(
    shared: &Shared<SM>,
    mut stream: Streaming<PutRequest>,
) -> Result<PutReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let header = match next(&mut stream).await? {
        Some(PutRequest {
            part: Some(put_request::Part::Header(header)),
        }) => header,
        Some(_) => {
            return Err(Status::invalid_argument(
                "a Put stream must start with its header",
            ))
        }
        None => return Err(Status::invalid_argument("empty Put stream")),
    };
    let mut upload = Upload::new(header, shared.options.object_bytes_max)?;
    shared.require_leader()?;
    let mut in_flight = FuturesUnordered::new();
    while let Some(message) = next(&mut stream).await? {
        let Some(put_request::Part::Data(data)) = message.part else {
            return Err(Status::invalid_argument("a Put stream carries one header"));
        };
        upload.push(data).await?;
        while let Some(blocks) = upload.take_entry() {
            if in_flight.len() >= PUT_BLOCKS_IN_FLIGHT_MAX {
                settle(in_flight.next().await)?;
            }
            in_flight.push(shared.propose(vec![Command::PutBlocks { blocks }]));
        }
    }
    let (manifest, rest) = upload.finish().await?;
    let path = upload.path;
    let log_index = if upload.inline {
        let command = Command::PutObject {
            path,
            manifest: manifest.clone(),
            inline_blocks: rest,
        };
        let applied = shared.batcher.submit(command).await?;
        expect_put(&applied.outcome)?;
        applied.log_index
    } else {
        if !rest.is_empty() {
            in_flight.push(shared.propose(vec![Command::PutBlocks { blocks: rest }]));
        }
        while let Some(result) = in_flight.next().await {
            settle(Some(result))?;
        }
        let command = Command::PutObject {
            path,
            manifest: manifest.clone(),
            inline_blocks: Vec::new(),
        };
        let (outcomes, log_index) = shared.propose(vec![command]).await?;
        expect_put(&outcomes[0])?;
        log_index
    };
    shared.counters.put_bytes(manifest.object_len);
    Ok(PutReply {
        size: manifest.object_len,
        blake3: Bytes::copy_from_slice(&manifest.object_hash),
        log_index,
    })
}

/// The next message of a client stream, waiting at most
/// [`STREAM_IDLE_TIMEOUT`].
async fn next<T>(stream: &mut Streaming<T>) -> Result<Option<T>, Status> {
    tokio::time::timeout(STREAM_IDLE_TIMEOUT, stream.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no message from the client for {STREAM_IDLE_TIMEOUT:?}"
            ))
        })?
}

/// The result of one `PutBlocks` proposal.
fn settle(result: Option<Result<(Vec<Outcome>, u64), Status>>) -> Result<(), Status> {
    let (outcomes, _) = result.expect("settle is called with a proposal in flight")?;
    outcomes.iter().try_for_each(expect_blocks)
}

/// The state of one upload.
pub(crate) struct Upload {
    pub(crate) path: String,
    size: u64,
    /// Whether the object travels inline in its `PutObject`.
    pub(crate) inline: bool,
    expected: Option<[u8; 32]>,
    received: u64,
    object: blake3::Hasher,
    partial: BytesMut,
    manifest_blocks: Vec<ManifestBlock>,
    /// Hashes of the blocks handed out or pending: a block the object holds
    /// twice (zero-filled regions) travels once.
    seen: HashSet<[u8; 32]>,
    /// Blocks not yet handed out in a `PutBlocks` (all of them for an
    /// inline object).
    pending: Vec<Block>,
    /// Encoded bytes of a `PutBlocks` holding the pending blocks.
    pending_entry_bytes: usize,
}

impl Upload {
    /// Checks the header: path, size, expected hash.
    pub(crate) fn new(header: PutHeader, object_bytes_max: u64) -> Result<Upload, Status> {
        check_object_path(&header.path)
            .map_err(|problem| super::errors::bad_path(&header.path, &problem))?;
        if header.size > object_bytes_max {
            return Err(Status::invalid_argument(format!(
                "object of {} bytes exceeds the maximum of {object_bytes_max}",
                header.size
            )));
        }
        let expected = match header.expected_blake3 {
            None => None,
            Some(bytes) => Some(bytes.as_ref().try_into().map_err(|_| {
                Status::invalid_argument(format!(
                    "expected_blake3 is {} bytes, not 32",
                    bytes.len()
                ))
            })?),
        };
        Ok(Upload {
            path: header.path,
            size: header.size,
            inline: header.size <= INLINE_OBJECT_BYTES_MAX,
            expected,
            received: 0,
            object: blake3::Hasher::new(),
            partial: BytesMut::new(),
            manifest_blocks: Vec::new(),
            seen: HashSet::new(),
            pending: Vec::new(),
            pending_entry_bytes: PUT_BLOCKS_EMPTY_BYTES,
        })
    }

    /// Takes in one chunk; more bytes than the header announced is an error.
    pub(crate) async fn push(&mut self, mut data: Bytes) -> Result<(), Status> {
        let received = self.received + data.len() as u64;
        if received > self.size {
            return Err(Status::invalid_argument(format!(
                "the Put header announced {} bytes, the data carries more; nothing stored",
                self.size
            )));
        }
        self.received = received;
        let block_bytes = BLOCK_BYTES as usize;
        while !data.is_empty() {
            // A chunk aligned on a block boundary becomes blocks without a copy.
            let block = if self.partial.is_empty() && data.len() >= block_bytes {
                data.split_to(block_bytes)
            } else {
                let take = (block_bytes - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data.split_to(take));
                if self.partial.len() < block_bytes {
                    break;
                }
                std::mem::take(&mut self.partial).freeze()
            };
            self.add_block(block).await?;
        }
        Ok(())
    }

    async fn add_block(&mut self, data: Bytes) -> Result<(), Status> {
        let hasher = std::mem::take(&mut self.object);
        let (hasher, hash) = hash_block(hasher, data.clone()).await?;
        self.object = hasher;
        self.manifest_blocks.push(ManifestBlock {
            hash,
            len: data.len() as u32,
        });
        if self.seen.insert(hash) {
            self.pending_entry_bytes += BLOCK_HEADER_BYTES + data.len();
            self.pending.push(Block { hash, data });
        }
        Ok(())
    }

    /// The blocks of the next `PutBlocks` entry, once another full block
    /// would not fit in it. Never for an inline object.
    pub(crate) fn take_entry(&mut self) -> Option<Vec<Block>> {
        let room = ENTRY_BYTES_MAX - self.pending_entry_bytes;
        if self.inline
            || self.pending.is_empty()
            || room >= BLOCK_HEADER_BYTES + BLOCK_BYTES as usize
        {
            return None;
        }
        self.pending_entry_bytes = PUT_BLOCKS_EMPTY_BYTES;
        Some(std::mem::take(&mut self.pending))
    }

    /// Checks size and hash; the manifest and the blocks not yet handed out.
    pub(crate) async fn finish(&mut self) -> Result<(Manifest, Vec<Block>), Status> {
        if self.received != self.size {
            return Err(Status::invalid_argument(format!(
                "the Put header announced {} bytes, the data carried {}; nothing stored",
                self.size, self.received
            )));
        }
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial).freeze();
            self.add_block(last).await?;
        }
        let object_hash = *self.object.finalize().as_bytes();
        if let Some(expected) = self.expected {
            if expected != object_hash {
                return Err(Status::invalid_argument(format!(
                    "object {} hashes to {}, not the expected {}; nothing stored",
                    self.path,
                    hex(&object_hash),
                    hex(&expected)
                )));
            }
        }
        let manifest = Manifest {
            object_len: self.size,
            object_hash,
            block_bytes: BLOCK_BYTES,
            blocks: std::mem::take(&mut self.manifest_blocks),
        };
        self.pending_entry_bytes = PUT_BLOCKS_EMPTY_BYTES;
        Ok((manifest, std::mem::take(&mut self.pending)))
    }
}

/// Hashes one block and feeds it to the object's hasher.
async fn hash_block(
    mut object: blake3::Hasher,
    block: Bytes,
) -> Result<(blake3::Hasher, [u8; 32]), Status> {
    let inline = block.len() <= HASH_INLINE_BYTES_MAX;
    let work = move || {
        object.update(&block);
        (object, *blake3::hash(&block).as_bytes())
    };
    if inline {
        return Ok(work());
    }
    finkfs_raft::rt::blocking(work)
        .await
        .map_err(|e| super::errors::task_failed(&e))
}

/// The manifest and blocks of a whole object held in memory (PutMany).
pub(crate) async fn whole_object(
    path: String,
    data: Bytes,
    expected: Option<Bytes>,
    object_bytes_max: u64,
) -> Result<(Manifest, Vec<Block>, String), Status> {
    let header = PutHeader {
        path,
        size: data.len() as u64,
        expected_blake3: expected,
    };
    let mut upload = Upload::new(header, object_bytes_max)?;
    upload.push(data).await?;
    let (manifest, blocks) = upload.finish().await?;
    Ok((manifest, blocks, upload.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size: u64) -> PutHeader {
        PutHeader {
            path: "a/b".into(),
            size,
            expected_blake3: None,
        }
    }

    #[tokio::test]
    async fn blocks_and_manifest_match_the_bytes_whatever_the_chunking() {
        let data: Vec<u8> = (0..(3 * BLOCK_BYTES as usize + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for chunk in [
            1000,
            BLOCK_BYTES as usize,
            BLOCK_BYTES as usize + 1,
            data.len(),
        ] {
            let mut upload = Upload::new(header(data.len() as u64), u64::MAX).unwrap();
            for piece in data.chunks(chunk) {
                upload.push(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            let (manifest, blocks) = upload.finish().await.unwrap();
            assert_eq!(manifest.object_hash, *blake3::hash(&data).as_bytes());
            assert_eq!(manifest.blocks.len(), 4);
            let joined: Vec<u8> = blocks.iter().flat_map(|b| b.data.to_vec()).collect();
            assert_eq!(joined, data, "chunk {chunk}");
            for (block, entry) in blocks.iter().zip(&manifest.blocks) {
                assert_eq!(block.hash, *blake3::hash(&block.data).as_bytes());
                assert_eq!(entry.hash, block.hash);
                assert_eq!(entry.len as usize, block.data.len());
            }
        }
    }

    #[tokio::test]
    async fn more_or_fewer_bytes_than_announced_are_refused() {
        let mut upload = Upload::new(header(4), u64::MAX).unwrap();
        assert!(upload.push(Bytes::from_static(b"12345")).await.is_err());
        let mut upload = Upload::new(header(4), u64::MAX).unwrap();
        upload.push(Bytes::from_static(b"123")).await.unwrap();
        assert!(upload.finish().await.is_err());
    }

    #[tokio::test]
    async fn expected_hash_mismatch_is_refused() {
        let mut h = header(3);
        h.expected_blake3 = Some(Bytes::copy_from_slice(blake3::hash(b"xyz").as_bytes()));
        let mut upload = Upload::new(h, u64::MAX).unwrap();
        upload.push(Bytes::from_static(b"abc")).await.unwrap();
        let status = upload.finish().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn large_upload_hands_out_entries_within_the_entry_ceiling() {
        let size = 10 * BLOCK_BYTES as u64;
        let mut upload = Upload::new(header(size), u64::MAX).unwrap();
        let mut entries = Vec::new();
        for i in 0..10u8 {
            upload
                .push(Bytes::from(vec![i; BLOCK_BYTES as usize]))
                .await
                .unwrap();
            if let Some(entry) = upload.take_entry() {
                entries.push(entry);
            }
        }
        let (manifest, rest) = upload.finish().await.unwrap();
        assert_eq!(manifest.blocks.len(), 10);
        assert!(!entries.is_empty());
        for blocks in &entries {
            let command = Command::PutBlocks {
                blocks: blocks.clone(),
            };
            assert!(command.encoded_len() <= ENTRY_BYTES_MAX);
        }
        let handed: usize = entries.iter().map(Vec::len).sum::<usize>() + rest.len();
        assert_eq!(handed, 10);
    }

    #[tokio::test]
    async fn repeated_blocks_travel_once() {
        let size = 3 * BLOCK_BYTES as u64;
        let mut upload = Upload::new(header(size), u64::MAX).unwrap();
        upload
            .push(Bytes::from(vec![0u8; size as usize]))
            .await
            .unwrap();
        let (manifest, blocks) = upload.finish().await.unwrap();
        assert_eq!(manifest.blocks.len(), 3);
        assert_eq!(blocks.len(), 1);
    }

    #[tokio::test]
    async fn small_object_is_inline_and_fits_one_entry() {
        let data = Bytes::from(vec![7u8; INLINE_OBJECT_BYTES_MAX as usize]);
        let path = "p".repeat(crate::object_path::OBJECT_PATH_BYTES_MAX);
        let (manifest, blocks, path) = whole_object(path, data, None, u64::MAX).await.unwrap();
        let command = Command::PutObject {
            path,
            manifest,
            inline_blocks: blocks,
        };
        assert!(command.encoded_len() <= ENTRY_BYTES_MAX);
    }

    #[test]
    fn bad_header_is_refused() {
        let mut h = header(1);
        h.path = "/abs".into();
        assert!(Upload::new(h, 10).is_err());
        assert!(Upload::new(header(11), 10).is_err());
        let mut h = header(1);
        h.expected_blake3 = Some(Bytes::from_static(b"short"));
        assert!(Upload::new(h, 10).is_err());
    }
}
