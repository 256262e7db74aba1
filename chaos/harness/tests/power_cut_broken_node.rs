//! Guards against a harness that cannot see data loss: nodes whose Raft log
//! fsyncs do nothing (the hidden test-only flag of finkfs-node) acknowledge
//! writes a power cut of every node loses, and the run must say so.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn nodes_that_skip_journal_fsync_are_caught_losing_acknowledged_writes() {
    if let Err(error) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        eprintln!("SKIPPED: /dev/fuse cannot be opened ({error}); power cuts need it");
        return;
    }
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_finkfs-chaos"));
    let node = harness.with_file_name("finkfs-node");
    assert!(
        node.is_file(),
        "build finkfs-node first: {}",
        node.display()
    );
    // The broken node: the real binary with the test-only flag, which the
    // harness's cluster has no setting for.
    let dir = tempfile::tempdir().expect("temporary directory");
    let wrapper = dir.path().join("finkfs-node-skip-journal-fsync");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' --test-unsafe-skip-journal-fsync \"$@\"\n",
            node.display()
        ),
    )
    .expect("write the wrapper");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .expect("chmod");
    assert!(status.success());

    let output = Command::new(&harness)
        .env("FINKFS_NODE_BIN", &wrapper)
        .args(["power-cut", "--cycles", "3", "--acks-per-cycle", "5"])
        .args(["--seed", "2", "--writers", "1", "--scope", "all"])
        .args(["--policy", "lose-unsynced"])
        .args(["--damage-percent", "0", "--recovery-cut-percent", "0"])
        .output()
        .expect("run finkfs-chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("power-cut FAILED"), "{stdout}");
    assert!(lost(&stdout) > 0, "{stdout}");
}

/// The number on the summary's `lost:` line.
fn lost(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("lost: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no lost: line in:\n{stdout}"))
}
