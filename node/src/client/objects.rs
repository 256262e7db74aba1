//! Object calls of the client library: put, get, stat, list, delete.

use std::io;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::{Code, Status, Streaming};

use super::{bounded, within, Client, ClientError, Reach};
use crate::api::proto::{
    self, get_reply, put_request, ByteRange, DeleteRequest, GetRequest, ListRequest, PutHeader,
    PutRequest, StatRequest,
};
use crate::api::{DATA_CHUNK_BYTES, LIST_LIMIT_MAX};
use crate::hex::hex;

/// What a Put stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// Bytes of the object.
    pub size: u64,
    /// BLAKE3 of the object.
    pub blake3: [u8; 32],
    /// Index of the log entry that stored it.
    pub log_index: u64,
}

/// What a Get returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetOutcome {
    /// Bytes of the whole object.
    pub size: u64,
    /// BLAKE3 of the whole object.
    pub blake3: [u8; 32],
    /// First byte returned.
    pub start: u64,
    /// Bytes returned.
    pub len: u64,
}

/// What a Delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// Whether an object was there.
    pub existed: bool,
    /// Index of the log entry of the delete.
    pub log_index: u64,
}

/// What is stored at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's path.
    pub path: String,
    /// Bytes of the object.
    pub size: u64,
    /// BLAKE3 of the object.
    pub blake3: [u8; 32],
    /// Size of every block but the last.
    pub block_bytes: u32,
    /// Number of blocks.
    pub block_count: u32,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Objects in path order.
    pub objects: Vec<ObjectInfo>,
    /// Pass as `start_after` for the next page; `None` at the end.
    pub next_start_after: Option<String>,
}

/// The bytes of an upload, readable again from the start for each attempt
/// (a retry after a leader change resends them).
pub trait PutSource: Send + Sync {
    /// Exact number of bytes the reader yields.
    fn size(&self) -> u64;
    /// A reader positioned at the first byte.
    fn open(&self) -> io::Result<Pin<Box<dyn AsyncRead + Send>>>;
}

impl PutSource for Bytes {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn open(&self) -> io::Result<Pin<Box<dyn AsyncRead + Send>>> {
        Ok(Box::pin(io::Cursor::new(self.clone())))
    }
}

/// The messages of one Put attempt, as a named type without lifetime
/// parameters. Handing tonic a bare `Pin<Box<dyn Stream + Send>>` made every
/// put future non-`Send` for `tokio::spawn`: the compiler checks a future's
/// `Send` with every lifetime in its state erased, the boxed stream's implied
/// `'static` included, and then cannot prove the `'static` bound of tonic's
/// `IntoStreamingRequest` impl for it ("`Send` is not general enough"). The
/// `'static` sits inside this struct's definition, where erasure cannot
/// reach it.
struct PutStream(Pin<Box<dyn Stream<Item = PutRequest> + Send>>);

impl Stream for PutStream {
    type Item = PutRequest;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<PutRequest>> {
        self.0.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl Client {
    /// Stores `data` at `path`, replacing any object there. Returns once it
    /// is committed on a majority of nodes.
    pub async fn put(&self, path: &str, data: impl Into<Bytes>) -> Result<PutOutcome, ClientError> {
        self.put_checked(path, data.into(), None).await
    }

    /// Stores `data` at `path` only if it hashes to `expected_blake3`.
    pub async fn put_checked(
        &self,
        path: &str,
        data: Bytes,
        expected_blake3: Option<[u8; 32]>,
    ) -> Result<PutOutcome, ClientError> {
        self.put_source(path, &data, expected_blake3).await
    }

    /// Stores the bytes of `source` at `path`, streamed in chunks.
    pub async fn put_source(
        &self,
        path: &str,
        source: &dyn PutSource,
        expected_blake3: Option<[u8; 32]>,
    ) -> Result<PutOutcome, ClientError> {
        let timeout = self.options().stream_timeout;
        let header = PutHeader {
            path: path.to_string(),
            size: source.size(),
            expected_blake3: expected_blake3.map(|h| Bytes::copy_from_slice(&h)),
        };
        self.call(Reach::Leader, |mut grpc| {
            let requests = put_requests(header.clone(), source);
            async move {
                let requests =
                    requests.map_err(|e| Status::aborted(format!("reading the data: {e}")))?;
                let reply = within(timeout, grpc.put(requests)).await?;
                put_outcome(&reply)
            }
        })
        .await
    }

    /// The whole object at `path`, checked against its BLAKE3.
    pub async fn get(&self, path: &str) -> Result<Bytes, ClientError> {
        let (outcome, data) = self.get_inner(path, None).await?;
        let actual = *blake3::hash(&data).as_bytes();
        if actual != outcome.blake3 {
            return Err(ClientError::Corrupt {
                path: path.to_string(),
                expected: hex(&outcome.blake3),
                actual: hex(&actual),
            });
        }
        Ok(data)
    }

    /// `len` bytes of the object at `path` from `start`. Every block they
    /// come from was verified by the node.
    pub async fn get_range(&self, path: &str, start: u64, len: u64) -> Result<Bytes, ClientError> {
        Ok(self
            .get_inner(path, Some(ByteRange { start, len }))
            .await?
            .1)
    }

    /// Streams the whole object at `path` into `out`, hashing it on the way;
    /// fails with [`ClientError::Corrupt`] if it does not match its BLAKE3
    /// (`out` then holds bytes that must be discarded). A broken download
    /// is retried only while nothing was written to `out`.
    pub async fn get_to<W>(&self, path: &str, out: &mut W) -> Result<GetOutcome, ClientError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let timeout = self.options().stream_timeout;
        let request = GetRequest {
            path: path.to_string(),
            range: None,
        };
        let (outcome, stream) = self
            .call(Reach::Leader, |mut grpc| {
                let request = request.clone();
                async move {
                    let mut stream = within(timeout, grpc.get(request)).await?;
                    let outcome = read_header(&mut stream).await?;
                    Ok((outcome, stream))
                }
            })
            .await?;
        let addr = self.leader_addr().unwrap_or_default();
        let mut hasher = blake3::Hasher::new();
        let received = pump(
            stream,
            outcome.len,
            &addr,
            |chunk| {
                hasher.update(&chunk);
                chunk
            },
            out,
        )
        .await?;
        assert_eq!(received, outcome.len);
        let actual = *hasher.finalize().as_bytes();
        if actual != outcome.blake3 {
            return Err(ClientError::Corrupt {
                path: path.to_string(),
                expected: hex(&outcome.blake3),
                actual: hex(&actual),
            });
        }
        Ok(outcome)
    }

    async fn get_inner(
        &self,
        path: &str,
        range: Option<ByteRange>,
    ) -> Result<(GetOutcome, Bytes), ClientError> {
        let timeout = self.options().stream_timeout;
        let request = GetRequest {
            path: path.to_string(),
            range,
        };
        self.call(Reach::Leader, |mut grpc| {
            let request = request.clone();
            async move {
                bounded(timeout, async {
                    let mut stream = grpc.get(request).await?.into_inner();
                    let outcome = read_header(&mut stream).await?;
                    let data = collect(&mut stream, outcome.len).await?;
                    Ok((outcome, data))
                })
                .await
            }
        })
        .await
    }

    /// What is stored at `path`; `None` when nothing is.
    pub async fn stat(&self, path: &str) -> Result<Option<ObjectInfo>, ClientError> {
        let timeout = self.options().request_timeout;
        let request = StatRequest {
            path: path.to_string(),
        };
        let result = self
            .call(Reach::Leader, |mut grpc| {
                let request = request.clone();
                async move { within(timeout, grpc.stat(request)).await }
            })
            .await;
        match result {
            Ok(reply) => {
                let object = reply.object.ok_or_else(|| missing("StatReply.object"))?;
                Ok(Some(object_info(object).map_err(protocol)?))
            }
            Err(error) if error.code() == Some(Code::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One page of the objects whose path starts with `prefix`, after
    /// `start_after`, at most `limit` (1..=10,000).
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<ListPage, ClientError> {
        if limit == 0 || limit as usize > LIST_LIMIT_MAX {
            return Err(ClientError::InvalidRequest(format!(
                "list limit {limit} is not in 1..={LIST_LIMIT_MAX}"
            )));
        }
        let timeout = self.options().request_timeout;
        let request = ListRequest {
            prefix: prefix.to_string(),
            start_after: start_after.map(str::to_string),
            limit,
        };
        let reply = self
            .call(Reach::Leader, |mut grpc| {
                let request = request.clone();
                async move { within(timeout, grpc.list(request)).await }
            })
            .await?;
        let objects = reply
            .objects
            .into_iter()
            .map(object_info)
            .collect::<Result<Vec<_>, _>>()
            .map_err(protocol)?;
        Ok(ListPage {
            objects,
            next_start_after: reply.next_start_after,
        })
    }

    /// Every object whose path starts with `prefix`, fetched page by page.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ClientError> {
        let mut objects = Vec::new();
        let mut start_after: Option<String> = None;
        loop {
            let page = self
                .list(prefix, start_after.as_deref(), LIST_LIMIT_MAX as u32)
                .await?;
            objects.extend(page.objects);
            match page.next_start_after {
                Some(next) => start_after = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// Removes the object at `path` (a missing object is not an error).
    pub async fn delete(&self, path: &str) -> Result<DeleteOutcome, ClientError> {
        let timeout = self.options().request_timeout;
        let request = DeleteRequest {
            path: path.to_string(),
        };
        let reply = self
            .call(Reach::Leader, |mut grpc| {
                let request = request.clone();
                async move { within(timeout, grpc.delete(request)).await }
            })
            .await?;
        Ok(DeleteOutcome {
            existed: reply.existed,
            log_index: reply.log_index,
        })
    }
}

/// The messages of one Put attempt: the header, then the source's bytes in
/// chunks of at most [`DATA_CHUNK_BYTES`].
fn put_requests(header: PutHeader, source: &dyn PutSource) -> io::Result<PutStream> {
    let reader = source.open()?;
    let first = PutRequest {
        part: Some(put_request::Part::Header(header)),
    };
    let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = BytesMut::zeroed(DATA_CHUNK_BYTES);
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) => {
                    // The stream ends short; the node refuses the size
                    // mismatch and nothing is stored.
                    tracing::warn!(%error, "reading upload data failed");
                    return None;
                }
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        let request = PutRequest {
            part: Some(put_request::Part::Data(buf.freeze())),
        };
        Some((request, Some(reader)))
    });
    Ok(PutStream(Box::pin(
        futures_util::stream::once(async { first }).chain(chunks),
    )))
}

pub(super) fn put_outcome(reply: &proto::PutReply) -> Result<PutOutcome, Status> {
    Ok(PutOutcome {
        size: reply.size,
        blake3: hash32(&reply.blake3, "PutReply.blake3")?,
        log_index: reply.log_index,
    })
}

async fn read_header(stream: &mut Streaming<proto::GetReply>) -> Result<GetOutcome, Status> {
    let first = stream
        .message()
        .await?
        .ok_or_else(|| Status::data_loss("Get reply stream ended before its header"))?;
    let Some(get_reply::Part::Header(header)) = first.part else {
        return Err(Status::data_loss(
            "Get reply stream did not start with a header",
        ));
    };
    let range = header
        .range
        .ok_or_else(|| Status::data_loss("Get reply header has no range"))?;
    Ok(GetOutcome {
        size: header.size,
        blake3: hash32(&header.blake3, "GetHeader.blake3")?,
        start: range.start,
        len: range.len,
    })
}

/// Reads the data chunks of a Get reply into one buffer of `len` bytes.
async fn collect(stream: &mut Streaming<proto::GetReply>, len: u64) -> Result<Bytes, Status> {
    let capacity = usize::try_from(len)
        .map_err(|_| Status::out_of_range(format!("{len} bytes do not fit in memory")))?;
    let mut data = BytesMut::with_capacity(capacity);
    while let Some(reply) = stream.message().await? {
        let chunk = data_part(reply)?;
        if (data.len() + chunk.len()) as u64 > len {
            return Err(Status::data_loss(format!(
                "Get reply carries more than the {len} bytes its header announced"
            )));
        }
        data.extend_from_slice(&chunk);
    }
    if data.len() as u64 != len {
        return Err(Status::data_loss(format!(
            "Get reply ended after {} of {len} bytes",
            data.len()
        )));
    }
    Ok(data.freeze())
}

/// Copies the data chunks of a Get reply into `out`, `each` seeing every
/// chunk first. Returns the bytes copied, which must be `len`.
async fn pump<W>(
    mut stream: Streaming<proto::GetReply>,
    len: u64,
    addr: &str,
    mut each: impl FnMut(Bytes) -> Bytes,
    out: &mut W,
) -> Result<u64, ClientError>
where
    W: AsyncWrite + Unpin + Send,
{
    let status_error = |status: Status| ClientError::Status {
        addr: addr.to_string(),
        status: Box::new(status),
        attempts: 1,
        elapsed: std::time::Duration::ZERO,
    };
    let mut received = 0u64;
    while let Some(reply) = stream.message().await.map_err(status_error)? {
        let chunk = data_part(reply).map_err(status_error)?;
        received += chunk.len() as u64;
        if received > len {
            return Err(ClientError::Protocol {
                addr: addr.to_string(),
                reason: format!("Get reply carries more than the {len} bytes announced"),
            });
        }
        out.write_all(&each(chunk)).await?;
    }
    out.flush().await?;
    if received != len {
        return Err(ClientError::Protocol {
            addr: addr.to_string(),
            reason: format!("Get reply ended after {received} of {len} bytes"),
        });
    }
    Ok(received)
}

fn data_part(reply: proto::GetReply) -> Result<Bytes, Status> {
    match reply.part {
        Some(get_reply::Part::Data(data)) => Ok(data),
        _ => Err(Status::data_loss("Get reply carried a second header")),
    }
}

pub(super) fn object_info(object: proto::ObjectInfo) -> Result<ObjectInfo, Status> {
    Ok(ObjectInfo {
        blake3: hash32(&object.blake3, "ObjectInfo.blake3")?,
        path: object.path,
        size: object.size,
        block_bytes: object.block_bytes,
        block_count: object.block_count,
    })
}

fn hash32(bytes: &[u8], field: &str) -> Result<[u8; 32], Status> {
    bytes
        .try_into()
        .map_err(|_| Status::data_loss(format!("{field} is {} bytes, not 32", bytes.len())))
}

fn missing(field: &str) -> ClientError {
    ClientError::Protocol {
        addr: String::new(),
        reason: format!("{field} is missing"),
    }
}

fn protocol(status: Status) -> ClientError {
    ClientError::Protocol {
        addr: String::new(),
        reason: status.message().to_string(),
    }
}
