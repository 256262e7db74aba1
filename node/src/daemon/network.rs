//! The node's view of the peer network: members carry two addresses in
//! their openraft `Node` (see [`MemberAddr`]); the peer network dials the
//! peer one, and snapshot installs fetch blocks from the members' peer
//! services.

use std::sync::{Arc, OnceLock};

use finkfs_raft::network::{PeerClient, PeerConnection, PeerNetwork};
use finkfs_raft::types::{GroupId, Membership, Node, NodeId, Raft, TypeConfig};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::storage::RaftStateMachine;
use openraft::RaftNetworkFactory;

use crate::api::MemberAddr;
use crate::state_machine::{BlockFetcher, FetchError, FetchFuture, Fetched, StateMachine};

/// openraft's network factory for one group: the peer network, given each
/// member's peer address.
#[derive(Debug, Clone)]
pub struct MemberNetwork {
    inner: PeerNetwork,
}

impl MemberNetwork {
    /// Wraps `inner`.
    pub fn new(inner: PeerNetwork) -> MemberNetwork {
        MemberNetwork { inner }
    }
}

impl RaftNetworkFactory<TypeConfig> for MemberNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerConnection {
        let peer = match MemberAddr::of(node) {
            Ok(addr) => Node { addr: addr.peer },
            Err(error) => {
                // The connection reports the address as unreachable.
                tracing::warn!(target, addr = %node.addr, %error, "member has an unreadable address");
                node.clone()
            }
        };
        self.inner.new_client(target, &peer).await
    }
}

/// Fetches the blocks a snapshot install lacks from the other members of
/// the group, one member after another until every block is found.
pub struct PeerBlockFetcher<SM = StateMachine>
where
    SM: RaftStateMachine<TypeConfig>,
{
    id: NodeId,
    group: GroupId,
    client: PeerClient,
    raft: Arc<OnceLock<Raft<SM>>>,
    /// The members the state machine knew when it opened: openraft may
    /// install a snapshot while it starts, before `raft` is set, and that
    /// install may need blocks from them.
    members_at_start: Arc<OnceLock<Membership>>,
}

impl<SM> PeerBlockFetcher<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    /// A fetcher for node `id` of `group`; it learns the members from the
    /// Raft node set in `raft` once that exists, and until then from
    /// `members_at_start` once that is set.
    pub fn new(
        id: NodeId,
        group: GroupId,
        client: PeerClient,
        raft: Arc<OnceLock<Raft<SM>>>,
        members_at_start: Arc<OnceLock<Membership>>,
    ) -> Self {
        PeerBlockFetcher {
            id,
            group,
            client,
            raft,
            members_at_start,
        }
    }

    /// The peer addresses of the other members.
    fn peers(&self) -> Vec<(NodeId, String)> {
        let (membership, leader) = match self.raft.get() {
            Some(raft) => {
                let metrics = raft.metrics().borrow_watched().clone();
                let membership = metrics.membership_config.membership().clone();
                (membership, metrics.current_leader)
            }
            None => match self.members_at_start.get() {
                Some(membership) => (membership.clone(), None),
                None => return Vec::new(),
            },
        };
        // The leader first: it sent the snapshot, so it holds its blocks.
        let mut peers: Vec<(NodeId, String)> = membership
            .nodes()
            .filter(|(id, _)| **id != self.id)
            .filter_map(|(id, node)| MemberAddr::of(node).ok().map(|a| (*id, a.peer)))
            .collect();
        peers.sort_by_key(|(id, _)| Some(*id) != leader);
        peers
    }

    async fn fetch_all(&self, hashes: &[[u8; 32]]) -> Result<Fetched, FetchError> {
        let mut found: Fetched = Vec::with_capacity(hashes.len());
        let mut missing: Vec<[u8; 32]> = hashes.to_vec();
        let peers = self.peers();
        if peers.is_empty() {
            return Err("no other member to fetch blocks from".into());
        }
        for (peer, addr) in peers {
            if missing.is_empty() {
                break;
            }
            match self.client.fetch_blocks(&addr, self.group, &missing).await {
                Ok(blocks) => {
                    let mut still = Vec::new();
                    for (hash, block) in missing.iter().zip(blocks) {
                        match block {
                            Some(data) => found.push((*hash, data)),
                            None => still.push(*hash),
                        }
                    }
                    missing = still;
                }
                Err(error) => {
                    tracing::warn!(peer, %addr, %error, "fetching blocks from a member failed; trying the next");
                }
            }
        }
        Ok(found)
    }
}

impl<SM> BlockFetcher for PeerBlockFetcher<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    fn fetch<'a>(&'a self, hashes: &'a [[u8; 32]]) -> FetchFuture<'a> {
        Box::pin(self.fetch_all(hashes))
    }
}
