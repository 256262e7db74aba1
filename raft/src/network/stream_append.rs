//! AppendEntries as one bidirectional stream (client side), for transports
//! that have streams (gRPC).
//!
//! openraft hands over a stream of requests and expects a stream of results,
//! one per request, in request order (`StreamAppendResult`: the log id the
//! follower now matches, or a conflict / higher vote, after which the stream
//! ends). In `LogsSince` mode the request stream stays open while openraft
//! waits for new entries, so the stream as a whole has no deadline.
//!
//! * A request above the message ceiling is split into several wire messages
//!   (see `convert::split_append`); the follower answers each, and the
//!   answers of one request's parts are merged back into one result: the
//!   last part's matching log id, or the first rejection.
//! * Timeout: while at least one message is unanswered, each reply must come
//!   within the response timeout (openraft's soft TTL, raised to the floor
//!   of `PeerOptions`); an idle stream waits without limit (HTTP/2
//!   keepalive detects a dead connection).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use openraft::base::BoxStream;
use openraft::error::NetworkError;
use openraft::network::RPCOption;
use openraft::RPCTypes;

use super::client::{PeerConnection, RpcError};
use super::convert::{self, AppendEntriesRequest, StreamAppendResult, WireError};
use super::error::{status_to_rpc_error, timeout_error, wire_to_rpc_error};
use super::proto;
use super::transport::AppendReplies;
use crate::types::NodeId;

/// What the request side tells the reply side: how many wire messages each
/// request still in flight was split into, and why encoding stopped.
#[derive(Default)]
struct InFlight {
    parts: VecDeque<usize>,
    encode_error: Option<WireError>,
}

type Shared = Arc<Mutex<InFlight>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, InFlight> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens the stream to the connection's target.
pub(crate) async fn open<'s, S>(
    connection: &'s mut PeerConnection,
    input: S,
    option: RPCOption,
) -> Result<BoxStream<'s, Result<StreamAppendResult, RpcError>>, RpcError>
where
    S: Stream<Item = AppendEntriesRequest> + Send + Unpin + 'static,
{
    let shared: Shared = Arc::default();
    let outgoing = outgoing(connection.group.0, input, Arc::clone(&shared));
    let timeout = connection.response_timeout(&option);
    let (id, target) = (connection.id, connection.target);
    let opening = connection
        .transport
        .stream_append(&connection.addr, outgoing.boxed());
    let replies = tokio::time::timeout(timeout, opening)
        .await
        .map_err(|_| timeout_error(RPCTypes::AppendEntries, id, target, timeout))?
        .map_err(|status| status_to_rpc_error(&status))?;
    let replies = Replies {
        replies,
        shared,
        timeout,
        id,
        target,
        done: false,
    };
    Ok(Box::pin(futures_util::stream::unfold(
        replies,
        |mut replies| async move {
            let item = replies.next().await?;
            Some((item, replies))
        },
    )))
}

/// The wire messages of `input`'s requests, each request registered in
/// `shared` before its first part leaves.
fn outgoing<S>(
    group_id: u64,
    input: S,
    shared: Shared,
) -> impl Stream<Item = proto::AppendRequest> + Send + 'static
where
    S: Stream<Item = AppendEntriesRequest> + Send + Unpin + 'static,
{
    let state = (input, VecDeque::<proto::AppendRequest>::new(), shared);
    futures_util::stream::unfold(state, move |(mut input, mut queue, shared)| async move {
        loop {
            if let Some(message) = queue.pop_front() {
                return Some((message, (input, queue, shared)));
            }
            let request = input.next().await?;
            match convert::split_append(group_id, &request) {
                Ok(parts) => {
                    lock(&shared).parts.push_back(parts.len());
                    queue.extend(parts);
                }
                Err(error) => {
                    tracing::error!(%error, "cannot encode an AppendEntries request");
                    lock(&shared).encode_error = Some(error);
                    return None;
                }
            }
        }
    })
}

/// The reply side of one stream.
struct Replies {
    replies: AppendReplies,
    shared: Shared,
    timeout: Duration,
    id: NodeId,
    target: NodeId,
    done: bool,
}

impl Replies {
    /// The result of the next request, or `None` once the stream is over.
    async fn next(&mut self) -> Option<Result<StreamAppendResult, RpcError>> {
        if self.done {
            return None;
        }
        loop {
            let received = tokio::time::timeout(self.timeout, self.replies.next())
                .await
                .map(Option::transpose);
            let step = match received {
                Err(_elapsed) if lock(&self.shared).parts.is_empty() => continue,
                Err(_elapsed) => Some(Err(timeout_error(
                    RPCTypes::AppendEntries,
                    self.id,
                    self.target,
                    self.timeout,
                ))),
                Ok(Err(status)) => Some(Err(status_to_rpc_error(&status))),
                Ok(Ok(None)) => self.ended(),
                Ok(Ok(Some(reply))) => match self.merge(reply) {
                    Merge::MorePartsDue => continue,
                    Merge::Result(result) => Some(result),
                },
            };
            if !matches!(step, Some(Ok(Ok(_)))) {
                self.done = true;
            }
            return step;
        }
    }

    /// The reply stream ended: fine if every request was answered.
    fn ended(&mut self) -> Option<Result<StreamAppendResult, RpcError>> {
        let mut shared = lock(&self.shared);
        if let Some(error) = shared.encode_error.take() {
            return Some(Err(wire_to_rpc_error(&error)));
        }
        if shared.parts.is_empty() {
            return None;
        }
        Some(Err(RpcError::Network(NetworkError::from_string(format!(
            "peer ended the append stream with {} requests unanswered",
            shared.parts.len()
        )))))
    }

    /// Folds one reply into the result of the request it answers.
    fn merge(&mut self, reply: proto::AppendReply) -> Merge {
        let result = match convert::append_reply_from_proto(reply) {
            Ok(result) => result,
            Err(error) => return Merge::Result(Err(wire_to_rpc_error(&error))),
        };
        let mut shared = lock(&self.shared);
        let Some(parts_due) = shared.parts.front_mut() else {
            return Merge::Result(Err(RpcError::Network(NetworkError::from_string(
                "peer answered an append message that was never sent",
            ))));
        };
        *parts_due -= 1;
        if result.is_ok() && *parts_due > 0 {
            return Merge::MorePartsDue;
        }
        shared.parts.pop_front();
        Merge::Result(Ok(result))
    }
}

enum Merge {
    MorePartsDue,
    Result(Result<StreamAppendResult, RpcError>),
}
