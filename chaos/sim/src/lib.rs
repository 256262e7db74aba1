//! Pieces of finkfs's deterministic cluster simulator (design:
//! `docs/design-simulation.md`).
//!
//! So far: [`NodeDisk`], the fenced, counted disk of one incarnation of a
//! node with its tripwire, and [`SimNet`], the simulated peer network.
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
mod net;
mod node_disk;
mod trace;
mod transport;

pub use faults::{Fate, LinkFaults};
pub use net::{NetCounts, SimNet, Tap, Tapped};
pub use node_disk::{is_powered_off, Incarnation, NodeDisk, OpCounts, PoweredOff, Structure, Trip};
pub use trace::NetEvent;
pub use transport::SimTransport;
