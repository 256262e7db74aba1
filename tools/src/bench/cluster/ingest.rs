//! Replicated ingest: `clients` tasks in this process, each with one put in
//! flight, write objects for a fixed time (or until a byte ceiling), on a
//! cluster of three nodes. Puts still in flight at the deadline are waited
//! for and counted, as the peers' benches do; rates divide by the measured
//! time. The nodes' own counters give the bytes they wrote and their CPU.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use finkfs_node::client::Client;
use tokio::task::JoinSet;

use super::latency::Latencies;
use super::payload::{object_path, ObjectKind, Payloads};
use super::rss::{self, Snapshot, Usage};
use crate::bench::stats::mib_per_s;

/// A workload stops after this many failed puts: a broken cluster should
/// end the run with its errors, not spin.
const FAILED_PUTS_MAX: u64 = 100;

/// One ingest workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// What it writes.
    pub kind: ObjectKind,
    /// Concurrent clients, each with one put in flight.
    pub clients: usize,
}

impl Workload {
    /// Its name in object paths and tables: `alerts`, `1MiB`, `64MiB`.
    pub fn label(&self) -> String {
        match self.kind {
            ObjectKind::Alerts => "alerts".into(),
            ObjectKind::Fixed(bytes) => crate::bench::size::ByteSize(bytes)
                .to_string()
                .replace(' ', ""),
        }
    }
}

/// How long and how much a workload may write.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Writing stops after this time.
    pub duration: Duration,
    /// Or once this many bytes were acknowledged.
    pub bytes_max: u64,
    /// Pause after the last acknowledgement before the nodes' write
    /// counters are read, so followers' applies are counted.
    pub settle: Duration,
}

/// What one workload measured.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// Acknowledged puts.
    pub ops: u64,
    /// Acknowledged bytes.
    pub bytes: u64,
    /// Failed puts, and the first failure.
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first put to the last acknowledgement.
    pub seconds: f64,
    /// Latency of each acknowledged put.
    pub latencies: Latencies,
    /// What the node processes did (CPU over `seconds`, writes until settled).
    pub nodes: Usage,
    /// CPU of this process (the load generator), % of one core.
    pub bench_cpu_percent: f64,
    /// Every acknowledged object: path and size (kept for reads).
    pub stored: Vec<(String, u64)>,
    /// Whether it stopped at the byte ceiling before the deadline.
    pub capped: bool,
}

impl Ingested {
    /// Acknowledged puts per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    /// Acknowledged MiB per second.
    pub fn mib_per_s(&self) -> f64 {
        mib_per_s(self.bytes, self.seconds)
    }

    /// Bytes each node wrote to its disk per byte ingested.
    pub fn amplification_per_node(&self, nodes: usize) -> f64 {
        self.nodes.write_bytes as f64 / nodes as f64 / self.bytes.max(1) as f64
    }
}

/// What each client task brings back.
#[derive(Default)]
struct ClientTally {
    ops: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Latencies,
    stored: Vec<(String, u64)>,
}

/// Runs `workload` against the cluster whose node processes are `pids`;
/// its objects are numbered from `first_object` (numbers name and stamp
/// them, so a second run on the same cluster must start past the first).
pub async fn run(
    client: &Client,
    pids: &[u32],
    payloads: Arc<Payloads>,
    workload: Workload,
    budget: Budget,
    first_object: u64,
) -> anyhow::Result<Ingested> {
    let label = workload.label();
    let next = Arc::new(AtomicU64::new(first_object));
    let acked = Arc::new(AtomicU64::new(0));
    let before = Snapshot::take(pids)?;
    let own_before = rss::own_cpu_ticks()?;
    let start = Instant::now();
    let deadline = start + budget.duration;
    let mut tasks = JoinSet::new();
    for index in 0..workload.clients {
        let (client, payloads, next, acked) = (
            client.clone(),
            payloads.clone(),
            next.clone(),
            acked.clone(),
        );
        let label = label.clone();
        tasks.spawn(async move {
            let mut tally = ClientTally::default();
            while Instant::now() < deadline
                && acked.load(Ordering::Relaxed) < budget.bytes_max
                && tally.errors < FAILED_PUTS_MAX
            {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let data = payloads.object(n);
                let size = data.len() as u64;
                let path = object_path(&label, index, n);
                let sent = Instant::now();
                match client.put(&path, data).await {
                    Ok(_) => {
                        tally.latencies.record(sent.elapsed());
                        tally.ops += 1;
                        tally.bytes += size;
                        acked.fetch_add(size, Ordering::Relaxed);
                        tally.stored.push((path, size));
                    }
                    Err(error) => {
                        tally.errors += 1;
                        tally
                            .first_error
                            .get_or_insert_with(|| format!("{path}: {error}"));
                    }
                }
            }
            tally
        });
    }
    let mut total = ClientTally::default();
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.map_err(|e| anyhow::anyhow!("a load task failed: {e}"))?;
        total.ops += tally.ops;
        total.bytes += tally.bytes;
        total.errors += tally.errors;
        total.first_error = total.first_error.or(tally.first_error);
        total.latencies.merge(tally.latencies);
        total.stored.extend(tally.stored);
    }
    let seconds = start.elapsed().as_secs_f64();
    let busy = Snapshot::take(pids)?.since(&before);
    let own_ticks = rss::own_cpu_ticks()?.saturating_sub(own_before);
    tokio::time::sleep(budget.settle).await;
    let settled = Snapshot::take(pids)?.since(&before);
    anyhow::ensure!(
        total.ops > 0,
        "{label} x {} clients: no put was acknowledged ({} failed; first: {})",
        workload.clients,
        total.errors,
        total.first_error.as_deref().unwrap_or("none")
    );
    Ok(Ingested {
        ops: total.ops,
        bytes: total.bytes,
        errors: total.errors,
        first_error: total.first_error,
        seconds,
        latencies: total.latencies,
        nodes: Usage {
            write_bytes: settled.write_bytes,
            cpu_percent: busy.cpu_percent,
        },
        bench_cpu_percent: rss::cpu_percent(own_ticks, seconds),
        capped: total.bytes >= budget.bytes_max,
        stored: total.stored,
    })
}
