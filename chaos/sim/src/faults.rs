//! What a link does to one message: deliver it after a delay, or lose it.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;

/// How a link treats the messages on it; each message's fate is drawn
/// separately, so independent delays reorder messages as a real network
/// does.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkFaults {
    /// Probability that a message is lost.
    pub drop_probability: f64,
    /// Shortest ordinary delay.
    pub delay_min: Duration,
    /// Longest ordinary delay.
    pub delay_max: Duration,
    /// Probability that a message takes a long detour instead.
    pub tail_probability: f64,
    /// Longest detour.
    pub tail_max: Duration,
}

impl LinkFaults {
    /// A perfect link: every message arrives at once, in order.
    pub fn perfect() -> LinkFaults {
        LinkFaults {
            drop_probability: 0.0,
            delay_min: Duration::ZERO,
            delay_max: Duration::ZERO,
            tail_probability: 0.0,
            tail_max: Duration::ZERO,
        }
    }

    /// A healthy local network: 0.2–2 ms, one message in a hundred up to
    /// 200 ms late, none lost.
    pub fn lan() -> LinkFaults {
        LinkFaults {
            drop_probability: 0.0,
            delay_min: Duration::from_micros(200),
            delay_max: Duration::from_millis(2),
            tail_probability: 0.01,
            tail_max: Duration::from_millis(200),
        }
    }

    /// This link, losing each message with probability `p`.
    pub fn dropping(mut self, p: f64) -> LinkFaults {
        self.drop_probability = p;
        self
    }

    /// Draws the fate of one message.
    pub fn draw(&self, rng: &mut SmallRng) -> Fate {
        // Every draw is made whatever the outcome, so that one message's
        // fate never shifts the random stream of the next.
        let lost = rng.gen_bool(self.drop_probability.clamp(0.0, 1.0));
        let delay = uniform(rng, self.delay_min, self.delay_max);
        let detour = rng.gen_bool(self.tail_probability.clamp(0.0, 1.0));
        let tail = uniform(rng, Duration::ZERO, self.tail_max);
        match (lost, detour) {
            (true, _) => Fate::Lost,
            (false, true) => Fate::Deliver(delay + tail),
            (false, false) => Fate::Deliver(delay),
        }
    }
}

impl Default for LinkFaults {
    fn default() -> LinkFaults {
        LinkFaults::lan()
    }
}

/// A uniform draw in `[min, max]`, in whole microseconds.
fn uniform(rng: &mut SmallRng, min: Duration, max: Duration) -> Duration {
    let (low, high) = (min.as_micros() as u64, max.as_micros() as u64);
    Duration::from_micros(rng.gen_range(low..=high.max(low)))
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It arrives after this long.
    Deliver(Duration),
    /// It never arrives.
    Lost,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn perfect_link_delivers_everything_at_once() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(
                LinkFaults::perfect().draw(&mut rng),
                Fate::Deliver(Duration::ZERO)
            );
        }
    }

    #[test]
    fn delays_stay_within_the_configured_bounds() {
        let mut rng = SmallRng::seed_from_u64(2);
        let faults = LinkFaults::lan();
        for _ in 0..10_000 {
            match faults.draw(&mut rng) {
                Fate::Deliver(d) => {
                    assert!(d >= faults.delay_min && d <= faults.delay_max + faults.tail_max)
                }
                Fate::Lost => panic!("a lan link loses nothing"),
            }
        }
    }

    #[test]
    fn drop_probability_is_roughly_honoured() {
        let mut rng = SmallRng::seed_from_u64(3);
        let faults = LinkFaults::lan().dropping(0.25);
        let lost = (0..10_000)
            .filter(|_| faults.draw(&mut rng) == Fate::Lost)
            .count();
        assert!((2_000..3_000).contains(&lost), "lost {lost} of 10000");
    }
}
