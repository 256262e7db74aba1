//! One `finkfs-node` child process: its ports, its directory, its log.
//!
//! Each node owns a temporary directory holding `data/` (the node's data
//! directory, which [`NodeProcess::wipe`] deletes) and `node.log`, where
//! the child's stdout and stderr go. Every start appends a marker line, so
//! the log of one run can be told from the previous ones.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::poll;
use crate::ports::free_port;

/// Lines of each log printed when a test fails.
pub const LOG_TAIL_LINES: usize = 60;
/// Longest wait for a node to say it listens.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a node to exit after SIGTERM.
pub const TERM_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest log read back into memory.
const LOG_READ_BYTES_MAX: u64 = 64 << 20;

/// A node's process, addresses and files.
#[derive(Debug)]
pub struct NodeProcess {
    /// The node id.
    pub id: u64,
    /// Its peer (Raft) address.
    pub peer_addr: String,
    /// Its client address.
    pub client_addr: String,
    /// Its /metrics address.
    pub metrics_addr: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    /// Where in the log the current run began.
    run_offset: u64,
}

impl NodeProcess {
    /// A node not yet started, with fresh ports and an empty directory.
    pub fn new(id: u64) -> Result<NodeProcess, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("finkfs-e2e-node{id}-"))
            .tempdir()
            .map_err(|e| format!("temporary directory for node {id}: {e}"))?;
        let addr = |port: u16| format!("127.0.0.1:{port}");
        Ok(NodeProcess {
            id,
            peer_addr: addr(free_port()),
            client_addr: addr(free_port()),
            metrics_addr: addr(free_port()),
            dir,
            child: None,
            starts: 0,
            run_offset: 0,
        })
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file its stdout and stderr go to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// The temporary directory holding its data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the directory after the test (to inspect a failure).
    pub fn keep_dir(&mut self) {
        self.dir.disable_cleanup(true);
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the binary with `args` (the harness adds nothing), its output
    /// appended to the log. Returns at once; see [`NodeProcess::wait_ready`].
    pub fn spawn(&mut self, binary: &Path, args: &[String]) -> Result<(), String> {
        if self.is_running() {
            return Err(format!("node {} is already running", self.id));
        }
        self.reap();
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("log of node {}: {e}", self.id))?;
        self.run_offset = log.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        writeln!(
            log,
            "----- e2e harness: start #{} of node {}: {} {}",
            self.starts,
            self.id,
            binary.display(),
            args.join(" ")
        )
        .map_err(|e| e.to_string())?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let log_filter = std::env::var("FINKFS_E2E_LOG").unwrap_or_else(|_| "info".to_string());
        let child = Command::new(binary)
            .args(args)
            .env("FINKFS_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the current run prints its listening line; fails with
    /// the log tail if the process exits first.
    pub async fn wait_ready(&mut self) -> Result<(), String> {
        let needle = format!("finkfs-node {} listening", self.id);
        let what = format!("node {} to listen", self.id);
        let result = poll::until(&what, READY_TIMEOUT, || {
            let exited = match &mut self.child {
                Some(child) => child.try_wait().ok().flatten(),
                None => None,
            };
            let ready = self.log_of_run().contains(&needle);
            async move {
                match (ready, exited) {
                    (true, _) => Ok(Some(())),
                    (false, Some(status)) => Err(format!("exited with {status}")),
                    (false, None) => Ok(None),
                }
            }
        })
        .await;
        result.map_err(|e| format!("{e}\n{}", self.tail(LOG_TAIL_LINES)))
    }

    /// Whether the current run exited before it was ready because a port
    /// was taken (another program got it between the pick and the bind).
    pub fn failed_to_bind(&self) -> bool {
        self.log_of_run().contains("cannot listen on")
    }

    /// Picks new ports (only for a node that never joined a cluster).
    pub fn repick_ports(&mut self) {
        let addr = |port: u16| format!("127.0.0.1:{port}");
        self.peer_addr = addr(free_port());
        self.client_addr = addr(free_port());
        self.metrics_addr = addr(free_port());
    }

    /// Sends SIGKILL without waiting (see [`NodeProcess::kill`]).
    pub fn send_kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
        }
    }

    /// SIGKILL, then reaps the process. A node already down stays down.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`TERM_TIMEOUT`]).
    pub async fn terminate(&mut self) -> Result<ExitStatus, String> {
        let Some(pid) = self.pid() else {
            return Err(format!("node {} is not running", self.id));
        };
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|e| format!("run kill -TERM {pid}: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {pid} failed: {sent}"));
        }
        let what = format!("node {} to exit after SIGTERM", self.id);
        let exited = poll::until(&what, TERM_TIMEOUT, || {
            let status = match &mut self.child {
                Some(child) => child.try_wait().map_err(|e| e.to_string()),
                None => Err("no child".to_string()),
            };
            async move { status }
        })
        .await;
        match exited {
            Ok(status) => {
                self.child = None;
                Ok(status)
            }
            Err(error) => {
                self.kill();
                Err(error)
            }
        }
    }

    /// Deletes the data directory; the node must be down.
    pub fn wipe(&mut self) -> Result<(), String> {
        if self.is_running() {
            return Err(format!("node {} must be down to be wiped", self.id));
        }
        match std::fs::remove_dir_all(self.data_dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("wipe {}: {e}", self.data_dir().display())),
        }
    }

    /// The whole log, every run.
    pub fn log(&self) -> String {
        read_from(&self.log_path(), 0)
    }

    /// The log of the current (or last) run.
    pub fn log_of_run(&self) -> String {
        read_from(&self.log_path(), self.run_offset)
    }

    /// The last `lines` lines of the log, headed by the node and its file.
    pub fn tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "===== node {} log ({}), last {} lines =====\n{}",
            self.id,
            self.log_path().display(),
            all.len() - from,
            all[from..].join("\n")
        )
    }

    /// Forgets an exited child.
    fn reap(&mut self) {
        if let Some(child) = &mut self.child {
            if matches!(child.try_wait(), Ok(Some(_))) {
                self.child = None;
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.take(LOG_READ_BYTES_MAX).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
