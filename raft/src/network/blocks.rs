//! FetchBlock: one content-addressed block by its BLAKE3 hash.
//!
//! Raft knows nothing of what a block means; the node provides a
//! [`BlockSource`]. Both ends verify: the server hashes what its source
//! returned before sending (a block damaged on its disk is `DATA_LOSS`, never
//! sent), and [`PeerClient`] hashes what it received (a mismatch is
//! [`PeerClientError::CorruptBlock`], never data).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tonic::{Code, Status};

use super::client::PeerChannels;
use super::convert::hash_from_bytes;
use super::error::PeerClientError;
use super::proto;
use super::server::invalid;
use super::transport::{wrong_reply, PeerReply, PeerRequest, PeerTransport};
use super::{FETCH_BLOCKS_IN_FLIGHT_MAX, FETCH_BLOCK_BYTES_MAX};
use crate::types::GroupId;

/// Why a [`BlockSource`] could not read a block.
pub type BlockSourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A [`BlockSource`] error saying the source holds the block but its copy
/// is damaged: FetchBlock answers it with `DATA_LOSS`, which tells the
/// asking node this peer has no intact copy (not that it could not answer).
#[derive(Debug, thiserror::Error)]
#[error("the copy held here is damaged: {0}")]
pub struct DamagedCopy(pub String);

/// Where the peer service finds the blocks of a group (implemented by the
/// node's block store).
pub trait BlockSource: Send + Sync + 'static {
    /// The block whose BLAKE3 is `hash`, or `None` when this node does not
    /// hold it. Called off the async threads; may block on disk I/O.
    fn read_block(&self, hash: [u8; 32]) -> Result<Option<Bytes>, BlockSourceError>;
}

fn hex(hash: &[u8; 32]) -> String {
    blake3::Hash::from(*hash).to_hex().to_string()
}

/// Answers one FetchBlock from `source`.
pub(crate) async fn serve(
    source: Option<Arc<dyn BlockSource>>,
    hash: &[u8],
) -> Result<proto::FetchBlockReply, Status> {
    let hash = hash_from_bytes(hash, "hash").map_err(|e| invalid("FetchBlock request", &e))?;
    let Some(source) = source else {
        return Ok(proto::FetchBlockReply {
            found: false,
            data: Bytes::new(),
        });
    };
    let read = crate::rt::blocking(move || source.read_block(hash))
        .await
        .map_err(|e| Status::internal(format!("block read task failed: {e}")))?;
    let data = match read {
        Ok(Some(data)) => data,
        Ok(None) => {
            return Ok(proto::FetchBlockReply {
                found: false,
                data: Bytes::new(),
            })
        }
        Err(error) if error.downcast_ref::<DamagedCopy>().is_some() => {
            return Err(Status::data_loss(format!("block {}: {error}", hex(&hash))));
        }
        Err(error) => {
            tracing::error!(block = %hex(&hash), %error, "block read failed");
            return Err(Status::internal(format!(
                "block {} could not be read: {error}",
                hex(&hash)
            )));
        }
    };
    if data.len() > FETCH_BLOCK_BYTES_MAX {
        return Err(Status::internal(format!(
            "block {} is {} bytes, more than {FETCH_BLOCK_BYTES_MAX}",
            hex(&hash),
            data.len()
        )));
    }
    let actual = blake3::hash(&data);
    if actual != blake3::Hash::from(hash) {
        tracing::error!(block = %hex(&hash), actual = %actual.to_hex(), "block failed its checksum: not sent");
        return Err(Status::data_loss(format!(
            "block {} failed its BLAKE3 check here",
            hex(&hash)
        )));
    }
    Ok(proto::FetchBlockReply { found: true, data })
}

/// Calls of the peer protocol that are not Raft's: fetching blocks.
#[derive(Debug, Clone)]
pub struct PeerClient {
    transport: Arc<dyn PeerTransport>,
}

impl PeerClient {
    /// A client over gRPC `channels` (shared with the process's Raft
    /// networks).
    pub fn new(channels: PeerChannels) -> PeerClient {
        PeerClient::over(Arc::new(channels))
    }

    /// A client over any transport.
    pub fn over(transport: Arc<dyn PeerTransport>) -> PeerClient {
        PeerClient { transport }
    }

    /// Sends `request` (of `group`) to `addr` and waits up to `timeout` for
    /// its reply; an unknown group and a timeout are errors of their own.
    pub(super) async fn call(
        &self,
        addr: &str,
        group: GroupId,
        request: PeerRequest,
        timeout: std::time::Duration,
    ) -> Result<PeerReply, PeerClientError> {
        tokio::time::timeout(timeout, self.transport.unary(addr, request))
            .await
            .map_err(|_| PeerClientError::Timeout {
                addr: addr.to_string(),
                timeout,
            })?
            .map_err(|status| match status.code() {
                Code::NotFound => PeerClientError::UnknownGroup {
                    addr: addr.to_string(),
                    group,
                },
                _ => PeerClientError::Status {
                    addr: addr.to_string(),
                    status: Box::new(status),
                },
            })
    }

    /// The block whose BLAKE3 is `hash` from the peer at `addr`, verified;
    /// `None` when the peer does not hold it intact (it answers `DATA_LOSS`
    /// when its copy is damaged).
    pub async fn fetch_block(
        &self,
        addr: &str,
        group: GroupId,
        hash: [u8; 32],
    ) -> Result<Option<Bytes>, PeerClientError> {
        let request = PeerRequest::FetchBlock(proto::FetchBlockRequest {
            group_id: group.0,
            hash: Bytes::copy_from_slice(&hash),
        });
        let timeout = self.transport.options().fetch_block_timeout;
        let reply = match self.call(addr, group, request, timeout).await {
            // The peer's copy is damaged: it holds no intact one, the same
            // answer as not holding the block, for this block alone.
            Err(PeerClientError::Status { status, .. })
                if status.code() == tonic::Code::DataLoss =>
            {
                tracing::debug!(%addr, block = %hex(&hash), "the peer's copy of a block is damaged");
                return Ok(None);
            }
            reply => reply?,
        };
        let reply = match reply {
            PeerReply::FetchBlock(reply) => reply,
            other => {
                return Err(PeerClientError::Status {
                    addr: addr.to_string(),
                    status: Box::new(wrong_reply("FetchBlock", &other)),
                })
            }
        };
        if !reply.found {
            return Ok(None);
        }
        verify_block(addr, &hash, reply.data).map(Some)
    }

    /// The blocks of `hashes` from the peer at `addr`, in the order asked,
    /// each verified; `None` for each block the peer does not hold intact
    /// (not at all, or only a damaged copy). At most
    /// [`FETCH_BLOCKS_IN_FLIGHT_MAX`] requests are in flight.
    pub async fn fetch_blocks(
        &self,
        addr: &str,
        group: GroupId,
        hashes: &[[u8; 32]],
    ) -> Result<Vec<Option<Bytes>>, PeerClientError> {
        futures_util::stream::iter(hashes.iter().copied())
            .map(|hash| self.fetch_block(addr, group, hash))
            .buffered(FETCH_BLOCKS_IN_FLIGHT_MAX)
            .try_collect()
            .await
    }
}

fn verify_block(addr: &str, hash: &[u8; 32], data: Bytes) -> Result<Bytes, PeerClientError> {
    if data.len() > FETCH_BLOCK_BYTES_MAX {
        return Err(PeerClientError::BlockTooLarge {
            addr: addr.to_string(),
            bytes: data.len() as u64,
            max: FETCH_BLOCK_BYTES_MAX as u64,
        });
    }
    let actual = blake3::hash(&data);
    if actual != blake3::Hash::from(*hash) {
        return Err(PeerClientError::CorruptBlock {
            addr: addr.to_string(),
            hash: hex(hash),
            actual: actual.to_hex().to_string(),
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Bytes);

    impl BlockSource for Fixed {
        fn read_block(&self, _hash: [u8; 32]) -> Result<Option<Bytes>, BlockSourceError> {
            Ok(Some(self.0.clone()))
        }
    }

    #[tokio::test]
    async fn server_refuses_to_send_a_block_that_fails_its_checksum() {
        let hash = *blake3::hash(b"good").as_bytes();
        let source: Arc<dyn BlockSource> = Arc::new(Fixed(Bytes::from_static(b"evil")));
        let status = serve(Some(source), &hash).await.unwrap_err();
        assert_eq!(status.code(), Code::DataLoss);
    }

    #[tokio::test]
    async fn group_without_block_source_holds_no_block() {
        let reply = serve(None, &[0; 32]).await.unwrap();
        assert!(!reply.found);
    }

    #[test]
    fn client_refuses_a_tampered_block() {
        let hash = *blake3::hash(b"good").as_bytes();
        let error = verify_block("peer:1", &hash, Bytes::from_static(b"evil")).unwrap_err();
        assert!(matches!(error, PeerClientError::CorruptBlock { .. }));
        assert_eq!(
            verify_block("peer:1", &hash, Bytes::from_static(b"good")).unwrap(),
            "good"
        );
    }
}
