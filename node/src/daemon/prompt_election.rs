//! A node that holds a vote for itself but knows no leader asks for an
//! election at once instead of waiting out a full election timer.
//!
//! Two moments leave a node so:
//! * right after it initialized a new cluster (openraft records a vote for
//!   itself, then waits for its timer like every other node);
//! * after a restart of the node that led: finkfs does not let a restarted
//!   leader resume its term (`enable_leader_restore` is off, see
//!   `raft_config`), so after a power cut of every node nothing is written
//!   until some node's timer (1–2 s by default) runs out.
//!
//! That node is the likeliest to hold the longest log, so it asks for a
//! PreVote round every heartbeat interval until a leader is known or one
//! election timeout has passed; then the ordinary timers take over. PreVote
//! disturbs nothing: a peer that hears from a live leader refuses it, and a
//! node whose log is behind is refused and changes no term. The task ends
//! for good once the node has seen a leader.
//!
//! A node that may not vote (invariant 5) never asks: `trigger().elect()`
//! ignores openraft's own `enable_elect`.

use std::sync::Arc;
use std::time::Duration;

use finkfs_raft::log_store::VoteGate;
use finkfs_raft::types::{NodeId, Raft, Vote};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::vote::RaftLeaderId;
use tokio::task::JoinHandle;

use crate::state_machine::StateMachine;

/// Whether `vote` is a vote for `id` itself that a quorum accepted (or
/// that initializing the cluster recorded).
pub(crate) fn votes_for_itself(id: NodeId, vote: &Vote) -> bool {
    vote.is_committed() && *vote.leader_id().node_id() == id
}

/// How often to ask, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub every: Duration,
    pub for_at_most: Duration,
}

/// Starts the task that asks for the election when the time comes.
pub(crate) fn spawn(
    raft: &Raft<StateMachine>,
    id: NodeId,
    vote_gate: &Arc<VoteGate>,
    pace: Pace,
) -> JoinHandle<()> {
    let raft = raft.clone();
    let vote_gate = Arc::clone(vote_gate);
    tokio::spawn(async move {
        if !wait_for_own_vote_without_leader(&raft, id).await {
            return;
        }
        let deadline = tokio::time::Instant::now() + pace.for_at_most;
        while tokio::time::Instant::now() < deadline {
            let leader = raft.metrics().borrow_watched().current_leader;
            if leader.is_some() || !vote_gate.may_vote() {
                return;
            }
            if let Err(error) = raft.trigger().elect(true).await {
                tracing::debug!(%error, "no prompt election: the Raft core stopped");
                return;
            }
            tokio::time::sleep(pace.every).await;
        }
    })
}

/// Waits until the node votes for itself and knows no leader (true), or
/// has seen a leader or stopped (false).
async fn wait_for_own_vote_without_leader(raft: &Raft<StateMachine>, id: NodeId) -> bool {
    let mut metrics = raft.metrics();
    loop {
        let (leader, own_vote) = {
            let m = metrics.borrow_watched();
            (m.current_leader, votes_for_itself(id, &m.vote))
        };
        if leader.is_some() {
            return false;
        }
        if own_vote {
            return true;
        }
        if metrics.changed().await.is_err() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(term: u64, node: NodeId, committed: bool) -> Vote {
        if committed {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        }
    }

    #[test]
    fn only_a_committed_vote_for_the_node_itself_counts() {
        assert!(votes_for_itself(2, &vote(5, 2, true)));
        assert!(
            !votes_for_itself(2, &vote(5, 2, false)),
            "a candidate's vote"
        );
        assert!(!votes_for_itself(2, &vote(5, 1, true)), "another leader");
    }
}
