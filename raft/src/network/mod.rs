//! The peer network of finkfs: how the members of a Raft group talk to each
//! other over gRPC (package `finkfs.peer.v1`, `raft/proto/peer.proto`,
//! described in `docs/format/peer-protocol.md`).
//!
//! * Client side: [`PeerNetwork`] is openraft's network factory for one group;
//!   it hands out a [`PeerConnection`] per target, over a channel cached per
//!   address in [`PeerChannels`] (connected lazily, shared by every group of
//!   the process). AppendEntries go as a bidirectional stream, snapshots as a
//!   client stream of checksummed chunks ([`SnapshotFile`]).
//! * Server side: [`PeerService`] serves every group registered in its
//!   [`GroupRegistry`]; [`serve_peer`] runs it on a listener until shutdown.
//!   Blocks are served by id (their BLAKE3) through a [`BlockSource`] that
//!   the node provides; [`PeerClient::fetch_blocks`] fetches and verifies them.
//!
//! Every message and queue has a named ceiling below; a malformed message is
//! a clean gRPC status, never a panic.

mod blocks;
mod client;
pub mod convert;
mod error;
mod held_log;
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto;
mod serve;
mod server;
mod snapshot_file;
mod snapshot_recv;
mod snapshot_send;
mod stream_append;
mod transport;

use std::time::Duration;

pub use blocks::{BlockSource, BlockSourceError, DamagedCopy, PeerClient};
pub use client::{
    PeerChannels, PeerConnection, PeerNetwork, PeerOptions, CONNECT_TIMEOUT_DEFAULT,
    FETCH_BLOCK_TIMEOUT_DEFAULT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT,
    RESPONSE_TIMEOUT_FLOOR_DEFAULT, SNAPSHOT_INSTALL_TIMEOUT_DEFAULT,
};
pub use convert::WireError;
pub use error::PeerClientError;
pub use serve::{serve_peer, PREFACE_TIMEOUT, SHUTDOWN_GRACE};
pub use server::{GroupHandle, GroupRegistry, PeerService};
pub use snapshot_file::{SnapshotFile, SnapshotFileError, SNAPSHOT_READ_STEP_BYTES};
pub use snapshot_recv::INCOMING_DIR;
pub use transport::{
    unreachable, AppendReplies, IncomingChunks, LocalTransport, OutgoingChunks, PeerEndpoint,
    PeerReply, PeerRequest, PeerTransport,
};

/// Largest gRPC message the peer service and its clients encode or decode.
/// It must hold the largest journal record (one entry travels whole) plus the
/// message's framing.
pub const PEER_MESSAGE_BYTES_MAX: usize = 72 << 20;
/// Most entry payload bytes in one AppendEntries message; a longer request
/// from openraft is split into several messages (a single larger entry
/// travels alone).
pub const APPEND_MESSAGE_BYTES_MAX: u64 = 8 << 20;
/// Most entries in one AppendEntries message.
pub const APPEND_MESSAGE_ENTRIES_MAX: usize = 64 << 10;
/// Most data bytes in one snapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Fewest data bytes per snapshot chunk, whatever openraft's configured chunk
/// size: tiny chunks would only multiply per-chunk work.
pub const SNAPSHOT_CHUNK_BYTES_MIN: usize = 4 << 10;
/// Largest snapshot file a receiver accepts.
pub const SNAPSHOT_FILE_BYTES_MAX: u64 = 1 << 40;
/// Largest block FetchBlock serves or accepts.
pub const FETCH_BLOCK_BYTES_MAX: usize = 64 << 20;
/// FetchBlock calls one `fetch_blocks` keeps in flight.
pub const FETCH_BLOCKS_IN_FLIGHT_MAX: usize = 4;
/// Most members (voters and learners) in a membership on the wire.
pub const MEMBERS_MAX: usize = 1024;
/// Most concurrent HTTP/2 streams a peer may open on one connection.
pub const PEER_STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// How long the service waits for the next message of a stream it is
/// reading (the first AppendEntries of a stream, the next snapshot chunk)
/// before it gives up on the sender.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

const _: () = assert!(APPEND_MESSAGE_BYTES_MAX < PEER_MESSAGE_BYTES_MAX as u64);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES + (64 << 10) < PEER_MESSAGE_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MIN <= SNAPSHOT_CHUNK_BYTES);
const _: () = assert!(FETCH_BLOCK_BYTES_MAX + (64 << 10) < PEER_MESSAGE_BYTES_MAX);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry_codec::ENTRY_HEADER_BYTES;
    use crate::journal::JournalOptions;

    #[test]
    fn largest_journal_record_fits_one_message() {
        let record_bytes_max = u64::from(JournalOptions::default().record_bytes_max);
        let framing_bytes = 64 << 10;
        assert!(
            record_bytes_max + ENTRY_HEADER_BYTES as u64 + framing_bytes
                <= PEER_MESSAGE_BYTES_MAX as u64
        );
    }
}
