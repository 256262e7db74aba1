//! A second power cut while a node recovers: the node is started on its
//! data directory and killed a few milliseconds later, mid-way through
//! opening its journal, index and snapshots, before it serves.
//!
//! The node is started here rather than through `LocalCluster::restart`,
//! which waits until the node listens; the flags are the cluster's own.

use std::fs::OpenOptions;
use std::process::{Command, Stdio};
use std::time::Duration;

use finkfs_tests::LocalCluster;

/// The log line of a node that serves.
fn listening(id: u64) -> String {
    format!("finkfs-node {id} listening")
}

/// Starts nodes `ids` (all down), waits `after`, SIGKILLs them. Returns
/// how many of them were killed before they served.
pub async fn start_and_kill(
    cluster: &LocalCluster,
    ids: &[u64],
    after: Duration,
) -> Result<u64, String> {
    let binary = finkfs_tests::binary::node_binary()?;
    let mut children = Vec::new();
    for id in ids {
        let node = cluster.node(*id);
        let log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(node.log_path())
            .map_err(|e| format!("log of node {id}: {e}"))?;
        let start = log_len(&node.log_path());
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&binary)
            .args(cluster.node_args(*id))
            .env("FINKFS_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
        children.push((*id, child, start));
    }
    tokio::time::sleep(after).await;
    let mut before_serving = 0;
    for (_, child, _) in &mut children {
        let _ = child.kill();
    }
    for (id, mut child, start) in children {
        let _ = child.wait();
        let log = std::fs::read(cluster.node(id).log_path()).unwrap_or_default();
        let run = String::from_utf8_lossy(log.get(start as usize..).unwrap_or_default());
        if !run.contains(&listening(id)) {
            before_serving += 1;
        }
    }
    Ok(before_serving)
}

fn log_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
