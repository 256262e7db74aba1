//! Recovery after every node lost power. SIGKILL of every node is the
//! stand-in for the power cut: it loses what the processes held in memory,
//! but the kernel keeps what they had written to the page cache, so this
//! times the restart path (reopening and replaying each node's data,
//! electing a leader) rather than a true cold start.
//!
//! The cluster is filled in steps (a small amount, then the full amount);
//! after each, every node is killed, all are restarted at once, and two
//! times are taken from the restart: until every node listens again (its
//! data reopened, its journal replayed) and until the first write is
//! acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use finkfs_node::client::{Client, ClientOptions, RetryOptions};

use super::ingest::{self, Budget, Workload};
use super::payload::{ObjectKind, Payloads};
use crate::demo::nodes::LocalCluster;

/// Objects the cluster is filled with.
const FILL_OBJECT_BYTES: u64 = 1 << 20;
/// Most clients filling it (fewer for small amounts, which 16 puts in
/// flight would overshoot).
const FILL_CLIENTS_MAX: u64 = 16;
/// Longest wait for the first acknowledged write after the restart.
const FIRST_ACK_WAIT: Duration = Duration::from_secs(120);
/// Pause between two attempts of the first write.
const ATTEMPT_PAUSE: Duration = Duration::from_millis(10);

/// One recovery measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recovery {
    /// Bytes acknowledged before the power cut.
    pub stored_bytes: u64,
    /// From the restart to every node listening, seconds.
    pub to_listening_s: f64,
    /// From the restart to the first acknowledged write, seconds.
    pub to_first_ack_s: f64,
}

/// Fills `cluster` to each amount of `steps` in turn, cutting the power
/// after each; one measurement per step.
pub async fn measure(
    cluster: &mut LocalCluster,
    client: &Client,
    steps: &[u64],
) -> anyhow::Result<Vec<Recovery>> {
    let payloads = Arc::new(Payloads::fixed(FILL_OBJECT_BYTES)?);
    let probe = Payloads::alerts(None)?;
    let addrs: Vec<String> = cluster.nodes().iter().map(|n| n.client.clone()).collect();
    // Short pauses between attempts, so the client's own backoff does not
    // hide how soon the cluster could answer.
    let options = ClientOptions {
        request_timeout: Duration::from_secs(2),
        retry: RetryOptions {
            attempts_max: 1,
            ..RetryOptions::default()
        },
        ..ClientOptions::default()
    };
    let prober = Client::connect_with(addrs, options)
        .await
        .context("cannot connect the recovery prober")?;
    let mut stored = 0u64;
    let mut objects = 0u64;
    let mut results = Vec::new();
    for (step, &target) in steps.iter().enumerate() {
        if target > stored {
            eprintln!(
                "  recovery: filling to {} MB with 1 MiB objects",
                target / 1_000_000
            );
            let filled = fill(cluster, client, payloads.clone(), target - stored, objects).await?;
            stored += filled.bytes;
            // Every number handed out went to one put, acknowledged or not.
            objects += filled.ops + filled.errors;
        }
        eprintln!(
            "  recovery: SIGKILL of every node with {} MB stored, restart",
            stored / 1_000_000
        );
        for id in cluster.nodes().iter().map(|n| n.id).collect::<Vec<_>>() {
            cluster.kill(id)?;
        }
        let start = Instant::now();
        cluster.restart_all().await?;
        let to_listening = start.elapsed();
        first_ack(&prober, &probe, step).await?;
        let to_first_ack = start.elapsed();
        cluster.check_running()?;
        results.push(Recovery {
            stored_bytes: stored,
            to_listening_s: to_listening.as_secs_f64(),
            to_first_ack_s: to_first_ack.as_secs_f64(),
        });
    }
    Ok(results)
}

/// Writes at least `bytes` more, numbering objects from `first_object`.
async fn fill(
    cluster: &LocalCluster,
    client: &Client,
    payloads: Arc<Payloads>,
    bytes: u64,
    first_object: u64,
) -> anyhow::Result<ingest::Ingested> {
    let pids: Vec<u32> = cluster.nodes().iter().filter_map(|n| n.pid()).collect();
    let clients = (bytes / FILL_OBJECT_BYTES / 4).clamp(1, FILL_CLIENTS_MAX);
    let workload = Workload {
        kind: ObjectKind::Fixed(FILL_OBJECT_BYTES),
        clients: usize::try_from(clients)?,
    };
    let budget = Budget {
        duration: Duration::from_secs(24 * 3600),
        bytes_max: bytes,
        settle: Duration::ZERO,
    };
    let filled = ingest::run(client, &pids, payloads, workload, budget, first_object).await?;
    anyhow::ensure!(
        filled.errors == 0,
        "filling the cluster: {} puts failed (first: {})",
        filled.errors,
        filled.first_error.as_deref().unwrap_or("none")
    );
    Ok(filled)
}

/// Puts one alert until it is acknowledged.
async fn first_ack(client: &Client, probe: &Payloads, step: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let path = format!("bench/recovery/probe-{step}");
    let mut last_error = String::new();
    while started.elapsed() < FIRST_ACK_WAIT {
        match client.put(&path, probe.object(step as u64)).await {
            Ok(_) => return Ok(()),
            Err(error) => last_error = error.to_string(),
        }
        tokio::time::sleep(ATTEMPT_PAUSE).await;
    }
    anyhow::bail!(
        "no write was acknowledged within {FIRST_ACK_WAIT:?} of the restart: {last_error}"
    )
}
