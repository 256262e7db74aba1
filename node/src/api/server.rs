//! [`ClientService`]: the tonic service of the client protocol, and what
//! its calls share: the Raft node, the object reader, the batcher.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use finkfs_raft::types::{AppCommand, GroupId, NodeId, Raft, TypeConfig};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::storage::RaftStateMachine;
use openraft::{ChangeMembers, ReadPolicy};
use tonic::{Request, Response, Status, Streaming};

use super::batcher::Batcher;
use super::commands;
use super::errors::{forward, not_member, read_error, write_error};
use super::member::MemberAddr;
use super::proto::client_server::{Client, ClientServer};
use super::proto::{self};
use super::put_many::PutManyStream;
use super::reads::GetStream;
use super::{
    cluster, put, put_many, reads, CLIENT_MESSAGE_BYTES_MAX, OBJECT_BYTES_MAX_DEFAULT,
    READ_TIMEOUT_DEFAULT, WRITE_TIMEOUT_DEFAULT,
};
use crate::backup::BackupState;
use crate::command::{Command, Outcome};
use crate::reader::ObjectReader;

/// Settings of the client service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiOptions {
    /// Largest object a Put accepts.
    pub object_bytes_max: u64,
    /// Longest wait for a proposal to be committed and applied; past it the
    /// call fails with UNAVAILABLE (the write may still take effect).
    pub write_timeout: Duration,
    /// Longest wait for a read barrier.
    pub read_timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> ApiOptions {
        ApiOptions {
            object_bytes_max: OBJECT_BYTES_MAX_DEFAULT,
            write_timeout: WRITE_TIMEOUT_DEFAULT,
            read_timeout: READ_TIMEOUT_DEFAULT,
        }
    }
}

/// Counters of the client service, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct ApiCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    put_bytes: AtomicU64,
    get_bytes: AtomicU64,
    batches: AtomicU64,
    batched_commands: AtomicU64,
}

/// A snapshot of [`ApiCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiCounts {
    /// Client calls received.
    pub requests: u64,
    /// Client calls (and PutMany objects) that failed.
    pub errors: u64,
    /// Object bytes stored by acknowledged puts.
    pub put_bytes: u64,
    /// Object bytes sent by gets.
    pub get_bytes: u64,
    /// Batch entries proposed.
    pub batches: u64,
    /// Commands carried by them.
    pub batched_commands: u64,
}

impl ApiCounters {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn put_bytes(&self, bytes: u64) {
        self.put_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(crate) fn get_bytes(&self, bytes: u64) {
        self.get_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(crate) fn batch(&self, commands: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_commands.fetch_add(commands, Ordering::Relaxed);
    }

    /// The current values.
    pub fn counts(&self) -> ApiCounts {
        ApiCounts {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            put_bytes: self.put_bytes.load(Ordering::Relaxed),
            get_bytes: self.get_bytes.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batched_commands: self.batched_commands.load(Ordering::Relaxed),
        }
    }
}

/// Proposes commands and waits for their outcome, within the write timeout.
pub(crate) struct Proposer<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    id: NodeId,
    raft: Raft<SM>,
    write_timeout: Duration,
}

impl<SM> Clone for Proposer<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    fn clone(&self) -> Self {
        Proposer {
            id: self.id,
            raft: self.raft.clone(),
            write_timeout: self.write_timeout,
        }
    }
}

impl<SM> Proposer<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    /// Proposes `ops` as one entry (a batch when there are several); one
    /// outcome per op and the entry's index.
    pub(crate) async fn propose(
        &self,
        commands: Vec<Command>,
    ) -> Result<(Vec<Outcome>, u64), Status> {
        let count = commands.len();
        let command: AppCommand = commands::encode(commands)?;
        let write = self.raft.client_write(command);
        let response = tokio::time::timeout(self.write_timeout, write)
            .await
            .map_err(|_| {
                Status::unavailable(format!(
                    "not committed within {:?} (is a quorum up?); the write may still take effect",
                    self.write_timeout
                ))
            })?
            .map_err(|e| write_error(self.id, &e))?;
        let outcomes = commands::decode(&response.data, count)?;
        Ok((outcomes, response.log_id.index))
    }
}

/// What every call of one service shares.
pub(crate) struct Shared<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    pub(crate) id: NodeId,
    pub(crate) group: GroupId,
    pub(crate) raft: Raft<SM>,
    pub(crate) reader: ObjectReader,
    pub(crate) me: MemberAddr,
    pub(crate) options: ApiOptions,
    pub(crate) proposer: Proposer<SM>,
    pub(crate) batcher: Batcher,
    /// Why the node may not vote, as the log store's gate says now.
    pub(crate) vote_blockers: tokio::sync::watch::Receiver<Vec<String>>,
    pub(crate) counters: Arc<ApiCounters>,
    /// The automatic backups' outcome, when they are on.
    pub(crate) backup: std::sync::OnceLock<Arc<BackupState>>,
    /// Repairs damaged blocks a read meets, when set.
    pub(crate) read_repair: std::sync::OnceLock<crate::repair::ReadRepair>,
}

impl<SM> Shared<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    /// Ok when this node is a member of a cluster.
    fn require_member(&self) -> Result<(), Status> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        if metrics
            .membership_config
            .membership()
            .get_node(&self.id)
            .is_none()
        {
            return Err(not_member(self.id));
        }
        Ok(())
    }

    /// Ok when this node leads; otherwise the answer that redirects the
    /// client.
    pub(crate) fn require_leader(&self) -> Result<(), Status> {
        self.require_member()?;
        match self.raft.as_leader() {
            Ok(_) => Ok(()),
            Err(f) => Err(forward(self.id, &f)),
        }
    }

    /// Waits until a read started now sees every write acknowledged
    /// before: this node still leads and applied the commit index.
    pub(crate) async fn read_barrier(&self) -> Result<(), Status> {
        self.require_leader()?;
        let barrier = self.raft.ensure_linearizable(ReadPolicy::ReadIndex);
        tokio::time::timeout(self.options.read_timeout, barrier)
            .await
            .map_err(|_| {
                Status::unavailable(format!(
                    "leadership not confirmed within {:?} (is a quorum up?)",
                    self.options.read_timeout
                ))
            })?
            .map_err(|e| read_error(self.id, &e))?;
        Ok(())
    }

    /// Proposes `ops` directly (not batched).
    pub(crate) async fn propose(
        &self,
        commands: Vec<Command>,
    ) -> Result<(Vec<Outcome>, u64), Status> {
        self.proposer.propose(commands).await
    }

    /// Runs a membership call within the write timeout.
    pub(crate) async fn with_write_timeout<F: Future>(&self, call: F) -> Result<F::Output, Status> {
        tokio::time::timeout(self.options.write_timeout, call)
            .await
            .map_err(|_| {
                Status::unavailable(format!(
                    "not committed within {:?} (is a quorum up?)",
                    self.options.write_timeout
                ))
            })
    }
}

/// The client gRPC service of one group on one node. Cheap to clone.
pub struct ClientService<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    shared: Arc<Shared<SM>>,
}

impl<SM> Clone for ClientService<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    fn clone(&self) -> Self {
        ClientService {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<SM> ClientService<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    /// Reports the automatic backups' outcome in the Status call (once).
    pub fn show_backup_status(&self, state: Arc<BackupState>) {
        let _ = self.shared.backup.set(state);
    }

    /// Repairs damaged blocks that reads meet through `repair` (once):
    /// without it a damaged block is DATA_LOSS even when a peer holds it.
    pub fn repair_reads(&self, repair: crate::repair::ReadRepair) {
        let _ = self.shared.read_repair.set(repair);
    }

    /// Stores one whole object of at most [`super::PUT_MANY_OBJECT_BYTES_MAX`]
    /// bytes, as one object of a PutMany stream would be: the same path and
    /// size checks, the same batcher and proposer, the same reply. For
    /// callers in the node's own process (the simulator), which have no
    /// gRPC stream to hand to [`Client::put`].
    pub async fn put_bytes(
        &self,
        path: String,
        data: bytes::Bytes,
    ) -> Result<proto::PutReply, Status> {
        let result = match self.shared.require_leader() {
            Ok(()) => {
                let request = proto::PutManyRequest {
                    path,
                    data,
                    expected_blake3: None,
                };
                put_many::store(&self.shared, request).await
            }
            Err(status) => Err(status),
        };
        self.counted(result).map(Response::into_inner)
    }

    /// The service of node `id` in `group`: writes go through `raft`, reads
    /// through `reader`; `me` are the addresses this node advertises;
    /// `vote_blockers` say why it may not vote (shown in Status). Starts the
    /// batching task, so it must be called inside a tokio runtime.
    pub fn new(
        id: NodeId,
        group: GroupId,
        raft: Raft<SM>,
        reader: ObjectReader,
        me: MemberAddr,
        options: ApiOptions,
        vote_blockers: tokio::sync::watch::Receiver<Vec<String>>,
    ) -> ClientService<SM> {
        let counters = Arc::new(ApiCounters::default());
        let proposer = Proposer {
            id,
            raft: raft.clone(),
            write_timeout: options.write_timeout,
        };
        let batcher = Batcher::start(proposer.clone(), Arc::clone(&counters));
        let shared = Shared {
            id,
            group,
            raft,
            reader,
            me,
            options,
            proposer,
            batcher,
            vote_blockers,
            counters,
            backup: std::sync::OnceLock::new(),
            read_repair: std::sync::OnceLock::new(),
        };
        ClientService {
            shared: Arc::new(shared),
        }
    }

    /// The service's counters.
    pub fn counters(&self) -> Arc<ApiCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// The tonic service, with the protocol's message ceilings.
    pub fn into_server(self) -> ClientServer<Self> {
        ClientServer::new(self)
            .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
    }

    /// Counts a call and its failure.
    fn counted<T>(&self, result: Result<T, Status>) -> Result<Response<T>, Status> {
        self.shared.counters.request();
        match result {
            Ok(value) => Ok(Response::new(value)),
            Err(status) => {
                self.shared.counters.error();
                tracing::debug!(code = ?status.code(), message = status.message(), "client call failed");
                Err(status)
            }
        }
    }
}

#[tonic::async_trait]
impl<SM> Client for ClientService<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    async fn put(
        &self,
        request: Request<Streaming<proto::PutRequest>>,
    ) -> Result<Response<proto::PutReply>, Status> {
        let result = put::put(&self.shared, request.into_inner()).await;
        self.counted(result)
    }

    type PutManyStream = PutManyStream;

    async fn put_many(
        &self,
        request: Request<Streaming<proto::PutManyRequest>>,
    ) -> Result<Response<PutManyStream>, Status> {
        let result = put_many::put_many(Arc::clone(&self.shared), request.into_inner());
        self.counted(result)
    }

    type GetStream = GetStream;

    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<GetStream>, Status> {
        let result = reads::get(Arc::clone(&self.shared), request.into_inner()).await;
        self.counted(result)
    }

    async fn stat(
        &self,
        request: Request<proto::StatRequest>,
    ) -> Result<Response<proto::StatReply>, Status> {
        let path = request.into_inner().path;
        let result = reads::stat(&self.shared, &path)
            .await
            .map(|object| proto::StatReply {
                object: Some(object),
            });
        self.counted(result)
    }

    async fn list(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListReply>, Status> {
        let result = reads::list(&self.shared, request.into_inner()).await;
        self.counted(result)
    }

    async fn delete(
        &self,
        request: Request<proto::DeleteRequest>,
    ) -> Result<Response<proto::DeleteReply>, Status> {
        let result = delete(&self.shared, request.into_inner().path).await;
        self.counted(result)
    }

    async fn status(
        &self,
        _request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusReply>, Status> {
        self.counted(Ok(cluster::status(&self.shared)))
    }

    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyReply>, Status> {
        let result = super::verify::verify(&self.shared, request.into_inner()).await;
        self.counted(result)
    }

    async fn init(
        &self,
        request: Request<proto::InitRequest>,
    ) -> Result<Response<proto::MembershipReply>, Status> {
        let result = cluster::init(&self.shared, request.into_inner().members).await;
        self.counted(result)
    }

    async fn add_learner(
        &self,
        request: Request<proto::AddLearnerRequest>,
    ) -> Result<Response<proto::MembershipReply>, Status> {
        let request = request.into_inner();
        let result = cluster::add_learner(&self.shared, request.member, request.blocking).await;
        self.counted(result)
    }

    async fn promote(
        &self,
        request: Request<proto::PromoteRequest>,
    ) -> Result<Response<proto::MembershipReply>, Status> {
        let ids = request.into_inner().ids.into_iter().collect();
        let change = ChangeMembers::AddVoterIds(ids);
        let result = cluster::change(&self.shared, change, true).await;
        self.counted(result)
    }

    async fn change_membership(
        &self,
        request: Request<proto::ChangeMembershipRequest>,
    ) -> Result<Response<proto::MembershipReply>, Status> {
        let request = request.into_inner();
        let voters: std::collections::BTreeSet<NodeId> = request.voter_ids.into_iter().collect();
        let result = if voters.is_empty() {
            Err(Status::invalid_argument(
                "a cluster needs at least one voter",
            ))
        } else {
            let change = ChangeMembers::ReplaceAllVoters(voters);
            cluster::change(&self.shared, change, request.retain).await
        };
        self.counted(result)
    }

    async fn remove(
        &self,
        request: Request<proto::RemoveRequest>,
    ) -> Result<Response<proto::MembershipReply>, Status> {
        let result = cluster::remove(&self.shared, request.into_inner().ids).await;
        self.counted(result)
    }
}

/// Removes the object at `path`; a missing object is not an error.
async fn delete<SM>(shared: &Shared<SM>, path: String) -> Result<proto::DeleteReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    crate::object_path::check_object_path(&path)
        .map_err(|problem| super::errors::bad_path(&path, &problem))?;
    shared.require_leader()?;
    let applied = shared.batcher.submit(Command::Delete { path }).await?;
    let existed = commands::deleted(&applied.outcome)?;
    Ok(proto::DeleteReply {
        existed,
        log_index: applied.log_index,
    })
}
