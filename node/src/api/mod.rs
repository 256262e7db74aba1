//! The client gRPC API of a node (package `finkfs.client.v1`,
//! `node/proto/client.proto`, described in `docs/format/client-protocol.md`).
//!
//! [`ClientService`] turns client calls into Raft commands on the leader
//! and serves linearizable reads from the local object store. A follower
//! answers with the leader's client address (see [`errors`]). Every message,
//! queue and batch has a named ceiling below.
//!
//! * `put`: an upload is split into blocks of [`BLOCK_BYTES`] and hashed as
//!   it arrives; a small object becomes one `PutObject` command carrying
//!   its blocks, a large one `PutBlocks` entries then a `PutObject`.
//! * `batcher`: small commands from concurrent calls share log entries.
//! * `reads`: Get, Stat and List after a read-index barrier.
//! * `cluster`: Status and the membership calls.
//! * `verify`: this node's own copies, block by block, for fsck --cluster.

mod batcher;
mod cluster;
mod commands;
pub(crate) mod errors;
pub mod member;
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto;
mod put;
mod put_many;
mod reads;
mod server;
mod verify;

use std::time::Duration;

use crate::command::ENTRY_BYTES_MAX;

pub use batcher::{
    BATCHES_IN_FLIGHT_MAX, BATCH_BYTES_MAX, BATCH_COMMANDS_MAX, BATCH_QUEUE_DEPTH_MAX,
};
pub use member::{MemberAddr, MemberAddrError};
pub use server::{ApiCounters, ApiCounts, ApiOptions, ClientService};
pub use verify::{VERIFY_LIMIT_DEFAULT, VERIFY_LIMIT_MAX};

/// Response metadata naming the leader's client address, set on every
/// FAILED_PRECONDITION a follower answers.
pub const LEADER_METADATA_KEY: &str = "finkfs-leader";
/// Response metadata set (to the node id) when the node is not a member of
/// any cluster.
pub const NOT_MEMBER_METADATA_KEY: &str = "finkfs-not-member";
/// Largest message the client service and the client library encode or
/// decode. A List page of [`LIST_LIMIT_MAX`] objects with the longest paths
/// fits, and so does a PutMany object of [`PUT_MANY_OBJECT_BYTES_MAX`].
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 16 << 20;
/// Data bytes per Put or Get chunk message.
pub const DATA_CHUNK_BYTES: usize = 1 << 20;
/// Size of the blocks objects are split into.
pub const BLOCK_BYTES: u32 = crate::command::BLOCK_BYTES;
/// Objects up to this size travel inline in one `PutObject` command (and may
/// share an entry with others); larger ones go as `PutBlocks` entries first.
/// The margin below the entry ceiling holds the path, the manifest and the
/// block headers.
pub const INLINE_OBJECT_BYTES_MAX: u64 = (ENTRY_BYTES_MAX - (64 << 10)) as u64;
/// `PutBlocks` proposals of one upload in flight at once.
pub const PUT_BLOCKS_IN_FLIGHT_MAX: usize = 4;
/// Largest object of a PutMany stream.
pub const PUT_MANY_OBJECT_BYTES_MAX: u64 = INLINE_OBJECT_BYTES_MAX;
/// PutMany objects of one stream waiting for their outcome at once.
pub const PUT_MANY_IN_FLIGHT_MAX: usize = 256;
/// Default largest object.
pub const OBJECT_BYTES_MAX_DEFAULT: u64 = crate::command::OBJECT_BYTES_MAX;
/// Most objects in one List reply.
pub const LIST_LIMIT_MAX: usize = crate::index::LIST_LIMIT_MAX;
/// Objects in a List reply when the request says 0.
pub const LIST_LIMIT_DEFAULT: usize = 1000;
/// Default longest wait for a proposal to be committed and applied.
pub const WRITE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default longest wait for the read barrier of a read.
pub const READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long a call may wait for its next stream message from the client.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Get chunks produced ahead of the client.
pub const GET_CHUNKS_AHEAD_MAX: usize = 4;
/// Most members named in one Init.
pub const INIT_MEMBERS_MAX: usize = 64;

const _: () = assert!(DATA_CHUNK_BYTES as u64 <= BLOCK_BYTES as u64);
const _: () = assert!(INLINE_OBJECT_BYTES_MAX <= BATCH_BYTES_MAX as u64);
const _: () = assert!(PUT_MANY_OBJECT_BYTES_MAX + (64 << 10) <= CLIENT_MESSAGE_BYTES_MAX as u64);
const _: () = assert!(DATA_CHUNK_BYTES + (64 << 10) <= CLIENT_MESSAGE_BYTES_MAX);
// A List page: per object a path, a hash and a few integers, with framing.
const _: () = assert!(
    LIST_LIMIT_MAX * (crate::object_path::OBJECT_PATH_BYTES_MAX + 32 + 64)
        <= CLIENT_MESSAGE_BYTES_MAX
);
