//! What a power cut does to the unsynced writes of one file.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::pending::PendingOp;

/// How a power cut treats the writes that were not fsynced. It applies to
/// each file on its own; directory entries that were not made durable by a
/// directory fsync are always lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Every unsynced write is lost: each file holds what it held at its last fsync.
    LoseUnsynced,
    /// Each unsynced write independently reached the disk or not (even odds),
    /// in issue order: a later write may survive while an earlier one is lost.
    KeepRandom,
    /// The writes before the last one reached the disk; the last one was cut
    /// mid-flight and keeps only a prefix of whole sectors (possibly none).
    TearLast,
    /// The disk wrote the unsynced writes in a random order and lost power
    /// after a random number of them: an older write may land over a newer one.
    Reorder,
    /// One of the four above, drawn per file from the seeded generator.
    Random,
}

/// The writes of one file that survive a cut under `policy`, in the order
/// they reach the disk.
pub fn surviving(policy: Policy, ops: &[PendingOp], rng: &mut impl Rng) -> Vec<PendingOp> {
    match policy {
        Policy::LoseUnsynced => Vec::new(),
        Policy::KeepRandom => ops.iter().filter(|_| rng.gen_bool(0.5)).cloned().collect(),
        Policy::TearLast => tear_last(ops, rng),
        Policy::Reorder => reorder(ops, rng),
        Policy::Random => {
            let drawn = match rng.gen_range(0..4u8) {
                0 => Policy::LoseUnsynced,
                1 => Policy::KeepRandom,
                2 => Policy::TearLast,
                _ => Policy::Reorder,
            };
            surviving(drawn, ops, rng)
        }
    }
}

fn tear_last(ops: &[PendingOp], rng: &mut impl Rng) -> Vec<PendingOp> {
    let Some((last, earlier)) = ops.split_last() else {
        return Vec::new();
    };
    let mut kept = earlier.to_vec();
    let pieces = last.sector_pieces();
    if pieces == 0 {
        // A truncate or an empty write cannot tear: it happened or it did not.
        if rng.gen_bool(0.5) {
            kept.push(last.clone());
        }
        return kept;
    }
    // Strictly fewer pieces than the whole write, so it is always torn.
    if let Some(prefix) = last.torn(rng.gen_range(0..pieces)) {
        kept.push(prefix);
    }
    kept
}

fn reorder(ops: &[PendingOp], rng: &mut impl Rng) -> Vec<PendingOp> {
    let mut shuffled = ops.to_vec();
    shuffled.shuffle(rng);
    let landed = rng.gen_range(0..=shuffled.len());
    shuffled.truncate(landed);
    shuffled
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::pending::SECTOR_BYTES;

    fn writes(count: u64) -> Vec<PendingOp> {
        (0..count)
            .map(|i| PendingOp::Write {
                offset: i * 1000,
                bytes: vec![i as u8; 1000],
            })
            .collect()
    }

    #[test]
    fn lose_unsynced_keeps_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        assert!(surviving(Policy::LoseUnsynced, &writes(5), &mut rng).is_empty());
    }

    #[test]
    fn tear_last_keeps_earlier_writes_and_a_strict_sector_prefix_of_the_last() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let ops = writes(3);
            let kept = surviving(Policy::TearLast, &ops, &mut rng);
            assert_eq!(kept[..2], ops[..2]);
            if let Some(PendingOp::Write { offset, bytes }) = kept.get(2) {
                assert_eq!(*offset, 2000);
                assert!(bytes.len() < 1000);
                assert_eq!((offset + bytes.len() as u64) % SECTOR_BYTES, 0);
            }
        }
    }

    #[test]
    fn keep_random_preserves_issue_order() {
        let ops = writes(20);
        let mut rng = StdRng::seed_from_u64(7);
        let kept = surviving(Policy::KeepRandom, &ops, &mut rng);
        let positions: Vec<usize> = kept
            .iter()
            .map(|k| ops.iter().position(|o| o == k).expect("kept op was issued"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn same_seed_gives_same_survivors() {
        let ops = writes(30);
        for policy in [Policy::KeepRandom, Policy::Reorder, Policy::Random] {
            let a = surviving(policy, &ops, &mut StdRng::seed_from_u64(42));
            let b = surviving(policy, &ops, &mut StdRng::seed_from_u64(42));
            assert_eq!(a, b);
        }
    }
}
