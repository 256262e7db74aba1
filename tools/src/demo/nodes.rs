//! The demo's cluster: real `finkfs-node` child processes on 127.0.0.1,
//! each with its own data directory and log file under one temporary
//! directory.
//!
//! Ports are picked by the kernel: a node first starts on port 0 and says
//! where it listens on its first stdout line; a restarted node gets the
//! same addresses again (the membership names them). Every child is
//! stopped when the cluster is dropped — on success, on error and on
//! Ctrl-C — so no node outlives the demo.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use finkfs_node::daemon::config::{
    ELECTION_TIMEOUT_MAX_MS_DEFAULT, ELECTION_TIMEOUT_MIN_MS_DEFAULT, HEARTBEAT_MS_DEFAULT,
};
use rustix::process::{kill_process, Pid, Signal};

/// Name of the node binary looked for next to `finkfs`.
pub const NODE_BIN_NAME: &str = "finkfs-node";
/// Longest wait for a node to say where it listens.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a node to exit after SIGTERM before it is killed.
pub const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines of a node's log shown when it fails.
const LOG_TAIL_LINES: usize = 12;
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The Raft timings the demo's nodes run with (the daemon's defaults,
/// passed explicitly so the narration states what is in force).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Shortest election timeout.
    pub election_min_ms: u64,
    /// Longest election timeout.
    pub election_max_ms: u64,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            heartbeat_ms: HEARTBEAT_MS_DEFAULT,
            election_min_ms: ELECTION_TIMEOUT_MIN_MS_DEFAULT,
            election_max_ms: ELECTION_TIMEOUT_MAX_MS_DEFAULT,
        }
    }
}

/// The `finkfs-node` binary: `given`, or the one next to this executable.
pub fn find_node_bin(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot tell where this finkfs executable is")?
            .parent()
            .context("this finkfs executable has no directory")?
            .join(NODE_BIN_NAME),
    };
    anyhow::ensure!(
        path.is_file(),
        "the node binary {} is missing: `cargo build --release` builds it next to finkfs (then run target/release/finkfs demo), or pass --node-bin PATH",
        path.display()
    );
    Ok(path)
}

/// One node process and where it lives.
#[derive(Debug)]
pub struct Node {
    /// Its id.
    pub id: u64,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
    /// Its stdout, where it says where it listens.
    out: PathBuf,
    /// Its peer address, once known.
    pub peer: String,
    /// Its client address, once known.
    pub client: String,
    child: Option<Child>,
}

impl Node {
    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// The running demo cluster.
pub struct LocalCluster {
    bin: PathBuf,
    timings: Timings,
    root: PathBuf,
    temp: Option<tempfile::TempDir>,
    keep: bool,
    nodes: Vec<Node>,
}

impl LocalCluster {
    /// Starts `count` nodes (ids 1..=count) and waits until each listens.
    pub async fn start(
        bin: &Path,
        count: u64,
        timings: Timings,
        keep: bool,
    ) -> anyhow::Result<LocalCluster> {
        let temp = tempfile::Builder::new()
            .prefix("finkfs-demo-")
            .tempdir()
            .context("cannot create a temporary directory for the nodes")?;
        LocalCluster::start_in_temp(bin, count, timings, keep, temp).await
    }

    /// [`LocalCluster::start`] with the nodes' directories under `parent`
    /// (the benchmark puts them on the disk it measures).
    pub(crate) async fn start_under(
        bin: &Path,
        count: u64,
        timings: Timings,
        parent: &Path,
    ) -> anyhow::Result<LocalCluster> {
        let temp = tempfile::Builder::new()
            .prefix("finkfs-nodes-")
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "cannot create a directory for the nodes in {}",
                    parent.display()
                )
            })?;
        LocalCluster::start_in_temp(bin, count, timings, false, temp).await
    }

    async fn start_in_temp(
        bin: &Path,
        count: u64,
        timings: Timings,
        keep: bool,
        temp: tempfile::TempDir,
    ) -> anyhow::Result<LocalCluster> {
        let mut cluster = LocalCluster {
            bin: bin.to_path_buf(),
            timings,
            root: temp.path().to_path_buf(),
            temp: Some(temp),
            keep,
            nodes: Vec::new(),
        };
        for id in 1..=count {
            let dir = cluster.root.join(format!("node-{id}"));
            cluster.nodes.push(Node {
                id,
                data_dir: dir.join("data"),
                log: dir.join("node.log"),
                out: dir.join("node.out"),
                peer: "127.0.0.1:0".into(),
                client: "127.0.0.1:0".into(),
                child: None,
            });
            std::fs::create_dir_all(dir.join("data"))
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        for id in 1..=count {
            cluster.launch(id).await?;
        }
        Ok(cluster)
    }

    /// The directory holding every node's data and log.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `id`.
    pub fn node(&self, id: u64) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("the demo started no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> anyhow::Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("the demo started no node {id}"))
    }

    /// Kills node `id` with SIGKILL (no chance to flush or say goodbye)
    /// and reaps it.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        let mut child = node
            .child
            .take()
            .with_context(|| format!("node {id} is not running"))?;
        child
            .kill()
            .with_context(|| format!("cannot kill node {id}"))?;
        child
            .wait()
            .with_context(|| format!("cannot reap node {id}"))?;
        Ok(())
    }

    /// Starts node `id` again on the addresses it had.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        anyhow::ensure!(self.node(id)?.child.is_none(), "node {id} is still running");
        self.launch(id).await
    }

    /// Starts every stopped node at once, then waits until each listens:
    /// after a power cut of the whole cluster, the nodes reopen their data
    /// side by side, as they would on separate machines.
    pub(crate) async fn restart_all(&mut self) -> anyhow::Result<()> {
        let stopped: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_none())
            .map(|n| n.id)
            .collect();
        for &id in &stopped {
            self.spawn(id)?;
        }
        for &id in &stopped {
            self.await_listening(id).await?;
        }
        Ok(())
    }

    /// An error naming the first node that exited while it should run.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                if let Ok(Some(status)) = child.try_wait() {
                    node.child = None;
                    anyhow::bail!(
                        "node {} exited unexpectedly ({status}); its log ends with:\n{}",
                        node.id,
                        log_tail(&node.log)
                    );
                }
            }
        }
        Ok(())
    }

    /// Stops every node with SIGTERM (SIGKILL after [`NODE_STOP_TIMEOUT`]);
    /// each node's id and how it exited.
    pub fn shutdown(&mut self) -> Vec<(u64, Stopped)> {
        for node in &self.nodes {
            if let Some(child) = &node.child {
                // A node that already exited cannot be signalled: nothing to do.
                let _ = kill_process(Pid::from_child(child), Signal::TERM);
            }
        }
        let deadline = Instant::now() + NODE_STOP_TIMEOUT;
        let mut stopped = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.take() {
                stopped.push((node.id, wait_or_kill(child, deadline)));
            }
        }
        stopped
    }

    /// Spawns node `id` and waits until it says where it listens.
    async fn launch(&mut self, id: u64) -> anyhow::Result<()> {
        self.spawn(id)?;
        self.await_listening(id).await
    }

    /// Spawns node `id` on the addresses it had (port 0 the first time).
    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let bin = self.bin.clone();
        let timings = self.timings;
        let node = self.node_mut(id)?;
        let out = File::create(&node.out)
            .with_context(|| format!("cannot create {}", node.out.display()))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("cannot create {}", node.log.display()))?;
        let child = Command::new(&bin)
            .arg("--id")
            .arg(id.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--peer-listen", &node.peer, "--client-listen", &node.client])
            .args(timing_flags(timings))
            .env("FINKFS_LOG", "info")
            // Plain text in the log file: no terminal colour codes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until node `id` says where it listens, and records it.
    async fn await_listening(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        let (peer, client) = wait_listening(node).await?;
        node.peer = peer;
        node.client = client;
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.shutdown();
        if self.keep {
            if let Some(temp) = self.temp.take() {
                let _ = temp.keep();
            }
        }
    }
}

/// How a node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself after SIGTERM.
    Exited(ExitStatus),
    /// It ignored SIGTERM and was killed.
    Killed,
    /// Waiting for it failed.
    Unknown,
}

fn wait_or_kill(mut child: Child, deadline: Instant) -> Stopped {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Stopped::Exited(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Stopped::Killed;
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Stopped::Unknown;
            }
        }
    }
}

fn timing_flags(timings: Timings) -> Vec<String> {
    vec![
        "--heartbeat-ms".into(),
        timings.heartbeat_ms.to_string(),
        "--election-timeout-min-ms".into(),
        timings.election_min_ms.to_string(),
        "--election-timeout-max-ms".into(),
        timings.election_max_ms.to_string(),
    ]
}

/// Waits for `finkfs-node N listening: peer A client B …` on the node's
/// stdout; the peer and client addresses.
async fn wait_listening(node: &mut Node) -> anyhow::Result<(String, String)> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&node.out).unwrap_or_default();
        if let Some(addrs) = text.lines().find_map(parse_listening) {
            return Ok(addrs);
        }
        if let Some(child) = &mut node.child {
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                anyhow::bail!(
                    "node {} exited while starting ({status}); its log ends with:\n{}",
                    node.id,
                    log_tail(&node.log)
                );
            }
        }
        anyhow::ensure!(
            started.elapsed() < NODE_START_TIMEOUT,
            "node {} did not say where it listens within {NODE_START_TIMEOUT:?}; its log ends with:\n{}",
            node.id,
            log_tail(&node.log)
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The peer and client addresses of a startup line.
fn parse_listening(line: &str) -> Option<(String, String)> {
    if !line.contains("listening") {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        let at = words.iter().position(|w| *w == key)?;
        words.get(at + 1).map(|w| w.to_string())
    };
    Some((after("peer")?, after("client")?))
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        return "  (empty)".to_string();
    }
    tail.iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_line_gives_peer_and_client_addresses() {
        let line =
            "finkfs-node 2 listening: peer 127.0.0.1:4001 client 127.0.0.1:4002 metrics none";
        assert_eq!(
            parse_listening(line),
            Some(("127.0.0.1:4001".into(), "127.0.0.1:4002".into()))
        );
        assert_eq!(parse_listening("something else"), None);
        assert_eq!(parse_listening("listening: peer"), None);
    }

    #[test]
    fn missing_node_binary_names_the_build_command() {
        let error = find_node_bin(Some(Path::new("/nonexistent/finkfs-node")))
            .unwrap_err()
            .to_string();
        assert!(error.contains("cargo build --release"), "{error}");
    }
}
