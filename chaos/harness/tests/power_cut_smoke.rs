//! Guards against a power-cut harness that cannot run (mounts, restarts,
//! the check) and so would hide every bug it is meant to find: one short
//! run must pass end to end on real node processes.

use std::process::Command;

#[test]
fn one_power_cut_of_every_node_loses_no_acknowledged_put() {
    if let Err(error) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        eprintln!("SKIPPED: /dev/fuse cannot be opened ({error}); power cuts need it");
        return;
    }
    let output = Command::new(env!("CARGO_BIN_EXE_finkfs-chaos"))
        .args(["power-cut", "--cycles", "2", "--acks-per-cycle", "15"])
        .args(["--seed", "5", "--writers", "3"])
        .output()
        .expect("run finkfs-chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "finkfs-chaos power-cut failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("power-cut passed"), "{stdout}");
    assert!(
        stdout.contains("cut 1: ") && stdout.contains("cut 2: "),
        "{stdout}"
    );
}
