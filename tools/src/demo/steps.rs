//! The demo's steps against the running cluster. Each returns what it
//! measured; the narration and the verdict are the caller's.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::Context;
use finkfs_node::api::proto::{MemberSpec, StatusReply};
use finkfs_node::client::{Client, ClientError};
use futures_util::StreamExt;

use super::alerts::Alerts;
use super::nodes::LocalCluster;
use crate::progress::{Progress, Totals};
use crate::upload;

/// Longest wait for the first leader, and for a new one after the crash.
pub const LEADER_WAIT: Duration = Duration::from_secs(30);
/// Longest wait for the restarted node to catch up.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for one node's status while polling.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Interval of status polls while waiting for an election or a catch-up.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Failure messages shown in full; the rest are counted.
pub const FAILURES_SHOWN_MAX: usize = 5;

/// Creates the cluster (sent to node 1) and waits for its first leader;
/// a client that knows every node, the leader and the election time.
pub async fn init(cluster: &LocalCluster) -> anyhow::Result<(Client, u64, Duration)> {
    let specs: Vec<MemberSpec> = cluster
        .nodes()
        .iter()
        .map(|n| MemberSpec {
            id: n.id,
            peer_addr: n.peer.clone(),
            client_addr: n.client.clone(),
        })
        .collect();
    let addrs: Vec<String> = specs.iter().map(|s| s.client_addr.clone()).collect();
    let started = Instant::now();
    let client = Client::connect(addrs)
        .await
        .context("cannot reach the demo's nodes")?;
    client
        .init_at(&specs[0].client_addr, specs.clone())
        .await
        .context("the cluster was not created")?;
    let leader = wait_for_leader(&client, cluster, None).await?;
    Ok((client, leader.node_id, started.elapsed()))
}

/// What a load wrote.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every alert stored: path -> (BLAKE3, size).
    pub stored: BTreeMap<String, ([u8; 32], u64)>,
    /// Alerts that failed, with why (the first few).
    pub failures: Vec<String>,
    /// Alerts that failed.
    pub failed: u64,
    /// Counts and time.
    pub totals: Option<Totals>,
}

/// Writes the alerts in `range`, `in_flight` jobs at once, into `loaded`.
pub async fn load(
    client: &Client,
    alerts: &Alerts,
    range: Range<u64>,
    in_flight: usize,
    loaded: &mut Loaded,
) -> Totals {
    let count = range.end - range.start;
    let mut progress = Progress::start("write", count, alerts.bytes(range.clone()));
    let jobs = upload::jobs(alerts.objects(range));
    upload::run(client, jobs, in_flight, |report| {
        let size = report.size;
        match (report.result, report.blake3) {
            (Ok(stored), Some(sent)) if stored.blake3 == sent => {
                loaded.stored.insert(report.remote, (sent, size));
                progress.record(size, true);
            }
            (Ok(stored), _) => {
                note_failure(
                    loaded,
                    format!(
                        "{}: the cluster stored BLAKE3 {}, not what was sent",
                        report.remote,
                        crate::format::hash(&stored.blake3)
                    ),
                );
                progress.record(size, false);
            }
            (Err(reason), _) => {
                note_failure(loaded, format!("{}: {reason}", report.remote));
                progress.record(size, false);
            }
        }
    })
    .await;
    let totals = progress.finish();
    loaded.totals = Some(totals);
    totals
}

fn note_failure(loaded: &mut Loaded, message: String) {
    loaded.failed += 1;
    if loaded.failures.len() < FAILURES_SHOWN_MAX {
        loaded.failures.push(message);
    }
}

/// The leader's status; the client follows it wherever it is.
pub async fn leader_status(client: &Client) -> anyhow::Result<StatusReply> {
    let status = client
        .status()
        .await
        .context("cannot get the cluster status")?;
    if status.state == "leader" {
        return Ok(status);
    }
    anyhow::ensure!(
        !status.leader_client_addr.is_empty(),
        "node {} knows no leader",
        status.node_id
    );
    client
        .status_of(&status.leader_client_addr)
        .await
        .context("cannot get the leader's status")
}

/// Polls every running node until one says it leads (other than
/// `not`); that node's status.
pub async fn wait_for_leader(
    client: &Client,
    cluster: &LocalCluster,
    not: Option<u64>,
) -> anyhow::Result<StatusReply> {
    let started = Instant::now();
    let addrs: Vec<(u64, String)> = cluster
        .nodes()
        .iter()
        .filter(|n| Some(n.id) != not && n.pid().is_some())
        .map(|n| (n.id, n.client.clone()))
        .collect();
    loop {
        for (_, addr) in &addrs {
            if let Some(status) = probe(client, addr).await {
                if status.state == "leader" && Some(status.node_id) != not {
                    return Ok(status);
                }
            }
        }
        anyhow::ensure!(
            started.elapsed() < LEADER_WAIT,
            "no leader was elected within {LEADER_WAIT:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// One node's own status, or `None` if it does not answer quickly.
pub async fn probe(client: &Client, addr: &str) -> Option<StatusReply> {
    match tokio::time::timeout(PROBE_TIMEOUT, client.status_of(addr)).await {
        Ok(Ok(status)) => Some(status),
        _ => None,
    }
}

/// What the leader crash showed.
#[derive(Debug, Clone)]
pub struct Failover {
    /// The killed leader.
    pub killed: u64,
    /// Its process id.
    pub killed_pid: u32,
    /// The last log index it had applied when it was killed.
    pub killed_applied: Option<u64>,
    /// The term it led in.
    pub old_term: u64,
    /// The new leader.
    pub leader: u64,
    /// The new term.
    pub new_term: u64,
    /// From SIGKILL to a new leader seen.
    pub elapsed: Duration,
}

/// Kills the leader with SIGKILL and waits for another node to lead.
pub async fn crash_leader(client: &Client, cluster: &mut LocalCluster) -> anyhow::Result<Failover> {
    let leader = leader_status(client).await?;
    let killed = leader.node_id;
    let node = cluster.node(killed)?;
    let killed_pid = node.pid().context("the leader is not running")?;
    let killed_applied = leader.last_applied;
    let started = Instant::now();
    cluster.kill(killed)?;
    let new = wait_for_leader(client, cluster, Some(killed)).await?;
    // Let the client learn the new leader now, so the writes that follow
    // measure the two-node cluster rather than the client's first retry.
    let _ = client.status().await;
    Ok(Failover {
        killed,
        killed_pid,
        killed_applied,
        old_term: leader.term,
        leader: new.node_id,
        new_term: new.term,
        elapsed: started.elapsed(),
    })
}

/// What reading every alert back found.
#[derive(Debug, Default)]
pub struct ReadBack {
    /// Alerts served with the bytes written.
    pub identical: u64,
    /// Alerts served with other bytes.
    pub differing: u64,
    /// Alerts the cluster says it does not have.
    pub missing: u64,
    /// Alerts that could not be read.
    pub errors: u64,
    /// The first few problems, in words.
    pub problems: Vec<String>,
    /// Counts and time.
    pub totals: Option<Totals>,
}

impl ReadBack {
    fn note(&mut self, problem: String) {
        if self.problems.len() < FAILURES_SHOWN_MAX {
            self.problems.push(problem);
        }
    }
}

/// Reads every stored alert and compares its BLAKE3 and size with what
/// was written.
pub async fn read_back(
    client: &Client,
    stored: &BTreeMap<String, ([u8; 32], u64)>,
    in_flight: usize,
) -> ReadBack {
    let bytes = stored.values().map(|(_, size)| size).sum();
    let mut progress = Progress::start("read", stored.len() as u64, bytes);
    let mut result = ReadBack::default();
    let mut reads = futures_util::stream::iter(stored.iter())
        .map(|(path, expected)| async move { (path, *expected, client.get(path).await) })
        .buffer_unordered(in_flight.max(1));
    while let Some((path, (blake3, size), got)) = reads.next().await {
        let ok = match got {
            Ok(data) if *blake3::hash(&data).as_bytes() == blake3 && data.len() as u64 == size => {
                result.identical += 1;
                true
            }
            Ok(data) => {
                result.differing += 1;
                result.note(format!(
                    "{path}: served {} bytes that differ from the {size} written",
                    data.len()
                ));
                false
            }
            Err(error) if crate::client::is_not_found(&error) => {
                result.missing += 1;
                result.note(format!("{path}: the cluster has no such object"));
                false
            }
            Err(error @ ClientError::Corrupt { .. }) => {
                result.differing += 1;
                result.note(error.to_string());
                false
            }
            Err(error) => {
                result.errors += 1;
                result.note(format!("{path}: {error}"));
                false
            }
        };
        progress.record(size, ok);
    }
    result.totals = Some(progress.finish());
    result
}

/// What the restarted node did.
#[derive(Debug, Clone)]
pub struct CatchUp {
    /// The leader's commit index it had to reach.
    pub target: u64,
    /// Time from the restart to applying through `target`.
    pub elapsed: Duration,
}

/// Restarts node `id` and waits until it applied what the leader had
/// committed at that moment.
pub async fn restart_and_catch_up(
    client: &Client,
    cluster: &mut LocalCluster,
    id: u64,
) -> anyhow::Result<CatchUp> {
    let target = leader_status(client)
        .await?
        .commit_index
        .context("the leader reports no commit index")?;
    let started = Instant::now();
    cluster.restart(id).await?;
    let addr = cluster.node(id)?.client.clone();
    loop {
        if let Some(status) = probe(client, &addr).await {
            if status.last_applied.is_some_and(|applied| applied >= target) {
                return Ok(CatchUp {
                    target,
                    elapsed: started.elapsed(),
                });
            }
        }
        cluster.check_running()?;
        anyhow::ensure!(
            started.elapsed() < CATCH_UP_WAIT,
            "node {id} did not apply through log index {target} within {CATCH_UP_WAIT:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// How many objects the cluster lists under `prefix`.
pub async fn count_listed(client: &Client, prefix: &str) -> anyhow::Result<u64> {
    let objects = client
        .list_all(prefix)
        .await
        .with_context(|| format!("cannot list {prefix}"))?;
    Ok(objects.len() as u64)
}
