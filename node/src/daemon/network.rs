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
use crate::state_machine::{
    BlockFetcher, FetchError, FetchFuture, Fetched, LostFuture, StateMachine,
};

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

    /// The members as this node knows them, and the leader if known.
    fn membership(&self) -> Option<(Membership, Option<NodeId>)> {
        match self.raft.get() {
            Some(raft) => {
                let metrics = raft.metrics().borrow_watched().clone();
                let membership = metrics.membership_config.membership().clone();
                Some((membership, metrics.current_leader))
            }
            None => self
                .members_at_start
                .get()
                .map(|membership| (membership.clone(), None)),
        }
    }

    /// The peer addresses of the other members.
    fn peers(&self) -> Vec<(NodeId, String)> {
        let Some((membership, leader)) = self.membership() else {
            return Vec::new();
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

    /// Of `hashes`, those every other member answered for without an
    /// intact copy (FetchBlock: not held, or its copy damaged). A
    /// member with an address this node cannot read, or one that does not
    /// answer, confirms nothing.
    async fn lost_everywhere(&self, hashes: &[[u8; 32]]) -> Vec<[u8; 32]> {
        let Some((membership, _)) = self.membership() else {
            return Vec::new();
        };
        let mut addrs = Vec::new();
        for (id, node) in membership.nodes().filter(|(id, _)| **id != self.id) {
            match MemberAddr::of(node) {
                Ok(addr) => addrs.push((*id, addr.peer)),
                Err(_) => return Vec::new(),
            }
        }
        let mut lost = Vec::new();
        'hashes: for hash in hashes {
            for (peer, addr) in &addrs {
                match self.client.fetch_block(addr, self.group, *hash).await {
                    Ok(None) => {}
                    Ok(Some(_)) => continue 'hashes,
                    Err(error) => {
                        tracing::warn!(peer, %addr, block = %crate::hex::hex(hash), %error, "cannot tell whether a member holds a block");
                        continue 'hashes;
                    }
                }
            }
            lost.push(*hash);
        }
        lost
    }
}

impl<SM> BlockFetcher for PeerBlockFetcher<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    fn fetch<'a>(&'a self, hashes: &'a [[u8; 32]]) -> FetchFuture<'a> {
        Box::pin(self.fetch_all(hashes))
    }

    fn confirm_lost<'a>(&'a self, hashes: &'a [[u8; 32]]) -> LostFuture<'a> {
        Box::pin(self.lost_everywhere(hashes))
    }
}
