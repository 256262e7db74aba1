//! The peers, etcd and Ceph, measured in the same run through their bench
//! scripts (`<peer>.sh up | bench SIZE CLIENTS SECONDS | down`, one result
//! line on stdout). One system is up at a time: each peer is brought up,
//! benched at every size and client count, and torn down before the next.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

/// The peers, in the order they run in each round.
pub const PEERS: [&str; 2] = ["etcd", "ceph"];

/// One result line of a peer's bench script.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerLine {
    /// The round it was measured in (0-based).
    pub round: u32,
    /// `etcd` or `ceph`.
    pub peer: String,
    /// Object size, bytes.
    pub size: u64,
    /// Concurrent clients.
    pub clients: u64,
    /// Acknowledged writes per second.
    pub ops_per_s: f64,
    /// MiB per second.
    pub mib_per_s: f64,
    /// Median latency (etcd only).
    pub lat_p50_ms: Option<f64>,
    /// 99th percentile latency (etcd only).
    pub lat_p99_ms: Option<f64>,
    /// The disk's mode just before the bench.
    pub probe_mib_per_s: Option<f64>,
    /// The line as printed.
    pub raw: String,
}

/// Parses `peer=… size=… clients=… ops_per_s=… mib_per_s=… …`.
pub fn parse_line(round: u32, line: &str) -> anyhow::Result<PeerLine> {
    let field = |key: &str| -> Option<&str> {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
    };
    let number = |key: &str| -> anyhow::Result<f64> {
        field(key)
            .with_context(|| format!("no {key}= in the peer's result line {line:?}"))?
            .parse()
            .with_context(|| format!("{key}= is not a number in {line:?}"))
    };
    Ok(PeerLine {
        round,
        peer: field("peer")
            .with_context(|| format!("no peer= in {line:?}"))?
            .to_string(),
        size: number("size")? as u64,
        clients: number("clients")? as u64,
        ops_per_s: number("ops_per_s")?,
        mib_per_s: number("mib_per_s")?,
        lat_p50_ms: field("lat_p50_ms").and_then(|v| v.parse().ok()),
        lat_p99_ms: field("lat_p99_ms").and_then(|v| v.parse().ok()),
        probe_mib_per_s: field("probe_mib_per_s").and_then(|v| v.parse().ok()),
        raw: line.trim().to_string(),
    })
}

/// Brings `peer` up from `dir`, runs each (size, clients) bench for
/// `seconds`, and brings it down again (also when a bench failed).
pub fn run(
    dir: &Path,
    peer: &str,
    benches: &[(u64, usize)],
    seconds: u64,
    round: u32,
) -> anyhow::Result<Vec<PeerLine>> {
    let script = dir.join(format!("{peer}.sh"));
    eprintln!("  {peer}: up");
    script_run(&script, &["up"])?;
    let mut lines = Vec::new();
    let mut failure = None;
    for &(size, clients) in benches {
        eprintln!("  {peer}: bench {size} B x {clients} clients, {seconds} s");
        let args = [
            "bench".to_string(),
            size.to_string(),
            clients.to_string(),
            seconds.to_string(),
        ];
        match script_bench(&script, &args).and_then(|out| parse_line(round, &out)) {
            Ok(line) => {
                eprintln!("    {}", line.raw);
                lines.push(line);
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    eprintln!("  {peer}: down");
    let down = script_run(&script, &["down"]);
    if let Some(error) = failure {
        return Err(error.context(format!("{peer} bench")));
    }
    down?;
    Ok(lines)
}

/// Runs a script step whose output is only progress: both its streams go
/// to our stderr, so stdout stays the table's.
fn script_run(script: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(script)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
    anyhow::ensure!(
        output.status.success(),
        "{} {} failed ({})",
        script.display(),
        args.join(" "),
        output.status
    );
    Ok(())
}

/// Runs `bench`; its one stdout line. Exit status 2 (etcd: some puts
/// failed) still printed the line, which records the errors.
fn script_bench(script: &Path, args: &[String]) -> anyhow::Result<String> {
    let output = Command::new(script)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with("peer="))
        .map(str::to_string);
    match (output.status.code(), line) {
        (Some(0 | 2), Some(line)) => Ok(line),
        _ => anyhow::bail!(
            "{} {} failed ({}) without a result line",
            script.display(),
            args.join(" "),
            output.status
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_and_ceph_result_lines_parse() {
        let etcd = "peer=etcd size=56000 clients=16 seconds=10 ops_per_s=1381.7 mib_per_s=73.79 lat_avg_ms=11.572 lat_max_ms=64.319 lat_p50_ms=8.671 lat_p99_ms=44.479 errors=0 probe_mib_per_s=1089";
        let line = parse_line(1, etcd).expect("etcd line");
        assert_eq!(
            (line.peer.as_str(), line.size, line.clients),
            ("etcd", 56000, 16)
        );
        assert_eq!(line.ops_per_s, 1381.7);
        assert_eq!(line.lat_p50_ms, Some(8.671));
        assert_eq!(line.probe_mib_per_s, Some(1089.0));
        let ceph = "peer=ceph size=1048576 clients=16 seconds=10 ops_per_s=301.0 mib_per_s=301.03 lat_avg_ms=53.119 lat_max_ms=113.777 probe_mib_per_s=886";
        let line = parse_line(0, ceph).expect("ceph line");
        assert_eq!(line.mib_per_s, 301.03);
        assert_eq!(line.lat_p50_ms, None);
    }

    #[test]
    fn a_line_without_rates_is_refused() {
        assert!(parse_line(0, "peer=etcd size=1 clients=1").is_err());
        assert!(parse_line(0, "nonsense").is_err());
    }
}
