//! Whether the node may vote, re-evaluated while it runs (invariant 5).
//!
//! Some reasons found at open only a repair lifts (damage still in the
//! journal, committed entries missing): they stay for the life of the
//! process. Two lift by themselves once normal replication has made the
//! node whole again, and the gate checks them each time it is asked:
//!
//! * a vouch floor (set by `fsck --repair` after it cut damaged entries):
//!   the node held entries up to the floor and may have acknowledged any of
//!   them to a leader, which may have counted that in a commit. Once its
//!   log reaches the floor again, everything it holds below the floor came
//!   from a leader through the log-matching check, and a leader holds every
//!   entry committed before it: the node holds every committed entry it
//!   could have helped commit, so its vote is again sound.
//! * a lost vote (both meta copies damaged, or a data directory wiped): the
//!   node no longer knows in which terms it voted, nor what it
//!   acknowledged. It rejoins when (1) it has accepted a leader after the
//!   loss, which saves a committed vote of that leader's term T, so openraft
//!   refuses every vote request of a term <= T from then on; and (2) its
//!   log has reached the commit index that leader announced in the first
//!   AppendEntries the node saw after the loss, so it holds every entry
//!   committed when it came back (the same argument as the floor). A vote
//!   it granted before the loss in a term above T was for a candidate that
//!   did not become the leader it now follows; with PreVote, a candidate
//!   only takes a new term after a majority that has not heard from a
//!   leader agreed, so while a leader the node accepted is up, no rival
//!   term can start. What remains is a candidate of a term above T that
//!   was started before the loss and is still waiting: granting it again
//!   is a second vote for the same candidate or a vote in a term in which
//!   that candidate could not win without this node's lost vote.
//!
//! Once a reason lifted it stays lifted: the entries that made the node
//! whole are committed (a floor reached through a leader) and are never
//! truncated again.

use std::sync::{Arc, Mutex, MutexGuard};

use super::open::VoteBlocker;
use super::shared::Shared;

/// Why the vote was lost, for a blocker that lifts on rejoining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Every meta copy was damaged.
    Copies,
    /// The data directory held nothing: a wiped node of an existing cluster.
    Wiped,
}

/// What the gate still waits for.
#[derive(Debug, Default)]
struct GateState {
    /// Reasons only a repair lifts.
    fixed: Vec<VoteBlocker>,
    /// The node may not vote while its log ends below this index.
    floor: Option<u64>,
    /// The vote is lost; with the first leader commit index seen since.
    lost: Option<(Lost, Option<u64>)>,
}

/// The vote blockers of one log store, some lifting as the log grows.
#[derive(Debug)]
pub struct VoteGate {
    shared: Arc<Shared>,
    state: Mutex<GateState>,
}

impl VoteGate {
    pub(crate) fn new(
        shared: Arc<Shared>,
        fixed: Vec<VoteBlocker>,
        floor: Option<u64>,
        lost: Option<Lost>,
    ) -> VoteGate {
        VoteGate {
            shared,
            state: Mutex::new(GateState {
                fixed,
                floor,
                lost: lost.map(|why| (why, None)),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().expect("vote gate poisoned by a panic")
    }

    /// A leader said its commit index is `index` (an AppendEntries the
    /// node accepted for processing). Only the first one after a loss
    /// matters: it is what the node must hold before it votes again.
    pub fn leader_commit(&self, index: Option<u64>) {
        let mut state = self.lock();
        if let Some((_, seen @ None)) = &mut state.lost {
            *seen = Some(index.unwrap_or(0));
        }
    }

    /// Why the node may not vote now; empty when it may.
    pub fn blockers(&self) -> Vec<VoteBlocker> {
        let (last, vote_committed) = {
            let shared = self.shared.lock();
            let last = shared.last_or_purged().map(|log_id| log_id.index);
            let vote_committed = shared.vote.is_some_and(|vote| vote.is_committed());
            (last, vote_committed)
        };
        let mut state = self.lock();
        let reached = |target: u64| last.is_some_and(|last| last >= target);
        if state.floor.is_some_and(reached) {
            tracing::info!(floor = ?state.floor, "the log reached the vouch floor: the node may vote again");
            state.floor = None;
        }
        if let Some((why, Some(target))) = state.lost {
            if vote_committed && (target == 0 || reached(target)) {
                tracing::info!(
                    ?why,
                    target,
                    "rejoined a leader and caught up: the node may vote again"
                );
                state.lost = None;
            }
        }
        let mut blockers = state.fixed.clone();
        if let Some(floor) = state.floor {
            blockers.push(VoteBlocker::BelowVouchFloor {
                floor,
                last_index: last,
            });
        }
        match state.lost {
            Some((Lost::Copies, _)) => blockers.push(VoteBlocker::VoteLost),
            Some((Lost::Wiped, target)) => blockers.push(VoteBlocker::DataDirWiped {
                catch_up_to: target,
            }),
            None => {}
        }
        blockers
    }

    /// True when nothing blocks the vote.
    pub fn may_vote(&self) -> bool {
        self.blockers().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::log_store::shared::SharedState;
    use crate::types::{LeaderId, LogId, Vote};

    fn log_id(index: u64) -> LogId {
        LogId::new(LeaderId::new(2, 1), index)
    }

    fn gate(last: Option<u64>, floor: Option<u64>, lost: Option<Lost>) -> VoteGate {
        let shared = Arc::new(Shared::new(SharedState {
            last: last.map(log_id),
            ..SharedState::default()
        }));
        VoteGate::new(shared, Vec::new(), floor, lost)
    }

    #[test]
    fn vouch_floor_blocks_until_the_log_reaches_it_then_stays_lifted() {
        let gate = gate(Some(5), Some(9), None);
        assert_eq!(
            gate.blockers(),
            vec![VoteBlocker::BelowVouchFloor {
                floor: 9,
                last_index: Some(5)
            }]
        );
        gate.shared.lock().last = Some(log_id(9));
        assert!(gate.may_vote());
        // A leader truncating uncommitted entries later does not bring it back.
        gate.shared.lock().last = Some(log_id(7));
        assert!(gate.may_vote());
    }

    #[test]
    fn wiped_node_votes_only_after_a_leader_and_its_commit_index() {
        let gate = gate(None, None, Some(Lost::Wiped));
        let wiped = |catch_up_to| vec![VoteBlocker::DataDirWiped { catch_up_to }];
        assert_eq!(gate.blockers(), wiped(None));
        gate.leader_commit(Some(40));
        gate.leader_commit(Some(55));
        assert_eq!(
            gate.blockers(),
            wiped(Some(40)),
            "the first commit index heard counts"
        );
        gate.shared.lock().last = Some(log_id(40));
        assert_eq!(gate.blockers(), wiped(Some(40)), "no leader accepted yet");
        gate.shared.lock().vote = Some(Vote::new_committed(2, 1));
        assert!(gate.may_vote());
    }

    #[test]
    fn lost_vote_copies_block_until_rejoined_and_caught_up() {
        let gate = gate(Some(3), None, Some(Lost::Copies));
        gate.shared.lock().vote = Some(Vote::new_committed(4, 2));
        assert_eq!(gate.blockers(), vec![VoteBlocker::VoteLost]);
        gate.leader_commit(Some(10));
        assert_eq!(gate.blockers(), vec![VoteBlocker::VoteLost]);
        gate.shared.lock().last = Some(log_id(10));
        assert!(gate.may_vote());
    }

    #[test]
    fn fixed_blockers_never_lift() {
        let shared = Arc::new(Shared::new(SharedState::default()));
        let fixed = vec![VoteBlocker::JournalDamaged { pieces: 1 }];
        let gate = VoteGate::new(shared, fixed.clone(), None, None);
        gate.shared.lock().last = Some(log_id(100));
        assert_eq!(gate.blockers(), fixed);
    }
}
