//! Lifts the tail floor of a node whose log store cut a torn tail at open.
//!
//! The cut bytes may have held entries that were synced, acknowledged and
//! committed before damage at rest made them look torn; until the node
//! knows how far the committed log could reach there, it does not vote
//! (`VoteGate`'s tail floor). This task asks every other voter how far its
//! log reaches (HeldLog). Once all have answered, the floor drops to the
//! highest index answered: an entry the node lost whose intact copy is
//! left sits on some other voter, at or below that; and a candidate at
//! least as up to date as every answer may have the node's vote. Until
//! then, or if the floor stays above the log, replication from a leader
//! lifts it when the log reaches the floor.
//!
//! Every voter must answer, not only a majority: the intact copy of a
//! committed entry may be on the one voter that is down, and the others
//! may have lost theirs to the same power cut.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use finkfs_raft::log_store::VoteGate;
use finkfs_raft::network::PeerClient;
use finkfs_raft::types::{GroupId, LogId, NodeId, Raft, TypeConfig};
use futures_util::future::join_all;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::storage::RaftStateMachine;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::MemberAddr;

/// How long one voter's answer is waited for.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long before the voters that did not answer are asked again.
const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Asks until every other voter of `raft`'s membership answered (then
/// lowers `gate`'s tail floor), the floor lifted by itself, or `stopped`.
pub fn spawn<SM>(
    id: NodeId,
    group: GroupId,
    gate: Arc<VoteGate>,
    raft: Raft<SM>,
    client: PeerClient,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    SM: RaftStateMachine<TypeConfig>,
{
    finkfs_raft::rt::spawn(async move {
        let mut answers: BTreeMap<NodeId, Option<LogId>> = BTreeMap::new();
        while let Some(floor) = gate.tail_floor() {
            let voters = other_voters(id, &raft);
            let unasked: Vec<_> = voters
                .iter()
                .filter(|(voter, _)| !answers.contains_key(voter))
                .filter_map(|(voter, addr)| addr.clone().map(|addr| (*voter, addr)))
                .collect();
            let replies = join_all(unasked.iter().map(|(voter, addr)| {
                let client = &client;
                async move {
                    (
                        *voter,
                        addr,
                        client.held_log(addr, group, ASK_TIMEOUT).await,
                    )
                }
            }))
            .await;
            for (voter, addr, reply) in replies {
                match reply {
                    Ok(last) => {
                        tracing::info!(
                            id,
                            voter,
                            addr,
                            ?last,
                            floor,
                            "a voter said how far its log reaches"
                        );
                        answers.insert(voter, last);
                    }
                    Err(error) => {
                        tracing::debug!(id, voter, %error, "a voter did not say how far its log reaches; asking again")
                    }
                }
            }
            if voters.iter().all(|(voter, _)| answers.contains_key(voter)) {
                let answered: Vec<_> = voters.iter().map(|(voter, _)| answers[voter]).collect();
                gate.peers_hold_at_most(&answered);
                if let Some(floor) = gate.tail_floor() {
                    tracing::info!(
                        id,
                        floor,
                        "waiting for a leader to bring the log to the tail floor"
                    );
                }
                return;
            }
            // Biased: tokio's unbiased order is drawn from an OS-seeded
            // RNG, and a simulated run must replay.
            tokio::select! {
                biased;
                _ = tokio::time::sleep(RETRY_INTERVAL) => {}
                _ = stopped.changed() => return,
            }
        }
    })
}

/// The other voters of the current membership, each with its peer address
/// (`None` when the membership holds no readable one: it cannot be asked,
/// and the floor then waits for replication).
fn other_voters<SM>(id: NodeId, raft: &Raft<SM>) -> Vec<(NodeId, Option<String>)>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let metrics = raft.metrics().borrow_watched().clone();
    let membership = metrics.membership_config.membership().clone();
    membership
        .voter_ids()
        .filter(|voter| *voter != id)
        .map(|voter| {
            let addr = membership
                .get_node(&voter)
                .and_then(|node| MemberAddr::of(node).ok())
                .map(|addr| addr.peer);
            (voter, addr)
        })
        .collect()
}
