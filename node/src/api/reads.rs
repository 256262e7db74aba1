//! Get, Stat and List: served by the leader after a read-index barrier
//! (the leader confirms with a quorum that it still leads, and waits until
//! its state machine applied everything committed before the read), so a
//! read sees every write acknowledged before it started.
//!
//! A Get takes the object's manifest once and then reads block by block,
//! each block verified against its BLAKE3 by the block store: a damaged
//! block ends the stream with DATA_LOSS, never with its bytes. Blocks are
//! not reclaimed while a node runs, so an object replaced during a long
//! read still streams the version whose header was sent.
//!
//! With read repair on, a damaged block is first repaired from a peer that
//! holds an intact copy (the damaged copy is quarantined) and the verified
//! bytes are served; DATA_LOSS, naming the object and the block, is left
//! for a block no replica holds intact.

use std::sync::Arc;

use bytes::Bytes;
use finkfs_raft::types::TypeConfig;
use openraft::storage::RaftStateMachine;
use tokio::sync::mpsc;
use tonic::Status;

use super::errors::{bad_path, store_error, task_failed};
use super::proto::{
    get_reply, ByteRange, GetHeader, GetReply, GetRequest, ListReply, ListRequest, ObjectInfo,
};
use super::server::Shared;
use super::{DATA_CHUNK_BYTES, GET_CHUNKS_AHEAD_MAX, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};
use crate::blocks::BlockError;
use crate::hex::hex;
use crate::manifest::{Manifest, ManifestBlock};
use crate::object_path::{check_object_path, OBJECT_PATH_BYTES_MAX};
use crate::reader::ObjectReader;
use crate::repair::{LiveOutcome, ReadRepair};
use crate::store::StoreError;

/// The reply stream of a Get.
pub(crate) type GetStream = tokio_stream::wrappers::ReceiverStream<Result<GetReply, Status>>;

/// Runs a blocking read of the object store off the async threads.
async fn blocking<T, F>(reader: &ObjectReader, read: F) -> Result<T, Status>
where
    F: FnOnce(&ObjectReader) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let reader = reader.clone();
    finkfs_raft::rt::blocking(move || read(&reader))
        .await
        .map_err(|e| task_failed(&e))?
        .map_err(|e| store_error(&e))
}

/// The manifest of the object at `path`, after the read barrier.
async fn manifest<SM>(shared: &Shared<SM>, path: &str) -> Result<Manifest, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    check_object_path(path).map_err(|problem| bad_path(path, &problem))?;
    shared.read_barrier().await?;
    let owned = path.to_string();
    blocking(&shared.reader, move |reader| reader.stat(&owned))
        .await?
        .ok_or_else(|| Status::not_found(format!("no object at {path}")))
}

/// Starts a Get: checks the request, sends the header, streams the bytes.
pub(crate) async fn get<SM>(
    shared: Arc<Shared<SM>>,
    request: GetRequest,
) -> Result<GetStream, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let manifest = manifest(&shared, &request.path).await?;
    let (start, len) = match request.range {
        None => (0, manifest.object_len),
        Some(ByteRange { start, len }) => {
            let end = start
                .checked_add(len)
                .filter(|end| *end <= manifest.object_len);
            if end.is_none() {
                return Err(Status::out_of_range(format!(
                    "range of {len} bytes at {start} lies outside object {} of {} bytes",
                    request.path, manifest.object_len
                )));
            }
            (start, len)
        }
    };
    let (tx, rx) = mpsc::channel(GET_CHUNKS_AHEAD_MAX);
    let header = GetReply {
        part: Some(get_reply::Part::Header(GetHeader {
            size: manifest.object_len,
            blake3: Bytes::copy_from_slice(&manifest.object_hash),
            range: Some(ByteRange { start, len }),
        })),
    };
    tx.send(Ok(header))
        .await
        .map_err(|_| Status::cancelled("client went away"))?;
    let reader = Reading {
        reader: shared.reader.clone(),
        repair: shared.read_repair.get().cloned(),
    };
    let counters = Arc::clone(&shared.counters);
    finkfs_raft::rt::spawn(async move {
        let sent = stream_range(&reader, &request.path, &manifest, start, len, &tx).await;
        match sent {
            Ok(()) => counters.get_bytes(len),
            Err(status) => {
                counters.error();
                // The client may be gone already; nothing else to tell.
                let _ = tx.send(Err(status)).await;
            }
        }
    });
    Ok(GetStream::new(rx))
}

/// Sends the bytes `start..start + len` of the object block by block.
async fn stream_range(
    reader: &Reading,
    path: &str,
    manifest: &Manifest,
    start: u64,
    len: u64,
    tx: &mpsc::Sender<Result<GetReply, Status>>,
) -> Result<(), Status> {
    let end = start + len;
    let mut block_start = 0u64;
    for block in &manifest.blocks {
        let block_end = block_start + u64::from(block.len);
        if block_end > start && block_start < end {
            let data = reader.block(path, block).await?;
            if data.len() != block.len as usize {
                return Err(Status::data_loss(format!(
                    "block of object {path} is {} bytes, its manifest says {}",
                    data.len(),
                    block.len
                )));
            }
            let data = Bytes::from(data);
            let from = start.max(block_start) - block_start;
            let to = end.min(block_end) - block_start;
            let mut piece = data.slice(from as usize..to as usize);
            while !piece.is_empty() {
                let chunk = piece.split_to(piece.len().min(DATA_CHUNK_BYTES));
                let reply = GetReply {
                    part: Some(get_reply::Part::Data(chunk)),
                };
                tx.send(Ok(reply))
                    .await
                    .map_err(|_| Status::cancelled("client went away"))?;
            }
        }
        block_start = block_end;
        if block_start >= end {
            break;
        }
    }
    Ok(())
}

/// A read handle and, when on, the repair of damaged blocks.
struct Reading {
    reader: ObjectReader,
    repair: Option<ReadRepair>,
}

impl Reading {
    /// One block of the object at `path`, verified; a damaged block is
    /// repaired from a peer first when read repair is on.
    async fn block(&self, path: &str, block: &ManifestBlock) -> Result<Vec<u8>, Status> {
        let (owned_path, entry) = (path.to_string(), *block);
        let reader = self.reader.clone();
        let read = finkfs_raft::rt::blocking(move || reader.read_object_block(&owned_path, &entry))
            .await
            .map_err(|e| task_failed(&e))?;
        let error = match read {
            Ok(data) => return Ok(data),
            Err(error) => error,
        };
        let Some(repair) = self.repair.as_ref().filter(|_| repairable(&error)) else {
            return Err(store_error(&error));
        };
        let hash = block.hash;
        let found = blocking(&self.reader, move |r| r.damaged_block(&hash)).await?;
        let Some(damaged) = found else {
            // Intact after all (repaired by another read meanwhile).
            let (owned_path, entry) = (path.to_string(), *block);
            return blocking(&self.reader, move |r| {
                r.read_object_block(&owned_path, &entry)
            })
            .await;
        };
        match repair.repair(damaged).await {
            LiveOutcome::Repaired(data) => Ok(data.to_vec()),
            LiveOutcome::ReadAgain => {
                let (owned_path, entry) = (path.to_string(), *block);
                blocking(&self.reader, move |r| {
                    r.read_object_block(&owned_path, &entry)
                })
                .await
            }
            LiveOutcome::Unrepairable { reason } => {
                tracing::error!(object = %path, block = %hex(&hash), %reason, "damaged block has no intact copy on any replica; not served");
                Err(Status::data_loss(format!(
                    "object {path}: block {} is damaged and no replica holds an intact copy; not served ({reason})",
                    hex(&hash)
                )))
            }
        }
    }
}

/// Whether a failed read is damage a copy from a peer can repair: a block
/// that does not verify or a sector the disk cannot read.
fn repairable(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Block(BlockError::Corrupt { .. } | BlockError::Io { .. })
    )
}

/// What is stored at a path.
pub(crate) async fn stat<SM>(shared: &Shared<SM>, path: &str) -> Result<ObjectInfo, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let manifest = manifest(shared, path).await?;
    Ok(object_info(path.to_string(), &manifest))
}

/// One page of a listing.
pub(crate) async fn list<SM>(shared: &Shared<SM>, request: ListRequest) -> Result<ListReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let limit = match request.limit as usize {
        0 => LIST_LIMIT_DEFAULT,
        limit if limit > LIST_LIMIT_MAX => {
            return Err(Status::invalid_argument(format!(
                "list limit {limit} exceeds the maximum of {LIST_LIMIT_MAX}"
            )))
        }
        limit => limit,
    };
    check_prefix(&request.prefix)?;
    if let Some(after) = &request.start_after {
        check_prefix(after)?;
    }
    shared.read_barrier().await?;
    let ListRequest {
        prefix,
        start_after,
        ..
    } = request;
    let page = blocking(&shared.reader, move |reader| {
        reader.list(&prefix, start_after.as_deref(), limit)
    })
    .await?;
    let next_start_after = (page.len() == limit)
        .then(|| page.last().map(|(path, _)| path.clone()))
        .flatten();
    let objects = page
        .into_iter()
        .map(|(path, manifest)| object_info(path, &manifest))
        .collect();
    Ok(ListReply {
        objects,
        next_start_after,
    })
}

/// A prefix or a start-after key: any string a path could start with.
pub(super) fn check_prefix(prefix: &str) -> Result<(), Status> {
    if prefix.len() > OBJECT_PATH_BYTES_MAX {
        return Err(Status::invalid_argument(format!(
            "a listing key of {} bytes exceeds the path maximum of {OBJECT_PATH_BYTES_MAX}",
            prefix.len()
        )));
    }
    if prefix.contains('\0') {
        return Err(Status::invalid_argument(
            "a listing key contains a NUL byte",
        ));
    }
    Ok(())
}

pub(crate) fn object_info(path: String, manifest: &Manifest) -> ObjectInfo {
    ObjectInfo {
        path,
        size: manifest.object_len,
        blake3: Bytes::copy_from_slice(&manifest.object_hash),
        block_bytes: manifest.block_bytes,
        block_count: manifest.blocks.len() as u32,
    }
}
