//! The replicated journal of finkfs.
