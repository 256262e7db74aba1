//! Hostile input on a node's ports: raw random bytes over TCP, and
//! well-framed gRPC calls whose messages are not valid protobuf.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;
use tonic::{Request, Status};

use crate::alerts::random_bytes;

/// The HTTP/2 client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest wait for a node to answer or drop a hostile connection.
pub const HOSTILE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `len` random bytes (from `seed`), optionally after the HTTP/2
/// preface, then reads until the node closes the connection or
/// [`HOSTILE_TIMEOUT`] passes. Returns the bytes the node answered with.
pub async fn send_tcp_garbage(
    addr: &str,
    seed: u64,
    len: usize,
    after_h2_preface: bool,
) -> Result<usize, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        if after_h2_preface {
            stream
                .write_all(H2_PREFACE)
                .await
                .map_err(|e| format!("send to {addr}: {e}"))?;
        }
        // The node may close the connection before reading everything.
        let _ = stream.write_all(&random_bytes(seed, len)).await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        Ok(answer.len())
    };
    // A node that neither answers nor closes keeps the connection: that
    // is allowed, as long as it keeps serving others.
    tokio::time::timeout(HOSTILE_TIMEOUT, exchange)
        .await
        .unwrap_or(Ok(0))
}

/// Calls gRPC method `path` (e.g. `/finkfs.peer.v1.Peer/Vote`) on `addr`
/// with `messages` raw messages (unary when 1), each starting with a byte
/// no protobuf message starts with (field 0, wire type 7) followed by
/// random bytes. Returns the status the node answered with; an `Ok`
/// answer is an error.
pub async fn send_grpc_garbage(
    addr: &str,
    path: &'static str,
    seed: u64,
    messages: usize,
) -> Result<Status, String> {
    let call = async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| format!("{addr} not ready: {e}"))?;
        let bodies: Vec<Bytes> = (0..messages as u64)
            .map(|i| invalid_protobuf(seed.wrapping_add(i)))
            .collect();
        let method = PathAndQuery::from_static(path);
        let answer = if messages == 1 {
            let body = bodies.into_iter().next().expect("one message");
            grpc.unary(Request::new(body), method, RawCodec)
                .await
                .map(|_| ())
        } else {
            let stream = futures_util::stream::iter(bodies);
            match grpc.streaming(Request::new(stream), method, RawCodec).await {
                Ok(replies) => drain(replies.into_inner()).await,
                Err(status) => Err(status),
            }
        };
        match answer {
            Ok(()) => Err(format!("{addr} accepted garbage for {path}")),
            Err(status) => Ok(status),
        }
    };
    tokio::time::timeout(HOSTILE_TIMEOUT, call)
        .await
        .map_err(|_| {
            format!("{addr} did not answer garbage for {path} within {HOSTILE_TIMEOUT:?}")
        })?
}

/// Reads a reply stream to its end: the status it ends with, `Ok` if
/// it ends cleanly without a message. A reply message is taken as
/// acceptance.
async fn drain(mut replies: tonic::Streaming<Bytes>) -> Result<(), Status> {
    match replies.message().await {
        Ok(_) => Ok(()),
        Err(status) => Err(status),
    }
}

/// Bytes no protobuf decoder accepts: a key with field number 0 and the
/// unused wire type 7, then random bytes.
fn invalid_protobuf(seed: u64) -> Bytes {
    let mut body = vec![0x07];
    body.extend_from_slice(&random_bytes(seed, 256));
    Bytes::from(body)
}

/// A codec that sends and receives raw message bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
