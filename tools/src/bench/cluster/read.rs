//! Reads of the alerts just written: whole objects (checked against their
//! BLAKE3 by the client) and 4 KiB byte ranges (every block they touch
//! verified by the node), `clients` at once for a fixed time. The alerts
//! were written seconds before, so the nodes' page cache likely holds them:
//! this measures finkfs's read path, not the disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use finkfs_node::client::Client;
use tokio::task::JoinSet;

use super::latency::Latencies;
use crate::bench::stats::mib_per_s;

/// Bytes of each range read.
pub const RANGE_BYTES: u64 = 4096;

/// Whole-object reads or range reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// The whole object.
    Whole,
    /// [`RANGE_BYTES`] from a spot that moves with each read.
    Range,
}

/// What one read workload measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadStats {
    /// Reads per second.
    pub ops_per_s: f64,
    /// MiB read per second.
    pub mib_per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed reads.
    pub errors: u64,
}

#[derive(Default)]
struct Tally {
    ops: u64,
    bytes: u64,
    errors: u64,
    latencies: Latencies,
}

/// Reads `objects` (path, size) with `clients` tasks for `duration`.
pub async fn run(
    client: &Client,
    objects: Arc<Vec<(String, u64)>>,
    kind: ReadKind,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<ReadStats> {
    anyhow::ensure!(!objects.is_empty(), "nothing was written to read back");
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (client, objects, next) = (client.clone(), objects.clone(), next.clone());
        tasks.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                // A stride prime to most counts visits the objects out of
                // write order.
                let (path, size) = &objects[(n.wrapping_mul(7919) % objects.len() as u64) as usize];
                let sent = Instant::now();
                let got = match kind {
                    ReadKind::Whole => client.get(path).await,
                    ReadKind::Range => {
                        let span = size.saturating_sub(RANGE_BYTES).max(1);
                        let start = n.wrapping_mul(4099) % span;
                        client.get_range(path, start, RANGE_BYTES.min(*size)).await
                    }
                };
                match got {
                    Ok(data) => {
                        tally.latencies.record(sent.elapsed());
                        tally.ops += 1;
                        tally.bytes += data.len() as u64;
                    }
                    Err(_) => tally.errors += 1,
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.map_err(|e| anyhow::anyhow!("a read task failed: {e}"))?;
        total.ops += tally.ops;
        total.bytes += tally.bytes;
        total.errors += tally.errors;
        total.latencies.merge(tally.latencies);
    }
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(total.ops > 0, "no read succeeded ({} failed)", total.errors);
    Ok(ReadStats {
        ops_per_s: total.ops as f64 / seconds,
        mib_per_s: mib_per_s(total.bytes, seconds),
        p50_ms: total.latencies.quantile_ms(0.50),
        p99_ms: total.latencies.quantile_ms(0.99),
        errors: total.errors,
    })
}
