//! What a read of each path may return, given what the clients were told.
//!
//! A write or delete is, from the client's side:
//!
//! * **acknowledged** — the client received `Applied` and the log index;
//! * **rejected** — a refusal that means the operation had no effect;
//! * **in doubt** — anything else (timeout, lost reply, node cut). It may or
//!   may not have taken effect, and may still take effect later.
//!
//! A path with an operation in doubt is *retired*: the workload never
//! writes it again, so its admissible values stay few. Per path the
//! admissible values are exactly the last acknowledged value (or absence),
//! the values of operations still in flight, and the one in-doubt value;
//! once a read has returned the in-doubt value, it has taken effect and the
//! old value is no longer admissible.
//!
//! A read is checked against every value admissible at any moment between
//! its start and its end ([`Model::begin_read`] .. [`Model::end_read`]), so a
//! read racing a write may see either side, but a read that starts after a
//! write was acknowledged must see it (reads are linearizable).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The value of a path: an object written by an operation, or absence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// No object at the path.
    Absent,
    /// The object written by this operation.
    Written(u64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Absent => write!(f, "absent"),
            Value::Written(op) => write!(f, "op {op}"),
        }
    }
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, at this log index.
    Acknowledged(u64),
    /// Definitely had no effect.
    Rejected,
    /// May or may not have taken effect.
    InDoubt,
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// An intact object written by this operation.
    Object(u64),
    /// The path holds nothing.
    NotFound,
    /// Bytes that are not an intact workload object.
    Garbage(String),
    /// A loud refusal to serve (`DATA_LOSS`, unavailable, timeout): never
    /// wrong in itself; whether it was excusable is the damage ledger's
    /// question.
    Refused(String),
}

/// A read that broke the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelViolation {
    /// Damaged or foreign bytes were served (invariant 2).
    #[error("invariant 2: read of {path} served bytes that are no object: {detail}")]
    Garbage {
        /// The path read.
        path: String,
        /// What was wrong with the bytes.
        detail: String,
    },
    /// A value that no acknowledged or possible operation explains: a lost
    /// acknowledged write, or a resurrected old value (invariant 1).
    #[error("invariant 1: read of {path} returned {got}, admissible: {admissible}")]
    Inadmissible {
        /// The path read.
        path: String,
        /// What the read returned.
        got: Value,
        /// What it could have returned.
        admissible: String,
    },
}

/// The model's knowledge of one path.
#[derive(Debug, Clone, Default)]
struct PathState {
    /// The last acknowledged value; `None` until the first acknowledged
    /// operation (the path starts absent).
    acknowledged: Option<Value>,
    /// Operations sent and not yet answered.
    in_flight: BTreeSet<Value>,
    /// The value of an operation in doubt.
    in_doubt: Option<Value>,
}

impl PathState {
    fn admissible(&self) -> BTreeSet<Value> {
        let mut values = self.in_flight.clone();
        values.insert(self.acknowledged.unwrap_or(Value::Absent));
        values.extend(self.in_doubt);
        values
    }
}

/// A read in progress: what was admissible when it started.
#[derive(Debug, Clone)]
pub struct ReadTicket {
    path: String,
    admissible_at_start: BTreeSet<Value>,
}

/// The clients' view of every path. See the module documentation.
#[derive(Debug, Default)]
pub struct Model {
    paths: BTreeMap<String, PathState>,
    /// Acknowledged operations, for the end-of-run read-back.
    acknowledged_ops: u64,
}

impl Model {
    /// An empty model: every path absent.
    pub fn new() -> Model {
        Model::default()
    }

    /// Whether the workload may still write `path` (no operation in doubt
    /// on it, none in flight).
    pub fn writable(&self, path: &str) -> bool {
        self.paths
            .get(path)
            .is_none_or(|p| p.in_doubt.is_none() && p.in_flight.is_empty())
    }

    /// Operation `value` on `path` was sent.
    pub fn send(&mut self, path: &str, value: Value) {
        debug_assert!(self.writable(path), "the workload wrote a retired path");
        self.paths
            .entry(path.to_string())
            .or_default()
            .in_flight
            .insert(value);
    }

    /// The operation `value` on `path` ended with `outcome`.
    pub fn finish(&mut self, path: &str, value: Value, outcome: Outcome) {
        let state = self.paths.entry(path.to_string()).or_default();
        state.in_flight.remove(&value);
        match outcome {
            Outcome::Acknowledged(_) => {
                state.acknowledged = Some(value);
                // An acknowledged later write supersedes an older doubt
                // only if it was the doubtful one: the workload writes
                // nothing after a doubt, so this is that same value.
                if state.in_doubt == Some(value) {
                    state.in_doubt = None;
                }
                self.acknowledged_ops += 1;
            }
            Outcome::Rejected => {}
            Outcome::InDoubt => state.in_doubt = Some(value),
        }
    }

    /// A read of `path` starts.
    pub fn begin_read(&self, path: &str) -> ReadTicket {
        let admissible_at_start = self
            .paths
            .get(path)
            .map(PathState::admissible)
            .unwrap_or_else(|| BTreeSet::from([Value::Absent]));
        ReadTicket {
            path: path.to_string(),
            admissible_at_start,
        }
    }

    /// The read of `ticket` returned `observed`: checks it and learns from
    /// it (an in-doubt value once seen has taken effect for good).
    pub fn end_read(
        &mut self,
        ticket: ReadTicket,
        observed: &Observed,
    ) -> Result<(), ModelViolation> {
        let got = match observed {
            Observed::Refused(_) => return Ok(()),
            Observed::Garbage(detail) => {
                return Err(ModelViolation::Garbage {
                    path: ticket.path,
                    detail: detail.clone(),
                })
            }
            Observed::NotFound => Value::Absent,
            Observed::Object(op) => Value::Written(*op),
        };
        let state = self.paths.entry(ticket.path.clone()).or_default();
        let mut admissible = ticket.admissible_at_start;
        admissible.extend(state.admissible());
        if !admissible.contains(&got) {
            let admissible = admissible
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ModelViolation::Inadmissible {
                path: ticket.path,
                got,
                admissible,
            });
        }
        if state.in_doubt == Some(got) && state.in_flight.is_empty() {
            // Seen once, the doubtful operation took effect: from now on it
            // is the value, as if acknowledged.
            state.acknowledged = Some(got);
            state.in_doubt = None;
        }
        Ok(())
    }

    /// Every path whose value is settled (acknowledged, nothing in flight
    /// or in doubt), with that value: what the end-of-run read-back checks.
    pub fn settled(&self) -> Vec<(String, Value)> {
        self.paths
            .iter()
            .filter(|(_, p)| p.in_flight.is_empty() && p.in_doubt.is_none())
            .filter_map(|(path, p)| p.acknowledged.map(|v| (path.clone(), v)))
            .collect()
    }

    /// Operations acknowledged so far.
    pub fn acknowledged_ops(&self) -> u64 {
        self.acknowledged_ops
    }
}
