//! The finkfs client library: talks to a cluster through the client
//! protocol (`finkfs.client.v1`), used by the `finkfs` CLI and the
//! end-to-end tests.
//!
//! [`Client::connect`] takes the client addresses of some nodes. Each call
//! goes to the node believed to lead; a follower's answer names the leader
//! (`finkfs-leader`) and the call is sent there at once; an unreachable
//! node, an election in progress or a broken connection make the call try
//! the next address after a pause. Retries are bounded ([`RetryOptions`]).
//! Uploads and downloads travel in chunks of [`DATA_CHUNK_BYTES`]; a
//! download of a whole object is checked against the BLAKE3 the node
//! announced before it is returned.

mod cluster;
mod error;
mod objects;
mod put_many;
mod retry;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::Status;

pub use error::ClientError;
pub use objects::{DeleteOutcome, GetOutcome, ListPage, ObjectInfo, PutOutcome, PutSource};
pub use put_many::PutItem;
pub use retry::{
    RetryOptions, RETRY_ATTEMPTS_MAX_DEFAULT, RETRY_BACKOFF_MAX_DEFAULT, RETRY_BACKOFF_MIN_DEFAULT,
    RETRY_ELAPSED_MAX_DEFAULT,
};

use crate::api::proto::client_client::ClientClient;
use crate::api::{CLIENT_MESSAGE_BYTES_MAX, DATA_CHUNK_BYTES};
use retry::{verdict, Verdict};

/// The generated gRPC client of the client service.
pub(crate) type Grpc = ClientClient<Channel>;

/// Default time to establish a TCP connection to a node.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Default longest wait for the answer to one unary call.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// Default longest time one streamed upload or download may take.
pub const STREAM_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30 * 60);
/// Most node addresses a client remembers (given and learned).
pub const KNOWN_ADDRS_MAX: usize = 64;
/// Interval of HTTP/2 keepalive pings: a dead node is noticed even while
/// a long stream waits.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Time to establish a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait for the answer to one unary call attempt.
    pub request_timeout: Duration,
    /// Longest time one streamed upload or download attempt may take.
    pub stream_timeout: Duration,
    /// Retry ceilings.
    pub retry: RetryOptions,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            stream_timeout: STREAM_TIMEOUT_DEFAULT,
            retry: RetryOptions::default(),
        }
    }
}

/// A connection to a finkfs cluster. Cheap to clone; clones share
/// connections and what they learned about the leader.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ClientOptions,
    targets: Mutex<Targets>,
    channels: Mutex<HashMap<String, Channel>>,
}

/// The addresses a client knows and which one it believes leads.
#[derive(Debug, Default)]
struct Targets {
    addrs: Vec<String>,
    leader: Option<String>,
}

/// Which node a call must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The leader: writes, reads, membership changes.
    Leader,
    /// Any node that answers (status).
    Any,
}

impl Client {
    /// Connects to the cluster that the nodes at `addrs` (client addresses,
    /// `host:port`) belong to: asks them in turn for their status until one
    /// answers, and learns the leader and the other members from it.
    pub async fn connect(addrs: Vec<String>) -> Result<Client, ClientError> {
        Client::connect_with(addrs, ClientOptions::default()).await
    }

    /// [`Client::connect`] with explicit settings.
    pub async fn connect_with(
        addrs: Vec<String>,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::NoAddress);
        }
        for addr in &addrs {
            endpoint(addr, &options)?;
        }
        let mut targets = Targets::default();
        for addr in addrs {
            targets.learn(addr);
        }
        let client = Client {
            inner: Arc::new(Inner {
                options,
                targets: Mutex::new(targets),
                channels: Mutex::default(),
            }),
        };
        let status = client.status().await?;
        client.learn_from_status(&status);
        Ok(client)
    }

    /// The settings of this client.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The addresses this client knows, given and learned.
    pub fn known_addrs(&self) -> Vec<String> {
        self.targets().addrs.clone()
    }

    /// The address this client believes leads, if any.
    pub fn leader_addr(&self) -> Option<String> {
        self.targets().leader.clone()
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, Targets> {
        self.inner.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the members a status reply names and the leader.
    pub(crate) fn learn_from_status(&self, status: &crate::api::proto::StatusReply) {
        let mut targets = self.targets();
        for member in &status.members {
            if !member.client_addr.is_empty() {
                targets.learn(member.client_addr.clone());
            }
        }
        if !status.leader_client_addr.is_empty() {
            targets.learn(status.leader_client_addr.clone());
            targets.leader = Some(status.leader_client_addr.clone());
        }
    }

    /// The gRPC client for `addr`, over a cached channel.
    fn grpc(&self, addr: &str) -> Result<Grpc, ClientError> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let channel = match channels.get(addr) {
            Some(channel) => channel.clone(),
            None => {
                let channel = endpoint(addr, &self.inner.options)?.connect_lazy();
                channels.insert(addr.to_string(), channel.clone());
                channel
            }
        };
        Ok(ClientClient::new(channel)
            .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(CLIENT_MESSAGE_BYTES_MAX))
    }

    /// Runs `attempt` against the node `reach` asks for, following leader
    /// redirects and retrying within the ceilings (see the module docs).
    pub(crate) async fn call<T, F, Fut>(
        &self,
        reach: Reach,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Grpc) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let retry = self.inner.options.retry.clone();
        let started = Instant::now();
        let mut not_members = HashSet::new();
        let mut addr = self.first_target();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let status = match attempt(self.grpc(&addr)?).await {
                Ok(value) => {
                    if reach == Reach::Leader {
                        self.targets().leader = Some(addr);
                    }
                    return Ok(value);
                }
                Err(status) => status,
            };
            let verdict = verdict(&status);
            tracing::debug!(%addr, code = ?status.code(), message = status.message(), ?verdict, attempts, "client call failed");
            let out_of_retries =
                attempts >= retry.attempts_max.max(1) || started.elapsed() >= retry.elapsed_max;
            let fail = |addr: String, status: Status| ClientError::Status {
                addr,
                status: Box::new(status),
                attempts,
                elapsed: started.elapsed(),
            };
            // The leader a follower names is remembered even when this call
            // gives up, so the next call goes there instead of asking the
            // same follower again.
            if let Verdict::Redirect(leader) = &verdict {
                let mut targets = self.targets();
                targets.learn(leader.clone());
                targets.leader = Some(leader.clone());
            }
            if verdict == Verdict::Fail || out_of_retries {
                return Err(fail(addr, status));
            }
            match verdict {
                Verdict::Redirect(leader) => {
                    // A chain of stale redirects slows down instead of spinning.
                    if attempts > 2 {
                        tokio::time::sleep(retry.backoff(attempts - 2)).await;
                    }
                    addr = leader;
                }
                Verdict::NotMember => {
                    not_members.insert(addr.clone());
                    let next = self.next_target(&addr, &not_members);
                    let Some(next) = next else {
                        return Err(fail(addr, status));
                    };
                    addr = next;
                }
                Verdict::Retry | Verdict::Fail => {
                    tokio::time::sleep(retry.backoff(attempts)).await;
                    let mut targets = self.targets();
                    if targets.leader.as_deref() == Some(addr.as_str()) {
                        targets.leader = None;
                    }
                    drop(targets);
                    addr = self.next_target(&addr, &not_members).unwrap_or(addr);
                }
            }
        }
    }

    /// The believed leader (every call prefers it: its status carries the
    /// members' health), else the first known address.
    fn first_target(&self) -> String {
        let targets = self.targets();
        targets
            .leader
            .clone()
            .unwrap_or_else(|| targets.addrs[0].clone())
    }

    /// The address after `addr` in the known list that is not in `skip`.
    fn next_target(&self, addr: &str, skip: &HashSet<String>) -> Option<String> {
        let targets = self.targets();
        let start = targets.addrs.iter().position(|a| a == addr).unwrap_or(0);
        let count = targets.addrs.len();
        (1..=count)
            .map(|step| &targets.addrs[(start + step) % count])
            .find(|candidate| !skip.contains(*candidate))
            .cloned()
    }
}

impl Targets {
    fn learn(&mut self, addr: String) {
        if !self.addrs.contains(&addr) && self.addrs.len() < KNOWN_ADDRS_MAX {
            self.addrs.push(addr);
        }
    }
}

fn endpoint(addr: &str, options: &ClientOptions) -> Result<Endpoint, ClientError> {
    let bad = |reason: String| ClientError::BadAddress {
        addr: addr.to_string(),
        reason,
    };
    if addr.is_empty() || addr.contains("://") {
        return Err(bad("expected host:port".to_string()));
    }
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// Runs one unary attempt within `timeout`.
pub(crate) async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

/// Runs one attempt (of any shape) within `timeout`.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    attempt: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "no answer within {timeout:?}"
            )))
        })
}

const _: () = assert!(DATA_CHUNK_BYTES * 2 <= CLIENT_MESSAGE_BYTES_MAX);
