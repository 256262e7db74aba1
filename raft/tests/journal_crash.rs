//! Guards against a power cut being mistaken for corruption, and against
//! losing or inventing records across one: after random appends, syncs,
//! truncations and purges cut short at random points, every synced record
//! survives intact and in order, nothing is claimed that was not appended,
//! and recovery reports a torn tail or nothing, never damage.

mod journal_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use finkfs_raft::journal::{Append, HashedPayload, Journal, JournalError, JournalOptions};
use finkfs_simdisk::{CrashPolicy, SimDisk};
use journal_support::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: u8,
        salt: u8,
        large: bool,
        /// One `append_batch` of all `count` records instead of one
        /// `append` each.
        batched: bool,
    },
    Sync,
    Truncate {
        back: u8,
    },
    Purge {
        ahead: u8,
    },
    /// Cut the power just before the n-th next disk change.
    Cut {
        after_changes: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..8, any::<u8>(), prop::bool::weighted(0.1), any::<bool>())
            .prop_map(|(count, salt, large, batched)| Op::Append { count, salt, large, batched }),
        3 => Just(Op::Sync),
        1 => (0u8..14).prop_map(|back| Op::Truncate { back }),
        1 => (0u8..14).prop_map(|ahead| Op::Purge { ahead }),
        1 => (0u8..24).prop_map(|after_changes| Op::Cut { after_changes }),
    ]
}

type Value = (u64, Vec<u8>);

/// What the journal must and may hold after a crash.
#[derive(Debug, Default)]
struct Model {
    /// What the writer holds now.
    current: BTreeMap<u64, Value>,
    /// Indices that must survive a crash: synced and not removed since.
    required: BTreeSet<u64>,
    /// Values a crash may leave at each index.
    acceptable: BTreeMap<u64, Vec<Value>>,
    term: u64,
}

impl Model {
    fn append(&mut self, index: u64, value: Value) {
        self.current.insert(index, value.clone());
        self.acceptable.entry(index).or_default().push(value);
    }

    fn clear(&mut self) {
        self.current.clear();
        self.required.clear();
        self.acceptable.clear();
    }

    fn truncated(&mut self, index: u64) {
        if self
            .current
            .first_key_value()
            .is_some_and(|(first, _)| index < *first)
        {
            return self.clear();
        }
        if self
            .current
            .last_key_value()
            .is_none_or(|(last, _)| index >= *last)
        {
            // Nothing to remove: nothing was written or synced.
            return;
        }
        self.current.retain(|k, _| *k <= index);
        self.acceptable.retain(|k, _| *k <= index);
        // Truncation syncs the segment it cuts: everything left is durable.
        self.required = self.current.keys().copied().collect();
    }

    fn purged(&mut self, index: u64) {
        if self
            .current
            .last_key_value()
            .is_some_and(|(last, _)| index >= *last)
        {
            return self.clear();
        }
        self.current.retain(|k, _| *k > index);
        self.required.retain(|k| *k > index);
        self.acceptable.retain(|k, _| *k > index);
    }

    /// An operation on `index` was cut short: what it removes may be gone.
    fn interrupted(&mut self, removing: impl Fn(u64) -> bool) {
        self.required.retain(|k| !removing(*k));
    }
}

struct Run {
    sim: SimDisk,
    wire: Tripwire,
    journal: Journal,
    model: Model,
    options: JournalOptions,
}

impl Run {
    fn new(seed: u64) -> Run {
        let sim = SimDisk::new(seed);
        let wire = Tripwire::new(sim.clone());
        let options = small_segments();
        let (journal, _) = Journal::open(Arc::new(wire.clone()), dir(), options.clone()).unwrap();
        Run {
            sim,
            wire,
            journal,
            model: Model {
                term: 1,
                ..Model::default()
            },
            options,
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let result = match *op {
            Op::Append {
                count,
                salt,
                large,
                batched: false,
            } => self.append(count, salt, large),
            Op::Append {
                count,
                salt,
                large,
                batched: true,
            } => self.append_batch(count, salt, large),
            Op::Sync => self.journal.sync().map(|()| {
                self.model.required = self.model.current.keys().copied().collect();
            }),
            Op::Truncate { back } => self.truncate(back),
            Op::Purge { ahead } => self.purge(ahead),
            Op::Cut { after_changes } => {
                self.wire.arm(u64::from(after_changes));
                Ok(())
            }
        };
        if self.wire.tripped() {
            return self.recover();
        }
        prop_assert!(
            result.is_ok(),
            "{op:?} failed without a power cut: {result:?}"
        );
        prop_assert_eq!(
            self.journal.last().map(|(i, _)| i),
            self.model.current.keys().next_back().copied()
        );
        prop_assert_eq!(
            self.journal.first_index(),
            self.model.current.keys().next().copied()
        );
        Ok(())
    }

    fn append(&mut self, count: u8, salt: u8, large: bool) -> Result<(), JournalError> {
        let start = match self.model.current.last_key_value() {
            Some((last, _)) => last + 1,
            None => u64::from(salt % 40) + 1,
        };
        for index in start..start + u64::from(count) {
            let mut bytes = payload(index, self.model.term, u64::from(salt));
            if large {
                bytes = bytes.repeat(8);
            }
            self.journal.append(index, self.model.term, &bytes)?;
            self.model.append(index, (self.model.term, bytes));
        }
        Ok(())
    }

    /// Like [`Run::append`], in one batch. A batch cut short may have
    /// landed in part (one write per segment), so each of its records is
    /// acceptable after a crash, and held only once the whole batch is in.
    fn append_batch(&mut self, count: u8, salt: u8, large: bool) -> Result<(), JournalError> {
        let start = match self.model.current.last_key_value() {
            Some((last, _)) => last + 1,
            None => u64::from(salt % 40) + 1,
        };
        let term = self.model.term;
        let hashed: Vec<HashedPayload<Vec<u8>>> = (start..start + u64::from(count))
            .map(|index| {
                let bytes = payload(index, term, u64::from(salt));
                HashedPayload::new(if large { bytes.repeat(8) } else { bytes })
            })
            .collect();
        let batch: Vec<Append<'_, Vec<u8>>> = (start..)
            .zip(&hashed)
            .map(|(index, payload)| Append {
                index,
                term,
                payload,
            })
            .collect();
        for append in &batch {
            let value = (term, append.payload.bytes().to_vec());
            self.model
                .acceptable
                .entry(append.index)
                .or_default()
                .push(value);
        }
        self.journal.append_batch(&batch)?;
        for append in &batch {
            let value = (term, append.payload.bytes().to_vec());
            self.model.current.insert(append.index, value);
        }
        Ok(())
    }

    fn truncate(&mut self, back: u8) -> Result<(), JournalError> {
        let Some((&last, _)) = self.model.current.last_key_value() else {
            return Ok(());
        };
        let index = last.saturating_sub(u64::from(back));
        let result = self.journal.truncate_after(index);
        match &result {
            Ok(()) => self.model.truncated(index),
            Err(_) => self.model.interrupted(|k| k > index),
        }
        // A new leader rewrites the tail with a higher term.
        self.model.term += 1;
        result
    }

    fn purge(&mut self, ahead: u8) -> Result<(), JournalError> {
        let Some((&first, _)) = self.model.current.first_key_value() else {
            return Ok(());
        };
        let index = first + u64::from(ahead);
        let result = self.journal.purge_up_to(index);
        match &result {
            Ok(()) => self.model.purged(index),
            Err(_) => {
                let all = self
                    .model
                    .current
                    .keys()
                    .next_back()
                    .is_some_and(|last| index >= *last);
                self.model.interrupted(|k| all || k <= index);
            }
        }
        result
    }

    /// Reopens after a power cut and checks what survived.
    fn recover(&mut self) -> Result<(), TestCaseError> {
        self.wire = Tripwire::new(self.sim.clone());
        let opened = Journal::open(Arc::new(self.wire.clone()), dir(), self.options.clone());
        let (journal, report) =
            opened.map_err(|e| TestCaseError::fail(format!("reopen failed: {e}")))?;
        prop_assert!(
            report.damage.is_empty(),
            "a crash was reported as damage: {:?}",
            report.damage
        );
        let held: BTreeMap<u64, Value> = match (journal.first_index(), journal.last()) {
            (Some(first), Some((last, _))) => (first..=last)
                .map(|index| {
                    let record = journal
                        .read(index)
                        .map_err(|e| TestCaseError::fail(format!("read {index}: {e}")))?;
                    Ok((index, (record.term, record.payload)))
                })
                .collect::<Result<_, TestCaseError>>()?,
            (None, None) => BTreeMap::new(),
            other => {
                return Err(TestCaseError::fail(format!(
                    "inconsistent bounds {other:?}"
                )))
            }
        };
        prop_assert_eq!(report.records, held.len() as u64);
        for index in &self.model.required {
            prop_assert!(
                held.contains_key(index),
                "synced record {} lost; held {:?}, required {:?}, report {:?}",
                index,
                held.keys().collect::<Vec<_>>(),
                self.model.required,
                report
            );
        }
        for (index, value) in &held {
            let acceptable = self
                .model
                .acceptable
                .get(index)
                .is_some_and(|vs| vs.contains(value));
            prop_assert!(
                acceptable,
                "record {} was never appended with this value",
                index
            );
        }
        self.journal = journal;
        self.model.required = held.keys().copied().collect();
        self.model.acceptable = held.iter().map(|(k, v)| (*k, vec![v.clone()])).collect();
        self.model.current = held;
        self.model.term += 1;
        Ok(())
    }
}

fn run(seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut run = Run::new(seed);
    for op in ops {
        run.step(op)?;
    }
    run.sim.power_cut();
    run.wire.arm(0);
    run.wire.trip_now();
    run.recover()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn power_cuts_never_lose_synced_records_nor_look_like_damage(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(seed, &ops)?;
    }
}

#[test]
fn unsynced_appends_are_lost_or_kept_but_never_damage() {
    for policy in [
        CrashPolicy::LoseUnsynced,
        CrashPolicy::KeepUnsynced,
        CrashPolicy::Random,
    ] {
        for seed in 0..50 {
            let disk = SimDisk::new(seed);
            let options = JournalOptions::default();
            let (mut journal, _) = open(&disk, &options);
            fill(&mut journal, 1..=30, 1);
            journal.sync().unwrap();
            fill(&mut journal, 31..=60, 1);
            drop(journal);
            disk.power_cut_with(policy);
            let (journal, report) = open(&disk, &options);
            assert!(report.is_clean(), "{policy:?} seed {seed}: {report:?}");
            let (last, _) = journal.last().unwrap();
            assert!(
                (30..=60).contains(&last),
                "{policy:?} seed {seed}: last {last}"
            );
            if policy == CrashPolicy::LoseUnsynced {
                assert_eq!(last, 30);
            }
            if policy == CrashPolicy::KeepUnsynced {
                assert_eq!(last, 60);
            }
            for index in 1..=last {
                assert_eq!(journal.read(index).unwrap().payload, payload(index, 1, 0));
            }
        }
    }
}
