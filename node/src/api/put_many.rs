//! PutMany: a stream of small whole objects, one reply per object in
//! request order. Each object is checked and split like a Put, then handed
//! to the batcher, so the objects of this stream and of every concurrent
//! call share log entries. At most [`PUT_MANY_IN_FLIGHT_MAX`] objects of a
//! stream wait for their outcome; the stream is not read further until one
//! settles.
//!
//! An object that fails gets its own failure (with the leader's address
//! when this node lost leadership); the others are unaffected.

use std::sync::Arc;

use bytes::Bytes;
use finkfs_raft::types::TypeConfig;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use openraft::storage::RaftStateMachine;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::commands::expect_put;
use super::proto::{put_many_reply, Failure, PutManyReply, PutManyRequest, PutReply};
use super::put::whole_object;
use super::server::Shared;
use super::{
    LEADER_METADATA_KEY, PUT_MANY_IN_FLIGHT_MAX, PUT_MANY_OBJECT_BYTES_MAX, STREAM_IDLE_TIMEOUT,
};
use crate::command::Command;

/// The reply stream of a PutMany.
pub(crate) type PutManyStream =
    tokio_stream::wrappers::ReceiverStream<Result<PutManyReply, Status>>;

/// Starts serving a PutMany stream.
pub(crate) fn put_many<SM>(
    shared: Arc<Shared<SM>>,
    inbound: Streaming<PutManyRequest>,
) -> Result<PutManyStream, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    shared.require_leader()?;
    let (tx, rx) = mpsc::channel(PUT_MANY_IN_FLIGHT_MAX);
    finkfs_raft::rt::spawn(serve(shared, inbound, tx));
    Ok(PutManyStream::new(rx))
}

async fn serve<SM>(
    shared: Arc<Shared<SM>>,
    mut inbound: Streaming<PutManyRequest>,
    tx: mpsc::Sender<Result<PutManyReply, Status>>,
) where
    SM: RaftStateMachine<TypeConfig>,
{
    let mut pending = FuturesOrdered::new();
    let mut seq = 0u64;
    let mut inbound_open = true;
    loop {
        let reading = inbound_open && pending.len() < PUT_MANY_IN_FLIGHT_MAX;
        tokio::select! {
            biased;
            Some(reply) = pending.next(), if !pending.is_empty() => {
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
            message = tokio::time::timeout(STREAM_IDLE_TIMEOUT, inbound.message()), if reading => {
                match message {
                    Ok(Ok(Some(request))) => {
                        pending.push_back(one(Arc::clone(&shared), seq, request));
                        seq += 1;
                    }
                    Ok(Ok(None)) => inbound_open = false,
                    Ok(Err(status)) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    Err(_) => {
                        let status = Status::deadline_exceeded(format!(
                            "no message from the client for {STREAM_IDLE_TIMEOUT:?}"
                        ));
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
            else => return,
        }
    }
}

/// Stores one object of the stream; its reply.
async fn one<SM>(shared: Arc<Shared<SM>>, seq: u64, request: PutManyRequest) -> PutManyReply
where
    SM: RaftStateMachine<TypeConfig>,
{
    let path = request.path.clone();
    let outcome = match store(&shared, request).await {
        Ok(stored) => put_many_reply::Outcome::Stored(stored),
        Err(status) => {
            shared.counters.error();
            put_many_reply::Outcome::Failed(failure(&status))
        }
    };
    PutManyReply {
        seq,
        path,
        outcome: Some(outcome),
    }
}

pub(crate) async fn store<SM>(
    shared: &Shared<SM>,
    request: PutManyRequest,
) -> Result<PutReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let object_bytes_max = shared
        .options
        .object_bytes_max
        .min(PUT_MANY_OBJECT_BYTES_MAX);
    let (manifest, blocks, path) = whole_object(
        request.path,
        request.data,
        request.expected_blake3,
        object_bytes_max,
    )
    .await?;
    let command = Command::PutObject {
        path,
        manifest: manifest.clone(),
        inline_blocks: blocks,
    };
    let applied = shared.batcher.submit(command).await?;
    expect_put(&applied.outcome)?;
    shared.counters.put_bytes(manifest.object_len);
    Ok(PutReply {
        size: manifest.object_len,
        blake3: Bytes::copy_from_slice(&manifest.object_hash),
        log_index: applied.log_index,
    })
}

/// A status as a per-object failure, the leader's address kept.
fn failure(status: &Status) -> Failure {
    let leader = status
        .metadata()
        .get(LEADER_METADATA_KEY)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    Failure {
        code: status.code() as i32,
        message: status.message().to_string(),
        leader,
    }
}
