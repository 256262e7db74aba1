//! Errors of the client library.

use std::io;
use std::time::Duration;

use tonic::{Code, Status};

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// `Client::connect` was given no address.
    #[error("no node address given")]
    NoAddress,
    /// An address is not a valid `host:port`.
    #[error("invalid node address {addr:?}: {reason}")]
    BadAddress {
        /// The address.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node answered with an error status that retrying does not cure,
    /// or the retries ran out; `status` is the last answer.
    #[error("{addr}: {} ({:?}){}", status.message(), status.code(), retried(attempts, elapsed))]
    Status {
        /// The node that answered last.
        addr: String,
        /// Its answer.
        status: Box<Status>,
        /// Attempts made.
        attempts: u32,
        /// Time spent on them.
        elapsed: Duration,
    },
    /// The bytes received do not hash to the BLAKE3 the node announced:
    /// they are not returned.
    #[error("object {path}: received bytes hash to {actual}, the node announced {expected}")]
    Corrupt {
        /// The object.
        path: String,
        /// The announced BLAKE3 (hex).
        expected: String,
        /// The BLAKE3 of what arrived (hex).
        actual: String,
    },
    /// A node broke the protocol (a reply stream without its header, more
    /// bytes than announced, a field of the wrong size).
    #[error("{addr}: protocol violation: {reason}")]
    Protocol {
        /// The node.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// A request was refused before it was sent (a bad argument).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Reading the data to upload, or writing what was downloaded, failed.
    #[error("local I/O failed: {0}")]
    Io(#[from] io::Error),
}

fn retried(attempts: &u32, elapsed: &Duration) -> String {
    if *attempts > 1 {
        format!(" after {attempts} attempts in {elapsed:.1?}")
    } else {
        String::new()
    }
}

impl ClientError {
    /// The gRPC code of a node's answer, if the error is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// The node's message, if the error is a node's answer.
    pub fn message(&self) -> Option<&str> {
        match self {
            ClientError::Status { status, .. } => Some(status.message()),
            _ => None,
        }
    }
}
