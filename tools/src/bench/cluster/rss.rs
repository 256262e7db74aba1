//! What the kernel counts for each node process, read from `/proc`: bytes
//! written to the storage layer (`io` `write_bytes`), peak resident memory
//! (`status` `VmHWM`) and CPU time (`stat` utime + stime). The node needs no
//! counter of its own, and the numbers cannot flatter it.

use std::time::Instant;

use anyhow::Context;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on
/// every Linux architecture finkfs builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// The counters of a set of processes at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    /// Per process: bytes written to the storage layer so far.
    write_bytes: Vec<u64>,
    /// Per process: CPU ticks so far (user + system).
    cpu_ticks: Vec<u64>,
}

/// What the processes did between two snapshots.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Bytes all of them wrote to the storage layer.
    pub write_bytes: u64,
    /// Their CPU time as a percentage of one core (200 = both of two cores).
    pub cpu_percent: f64,
}

impl Snapshot {
    /// Reads the counters of `pids`.
    pub fn take(pids: &[u32]) -> anyhow::Result<Snapshot> {
        let mut snapshot = Snapshot {
            at: Instant::now(),
            write_bytes: Vec::new(),
            cpu_ticks: Vec::new(),
        };
        for &pid in pids {
            snapshot.write_bytes.push(write_bytes(pid)?);
            snapshot
                .cpu_ticks
                .push(cpu_ticks(&format!("/proc/{pid}/stat"))?);
        }
        Ok(snapshot)
    }

    /// What happened since `earlier` (taken of the same processes).
    pub fn since(&self, earlier: &Snapshot) -> Usage {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let delta = |now: &[u64], then: &[u64]| -> u64 {
            now.iter()
                .zip(then)
                .map(|(n, t)| n.saturating_sub(*t))
                .sum()
        };
        let ticks = delta(&self.cpu_ticks, &earlier.cpu_ticks);
        Usage {
            write_bytes: delta(&self.write_bytes, &earlier.write_bytes),
            cpu_percent: ticks as f64 / TICKS_PER_SECOND / seconds * 100.0,
        }
    }
}

/// CPU ticks of this process (the load generator), to compare with the nodes'.
pub fn own_cpu_ticks() -> anyhow::Result<u64> {
    cpu_ticks("/proc/self/stat")
}

/// CPU percentage of one core from a tick difference over `seconds`.
pub fn cpu_percent(ticks: u64, seconds: f64) -> f64 {
    ticks as f64 / TICKS_PER_SECOND / seconds.max(1e-9) * 100.0
}

/// Peak resident memory of `pid` since it started (or since
/// [`reset_peak`]), in bytes.
pub fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status_kib(&text, "VmHWM:")
        .map(|kib| kib * 1024)
        .with_context(|| format!("{path} has no VmHWM line"))
}

/// Resets the peak resident memory of `pid` to its current size (writing 5
/// to `clear_refs`); false if the kernel refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

fn write_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{path} has no write_bytes line"))
}

fn cpu_ticks(path: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    stat_ticks(&text).with_context(|| format!("{path} is not a stat line"))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces, so fields count from its `)`.
fn stat_ticks(line: &str) -> Option<u64> {
    let after_name = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(text: &str, key: &str) -> Option<u64> {
    let value = text.lines().find_map(|l| l.strip_prefix(key))?;
    value.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_sum_user_and_system_time_past_a_name_with_spaces() {
        let line = "1234 (finkfs node) S 1 1234 1234 0 -1 4194304 500 0 0 0 70 30 0 0 20 0 9 0";
        assert_eq!(stat_ticks(line), Some(100));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn status_peak_is_read_in_kib() {
        let text = "Name:\tfinkfs-node\nVmPeak:\t  900 kB\nVmHWM:\t   4096 kB\n";
        assert_eq!(status_kib(text, "VmHWM:"), Some(4096));
        assert_eq!(status_kib(text, "VmRSS:"), None);
    }

    #[test]
    fn own_process_counters_are_readable() {
        let pid = std::process::id();
        assert!(peak_rss_bytes(pid).expect("VmHWM") > 0);
        let before = Snapshot::take(&[pid]).expect("counters");
        let after = Snapshot::take(&[pid]).expect("counters");
        assert!(after.since(&before).cpu_percent >= 0.0);
    }
}
