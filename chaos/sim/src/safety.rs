//! The checks made after every step from what the simulator observes of the
//! nodes (openraft metrics, replies seen on the network): cheap, and each
//! tied to an invariant of the design.
//!
//! * at most one leader per term, over the whole run (Raft's election
//!   safety: two leaders in a term means a vote was counted twice, as when a
//!   node forgot its vote);
//! * within one incarnation of a node, its vote's term, committed index and
//!   applied index never go back (a restart may go back, to what was
//!   durable: that is checked against the open report, not here);
//! * a node that opened with vote blockers is never seen granting a vote
//!   until it is cleared (invariant 5).

use std::collections::BTreeMap;

/// One incarnation of one node.
pub type NodeIncarnation = (u64, u64);

/// What the simulator saw of one node at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeView {
    /// The term of the node's vote.
    pub vote_term: u64,
    /// The leader the node follows in that term, if it knows one.
    pub leader: Option<u64>,
    /// Whether the node itself leads in `vote_term`.
    pub leads: bool,
    /// The index of its last committed entry.
    pub committed: Option<u64>,
    /// The index of its last applied entry.
    pub applied: Option<u64>,
}

/// A broken safety property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SafetyViolation {
    /// Two nodes led in one term.
    #[error("election safety: nodes {first} and {second} both led term {term}")]
    TwoLeaders {
        /// The term.
        term: u64,
        /// The leader seen first.
        first: u64,
        /// The other.
        second: u64,
    },
    /// A value went back within one incarnation.
    #[error("node {node} incarnation {incarnation}: {what} went back from {from} to {to}")]
    WentBack {
        /// The node.
        node: u64,
        /// Its incarnation.
        incarnation: u64,
        /// `vote term`, `committed index` or `applied index`.
        what: &'static str,
        /// Before.
        from: u64,
        /// After.
        to: u64,
    },
    /// A node that must not vote granted a vote.
    #[error("invariant 5: node {node} incarnation {incarnation} granted a vote in term {term} while blocked: {why}")]
    BlockedVoteGranted {
        /// The node.
        node: u64,
        /// Its incarnation.
        incarnation: u64,
        /// The term of the vote.
        term: u64,
        /// Why it was blocked.
        why: String,
    },
}

/// The per-step safety checks. See the module documentation.
#[derive(Debug, Default)]
pub struct SafetyChecker {
    /// openraft's `leader_id_adv` (finkfs's choice) names a leader by term
    /// AND node id, ordered: a candidate with a higher node id may win the
    /// same term later, so "one leader per term" does not hold by design
    /// and the check is made per (term, node) instead (which cannot fail:
    /// the safety it stood for is then checked on the data, by the model
    /// and the replica comparison).
    several_leaders_per_term: bool,
    leaders: BTreeMap<u64, u64>,
    last: BTreeMap<NodeIncarnation, NodeView>,
    blocked: BTreeMap<NodeIncarnation, String>,
}

impl SafetyChecker {
    /// A checker that has seen nothing.
    pub fn new() -> SafetyChecker {
        SafetyChecker::default()
    }

    /// A checker for openraft's `leader_id_adv`, where several nodes may
    /// lead one term in turn (see the field's comment).
    pub fn with_several_leaders_per_term() -> SafetyChecker {
        SafetyChecker {
            several_leaders_per_term: true,
            ..SafetyChecker::default()
        }
    }

    /// Records what the simulator saw of `node` in `incarnation`.
    pub fn observe(
        &mut self,
        (node, incarnation): NodeIncarnation,
        view: NodeView,
    ) -> Result<(), SafetyViolation> {
        if view.leads {
            let first = *self.leaders.entry(view.vote_term).or_insert(node);
            if first != node && !self.several_leaders_per_term {
                return Err(SafetyViolation::TwoLeaders {
                    term: view.vote_term,
                    first,
                    second: node,
                });
            }
        }
        if let Some(before) = self.last.get(&(node, incarnation)) {
            let pairs = [
                ("vote term", Some(before.vote_term), Some(view.vote_term)),
                ("committed index", before.committed, view.committed),
                ("applied index", before.applied, view.applied),
            ];
            for (what, from, to) in pairs {
                if let Some(from) = from {
                    let to_value = to.unwrap_or(0);
                    if to.is_none() || to_value < from {
                        return Err(SafetyViolation::WentBack {
                            node,
                            incarnation,
                            what,
                            from,
                            to: to_value,
                        });
                    }
                }
            }
        }
        self.last.insert((node, incarnation), view);
        Ok(())
    }

    /// `incarnation` opened with vote blockers (`why`), or was cleared of
    /// them (`None`).
    pub fn set_blocked(&mut self, incarnation: NodeIncarnation, why: Option<String>) {
        match why {
            Some(why) => self.blocked.insert(incarnation, why),
            None => self.blocked.remove(&incarnation),
        };
    }

    /// The network showed `incarnation` granting a vote in `term`.
    pub fn vote_granted(
        &mut self,
        (node, incarnation): NodeIncarnation,
        term: u64,
    ) -> Result<(), SafetyViolation> {
        match self.blocked.get(&(node, incarnation)) {
            Some(why) => Err(SafetyViolation::BlockedVoteGranted {
                node,
                incarnation,
                term,
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The leader of each term seen so far.
    pub fn leaders(&self) -> &BTreeMap<u64, u64> {
        &self.leaders
    }
}
