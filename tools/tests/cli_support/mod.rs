//! Shared helpers of the `finkfs` CLI tests: running the binary, and
//! starting `finkfs-node` processes when that binary was built.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

/// The `finkfs` binary under test, with no cluster in its environment.
pub fn finkfs() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_finkfs"));
    command
        .env_remove("FINKFS_CLUSTER")
        .env_remove("FINKFS_LOG");
    command
}

/// Runs `finkfs` with `args`.
pub fn run(args: &[&str]) -> Output {
    finkfs().args(args).output().expect("run finkfs")
}

/// Stdout and stderr as text.
pub fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts the run failed with `code` and one `finkfs:` line on stderr
/// containing `needle`.
pub fn assert_one_line_error(output: &Output, code: i32, needle: &str) {
    let (_, stderr) = texts(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr:?}");
    assert!(lines[0].starts_with("finkfs: "), "{stderr:?}");
    assert!(lines[0].contains(needle), "{needle:?} not in {stderr:?}");
}

/// The `finkfs-node` binary next to `finkfs`, when it was built (cargo
/// builds it for the workspace's tests, not for this crate's alone).
pub fn node_bin() -> Option<PathBuf> {
    let finkfs = Path::new(env!("CARGO_BIN_EXE_finkfs"));
    let bin = finkfs.parent()?.join("finkfs-node");
    if bin.is_file() {
        Some(bin)
    } else {
        println!(
            "skipped: {} is not built (`cargo build -p finkfs-node` or `cargo test --workspace` builds it)",
            bin.display()
        );
        None
    }
}

/// A `finkfs-node` process, killed when dropped.
pub struct NodeProcess {
    child: Child,
    // Kept open: the node's stdout must not turn into a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// Its client address.
    pub client: String,
    /// Its peer address.
    pub peer: String,
}

impl NodeProcess {
    /// Starts node `id` on free ports with its data in `dir`.
    pub fn start(bin: &Path, id: u64, dir: &Path) -> NodeProcess {
        NodeProcess::start_with(bin, id, dir, &[])
    }

    /// [`NodeProcess::start`] with `extra` flags.
    pub fn start_with(bin: &Path, id: u64, dir: &Path, extra: &[&str]) -> NodeProcess {
        let mut child = Command::new(bin)
            .args(["--id", &id.to_string(), "--data-dir"])
            .arg(dir)
            .args([
                "--peer-listen",
                "127.0.0.1:0",
                "--client-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("FINKFS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn finkfs-node");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("startup line");
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| {
            let at = words
                .iter()
                .position(|w| *w == key)
                .unwrap_or_else(|| panic!("{key} in {line:?}"));
            words[at + 1].to_string()
        };
        NodeProcess {
            client: after("client"),
            peer: after("peer"),
            child,
            _stdout: stdout,
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-node cluster, created with `finkfs cluster init`.
pub struct OneNode {
    pub node: NodeProcess,
    pub dir: tempfile::TempDir,
}

impl OneNode {
    /// Starts node 1 and creates the cluster; `None` without the binary.
    pub fn start() -> Option<OneNode> {
        let bin = node_bin()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let node = NodeProcess::start(&bin, 1, dir.path());
        let member = format!("1={},{}", node.peer, node.client);
        let output = run(&["cluster", "init", &member]);
        assert!(output.status.success(), "init: {:?}", texts(&output));
        Some(OneNode { node, dir })
    }

    /// `finkfs --cluster <this node> args…`.
    pub fn finkfs(&self, args: &[&str]) -> Output {
        finkfs()
            .arg("--cluster")
            .arg(&self.node.client)
            .args(args)
            .output()
            .expect("run finkfs")
    }
}

/// Polls `done` every 50 ms for up to `within`.
pub fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}
