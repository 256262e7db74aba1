//! The report: what each round measured, its medians over rounds, the
//! targets met or missed, printed as a table on stdout or as JSON.
//!
//! Every figure is the median over rounds; every ratio is the median of
//! the ratios taken within each round (the disk changes speed between
//! rounds more than within one).

use std::io::{self, Write};

use super::latency::CommitLatency;
use super::limit::Limit;
use super::peers::PeerLine;
use super::read::ReadStats;
use super::recovery::Recovery;
use crate::bench::stats::median;

/// Peak RSS per node under ingest must stay below this (MiB).
const RSS_TARGET_MIB: f64 = 512.0;

/// The settings the run used, as reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub rounds: u32,
    pub seconds: f64,
    pub clients: Vec<usize>,
    pub alerts: String,
    pub large_bytes: u64,
    pub dir: String,
    pub filesystem: String,
    pub load_average_at_start: String,
    pub quick: bool,
    pub command: String,
}

/// One ingest workload in one round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestSample {
    pub workload: String,
    pub clients: usize,
    pub ops_per_s: f64,
    pub mib_per_s: f64,
    /// MiB/s over the round's limit ÷ 3.
    pub over_limit_3: f64,
    /// Bytes written per node per byte ingested.
    pub amplification_per_node: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Largest VmHWM among the nodes, MiB.
    pub peak_rss_mib: f64,
    /// CPU of the three nodes together, % of one core.
    pub nodes_cpu_percent: f64,
    /// CPU of the load generator, % of one core.
    pub bench_cpu_percent: f64,
    pub errors: u64,
    /// Stopped at the byte ceiling (disk room) before the deadline.
    pub capped: bool,
}

/// Reads of one round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reads {
    pub clients: usize,
    pub whole: ReadStats,
    pub range: ReadStats,
    /// Largest peak RSS among the nodes during the reads, MiB.
    pub peak_rss_mib: f64,
}

/// One round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Round {
    pub limit: Limit,
    pub ingest: Vec<IngestSample>,
    pub commit: Option<CommitLatency>,
    pub reads: Option<Reads>,
    pub peers: Vec<PeerLine>,
    /// Peers that failed in this round, and why.
    pub peer_errors: Vec<String>,
}

/// The recovery measurement, or why it was skipped.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryOutcome {
    Measured(Vec<Recovery>),
    Skipped(String),
}

/// Everything a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub settings: Settings,
    pub rounds: Vec<Round>,
    pub recovery: RecoveryOutcome,
}

/// A target and whether the run met it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub target: String,
    /// `met`, `missed`, or `n/a` (not measured in this run).
    pub status: &'static str,
    pub measured: String,
}

/// The comparison of one finkfs workload with the peers' matching bench.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerComparison {
    pub workload: String,
    pub clients: usize,
    /// `obj/s` or `MiB/s`.
    pub unit: &'static str,
    pub finkfs: f64,
    pub etcd: Option<f64>,
    pub ceph: Option<f64>,
    pub over_etcd: Option<f64>,
    pub over_ceph: Option<f64>,
    /// Over the better peer of each round.
    pub over_best: Option<f64>,
}

impl Report {
    /// The median of `field` over rounds of the ingest workload named.
    fn ingest_median(
        &self,
        workload: &str,
        clients: usize,
        field: impl Fn(&IngestSample) -> f64,
    ) -> Option<f64> {
        let samples: Vec<f64> = self
            .rounds
            .iter()
            .filter_map(|r| find_ingest(r, workload, clients))
            .map(field)
            .collect();
        (!samples.is_empty()).then(|| median(&samples))
    }

    /// The peer comparisons the run can make.
    pub fn comparisons(&self) -> Vec<PeerComparison> {
        let max_clients = self.settings.clients.iter().copied().max().unwrap_or(1);
        let mut out = Vec::new();
        for clients in [max_clients, 1] {
            if !self.settings.clients.contains(&clients)
                || out.iter().any(|c: &PeerComparison| c.clients == clients)
            {
                continue;
            }
            out.push(self.compare("alerts", clients, "obj/s", alert_peer_size()));
            out.push(self.compare("1MiB", clients, "MiB/s", 1 << 20));
        }
        out.retain(|c| c.etcd.is_some() || c.ceph.is_some());
        out
    }

    fn compare(
        &self,
        workload: &str,
        clients: usize,
        unit: &'static str,
        size: u64,
    ) -> PeerComparison {
        let value = |s: &IngestSample| {
            if unit == "obj/s" {
                s.ops_per_s
            } else {
                s.mib_per_s
            }
        };
        let peer_value = |l: &PeerLine| {
            if unit == "obj/s" {
                l.ops_per_s
            } else {
                l.mib_per_s
            }
        };
        let mut per_peer: [(Vec<f64>, Vec<f64>); 2] = Default::default();
        let mut over_best = Vec::new();
        for round in &self.rounds {
            let Some(own) = find_ingest(round, workload, clients).map(value) else {
                continue;
            };
            let mut best: Option<f64> = None;
            for (slot, name) in ["etcd", "ceph"].iter().enumerate() {
                if let Some(line) = find_peer(round, name, size, clients) {
                    let theirs = peer_value(line);
                    per_peer[slot].0.push(theirs);
                    per_peer[slot].1.push(own / theirs.max(1e-9));
                    best = Some(best.map_or(theirs, |b: f64| b.max(theirs)));
                }
            }
            if let Some(best) = best {
                over_best.push(own / best.max(1e-9));
            }
        }
        let med = |v: &Vec<f64>| (!v.is_empty()).then(|| median(v));
        PeerComparison {
            workload: workload.to_string(),
            clients,
            unit,
            finkfs: self.ingest_median(workload, clients, value).unwrap_or(0.0),
            etcd: med(&per_peer[0].0),
            ceph: med(&per_peer[1].0),
            over_etcd: med(&per_peer[0].1),
            over_ceph: med(&per_peer[1].1),
            over_best: med(&over_best),
        }
    }

    /// The targets, each met, missed or not measured.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let max_clients = self.settings.clients.iter().copied().max().unwrap_or(1);
        let comparisons = self.comparisons();
        let find = |w: &str, c: usize| {
            comparisons
                .iter()
                .find(|p| p.workload == w && p.clients == c)
        };
        let mut out = Vec::new();
        let mib_limit = self.ingest_median("1MiB", max_clients, |s| s.over_limit_3);
        out.push(verdict(
            format!("1 MiB objects, {max_clients} clients: >= 0.5 of limit/3"),
            mib_limit.map(|r| (r >= 0.5, format!("{r:.2} of limit/3"))),
        ));
        let over_ceph = find("1MiB", max_clients).and_then(|c| c.over_ceph);
        out.push(verdict(
            format!("1 MiB objects, {max_clients} clients: >= 1.0x Ceph"),
            over_ceph.map(|r| (r >= 1.0, format!("{r:.2}x Ceph"))),
        ));
        let over_best = find("alerts", max_clients).and_then(|c| c.over_best);
        out.push(verdict(
            format!("alerts, {max_clients} clients: >= 2x the better peer's objects/s"),
            over_best.map(|r| (r >= 2.0, format!("{r:.2}x the better peer"))),
        ));
        self.latency_verdicts(&mut out);
        out.push(self.recovery_verdict());
        let rss = self
            .rounds
            .iter()
            .flat_map(|r| r.ingest.iter().map(|s| s.peak_rss_mib))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        out.push(verdict(
            format!("peak RSS per node under ingest < {RSS_TARGET_MIB} MiB"),
            rss.map(|m| (m < RSS_TARGET_MIB, format!("largest {m:.0} MiB"))),
        ));
        out
    }

    fn latency_verdicts(&self, out: &mut Vec<Verdict>) {
        let commits: Vec<&CommitLatency> = self
            .rounds
            .iter()
            .filter_map(|r| r.commit.as_ref())
            .collect();
        let over_fsync: Vec<f64> = commits.iter().map(|c| c.p50_over_fdatasync).collect();
        out.push(verdict(
            "single-alert commit p50 <= 3x one raw fdatasync".into(),
            (!over_fsync.is_empty()).then(|| {
                let r = median(&over_fsync);
                (r <= 3.0, format!("{r:.2}x"))
            }),
        ));
        let mut over_etcd = Vec::new();
        for round in &self.rounds {
            let etcd = find_peer(round, "etcd", alert_peer_size(), 1).and_then(|l| l.lat_p50_ms);
            if let (Some(commit), Some(etcd)) = (&round.commit, etcd) {
                over_etcd.push(commit.p50_ms / etcd.max(1e-9));
            }
        }
        out.push(verdict(
            "single-alert commit p50 <= etcd's".into(),
            (!over_etcd.is_empty()).then(|| {
                let r = median(&over_etcd);
                (r <= 1.0, format!("{r:.2}x etcd's p50"))
            }),
        ));
    }

    fn recovery_verdict(&self) -> Verdict {
        let target = "recovery after every node lost power: first ack < 1 s after the journal replay (nodes listening), at every amount stored".to_string();
        match &self.recovery {
            RecoveryOutcome::Measured(points) if !points.is_empty() => {
                let worst = points
                    .iter()
                    .map(|p| p.to_first_ack_s - p.to_listening_s)
                    .fold(0.0, f64::max);
                verdict(
                    target,
                    Some((
                        worst < 1.0,
                        format!("{worst:.2} s after listening, at worst"),
                    )),
                )
            }
            _ => verdict(target, None),
        }
    }
}

fn verdict(target: String, outcome: Option<(bool, String)>) -> Verdict {
    match outcome {
        Some((true, measured)) => Verdict {
            target,
            status: "met",
            measured,
        },
        Some((false, measured)) => Verdict {
            target,
            status: "missed",
            measured,
        },
        None => Verdict {
            target,
            status: "n/a",
            measured: "not measured in this run".into(),
        },
    }
}

/// The size the peers are benched at for alert-sized objects.
pub fn alert_peer_size() -> u64 {
    super::PEER_ALERT_BYTES
}

fn find_ingest<'a>(round: &'a Round, workload: &str, clients: usize) -> Option<&'a IngestSample> {
    round
        .ingest
        .iter()
        .find(|s| s.workload == workload && s.clients == clients)
}

fn find_peer<'a>(round: &'a Round, peer: &str, size: u64, clients: usize) -> Option<&'a PeerLine> {
    round
        .peers
        .iter()
        .find(|l| l.peer == peer && l.size == size && l.clients == clients as u64)
}

/// Prints the report as JSON: the per-round figures, the comparisons and
/// the verdicts.
pub fn print_json(report: &Report) -> io::Result<()> {
    let value = serde_json::json!({
        "report": report,
        "peers": report.comparisons(),
        "targets": report.verdicts(),
    });
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &value)?;
    writeln!(out)
}

/// Prints the report as a table.
pub fn print_text(report: &Report) -> io::Result<()> {
    let mut out = io::stdout().lock();
    header(&mut out, report)?;
    limit(&mut out, report)?;
    ingest(&mut out, report)?;
    commit_and_reads(&mut out, report)?;
    recovery(&mut out, report)?;
    peers(&mut out, report)?;
    writeln!(out, "\nTARGETS (reported, not enforced)")?;
    for v in report.verdicts() {
        writeln!(out, "  [{:<6}] {}: {}", v.status, v.target, v.measured)?;
    }
    Ok(())
}

fn header(out: &mut impl Write, report: &Report) -> io::Result<()> {
    let s = &report.settings;
    writeln!(out, "finkfs bench cluster: 3 nodes on 127.0.0.1, {} round(s) of {} s per workload, clients {:?}", s.rounds, s.seconds, s.clients)?;
    writeln!(
        out,
        "objects: {}; large objects {} MiB",
        s.alerts,
        s.large_bytes >> 20
    )?;
    writeln!(
        out,
        "dir {} ({}); load average at start {}",
        s.dir, s.filesystem, s.load_average_at_start
    )?;
    writeln!(
        out,
        "figures are medians over rounds; ratios are medians of per-round ratios"
    )
}

fn limit(out: &mut impl Write, report: &Report) -> io::Result<()> {
    let med = |f: fn(&Limit) -> f64| {
        median(
            &report
                .rounds
                .iter()
                .map(|r| f(&r.limit))
                .collect::<Vec<_>>(),
        )
    };
    let write = med(|l| l.write_mib_s);
    writeln!(out, "\nLIMIT (this disk, this run)")?;
    writeln!(
        out,
        "  fdatasync'd sequential write, 1 MiB writes   {write:>9.1} MiB/s   limit/3 = {:.1} MiB/s",
        write / 3.0
    )?;
    writeln!(
        out,
        "  4 KiB append + fdatasync                      {:>9.3} ms p50   {:.3} ms p99",
        med(|l| l.append_p50_ms),
        med(|l| l.append_p99_ms)
    )?;
    writeln!(
        out,
        "  sequential read, 1 MiB reads, cold cache      {:>9.1} MiB/s",
        med(|l| l.read_mib_s)
    )
}

fn ingest(out: &mut impl Write, report: &Report) -> io::Result<()> {
    writeln!(
        out,
        "\nINGEST (3 replicas; amp = bytes each node wrote per byte ingested, /proc/<pid>/io)"
    )?;
    writeln!(
        out,
        "  {:<8} {:>7} {:>9} {:>9} {:>8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6}",
        "objects",
        "clients",
        "MiB/s",
        "obj/s",
        "÷lim/3",
        "amp",
        "p50 ms",
        "p99 ms",
        "RSS MiB",
        "CPU nodes",
        "CPU bench",
        "errors",
        "capped"
    )?;
    let Some(first) = report.rounds.first() else {
        return Ok(());
    };
    for sample in &first.ingest {
        let (w, c) = (sample.workload.as_str(), sample.clients);
        let m = |f: fn(&IngestSample) -> f64| report.ingest_median(w, c, f).unwrap_or(0.0);
        let errors: u64 = report
            .rounds
            .iter()
            .filter_map(|r| find_ingest(r, w, c))
            .map(|s| s.errors)
            .sum();
        // Rounds that stopped at the byte ceiling (disk room) early.
        let capped = report
            .rounds
            .iter()
            .filter_map(|r| find_ingest(r, w, c))
            .filter(|s| s.capped)
            .count();
        let capped = if capped == 0 {
            "-".to_string()
        } else {
            format!("{capped}/{}", report.rounds.len())
        };
        writeln!(out, "  {:<8} {:>7} {:>9.1} {:>9.1} {:>8.2} {:>7.2} {:>8.2} {:>8.2} {:>8.0} {:>8.0}% {:>8.0}% {:>6} {:>6}",
            w, c, m(|s| s.mib_per_s), m(|s| s.ops_per_s), m(|s| s.over_limit_3), m(|s| s.amplification_per_node),
            m(|s| s.p50_ms), m(|s| s.p99_ms), m(|s| s.peak_rss_mib), m(|s| s.nodes_cpu_percent), m(|s| s.bench_cpu_percent), errors, capped)?;
    }
    Ok(())
}

fn commit_and_reads(out: &mut impl Write, report: &Report) -> io::Result<()> {
    let commits: Vec<&CommitLatency> = report
        .rounds
        .iter()
        .filter_map(|r| r.commit.as_ref())
        .collect();
    if !commits.is_empty() {
        let m = |f: fn(&CommitLatency) -> f64| {
            median(&commits.iter().map(|c| f(c)).collect::<Vec<_>>())
        };
        writeln!(
            out,
            "\nCOMMIT LATENCY (one alert, one client, acknowledged once fsynced on 2 of 3)"
        )?;
        writeln!(
            out,
            "  p50 {:.3} ms   p99 {:.3} ms   p50 ÷ one raw 4 KiB fdatasync (p50) = {:.2}",
            m(|c| c.p50_ms),
            m(|c| c.p99_ms),
            m(|c| c.p50_over_fdatasync)
        )?;
    }
    let reads: Vec<&Reads> = report
        .rounds
        .iter()
        .filter_map(|r| r.reads.as_ref())
        .collect();
    let Some(first) = reads.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "\nREAD (the alerts just written, {} clients; the nodes' page cache is warm)",
        first.clients
    )?;
    writeln!(
        out,
        "  {:<14} {:>9} {:>9} {:>8} {:>8} {:>6}",
        "", "MiB/s", "reads/s", "p50 ms", "p99 ms", "errors"
    )?;
    for (name, pick) in [
        (
            "whole objects",
            (|r: &Reads| r.whole.clone()) as fn(&Reads) -> ReadStats,
        ),
        ("4 KiB ranges", |r: &Reads| r.range.clone()),
    ] {
        let stats: Vec<ReadStats> = reads.iter().map(|r| pick(r)).collect();
        let m = |f: fn(&ReadStats) -> f64| median(&stats.iter().map(f).collect::<Vec<_>>());
        let errors: u64 = stats.iter().map(|s| s.errors).sum();
        writeln!(
            out,
            "  {:<14} {:>9.1} {:>9.1} {:>8.2} {:>8.2} {:>6}",
            name,
            m(|s| s.mib_per_s),
            m(|s| s.ops_per_s),
            m(|s| s.p50_ms),
            m(|s| s.p99_ms),
            errors
        )?;
    }
    let rss = median(&reads.iter().map(|r| r.peak_rss_mib).collect::<Vec<_>>());
    writeln!(out, "  peak RSS per node during the reads: {rss:.0} MiB")
}

fn recovery(out: &mut impl Write, report: &Report) -> io::Result<()> {
    writeln!(
        out,
        "\nRECOVERY (SIGKILL of every node stands in for the power cut; all restarted at once)"
    )?;
    match &report.recovery {
        RecoveryOutcome::Skipped(why) => writeln!(out, "  skipped: {why}"),
        RecoveryOutcome::Measured(points) => {
            writeln!(
                out,
                "  {:>12} {:>16} {:>16} {:>20}",
                "stored MB", "to listening s", "to first ack s", "ack after listen s"
            )?;
            for p in points {
                writeln!(
                    out,
                    "  {:>12.0} {:>16.3} {:>16.3} {:>20.3}",
                    p.stored_bytes as f64 / 1e6,
                    p.to_listening_s,
                    p.to_first_ack_s,
                    p.to_first_ack_s - p.to_listening_s
                )?;
            }
            Ok(())
        }
    }
}

fn peers(out: &mut impl Write, report: &Report) -> io::Result<()> {
    let comparisons = report.comparisons();
    let failed = report.rounds.iter().any(|r| !r.peer_errors.is_empty());
    if comparisons.is_empty() && !failed {
        return writeln!(out, "\nPEERS: not run (pass --peers DIR)");
    }
    writeln!(
        out,
        "\nPEERS (same run, one system up at a time; peers at {} B for alerts)",
        alert_peer_size()
    )?;
    writeln!(
        out,
        "  {:<8} {:>7} {:>6} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}",
        "objects", "clients", "unit", "finkfs", "etcd", "ceph", "÷etcd", "÷ceph", "÷best"
    )?;
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for c in &comparisons {
        writeln!(
            out,
            "  {:<8} {:>7} {:>6} {:>9.1} {:>9} {:>9} {:>7} {:>7} {:>7}",
            c.workload,
            c.clients,
            c.unit,
            c.finkfs,
            opt(c.etcd, 1),
            opt(c.ceph, 1),
            opt(c.over_etcd, 2),
            opt(c.over_ceph, 2),
            opt(c.over_best, 2)
        )?;
    }
    writeln!(out, "\nPEER RESULT LINES")?;
    for (n, round) in report.rounds.iter().enumerate() {
        for line in &round.peers {
            writeln!(out, "  round {}: {}", n + 1, line.raw)?;
        }
        for error in &round.peer_errors {
            writeln!(out, "  round {}: FAILED: {error}", n + 1)?;
        }
    }
    Ok(())
}
