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
//!   Before that, the node grants its vote to a candidate whose last log id
//!   is at least (V, floor), V being the term of the vote saved when the
//!   store opened ([`VoteGate::blockers_for_candidate`]). V bounds the term
//!   T of the entry the node held at the floor (a node saves a leader's vote
//!   before it takes that leader's entries), so such a candidate is at least
//!   as up to date as the log the node held before the damage, (T, floor):
//!   the node checks it exactly as Raft's election restriction would have
//!   with that log, and that is what protects every committed entry it
//!   acknowledged. Without this, a majority repaired below its applied
//!   state could never elect the one node that still holds every entry.
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
//! * a tail floor (saved before a torn tail was cut): the highest index the
//!   cut bytes could have held. The journal cannot tell a write torn by a
//!   power cut from the last synced records damaged at rest, and synced
//!   records may have been acknowledged and counted in a commit. It lifts
//!   like the vouch floor, and also once every other voter has said how far
//!   its log reaches ([`VoteGate::peers_hold_at_most`]): a committed entry
//!   that this node lost has its intact copies, if any is left, on other
//!   voters, which keep committed entries; if none of them reaches an index,
//!   no intact copy of an entry there exists to protect, and the node's log
//!   is as good as any. While the floor stays above the log after the
//!   answers, the node still grants its vote to a candidate whose last log
//!   id is at least the highest answered ([`VoteGate::blockers_for_candidate`]):
//!   a log at least as up to date as a log holding a committed entry holds
//!   that entry too (Raft's election restriction), so such a candidate holds
//!   every committed entry that has an intact copy left.
//!
//! Once a reason lifted it stays lifted: the entries that made the node
//! whole are committed (a floor reached through a leader) and are never
//! truncated again.

use std::sync::{Arc, Mutex, MutexGuard};

use super::open::VoteBlocker;
use super::shared::Shared;
use crate::types::LogId;

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
    /// The term of the vote saved when the store opened: no entry the node
    /// held before then has a higher term. With the floor, the least log id
    /// a candidate needs to have the vote despite the floor.
    opened_vote_term: Option<u64>,
    /// The same for a torn tail, which the other voters' answers can lower.
    tail: Option<u64>,
    /// Once every other voter answered: the highest last log id among the
    /// answers. A candidate whose log is at least as up to date may have the
    /// vote despite the tail floor.
    tail_peers_last: Option<LogId>,
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
        let opened_vote_term = shared.lock().vote.map(|vote| vote.leader_id.term);
        VoteGate {
            shared,
            state: Mutex::new(GateState {
                fixed,
                floor,
                opened_vote_term,
                tail: None,
                tail_peers_last: None,
                lost: lost.map(|why| (why, None)),
            }),
        }
    }

    /// Adds a tail floor: the highest index a cut torn tail could have held.
    pub(crate) fn with_tail_floor(self, tail: Option<u64>) -> VoteGate {
        self.lock().tail = tail;
        self
    }

    /// The tail floor still waited for, if any: the caller asks every other
    /// voter how far its log reaches and reports with
    /// [`VoteGate::peers_hold_at_most`].
    pub fn tail_floor(&self) -> Option<u64> {
        // Asking lifts a floor the log has reached meanwhile.
        let _ = self.blockers();
        self.lock().tail
    }

    /// Every other voter of the group answered, after this node's log store
    /// opened, how far its log reaches (held or purged): `answers` holds
    /// each answer's last log id, `None` for an empty log. Lowers the tail
    /// floor to the highest index answered (an entry this node may have
    /// lost that has an intact copy left lies at or below it), and lets a
    /// candidate at least as up to date as every answer have the vote.
    pub fn peers_hold_at_most(&self, answers: &[Option<LogId>]) {
        let highest_index = answers.iter().flatten().map(|log_id| log_id.index).max();
        let highest = answers.iter().flatten().max().copied();
        let mut state = self.lock();
        let Some(tail) = state.tail else {
            return;
        };
        let lowered = highest_index.map(|index| index.min(tail));
        tracing::info!(
            tail_floor = tail,
            ?highest,
            "every other voter said how far its log reaches: the tail floor becomes {lowered:?}"
        );
        state.tail = lowered;
        state.tail_peers_last = highest;
        if lowered.is_none() {
            self.shared.lock().tail_floor_lifted = true;
        }
    }

    /// The last log id the log holds or purged (including entries accepted
    /// and not yet in the journal): what this node answers to HeldLog.
    pub fn held_last(&self) -> Option<LogId> {
        self.shared.lock().last_or_purged()
    }

    /// Why the node may not grant its vote to a candidate whose log ends at
    /// `candidate_last`; empty when it may. As [`VoteGate::blockers`], but
    /// a tail floor the other voters answered for does not refuse a
    /// candidate at least as up to date as all of them.
    /// Nor does a vouch floor refuse a candidate whose last log id is at
    /// least (V, floor), V the term of the vote saved at open (see the
    /// module docs).
    pub fn blockers_for_candidate(&self, candidate_last: Option<&LogId>) -> Vec<VoteBlocker> {
        let mut blockers = self.blockers();
        let (peers_last, floor_needs) = {
            let state = self.lock();
            let floor_needs = state.floor.zip(state.opened_vote_term);
            (state.tail_peers_last, floor_needs)
        };
        if let Some(peers_last) = peers_last {
            if candidate_last.is_some_and(|candidate| *candidate >= peers_last) {
                blockers.retain(|b| !matches!(b, VoteBlocker::BelowTailFloor { .. }));
            }
        }
        if let (Some((floor, vote_term)), Some(candidate)) = (floor_needs, candidate_last) {
            // Compared as (term, index), the order of Raft's election
            // restriction; the leader's node id plays no part in it.
            if (candidate.leader_id.term, candidate.index) >= (vote_term, floor) {
                blockers.retain(|b| !matches!(b, VoteBlocker::BelowVouchFloor { .. }));
            }
        }
        blockers
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
        if state.tail.is_some_and(reached) {
            tracing::info!(tail_floor = ?state.tail, "the log reached the tail floor: the node may vote again");
            state.tail = None;
            self.shared.lock().tail_floor_lifted = true;
        }
        if let Some((why, Some(target))) = state.lost {
            if vote_committed && (target == 0 || reached(target)) {
                tracing::info!(
                    ?why,
                    target,
                    "rejoined a leader and caught up: the node may vote again"
                );
                state.lost = None;
                if why == Lost::Wiped {
                    self.shared.lock().wiped_lifted = true;
                }
            }
        }
        let mut blockers = state.fixed.clone();
        if let Some(floor) = state.floor {
            blockers.push(VoteBlocker::BelowVouchFloor {
                floor,
                last_index: last,
            });
        }
        if let Some(floor) = state.tail {
            blockers.push(VoteBlocker::BelowTailFloor {
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
    use crate::types::{LeaderId, Vote};

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
    fn below_the_vouch_floor_only_a_candidate_as_up_to_date_as_the_held_log_has_the_vote() {
        let shared = Arc::new(Shared::new(SharedState {
            last: Some(log_id(5)),
            vote: Some(Vote::new_committed(3, 1)),
            ..SharedState::default()
        }));
        let gate = VoteGate::new(shared, Vec::new(), Some(9), None);
        let at = |term: u64, index: u64| LogId::new(LeaderId::new(term, 2), index);
        let refused = |candidate: LogId| !gate.blockers_for_candidate(Some(&candidate)).is_empty();
        assert!(refused(at(3, 8)), "the vote's term, below the floor");
        assert!(refused(at(2, 40)), "an older term, however long");
        assert!(!refused(at(3, 9)), "the vote's term, at the floor");
        assert!(!refused(at(4, 1)), "a newer term than any entry held");
        assert!(!gate.blockers_for_candidate(None).is_empty());
        assert!(!gate.may_vote(), "it does not stand for election itself");
        // The vote the node grants later does not move the bound.
        gate.shared.lock().vote = Some(Vote::new_committed(7, 2));
        assert!(!refused(at(3, 9)));
    }

    #[test]
    fn vouch_floor_without_a_saved_vote_refuses_every_candidate() {
        let gate = gate(Some(5), Some(9), None);
        let candidate = LogId::new(LeaderId::new(50, 2), 90);
        assert_eq!(gate.blockers_for_candidate(Some(&candidate)).len(), 1);
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
    fn tail_floor_lifts_when_reached_or_when_the_other_voters_hold_less() {
        let blocked = |floor| {
            vec![VoteBlocker::BelowTailFloor {
                floor,
                last_index: Some(5),
            }]
        };
        let reached = gate(Some(5), None, None).with_tail_floor(Some(9));
        assert_eq!(reached.blockers(), blocked(9));
        reached.shared.lock().last = Some(log_id(9));
        assert!(reached.may_vote());
        assert!(reached.shared.lock().tail_floor_lifted);

        let answered = gate(Some(5), None, None).with_tail_floor(Some(9));
        answered.peers_hold_at_most(&[Some(log_id(7)), Some(log_id(3))]);
        assert_eq!(
            answered.blockers(),
            blocked(7),
            "a voter holds 7: wait for it"
        );
        assert_eq!(answered.tail_floor(), Some(7));
        answered.peers_hold_at_most(&[Some(log_id(4)), None]);
        assert!(answered.may_vote(), "nobody else reaches past the log");
        assert_eq!(answered.tail_floor(), None);

        let nobody = gate(None, None, None).with_tail_floor(Some(3));
        nobody.peers_hold_at_most(&[None, None]);
        assert!(nobody.may_vote());
        assert!(nobody.shared.lock().tail_floor_lifted);
    }

    #[test]
    fn tail_floor_lets_a_candidate_as_up_to_date_as_every_answer_have_the_vote() {
        let gate = gate(Some(5), None, None).with_tail_floor(Some(9));
        let newer_term = LogId::new(LeaderId::new(3, 2), 6);
        assert_eq!(
            gate.blockers_for_candidate(Some(&newer_term)).len(),
            1,
            "no answers yet: refused"
        );
        gate.peers_hold_at_most(&[Some(log_id(7)), Some(log_id(6))]);
        assert!(!gate.may_vote(), "it still does not stand for election");
        assert_eq!(gate.blockers_for_candidate(Some(&log_id(6))).len(), 1);
        assert_eq!(gate.blockers_for_candidate(None).len(), 1);
        assert!(gate.blockers_for_candidate(Some(&log_id(7))).is_empty());
        assert!(gate.blockers_for_candidate(Some(&newer_term)).is_empty());
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
