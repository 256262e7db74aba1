//! PutMany: many small whole objects over one stream, batched by the
//! leader into shared log entries.
//!
//! Objects whose outcome is retryable (the node lost leadership midway,
//! the connection broke before their reply) are sent again in a later round,
//! to the leader the failures named; the rounds share the client's retry
//! ceilings. Objects refused for good (a bad path, a BLAKE3 mismatch) get
//! their own error; the others are unaffected.

use std::time::Instant;

use bytes::Bytes;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use super::objects::{put_outcome, PutOutcome};
use super::retry::{verdict, Verdict};
use super::{bounded, Client, ClientError, Grpc, Reach};
use crate::api::proto::{put_many_reply, PutManyReply, PutManyRequest};
use crate::api::LEADER_METADATA_KEY;

/// One object of a [`Client::put_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutItem {
    /// Where to store it.
    pub path: String,
    /// Its bytes.
    pub data: Bytes,
    /// If set, it is stored only if it hashes to this.
    pub expected_blake3: Option<[u8; 32]>,
}

impl PutItem {
    /// An object without an expected hash.
    pub fn new(path: impl Into<String>, data: impl Into<Bytes>) -> PutItem {
        PutItem {
            path: path.into(),
            data: data.into(),
            expected_blake3: None,
        }
    }
}

type ItemResult = Result<PutOutcome, ClientError>;

impl Client {
    /// Stores every item; one result per item, in order. Fails as a whole
    /// only if no node could be reached at all.
    pub async fn put_many(&self, items: Vec<PutItem>) -> Result<Vec<ItemResult>, ClientError> {
        let retry = self.options().retry.clone();
        let started = Instant::now();
        let mut results: Vec<Option<ItemResult>> = (0..items.len()).map(|_| None).collect();
        let mut round = 0u32;
        loop {
            round += 1;
            let pending: Vec<usize> = (0..items.len()).filter(|i| results[*i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let requests: Vec<PutManyRequest> =
                pending.iter().map(|i| request(&items[*i])).collect();
            let timeout = self.options().stream_timeout;
            let replies = self
                .call(Reach::Leader, |grpc| {
                    bounded(timeout, send_round(grpc, requests.clone()))
                })
                .await?;
            let last_round =
                round >= retry.attempts_max.max(1) || started.elapsed() >= retry.elapsed_max;
            let addr = self.leader_addr().unwrap_or_default();
            let retry_later = self.record(&pending, replies, &mut results, &addr, last_round);
            if retry_later && !last_round {
                tokio::time::sleep(retry.backoff(round)).await;
            }
            if last_round {
                for result in results.iter_mut().filter(|r| r.is_none()) {
                    *result = Some(Err(ClientError::Status {
                        addr: addr.clone(),
                        status: Box::new(Status::unavailable("no reply for this object")),
                        attempts: round,
                        elapsed: started.elapsed(),
                    }));
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every item has a result"))
            .collect())
    }

    /// Records the replies of one round; returns whether some object must
    /// be sent again. `pending[seq]` is the item a reply's `seq` names.
    fn record(
        &self,
        pending: &[usize],
        replies: Vec<PutManyReply>,
        results: &mut [Option<ItemResult>],
        addr: &str,
        last_round: bool,
    ) -> bool {
        let mut retry_later = false;
        for reply in replies {
            let Some(&item) = usize::try_from(reply.seq).ok().and_then(|s| pending.get(s)) else {
                tracing::warn!(seq = reply.seq, "PutMany reply names no request; ignored");
                continue;
            };
            let status = match reply.outcome {
                Some(put_many_reply::Outcome::Stored(stored)) => match put_outcome(&stored) {
                    Ok(outcome) => {
                        results[item] = Some(Ok(outcome));
                        continue;
                    }
                    Err(status) => status,
                },
                Some(put_many_reply::Outcome::Failed(failure)) => failure_status(failure),
                None => Status::data_loss("PutMany reply without an outcome"),
            };
            let verdict = verdict(&status);
            if let Verdict::Redirect(leader) = &verdict {
                self.targets().learn(leader.clone());
                self.targets().leader = Some(leader.clone());
            }
            if verdict == Verdict::Fail || last_round {
                results[item] = Some(Err(ClientError::Status {
                    addr: addr.to_string(),
                    status: Box::new(status),
                    attempts: 1,
                    elapsed: std::time::Duration::ZERO,
                }));
            } else {
                retry_later = true;
            }
        }
        retry_later || pending.iter().any(|i| results[*i].is_none())
    }
}

fn request(item: &PutItem) -> PutManyRequest {
    PutManyRequest {
        path: item.path.clone(),
        data: item.data.clone(),
        expected_blake3: item.expected_blake3.map(|h| Bytes::copy_from_slice(&h)),
    }
}

/// Sends one round; the replies received. A stream that breaks after some
/// replies returns those (the rest are retried); one that fails before any
/// reply is an error for the caller's retry loop.
async fn send_round(
    mut grpc: Grpc,
    requests: Vec<PutManyRequest>,
) -> Result<Vec<PutManyReply>, Status> {
    let count = requests.len();
    let mut stream = grpc
        .put_many(futures_util::stream::iter(requests))
        .await?
        .into_inner();
    let mut replies = Vec::with_capacity(count);
    loop {
        match stream.message().await {
            Ok(Some(reply)) => replies.push(reply),
            Ok(None) => return Ok(replies),
            Err(status) if replies.is_empty() => return Err(status),
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "PutMany stream broke; the rest is retried");
                return Ok(replies);
            }
        }
    }
}

/// The status a per-object failure stands for, leader address included.
fn failure_status(failure: crate::api::proto::Failure) -> Status {
    let mut status = Status::new(Code::from_i32(failure.code), failure.message);
    if let Some(leader) = failure.leader {
        if let Ok(value) = MetadataValue::try_from(leader.as_str()) {
            status.metadata_mut().insert(LEADER_METADATA_KEY, value);
        }
    }
    status
}
