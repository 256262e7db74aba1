//! Latencies as the client saw them, and the single-alert commit latency:
//! one client, one alert in flight, each put acknowledged once it is
//! fsynced on a majority — set against one raw fdatasync of the same disk.

use std::time::Duration;

/// Recorded latencies of one workload, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    micros: Vec<u64>,
}

impl Latencies {
    /// Adds one.
    pub fn record(&mut self, latency: Duration) {
        self.micros
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    /// The `q` quantile (0.5 = median) in milliseconds, by the nearest-rank
    /// method; 0 when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        assert!((0.0..=1.0).contains(&q), "quantile {q} outside 0..=1");
        if self.micros.is_empty() {
            return 0.0;
        }
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
    }
}

/// Commit latency of a single alert in one round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitLatency {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// The median over the median of one raw 4 KiB append + fdatasync.
    pub p50_over_fdatasync: f64,
}

impl CommitLatency {
    /// From the latencies of the one-client alert run and the round's limit.
    pub fn new(latencies: &Latencies, fdatasync_p50_ms: f64) -> CommitLatency {
        let p50_ms = latencies.quantile_ms(0.50);
        CommitLatency {
            p50_ms,
            p99_ms: latencies.quantile_ms(0.99),
            p50_over_fdatasync: p50_ms / fdatasync_p50_ms.max(1e-6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles_of_a_hundred_samples() {
        let mut latencies = Latencies::default();
        for ms in 1..=100u64 {
            latencies.record(Duration::from_millis(ms));
        }
        assert_eq!(latencies.quantile_ms(0.5), 50.0);
        assert_eq!(latencies.quantile_ms(0.99), 99.0);
        assert_eq!(latencies.quantile_ms(1.0), 100.0);
        assert_eq!(latencies.quantile_ms(0.0), 1.0);
    }

    #[test]
    fn no_samples_give_zero_rather_than_a_panic() {
        assert_eq!(Latencies::default().quantile_ms(0.99), 0.0);
    }
}
