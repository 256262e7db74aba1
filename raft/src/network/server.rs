//! The server side of the peer network: [`PeerService`] answers every group
//! registered in its [`GroupRegistry`].
//!
//! A request names its group; an unknown group is `NOT_FOUND`. A message
//! that does not decode, or that no correct leader would send, is
//! `INVALID_ARGUMENT` and never reaches openraft. A stopped Raft is
//! `UNAVAILABLE`. Nothing a peer sends can panic the service.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use finkfs_seam::DiskRef;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use openraft::raft::AppendEntriesResponse;
use openraft::storage::RaftStateMachine;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use super::blocks::{self, BlockSource};
use super::convert::{self, AppendEntriesRequest, StreamAppendResult, WireError};
use super::proto::peer_server::{Peer, PeerServer};
use super::proto::{self};
use super::snapshot_file::SnapshotFile;
use super::transport::{IncomingChunks, PeerEndpoint, PeerReply, PeerRequest};
use super::{snapshot_recv, PEER_MESSAGE_BYTES_MAX, STREAM_IDLE_TIMEOUT};
use crate::log_store::VoteGate;
use crate::types::{GroupId, LogId, Raft, TypeConfig};

/// What the peer service knows of one group hosted by this process.
pub struct GroupHandle<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    raft: Raft<SM>,
    snapshot_disk: DiskRef,
    snapshot_dir: PathBuf,
    blocks: Option<Arc<dyn BlockSource>>,
    /// Why this node must not grant votes (its vote is lost or its log
    /// damaged), if so: Vote and PreVote are refused, so it never helps
    /// elect a leader on the strength of a log it cannot vouch for.
    vote_refusal: Option<String>,
    /// Decides, each time a Vote or PreVote comes, whether the log store
    /// lets this node vote (some reasons lift as the log grows back); hears
    /// the commit index of every AppendEntries for that.
    vote_gate: Option<Arc<VoteGate>>,
    /// Held while a snapshot is received and installed: one at a time.
    pub(crate) receiving: Arc<tokio::sync::Mutex<()>>,
}

impl<SM> GroupHandle<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    /// A group served by `raft`, receiving snapshots into
    /// `snapshot_dir/incoming/` on `snapshot_disk`.
    pub fn new(raft: Raft<SM>, snapshot_disk: DiskRef, snapshot_dir: PathBuf) -> Self {
        GroupHandle {
            raft,
            snapshot_disk,
            snapshot_dir,
            blocks: None,
            vote_refusal: None,
            vote_gate: None,
            receiving: Arc::default(),
        }
    }

    /// Refuses every Vote and PreVote of this group, saying `why`.
    pub fn refusing_votes(mut self, why: String) -> Self {
        self.vote_refusal = Some(why);
        self
    }

    /// Refuses Vote and PreVote while `gate` has a blocker, re-asked at
    /// every request.
    pub fn with_vote_gate(mut self, gate: Arc<VoteGate>) -> Self {
        self.vote_gate = Some(gate);
        self
    }

    /// The refusal as the peer sees it, when votes are refused to a
    /// candidate whose log ends at `candidate_last`.
    fn check_may_vote(&self, candidate_last: Option<&LogId>) -> Result<(), Status> {
        let gated = self
            .vote_gate
            .as_ref()
            .map(|gate| gate.blockers_for_candidate(candidate_last))
            .filter(|blockers| !blockers.is_empty())
            .map(|blockers| format!("{blockers:?}"));
        match self.vote_refusal.clone().or(gated) {
            None => Ok(()),
            Some(why) => Err(Status::failed_precondition(format!(
                "this node does not vote until repaired: {why}"
            ))),
        }
    }

    /// Tells the vote gate the commit index a leader sent.
    fn heard_leader_commit(&self, commit: Option<&LogId>) {
        if let Some(gate) = &self.vote_gate {
            gate.leader_commit(commit.map(|log_id| log_id.index));
        }
    }

    /// Serves FetchBlock for this group from `blocks`.
    pub fn with_block_source(mut self, blocks: Arc<dyn BlockSource>) -> Self {
        self.blocks = Some(blocks);
        self
    }

    /// The group's Raft node.
    pub fn raft(&self) -> &Raft<SM> {
        &self.raft
    }

    /// The disk received snapshots are written to.
    pub fn snapshot_disk(&self) -> &DiskRef {
        &self.snapshot_disk
    }

    /// The group's snapshot directory on that disk.
    pub fn snapshot_dir(&self) -> &std::path::Path {
        &self.snapshot_dir
    }
}

/// The groups this process hosts, by id.
pub struct GroupRegistry<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    groups: RwLock<BTreeMap<GroupId, Arc<GroupHandle<SM>>>>,
}

impl<SM> Default for GroupRegistry<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    fn default() -> Self {
        GroupRegistry {
            groups: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<SM> GroupRegistry<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hosts `group`; returns the handle it replaces, if any.
    pub fn insert(&self, group: GroupId, handle: GroupHandle<SM>) -> Option<Arc<GroupHandle<SM>>> {
        self.write().insert(group, Arc::new(handle))
    }

    /// Stops hosting `group`; later requests for it are `NOT_FOUND`.
    pub fn remove(&self, group: GroupId) -> Option<Arc<GroupHandle<SM>>> {
        self.write().remove(&group)
    }

    /// The handle of `group`.
    pub fn get(&self, group: GroupId) -> Option<Arc<GroupHandle<SM>>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&group)
            .cloned()
    }

    /// The ids of the hosted groups, in order.
    pub fn groups(&self) -> Vec<GroupId> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<GroupId, Arc<GroupHandle<SM>>>> {
        self.groups.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle of `group`, or the status a peer gets for a group this
    /// process does not host.
    pub(crate) fn require(&self, group: GroupId) -> Result<Arc<GroupHandle<SM>>, Status> {
        self.get(group)
            .ok_or_else(|| Status::not_found(format!("{group} is not hosted by this node")))
    }
}

/// The peer gRPC service of one process. Cheap to clone.
pub struct PeerService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    registry: Arc<GroupRegistry<SM>>,
    closing: Arc<watch::Sender<bool>>,
}

impl<SM> Clone for PeerService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    fn clone(&self) -> Self {
        PeerService {
            registry: Arc::clone(&self.registry),
            closing: Arc::clone(&self.closing),
        }
    }
}

impl<SM> PeerService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    /// A service answering for the groups of `registry`.
    pub fn new(registry: Arc<GroupRegistry<SM>>) -> Self {
        PeerService {
            registry,
            closing: Arc::new(watch::channel(false).0),
        }
    }

    /// The groups this service answers for.
    pub fn registry(&self) -> &Arc<GroupRegistry<SM>> {
        &self.registry
    }

    /// The tonic service, with the protocol's message ceilings.
    pub fn into_server(self) -> PeerServer<Self> {
        PeerServer::new(self)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
    }

    /// Ends every open AppendEntries stream (with `UNAVAILABLE`), so that a
    /// graceful shutdown does not wait on streams a peer keeps open.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    async fn closed(mut closing: watch::Receiver<bool>) {
        // An error means the sender is gone: nothing will close the streams.
        if closing.wait_for(|closing| *closing).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The status for a message that does not decode.
pub(crate) fn invalid(what: &str, error: &WireError) -> Status {
    tracing::warn!(%error, "refused a malformed {what}");
    Status::invalid_argument(format!("malformed {what}: {error}"))
}

/// The status for a Raft node that stopped.
pub(crate) fn stopped(error: &impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {error}"))
}

/// The reply to a unary AppendEntries, in the stream's terms.
fn unary_result(
    response: AppendEntriesResponse<TypeConfig>,
    prev: Option<LogId>,
    last: Option<LogId>,
) -> Result<StreamAppendResult, Status> {
    use openraft::raft::StreamAppendError;
    match response {
        AppendEntriesResponse::Success => Ok(Ok(last)),
        AppendEntriesResponse::PartialSuccess(matching) => Ok(Ok(matching)),
        AppendEntriesResponse::HigherVote(vote) => Ok(Err(StreamAppendError::HigherVote(vote))),
        AppendEntriesResponse::Conflict => match prev {
            Some(prev) => Ok(Err(StreamAppendError::Conflict(prev))),
            None => Err(Status::internal(
                "raft reported a conflict at the start of the log",
            )),
        },
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<proto::AppendReply, Status>> + Send + 'static>>;

/// The requests after the first of an AppendEntries stream; the first
/// malformed one ends them, its status kept in `failure`.
fn inbound_requests(
    inbound: Streaming<proto::AppendRequest>,
    group: GroupId,
    failure: Arc<Mutex<Option<Status>>>,
) -> impl Stream<Item = AppendEntriesRequest> + Send + 'static {
    futures_util::stream::unfold(inbound, move |mut inbound| {
        let failure = Arc::clone(&failure);
        async move {
            let outcome = match inbound.message().await {
                Ok(None) => return None,
                Ok(Some(message)) if message.group_id != group.0 => {
                    Err(Status::invalid_argument(format!(
                        "append stream of {group} carried a message for group {}",
                        message.group_id
                    )))
                }
                Ok(Some(message)) => convert::append_from_proto(message)
                    .map_err(|e| invalid("AppendEntries message", &e)),
                Err(status) => Err(status),
            };
            match outcome {
                Ok(request) => Some((request, inbound)),
                Err(status) => {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                    None
                }
            }
        }
    })
}

impl<SM> PeerService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    /// The reply to one request of the peer protocol, whatever carried it.
    pub async fn handle_unary(&self, request: PeerRequest) -> Result<PeerReply, Status> {
        match request {
            PeerRequest::Vote(message) => self.vote(message, false).await.map(PeerReply::Vote),
            PeerRequest::PreVote(message) => self.vote(message, true).await.map(PeerReply::Vote),
            PeerRequest::Append(message) => self.append(message).await.map(PeerReply::Append),
            PeerRequest::TransferLeader(message) => self
                .transfer_leader(message)
                .await
                .map(PeerReply::TransferLeader),
            PeerRequest::FetchBlock(message) => {
                let handle = self.registry.require(GroupId(message.group_id))?;
                blocks::serve(handle.blocks.clone(), &message.hash)
                    .await
                    .map(PeerReply::FetchBlock)
            }
            PeerRequest::HeldLog(message) => {
                let handle = self.registry.require(GroupId(message.group_id))?;
                let gate = handle.vote_gate.as_ref().ok_or_else(|| {
                    Status::unimplemented("this group does not report its log's extent")
                })?;
                // Entries held and purged, and entries accepted but not yet
                // flushed: an answer too high only keeps the asker out of
                // elections a little longer.
                let last = gate.held_last();
                Ok(PeerReply::HeldLog(proto::HeldLogReply {
                    last_log_id: convert::log_id_to_proto(last.as_ref()),
                }))
            }
        }
    }

    /// Receives one snapshot and installs it, whatever carried the chunks.
    pub async fn handle_install_snapshot(
        &self,
        chunks: IncomingChunks,
    ) -> Result<proto::SnapshotReply, Status> {
        snapshot_recv::receive(Arc::clone(&self.registry), chunks).await
    }

    async fn vote(
        &self,
        message: proto::VoteRequest,
        pre_vote: bool,
    ) -> Result<proto::VoteReply, Status> {
        let handle = self.registry.require(GroupId(message.group_id))?;
        let what = if pre_vote {
            "pre-vote request"
        } else {
            "vote request"
        };
        let vote_request =
            convert::vote_request_from_proto(message).map_err(|e| invalid(what, &e))?;
        handle.check_may_vote(vote_request.last_log_id.as_ref())?;
        let response = if pre_vote {
            handle.raft.pre_vote(vote_request).await
        } else {
            handle.raft.vote(vote_request).await
        };
        let response = response.map_err(|e| stopped(&e))?;
        Ok(convert::vote_reply_to_proto(&response))
    }

    async fn append(&self, message: proto::AppendRequest) -> Result<proto::AppendReply, Status> {
        let handle = self.registry.require(GroupId(message.group_id))?;
        let append = convert::append_from_proto(message)
            .map_err(|e| invalid("AppendEntries message", &e))?;
        let prev = append.prev_log_id;
        let last = append.entries.last().map(|e| e.log_id).or(prev);
        handle.heard_leader_commit(append.leader_commit.as_ref());
        let response = handle
            .raft
            .append_entries(append)
            .await
            .map_err(|e| stopped(&e))?;
        let result = unary_result(response, prev, last)?;
        Ok(convert::append_reply_to_proto(&result))
    }

    async fn transfer_leader(
        &self,
        message: proto::TransferLeaderRequest,
    ) -> Result<proto::TransferLeaderReply, Status> {
        let handle = self.registry.require(GroupId(message.group_id))?;
        let transfer = convert::transfer_request_from_proto(message)
            .map_err(|e| invalid("TransferLeader request", &e))?;
        let response = handle
            .raft
            .handle_transfer_leader(transfer)
            .await
            .map_err(|e| stopped(&e))?;
        Ok(convert::transfer_reply_to_proto(&response))
    }
}

/// Delivery within a process ([`super::LocalTransport`], the simulator).
impl<SM> PeerEndpoint for PeerService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    fn handle_unary(&self, request: PeerRequest) -> BoxFuture<'static, Result<PeerReply, Status>> {
        let service = self.clone();
        async move { PeerService::handle_unary(&service, request).await }.boxed()
    }

    fn handle_install_snapshot(
        &self,
        chunks: IncomingChunks,
    ) -> BoxFuture<'static, Result<proto::SnapshotReply, Status>> {
        let service = self.clone();
        async move { PeerService::handle_install_snapshot(&service, chunks).await }.boxed()
    }
}

/// The gRPC face of the service: each call unwraps its request and runs the
/// transport-free handler above.
#[tonic::async_trait]
impl<SM> Peer for PeerService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    async fn vote(
        &self,
        request: Request<proto::VoteRequest>,
    ) -> Result<Response<proto::VoteReply>, Status> {
        PeerService::vote(self, request.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn pre_vote(
        &self,
        request: Request<proto::VoteRequest>,
    ) -> Result<Response<proto::VoteReply>, Status> {
        PeerService::vote(self, request.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn append_entries(
        &self,
        request: Request<proto::AppendRequest>,
    ) -> Result<Response<proto::AppendReply>, Status> {
        self.append(request.into_inner()).await.map(Response::new)
    }

    type StreamAppendStream = ReplyStream;

    async fn stream_append(
        &self,
        request: Request<Streaming<proto::AppendRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let mut inbound = request.into_inner();
        let first = match tokio::time::timeout(STREAM_IDLE_TIMEOUT, inbound.message()).await {
            Err(_) => {
                return Err(Status::deadline_exceeded(
                    "no AppendEntries message arrived",
                ))
            }
            Ok(Err(status)) => return Err(status),
            Ok(Ok(None)) => return Ok(Response::new(Box::pin(futures_util::stream::empty()))),
            Ok(Ok(Some(first))) => first,
        };
        let group = GroupId(first.group_id);
        let handle = self.registry.require(group)?;
        let first =
            convert::append_from_proto(first).map_err(|e| invalid("AppendEntries message", &e))?;
        let failure = Arc::new(Mutex::new(None));
        let rest = inbound_requests(inbound, group, Arc::clone(&failure));
        let hearing = Arc::clone(&handle);
        let input = futures_util::stream::once(async move { first })
            .chain(rest)
            .inspect(move |append| hearing.heard_leader_commit(append.leader_commit.as_ref()));
        let replies = handle.raft.stream_append(input).map(|result| match result {
            Ok(result) => Ok(convert::append_reply_to_proto(&result)),
            Err(fatal) => Err(stopped(&fatal)),
        });
        let closing = self.closing.subscribe();
        let closing_now = self.closing.subscribe();
        let tail = futures_util::stream::once(async move {
            if *closing_now.borrow() {
                return Some(Status::unavailable("peer service is shutting down"));
            }
            failure.lock().unwrap_or_else(|e| e.into_inner()).take()
        })
        .filter_map(|status| async move { status.map(Err) });
        let replies = replies.take_until(Self::closed(closing)).chain(tail);
        Ok(Response::new(Box::pin(replies)))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<proto::SnapshotChunk>>,
    ) -> Result<Response<proto::SnapshotReply>, Status> {
        self.handle_install_snapshot(request.into_inner().boxed())
            .await
            .map(Response::new)
    }

    async fn transfer_leader(
        &self,
        request: Request<proto::TransferLeaderRequest>,
    ) -> Result<Response<proto::TransferLeaderReply>, Status> {
        PeerService::transfer_leader(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn fetch_block(
        &self,
        request: Request<proto::FetchBlockRequest>,
    ) -> Result<Response<proto::FetchBlockReply>, Status> {
        PeerService::handle_unary(self, PeerRequest::FetchBlock(request.into_inner()))
            .await
            .and_then(|reply| match reply {
                PeerReply::FetchBlock(reply) => Ok(Response::new(reply)),
                other => Err(super::transport::wrong_reply("FetchBlock", &other)),
            })
    }

    async fn held_log(
        &self,
        request: Request<proto::HeldLogRequest>,
    ) -> Result<Response<proto::HeldLogReply>, Status> {
        PeerService::handle_unary(self, PeerRequest::HeldLog(request.into_inner()))
            .await
            .and_then(|reply| match reply {
                PeerReply::HeldLog(reply) => Ok(Response::new(reply)),
                other => Err(super::transport::wrong_reply("HeldLog", &other)),
            })
    }
}
