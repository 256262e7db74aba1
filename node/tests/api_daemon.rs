//! Guards against a `finkfs-node` binary that does not say where it
//! listens, cannot be reached, or does not stop cleanly (exit 0) on
//! SIGTERM — and against a restarted node that lost what it acknowledged.

mod api_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_support::client_options;
use finkfs_node::api::proto::MemberSpec;
use finkfs_node::client::Client;

/// A spawned `finkfs-node` and the addresses it printed.
struct Spawned {
    child: Child,
    client: String,
    peer: String,
    metrics: String,
}

fn spawn(data_dir: &std::path::Path) -> Spawned {
    let mut child = Command::new(env!("CARGO_BIN_EXE_finkfs-node"))
        .args(["--id", "1", "--data-dir"])
        .arg(data_dir)
        .args([
            "--peer-listen",
            "127.0.0.1:0",
            "--client-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--heartbeat-ms",
            "50",
            "--election-timeout-min-ms",
            "300",
            "--election-timeout-max-ms",
            "600",
        ])
        .env("FINKFS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn finkfs-node");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("startup line");
    // finkfs-node 1 listening: peer A client B metrics http://C/metrics
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        let at = words
            .iter()
            .position(|w| *w == key)
            .unwrap_or_else(|| panic!("{key} in {line:?}"));
        words[at + 1].to_string()
    };
    let metrics = after("metrics");
    Spawned {
        client: after("client"),
        peer: after("peer"),
        metrics: metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_string(),
        child,
    }
}

impl Drop for Spawned {
    /// A failed test does not leave the node running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends SIGTERM and waits for the exit code.
fn terminate(mut spawned: Spawned) -> Option<i32> {
    let pid = spawned.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = spawned.child.try_wait().expect("wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = spawned.child.kill();
            panic!("finkfs-node did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_its_addresses_serves_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data_dir = dir.path().join("data");
    let node = spawn(&data_dir);
    assert!(scrape(&node.metrics).contains("finkfs_raft_term{"));
    let client = Client::connect_with(vec![node.client.clone()], client_options())
        .await
        .expect("connect");
    let spec = MemberSpec {
        id: 1,
        peer_addr: node.peer.clone(),
        client_addr: node.client.clone(),
    };
    client
        .init_at(&node.client, vec![spec])
        .await
        .expect("init");
    let data = vec![42u8; 123_456];
    client.put("daemon/kept", data.clone()).await.expect("put");
    drop(client);
    assert_eq!(terminate(node), Some(0), "clean exit on SIGTERM");

    // Restarted on the same directory: the acknowledged object is there.
    let node = spawn(&data_dir);
    let client = Client::connect_with(vec![node.client.clone()], client_options())
        .await
        .expect("connect again");
    assert_eq!(
        client.get("daemon/kept").await.expect("get after restart"),
        data
    );
    drop(client);
    assert_eq!(terminate(node), Some(0));
}

#[test]
fn bad_settings_exit_with_code_two_and_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_finkfs-node"))
        .args([
            "--data-dir",
            "/nonexistent",
            "--peer-listen",
            "127.0.0.1:0",
            "--client-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run finkfs-node");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("finkfs-node: missing setting id"),
        "{stderr}"
    );
}
