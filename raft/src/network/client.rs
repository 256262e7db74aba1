//! The client side of the peer network: openraft's network factory for one
//! group ([`PeerNetwork`]) and the connection to one target
//! ([`PeerConnection`]) that implements `RaftNetworkV2`.
//!
//! Channels are cached per address in [`PeerChannels`] and shared by every
//! group of the process: openraft asks the factory for a new client at every
//! election and replication restart, and those must not dial anew. A channel
//! connects lazily and reconnects by itself; a call on a channel that cannot
//! connect fails at once with `UNAVAILABLE`, which openraft sees as
//! `Unreachable` and backs off from.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{RPCError, ReplicationClosed, StreamingError};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::{OptionalSend, RPCTypes};
use tonic::transport::{Channel, Endpoint};

use super::convert::{
    self, AppendEntriesRequest, SnapshotResponse, StreamAppendResult, VoteRequest, VoteResponse,
};
use super::error::{status_to_rpc_error, timeout_error, wire_to_rpc_error};
use super::proto::peer_client::PeerClient as GrpcPeerClient;
use super::snapshot_file::SnapshotFile;
use super::transport::{wrong_reply, PeerReply, PeerRequest, PeerTransport};
use super::{snapshot_send, stream_append, PEER_MESSAGE_BYTES_MAX};
use crate::types::{GroupId, Node, NodeId, Snapshot, TypeConfig, Vote};

/// The generated gRPC client of the peer service.
pub(crate) type GrpcClient = GrpcPeerClient<Channel>;
/// An openraft network error.
pub(crate) type RpcError = RPCError<TypeConfig>;

/// Default time to establish a TCP connection to a peer.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
/// Default least time a reply to a message carrying entries is waited for:
/// openraft's per-RPC time to live is derived from the heartbeat interval
/// (tens of milliseconds), shorter than a follower may need to write and
/// fsync a full message.
pub const RESPONSE_TIMEOUT_FLOOR_DEFAULT: Duration = Duration::from_secs(2);
/// Default longest wait for a snapshot receiver to install the snapshot
/// after its last chunk (the state machine may fetch blocks meanwhile).
pub const SNAPSHOT_INSTALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30 * 60);
/// Default longest wait for one FetchBlock reply.
pub const FETCH_BLOCK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Interval of HTTP/2 keepalive pings on peer connections.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a keepalive ping may go unanswered before the connection is
/// considered dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Timeouts of the peer network's client side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOptions {
    /// Time to establish a TCP connection.
    pub connect_timeout: Duration,
    /// Least time a reply carrying an AppendEntries result or a snapshot
    /// chunk's progress is waited for; openraft's RPC option is used when
    /// it is longer.
    pub response_timeout_floor: Duration,
    /// Longest wait for the receiver to install a snapshot after its last
    /// chunk.
    pub snapshot_install_timeout: Duration,
    /// Longest wait for one FetchBlock reply.
    pub fetch_block_timeout: Duration,
}

impl Default for PeerOptions {
    fn default() -> PeerOptions {
        PeerOptions {
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            response_timeout_floor: RESPONSE_TIMEOUT_FLOOR_DEFAULT,
            snapshot_install_timeout: SNAPSHOT_INSTALL_TIMEOUT_DEFAULT,
            fetch_block_timeout: FETCH_BLOCK_TIMEOUT_DEFAULT,
        }
    }
}

/// The gRPC channels of a process to its peers, one per address, shared by
/// every group. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    options: PeerOptions,
}

impl PeerChannels {
    /// An empty cache whose channels and calls use `options`.
    pub fn new(options: PeerOptions) -> PeerChannels {
        PeerChannels {
            channels: Arc::default(),
            options,
        }
    }

    /// The timeouts of this process's peer calls.
    pub fn options(&self) -> &PeerOptions {
        &self.options
    }

    /// The channel to `addr` (`host:port`), created (not connected) on first
    /// use. Must be called inside a tokio runtime.
    pub fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(self.options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// A gRPC client on the channel to `addr`, with the protocol's message
    /// ceilings.
    pub(crate) fn client(&self, addr: &str) -> Result<GrpcClient, String> {
        Ok(GrpcPeerClient::new(self.channel(addr)?)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX))
    }

    /// Drops the cached channel to `addr` (a member removed or moved).
    pub fn forget(&self, addr: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addr);
    }
}

/// openraft's network factory for one group on one node.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    id: NodeId,
    group: GroupId,
    transport: Arc<dyn PeerTransport>,
}

impl PeerNetwork {
    /// The network of node `id` in `group`, over gRPC `channels`.
    pub fn new(id: NodeId, group: GroupId, channels: PeerChannels) -> PeerNetwork {
        PeerNetwork::over(id, group, Arc::new(channels))
    }

    /// The network of node `id` in `group`, over any transport.
    pub fn over(id: NodeId, group: GroupId, transport: Arc<dyn PeerTransport>) -> PeerNetwork {
        PeerNetwork {
            id,
            group,
            transport,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerConnection {
        PeerConnection {
            id: self.id,
            target,
            addr: node.addr.clone(),
            group: self.group,
            options: self.transport.options().clone(),
            transport: Arc::clone(&self.transport),
        }
    }
}

/// The connection of one node to one target in one group.
#[derive(Debug)]
pub struct PeerConnection {
    pub(crate) id: NodeId,
    pub(crate) target: NodeId,
    pub(crate) addr: String,
    pub(crate) group: GroupId,
    pub(crate) transport: Arc<dyn PeerTransport>,
    pub(crate) options: PeerOptions,
}

impl PeerConnection {
    /// How long to wait for a reply that may follow a disk write.
    pub(crate) fn response_timeout(&self, option: &RPCOption) -> Duration {
        option.soft_ttl().max(self.options.response_timeout_floor)
    }

    /// Sends one unary request under `timeout`; `action` names it in a
    /// timeout error.
    async fn call(
        &self,
        action: RPCTypes,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerReply, RpcError> {
        tokio::time::timeout(timeout, self.transport.unary(&self.addr, request))
            .await
            .map_err(|_| timeout_error(action, self.id, self.target, timeout))?
            .map_err(|status| status_to_rpc_error(&status))
    }

    async fn call_vote(
        &mut self,
        request: VoteRequest,
        option: RPCOption,
        pre_vote: bool,
    ) -> Result<VoteResponse, RpcError> {
        let message = convert::vote_request_to_proto(self.group.0, &request);
        let request = if pre_vote {
            PeerRequest::PreVote(message)
        } else {
            PeerRequest::Vote(message)
        };
        let kind = request.kind();
        // A vote is fsynced by the voter before it replies.
        let timeout = self.response_timeout(&option);
        match self.call(RPCTypes::Vote, request, timeout).await? {
            PeerReply::Vote(reply) => {
                convert::vote_reply_from_proto(reply).map_err(|e| wire_to_rpc_error(&e))
            }
            other => Err(status_to_rpc_error(&wrong_reply(kind, &other))),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = SnapshotFile;

    /// Sends one AppendEntries message. A request above the message ceiling
    /// sends only its first part and reports `PartialSuccess`, which openraft
    /// follows with the rest.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<openraft::raft::AppendEntriesResponse<TypeConfig>, RpcError> {
        use openraft::raft::AppendEntriesResponse;
        let mut messages =
            convert::split_append(self.group.0, &rpc).map_err(|e| wire_to_rpc_error(&e))?;
        let parts = messages.len();
        let message = messages.swap_remove(0);
        let request_last = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        let timeout = self.response_timeout(&option);
        let request = PeerRequest::Append(message);
        let reply = match self.call(RPCTypes::AppendEntries, request, timeout).await? {
            PeerReply::Append(reply) => reply,
            other => return Err(status_to_rpc_error(&wrong_reply("AppendEntries", &other))),
        };
        let result = convert::append_reply_from_proto(reply).map_err(|e| wire_to_rpc_error(&e))?;
        Ok(match result {
            Ok(matching) if parts == 1 && matching == request_last => {
                AppendEntriesResponse::Success
            }
            Ok(matching) => AppendEntriesResponse::PartialSuccess(matching),
            Err(openraft::raft::StreamAppendError::Conflict(_)) => AppendEntriesResponse::Conflict,
            Err(openraft::raft::StreamAppendError::HigherVote(vote)) => {
                AppendEntriesResponse::HigherVote(vote)
            }
        })
    }

    /// AppendEntries over one bidirectional stream when the transport has
    /// them (see `stream_append` for the ordering and timeout rules);
    /// otherwise one unary request at a time, as openraft does by default.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult, RpcError>>, RpcError>>
    where
        S: Stream<Item = AppendEntriesRequest> + OptionalSend + Unpin + 'static,
    {
        if !self.transport.streams_append() {
            return openraft::network::stream_append_sequential(self, input, option);
        }
        Box::pin(stream_append::open(self, input, option))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        self.call_vote(rpc, option, false).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        self.call_vote(rpc, option, true).await
    }

    async fn transfer_leader(
        &mut self,
        req: convert::TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<convert::TransferLeaderResponse, RpcError> {
        let message = convert::transfer_request_to_proto(self.group.0, &req);
        let timeout = self.response_timeout(&option);
        let request = PeerRequest::TransferLeader(message);
        match self
            .call(RPCTypes::TransferLeader, request, timeout)
            .await?
        {
            PeerReply::TransferLeader(reply) => {
                convert::transfer_reply_from_proto(reply).map_err(|e| wire_to_rpc_error(&e))
            }
            other => Err(status_to_rpc_error(&wrong_reply("TransferLeader", &other))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig>> {
        snapshot_send::send(self, vote, snapshot, cancel, option).await
    }
}
