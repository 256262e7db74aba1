//! Guards against a `finkfs bench cluster` that rots: a table missing a
//! row, a workload that silently measured nothing, or nodes left running.

mod cli_support;

use cli_support::{finkfs, node_bin, texts};

/// The numbers on the table row that starts with `label` (after trimming).
fn row_numbers(stdout: &str, label: &str) -> Vec<f64> {
    let line = stdout
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{stdout}"));
    line[label.len()..]
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches('%').parse().ok())
        .collect()
}

#[test]
fn quick_cluster_bench_prints_every_row_with_sane_numbers() {
    let Some(bin) = node_bin() else { return };
    let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("temp dir");
    let output = finkfs()
        .args(["bench", "cluster", "--quick", "--node-bin"])
        .arg(&bin)
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run finkfs bench cluster");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");

    let write = row_numbers(&stdout, "fdatasync'd sequential write, 1 MiB writes");
    assert!(write[0] > 0.0, "limit write {write:?}");
    let read = row_numbers(&stdout, "sequential read, 1 MiB reads, cold cache");
    assert!(read[0] > 0.0, "limit read {read:?}");
    for objects in ["alerts", "1MiB", "4MiB"] {
        for clients in [1.0, 4.0] {
            let row = stdout
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|w| {
                    w.first() == Some(&objects)
                        && w.get(1).and_then(|c| c.parse().ok()) == Some(clients)
                })
                .unwrap_or_else(|| panic!("no ingest row {objects} x {clients}:\n{stdout}"));
            let numbers: Vec<f64> = row[2..]
                .iter()
                .filter_map(|w| w.trim_end_matches('%').parse().ok())
                .collect();
            // MiB/s, obj/s, ÷lim/3, amp, p50, p99, RSS, CPU nodes, CPU bench,
            // errors (the capped column is not a number)
            assert_eq!(numbers.len(), 10, "{row:?}");
            assert!(
                numbers[0] > 0.0 && numbers[1] > 0.0,
                "nothing ingested: {row:?}"
            );
            assert!(
                numbers[3] >= 0.5,
                "each node must write at least half of what it stores: {row:?}"
            );
            assert!(
                numbers[4] > 0.0 && numbers[5] >= numbers[4],
                "latencies {row:?}"
            );
            assert!(numbers[6] > 1.0 && numbers[6] < 4096.0, "peak RSS {row:?}");
            assert_eq!(numbers[9], 0.0, "failed puts: {row:?}");
        }
    }
    let commit = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("p50 ") && l.contains("fdatasync"))
        .unwrap_or_else(|| panic!("no commit latency line:\n{stdout}"));
    assert!(commit.contains("ms"), "{commit}");
    for reads in ["whole objects", "4 KiB ranges"] {
        let numbers = row_numbers(&stdout, reads);
        assert!(numbers[0] > 0.0 && numbers[1] > 0.0, "{reads}: {numbers:?}");
        assert_eq!(numbers[4], 0.0, "{reads}: failed reads {numbers:?}");
    }
    assert!(stdout.contains("RECOVERY"), "{stdout}");
    let recovery = stdout
        .lines()
        .skip_while(|l| !l.starts_with("RECOVERY"))
        .nth(2)
        .expect("a recovery measurement");
    let times: Vec<f64> = recovery
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(times.len(), 4, "{recovery}\n{stdout}");
    assert!(times[1] > 0.0 && times[2] >= times[1], "{recovery}");
    assert!(stdout.contains("PEERS: not run"), "{stdout}");
    for target in ["limit/3", "commit p50 <= 3x", "recovery", "peak RSS"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(target) && (l.contains("[met") || l.contains("[missed"))),
            "target {target:?} not judged:\n{stdout}"
        );
    }
    // The nodes' directories went with the run.
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn tmpfs_is_refused_as_the_disk_to_measure() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        return;
    }
    let output = finkfs()
        .args(["bench", "cluster", "--quick", "--dir", "/dev/shm"])
        .output()
        .expect("run finkfs bench cluster");
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tmpfs"), "{stderr}");
}
