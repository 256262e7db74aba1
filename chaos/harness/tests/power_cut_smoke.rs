//! Guards against a power-cut harness that cannot run (mounts, restarts,
//! the check) and so would hide every bug it is meant to find: short runs
//! cutting every node and one node must pass end to end on real processes.

use std::process::Command;

#[test]
fn power_cuts_of_every_node_or_of_one_lose_no_acknowledged_put() {
    if let Err(error) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        eprintln!("SKIPPED: /dev/fuse cannot be opened ({error}); power cuts need it");
        return;
    }
    for scope in ["all", "one"] {
        run_two_cuts(scope);
    }
}

fn run_two_cuts(scope: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_finkfs-chaos"))
        .args(["power-cut", "--cycles", "2", "--acks-per-cycle", "15"])
        .args(["--seed", "5", "--writers", "3", "--scope", scope])
        .output()
        .expect("run finkfs-chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "finkfs-chaos power-cut --scope {scope} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("power-cut passed"), "{stdout}");
    assert!(stdout.contains("  cycles: 2\n"), "{stdout}");
}
