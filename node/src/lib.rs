//! The finkfs node.
