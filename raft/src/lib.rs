//! The replicated journal of finkfs.

// Spawns, blocking calls and clock reads go through `rt` (clippy.toml).
#![warn(clippy::disallowed_methods)]

pub mod entry_codec;
pub mod journal;
pub mod log_store;
pub mod meta;
pub mod network;
pub mod rt;
pub mod types;
