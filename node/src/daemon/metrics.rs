//! The `/metrics` endpoint: Prometheus text format over a minimal HTTP/1.1
//! server (one request per connection, `GET /metrics` only).
//!
//! Gauges are read from openraft's metrics at scrape time; counters and the
//! fsync histograms come from [`DiskStats`] and the client service's
//! [`ApiCounters`].

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use finkfs_raft::types::{GroupId, NodeId, Raft, TypeConfig};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::storage::RaftStateMachine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::disk_metrics::{DiskStats, SYNC_BUCKETS_SECONDS};
use crate::api::ApiCounters;
use crate::backup::BackupState;
use crate::repair::RepairStats;
use crate::scrub::ScrubStats;

/// Longest request head read.
const REQUEST_HEAD_BYTES_MAX: usize = 8 << 10;
/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes answered at once; more connections wait.
const SCRAPES_IN_FLIGHT_MAX: usize = 16;

/// Where the metrics of one node come from.
pub struct MetricsSources<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    /// This node.
    pub id: NodeId,
    /// Its group.
    pub group: GroupId,
    /// Its Raft node.
    pub raft: Raft<SM>,
    /// Its disk counters.
    pub disk: Arc<DiskStats>,
    /// Its client service counters.
    pub api: Arc<ApiCounters>,
    /// Why it may not vote now (the log store's vote gate, re-asked while
    /// the node runs); empty when it may.
    pub vote_blockers: tokio::sync::watch::Receiver<Vec<String>>,
    /// The automatic backups, when they are on.
    pub backup: Option<Arc<BackupState>>,
    /// The scrubber's counters.
    pub scrub: Arc<ScrubStats>,
    /// Damage found and repairs made, by the scrubber and by reads.
    pub repair: Arc<RepairStats>,
}

impl<SM> MetricsSources<SM>
where
    SM: RaftStateMachine<TypeConfig>,
{
    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        self.render_raft(&mut out);
        self.render_disk(&mut out);
        self.render_api(&mut out);
        self.render_backup(&mut out);
        self.render_scrub(&mut out);
        out
    }

    /// The scrubber and repairs: a dashboard alerts on
    /// `finkfs_scrub_unrepairable_total` rising, or on
    /// `finkfs_scrub_last_pass_unix` older than the period.
    fn render_scrub(&self, out: &mut String) {
        let labels = self.labels();
        let scrub = &self.scrub;
        let repair = &self.repair;
        let counters = [
            (
                "finkfs_scrub_bytes_total",
                "Bytes the scrubber read and verified (blocks and journal).",
                scrub.bytes.load(Ordering::Relaxed),
            ),
            (
                "finkfs_scrub_passes_total",
                "Full scrub passes completed.",
                scrub.passes.load(Ordering::Relaxed),
            ),
            (
                "finkfs_scrub_repaired_total",
                "Damaged blocks replaced by an intact copy (found by the scrubber or a read).",
                RepairStats::get(&repair.repaired),
            ),
            (
                "finkfs_scrub_unrepairable_total",
                "Damaged blocks met with no intact copy on any replica (counted each time met).",
                RepairStats::get(&repair.unrepairable),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
        let name = "finkfs_scrub_damage_found_total";
        let _ = writeln!(
            out,
            "# HELP {name} Damage found by the scrubber or a read, by structure."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for (structure, value) in [
            ("block", RepairStats::get(&repair.block_damage_found)),
            ("journal", RepairStats::get(&repair.journal_damage_found)),
        ] {
            let _ = writeln!(out, "{name}{{{labels},structure=\"{structure}\"}} {value}");
        }
        gauge(
            out,
            "finkfs_scrub_last_pass_unix",
            "Unix time the last full scrub pass ended (0: none yet).",
            &labels,
            scrub.last_pass_unix.load(Ordering::Relaxed),
        );
    }

    /// Backup health: a dashboard alerts on `time() -
    /// finkfs_backup_last_success_timestamp_seconds` growing, or on failures.
    fn render_backup(&self, out: &mut String) {
        let labels = self.labels();
        let Some(state) = &self.backup else {
            gauge(
                out,
                "finkfs_backup_enabled",
                "1 when automatic backups are on.",
                &labels,
                0,
            );
            return;
        };
        let status = state.status();
        gauge(
            out,
            "finkfs_backup_enabled",
            "1 when automatic backups are on.",
            &labels,
            1,
        );
        let counters = [
            (
                "finkfs_backup_successes_total",
                "Automatic backups that succeeded on this node.",
                status.successes,
            ),
            (
                "finkfs_backup_failures_total",
                "Automatic backups that failed on this node.",
                status.failures,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
        let gauges = [
            (
                "finkfs_backup_last_success_timestamp_seconds",
                "Unix time of the last successful backup (0: none yet).",
                status.last_success_unix.unwrap_or(0),
            ),
            (
                "finkfs_backup_last_seq",
                "Sequence number of the last successful backup on the target.",
                status.last_seq.unwrap_or(0),
            ),
            (
                "finkfs_backup_last_size_bytes",
                "Block bytes the last successful backup covers.",
                status.last_size_bytes,
            ),
            (
                "finkfs_backup_last_written_bytes",
                "Bytes the last successful backup wrote to the target.",
                status.last_written_bytes,
            ),
            (
                "finkfs_backup_last_attempt_failed",
                "1 when the last backup attempt failed.",
                u64::from(status.last_error.is_some()),
            ),
        ];
        for (name, help, value) in gauges {
            gauge(out, name, help, &labels, value);
        }
    }

    fn labels(&self) -> String {
        format!("node=\"{}\",group=\"{}\"", self.id, self.group.0)
    }

    fn render_raft(&self, out: &mut String) {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let labels = self.labels();
        let index = |log_id: Option<finkfs_raft::types::LogId>| log_id.map_or(0, |l| l.index);
        let commit = index(metrics.local_committed);
        let applied = index(metrics.last_applied);
        let gauges = [
            (
                "finkfs_raft_term",
                "Current Raft term.",
                metrics.current_term,
            ),
            (
                "finkfs_raft_last_log_index",
                "Index of the last log entry.",
                metrics.last_log_index.unwrap_or(0),
            ),
            (
                "finkfs_raft_commit_index",
                "Index of the last committed entry known here.",
                commit,
            ),
            (
                "finkfs_raft_last_applied_index",
                "Index of the last entry applied to the state machine.",
                applied,
            ),
            (
                "finkfs_raft_apply_lag_entries",
                "Committed entries not yet applied.",
                commit.saturating_sub(applied),
            ),
            (
                "finkfs_raft_is_leader",
                "1 if this node leads its group.",
                u64::from(metrics.state.is_leader()),
            ),
            (
                "finkfs_raft_may_vote",
                "0 if this node lost its vote or log entries and must not vote.",
                u64::from(self.vote_blockers.borrow().is_empty()),
            ),
            (
                "finkfs_raft_snapshot_index",
                "Index of the last entry in the snapshot.",
                index(metrics.snapshot),
            ),
        ];
        for (name, help, value) in gauges {
            gauge(out, name, help, &labels, value);
        }
        if let Some(replication) = &metrics.replication {
            let name = "finkfs_raft_replication_lag_entries";
            let _ = writeln!(
                out,
                "# HELP {name} Entries a member lacks behind the leader's log."
            );
            let _ = writeln!(out, "# TYPE {name} gauge");
            let last = metrics.last_log_index.unwrap_or(0);
            for (member, matched) in replication {
                let lag = match matched {
                    Some(matched) => last.saturating_sub(matched.index),
                    None => last + u64::from(metrics.last_log_index.is_some()),
                };
                let _ = writeln!(out, "{name}{{{labels},member=\"{member}\"}} {lag}");
            }
        }
    }

    fn render_disk(&self, out: &mut String) {
        let labels = self.labels();
        let name = "finkfs_fsync_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time taken by fsync of files and directories, per structure."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (structure, stats) in self.disk.iter() {
            let (cumulative, count, sum) = stats.sync.read();
            for (bound, value) in SYNC_BUCKETS_SECONDS.iter().zip(&cumulative) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels},structure=\"{structure}\",le=\"{bound}\"}} {value}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},structure=\"{structure}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "{name}_sum{{{labels},structure=\"{structure}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "{name}_count{{{labels},structure=\"{structure}\"}} {count}"
            );
        }
        let counters = [
            (
                "finkfs_disk_bytes_written_total",
                "Bytes written, per structure.",
            ),
            (
                "finkfs_disk_errors_total",
                "Failed disk operations, per structure.",
            ),
        ];
        for (index, (name, help)) in counters.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (structure, stats) in self.disk.iter() {
                let value = if index == 0 {
                    &stats.bytes_written
                } else {
                    &stats.errors
                };
                let value = value.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{{labels},structure=\"{structure}\"}} {value}");
            }
        }
    }

    fn render_api(&self, out: &mut String) {
        let labels = self.labels();
        let counts = self.api.counts();
        let counters = [
            (
                "finkfs_client_requests_total",
                "Client calls received.",
                counts.requests,
            ),
            (
                "finkfs_client_errors_total",
                "Client calls and PutMany objects that failed.",
                counts.errors,
            ),
            (
                "finkfs_client_put_bytes_total",
                "Object bytes stored by acknowledged puts.",
                counts.put_bytes,
            ),
            (
                "finkfs_client_get_bytes_total",
                "Object bytes sent by gets.",
                counts.get_bytes,
            ),
            (
                "finkfs_batches_total",
                "Batch entries proposed by the client service.",
                counts.batches,
            ),
            (
                "finkfs_batched_commands_total",
                "Commands carried by those batches.",
                counts.batched_commands,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_metrics<SM>(
    listener: TcpListener,
    sources: Arc<MetricsSources<SM>>,
    shutdown: impl Future<Output = ()>,
) where
    SM: RaftStateMachine<TypeConfig>,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(SCRAPES_IN_FLIGHT_MAX));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let sources = Arc::clone(&sources);
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &sources).await {
                tracing::debug!(%peer, %error, "metrics request failed");
            }
            drop(permit);
        });
    }
}

async fn answer<SM>(mut stream: TcpStream, sources: &MetricsSources<SM>) -> std::io::Result<()>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "request head too slow")
        })??;
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, target) {
        (Some("GET"), Some("/metrics")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            sources.render(),
        ),
        (Some("GET"), _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only /metrics is served\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET is served\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The request head (up to the blank line), bounded.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= REQUEST_HEAD_BYTES_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too long",
            ));
        }
        let read = stream.read(&mut buf).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The address a metrics listener is bound to, for logs.
pub fn describe(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_string(), |a| format!("http://{a}/metrics"))
}
