//! Guards against a `finkfs demo` that passes without proving anything
//! (an alert lost or altered across the leader crash still exits 0) and
//! against one that leaves node processes or data behind when stopped.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use cli_support::{eventually, finkfs, node_bin, texts};

/// The value after `label` on its summary line.
fn summary_line<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
        .trim()
}

#[test]
fn demo_of_200_alerts_serves_every_alert_byte_identical_after_the_crash() {
    let Some(bin) = node_bin() else { return };
    let output = finkfs()
        .args(["demo", "--count", "200", "--node-bin"])
        .arg(&bin)
        .output()
        .expect("run finkfs demo");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        summary_line(&stdout, "written").starts_with("200 of 200 alerts"),
        "{stdout}"
    );
    assert!(
        summary_line(&stdout, "written").ends_with("; 0 failed"),
        "{stdout}"
    );
    assert!(
        summary_line(&stdout, "read back")
            .starts_with("200/200 byte-identical (BLAKE3), 0 differing, 0 missing, 0 unreadable"),
        "{stdout}"
    );
    assert!(
        summary_line(&stdout, "listed").starts_with("200 objects"),
        "{stdout}"
    );
    let crash = summary_line(&stdout, "crash");
    assert!(
        crash.contains("killed with SIGKILL") && crash.contains("elected in"),
        "{crash}"
    );
    assert!(
        summary_line(&stdout, "catch-up").contains("restarted and applied"),
        "{stdout}"
    );
    assert!(
        summary_line(&stdout, "result").starts_with("PASS"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Stopped the 3 nodes with SIGTERM (each exited cleanly)"),
        "{stdout}"
    );
}

#[test]
fn demo_stopped_by_sigterm_leaves_no_node_running_and_no_data() {
    let Some(bin) = node_bin() else { return };
    let mut demo = finkfs()
        .args(["demo", "--count", "1000000", "--node-bin"])
        .arg(&bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn finkfs demo");
    let mut pids = Vec::new();
    let mut root: Option<PathBuf> = None;
    let stdout = BufReader::new(demo.stdout.take().expect("stdout"));
    for line in stdout.lines() {
        let line = line.expect("demo output");
        // "node 1: pid 123, client …, peer …, data /tmp/finkfs-demo-x/node-1/data"
        if let Some(rest) = line.trim().strip_prefix("node ") {
            if let Some((_, after)) = rest.split_once(": pid ") {
                let pid: u32 = after.split(',').next().unwrap().parse().expect("pid");
                pids.push(pid);
                let data = PathBuf::from(after.rsplit("data ").next().unwrap());
                root = data.parent().and_then(|p| p.parent()).map(PathBuf::from);
            }
        }
        if line.starts_with("[3/7]") {
            break;
        }
    }
    assert_eq!(pids.len(), 3, "three node pids announced");
    use rustix::process::{kill_process, Pid, Signal};
    kill_process(Pid::from_child(&demo), Signal::TERM).expect("SIGTERM to the demo");
    let status = demo.wait().expect("wait for the demo");
    assert_eq!(
        status.code(),
        Some(2),
        "an interrupted demo is not a success"
    );
    for pid in pids {
        let gone = eventually(Duration::from_secs(10), || {
            !PathBuf::from(format!("/proc/{pid}")).exists()
        });
        assert!(gone, "node process {pid} outlived the demo");
    }
    let root = root.expect("data directory announced");
    assert!(!root.exists(), "{} was left behind", root.display());
}
