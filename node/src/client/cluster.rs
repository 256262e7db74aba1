//! Cluster calls of the client library: status and membership.

use super::{within, Client, ClientError, Reach};
use crate::api::proto::{
    AddLearnerRequest, ChangeMembershipRequest, InitRequest, MemberSpec, MembershipReply,
    PromoteRequest, RemoveRequest, StatusReply, StatusRequest, VerifyReply, VerifyRequest,
};

/// Longest wait for one page of Verify: the node reads every block of the
/// page's objects first.
pub const VERIFY_PAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl Client {
    /// The status of the first node that answers, preferring the leader
    /// (whose reply carries every member's replication health).
    pub async fn status(&self) -> Result<StatusReply, ClientError> {
        let timeout = self.options().request_timeout;
        let reply = self
            .call(Reach::Any, |mut grpc| async move {
                within(timeout, grpc.status(StatusRequest {})).await
            })
            .await?;
        self.learn_from_status(&reply);
        Ok(reply)
    }

    /// The status of the node at `addr` (a client address), asked directly.
    pub async fn status_of(&self, addr: &str) -> Result<StatusReply, ClientError> {
        let timeout = self.options().request_timeout;
        let mut grpc = self.grpc(addr)?;
        within(timeout, grpc.status(StatusRequest {}))
            .await
            .map_err(|status| ClientError::Status {
                addr: addr.to_string(),
                status: Box::new(status),
                attempts: 1,
                elapsed: std::time::Duration::ZERO,
            })
    }

    /// One page of the node at `addr`'s own copies, verified block by block
    /// (objects after `start_after`, at most `limit`; 0 for the default).
    pub async fn verify_page(
        &self,
        addr: &str,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<VerifyReply, ClientError> {
        let mut grpc = self.grpc(addr)?;
        let request = VerifyRequest { start_after, limit };
        within(VERIFY_PAGE_TIMEOUT, grpc.verify(request))
            .await
            .map_err(|status| ClientError::Status {
                addr: addr.to_string(),
                status: Box::new(status),
                attempts: 1,
                elapsed: std::time::Duration::ZERO,
            })
    }

    /// Creates a cluster of `members` (empty: the node alone), sent to the
    /// node at `addr`, which must be one of them and not yet initialized.
    pub async fn init_at(
        &self,
        addr: &str,
        members: Vec<MemberSpec>,
    ) -> Result<MembershipReply, ClientError> {
        let timeout = self.options().request_timeout;
        let mut grpc = self.grpc(addr)?;
        within(timeout, grpc.init(InitRequest { members }))
            .await
            .map_err(|status| ClientError::Status {
                addr: addr.to_string(),
                status: Box::new(status),
                attempts: 1,
                elapsed: std::time::Duration::ZERO,
            })
    }

    /// Adds `member` as a learner; with `blocking`, returns once it caught up.
    pub async fn add_learner(
        &self,
        member: MemberSpec,
        blocking: bool,
    ) -> Result<MembershipReply, ClientError> {
        let timeout = self.options().request_timeout;
        let request = AddLearnerRequest {
            member: Some(member),
            blocking,
        };
        self.call(Reach::Leader, |mut grpc| {
            let request = request.clone();
            async move { within(timeout, grpc.add_learner(request)).await }
        })
        .await
    }

    /// Makes the learners `ids` voters.
    pub async fn promote(&self, ids: Vec<u64>) -> Result<MembershipReply, ClientError> {
        let timeout = self.options().request_timeout;
        let request = PromoteRequest { ids };
        self.call(Reach::Leader, |mut grpc| {
            let request = request.clone();
            async move { within(timeout, grpc.promote(request)).await }
        })
        .await
    }

    /// Replaces the voters with `voter_ids`; `retain` keeps removed voters
    /// as learners.
    pub async fn change_membership(
        &self,
        voter_ids: Vec<u64>,
        retain: bool,
    ) -> Result<MembershipReply, ClientError> {
        let timeout = self.options().request_timeout;
        let request = ChangeMembershipRequest { voter_ids, retain };
        self.call(Reach::Leader, |mut grpc| {
            let request = request.clone();
            async move { within(timeout, grpc.change_membership(request)).await }
        })
        .await
    }

    /// Removes the members `ids`.
    pub async fn remove(&self, ids: Vec<u64>) -> Result<MembershipReply, ClientError> {
        let timeout = self.options().request_timeout;
        let request = RemoveRequest { ids };
        self.call(Reach::Leader, |mut grpc| {
            let request = request.clone();
            async move { within(timeout, grpc.remove(request)).await }
        })
        .await
    }
}
