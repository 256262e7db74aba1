//! The finkfs node: the block store, object manifests, the index and the
//! local object store that the replicated state machine applies to.
//!
//! Every durable byte goes through the I/O seam (`finkfs-seam`), so the
//! simulated disk can cut the power under each of these structures.

// Spawns, blocking calls and clock reads go through `finkfs_raft::rt`
// (clippy.toml), except in the daemon and the client library, which run
// outside the simulator.
#![warn(clippy::disallowed_methods)]

pub mod api;
pub mod backup;
pub mod blocks;
#[allow(clippy::disallowed_methods)]
pub mod client;
pub mod command;
#[allow(clippy::disallowed_methods)]
pub mod daemon;
pub mod fsck;
mod hex;
pub mod index;
mod le;
pub mod manifest;
pub mod membership;
pub mod object_path;
pub mod reader;
pub mod repair;
// The scrubber runs in the daemon, outside the simulator (clock, spawns).
#[allow(clippy::disallowed_methods)]
pub mod scrub;
pub mod snapshot;
pub mod state_machine;
pub mod store;

pub use blocks::{
    BlockError, BlockLocation, BlockReader, BlockStore, BlockStoreOptions, PackScan, ScanItem,
};
pub use hex::hex;
pub use index::{
    Applied, BlockEntry, Durability, Index, IndexError, IndexOptions, IndexTxn, IndexView,
};
pub use manifest::{Manifest, ManifestBlock, ManifestError};
pub use object_path::{check_object_path, PathProblem, OBJECT_PATH_BYTES_MAX};
pub use reader::ObjectReader;
pub use state_machine::{StateMachine, StateMachineError, StateMachineOptions};
pub use store::{ObjectOp, ObjectStore, ObjectStoreOptions, OpOutcome, StoreError};
