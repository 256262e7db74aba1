//! Guards against a sequence of saves, power cuts cut into them, and rot of
//! one copy at a time ever losing the last completed save or resurrecting an
//! older one.

mod journal_support;

use std::path::PathBuf;
use std::sync::Arc;

use finkfs_raft::meta::MetaStore;
use finkfs_simdisk::SimDisk;
use journal_support::Tripwire;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Save {
        len: u8,
    },
    /// Cut the power just before the n-th next disk change.
    Cut {
        after_changes: u8,
    },
    /// Flip a bit of one copy at rest (after which the store is reopened,
    /// which repairs it from the other copy).
    Rot {
        copy_b: bool,
        bit: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(|len| Op::Save { len }),
        1 => (0u8..8).prop_map(|after_changes| Op::Cut { after_changes }),
        1 => (any::<bool>(), any::<u16>()).prop_map(|(copy_b, bit)| Op::Rot { copy_b, bit }),
    ]
}

fn dir() -> PathBuf {
    PathBuf::from("groups/9/meta")
}

fn value(generation: u64, len: u8) -> Vec<u8> {
    (0..len)
        .map(|i| i ^ generation as u8)
        .chain(generation.to_le_bytes())
        .collect()
}

fn run(seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let sim = SimDisk::new(seed);
    let mut wire = Tripwire::new(sim.clone());
    let (mut store, _) = MetaStore::open(Arc::new(wire.clone()), dir()).unwrap();
    // The last completed save, and one that may or may not have landed.
    let mut acked: Option<Vec<u8>> = None;
    let mut maybe: Option<Vec<u8>> = None;
    for op in ops {
        let mut reopen = false;
        match *op {
            Op::Save { len } => {
                let next = value(store.generation() + 1, len);
                match store.save(&next) {
                    Ok(()) => {
                        acked = Some(next);
                        maybe = None;
                    }
                    Err(_) => {
                        prop_assert!(wire.tripped(), "save failed without a power cut");
                        maybe = Some(next);
                        reopen = true;
                    }
                }
            }
            Op::Cut { after_changes } => wire.arm(u64::from(after_changes)),
            Op::Rot { copy_b, bit } => {
                let path = dir().join(if copy_b { "meta.b" } else { "meta.a" });
                let len = sim.current_bytes(&path).unwrap().len() as u64;
                sim.flip_bit(&path, u64::from(bit) % (len * 8)).unwrap();
                sim.power_cut();
                reopen = true;
            }
        }
        if reopen {
            wire = Tripwire::new(sim.clone());
            let (reopened, recovery) = MetaStore::open(Arc::new(wire.clone()), dir()).unwrap();
            prop_assert!(
                !recovery.lost,
                "one damaged copy at a time must never lose the state"
            );
            let payload = reopened.payload().map(<[u8]>::to_vec);
            prop_assert!(
                payload == acked || (maybe.is_some() && payload == maybe),
                "got {:?}",
                payload
            );
            acked = payload;
            maybe = None;
            store = reopened;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn saves_cuts_and_single_copy_rot_never_lose_the_last_completed_save(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(seed, &ops)?;
    }
}
