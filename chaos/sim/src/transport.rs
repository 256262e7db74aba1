//! [`SimTransport`]: one node's view of the [`SimNet`], implementing the
//! peer network's `PeerTransport` seam.
//!
//! A request travels with its drawn delay, is handled by the target's peer
//! service inside the target's task group, and the reply travels back with
//! a delay of its own. Peers talk gRPC over TCP, which sends a dropped
//! segment again: a request or reply the network drops (a lossy or cut
//! link) is sent again after a retransmission timeout, doubling, so it is
//! late rather than lost, until the HTTP/2 keepalive would have found the
//! connection dead and the call fails `UNAVAILABLE`. A caller with a short
//! deadline (a vote, an append) gives up first, as it would on a real
//! network; one with a long deadline (FetchBlock) gets its answer once the
//! link heals instead of waiting out its deadline. A snapshot is a
//! stream: its chunks arrive in order (each waits for the previous, as on a
//! TCP connection), and a lost chunk resets the connection: the receiver
//! reads `UNAVAILABLE` and discards its partial file, the sender gets
//! `UNAVAILABLE`. A receiver that loses power before it replies fails the
//! sender's call once the keepalive has found the connection dead, and its
//! reply is carried like any other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use finkfs_raft::network::{
    proto, unreachable, OutgoingChunks, PeerOptions, PeerReply, PeerRequest, PeerTransport,
    KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT,
};
use finkfs_raft::rt::{self, NodeTag};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;

use crate::net::{wire_time, SimNet};

/// The network as node `from` sees it. Cheap to clone.
#[derive(Clone)]
pub struct SimTransport {
    net: SimNet,
    from: String,
    options: PeerOptions,
}

impl std::fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTransport")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl SimTransport {
    /// The transport of the node at `from`, whose callers use `options`.
    pub fn new(net: SimNet, from: &str, options: PeerOptions) -> SimTransport {
        SimTransport {
            net,
            from: from.to_string(),
            options,
        }
    }
}

/// Waits out one message's trip; `false` if it never arrives (lost, cut
/// link, or nobody with power at the other end).
async fn travel(net: &SimNet, from: &str, to: &str, kind: &'static str) -> bool {
    let sent = net.send(from, to, kind);
    let Some(delay) = wire_time(sent.fate) else {
        return false;
    };
    tokio::time::sleep(delay).await;
    net.arrive(sent.seq, from, to, kind)
}

/// The first retransmission timeout of a dropped message (Linux's
/// `TCP_RTO_MIN`); each further one doubles, up to [`RTO_MAX`].
const RTO_MIN: Duration = Duration::from_millis(200);
/// The longest wait between two retransmissions.
const RTO_MAX: Duration = Duration::from_secs(4);

/// How a message on a connection ended.
enum Carried {
    /// It reached a powered host.
    Arrived,
    /// It reached the address, where no host has power: silence.
    HostOff,
    /// The network dropped every copy until the keepalive gave up.
    ConnectionDead,
}

/// Carries one message over a connection: a copy the network drops is sent
/// again after the retransmission timeout, until one gets through or the
/// HTTP/2 keepalive (an unanswered ping after [`KEEPALIVE_INTERVAL`] of
/// silence, waited on for [`KEEPALIVE_TIMEOUT`]) declares the connection
/// dead.
async fn carry(net: &SimNet, from: &str, to: &str, kind: &'static str) -> Carried {
    let dead_at = Instant::now() + KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT;
    let mut rto = RTO_MIN;
    loop {
        let sent = net.send(from, to, kind);
        if let Some(delay) = wire_time(sent.fate) {
            tokio::time::sleep(delay).await;
            return match net.arrive(sent.seq, from, to, kind) {
                true => Carried::Arrived,
                false => Carried::HostOff,
            };
        }
        if Instant::now() + rto >= dead_at {
            return Carried::ConnectionDead;
        }
        tokio::time::sleep(rto).await;
        rto = (rto * 2).min(RTO_MAX);
    }
}

/// The status a call on a connection the keepalive found dead fails with.
fn connection_dead(to: &str) -> Status {
    Status::unavailable(format!(
        "connection to {to} lost: keepalive unanswered for {:?}",
        KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT
    ))
}

/// Runs a handler of the node `tag` inside its task group, so that a power
/// cut of that node ends it; `None` if it was ended before it replied.
async fn handle_in<T: Send + 'static>(
    tag: Option<NodeTag>,
    handler: BoxFuture<'static, T>,
) -> Option<T> {
    let task = match tag {
        Some(tag) => rt::in_node_sync(tag, || rt::spawn(handler)),
        None => rt::spawn(handler),
    };
    task.await.ok()
}

impl PeerTransport for SimTransport {
    fn options(&self) -> &PeerOptions {
        &self.options
    }

    fn unary(
        &self,
        to: &str,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerReply, Status>> {
        let (net, from, to) = (self.net.clone(), self.from.clone(), to.to_string());
        async move {
            if !net.knows(&to) {
                return Err(unreachable(&to));
            }
            let kind = request.kind();
            match carry(&net, &from, &to, kind).await {
                Carried::Arrived => {}
                Carried::HostOff => return std::future::pending().await,
                Carried::ConnectionDead => return Err(connection_dead(&to)),
            }
            // The endpoint is not kept past making the handler: a caller
            // waiting on a node that lost power must not keep its
            // incarnation alive.
            let Some((handler, tag)) = net
                .host(&to)
                .map(|(endpoint, tag)| (endpoint.handle_unary(request), tag))
            else {
                return std::future::pending().await;
            };
            let Some(reply) = handle_in(tag, handler).await else {
                return std::future::pending().await;
            };
            let reply_kind = match &reply {
                Ok(reply) => reply.kind(),
                Err(_) => "Status",
            };
            match carry(&net, &to, &from, reply_kind).await {
                Carried::Arrived => {}
                Carried::HostOff => return std::future::pending().await,
                Carried::ConnectionDead => return Err(connection_dead(&to)),
            }
            if let Ok(reply) = &reply {
                net.tap(&from, &to, reply);
            }
            reply
        }
        .boxed()
    }

    fn install_snapshot(
        &self,
        to: &str,
        chunks: OutgoingChunks,
    ) -> BoxFuture<'static, Result<proto::SnapshotReply, Status>> {
        let (net, from, to) = (self.net.clone(), self.from.clone(), to.to_string());
        async move {
            if !net.knows(&to) {
                return Err(unreachable(&to));
            }
            let Some((endpoint, tag)) = net.host(&to) else {
                return std::future::pending().await;
            };
            let reset = Arc::new(AtomicBool::new(false));
            let sender = SenderAlive(Arc::new(AtomicBool::new(false)));
            let wire = Wire {
                net: net.clone(),
                from: from.clone(),
                to: to.clone(),
                reset: Arc::clone(&reset),
                sender_gone: Arc::clone(&sender.0),
            };
            // The sender's chunks are read by a pump in the sender's own
            // task and cross to the receiver through a channel: the
            // receiver never holds the sender's stream (and its disk), so
            // a power cut of either side ends only its own half.
            let (tx, rx) = mpsc::channel(1);
            let incoming = chunks_on_the_wire(wire, rx);
            let handler = endpoint.handle_install_snapshot(incoming.boxed());
            drop(endpoint);
            let (_, handled) = tokio::join!(pump(chunks, tx), handle_in(tag, handler));
            if reset.load(Ordering::Acquire) {
                return Err(Status::unavailable(format!(
                    "connection to {to} reset while sending a snapshot"
                )));
            }
            let Some(reply) = handled else {
                // The receiver lost power before it replied: nothing more
                // comes back on this connection, and the sender's HTTP/2
                // keepalive finds it dead. (Waiting instead for the
                // sender's install deadline, half an hour, would leave the
                // leader replicating nothing to that follower meanwhile.)
                tokio::time::sleep(KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT).await;
                return Err(connection_dead(&to));
            };
            match carry(&net, &to, &from, "SnapshotReply").await {
                Carried::Arrived => {}
                // The sender itself lost power: nobody waits for the reply.
                Carried::HostOff => return std::future::pending().await,
                Carried::ConnectionDead => return Err(connection_dead(&to)),
            }
            drop(sender);
            reply
        }
        .boxed()
    }
}

/// Set when the sending call is dropped (openraft cancelled it, or the
/// sender's node lost power): the receiver then reads an error, as a gRPC
/// server does when its client resets the stream.
struct SenderAlive(Arc<AtomicBool>);

impl Drop for SenderAlive {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One snapshot stream's connection.
#[derive(Clone)]
struct Wire {
    net: SimNet,
    from: String,
    to: String,
    /// Set when a chunk was lost and the connection reset.
    reset: Arc<AtomicBool>,
    /// Set when the sender gave up.
    sender_gone: Arc<AtomicBool>,
}

/// Feeds the sender's chunks into the wire, then the end marker; stops
/// when the receiver has gone.
async fn pump(mut chunks: OutgoingChunks, tx: mpsc::Sender<Option<proto::SnapshotChunk>>) {
    while let Some(chunk) = chunks.next().await {
        if tx.send(Some(chunk)).await.is_err() {
            return;
        }
    }
    let _ = tx.send(None).await;
}

/// The chunks as the receiver reads them: each after its own trip, in
/// order; the first that is lost ends the stream with `UNAVAILABLE` and
/// sets `reset`; a sender that gave up ends it with `CANCELLED`.
fn chunks_on_the_wire(
    wire: Wire,
    chunks: mpsc::Receiver<Option<proto::SnapshotChunk>>,
) -> impl Stream<Item = Result<proto::SnapshotChunk, Status>> + Send + 'static {
    futures_util::stream::unfold(Some(chunks), move |chunks| {
        let wire = wire.clone();
        async move {
            let mut chunks = chunks?;
            let cancelled = || Status::cancelled(format!("{} stopped sending", wire.from));
            if wire.sender_gone.load(Ordering::Acquire) {
                return Some((Err(cancelled()), None));
            }
            // `None` from the channel: the pump was dropped before its end
            // marker (the sender lost power or gave up).
            let chunk = match chunks.recv().await {
                Some(Some(chunk)) => chunk,
                Some(None) => return None,
                None => return Some((Err(cancelled()), None)),
            };
            if !travel(&wire.net, &wire.from, &wire.to, "SnapshotChunk").await {
                wire.reset.store(true, Ordering::Release);
                let status = Status::unavailable(format!("connection from {} reset", wire.from));
                return Some((Err(status), None));
            }
            if wire.sender_gone.load(Ordering::Acquire) {
                return Some((Err(cancelled()), None));
            }
            Some((Ok(chunk), Some(chunks)))
        }
    })
}
