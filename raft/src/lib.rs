//! The replicated journal of finkfs.

pub mod entry_codec;
pub mod journal;
pub mod log_store;
pub mod meta;
pub mod network;
pub mod types;
