//! Sending a full snapshot (client side of InstallSnapshot).
//!
//! The file is read chunk by chunk as the transport pulls, never whole in
//! memory. Each chunk carries its own BLAKE3; the whole file is hashed along
//! the way and compared with the handle's BLAKE3 before the trailer goes out:
//! a snapshot file damaged on the sender's disk ends the stream without a
//! trailer (the receiver installs nothing) and is reported as a storage
//! error, never sent as if it were good.
//!
//! Deadlines: each chunk must be taken by the transport within the response
//! timeout (flow control stops taking when the receiver stalls); after the
//! trailer, the receiver has `PeerOptions::snapshot_install_timeout` to
//! install and reply. `cancel` (openraft closing the replication) aborts the
//! transfer at any point.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use finkfs_seam::FileRef;
use futures_util::Stream;
use openraft::error::{ErrorSource, ReplicationClosed, StreamingError};
use openraft::network::RPCOption;
use openraft::{RPCTypes, RaftTypeConfig, StorageError};

use super::client::PeerConnection;
use super::convert::{self, SnapshotResponse};
use super::error::{status_to_rpc_error, timeout_error, wire_to_rpc_error};
use super::proto;
use super::snapshot_file::{SnapshotFile, SnapshotFileError};
use super::{SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_BYTES_MIN};
use crate::types::{Snapshot, TypeConfig, Vote};

type SendError = StreamingError<TypeConfig>;

/// How far the transport got: chunks taken, and whether the last went out.
#[derive(Default)]
struct Progress {
    chunks_taken: AtomicU64,
    all_sent: AtomicBool,
    failure: Mutex<Option<SnapshotFileError>>,
}

/// Sends `snapshot` to the connection's target with the leader's `vote`.
pub(crate) async fn send(
    connection: &mut PeerConnection,
    vote: Vote,
    snapshot: Snapshot<SnapshotFile>,
    cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
    option: RPCOption,
) -> Result<SnapshotResponse, SendError> {
    let signature = snapshot.meta.signature();
    let storage_error = |error: &SnapshotFileError| {
        let source = <TypeConfig as RaftTypeConfig>::ErrorSource::from_error(error);
        SendError::StorageError(StorageError::read_snapshot(Some(signature.clone()), source))
    };
    let file = snapshot.snapshot.open().map_err(|e| storage_error(&e))?;
    let chunk_bytes = option
        .snapshot_chunk_size()
        .unwrap_or(SNAPSHOT_CHUNK_BYTES)
        .clamp(SNAPSHOT_CHUNK_BYTES_MIN, SNAPSHOT_CHUNK_BYTES);
    let progress = Arc::new(Progress::default());
    let chunks = Chunks {
        group_id: connection.group.0,
        header: Some(convert::snapshot_header_to_proto(&vote, &snapshot.meta)),
        handle: snapshot.snapshot,
        file,
        offset: 0,
        chunk_bytes,
        hasher: Some(blake3::Hasher::new()),
        progress: Arc::clone(&progress),
    };
    let chunk_timeout = connection.response_timeout(&option);
    let install_timeout = connection.options.snapshot_install_timeout;
    let (id, target) = (connection.id, connection.target);
    let call = connection
        .transport
        .install_snapshot(&connection.addr, Box::pin(chunks.into_stream()));
    // Biased: branch order is fixed rather than drawn at random, so a run
    // replays; the reply is looked at first as before.
    let reply = tokio::select! {
        biased;
        reply = call => reply,
        closed = cancel => return Err(SendError::Closed(closed)),
        timeout = watchdog(&progress, chunk_timeout, install_timeout) => {
            return Err(timeout_error(RPCTypes::InstallSnapshot, id, target, timeout).into());
        }
    };
    if let Some(failure) = progress
        .failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(storage_error(&failure));
    }
    let reply = reply.map_err(|status| SendError::from(status_to_rpc_error(&status)))?;
    let vote = convert::vote_from_proto(reply.vote, "vote")
        .map_err(|e| SendError::from(wire_to_rpc_error(&e)))?;
    Ok(SnapshotResponse::new(vote))
}

/// Resolves with the deadline that passed: a chunk not taken within
/// `chunk_timeout`, or no reply within `install_timeout` after the last.
async fn watchdog(
    progress: &Progress,
    chunk_timeout: Duration,
    install_timeout: Duration,
) -> Duration {
    let mut taken = progress.chunks_taken.load(Ordering::Acquire);
    loop {
        if progress.all_sent.load(Ordering::Acquire) {
            tokio::time::sleep(install_timeout).await;
            return install_timeout;
        }
        tokio::time::sleep(chunk_timeout).await;
        let now = progress.chunks_taken.load(Ordering::Acquire);
        if now == taken && !progress.all_sent.load(Ordering::Acquire) {
            return chunk_timeout;
        }
        taken = now;
    }
}

/// The chunks of one snapshot file, read as they are pulled.
struct Chunks {
    group_id: u64,
    header: Option<proto::SnapshotHeader>,
    handle: SnapshotFile,
    file: FileRef,
    offset: u64,
    chunk_bytes: usize,
    /// Hash of the bytes read so far; `None` once the trailer went out.
    hasher: Option<blake3::Hasher>,
    progress: Arc<Progress>,
}

impl Chunks {
    fn into_stream(self) -> impl Stream<Item = proto::SnapshotChunk> + Send + 'static {
        futures_util::stream::unfold(self, |mut chunks| async move {
            let chunk = chunks.next().await?;
            Some((chunk, chunks))
        })
    }

    /// The next chunk; `None` after the trailer, or at a read failure (the
    /// failure is kept in `progress` and the trailer is never sent).
    async fn next(&mut self) -> Option<proto::SnapshotChunk> {
        let hasher = self.hasher.take()?;
        let len_bytes = self.handle.len_bytes();
        let step = (len_bytes - self.offset).min(self.chunk_bytes as u64) as usize;
        let read = read_chunk(
            self.handle.clone(),
            Arc::clone(&self.file),
            self.offset,
            step,
            hasher,
        );
        let (data, data_blake3, hasher) = match read.await {
            Ok(read) => read,
            Err(error) => return self.fail(error),
        };
        let offset = self.offset;
        self.offset += step as u64;
        let trailer = if self.offset == len_bytes {
            if let Err(error) = self.handle.check_hash(hasher.finalize()) {
                return self.fail(error);
            }
            Some(proto::SnapshotTrailer {
                file_bytes: len_bytes,
                file_blake3: Bytes::copy_from_slice(&self.handle.blake3()),
            })
        } else {
            self.hasher = Some(hasher);
            None
        };
        self.progress.chunks_taken.fetch_add(1, Ordering::AcqRel);
        if trailer.is_some() {
            self.progress.all_sent.store(true, Ordering::Release);
        }
        Some(proto::SnapshotChunk {
            group_id: self.group_id,
            header: self.header.take(),
            offset,
            data,
            data_blake3: Bytes::copy_from_slice(data_blake3.as_bytes()),
            trailer,
        })
    }

    fn fail(&mut self, error: SnapshotFileError) -> Option<proto::SnapshotChunk> {
        tracing::error!(%error, "snapshot not sent: the local snapshot file failed");
        *self
            .progress
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(error);
        None
    }
}

/// Reads `step` bytes at `offset` off the async threads, hashing them.
async fn read_chunk(
    handle: SnapshotFile,
    file: FileRef,
    offset: u64,
    step: usize,
    mut hasher: blake3::Hasher,
) -> Result<(Bytes, blake3::Hash, blake3::Hasher), SnapshotFileError> {
    let path = handle.path().to_path_buf();
    let read = crate::rt::blocking(move || {
        let mut data = vec![0u8; step];
        file.read_at(offset, &mut data)
            .map_err(|source| SnapshotFileError::Io {
                file: handle.path().to_path_buf(),
                offset,
                source,
            })?;
        hasher.update(&data);
        let data_blake3 = blake3::hash(&data);
        Ok((Bytes::from(data), data_blake3, hasher))
    });
    read.await.map_err(|join| SnapshotFileError::Io {
        file: path,
        offset,
        source: std::io::Error::other(join.to_string()),
    })?
}
