//! Running the peer service on a listener until shutdown.
//!
//! Shutdown is bounded: on the signal the service stops accepting, ends its
//! open AppendEntries streams, and lets calls in flight finish for
//! [`SHUTDOWN_GRACE`]; connections still open then (a peer that never
//! finished its HTTP/2 handshake, a call that does not end) are closed. A
//! connection that does not send the HTTP/2 preface within
//! [`PREFACE_TIMEOUT`] is closed at any time, so silent or garbage TCP peers
//! hold nothing for long.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use openraft::storage::RaftStateMachine;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Server;

use super::client::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use super::server::PeerService;
use super::snapshot_file::SnapshotFile;
use super::PEER_STREAMS_PER_CONNECTION_MAX;
use crate::types::TypeConfig;

/// How long calls in flight may run on after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a new connection may take to send the HTTP/2 preface.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// Length of the HTTP/2 client connection preface.
const PREFACE_BYTES: usize = 24;
/// Pause after a failed accept (for instance out of file descriptors), so
/// the accept loop does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Serves `service` on `listener` until `shutdown` resolves, then shuts down
/// within [`SHUTDOWN_GRACE`] (see the module docs).
pub async fn serve_peer<SM>(
    listener: TcpListener,
    service: PeerService<SM>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    let (kill, killed) = watch::channel(false);
    let (signalled_tx, mut signalled) = watch::channel(false);
    let closer = service.clone();
    let signal = async move {
        shutdown.await;
        closer.close_streams();
        signalled_tx.send_replace(true);
    };
    let server = Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(PEER_STREAMS_PER_CONNECTION_MAX)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(accept(listener, killed), signal);
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        _ = signalled.wait_for(|signalled| *signalled) => {}
    }
    if let Ok(result) = tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        return result;
    }
    tracing::warn!("peer connections still open {SHUTDOWN_GRACE:?} after shutdown: closing them");
    kill.send_replace(true);
    server.await
}

/// The accepted connections of `listener`, each closable through `killed`.
fn accept(
    listener: TcpListener,
    killed: watch::Receiver<bool>,
) -> impl Stream<Item = io::Result<PeerConn>> + Send + 'static {
    futures_util::stream::unfold((listener, killed), |(listener, killed)| async move {
        let accepted = match listener.accept().await {
            Ok((stream, _)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "cannot disable Nagle on a peer connection");
                }
                Ok(PeerConn::new(stream, killed.clone()))
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a peer connection failed");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                Err(error)
            }
        };
        Some((accepted, (listener, killed)))
    })
}

/// An accepted TCP connection that fails every read and write once the
/// server kills it, or if the HTTP/2 preface does not arrive in time.
pub(crate) struct PeerConn {
    stream: TcpStream,
    killed: Pin<Box<dyn Future<Output = ()> + Send>>,
    preface_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    preface_read: usize,
}

impl PeerConn {
    fn new(stream: TcpStream, mut killed: watch::Receiver<bool>) -> PeerConn {
        let killed = Box::pin(async move {
            // The sender dropped (the server returned): close as well.
            let _ = killed.wait_for(|killed| *killed).await;
        });
        PeerConn {
            stream,
            killed,
            preface_deadline: Some(Box::pin(tokio::time::sleep(PREFACE_TIMEOUT))),
            preface_read: 0,
        }
    }

    /// The error that ends the connection, if it must end.
    fn check(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.killed.as_mut().poll(cx).is_ready() {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "peer service shut down",
            ));
        }
        let deadline = self.preface_deadline.as_mut()?;
        if deadline.as_mut().poll(cx).is_ready() {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface from peer",
            ));
        }
        None
    }
}

impl AsyncRead for PeerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.check(cx) {
            return Poll::Ready(Err(error));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.preface_deadline.is_some() {
            self.preface_read += buf.filled().len() - before;
            if self.preface_read >= PREFACE_BYTES {
                self.preface_deadline = None;
            }
        }
        poll
    }
}

impl AsyncWrite for PeerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for PeerConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}
