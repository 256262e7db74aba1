//! Errors of the peer network's client side, and how gRPC statuses map onto
//! openraft's network errors.
//!
//! openraft backs off from a target that is `Unreachable` (and, after a few
//! immediate retries, from repeated `Network` errors), so: no connection, a
//! stopped Raft, or a group the target does not host => `Unreachable`; a
//! malformed or refused message => `Network`; our own deadline => `Timeout`.

use std::time::Duration;

use openraft::error::{NetworkError, RPCError, Timeout, Unreachable};
use openraft::RPCTypes;
use tonic::{Code, Status};

use super::convert::WireError;
use crate::types::{GroupId, NodeId, TypeConfig};

/// Why a call of [`super::PeerClient`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerClientError {
    /// The peer does not host the group.
    #[error("peer {addr} does not host {group}")]
    UnknownGroup {
        /// The peer.
        addr: String,
        /// The group.
        group: GroupId,
    },
    /// The call failed with a gRPC status.
    #[error("peer {addr}: {status}")]
    Status {
        /// The peer.
        addr: String,
        /// The status.
        status: Box<Status>,
    },
    /// No answer in time.
    #[error("peer {addr}: no answer within {timeout:?}")]
    Timeout {
        /// The peer.
        addr: String,
        /// How long was waited.
        timeout: Duration,
    },
    /// The peer's reply is malformed.
    #[error("peer {addr} sent a malformed reply: {source}")]
    Wire {
        /// The peer.
        addr: String,
        /// What is wrong with it.
        #[source]
        source: WireError,
    },
    /// The peer sent a block whose BLAKE3 is not the one asked for: refused,
    /// never returned as data.
    #[error("peer {addr} sent block {hash} with BLAKE3 {actual}: refused")]
    CorruptBlock {
        /// The peer.
        addr: String,
        /// The hash asked for (hex).
        hash: String,
        /// The BLAKE3 of what was received (hex).
        actual: String,
    },
    /// The peer sent a block larger than the protocol allows.
    #[error("peer {addr} sent a block of {bytes} bytes, more than {max}")]
    BlockTooLarge {
        /// The peer.
        addr: String,
        /// Its size.
        bytes: u64,
        /// The ceiling.
        max: u64,
    },
}

/// The openraft error for a failed call to `target`.
pub(crate) fn status_to_rpc_error(status: &Status) -> RPCError<TypeConfig> {
    match status.code() {
        Code::Unavailable | Code::NotFound | Code::Cancelled | Code::ResourceExhausted => {
            RPCError::Unreachable(Unreachable::new(status))
        }
        _ => RPCError::Network(NetworkError::new(status)),
    }
}

/// The openraft error for a reply that does not decode.
pub(crate) fn wire_to_rpc_error(error: &WireError) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(error))
}

/// The openraft error for a call that passed its deadline.
pub(crate) fn timeout_error(
    action: RPCTypes,
    id: NodeId,
    target: NodeId,
    timeout: Duration,
) -> RPCError<TypeConfig> {
    RPCError::Timeout(Timeout {
        action,
        id,
        target,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_peer_or_group_backs_off_as_unreachable() {
        for code in [Code::Unavailable, Code::NotFound] {
            let error = status_to_rpc_error(&Status::new(code, "x"));
            assert!(matches!(error, RPCError::Unreachable(_)), "{code:?}");
        }
    }

    #[test]
    fn refused_message_is_a_network_error() {
        let error = status_to_rpc_error(&Status::invalid_argument("bad entry"));
        assert!(matches!(error, RPCError::Network(_)));
    }
}
