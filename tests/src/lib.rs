//! End-to-end test support for finkfs: real `finkfs-node` processes on
//! 127.0.0.1, driven through the client library as the pipeline and the
//! `finkfs` CLI drive them.
//!
//! * [`LocalCluster`] spawns, kills, stops, restarts and wipes nodes, and
//!   prints the tail of every node's log when a test fails.
//! * [`alerts`] makes alert-sized objects (deterministic from a seed) and
//!   finds real ZTF alerts when they are present.
//! * [`garbage`] sends hostile bytes and malformed gRPC calls to a node.
//! * [`load`] runs a concurrent write load that records exactly which
//!   writes were acknowledged, and checks them afterwards.
//! * [`objects`] stores sets of objects and checks a cluster holds exactly
//!   them.
//! * [`poll`] waits for a condition with a deadline, never a bare sleep.
//!
//! The node binary is not built here: `cargo test --workspace` builds it
//! (the node package has integration tests that need it); for this package
//! alone run `cargo build -p finkfs-node` first. See `docs/testing.md`.

pub mod alerts;
pub mod binary;
pub mod cluster;
pub mod garbage;
pub mod load;
pub mod metrics;
pub mod node;
pub mod objects;
pub mod poll;
pub mod ports;

pub use cluster::{client_options, LocalCluster, Settings};
