//! Pieces of finkfs's deterministic cluster simulator (design:
//! `docs/design-simulation.md`).
//!
//! So far: [`NodeDisk`], the fenced, counted disk of one incarnation of a
//! node with its tripwire; [`Model`], what a read of each path may return
//! given what the clients were told, over objects that name their writer
//! ([`payload`]); [`SafetyChecker`], the per-step safety checks; and
//! [`SimNet`], the simulated peer network.
//! Every node's Raft and
//! block fetcher talk through a [`SimTransport`] (finkfs-raft's
//! `PeerTransport` seam), so the real client and server logic of the peer
//! protocol runs unchanged while the network decides, from one seed, how long
//! each message takes, which are lost, which links are cut and which hosts
//! are powered off. Under a paused tokio clock the delays cost no wall time.

// The simulator's own code must not leak real threads, spawns or clocks
// either: the same rules as the library code it runs.
#![warn(clippy::disallowed_methods)]

mod faults;
mod model;
mod net;
mod node_disk;
pub mod payload;
mod safety;
mod trace;
mod transport;
pub mod world;

pub use faults::{Fate, LinkFaults};
pub use model::{Model, ModelViolation, Observed, Outcome, ReadTicket, Value};
pub use net::{NetCounts, SimNet, Tap, Tapped};
pub use node_disk::{is_powered_off, Incarnation, NodeDisk, OpCounts, PoweredOff, Structure, Trip};
pub use safety::{NodeView, SafetyChecker, SafetyViolation};
pub use trace::NetEvent;
pub use transport::SimTransport;
