//! The replicated journal of finkfs.

pub mod entry_codec;
pub mod types;
pub mod journal;
pub mod meta;
pub mod log_store;
