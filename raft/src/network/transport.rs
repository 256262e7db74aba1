//! The transport seam of the peer network: how a message of the peer
//! protocol gets from one node to another.
//!
//! Everything above it — splitting AppendEntries, response deadlines, error
//! mapping, the snapshot chunker and its watchdog, block verification — is
//! the same whatever carries the bytes. Below it, [`PeerChannels`] carries
//! them over gRPC between processes; [`LocalTransport`] hands them to a
//! [`PeerEndpoint`] in the same process (tests, and the cluster simulator,
//! which puts its own faults and delays in between).
//!
//! Messages cross the seam in their wire form (the `proto` types), so that a
//! transport exercises the same encoding, decoding and validation as gRPC:
//! a peer speaking nonsense is refused above the seam, never below it.
//!
//! Errors are gRPC [`Status`]es on both sides, so their meaning does not
//! depend on the transport: `UNAVAILABLE` for a peer that cannot be reached
//! (openraft backs off), `NOT_FOUND` for a group the peer does not host,
//! `INVALID_ARGUMENT` for a refused message.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tonic::Status;

use super::client::{PeerChannels, PeerOptions};
use super::proto;

/// A request of the peer protocol that has exactly one reply.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PeerRequest {
    /// RequestVote.
    Vote(proto::VoteRequest),
    /// The pre-vote round before an election.
    PreVote(proto::VoteRequest),
    /// One AppendEntries message.
    Append(proto::AppendRequest),
    /// Asks the target to take over leadership.
    TransferLeader(proto::TransferLeaderRequest),
    /// One block by its BLAKE3.
    FetchBlock(proto::FetchBlockRequest),
    /// How far the target's log reaches.
    HeldLog(proto::HeldLogRequest),
}

impl PeerRequest {
    /// The request's name, for errors and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerRequest::Vote(_) => "Vote",
            PeerRequest::PreVote(_) => "PreVote",
            PeerRequest::Append(_) => "AppendEntries",
            PeerRequest::TransferLeader(_) => "TransferLeader",
            PeerRequest::FetchBlock(_) => "FetchBlock",
            PeerRequest::HeldLog(_) => "HeldLog",
        }
    }
}

/// The reply to a [`PeerRequest`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PeerReply {
    /// To Vote and PreVote.
    Vote(proto::VoteReply),
    /// To AppendEntries.
    Append(proto::AppendReply),
    /// To TransferLeader.
    TransferLeader(proto::TransferLeaderReply),
    /// To FetchBlock.
    FetchBlock(proto::FetchBlockReply),
    /// To HeldLog.
    HeldLog(proto::HeldLogReply),
}

impl PeerReply {
    /// The reply's name, for errors and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerReply::Vote(_) => "VoteReply",
            PeerReply::Append(_) => "AppendReply",
            PeerReply::TransferLeader(_) => "TransferLeaderReply",
            PeerReply::FetchBlock(_) => "FetchBlockReply",
            PeerReply::HeldLog(_) => "HeldLogReply",
        }
    }
}

/// The chunks of one snapshot as a sender hands them over.
pub type OutgoingChunks = BoxStream<'static, proto::SnapshotChunk>;
/// The chunks of one snapshot as a receiver reads them: a transport failure
/// mid-stream is an error item.
pub type IncomingChunks = BoxStream<'static, Result<proto::SnapshotChunk, Status>>;
/// The replies of one AppendEntries stream, in message order.
pub type AppendReplies = BoxStream<'static, Result<proto::AppendReply, Status>>;

/// Carries peer messages from this node to the node at an address.
pub trait PeerTransport: fmt::Debug + Send + Sync + 'static {
    /// The deadlines callers apply to this transport's calls.
    fn options(&self) -> &PeerOptions;

    /// Sends `request` to `to` and waits for its reply (without deadline:
    /// the caller applies its own).
    fn unary(
        &self,
        to: &str,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerReply, Status>>;

    /// Streams one snapshot to `to`; the reply comes once the receiver has
    /// installed it.
    fn install_snapshot(
        &self,
        to: &str,
        chunks: OutgoingChunks,
    ) -> BoxFuture<'static, Result<proto::SnapshotReply, Status>>;

    /// Whether AppendEntries can travel as one bidirectional stream
    /// ([`Self::stream_append`]); otherwise each goes as a unary request and
    /// openraft pipelines nothing.
    fn streams_append(&self) -> bool {
        false
    }

    /// Opens an AppendEntries stream to `to`: one reply per message, in
    /// order. Only called when [`Self::streams_append`] is true.
    fn stream_append(
        &self,
        to: &str,
        messages: BoxStream<'static, proto::AppendRequest>,
    ) -> BoxFuture<'static, Result<AppendReplies, Status>> {
        let _ = messages;
        let refusal = Status::unimplemented(format!(
            "the transport to {to} carries no AppendEntries streams"
        ));
        async move { Err(refusal) }.boxed()
    }

    /// Forgets any connection state kept for `addr` (a member removed).
    fn forget(&self, addr: &str) {
        let _ = addr;
    }
}

/// The receiving side of the peer protocol, without a transport: what a
/// node answers to each message. The peer service implements it; a
/// transport delivers to it.
pub trait PeerEndpoint: Send + Sync + 'static {
    /// The reply to one request.
    fn handle_unary(&self, request: PeerRequest) -> BoxFuture<'static, Result<PeerReply, Status>>;

    /// Receives and installs one snapshot.
    fn handle_install_snapshot(
        &self,
        chunks: IncomingChunks,
    ) -> BoxFuture<'static, Result<proto::SnapshotReply, Status>>;
}

/// The status a caller gets from a peer that cannot be reached.
pub fn unreachable(to: &str) -> Status {
    Status::unavailable(format!("no peer listens at {to}"))
}

/// A transport within one process: each address names a [`PeerEndpoint`]
/// registered with [`LocalTransport::register`]. No faults, no delays; an
/// address with no endpoint is `UNAVAILABLE`, like a stopped process.
/// Cheap to clone; clones share the endpoints.
#[derive(Clone, Default)]
pub struct LocalTransport {
    endpoints: Arc<Mutex<HashMap<String, Arc<dyn PeerEndpoint>>>>,
    options: PeerOptions,
}

impl fmt::Debug for LocalTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut addrs: Vec<String> = self.lock().keys().cloned().collect();
        addrs.sort();
        f.debug_struct("LocalTransport")
            .field("endpoints", &addrs)
            .finish_non_exhaustive()
    }
}

impl LocalTransport {
    /// A transport with no endpoints whose callers use `options`.
    pub fn new(options: PeerOptions) -> LocalTransport {
        LocalTransport {
            endpoints: Arc::default(),
            options,
        }
    }

    /// Messages to `addr` go to `endpoint` from now on.
    pub fn register(&self, addr: &str, endpoint: Arc<dyn PeerEndpoint>) {
        self.lock().insert(addr.to_string(), endpoint);
    }

    /// Messages to `addr` find no one from now on (the node stopped).
    pub fn unregister(&self, addr: &str) {
        self.lock().remove(addr);
    }

    fn endpoint(&self, to: &str) -> Result<Arc<dyn PeerEndpoint>, Status> {
        self.lock().get(to).cloned().ok_or_else(|| unreachable(to))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn PeerEndpoint>>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PeerTransport for LocalTransport {
    fn options(&self) -> &PeerOptions {
        &self.options
    }

    fn unary(
        &self,
        to: &str,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerReply, Status>> {
        match self.endpoint(to) {
            Ok(endpoint) => endpoint.handle_unary(request),
            Err(status) => async move { Err(status) }.boxed(),
        }
    }

    fn install_snapshot(
        &self,
        to: &str,
        chunks: OutgoingChunks,
    ) -> BoxFuture<'static, Result<proto::SnapshotReply, Status>> {
        match self.endpoint(to) {
            Ok(endpoint) => endpoint.handle_install_snapshot(chunks.map(Ok).boxed()),
            Err(status) => async move { Err(status) }.boxed(),
        }
    }
}

/// The gRPC transport: one lazily connected channel per address.
impl PeerTransport for PeerChannels {
    fn options(&self) -> &PeerOptions {
        PeerChannels::options(self)
    }

    fn unary(
        &self,
        to: &str,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerReply, Status>> {
        let client = self.client(to);
        let to = to.to_string();
        async move {
            let mut client = client.map_err(|reason| bad_address(&to, &reason))?;
            let reply = match request {
                PeerRequest::Vote(m) => PeerReply::Vote(client.vote(m).await?.into_inner()),
                PeerRequest::PreVote(m) => PeerReply::Vote(client.pre_vote(m).await?.into_inner()),
                PeerRequest::Append(m) => {
                    PeerReply::Append(client.append_entries(m).await?.into_inner())
                }
                PeerRequest::TransferLeader(m) => {
                    PeerReply::TransferLeader(client.transfer_leader(m).await?.into_inner())
                }
                PeerRequest::FetchBlock(m) => {
                    PeerReply::FetchBlock(client.fetch_block(m).await?.into_inner())
                }
                PeerRequest::HeldLog(m) => {
                    PeerReply::HeldLog(client.held_log(m).await?.into_inner())
                }
            };
            Ok(reply)
        }
        .boxed()
    }

    fn install_snapshot(
        &self,
        to: &str,
        chunks: OutgoingChunks,
    ) -> BoxFuture<'static, Result<proto::SnapshotReply, Status>> {
        let client = self.client(to);
        let to = to.to_string();
        async move {
            let mut client = client.map_err(|reason| bad_address(&to, &reason))?;
            let chunks = Outgoing(chunks);
            Ok(client.install_snapshot(chunks).await?.into_inner())
        }
        .boxed()
    }

    fn streams_append(&self) -> bool {
        true
    }

    fn stream_append(
        &self,
        to: &str,
        messages: BoxStream<'static, proto::AppendRequest>,
    ) -> BoxFuture<'static, Result<AppendReplies, Status>> {
        let client = self.client(to);
        let to = to.to_string();
        async move {
            let mut client = client.map_err(|reason| bad_address(&to, &reason))?;
            let replies = client.stream_append(Outgoing(messages)).await?.into_inner();
            Ok(replies.boxed())
        }
        .boxed()
    }

    fn forget(&self, addr: &str) {
        PeerChannels::forget(self, addr);
    }
}

/// A boxed stream under a named type: handing tonic the box itself makes
/// the compiler prove `Send` for every lifetime of the trait object inside
/// tonic's future (a higher-ranked lifetime error); a concrete type does not.
struct Outgoing<T>(BoxStream<'static, T>);

impl<T> futures_util::Stream for Outgoing<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_next_unpin(cx)
    }
}

/// An address that is not a valid URI cannot be reached: `UNAVAILABLE`, so
/// openraft backs off rather than retrying at once.
fn bad_address(addr: &str, reason: &str) -> Status {
    Status::unavailable(format!("invalid peer address {addr:?}: {reason}"))
}

/// The reply had the wrong kind for its request: a transport bug or a peer
/// speaking nonsense, refused like a malformed message.
pub(crate) fn wrong_reply(request: &'static str, reply: &PeerReply) -> Status {
    Status::internal(format!("{request} was answered with a {}", reply.kind()))
}
